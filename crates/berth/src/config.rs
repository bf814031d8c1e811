//! Layered configuration: defaults → TOML file → `BERTH_*` environment → flags.
//!
//! Nested keys use `__` in the environment (`BERTH_TLS__CERT`). Any key can be
//! read from a file by adding `_FILE` (`BERTH_TLS__KEY_FILE=/run/secrets/key`),
//! which suits Docker and Kubernetes secrets. Unknown keys in the file are
//! errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::cli::ServeArgs;

/// The commented default configuration, printed by `berth config print-default`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../berth.example.toml");

/// Top-level keys (and sections) the environment may set.
const KNOWN_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "external_url",
    "database_url",
    "storage_url",
    "tls",
    "storage",
    "database",
    "registry",
    "auth",
    "rate_limit",
    "secrets",
    "proxy",
    "webhooks",
    "retention",
    "gc",
    "log",
];

/// berth's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Directory holding blobs (`blobs/`, `uploads/`) and `berth.db`.
    pub data_dir: PathBuf,
    /// Public URL clients use to reach berth (for links shown to people).
    pub external_url: Option<String>,
    /// `sqlite:///path/berth.db` (default: `berth.db` in the data dir) or
    /// `postgres://user:pass@host:port/db`.
    pub database_url: Option<String>,
    /// `fs:///path` (default: the data dir) or
    /// `s3://bucket/prefix?endpoint=http://host:port&region=us-east-1&path_style=true`.
    pub storage_url: Option<String>,
    pub tls: TlsConfig,
    pub storage: StorageSection,
    pub database: DatabaseSection,
    pub registry: RegistrySection,
    pub auth: AuthSection,
    pub rate_limit: RateLimitSection,
    pub secrets: SecretsSection,
    pub proxy: ProxySection,
    pub webhooks: WebhooksSection,
    pub retention: RetentionSection,
    pub gc: GcSection,
    pub log: LogConfig,
}

/// Retention policies (docs/operations/retention.md); the policies themselves
/// are managed at `/api/v1/projects/{name}/retention`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// How often every enabled policy is applied (`0` or `off`: never; runs by API only).
    #[serde(deserialize_with = "duration_or_off", serialize_with = "duration_out")]
    pub interval: Duration,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection { interval: Duration::from_secs(3600) }
    }
}

/// Online garbage collection (docs/operations/gc.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// How often a collection runs, on one node (`0` or `off`: by API or CLI only).
    #[serde(deserialize_with = "duration_or_off", serialize_with = "duration_out")]
    pub interval: Duration,
    /// How long something stays after it became unreferenced.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub grace: Duration,
    /// Delete manifests no tag, index or kept referrer reaches.
    pub delete_untagged: bool,
    /// Keep a referrer (signature, SBOM) while its subject exists.
    pub keep_referrers: bool,
    /// Queue entries read, and blobs deleted, per batch.
    pub batch: u32,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// How often a background scrub checks the blob store against the metadata
    /// (`0` or `off`: only `berth fsck`).
    #[serde(deserialize_with = "duration_or_off", serialize_with = "duration_out")]
    pub scrub_interval: Duration,
    /// Whether the background scrub re-hashes every blob (reads all bytes).
    pub scrub_verify_digests: bool,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            interval: Duration::from_secs(600),
            grace: Duration::from_secs(3600),
            delete_untagged: true,
            keep_referrers: true,
            batch: 1000,
            concurrency: 4,
            scrub_interval: Duration::from_secs(7 * 86_400),
            scrub_verify_digests: false,
        }
    }
}

impl GcSection {
    /// The collector's settings.
    pub fn settings(&self) -> berth_gc::GcSettings {
        berth_gc::GcSettings {
            grace: self.grace,
            policy: berth_meta::GcPolicy { delete_untagged: self.delete_untagged, keep_referrers: self.keep_referrers },
            batch: self.batch.clamp(1, 1000),
            concurrency: self.concurrency.clamp(1, 64),
        }
    }
}

