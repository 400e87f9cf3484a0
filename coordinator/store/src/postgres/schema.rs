//! Schema migrations and the start-up check of the secret keys.

use super::PgStore;
use crate::StoreError;
use crate::codec::db;
use crate::secrets::{KEY_CHECK_AAD, KEY_CHECK_PLAIN, SEALED_PREFIX};

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
    // Secret key checks (see sqlite/schema.rs) and the leader's advertised address.
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
    // The last known power state as a column (see sqlite/schema.rs).
    (
        3,
        r#"
    ALTER TABLE nodes ADD COLUMN power_state TEXT;
    UPDATE nodes SET power_state = status::jsonb ->> 'power_state';
    CREATE INDEX nodes_by_power_state ON nodes (power_state);
    "#,
    ),
    // Each node's provision-state changes (see sqlite/schema.rs, version 4).
    (
        4,
        r#"
    CREATE TABLE node_history (
        id         BIGSERIAL PRIMARY KEY,
        uuid       BYTEA NOT NULL,
        at_ms      BIGINT NOT NULL,
        from_state TEXT NOT NULL,
        to_state   TEXT NOT NULL,
        last_error TEXT
    );
    CREATE INDEX node_history_by_node ON node_history (uuid, id);
    CREATE FUNCTION node_history_record() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO node_history (uuid, at_ms, from_state, to_state, last_error)
        VALUES (NEW.uuid,
                COALESCE((NEW.status::json->>'provision_updated_at_ms')::bigint, 0),
                OLD.provision_state, NEW.provision_state,
                NEW.status::json->>'last_error');
        DELETE FROM node_history WHERE uuid = NEW.uuid AND id <= (
            SELECT h.id FROM node_history h WHERE h.uuid = NEW.uuid
            ORDER BY h.id DESC LIMIT 1 OFFSET 50);
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER node_history_record AFTER UPDATE OF provision_state ON nodes
        FOR EACH ROW WHEN (OLD.provision_state IS DISTINCT FROM NEW.provision_state)
        EXECUTE FUNCTION node_history_record();
    CREATE FUNCTION node_history_forget() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM node_history WHERE uuid = OLD.uuid;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER node_history_forget AFTER DELETE ON nodes
        FOR EACH ROW EXECUTE FUNCTION node_history_forget();
    "#,
    ),
];

impl PgStore {
    /// Start-up check of the secret keys (same rules as the SQLite backend).
    pub(super) async fn check_keys(&self) -> Result<(), StoreError> {
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

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
}
