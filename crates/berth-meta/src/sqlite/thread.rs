//! A thread that runs whole SQLite write transactions, one hand-off each.
//!
//! sqlx drives every SQLite connection from a thread of its own and sends it
//! each statement, `BEGIN` and `COMMIT` separately, plus a ping when the
//! connection goes back to its pool: a round trip between threads per step,
//! which costs more than the step. The writes on every push path (the
//! manifest PUT and the blob link) instead go to this thread as one job, with
//! the decisions between their statements made here, in Rust, by the job.
//!
//! The thread owns a second writer connection to the same database (rusqlite
//! on the same bundled SQLite). SQLite allows one writer at a time, so jobs
//! run only while holding the write lock around sqlx's writer connection
//! ([`super::conns`]): the two never write at once, and neither waits on the
//! other's file lock.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::MetaError;

/// Work for the thread.
enum Message {
    Job(Box<dyn FnOnce(&mut Session) + Send>),
    /// Close the connection (checkpointing the WAL if it is the last one) and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The thread's connection and how its commits are synced right now.
struct Session {
    conn: rusqlite::Connection,
    /// `synchronous=FULL` is in effect (else `NORMAL`).
    full_sync: bool,
}

impl Session {
    fn sync(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.full_sync != full {
            self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full_sync = full;
        }
        Ok(())
    }
}

/// A handle to the writer thread; the thread stops when the last handle is
/// dropped or on [`WriterThread::close`].
#[derive(Debug)]
pub(super) struct WriterThread {
    jobs: mpsc::Sender<Message>,
    /// Commits are synced to disk unless a job is relaxed.
    durable: bool,
}

impl WriterThread {
    /// Opens the (already migrated) database at `path` and starts the thread.
    pub(super) fn start(path: &Path, durable: bool) -> Result<Self, MetaError> {
        // Its WAL frames go out with one write per commit ([`berth_walvfs`]).
        berth_walvfs::register()
            .map_err(|rc| MetaError::Unavailable(format!("cannot register the WAL VFS (SQLite error {rc})")))?;
        let conn =
            rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), berth_walvfs::NAME)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
        // The statements of every job stay prepared.
        conn.set_prepared_statement_cache_capacity(64);
        let mut session = Session { conn, full_sync: durable };
        let (jobs, inbox) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("berth-sqlite-writer".into())
            .spawn(move || {
                while let Ok(message) = inbox.recv() {
                    match message {
                        // A job that panics loses its answer (its caller sees an error);
                        // its transaction rolls back as it unwinds, and the thread goes on.
                        Message::Job(job) => {
                            if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut session))).is_err() {
                                tracing::error!("a SQLite write job panicked");
                            }
                        }
                        Message::Close(done) => {
                            drop(session);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(|e| MetaError::Unavailable(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(WriterThread { jobs, durable })
    }

    /// Runs `job` on the thread and returns what it returns. A `relaxed` job
    /// commits without waiting for the disk (its caller syncs the WAL after).
    /// The job must hold the write lock ([`super::conns`]) while it runs.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        relaxed: bool,
        job: impl FnOnce(&mut rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let full_sync = self.durable && !relaxed;
        let message = Message::Job(Box::new(move |session: &mut Session| {
            let result = session.sync(full_sync).map_err(MetaError::from).and_then(|()| job(&mut session.conn));
            let _ = answer.send(result);
        }));
        self.jobs.send(message).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Closes the thread's connection and stops the thread.
    pub(super) async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn stopped() -> MetaError {
    MetaError::Unavailable("the SQLite writer thread has stopped".into())
}
