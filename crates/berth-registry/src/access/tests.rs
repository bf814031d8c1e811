//! The login-hardening flows against a real (SQLite) database: captchas with
//! known answers, TOTP replay, recovery codes, the admin allow-list.

use std::sync::Arc;

use berth_access::jwt::TokenSigner;
use berth_meta::{Metadata, NewUser, SqliteMeta};

use super::*;

struct Fixture {
    access: AccessService,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(SqliteMeta::open_with(&dir.path().join("t.db"), false).await.unwrap());
    let access = AccessService::new(meta, TokenSigner::generate().unwrap(), AccessConfig::default());
    Fixture { access, _dir: dir }
}

async fn add_user(access: &AccessService, name: &str, password: &str) -> i64 {
    let user = NewUser {
        username: name.into(),
        email: None,
        password_hash: berth_access::password::hash_password(password).unwrap(),
        role: "admin".into(),
        must_change_password: false,
    };
    access.meta.create_user(&user, &Actor::system().draft("user_created", "user.create", name)).await.unwrap().id
}

fn actor(ip: &str) -> Actor {
    Actor { user_id: None, username: "alice".into(), ip: ip.into(), user_agent: "test".into() }
}

fn attempt(password: &str, otp: Option<&str>, captcha: Option<(&str, &str)>) -> LoginRequest {
    LoginRequest {
        username: "alice".into(),
        password: password.into(),
        otp: otp.map(str::to_owned),
        captcha_id: captcha.map(|(id, _)| id.to_owned()),
        captcha: captcha.map(|(_, answer)| answer.to_owned()),
        ip: "10.0.0.7".into(),
        user_agent: "test".into(),
        ttl: std::time::Duration::from_secs(60),
    }
}

#[tokio::test]
async fn a_captcha_is_solved_once_and_only_with_its_answer() {
    let f = fixture().await;
    let c = f.access.captcha_with_answer("KXR3W9").await.unwrap();
    assert!(c.id.starts_with("c_") && c.image.starts_with("data:image/svg+xml;base64,"));
    assert_eq!(c.expires_in, 300);
    assert!(f.access.solve_captcha(&c.id, "kxr3w9").await.unwrap(), "case does not matter");
    assert!(!f.access.solve_captcha(&c.id, "KXR3W9").await.unwrap(), "single use");
    let c = f.access.captcha_with_answer("KXR3W9").await.unwrap();
    assert!(!f.access.solve_captcha(&c.id, "KXR3W7").await.unwrap());
    assert!(!f.access.solve_captcha(&c.id, "KXR3W9").await.unwrap(), "a wrong answer burns the challenge");
    assert!(!f.access.solve_captcha("c_unknown", "KXR3W9").await.unwrap());
    // An expired challenge is refused even with the right answer.
    let c = f.access.captcha_with_answer("AAAAAA").await.unwrap();
    let key = format!("captcha:{}", c.id);
    let stored = f.access.meta.setting(&key).await.unwrap().unwrap();
    let (hash, _) = stored.split_once(':').unwrap();
    f.access.meta.put_setting(&key, &format!("{hash}:1"), None).await.unwrap();
    assert!(!f.access.solve_captcha(&c.id, "AAAAAA").await.unwrap());
}

#[tokio::test]
async fn logins_need_a_captcha_after_three_failures() {
    let f = fixture().await;
    add_user(&f.access, "alice", "right-password").await;
    for _ in 0..3 {
        let e = f.access.login(&attempt("wrong", None, None)).await.unwrap_err();
        assert!(matches!(e, LoginFailure::InvalidCredentials { .. }), "{e:?}");
    }
    let e = f.access.login(&attempt("right-password", None, None)).await.unwrap_err();
    assert_eq!(e, LoginFailure::CaptchaRequired { remaining_attempts: 1 });
    // The right password with a solved captcha gets in (before the IP lock fires).
    let c = f.access.captcha_with_answer("HKT4MN").await.unwrap();
    let ok = f.access.login(&attempt("right-password", None, Some((&c.id, "HKT4MN")))).await.unwrap();
    assert!(ok.lock_warning);
    assert!(!f.access.solve_captcha(&c.id, "HKT4MN").await.unwrap(), "the challenge was consumed");
    // A success cleared the account's failures; wrong and missing captchas count towards the lock.
    for left in [4, 3, 2] {
        let e = f.access.login(&attempt("wrong", None, None)).await.unwrap_err();
        assert_eq!(e, LoginFailure::InvalidCredentials { remaining_attempts: left });
    }
    let e = f.access.login(&attempt("right-password", None, Some((&c.id, "HKT4MN")))).await.unwrap_err();
    assert_eq!(e, LoginFailure::CaptchaInvalid { remaining_attempts: 1 });
    let e = f.access.login(&attempt("right-password", None, None)).await.unwrap_err();
    assert_eq!(e, LoginFailure::CaptchaRequired { remaining_attempts: 0 });
    assert!(f.access.lock_status().await.unwrap().is_locked);
    assert_eq!(f.access.login(&attempt("right-password", None, None)).await.unwrap_err(), LoginFailure::SystemLocked);
}

