use super::*;

/// Perms from a compact spelling: `p` pull, `u` push, `d` delete, `-` none.
fn perms(spec: &str) -> Perms {
    Perms { pull: spec.contains('p'), push: spec.contains('u'), delete: spec.contains('d') }
}

fn existing(visibility: Visibility, member_role: Option<MemberRole>) -> ProjectAccess {
    ProjectAccess::Existing { visibility, member_role }
}

/// The eleven project situations, in the column order of the table below.
fn projects() -> Vec<ProjectAccess> {
    let mut projects = vec![ProjectAccess::Missing];
    for visibility in [Visibility::Public, Visibility::Private] {
        projects.push(existing(visibility, None));
        for role in [MemberRole::Guest, MemberRole::Developer, MemberRole::Maintainer, MemberRole::Owner] {
            projects.push(existing(visibility, Some(role)));
        }
    }
    projects
}

#[test]
fn repo_perms_table() {
    let user = |role, active| Subject::User { role, active };
    // Columns: missing | public: none, guest, developer, maintainer, owner | private: the same.
    let table: [(Subject, [&str; 11]); 5] = [
        (Subject::Anonymous, ["-", "p", "p", "p", "p", "p", "-", "-", "-", "-", "-"]),
        (user(UserRole::Admin, true), ["pud"; 11]),
        (user(UserRole::Admin, false), ["-"; 11]),
        (user(UserRole::User, true), ["pu", "p", "p", "pu", "pud", "pud", "-", "p", "pu", "pud", "pud"]),
        (user(UserRole::User, false), ["-"; 11]),
    ];
    for (subject, row) in table {
        for (project, expected) in projects().into_iter().zip(row) {
            assert_eq!(repo_perms(&subject, project), perms(expected), "{subject:?} on {project:?}");
        }
    }
}

#[test]
fn token_grant_table() {
    use TokenPermission::{Delete, Pull, Push};
    let table: [(&[TokenPermission], &str); 8] = [
        (&[], "-"),
        (&[Pull], "p"),
        (&[Push], "pud"),
        (&[Delete], "d"),
        (&[Pull, Push], "pud"),
        (&[Pull, Delete], "pd"),
        (&[Push, Delete], "pud"),
        (&[Pull, Push, Delete], "pud"),
    ];
    let owners = ["-", "p", "u", "d", "pu", "pd", "ud", "pud"];
    for (permissions, grant) in table {
        for owner in owners {
            let expected = perms(owner).intersect(perms(grant));
            assert_eq!(
                token_perms(perms(owner), permissions, &[], "a/b"),
                expected,
                "{permissions:?} for owner {owner}"
            );
        }
    }
}

#[test]
fn token_globs_restrict_repositories() {
    let globs = vec!["myapp/*".to_owned(), "tools/ci".to_owned()];
    let all = [TokenPermission::Push];
    assert_eq!(token_perms(Perms::all(), &all, &globs, "myapp/web"), Perms::all());
    assert_eq!(token_perms(Perms::all(), &all, &globs, "myapp/team/web"), Perms::all());
    assert_eq!(token_perms(Perms::all(), &all, &globs, "tools/ci"), Perms::all());
    assert_eq!(token_perms(Perms::all(), &all, &globs, "tools/cd"), Perms::none());
    assert_eq!(token_perms(Perms::all(), &all, &globs, "myapp"), Perms::none());
    // A glob never widens what the owner may do.
    assert_eq!(token_perms(Perms::pull_only(), &all, &globs, "myapp/web"), Perms::pull_only());
}

#[test]
fn perms_algebra() {
    assert_eq!(Perms::all().intersect(perms("pd")), perms("pd"));
    assert_eq!(perms("p").union(perms("d")), perms("pd"));
    assert!(Perms::none().is_none());
    assert!(!perms("d").is_none());
    for action in Action::ALL {
        assert!(Perms::all().allows(action));
        assert!(!Perms::none().allows(action));
    }
    assert!(perms("u").allows(Action::Push) && !perms("u").allows(Action::Pull));
}

#[test]
fn perms_from_claim_actions() {
    assert_eq!(Perms::from_actions(["pull"]), perms("p"));
    assert_eq!(Perms::from_actions(["pull", "push"]), perms("pu"));
    assert_eq!(Perms::from_actions(["*"]), Perms::all());
    assert_eq!(Perms::from_actions(["fly", ""]), Perms::none());
}

#[test]
fn grant_keeps_only_allowed_words() {
    let scope = ResourceScope::parse("repository:a/b:pull,push,delete,fly").unwrap();
    assert_eq!(perms("p").grant(&scope).actions, vec!["pull"]);
    assert_eq!(Perms::all().grant(&scope).actions, vec!["delete", "pull", "push"]);
    assert!(Perms::none().grant(&scope).actions.is_empty());

    let star = ResourceScope::parse("registry:catalog:*").unwrap();
    let entry = Perms::all().grant(&star);
    assert_eq!((entry.kind.as_str(), entry.name.as_str()), ("registry", "catalog"));
    assert_eq!(entry.actions, vec!["*"]);
    assert_eq!(perms("pu").grant(&star).actions, vec!["pull", "push"]);
}

#[test]
fn wire_enums_round_trip() {
    for role in [MemberRole::Owner, MemberRole::Maintainer, MemberRole::Developer, MemberRole::Guest] {
        assert_eq!(role.as_str().parse::<MemberRole>(), Ok(role));
    }
    assert_eq!("admin".parse::<UserRole>(), Ok(UserRole::Admin));
    assert_eq!("private".parse::<Visibility>(), Ok(Visibility::Private));
    assert_eq!("push".parse::<TokenPermission>(), Ok(TokenPermission::Push));
    let err = "Owner".parse::<MemberRole>().unwrap_err();
    assert_eq!(err.to_string(), "unknown member role \"Owner\"");
    assert!("admin".parse::<TokenPermission>().is_err(), "PATs never carry admin");
    assert_eq!(MemberRole::parse("guest"), Some(MemberRole::Guest));
    assert_eq!(Visibility::parse("Public"), None);
}
