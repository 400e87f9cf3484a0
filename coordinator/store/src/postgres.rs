//! The PostgreSQL backend, for several coordinator replicas sharing one database.
//!
//! Same row layout as SQLite (see `sqlite.rs`): uuid as 16-byte BYTEA (byte order is
//! uuid order), filter columns, spec and status as JSON text, token in its own
//! column. Migrations take a transaction-scoped advisory lock so replicas starting
//! together migrate once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coordinator_core::{AgentId, Node, NodeId, NodeSpec, NodeStatus};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::codec::{
    SealedTokens, Secrets, create_batch_error, db, decode_node, encode_status, to_i64,
};
use crate::secrets::{KEY_CHECK_AAD, KEY_CHECK_PLAIN, SEALED_PREFIX};
use crate::{NodeFilter, SecretKeys, Store, StoreError, encode_spec};

/// Rows per multi-row statement (10 parameters each; Postgres allows 65,535).
const BATCH_ROWS: usize = 500;

/// Arbitrary constant identifying this schema's migration lock.
const MIGRATION_LOCK: i64 = 0x766d_6564_6961; // "vmedia"

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE nodes (
        uuid            BYTEA PRIMARY KEY,
        name            TEXT UNIQUE,
        provision_state TEXT NOT NULL,
        share           TEXT,
        has_error       BOOLEAN NOT NULL DEFAULT FALSE,
        in_flight       BOOLEAN NOT NULL DEFAULT FALSE,
        version         BIGINT NOT NULL,
        spec            TEXT NOT NULL,
        status          TEXT NOT NULL,
        agent_token     TEXT
    );
    CREATE INDEX nodes_by_state ON nodes (provision_state);
    CREATE INDEX nodes_by_share ON nodes (share) WHERE share IS NOT NULL;
    CREATE INDEX nodes_in_flight ON nodes (uuid) WHERE in_flight;
    CREATE TABLE agents (
        id      TEXT PRIMARY KEY,
        drained BOOLEAN NOT NULL
    );
    "#,
    ),
    // Secret key checks (see sqlite.rs) and the leader's advertised address.
    (
        2,
        r#"
    CREATE TABLE secret_keys (
        id        TEXT PRIMARY KEY,
        key_check TEXT NOT NULL
    );
    CREATE TABLE coordinator_leader (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        address   TEXT NOT NULL,
        holder    TEXT NOT NULL,
        since_ms  BIGINT NOT NULL
    );
    "#,
    ),
];

/// Advisory lock whose holder is the leading coordinator replica.
const LEADER_LOCK: i64 = 0x76_6d65_6469_614c; // "vmediaL"

/// PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    keys: Option<Arc<SecretKeys>>,
    tokens: Arc<SealedTokens>,
    /// Kept for the leader lease's dedicated connection (never logged: it may hold a password).
    url: Arc<str>,
}

