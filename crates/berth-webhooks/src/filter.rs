//! Which events a webhook wants: event filters and the repository glob.

/// The event names a filter may name (besides `*` and `<family>.*`).
pub const KNOWN_EVENTS: &[&str] = &[
    "push",
    "pull",
    "delete",
    "blob.push",
    "blob.mount",
    "blob.delete",
    "repository.create",
    "repository.update",
    "repository.delete",
    "cache.evict",
    "ping",
];

/// The families of management events (`user.create`, `token.revoke`, …).
pub const MANAGEMENT_FAMILIES: &[&str] =
    &["user", "token", "project", "webhook", "upstream", "cache", "system", "member"];

/// Whether `filter` is something a webhook may subscribe to.
pub fn valid_filter(filter: &str) -> bool {
    if filter == "*" || KNOWN_EVENTS.contains(&filter) {
        return true;
    }
    let (family, rest) = filter.split_once('.').unwrap_or((filter, ""));
    let known_family = MANAGEMENT_FAMILIES.contains(&family)
        || KNOWN_EVENTS.iter().any(|e| e.split_once('.').is_some_and(|(f, _)| f == family));
    known_family
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'*')
        && (rest == "*" || !rest.contains('*'))
}

/// Whether an event called `event` passes one of `filters`.
pub fn event_matches(filters: &[String], event: &str) -> bool {
    filters.iter().any(|f| {
        f == "*"
            || f == event
            || f.strip_suffix(".*").is_some_and(|family| event.split_once('.').is_some_and(|(f2, _)| f2 == family))
    })
}

/// Whether `repository` matches `glob`: `*` matches any run of characters,
/// `/` included (`team/*` covers `team/a/b`), `?` one character. Events
/// without a repository (management changes) match only `*`.
pub fn repository_matches(glob: &str, repository: Option<&str>) -> bool {
    match repository {
        None => glob == "*",
        Some(name) => berth_core::glob::matches(glob, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn event_filters() {
        assert!(event_matches(&filters(&["push", "delete"]), "push"));
        assert!(!event_matches(&filters(&["push"]), "blob.push"));
        assert!(event_matches(&filters(&["repository.*"]), "repository.create"));
        assert!(!event_matches(&filters(&["repository.*"]), "push"));
        assert!(event_matches(&filters(&["*"]), "user.create"));
        assert!(event_matches(&filters(&["user.*"]), "user.delete"));
        assert!(!event_matches(&filters(&[]), "push"));
    }

    #[test]
    fn filter_validation() {
        for ok in ["*", "push", "pull", "repository.*", "user.*", "user.create", "blob.*", "ping"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "pus", "repository.", "*.*", "nope.*", "push.*x", "user.cre*ate", "PUSH"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn repository_globs() {
        assert!(repository_matches("*", Some("a/b/c")));
        assert!(repository_matches("*", None));
        assert!(!repository_matches("team/*", None));
        assert!(repository_matches("team/*", Some("team/app")));
        assert!(repository_matches("team/*", Some("team/a/b")));
        assert!(!repository_matches("team/*", Some("teams/app")));
        assert!(!repository_matches("team/*", Some("other/team/app")));
        assert!(repository_matches("*/app", Some("x/y/app")));
        assert!(repository_matches("myapp/frontend", Some("myapp/frontend")));
        assert!(!repository_matches("myapp/frontend", Some("myapp/frontend2")));
        assert!(repository_matches("a?c", Some("abc")));
        assert!(repository_matches("a*b*c", Some("aXXbYYc")));
        assert!(!repository_matches("a*b*c", Some("aXXbYY")));
        // A pathological pattern stays fast.
        let text = "a".repeat(200);
        assert!(!repository_matches(&format!("{}b", "*a".repeat(50)), Some(&text)));
    }
}
