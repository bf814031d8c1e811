//! Building the access service at start: the token signing key, the first
//! admin and the recovery key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_access::jwt::TokenSigner;
use berth_registry::access::{AccessConfig, AccessService, AuthMode};

use crate::backends::MetaBackend;
use crate::config::Config;

/// The settings row holding the signing key when nodes share a database.
const KEY_SETTING: &str = "token_signing_key_pkcs8";
/// Permission and credential lookups are reused this long on a shared database
/// (a revoked token or changed role takes effect on other nodes within it).
const SHARED_CACHE_TTL: Duration = Duration::from_secs(2);
/// … and this long on a node alone with its database (changes there invalidate at once).
const LOCAL_CACHE_TTL: Duration = Duration::from_secs(30);

/// The access service for `config`, bootstrapped (first admin, recovery key).
pub async fn open(config: &Config, meta: &MetaBackend) -> anyhow::Result<AccessService> {
    let auth = &config.auth;
    // Without authentication no token is ever issued: an in-memory key will do.
    let signer = if auth.mode == "none" {
        TokenSigner::generate().context("cannot generate a token key")?
    } else {
        signer(config, meta).await?
    };
    let access_config = AccessConfig {
        mode: if auth.mode == "none" { AuthMode::None } else { AuthMode::Token },
        service: auth.service.clone(),
        issuer: auth.service.clone(),
        registry_token_ttl: auth.registry_token_ttl,
        login_token_ttl: auth.login_token_ttl,
        session_idle: auth.session_idle,
        refresh_token_ttl: auth.refresh_token_ttl,
        pat_default_ttl: auth.token_default_ttl,
        bind_session_ip: auth.bind_session_ip,
        cache_ttl: if meta.is_shared() { SHARED_CACHE_TTL } else { LOCAL_CACHE_TTL },
        captcha_after: auth.captcha_after,
        lock_after_ip_failures: auth.lock_after_ip_failures,
        account_lock_after: auth.account_lock_after,
        lock_blocks_pulls: auth.lock_blocks_pulls,
        audit_pulls: auth.audit_pulls,
        failure_window: auth.failure_window,
        ..AccessConfig::default()
    };
    let access = AccessService::new(timed(meta), signer, access_config);
    if !access.enabled() {
        tracing::warn!("auth.mode = \"none\": anyone who can reach this port may push, pull and delete");
        return Ok(access);
    }
    let supplied = std::env::var("BERTH_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    if let Some(password) = &supplied {
        berth_access::password::check_password_policy(password)
            .map_err(|e| anyhow::anyhow!("BERTH_ADMIN_PASSWORD: {e}"))?;
    }
    let boot = access.bootstrap(supplied.as_deref()).await.context("could not create the first admin")?;
    // Printed once on the terminal, never through the log pipeline.
    if let Some((user, password)) = &boot.generated_admin {
        eprintln!(
            "\n  berth: created the first admin.\n    username: {user}\n    password: {password}\n  \
             Change it at first login. It is not shown again.\n"
        );
    }
    if boot.supplied_admin {
        tracing::info!("created the first admin from BERTH_ADMIN_PASSWORD");
    }
    if let Some(key) = &boot.recovery_key {
        eprintln!(
            "  berth: recovery key (unlocks a locked system; store it offline, it is not shown again):\n    {key}\n"
        );
    }
    Ok(access)
}

/// The ES256 signing key: `auth.token_key_file`; else kept in the database when
/// nodes share it; else `<data_dir>/auth/token-key.pem`.
async fn signer(config: &Config, meta: &MetaBackend) -> anyhow::Result<TokenSigner> {
    if let Some(path) = &config.auth.token_key_file {
        return TokenSigner::load_or_generate(path)
            .with_context(|| format!("cannot load the token key {}", path.display()));
    }
    if meta.is_shared() {
        return shared_signer(config, meta).await;
    }
    let path: PathBuf = config.data_dir.join("auth").join("token-key.pem");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    TokenSigner::load_or_generate(&path).with_context(|| format!("cannot load the token key {}", path.display()))
}

/// One key for every node sharing the database: the first node to start stores
/// it, sealed with the secrets key (so a database dump alone cannot mint
/// tokens), and the others read it.
async fn shared_signer(config: &Config, meta: &MetaBackend) -> anyhow::Result<TokenSigner> {
    use berth_access::sealed::SecretsKey;
    let Some(key_text) = config.secrets.key.as_deref() else {
        anyhow::bail!(
            "nodes sharing a database keep the token key in it, encrypted with secrets.key: set the same key on \
             every node, e.g. BERTH_SECRETS__KEY_FILE=/run/secrets/berth-key holding `openssl rand -hex 32` \
             (here is one: {}), or set auth.token_key_file to a key file every node can read",
            SecretsKey::generate_text()
        );
    };
    let secrets = SecretsKey::parse(key_text).map_err(|e| anyhow::anyhow!("secrets.key: {e}"))?;
    let meta = meta.as_dyn();
    if meta.setting(KEY_SETTING).await?.is_none() {
        let der = TokenSigner::generate_pkcs8_der().context("cannot generate a token key")?;
        // Insert-if-absent: if two nodes race, both read back the winner below.
        meta.put_setting_if_absent(KEY_SETTING, &secrets.seal(KEY_SETTING, &der)).await?;
    }
    let stored = meta.setting(KEY_SETTING).await?.context("token key missing from the database")?;
    let der = secrets.open(KEY_SETTING, stored.trim()).map_err(|e| {
        anyhow::anyhow!("cannot decrypt the token key in the database ({e}): is secrets.key the same on every node?")
    })?;
    TokenSigner::from_pkcs8_der(&der).context("token key in the database is not a PKCS#8 EC key")
}

/// The metadata backend with every call timed (`berth_db_operation_duration_seconds`).
fn timed(meta: &MetaBackend) -> std::sync::Arc<dyn berth_meta::Metadata> {
    std::sync::Arc::new(berth_meta::timed::Timed::new(meta.as_dyn()))
}
