//! Opening the metadata database and the blob store named by their URLs.
//!
//! Errors name the backend that failed (with passwords redacted), so an operator
//! knows at once whether the database or the object store is the problem.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_meta::{Metadata, PostgresMeta, SqliteMeta};
use berth_storage::{BlobStore, FsStore, S3Config, S3Store};

use crate::config::Config;

/// An open metadata backend.
#[derive(Debug, Clone)]
pub enum MetaBackend {
    Sqlite(SqliteMeta),
    Postgres(PostgresMeta),
}

impl MetaBackend {
    pub fn as_dyn(&self) -> Arc<dyn Metadata> {
        match self {
            MetaBackend::Sqlite(m) => Arc::new(m.clone()),
            MetaBackend::Postgres(m) => Arc::new(m.clone()),
        }
    }

    /// True when several berth nodes may share this database.
    pub fn is_shared(&self) -> bool {
        matches!(self, MetaBackend::Postgres(_))
    }

    pub async fn close(&self) {
        match self {
            MetaBackend::Sqlite(m) => m.close().await,
            MetaBackend::Postgres(m) => m.close().await,
        }
    }
}

/// Hides the password in `scheme://user:password@host/…`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Opens the metadata database named by `url`, creating and migrating it.
pub async fn open_metadata(url: &str, config: &Config) -> anyhow::Result<MetaBackend> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let meta = SqliteMeta::open_with(&path, config.database.fsync)
            .await
            .with_context(|| format!("cannot open the metadata database {url}"))?;
        Ok(MetaBackend::Sqlite(meta))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let meta = PostgresMeta::connect(url, config.database.max_connections)
            .await
            .with_context(|| format!("cannot connect to the metadata database {}", redact(url)))?;
        Ok(MetaBackend::Postgres(meta))
    } else {
        bail!("database URL {} must start with sqlite:// or postgres://", redact(url))
    }
}

/// Opens the blob store named by `url`.
pub async fn open_blob_store(url: &str, config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    if let Some(path) = url.strip_prefix("fs://") {
        let store = FsStore::open_with(path, config.storage.fsync)
            .await
            .with_context(|| format!("cannot open blob storage {url}"))?;
        Ok(Arc::new(store))
    } else if url.starts_with("s3://") {
        let s3 = parse_s3_url(url, config)?;
        let endpoint = s3.endpoint.clone().unwrap_or_else(|| "AWS".into());
        let store = S3Store::connect(s3)
            .await
            .with_context(|| format!("cannot reach blob storage {url} (endpoint {endpoint})"))?;
        Ok(Arc::new(store))
    } else {
        bail!("storage URL {url} must start with fs:// or s3://")
    }
}

/// `s3://bucket/prefix?endpoint=…&region=…&path_style=true`.
pub fn parse_s3_url(url: &str, config: &Config) -> anyhow::Result<S3Config> {
    let rest = url.strip_prefix("s3://").context("not an s3:// URL")?;
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
    if bucket.is_empty() {
        bail!("storage URL {url} names no bucket (s3://BUCKET/prefix)");
    }
    let mut s3 = S3Config {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        region: "us-east-1".into(),
        access_key_id: config.storage.access_key_id.clone(),
        secret_access_key: config.storage.secret_access_key.clone(),
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "endpoint" => s3.endpoint = Some(value.into_owned()),
            "region" => s3.region = value.into_owned(),
            "path_style" => {
                s3.path_style = value.parse().with_context(|| format!("path_style={value} is not true/false"))?
            }
            other => bail!("storage URL {url}: unknown parameter {other:?} (endpoint, region, path_style)"),
        }
    }
    Ok(s3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://berth:secret@db:5432/berth"), "postgres://berth:***@db:5432/berth");
        assert_eq!(redact("sqlite:///var/lib/berth.db"), "sqlite:///var/lib/berth.db");
        assert_eq!(redact("postgres://berth@db/berth"), "postgres://berth@db/berth");
    }

    #[test]
    fn parses_s3_urls() {
        let c = Config::default();
        let s3 =
            parse_s3_url("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=true", &c)
                .unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((s3.region.as_str(), s3.path_style), ("eu-west-1", true));
        assert!(parse_s3_url("s3:///x", &c).is_err());
        assert!(parse_s3_url("s3://b?colour=red", &c).is_err());
        assert!(parse_s3_url("s3://b?path_style=maybe", &c).is_err());
    }
}