impl PgStore {
    /// Connects without a secret key (secrets stored as given; see
    /// [`crate::SqliteStore::open`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// Connects (e.g. `postgres://user@127.0.0.1:5432/vmedia`), migrates and checks the
    /// secret keys against the store. The URL is never put into errors or logs: it may
    /// hold a password.
    pub async fn connect_with(url: &str, keys: Option<SecretKeys>) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db("connect to PostgreSQL"))?;
        let store = Self {
            pool,
            keys: keys.map(Arc::new),
            tokens: Arc::default(),
            url: Arc::from(url),
        };
        store.migrate().await?;
        store.check_keys().await?;
        Ok(store)
    }

    fn keys(&self) -> Option<&SecretKeys> {
        self.keys.as_deref()
    }

    fn opened(&self) -> Secrets<'_> {
        Secrets::Open(self.keys())
    }

    /// One page of nodes, full or as views (which never read the token column).
    async fn list(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
        secrets: Secrets<'_>,
    ) -> Result<Vec<Node>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(match secrets {
            Secrets::Open(_) => SELECT,
            Secrets::Mask => SELECT_VIEW,
        });
        q.push(" WHERE TRUE");
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
            q.push(" AND starts_with(name, ")
                .push_bind(p.clone())
                .push(")");
        }
        if filter.with_last_error {
            q.push(" AND has_error");
        }
        q.push(" ORDER BY uuid LIMIT ").push_bind(i64::from(limit));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db("list nodes"))?;
        rows.iter().map(|r| decode_row(r, secrets)).collect()
    }

    /// Start-up check of the secret keys (same rules as the SQLite backend).
    async fn check_keys(&self) -> Result<(), StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, key_check FROM secret_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db("read secret key checks"))?;
        let count_sealed = |needle: String| {
            let pool = self.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM nodes WHERE strpos(spec, $1) > 0 OR strpos(agent_token, $1) = 1",
                )
                .bind(needle)
                .fetch_one(&pool)
                .await
                .map_err(db("look for sealed secrets"))
            }
        };
        let Some(keys) = &self.keys else {
            let sealed = count_sealed(SEALED_PREFIX.to_string()).await?;
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
            let n = count_sealed(format!("{SEALED_PREFIX}{id}:")).await?;
            if n > 0 {
                return Err(crate::secrets::missing_key(id, n));
            }
        }
        if !rows.iter().any(|(id, _)| id == keys.current_id()) {
            sqlx::query(
                "INSERT INTO secret_keys (id, key_check) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(keys.current_id())
            .bind(keys.seal(KEY_CHECK_AAD, KEY_CHECK_PLAIN)?)
            .execute(&self.pool)
            .await
            .map_err(db("record secret key check"))?;
        }
        Ok(())
    }

    pub fn schema_version() -> i64 {
        MIGRATIONS.last().map_or(0, |m| m.0)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let fail = |version: i64| {
            move |e: sqlx::Error| StoreError::Migration {
                version,
                detail: e.to_string(),
            }
        };
        let latest = Self::schema_version();
        let mut tx = self.pool.begin().await.map_err(fail(0))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(fail(0))?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(fail(0))?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(fail(0))?;
        let current = current.unwrap_or(0);
        if current > latest {
            return Err(StoreError::Migration {
                version: current,
                detail: format!(
                    "the database has schema version {current}, newer than this coordinator knows ({latest})"
                ),
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(fail(*version))?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(fail(*version))?;
            tracing::info!(version, "store schema migrated");
        }
        tx.commit().await.map_err(fail(latest))?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Waits until this replica leads: polls `pg_try_advisory_lock` every `poll` on ONE
    /// dedicated connection (outside the pool), reconnecting after errors. When it gets
    /// the lock it records `address` (what followers tell clients) and returns the lease.
    ///
    /// Why an advisory lock: it lives exactly as long as the session holding it. A leader
    /// that dies, even by SIGKILL, closes its socket, its backend ends and the lock is
    /// free for the next poll: take-over costs one poll interval, with no lease expiry to
    /// wait for and no clock to trust.
    pub async fn campaign(
        &self,
        address: &str,
        holder: &str,
        poll: Duration,
    ) -> Result<LeaderLease, StoreError> {
        let mut conn: Option<PgConnection> = None;
        let mut logged_error = false;
        loop {
            if conn.is_none() {
                match PgConnection::connect(&self.url).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        if !logged_error {
                            tracing::warn!(error = %e, "leader election: cannot connect to PostgreSQL; retrying");
                            logged_error = true;
                        }
                    }
                }
            }
            if let Some(c) = conn.as_mut() {
                let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK)
                    .fetch_one(&mut *c)
                    .await;
                match got {
                    Ok(true) => {
                        let Some(mut c) = conn.take() else { continue };
                        // If this process is cut off (not killed: a kill closes the
                        // socket at once), the server notices the dead peer within
                        // ~11 s and frees the lock. The holder itself gives up sooner
                        // (`LeaderLease::lost`), so two leaders never overlap.
                        sqlx::raw_sql(
                            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                             SET tcp_keepalives_count = 3",
                        )
                        .execute(&mut c)
                        .await
                        .map_err(db("set keepalives on the leader connection"))?;
                        sqlx::query(
                            "INSERT INTO coordinator_leader (id, address, holder, since_ms) \
                             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
                             address = excluded.address, holder = excluded.holder, \
                             since_ms = excluded.since_ms",
                        )
                        .bind(address)
                        .bind(holder)
                        .bind(now_ms())
                        .execute(&mut c)
                        .await
                        .map_err(db("record the leader address"))?;
                        return Ok(LeaderLease { conn: c });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "leader election: lock attempt failed; reconnecting");
                        conn = None;
                    }
                }
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The address the leader recorded, with its holder id. After a leader dies this
    /// names it until the next leader takes over (clients then retry).
    pub async fn leader(&self) -> Result<Option<(String, String)>, StoreError> {
        sqlx::query_as("SELECT address, holder FROM coordinator_leader WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read the leader address"))
    }

    async fn diagnose(&self, chunk: &[(Uuid, u64, NodeStatus)]) -> StoreError {
        for (uuid, expected, _) in chunk {
            let found: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT version FROM nodes WHERE uuid = $1")
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
}

/// Decodes a row of [`SELECT`] (or [`SELECT_VIEW`] with [`Secrets::Mask`]), borrowing
/// the text from the row.
fn decode_row(row: &PgRow, secrets: Secrets<'_>) -> Result<Node, StoreError> {
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

fn unique_or<'a>(
    op: &'static str,
    spec: &'a NodeSpec,
) -> impl FnOnce(sqlx::Error) -> StoreError + 'a {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            let what = if d.constraint().is_some_and(|c| c.contains("name")) {
                format!("node name {:?}", spec.name.as_deref().unwrap_or_default())
            } else {
                format!("node {}", spec.uuid)
            };
            StoreError::Conflict { what }
        }
        _ => StoreError::Database { op, source: e },
    }
}

