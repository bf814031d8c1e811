//! Docker token scopes (`repository:library/nginx:pull,push`) and the glob
//! matcher used by PAT repository filters and webhook filters.
//!
//! Grammar, from the Docker token spec: the resource type runs to the first
//! `:`, the actions follow the last `:`, and everything in between is the name,
//! which may itself contain `:` (a `host:port` prefix).

use std::{collections::BTreeSet, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// An action on a repository, as it appears in scopes and token claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read manifests, blobs and tags.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action, in wire order.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    /// The wire form (`pull`, `push`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The actions one scope word stands for: `*` is all of them, an unknown
    /// word none (it may still mean something for another resource type).
    pub fn expand(word: &str) -> &'static [Action] {
        match word {
            "pull" => &[Action::Pull],
            "push" => &[Action::Push],
            "delete" => &[Action::Delete],
            "*" => &Action::ALL,
            _ => &[],
        }
    }
}

impl FromStr for Action {
    type Err = ScopeError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        match Action::expand(word) {
            [single] => Ok(*single),
            _ => Err(ScopeError::UnknownAction(word.to_owned())),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Fewer than three `:`-separated parts.
    #[error("scope {0:?} is not type:name:actions")]
    Malformed(String),
    /// The type, name, actions or one action word is empty.
    #[error("scope {0:?} has an empty part")]
    EmptyPart(String),
    /// A word that is not `pull`, `push`, `delete` or `*`.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
}

/// One requested scope: a resource and the actions wanted on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceScope {
    /// `repository`, `registry` or another type berth passes through unchanged.
    pub kind: String,
    /// The resource name (`library/nginx`, `localhost:5000/foo`, `catalog`).
    pub name: String,
    /// The action words as written (`pull`, `push`, `*`, ...), deduplicated.
    pub actions: BTreeSet<String>,
}

impl ResourceScope {
    /// Parses `type:name:action[,action...]`; see the module doc for the grammar.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let malformed = || ScopeError::Malformed(text.to_owned());
        let (kind, rest) = text.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        let empty = || ScopeError::EmptyPart(text.to_owned());
        if kind.is_empty() || name.is_empty() || actions.is_empty() {
            return Err(empty());
        }
        let actions: BTreeSet<String> = actions.split(',').map(str::to_owned).collect();
        if actions.contains("") {
            return Err(empty());
        }
        Ok(ResourceScope { kind: kind.to_owned(), name: name.to_owned(), actions })
    }

    /// The known repository actions requested, with `*` expanded.
    pub fn requested_actions(&self) -> BTreeSet<Action> {
        self.actions.iter().flat_map(|word| Action::expand(word)).copied().collect()
    }
}

/// Parses a space-separated list of scopes, as the OAuth2 form of `/auth` sends them.
pub fn parse_scopes(text: &str) -> Result<Vec<ResourceScope>, ScopeError> {
    text.split_ascii_whitespace().map(ResourceScope::parse).collect()
}

impl FromStr for ResourceScope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ResourceScope::parse(text)
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.kind, self.name)?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action)?;
        }
        Ok(())
    }
}

/// One item of the JWT `access` claim: what a registry token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// Resource type (`repository`, `registry`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Granted action words.
    pub actions: Vec<String>,
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters
/// (including `/`), `?` exactly one character, and everything else itself.
///
/// Runs in O(pattern × name) at worst: on a mismatch it backtracks only to the
/// most recent `*`, which is enough because a later `*` can absorb whatever an
/// earlier one would have.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Position after the last `*` seen, and the name position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((after_star, matched)) => {
                    p = after_star;
                    n = matched + 1;
                    star = Some((after_star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> BTreeSet<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn parses_simple_scope() {
        let scope = ResourceScope::parse("repository:library/nginx:pull,push").unwrap();
        assert_eq!(scope.kind, "repository");
        assert_eq!(scope.name, "library/nginx");
        assert_eq!(scope.actions, set(&["pull", "push"]));
        assert_eq!(scope.requested_actions(), BTreeSet::from([Action::Pull, Action::Push]));
    }

    #[test]
    fn name_may_contain_colons() {
        let scope = ResourceScope::parse("repository:localhost:5000/foo:pull,push").unwrap();
        assert_eq!(scope.name, "localhost:5000/foo");
        assert_eq!(scope.to_string(), "repository:localhost:5000/foo:pull,push");
    }

    #[test]
    fn star_expands_to_every_action() {
        let scope = ResourceScope::parse("registry:catalog:*").unwrap();
        assert_eq!(scope.actions, set(&["*"]));
        assert_eq!(scope.requested_actions(), BTreeSet::from(Action::ALL));
        assert_eq!(scope.to_string(), "registry:catalog:*");
    }

    #[test]
    fn display_round_trips_and_dedups() {
        let scope = ResourceScope::parse("repository:a/b:push,pull,push").unwrap();
        assert_eq!(scope.to_string(), "repository:a/b:pull,push");
        assert_eq!(scope.to_string().parse::<ResourceScope>().unwrap(), scope);
    }

    #[test]
    fn rejects_malformed_and_empty_parts() {
        for bad in ["", "repository", "repository:foo", ":foo:pull", "repository::pull", "repository:foo:"] {
            assert!(ResourceScope::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(ResourceScope::parse("repository:foo:pull,,push"), Err(ScopeError::EmptyPart(_))));
        assert!(matches!(ResourceScope::parse("repository:foo"), Err(ScopeError::Malformed(_))));
    }

    #[test]
    fn unknown_words_are_kept_but_not_expanded() {
        let scope = ResourceScope::parse("repository:foo:pull,fly").unwrap();
        assert_eq!(scope.actions, set(&["fly", "pull"]));
        assert_eq!(scope.requested_actions(), BTreeSet::from([Action::Pull]));
        assert!("fly".parse::<Action>().is_err());
        assert!("*".parse::<Action>().is_err(), "* is several actions, not one");
        assert_eq!("delete".parse::<Action>(), Ok(Action::Delete));
    }

    #[test]
    fn parses_space_separated_scopes() {
        let scopes = parse_scopes(" repository:a:pull  registry:catalog:* ").unwrap();
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[1].kind, "registry");
        assert!(parse_scopes("repository:a:pull bogus").is_err());
        assert_eq!(parse_scopes("").unwrap(), vec![]);
    }

    #[test]
    fn access_entry_uses_type_on_the_wire() {
        let entry = AccessEntry { kind: "repository".into(), name: "a/b".into(), actions: vec!["pull".into()] };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(json, r#"{"type":"repository","name":"a/b","actions":["pull"]}"#);
        assert_eq!(serde_json::from_str::<AccessEntry>(&json).unwrap(), entry);
    }

    #[test]
    fn glob_cases() {
        let cases = [
            ("myapp/*", "myapp/frontend", true),
            ("myapp/*", "myapp/team/frontend", true),
            ("myapp/*", "myapp", false),
            ("myapp/*", "other/frontend", false),
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "a/c", true),
            ("*/web", "team/web", true),
            ("*/web", "team/webapp", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "x", true),
            ("é?", "éa", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_match(pattern, name), expected, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn glob_has_no_exponential_blowup() {
        let pattern = format!("{}b", "a*".repeat(64));
        let name = "a".repeat(10_000);
        let started = std::time::Instant::now();
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&pattern, &format!("{name}b")));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
