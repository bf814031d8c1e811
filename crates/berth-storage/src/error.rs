use std::io;

/// A storage failure, normalised so callers never match on backend errors.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found in blob store")]
    NotFound,
    #[error("blob store is out of space")]
    Full,
    #[error("blob store I/O error: {0}")]
    Io(io::Error),
    /// The backend (e.g. an S3 endpoint) could not be reached or refused the request.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound)
    }
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => StorageError::NotFound,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::Full,
            _ => StorageError::Io(e),
        }
    }
}
