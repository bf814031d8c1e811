//! The sqlx connections to the database file, held by berth rather than by a
//! sqlx pool.
//!
//! A pooled connection goes back to its pool through a spawned task that pings
//! it first: one more round trip to the connection's SQLite thread, and two
//! more thread wake-ups, after every query. A connection to a file in this
//! process needs no such check, and the lone writer connection needs no pool
//! at all: its mutex is the write lock that the writer thread's jobs take too.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use crate::MetaError;

/// The writer connection (`None` once closed) behind the write lock.
/// Everything that writes the database takes this lock first, so writes stay
/// serial and never meet `SQLITE_BUSY`.
pub(crate) type WriteLock = Arc<tokio::sync::Mutex<Option<SqliteConnection>>>;

/// Opens the writer connection.
pub(crate) async fn write_lock(options: &SqliteConnectOptions) -> Result<WriteLock, MetaError> {
    Ok(Arc::new(tokio::sync::Mutex::new(Some(options.connect().await?))))
}

/// Holds the write lock, for a write through the writer connection.
pub(crate) async fn write_connection(lock: &WriteLock) -> Result<WriteConnection, MetaError> {
    let guard = lock.clone().lock_owned().await;
    match *guard {
        Some(_) => Ok(WriteConnection(guard)),
        None => Err(closed()),
    }
}

/// Closes the writer connection once no one holds the lock.
pub(crate) async fn close_writer(lock: &WriteLock) {
    if let Some(conn) = lock.lock().await.take() {
        conn.close().await.ok();
    }
}

/// The write lock held, with the writer connection.
pub(crate) struct WriteConnection(tokio::sync::OwnedMutexGuard<Option<SqliteConnection>>);

impl Deref for WriteConnection {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.0.as_ref().expect("checked when locked")
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.0.as_mut().expect("checked when locked")
    }
}

fn closed() -> MetaError {
    MetaError::Unavailable("the database is closed".into())
}

/// Up to a fixed number of read connections, each opened when first needed
/// (an idle node keeps its memory) and kept from then on.
#[derive(Debug)]
pub(crate) struct Readers {
    options: SqliteConnectOptions,
    count: usize,
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
    /// One permit per connection not in use, opened or not.
    available: tokio::sync::Semaphore,
}

impl Readers {
    /// Up to `count` read connections with `options`.
    pub(crate) fn new(options: SqliteConnectOptions, count: usize) -> Self {
        Readers {
            options,
            count,
            idle: std::sync::Mutex::new(Vec::with_capacity(count)),
            available: tokio::sync::Semaphore::new(count),
        }
    }

    /// A read connection, waiting while all are in use.
    pub(crate) async fn get(&self) -> Result<ReadConnection<'_>, MetaError> {
        let permit = self.available.acquire().await.map_err(|_| closed())?;
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        Ok(ReadConnection { conn: Some(conn), readers: self, _permit: permit })
    }

    /// Closes every connection, waiting for those in use.
    pub(crate) async fn close(&self) {
        let Ok(all) = self.available.acquire_many(self.count as u32).await else {
            return;
        };
        all.forget();
        self.available.close();
        let conns = std::mem::take(&mut *self.lock());
        for conn in conns {
            conn.close().await.ok();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A read connection, back with the others when dropped.
pub(crate) struct ReadConnection<'a> {
    conn: Option<SqliteConnection>,
    readers: &'a Readers,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Deref for ReadConnection<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for ReadConnection<'_> {
    fn drop(&mut self) {
        // Before the permit: a waiter woken by it finds the connection idle.
        if let Some(conn) = self.conn.take() {
            self.readers.lock().push(conn);
        }
    }
}