async fn update_one(
    conn: &mut PgConnection,
    uuid: Uuid,
    expected: u64,
    status: &NodeStatus,
    keys: Option<&SecretKeys>,
    tokens: &SealedTokens,
) -> Result<u64, StoreError> {
    let e = encode_status(uuid, status, keys, tokens)?;
    let new_version = expected + 1;
    let done = sqlx::query(
        "UPDATE nodes SET status = $1, provision_state = $2, share = $3, has_error = $4, \
         in_flight = $5, agent_token = $6, version = $7 WHERE uuid = $8 AND version = $9",
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
    let found: Option<i64> = sqlx::query_scalar("SELECT version FROM nodes WHERE uuid = $1")
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

const SELECT: &str = "SELECT uuid, version, spec, status, agent_token FROM nodes";
const SELECT_VIEW: &str = "SELECT uuid, version, spec, status FROM nodes";

#[async_trait]
impl Store for PgStore {
    async fn create_node(&self, node: &Node) -> Result<(), StoreError> {
        let spec = encode_spec(&node.spec, self.keys())?;
        let e = encode_status(node.spec.uuid, &node.status, self.keys(), &self.tokens)?;
        sqlx::query(
            "INSERT INTO nodes (uuid, name, provision_state, share, has_error, in_flight, \
             version, spec, status, agent_token) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9)",
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
        .execute(&self.pool)
        .await
        .map_err(unique_or("create node", &node.spec))?;
        Ok(())
    }

    async fn create_nodes(&self, nodes: &[Node]) -> Result<(), StoreError> {
        let Some(first) = nodes.first() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(db("begin node batch"))?;
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
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
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
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| create_batch_error(first.spec.uuid, e))?;
        }
        tx.commit().await.map_err(db("commit node batch"))?;
        Ok(())
    }

    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError> {
        let row =
            match id {
                NodeId::Uuid(u) => sqlx::query(
                    "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE uuid = $1",
                )
                .bind(u.as_bytes().to_vec())
                .fetch_optional(&self.pool)
                .await,
                NodeId::Name(n) => sqlx::query(
                    "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE name = $1",
                )
                .bind(n.clone())
                .fetch_optional(&self.pool)
                .await,
            }
            .map_err(db("get node"))?;
        row.as_ref()
            .map(|r| decode_row(r, self.opened()))
            .transpose()
    }

    async fn get_nodes(&self, uuids: &[Uuid]) -> Result<Vec<Node>, StoreError> {
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(BATCH_ROWS) {
            let ids: Vec<Vec<u8>> = chunk.iter().map(|u| u.as_bytes().to_vec()).collect();
            let rows = sqlx::query(
                "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE uuid = ANY($1)",
            )
            .bind(ids)
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
        let done = sqlx::query("UPDATE nodes SET spec = $1, name = $2 WHERE uuid = $3")
            .bind(text)
            .bind(spec.name.clone())
            .bind(uuid.as_bytes().to_vec())
            .execute(&self.pool)
            .await
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
        let mut conn = self.pool.acquire().await.map_err(db("update status"))?;
        update_one(
            &mut conn,
            uuid,
            expected_version,
            status,
            self.keys(),
            &self.tokens,
        )
        .await
    }

    async fn update_statuses(
        &self,
        batch: &[(Uuid, u64, NodeStatus)],
    ) -> Result<Vec<u64>, StoreError> {
        match batch {
            [] => return Ok(Vec::new()),
            [(u, v, s)] => return Ok(vec![self.update_status(*u, *v, s).await?]),
            _ => {}
        }
        let mut tx = self.pool.begin().await.map_err(db("begin status batch"))?;
        let mut seen = HashSet::with_capacity(batch.len());
        if !batch.iter().all(|(u, _, _)| seen.insert(*u)) {
            let mut out = Vec::with_capacity(batch.len());
            for (uuid, expected, status) in batch {
                out.push(
                    update_one(&mut tx, *uuid, *expected, status, self.keys(), &self.tokens)
                        .await?,
                );
            }
            tx.commit().await.map_err(db("commit status batch"))?;
            return Ok(out);
        }
        for chunk in batch.chunks(BATCH_ROWS) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
                "UPDATE nodes SET status = v.status, provision_state = v.state, share = v.share, \
                 has_error = v.has_error, in_flight = v.in_flight, agent_token = v.token, \
                 version = v.expected + 1 FROM (",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for (uuid, expected, status) in chunk {
                rows.push((
                    *uuid,
                    *expected,
                    encode_status(*uuid, status, self.keys(), &self.tokens)?,
                ));
            }
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
                ") AS v(uuid, expected, status, state, share, has_error, in_flight, token) \
                 WHERE nodes.uuid = v.uuid AND nodes.version = v.expected",
            );
            let done = q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db("update status batch"))?;
            if done.rows_affected() != chunk.len() as u64 {
                tx.rollback().await.map_err(db("roll back status batch"))?;
                return Err(self.diagnose(chunk).await);
            }
        }
        tx.commit().await.map_err(db("commit status batch"))?;
        Ok(batch.iter().map(|(_, v, _)| v + 1).collect())
    }

    async fn delete_node(&self, uuid: Uuid) -> Result<(), StoreError> {
        self.tokens.forget(uuid);
        let done = sqlx::query("DELETE FROM nodes WHERE uuid = $1")
            .bind(uuid.as_bytes().to_vec())
            .execute(&self.pool)
            .await
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
            "SELECT uuid, version, spec, status, agent_token FROM nodes WHERE in_flight ORDER BY uuid",
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
        sqlx::query(
            "INSERT INTO agents (id, drained) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET drained = excluded.drained",
        )
        .bind(agent.as_str().to_owned())
        .bind(drained)
        .execute(&self.pool)
        .await
        .map_err(db("set agent drained"))?;
        Ok(())
    }

    async fn drained_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE drained ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db("list drained agents"))?;
        Ok(ids.into_iter().map(AgentId::from).collect())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Leadership of the coordinator replicas on one database, held by the session of a
