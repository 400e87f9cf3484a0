//! The one write connection.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, SqliteConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::StoreError;
use crate::codec::db;

/// The one connection every write goes through, held outside any pool: a pooled query
/// costs two extra round trips to the connection's thread (a liveness ping when taken
/// and another when given back), and the write path runs several times per deploy.
pub(super) struct Writer {
    pub(super) opts: SqliteConnectOptions,
    pub(super) conn: Mutex<Option<SqliteConnection>>,
    /// The connection's thread died: the next write opens a new connection.
    pub(super) broken: AtomicBool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(super) async fn open(opts: SqliteConnectOptions) -> Result<Self, StoreError> {
        let conn = SqliteConnection::connect_with(&opts)
            .await
            .map_err(db("open database"))?;
        Ok(Self {
            opts,
            conn: Mutex::new(Some(conn)),
            broken: AtomicBool::new(false),
        })
    }

    /// The write connection, exclusively: writers queue here.
    pub(super) async fn lock(&self) -> Result<MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        let mut conn = self.conn.lock().await;
        if self.broken.swap(false, Ordering::Relaxed) {
            *conn = None;
        }
        if conn.is_none() {
            *conn = Some(
                SqliteConnection::connect_with(&self.opts)
                    .await
                    .map_err(db("reopen the write connection"))?,
            );
        }
        MutexGuard::try_map(conn, Option::as_mut).map_err(|_| StoreError::Database {
            op: "open the write connection",
            source: sqlx::Error::WorkerCrashed,
        })
    }

    /// Passes an error on, noting a dead connection.
    pub(super) fn seen(&self, e: sqlx::Error) -> sqlx::Error {
        if matches!(e, sqlx::Error::WorkerCrashed) {
            self.broken.store(true, Ordering::Relaxed);
        }
        e
    }

    pub(super) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}
