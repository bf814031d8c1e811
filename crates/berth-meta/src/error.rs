use berth_core::Digest;

/// A metadata failure.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest references blobs or manifests the repository cannot see.
    #[error("manifest references unknown content: {0:?}")]
    MissingReferences(Vec<Digest>),
    /// A tag immutability rule protects this tag from being moved or deleted.
    #[error("tag {0:?} is immutable")]
    ImmutableTag(String),
    /// The manifest is a child of an index in the same repository (the index's
    /// digest): delete the index first.
    #[error("manifest is referenced by index {0}")]
    ReferencedByIndex(String),
    /// A project's hard limit refused the change: `storage`, `repositories` or `tags`.
    #[error("project quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A uniqueness rule or invariant refused the change (name taken, last admin).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database holds a value that does not parse (a bug or manual edit).
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The database could not be reached (down, restarting, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// An error of the SQLite writer thread's connection.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// How the quota triggers (migration 0011) mark their refusals.
const QUOTA_MARK: &str = "berth-quota:";

/// The refusal a quota trigger's message (holding [`QUOTA_MARK`]) names.
fn quota_refusal(message: &str) -> MetaError {
    let kind = message.split(QUOTA_MARK).nth(1).unwrap_or("").split_whitespace().next();
    MetaError::QuotaExceeded(kind.unwrap_or("storage").to_owned())
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                MetaError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                // Postgres: admin shutdown / cannot connect now / connection exceptions.
                MetaError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref db) if db.message().contains(QUOTA_MARK) => quota_refusal(db.message()),
            other => MetaError::Database(other),
        }
    }
}

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e {
            rusqlite::Error::SqliteFailure(_, Some(ref message)) if message.contains(QUOTA_MARK) => {
                quota_refusal(message)
            }
            rusqlite::Error::SqliteFailure(ref failure, _)
                if matches!(failure.code, DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) =>
            {
                MetaError::Unavailable(e.to_string())
            }
            other => MetaError::Sqlite(other),
        }
    }
}