/// Webhook delivery (docs/webhooks.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Per attempt, from connecting to the last byte of the answer.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub timeout: Duration,
    /// Attempts before a delivery is given up (the first one included).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub retry_base: Duration,
    /// Longest wait between two attempts.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub retry_max: Duration,
    /// Deliveries in flight per webhook.
    pub concurrency: usize,
    /// How long events and delivery history are kept once delivered.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub retention: Duration,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        let d = berth_webhooks::WebhookConfig::default();
        WebhooksSection {
            timeout: d.timeout,
            max_attempts: d.max_attempts,
            retry_base: d.retry_base,
            retry_max: d.retry_max,
            concurrency: d.concurrency,
            retention: d.retention,
        }
    }
}

/// The pull-through cache (docs/proxy-cache.md). Upstreams listed here are
/// written to the database at every start; more can be added by API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Serve only what is cached; never contact an upstream.
    pub offline: bool,
    /// A cached tag is served without asking the upstream for this long, then revalidated.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub tag_ttl: Duration,
    /// Bytes of cached blobs above which the least recently used are evicted (0: no limit).
    pub max_size: u64,
    /// Evict cached blobs not pulled for this long (0: never).
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub idle_expiry: Duration,
    /// Where blobs being fetched are spooled (default: <data_dir>/proxy-spool).
    pub spool_dir: Option<PathBuf>,
    pub upstreams: Vec<UpstreamEntry>,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            offline: false,
            tag_ttl: Duration::from_secs(300),
            max_size: 0,
            idle_expiry: Duration::ZERO,
            spool_dir: None,
            upstreams: Vec::new(),
        }
    }
}

/// One `[[proxy.upstreams]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    pub name: String,
    pub url: String,
    #[serde(default = "one")]
    pub priority: i64,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub namespace: Option<String>,
    #[serde(default = "yes")]
    pub mirror: bool,
    pub library_prefix: Option<bool>,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<String>,
    #[serde(default = "thirty_secs", deserialize_with = "duration", serialize_with = "duration_out")]
    pub timeout: Duration,
    #[serde(default = "sixteen")]
    pub max_concurrent: i64,
    #[serde(default)]
    pub max_size: i64,
}

fn one() -> i64 {
    1
}
fn yes() -> bool {
    true
}
fn thirty_secs() -> Duration {
    Duration::from_secs(30)
}
fn sixteen() -> i64 {
    16
}

/// The key that encrypts secrets berth keeps in its database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSection {
    /// 32 bytes as 64 hex digits or base64 (`openssl rand -hex 32`). Required when
    /// nodes share a database; give it as `BERTH_SECRETS__KEY_FILE=/run/secrets/berth-key`.
    #[serde(skip_serializing)]
    pub key: Option<String>,
}

/// Request-count limits per user (or IP), API.md §3.2. Active with `auth.mode = "token"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    pub enabled: bool,
    /// `/v2` manifest, catalog, tag-list and upload-start requests per user per hour (0: no limit).
    pub registry_per_hour: u32,
    /// … and per minute (the burst).
    pub registry_per_minute: u32,
    /// `/auth` and `/api` requests per client IP per hour (0: no limit).
    pub api_per_hour: u32,
    /// … and per minute.
    pub api_per_minute: u32,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            enabled: true,
            registry_per_hour: 1000,
            registry_per_minute: 100,
            api_per_hour: 1000,
            api_per_minute: 100,
        }
    }
}

/// Authentication and access control.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `token` (users, projects, tokens enforced) or `none` (no authentication at
    /// all: anyone may push and delete; for throwaway setups only).
    pub mode: String,
    /// The token service name (`service` in the Docker token flow; JWT audience).
    pub service: String,
    /// ES256 key signing berth's tokens (PKCS#8, PEM or DER). Default:
    /// `auth/token-key.pem` in the data dir, or kept in the database when nodes
    /// share one, so every node verifies every node's tokens.
    pub token_key_file: Option<PathBuf>,
    /// Lifetime of scoped registry tokens from `GET /auth`.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub registry_token_ttl: Duration,
    /// Lifetime of login tokens and sessions.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub login_token_ttl: Duration,
    /// A login session ends after this long without requests.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub session_idle: Duration,
    /// Lifetime of OAuth2 refresh tokens (`access_type=offline`).
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub refresh_token_ttl: Duration,
    /// Default lifetime of personal access tokens created without `expires_at`.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub token_default_ttl: Duration,
    /// Reject a login session used from another IP than it was opened from.
    pub bind_session_ip: bool,
    /// Failed logins (per account or per IP, within `failure_window`) after which
    /// a login needs a captcha; 0 turns captchas off.
    pub captcha_after: u32,
    /// Failed logins from one IP (within `failure_window`) that lock the system.
    pub lock_after_ip_failures: u32,
    /// Failed logins on one account (within `failure_window`) that lock the account.
    pub account_lock_after: u32,
    /// While the system is locked, `/v2` is read-only; with this on, pulls are refused too.
    pub lock_blocks_pulls: bool,
    /// Audit every manifest pull as well (pushes and deletes always are).
    pub audit_pulls: bool,
    /// The window failed logins are counted over; a locked account is released
    /// once its failures age out of it.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub failure_window: Duration,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: "token".into(),
            service: "berth".into(),
            token_key_file: None,
            registry_token_ttl: Duration::from_secs(300),
            login_token_ttl: Duration::from_secs(86_400),
            session_idle: Duration::from_secs(1800),
            refresh_token_ttl: Duration::from_secs(90 * 86_400),
            token_default_ttl: Duration::from_secs(90 * 86_400),
            bind_session_ip: true,
            captcha_after: 3,
            lock_after_ip_failures: 5,
            account_lock_after: 10,
            lock_blocks_pulls: false,
            audit_pulls: false,
            failure_window: Duration::from_secs(900),
        }
    }
}

