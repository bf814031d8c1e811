use berth_core::Digest;

/// A metadata failure.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest references blobs or manifests the repository cannot see.
    #[error("manifest references unknown content: {0:?}")]
    MissingReferences(Vec<Digest>),
    /// The database holds a value that does not parse (a bug or manual edit).
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
