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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coordinator_core::{AgentId, Node, NodeId, NodeSpec, NodeStatus};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection as _, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use uuid::Uuid;

use crate::codec::{
    SealedTokens, Secrets, create_batch_error, db, decode_node, encode_status, to_i64,
};
use crate::secrets::{KEY_CHECK_AAD, KEY_CHECK_PLAIN, SEALED_PREFIX};
use crate::{NodeFilter, SecretKeys, Store, StoreError, encode_spec, sqlite_path};

/// Schema migrations, applied in order; each runs once, in its own transaction,
/// and bumps `schema_version`. Never edit a released entry: append a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE nodes (
        uuid            BLOB PRIMARY KEY NOT NULL,
        name            TEXT UNIQUE,
        provision_state TEXT NOT NULL,
        share           TEXT,
        has_error       INTEGER NOT NULL DEFAULT 0,
        in_flight       INTEGER NOT NULL DEFAULT 0,
        version         INTEGER NOT NULL,
        spec            TEXT NOT NULL,
        status          TEXT NOT NULL,
        agent_token     TEXT
    );
    CREATE INDEX nodes_by_state ON nodes (provision_state);
    CREATE INDEX nodes_by_share ON nodes (share) WHERE share IS NOT NULL;
    CREATE INDEX nodes_in_flight ON nodes (uuid) WHERE in_flight = 1;
    CREATE TABLE agents (
        id      TEXT PRIMARY KEY NOT NULL,
        drained INTEGER NOT NULL
    );
    "#,
    ),
    // One row per secret key that has sealed values here: a value sealed by that key
    // (`key_check`) tells a wrong key file from the right one at start-up.
    (
        2,
        r#"
    CREATE TABLE secret_keys (
        id        TEXT PRIMARY KEY NOT NULL,
        key_check TEXT NOT NULL
    );
    "#,
    ),
];

/// `mmap_size`: the database file is mapped (read-only) up to this size.
const MMAP_BYTES: &str = "268435456";

/// Rows per multi-row statement: 8 parameters each stays far below SQLite's
/// 32,766-parameter limit while amortising the per-statement cost.
const BATCH_ROWS: usize = 500;

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