/// Serve HTTPS directly when both paths are set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// fsync blob data before acknowledging a push (off: faster, but a power loss
    /// may lose recently acknowledged blobs; a process crash is safe either way).
    pub fsync: bool,
    /// S3 access key (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3 secret key (else `AWS_SECRET_ACCESS_KEY`); use `BERTH_STORAGE__SECRET_ACCESS_KEY_FILE`.
    #[serde(skip_serializing)]
    pub secret_access_key: Option<String>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { fsync: true, access_key_id: None, secret_access_key: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// Connections in the PostgreSQL pool.
    pub max_connections: u32,
    /// SQLite: sync every commit to disk (off: a power loss may undo the last
    /// commits; process crashes are safe either way).
    pub fsync: bool,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection { max_connections: 16, fsync: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    /// Allow DELETE of manifests, tags and blobs on /v2.
    pub deletes_enabled: bool,
    /// Mount blobs found in any repository when `mount` has no `from`.
    pub automatic_mount: bool,
    /// Idle upload sessions are discarded after this long (`24h`, `90m`, `3600`).
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub upload_expiry: Duration,
    /// How long shutdown waits for in-flight requests.
    #[serde(deserialize_with = "duration", serialize_with = "duration_out")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `berth=debug,info`; `RUST_LOG` wins when set.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:8080".into(),
            data_dir: PathBuf::from("./berth-data"),
            external_url: None,
            database_url: None,
            storage_url: None,
            tls: TlsConfig::default(),
            storage: StorageSection::default(),
            database: DatabaseSection::default(),
            registry: RegistrySection::default(),
            auth: AuthSection::default(),
            rate_limit: RateLimitSection::default(),
            secrets: SecretsSection::default(),
            proxy: ProxySection::default(),
            webhooks: WebhooksSection::default(),
            retention: RetentionSection::default(),
            gc: GcSection::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            deletes_enabled: true,
            automatic_mount: true,
            upload_expiry: Duration::from_secs(24 * 3600),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into() }
    }
}

impl Config {
    /// Loads the layers in order and validates the result.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &args.config {
            if !path.is_file() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("BERTH_").split("__").filter(|key| {
            let key = key.as_str().to_lowercase();
            is_known(&key) && !key.ends_with("_file")
        }));
        for (key, value) in secret_files()? {
            figment = figment.merge(Serialized::default(&key, value));
        }
        if let Some(listen) = &args.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        if let Some(dir) = &args.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if let Some(url) = &args.database_url {
            figment = figment.merge(Serialized::default("database_url", url));
        }
        if let Some(url) = &args.storage {
            figment = figment.merge(Serialized::default("storage_url", url));
        }
        let config: Config = figment.extract().context("could not read configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bail!("tls.cert and tls.key must be set together");
        }
        if !matches!(self.auth.mode.as_str(), "token" | "none") {
            bail!("auth.mode must be \"token\" or \"none\", not {:?}", self.auth.mode);
        }
        if self.auth.service.is_empty() || self.auth.service.contains('"') {
            bail!("auth.service must be a non-empty name without quotes");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\", not {:?}", self.log.format);
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address {:?} is not HOST:PORT (e.g. 0.0.0.0:8080)", self.listen))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("berth.db")
    }

    /// The metadata database URL, defaulting to SQLite in the data dir.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.db_path().display()))
    }

    /// The blob storage URL, defaulting to the data dir.
    pub fn storage_url(&self) -> String {
        self.storage_url.clone().unwrap_or_else(|| format!("fs://{}", self.data_dir.display()))
    }
}