/// dedicated connection (see [`PgStore::campaign`]). Dropping it closes that connection
/// and so releases leadership.
pub struct LeaderLease {
    conn: PgConnection,
}

impl std::fmt::Debug for LeaderLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaderLease")
    }
}

impl LeaderLease {
    /// One round trip on the lease's connection, bounded by `limit`. An error means
    /// leadership may be gone (the database restarted, the network broke): the holder
    /// must stop acting as the leader at once.
    pub async fn check(&mut self, limit: Duration) -> Result<(), StoreError> {
        let held: Result<Result<bool, sqlx::Error>, _> = tokio::time::timeout(
            limit,
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted \
                 AND ((classid::bigint << 32) | objid::bigint) = $1)",
            )
            .bind(LEADER_LOCK)
            .fetch_one(&mut self.conn),
        )
        .await;
        match held {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(StoreError::Lease {
                what: "the leader lock is no longer held by this session".to_string(),
            }),
            Ok(Err(e)) => Err(StoreError::Database {
                op: "check the leader lease",
                source: e,
            }),
            Err(_) => Err(StoreError::Lease {
                what: format!("the database did not confirm the leader lease within {limit:?}"),
            }),
        }
    }

    /// Resolves when the lease is lost, checking every `interval`; a check that gets no
    /// answer within `limit` counts as lost. Loss is noticed within `interval + limit`.
    pub async fn lost(mut self, interval: Duration, limit: Duration) -> StoreError {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = self.check(limit).await {
                return e;
            }
        }
    }

    /// Gives leadership up now (unlock, then close the connection).
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut self.conn)
            .await;
        let _ = sqlx::Connection::close(self.conn).await;
    }
}
