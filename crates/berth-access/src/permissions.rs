//! Who may pull, push or delete in a repository: a pure decision over facts the
//! caller has already loaded (the user, the project, the token).
//!
//! The rules are those of API.md §3.1: admins may do everything; anonymous
//! callers pull public projects; users pull public projects, act on projects
//! by their member role, and may push to a project that does not exist yet
//! (the first push creates it and makes them its owner). A personal access
//! token can only narrow what its owner may do.

use std::{collections::BTreeSet, fmt, str::FromStr};

use crate::scope::{AccessEntry, Action, ResourceScope, glob_match};

/// A value that is not one of the words an enum accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// What was being parsed (`role`, `visibility`, ...).
    pub what: &'static str,
    /// The rejected word.
    pub value: String,
}

/// Declares a lowercase wire enum with `as_str`, `parse`, `FromStr` and `Display`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The lowercase wire and database form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            /// Parses the lowercase form; `None` for any other word.
            pub fn parse(value: &str) -> Option<Self> {
                value.parse().ok()
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: value.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// The system-wide role of a user.
    UserRole, "user role" {
        /// May do everything, everywhere.
        Admin = "admin",
        /// An ordinary user, limited by project membership.
        User = "user",
    }
}

wire_enum! {
    /// A user's role in one project.
    MemberRole, "member role" {
        /// Everything, including managing members.
        Owner = "owner",
        /// Pull, push and delete.
        Maintainer = "maintainer",
        /// Pull and push.
        Developer = "developer",
        /// Pull only.
        Guest = "guest",
    }
}

wire_enum! {
    /// Whether anyone may pull a project's repositories.
    Visibility, "visibility" {
        /// Anyone, even anonymous callers, may pull.
        Public = "public",
        /// Only members (and admins) may pull.
        Private = "private",
    }
}

wire_enum! {
    /// One permission word of a personal access token (API.md §3.1).
    TokenPermission, "token permission" {
        /// Read-only.
        Pull = "pull",
        /// Read and write on `/v2`, which includes delete.
        Push = "push",
        /// Delete only.
        Delete = "delete",
    }
}

/// What a caller may do in one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Perms {
    /// May read.
    pub pull: bool,
    /// May write.
    pub push: bool,
    /// May delete.
    pub delete: bool,
}

impl Perms {
    /// Every permission.
    pub const fn all() -> Self {
        Perms { pull: true, push: true, delete: true }
    }

    /// No permission.
    pub const fn none() -> Self {
        Perms { pull: false, push: false, delete: false }
    }

    /// Read only.
    pub const fn pull_only() -> Self {
        Perms { pull: true, push: false, delete: false }
    }

    /// What both `self` and `other` allow.
    pub const fn intersect(self, other: Perms) -> Perms {
        Perms { pull: self.pull && other.pull, push: self.push && other.push, delete: self.delete && other.delete }
    }

    /// What either `self` or `other` allows.
    pub const fn union(self, other: Perms) -> Perms {
        Perms { pull: self.pull || other.pull, push: self.push || other.push, delete: self.delete || other.delete }
    }

    /// Whether `action` is allowed.
    pub const fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => self.pull,
            Action::Push => self.push,
            Action::Delete => self.delete,
        }
    }

    /// Whether nothing is allowed.
    pub const fn is_none(self) -> bool {
        !(self.pull || self.push || self.delete)
    }

    /// The permissions a list of granted action words carries (a token's
    /// `access` actions); `*` grants all, unknown words nothing.
    pub fn from_actions<'a>(words: impl IntoIterator<Item = &'a str>) -> Perms {
        words.into_iter().flat_map(Action::expand).fold(Perms::none(), |perms, action| perms.with(*action))
    }

    /// `self` plus `action`.
    const fn with(mut self, action: Action) -> Perms {
        match action {
            Action::Pull => self.pull = true,
            Action::Push => self.push = true,
            Action::Delete => self.delete = true,
        }
        self
    }

    /// The `access` claim entry for a requested scope: the requested words that
    /// are allowed. `*` stays `*` if everything is allowed and otherwise becomes
    /// the actions that are; unknown words are dropped.
    pub fn grant(self, scope: &ResourceScope) -> AccessEntry {
        let mut granted = BTreeSet::new();
        for word in &scope.actions {
            if word == "*" && self == Perms::all() {
                granted.insert("*");
                continue;
            }
            granted.extend(Action::expand(word).iter().filter(|action| self.allows(**action)).map(|a| a.as_str()));
        }
        let actions = granted.into_iter().map(str::to_owned).collect();
        AccessEntry { kind: scope.kind.clone(), name: scope.name.clone(), actions }
    }
}

/// Who is asking, as far as authorization cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// No credentials.
    Anonymous,
    /// An authenticated user.
    User {
        /// System-wide role.
        role: UserRole,
        /// Deactivated users may do nothing.
        active: bool,
    },
}

/// What is known about the project a repository belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectAccess {
    /// The project does not exist yet.
    Missing,
    /// The project exists.
    Existing {
        /// Its visibility.
        visibility: Visibility,
        /// The subject's role in it, if they are a member.
        member_role: Option<MemberRole>,
    },
}

/// What a member role allows.
fn member_perms(role: MemberRole) -> Perms {
    match role {
        MemberRole::Owner | MemberRole::Maintainer => Perms::all(),
        MemberRole::Developer => Perms { pull: true, push: true, delete: false },
        MemberRole::Guest => Perms::pull_only(),
    }
}

/// What `subject` may do in a repository of `project`.
pub fn repo_perms(subject: &Subject, project: ProjectAccess) -> Perms {
    let public_pull = |visibility| if visibility == Visibility::Public { Perms::pull_only() } else { Perms::none() };
    match (subject, project) {
        (Subject::User { active: false, .. }, _) => Perms::none(),
        (Subject::User { role: UserRole::Admin, .. }, _) => Perms::all(),
        (Subject::Anonymous, ProjectAccess::Missing) => Perms::none(),
        (Subject::Anonymous, ProjectAccess::Existing { visibility, .. }) => public_pull(visibility),
        // Pushing creates the project; pulling a missing one fails later with a 404.
        (Subject::User { .. }, ProjectAccess::Missing) => Perms { pull: true, push: true, delete: false },
        (Subject::User { .. }, ProjectAccess::Existing { visibility, member_role }) => {
            public_pull(visibility).union(member_role.map_or(Perms::none(), member_perms))
        }
    }
}

/// What a token's permission words grant on their own, before its owner's rights.
fn token_grant(permissions: &[TokenPermission]) -> Perms {
    permissions.iter().fold(Perms::none(), |perms, permission| {
        perms.union(match permission {
            TokenPermission::Pull => Perms::pull_only(),
            // API.md §3.1: push "also writes on /v2 (incl. delete)".
            TokenPermission::Push => Perms::all(),
            TokenPermission::Delete => Perms { pull: false, push: false, delete: true },
        })
    })
}

/// What a personal access token may do in `repo`: its owner's permissions,
/// narrowed to the token's permission words and, if it has any, its
/// repository globs.
pub fn token_perms(owner: Perms, token_permissions: &[TokenPermission], repo_globs: &[String], repo: &str) -> Perms {
    if !repo_globs.is_empty() && !repo_globs.iter().any(|glob| glob_match(glob, repo)) {
        return Perms::none();
    }
    owner.intersect(token_grant(token_permissions))
}

#[cfg(test)]
mod tests;