#[tokio::test]
async fn totp_codes_are_not_replayed_and_recovery_codes_work_once() {
    let f = fixture().await;
    let id = add_user(&f.access, "alice", "right-password").await;
    let me = Actor { user_id: Some(id), ..actor("10.0.0.7") };
    let setup = f.access.setup_totp(id, &me).await.unwrap();
    assert!(setup.otpauth_url.starts_with("otpauth://totp/berth:alice?secret="));
    let now = berth_meta::now_unix();
    let code = |at: i64| berth_access::totp::code_at(&setup.secret, at).unwrap();
    assert_eq!(f.access.enable_totp(id, "000000x", &me).await, Err(TwoFactorError::OtpInvalid));
    let recovery = f.access.enable_totp(id, &code(now - 30), &me).await.unwrap();
    assert_eq!(recovery.len(), RECOVERY_CODES);
    assert_eq!(f.access.setup_totp(id, &me).await, Err(TwoFactorError::AlreadyEnabled));

    assert_eq!(f.access.login(&attempt("right-password", None, None)).await.unwrap_err(), LoginFailure::OtpRequired);
    let e = f.access.login(&attempt("right-password", Some(&code(now - 30)), None)).await.unwrap_err();
    assert_eq!(e, LoginFailure::OtpInvalid, "the enabling code's step is used up");
    f.access.login(&attempt("right-password", Some(&code(now)), None)).await.unwrap();
    let e = f.access.login(&attempt("right-password", Some(&code(now)), None)).await.unwrap_err();
    assert_eq!(e, LoginFailure::OtpInvalid, "replayed");

    let spare = recovery[3].to_uppercase();
    f.access.login(&attempt("right-password", Some(&spare), None)).await.unwrap();
    let e = f.access.login(&attempt("right-password", Some(&spare), None)).await.unwrap_err();
    assert!(matches!(e, LoginFailure::OtpInvalid | LoginFailure::CaptchaRequired { .. }), "{e:?}");
    let user = f.access.meta.user_by_id(id).await.unwrap().unwrap();
    let left: Vec<String> = serde_json::from_str(user.recovery_codes.as_deref().unwrap()).unwrap();
    assert_eq!(left.len(), RECOVERY_CODES - 1);

    assert_eq!(f.access.disable_totp(id, "wrong", &recovery[0], &me).await, Err(TwoFactorError::BadPassword));
    assert_eq!(f.access.disable_totp(id, "right-password", "nope", &me).await, Err(TwoFactorError::OtpInvalid));
    f.access.disable_totp(id, "right-password", &recovery[0], &me).await.unwrap();
    let user = f.access.meta.user_by_id(id).await.unwrap().unwrap();
    assert!(!user.totp_enabled && user.totp_secret.is_none() && user.recovery_codes.is_none());
}

#[tokio::test]
async fn the_allowlist_refuses_bad_blocks_and_self_exclusion() {
    let f = fixture().await;
    let me = actor("10.1.2.3");
    assert!(f.access.admin_ip_allowed("192.0.2.1").await.unwrap(), "off by default");
    let bad = AllowList { enabled: true, cidrs: vec!["10.0.0.0/40".into()] };
    assert!(matches!(f.access.set_allowlist(bad, &me).await, Err(AllowListError::BadCidr(_))));
    let elsewhere = AllowList { enabled: true, cidrs: vec!["192.168.0.0/16".into()] };
    assert!(matches!(f.access.set_allowlist(elsewhere.clone(), &me).await, Err(AllowListError::ExcludesCaller(_))));
    let off = AllowList { enabled: false, ..elsewhere };
    f.access.set_allowlist(off, &me).await.unwrap();
    let on = AllowList { enabled: true, cidrs: vec![" 10.0.0.0/8".into()] };
    assert_eq!(f.access.set_allowlist(on, &me).await.unwrap().cidrs, vec!["10.0.0.0/8".to_owned()]);
    assert!(f.access.admin_ip_allowed("10.200.0.1").await.unwrap());
    assert!(!f.access.admin_ip_allowed("192.0.2.1").await.unwrap());
    assert!(f.access.allowlist().await.unwrap().enabled);
}