fn is_known(key: &str) -> bool {
    let top = key.split('.').next().unwrap_or(key);
    KNOWN_KEYS.contains(&top)
}

/// `BERTH_X__Y_FILE=path` → (`x.y`, contents of path).
fn secret_files() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, path) in std::env::vars() {
        let Some(key) = name.strip_prefix("BERTH_").and_then(|k| k.strip_suffix("_FILE")) else {
            continue;
        };
        let key = key.to_lowercase().replace("__", ".");
        if !is_known(&key) {
            continue;
        }
        let value = read_secret(Path::new(&path)).with_context(|| format!("{name}: cannot read {path}"))?;
        out.push((key, value));
    }
    Ok(out)
}

fn read_secret(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim_end_matches(['\r', '\n']).to_owned())
}

/// Parses `90`, `90s`, `15m`, `24h` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 24h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!("{s:?} has unknown unit {unit:?} (use s, m, h or d)"));
        }
    };
    Ok(Duration::from_secs(secs))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

/// A duration, or `off` for none (`Duration::ZERO`).
fn duration_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(s) if s.trim().eq_ignore_ascii_case("off") => Ok(Duration::ZERO),
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

fn duration_out<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert_eq!(c.data_dir, PathBuf::from("./berth-data"));
        assert_eq!(c.db_path(), PathBuf::from("./berth-data/berth.db"));
        assert_eq!(c.registry.upload_expiry, Duration::from_secs(86400));
    }

    #[test]
    fn example_file_is_the_default_config() {
        let parsed: Config = Figment::from(Toml::string(DEFAULT_CONFIG_TOML)).extract().unwrap();
        let d = Config::default();
        assert_eq!(parsed.listen, d.listen);
        assert_eq!(parsed.data_dir, d.data_dir);
        assert_eq!(parsed.registry.upload_expiry, d.registry.upload_expiry);
        assert_eq!(parsed.registry.deletes_enabled, d.registry.deletes_enabled);
        assert_eq!(parsed.proxy.tag_ttl, d.proxy.tag_ttl);
        assert_eq!(parsed.proxy.max_size, d.proxy.max_size);
        assert_eq!(parsed.retention.interval, d.retention.interval);
        assert!(parsed.proxy.upstreams.is_empty());
    }

    #[test]
    fn upstreams_from_toml() {
        let text = r#"
            [proxy]
            tag_ttl = "1m"
            [[proxy.upstreams]]
            name = "hub"
            url = "https://registry-1.docker.io"
            [[proxy.upstreams]]
            name = "ghcr"
            url = "https://ghcr.io"
            priority = 2
            timeout = "10s"
        "#;
        let parsed: Config =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)).extract().unwrap();
        assert_eq!(parsed.proxy.tag_ttl, Duration::from_secs(60));
        assert_eq!(parsed.proxy.upstreams.len(), 2);
        assert_eq!(parsed.proxy.upstreams[0].priority, 1);
        assert!(parsed.proxy.upstreams[0].mirror);
        assert_eq!(parsed.proxy.upstreams[1].timeout, Duration::from_secs(10));
    }

    #[test]
    fn retention_interval_can_be_turned_off() {
        let read = |text: &str| -> Config {
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)).extract().unwrap()
        };
        assert_eq!(read("").retention.interval, Duration::from_secs(3600));
        assert_eq!(read("[retention]\ninterval = \"15m\"").retention.interval, Duration::from_secs(900));
        assert_eq!(read("[retention]\ninterval = \"off\"").retention.interval, Duration::ZERO);
        assert_eq!(read("[retention]\ninterval = 0").retention.interval, Duration::ZERO);
        let bad: Result<Config, _> = Figment::from(Toml::string("[retention]\ninterval = \"soon\"")).extract();
        assert!(bad.is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604800)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<Config, _> = Figment::from(Toml::string("lisen = \"x\"")).extract();
        assert!(r.is_err());
    }
}
