//! The embedded SQLite backend.
//!
//! One table row per node: uuid (16-byte BLOB; byte order equals uuid order, so
//! pagination is a range scan), name, the columns filters use (provision_state,
//! share, has_error, in_flight), the status version, the spec and status as compact
//! JSON, and the ramdisk agent token in its own column (kept out of the status JSON
//! so it never rides along when a status is logged or exported).
//!
//! Connections: every write goes through ONE connection held outside the pool (its page
//! cache stays warm, and it costs no liveness pings); reads use a pool. A status batch
//! that fits one statement is one guarded `UPDATE` (all rows or none) without a
//! surrounding transaction: one round trip to the connection's thread per commit.
//! Durability: WAL with `synchronous=NORMAL`, so a committed write survives a crash of
//! the process; only an OS crash or power loss can lose the last commits (never
//! corrupting the file).
//!
//! Layout: `mod.rs` the store and opening it; `writer.rs` the one write connection;
//! `schema.rs` migrations and the start-up key check; `rows.rs` queries and row decoding
//! shared by the trait methods; `store.rs` the [`Store`](crate::Store) implementation.

mod rows;
mod schema;
mod store;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::codec::{SealedTokens, Secrets, db};
use crate::{SecretKeys, StoreError, sqlite_path};
use writer::Writer;

/// `mmap_size`: the database file is mapped (read-only) up to this size.
const MMAP_BYTES: &str = "268435456";

/// Rows per multi-row statement: 8 parameters each stays far below SQLite's
/// 32,766-parameter limit while amortising the per-statement cost.
pub(super) const BATCH_ROWS: usize = 500;

/// SQLite store in `data_dir/coordinator.sqlite`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: sqlx::SqlitePool,
    /// Writes: one connection (see [`SqliteStore::open_with`]).
    writer: Arc<Writer>,
    /// Seal and open secrets at rest; `None` stores them as given (see [`SqliteStore::open`]).
    keys: Option<Arc<SecretKeys>>,
    tokens: Arc<SealedTokens>,
}

/// Creates the database file readable and writable by its owner only (0600), or tightens
/// an existing one and its WAL files: node definitions are in it (BMC addresses, user
/// names and, without an at-rest key, passwords), and SQLite gives the WAL and shared-memory
/// files the database file's mode.
fn restrict_to_owner(data_dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let db = sqlite_path(data_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(io(&db))?;
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(io(&p))?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens without a secret key: secrets are stored as given. Refuses a store that holds
    /// sealed secrets. The coordinator never uses this (it always has a key); it is for
    /// tools and tests. See [`SqliteStore::open_with`].
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, None).await
    }

    /// Opens (creating the dir and file if needed) and migrates to the latest schema.
    /// Refuses a database written by a newer schema. With `keys`, secrets are sealed at
    /// rest; the keys are checked against the store first (wrong key, or a key that
    /// sealed stored values missing: [`StoreError::SecretKey`]).
    pub async fn open_with(data_dir: &Path, keys: Option<SecretKeys>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        restrict_to_owner(data_dir)?;
        let opts = SqliteConnectOptions::new()
            .filename(sqlite_path(data_dir))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a commit survives a process crash; only an OS crash or
            // power loss can drop the last few transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-16384") // 16 MiB page cache per connection
            // Pages of the database file are read in place instead of being copied
            // into each connection's cache (which a commit by another connection
            // empties): address space only, not memory.
            .pragma("mmap_size", MMAP_BYTES)
            // A listing of thousands of rows does not stall the connection's thread
            // every 50 rows until the async side has caught up.
            .row_buffer_size(1024);
        // Every write goes through ONE connection: SQLite has one writer anyway, and a
        // commit empties the page cache of every OTHER connection, so a writer that
        // is always the same connection keeps its cache warm (no re-reading of the
        // B-tree for each write). Writers queue on its mutex, not on SQLite's lock.
        let writer = Writer::open(opts.clone()).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A local file does not hang up: no liveness ping before each query.
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(db("open database"))?;
        let store = Self {
            pool,
            writer: Arc::new(writer),
            keys: keys.map(Arc::new),
            tokens: Arc::default(),
        };
        store.migrate().await?;
        store.check_keys().await?;
        Ok(store)
    }

    pub(super) fn keys(&self) -> Option<&SecretKeys> {
        self.keys.as_deref()
    }

    pub(super) fn opened(&self) -> Secrets<'_> {
        Secrets::Open(self.keys())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}
