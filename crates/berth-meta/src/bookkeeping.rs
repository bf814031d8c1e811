//! Writer connections for bookkeeping commits: upload sessions and commit
//! markers, which no acknowledged response depends on.
//!
//! On SQLite such a commit does not wait for the disk (`synchronous=NORMAL`).
//! The WAL is appended in order, so the next durable commit (a blob link, a
//! manifest, a tag) syncs these frames with its own; a process crash loses
//! nothing, and a power loss can only forget an unfinished upload session,
//! whose client then starts that blob over. On the single SQLite writer this
//! takes three of the four fsyncs of a blob push off the serial path.

use sqlx::pool::PoolConnection;
use sqlx::{Database, Executor, Pool};

use crate::MetaError;

/// A writer connection that commits without waiting for the disk until
/// [`Bookkeeping::release`] makes its commits durable again.
pub(crate) struct Bookkeeping<DB: Database> {
    conn: PoolConnection<DB>,
    /// The statement that restores durable commits, while they are relaxed.
    restore: Option<&'static str>,
}

impl<DB: Database> Bookkeeping<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    /// Takes a connection from `pool`, running `relax.0` on it now and
    /// `relax.1` on release (`None`: commits stay as they are).
    pub(crate) async fn acquire(
        pool: &Pool<DB>,
        relax: Option<(&'static str, &'static str)>,
    ) -> Result<Self, MetaError> {
        let mut conn = pool.acquire().await?;
        if let Some((relaxing, _)) = relax {
            sqlx::raw_sql(relaxing).execute(&mut *conn).await?;
        }
        Ok(Bookkeeping { conn, restore: relax.map(|(_, restoring)| restoring) })
    }

    /// Makes the connection's commits durable again and returns it to the pool.
    pub(crate) async fn release(mut self) {
        if let Some(restoring) = self.restore
            && sqlx::raw_sql(restoring).execute(&mut *self.conn).await.is_ok()
        {
            self.restore = None;
        }
    }
}

impl<DB: Database> std::ops::Deref for Bookkeeping<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> std::ops::DerefMut for Bookkeeping<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

impl<DB: Database> Drop for Bookkeeping<DB> {
    fn drop(&mut self) {
        if self.restore.is_some() {
            // Never hand a relaxed connection back to the pool.
            self.conn.close_on_drop();
        }
    }
}