/// The one connection every write goes through, held outside any pool: a pooled query
/// costs two extra round trips to the connection's thread (a liveness ping when taken
/// and another when given back), and the write path runs several times per deploy.
struct Writer {
    opts: SqliteConnectOptions,
    conn: Mutex<Option<SqliteConnection>>,
    /// The connection's thread died: the next write opens a new connection.
    broken: AtomicBool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    async fn open(opts: SqliteConnectOptions) -> Result<Self, StoreError> {
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
    async fn lock(&self) -> Result<MappedMutexGuard<'_, SqliteConnection>, StoreError> {
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
    fn seen(&self, e: sqlx::Error) -> sqlx::Error {
        if matches!(e, sqlx::Error::WorkerCrashed) {
            self.broken.store(true, Ordering::Relaxed);
        }
        e
    }

    async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
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

    /// The latest schema version this code knows.
    pub fn schema_version() -> i64 {
        MIGRATIONS.last().map_or(0, |m| m.0)
    }

    /// The version recorded in the database.
    pub async fn stored_schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.pool)
            .await
            .map_err(db("read schema version"))?;
        Ok(v.unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut w = self.writer.lock().await?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *w)
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("create schema_version"))?;
        drop(w);
        let current = self.stored_schema_version().await?;
        let latest = Self::schema_version();
        if current > latest {
            return Err(StoreError::Migration {
                version: current,
                detail: format!(
                    "the database has schema version {current}, newer than this coordinator knows ({latest})"
                ),
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let fail = |e: sqlx::Error| StoreError::Migration {
                version: *version,
                detail: e.to_string(),
            };
            let mut w = self.writer.lock().await?;
            let mut tx = w
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.writer.seen(e))
                .map_err(fail)?;
            // Another process may have migrated between our read and BEGIN IMMEDIATE.
            let again: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
            if again.unwrap_or(0) >= *version {
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(fail)?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(version, "store schema migrated");
        }
        Ok(())
    }

    /// Start-up check of the secret keys against what the store holds; records the
    /// current key's check value.
    async fn check_keys(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, key_check FROM secret_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db("read secret key checks"))?;
        let Some(keys) = &self.keys else {
            let sealed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM nodes WHERE instr(spec, ?) > 0 OR instr(agent_token, ?) = 1",
            )
            .bind(SEALED_PREFIX)
            .bind(SEALED_PREFIX)
            .fetch_one(&self.pool)
            .await
            .map_err(db("look for sealed secrets"))?;
            if !rows.is_empty() || sealed > 0 {
                let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
                return Err(StoreError::SecretKey {
                    what: format!(
                        "this store keeps its secrets encrypted (key ids: {}) but no secret key file was given",
                        ids.join(", ")
                    ),
                });
            }
            tracing::warn!("store opened without a secret key: secrets are stored in clear");
            return Ok(());
        };
        for (id, check) in &rows {
            if keys.has(id) {
                crate::secrets::verify_check(keys, id, check)?;
                continue;
            }
            let needle = format!("{SEALED_PREFIX}{id}:");
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM nodes WHERE instr(spec, ?) > 0 OR instr(agent_token, ?) = 1",
            )
            .bind(&needle)
            .bind(&needle)
            .fetch_one(&self.pool)
            .await
            .map_err(db("look for sealed secrets"))?;
            if n > 0 {
                return Err(crate::secrets::missing_key(id, n));
            }
        }
        if !rows.iter().any(|(id, _)| id == keys.current_id()) {
            let check = keys.seal(KEY_CHECK_AAD, KEY_CHECK_PLAIN)?;
            let mut w = self.writer.lock().await?;
            sqlx::query("INSERT OR IGNORE INTO secret_keys (id, key_check) VALUES (?, ?)")
                .bind(keys.current_id())
                .bind(check)
                .execute(&mut *w)
                .await
                .map_err(|e| self.writer.seen(e))
                .map_err(db("record secret key check"))?;
        }
        Ok(())
    }

    fn keys(&self) -> Option<&SecretKeys> {
        self.keys.as_deref()
    }

    fn opened(&self) -> Secrets<'_> {
        Secrets::Open(self.keys())
    }

    /// One page of nodes, full or as views.
    async fn list(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
        secrets: Secrets<'_>,
    ) -> Result<Vec<Node>, StoreError> {
        let columns = match secrets {
            Secrets::Open(_) => NODE_COLUMNS,
            Secrets::Mask => VIEW_COLUMNS,
        };
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {columns} FROM nodes WHERE 1=1"));
        if let Some(m) = marker {
            q.push(" AND uuid > ").push_bind(m.as_bytes().to_vec());
        }
        if let Some(s) = filter.provision_state {
            q.push(" AND provision_state = ").push_bind(s.as_str());
        }
        if let Some(a) = &filter.agent {
            q.push(" AND share = ").push_bind(a.as_str().to_owned());
        }
        if let Some(p) = &filter.name_prefix {
            // substr() instead of LIKE: no wildcard escaping, byte-exact.
            q.push(" AND substr(name, 1, ")
                .push_bind(i64::try_from(p.chars().count()).unwrap_or(i64::MAX))
                .push(") = ")
                .push_bind(p.clone());
        }
        if filter.with_last_error {
            q.push(" AND has_error = 1");
        }
        q.push(" ORDER BY uuid LIMIT ").push_bind(i64::from(limit));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db("list nodes"))?;
        rows.iter().map(|r| decode_row(r, secrets)).collect()
    }

    /// One multi-row `UPDATE ... FROM` for `chunk` (distinct nodes), each row applied only
    /// at its expected version. With `all_or_none` the statement also checks, in the same
    /// snapshot, that EVERY row is at its expected version, and otherwise changes nothing:
    /// then it needs no surrounding transaction.
    fn status_update(
        &self,
        chunk: &[(Uuid, u64, NodeStatus)],
        all_or_none: bool,
    ) -> Result<QueryBuilder<Sqlite>, StoreError> {
        let mut rows = Vec::with_capacity(chunk.len());
        for (uuid, expected, status) in chunk {
            rows.push((
                *uuid,
                *expected,
                encode_status(*uuid, status, self.keys(), &self.tokens)?,
            ));
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "WITH v(uuid, expected, status, state, share, has_error, in_flight, token) AS (",
        );
        q.push_values(rows, |mut b, (uuid, expected, e)| {
            b.push_bind(uuid.as_bytes().to_vec())
                .push_bind(to_i64(expected))
                .push_bind(e.json)
                .push_bind(e.state)
                .push_bind(e.share)
                .push_bind(e.has_error)
                .push_bind(e.in_flight)
                .push_bind(e.token);
        });
        q.push(
            ") UPDATE nodes SET status = v.status, provision_state = v.state, share = v.share, \
             has_error = v.has_error, in_flight = v.in_flight, agent_token = v.token, \
             version = v.expected + 1 FROM v \
             WHERE nodes.uuid = v.uuid AND nodes.version = v.expected",
        );
        if all_or_none {
            q.push(
                " AND (SELECT COUNT(*) FROM nodes AS n JOIN v AS w \
                 ON n.uuid = w.uuid AND n.version = w.expected) = ",
            )
            .push_bind(i64::try_from(chunk.len()).unwrap_or(i64::MAX));
        }
        Ok(q)
    }

    /// Why a batch did not apply: the first entry whose stored version differs.
    async fn diagnose(&self, chunk: &[(Uuid, u64, NodeStatus)]) -> StoreError {
        for (uuid, expected, _) in chunk {
            let found: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT version FROM nodes WHERE uuid = ?")
                    .bind(uuid.as_bytes().to_vec())
                    .fetch_optional(&self.pool)
                    .await;
            match found {
                Err(e) => {
                    return StoreError::Database {
                        op: "update status batch",
                        source: e,
                    };
                }
                Ok(None) => {
                    return StoreError::NotFound {
                        node: uuid.to_string(),
                    };
                }
                Ok(Some(v)) if u64::try_from(v).ok() != Some(*expected) => {
                    return StoreError::VersionConflict {
                        node: *uuid,
                        expected: *expected,
                        found: u64::try_from(v).unwrap_or(0),
                    };
                }
                Ok(Some(_)) => {}
            }
        }
        // Every version matches now: a concurrent writer changed and restored it.
        match chunk.first() {
            Some((uuid, expected, _)) => StoreError::VersionConflict {
                node: *uuid,
                expected: *expected,
                found: *expected,
            },
            None => StoreError::Conflict {
                what: "empty status batch".to_string(),
            },
        }
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

const NODE_COLUMNS: &str = "uuid, version, spec, status, agent_token";

/// A view never reads the token column.
const VIEW_COLUMNS: &str = "uuid, version, spec, status";

/// Decodes a row of [`NODE_COLUMNS`] (or [`VIEW_COLUMNS`] with [`Secrets::Mask`]),
/// borrowing the text from the row instead of copying it.
fn decode_row(row: &SqliteRow, secrets: Secrets<'_>) -> Result<Node, StoreError> {
    let token = match secrets {
        Secrets::Open(_) => row
            .try_get::<Option<&str>, _>("agent_token")
            .map_err(db("read token"))?,
        Secrets::Mask => None,
    };
    decode_node(
        row.try_get::<&[u8], _>("uuid").map_err(db("read uuid"))?,
        row.try_get("version").map_err(db("read version"))?,
        row.try_get::<&str, _>("spec").map_err(db("read spec"))?,
        row.try_get::<&str, _>("status")
            .map_err(db("read status"))?,
        token,
        secrets,
    )
}

/// Maps a UNIQUE violation to `Conflict`, naming what collided.
fn unique_or<'a>(
    op: &'static str,
    spec: &'a NodeSpec,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            let what = if d.message().contains("name") {
                format!("node name {:?}", spec.name.as_deref().unwrap_or_default())
            } else {
                format!("node {}", spec.uuid)
            };
            StoreError::Conflict { what }
        }
        _ => StoreError::Database { op, source: e },
    }
}

/// One optimistic update inside an open connection/transaction.
async fn update_one(
    conn: &mut SqliteConnection,
    uuid: Uuid,
    expected: u64,
    status: &NodeStatus,
    keys: Option<&SecretKeys>,
    tokens: &SealedTokens,
) -> Result<u64, StoreError> {
    let e = encode_status(uuid, status, keys, tokens)?;
    let new_version = expected + 1;
    let done = sqlx::query(
        "UPDATE nodes SET status = ?, provision_state = ?, share = ?, has_error = ?, \
         in_flight = ?, agent_token = ?, version = ? WHERE uuid = ? AND version = ?",
    )
    .bind(e.json)
    .bind(e.state)
    .bind(e.share)
    .bind(e.has_error)
    .bind(e.in_flight)
    .bind(e.token)
    .bind(to_i64(new_version))
    .bind(uuid.as_bytes().to_vec())
    .bind(to_i64(expected))
    .execute(&mut *conn)
    .await
    .map_err(db("update status"))?;
    if done.rows_affected() == 1 {
        return Ok(new_version);
    }
    // Tell a lost race from a deleted node.
    let found: Option<i64> = sqlx::query_scalar("SELECT version FROM nodes WHERE uuid = ?")
        .bind(uuid.as_bytes().to_vec())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("update status"))?;
    Err(match found {
        Some(v) => StoreError::VersionConflict {
            node: uuid,
            expected,
            found: u64::try_from(v).unwrap_or(0),
        },
        None => StoreError::NotFound {
            node: uuid.to_string(),
        },
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_node(&self, node: &Node) -> Result<(), StoreError> {
        let spec = encode_spec(&node.spec, self.keys())?;
        let e = encode_status(node.spec.uuid, &node.status, self.keys(), &self.tokens)?;
        let mut w = self.writer.lock().await?;
        sqlx::query(
            "INSERT INTO nodes (uuid, name, provision_state, share, has_error, in_flight, \
             version, spec, status, agent_token) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        )
        .bind(node.spec.uuid.as_bytes().to_vec())
        .bind(node.spec.name.clone())
        .bind(e.state)
        .bind(e.share)
        .bind(e.has_error)
        .bind(e.in_flight)
        .bind(spec)
        .bind(e.json)
        .bind(e.token)
        .execute(&mut *w)
        .await
        .map_err(|e| self.writer.seen(e))
        .map_err(unique_or("create node", &node.spec))?;
        Ok(())
    }

    async fn create_nodes(&self, nodes: &[Node]) -> Result<(), StoreError> {
        let Some(first) = nodes.first() else {
            return Ok(());
        };
        let mut w = self.writer.lock().await?;
        let mut tx = w
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("begin node batch"))?;
        for chunk in nodes.chunks(BATCH_ROWS) {
            let mut rows = Vec::with_capacity(chunk.len());
            for n in chunk {
                rows.push((
                    n.spec.uuid,
                    n.spec.name.clone(),
                    encode_spec(&n.spec, self.keys())?,
                    encode_status(n.spec.uuid, &n.status, self.keys(), &self.tokens)?,
                ));
            }
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO nodes (uuid, name, provision_state, share, has_error, in_flight, \
                 version, spec, status, agent_token) ",
            );
            q.push_values(rows, |mut b, (uuid, name, spec, e)| {
                b.push_bind(uuid.as_bytes().to_vec())
                    .push_bind(name)
                    .push_bind(e.state)
                    .push_bind(e.share)
                    .push_bind(e.has_error)
                    .push_bind(e.in_flight)
                    .push_bind(1i64)
                    .push_bind(spec)
                    .push_bind(e.json)
                    .push_bind(e.token);
            });
            let done = q.build().execute(&mut *tx).await;
            done.map_err(|e| self.writer.seen(e))
                .map_err(|e| create_batch_error(first.spec.uuid, e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("commit node batch"))?;
        Ok(())
    }

    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        let row = match id {
            NodeId::Uuid(u) => {
                sqlx::query(
                    "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE uuid = ?",
                )
                .bind(u.as_bytes().to_vec())
                .fetch_optional(&self.pool)
                .await
            }
            NodeId::Name(n) => {
                sqlx::query(
                    "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE name = ?",
                )
                .bind(n.clone())
                .fetch_optional(&self.pool)
                .await
            }
        }
        .map_err(db("get node"))?;
        row.as_ref()
            .map(|r| decode_row(r, self.opened()))
            .transpose()
    }

    async fn get_nodes(&self, uuids: &[Uuid]) -> Result<Vec<Node>, StoreError> {
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(BATCH_ROWS) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid IN ("));
            let mut ids = q.separated(", ");
            for u in chunk {
                ids.push_bind(u.as_bytes().to_vec());
            }
            q.push(")");
            let rows = q
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(db("get nodes"))?;
            for r in &rows {
                out.push(decode_row(r, self.opened())?);
            }
        }
        Ok(out)
    }

    async fn list_nodes(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, StoreError> {
        self.list(filter, limit, marker, self.opened()).await
    }

    async fn list_node_views(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, StoreError> {
        self.list(filter, limit, marker, Secrets::Mask).await
    }

    async fn update_spec(&self, uuid: Uuid, spec: &NodeSpec) -> Result<(), StoreError> {
        if spec.uuid != uuid {
            return Err(StoreError::Conflict {
                what: format!("node {uuid}: spec carries a different uuid {}", spec.uuid),
            });
        }
        let text = encode_spec(spec, self.keys())?;
        let mut w = self.writer.lock().await?;
        let done = sqlx::query("UPDATE nodes SET spec = ?, name = ? WHERE uuid = ?")
            .bind(text)
            .bind(spec.name.clone())
            .bind(uuid.as_bytes().to_vec())
            .execute(&mut *w)
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(unique_or("update spec", spec))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                node: uuid.to_string(),
            });
        }
        Ok(())
    }

    async fn update_status(
        &self,
        uuid: Uuid,
        expected_version: u64,
        status: &NodeStatus,
    ) -> Result<u64, StoreError> {
        let mut w = self.writer.lock().await?;
        let r = update_one(
            &mut w,
            uuid,
            expected_version,
            status,
            self.keys(),
            &self.tokens,
        )
        .await;
        if let Err(StoreError::Database {
            source: sqlx::Error::WorkerCrashed,
            ..
        }) = &r
        {
            self.writer.broken.store(true, Ordering::Relaxed);
        }
        r
    }

    async fn update_statuses(
        &self,
        batch: &[(Uuid, u64, NodeStatus)],
    ) -> Result<Vec<u64>, StoreError> {
        match batch {
            [] => return Ok(Vec::new()),
            // One statement is atomic on its own.
            [(u, v, s)] => return Ok(vec![self.update_status(*u, *v, s).await?]),
            _ => {}
        }
        let versions = || batch.iter().map(|(_, v, _)| v + 1).collect();
        let mut seen = HashSet::with_capacity(batch.len());
        let distinct = batch.iter().all(|(u, _, _)| seen.insert(*u));
        if distinct && batch.len() <= BATCH_ROWS {
            // The engine's usual batch: ONE guarded statement, atomic on its own, so one
            // round trip to the SQLite thread instead of three (BEGIN, UPDATE, COMMIT).
            let mut q = self.status_update(batch, true)?;
            let mut w = self.writer.lock().await?;
            let done = q
                .build()
                .execute(&mut *w)
                .await
                .map_err(|e| self.writer.seen(e))
                .map_err(db("update status batch"))?;
            drop(w);
            if done.rows_affected() == batch.len() as u64 {
                return Ok(versions());
            }
            // The guard makes it all rows or none: nothing was written.
            return Err(self.diagnose(batch).await);
        }
        // IMMEDIATE: take the write lock up front so concurrent writers queue on the
        // busy timeout instead of failing a read->write upgrade.
        let mut w = self.writer.lock().await?;
        let mut tx = w
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("begin status batch"))?;
        if !distinct {
            // The same node twice: apply in order, one statement each.
            let mut out = Vec::with_capacity(batch.len());
            for (uuid, expected, status) in batch {
                // On error `tx` is dropped un-committed: the whole batch rolls back.
                out.push(
                    update_one(&mut tx, *uuid, *expected, status, self.keys(), &self.tokens)
                        .await?,
                );
            }
            tx.commit()
                .await
                .map_err(|e| self.writer.seen(e))
                .map_err(db("commit status batch"))?;
            return Ok(out);
        }
        // Group commit: one multi-row UPDATE per chunk, one transaction for all. This is
        // ~100x fewer round trips to the SQLite thread than a statement per node.
        for chunk in batch.chunks(BATCH_ROWS) {
            let done = self
                .status_update(chunk, false)?
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| self.writer.seen(e))
                .map_err(db("update status batch"))?;
            if done.rows_affected() != chunk.len() as u64 {
                tx.rollback()
                    .await
                    .map_err(|e| self.writer.seen(e))
                    .map_err(db("roll back status batch"))?;
                drop(w);
                return Err(self.diagnose(chunk).await);
            }
        }
        tx.commit()
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("commit status batch"))?;
        Ok(versions())
    }

    async fn delete_node(&self, uuid: Uuid) -> Result<(), StoreError> {
        self.tokens.forget(uuid);
        let mut w = self.writer.lock().await?;
        let done = sqlx::query("DELETE FROM nodes WHERE uuid = ?")
            .bind(uuid.as_bytes().to_vec())
            .execute(&mut *w)
            .await
            .map_err(|e| self.writer.seen(e))
            .map_err(db("delete node"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                node: uuid.to_string(),
            });
        }
        Ok(())
    }

    async fn nodes_in_flight(&self) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(
            "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE in_flight = 1 ORDER BY uuid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list in-flight nodes"))?;
        rows.iter().map(|r| decode_row(r, self.opened())).collect()
    }

    async fn placements(&self) -> Result<Vec<(Uuid, AgentId)>, StoreError> {
        let rows: Vec<(Vec<u8>, String)> =
            sqlx::query_as("SELECT uuid, share FROM nodes WHERE share IS NOT NULL ORDER BY uuid")
                .fetch_all(&self.pool)
                .await
                .map_err(db("list placements"))?;
        crate::codec::decode_placements(rows)
    }

    async fn count_by_state(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT provision_state, COUNT(*) FROM nodes GROUP BY provision_state")
                .fetch_all(&self.pool)
                .await
                .map_err(db("count nodes by state"))?;
        Ok(crate::codec::state_counts(rows))
    }

    async fn set_agent_drained(&self, agent: &AgentId, drained: bool) -> Result<(), StoreError> {
        let mut w = self.writer.lock().await?;
        sqlx::query(
            "INSERT INTO agents (id, drained) VALUES (?, ?) \
             ON CONFLICT (id) DO UPDATE SET drained = excluded.drained",
        )
        .bind(agent.as_str().to_owned())
        .bind(drained)
        .execute(&mut *w)
        .await
        .map_err(|e| self.writer.seen(e))
        .map_err(db("set agent drained"))?;
        Ok(())
    }

    async fn drained_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE drained = 1 ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db("list drained agents"))?;
        Ok(ids.into_iter().map(AgentId::from).collect())
    }
}
