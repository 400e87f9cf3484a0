//! Schema migrations and the start-up check of the secret keys.

use sqlx::Connection as _;

use super::SqliteStore;
use crate::StoreError;
use crate::codec::db;
use crate::secrets::{KEY_CHECK_AAD, KEY_CHECK_PLAIN, SEALED_PREFIX};

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
    // The last known power state as a column, so nodes per power state is one indexed
    // COUNT ... GROUP BY (the metrics endpoint asks on every scrape).
    (
        3,
        r#"
    ALTER TABLE nodes ADD COLUMN power_state TEXT;
    UPDATE nodes SET power_state = json_extract(status, '$.power_state');
    CREATE INDEX nodes_by_power_state ON nodes (power_state);
    "#,
    ),
    // Each node's provision-state changes, recorded by a trigger in the statement that
    // commits the status (so the engine's group commit carries them at no extra round
    // trip) and trimmed there to the newest 50 (`crate::HISTORY_PER_NODE`).
    (
        4,
        r#"
    CREATE TABLE node_history (
        id         INTEGER PRIMARY KEY,
        uuid       BLOB NOT NULL,
        at_ms      INTEGER NOT NULL,
        from_state TEXT NOT NULL,
        to_state   TEXT NOT NULL,
        last_error TEXT
    );
    CREATE INDEX node_history_by_node ON node_history (uuid, id);
    CREATE TRIGGER node_history_record AFTER UPDATE OF provision_state ON nodes
    WHEN OLD.provision_state IS NOT NEW.provision_state
    BEGIN
        INSERT INTO node_history (uuid, at_ms, from_state, to_state, last_error)
        VALUES (NEW.uuid,
                COALESCE(json_extract(NEW.status, '$.provision_updated_at_ms'), 0),
                OLD.provision_state, NEW.provision_state,
                json_extract(NEW.status, '$.last_error'));
        DELETE FROM node_history WHERE uuid = NEW.uuid AND id <= (
            SELECT id FROM node_history WHERE uuid = NEW.uuid
            ORDER BY id DESC LIMIT 1 OFFSET 50);
    END;
    CREATE TRIGGER node_history_forget AFTER DELETE ON nodes
    BEGIN
        DELETE FROM node_history WHERE uuid = OLD.uuid;
    END;
    "#,
    ),
];

impl SqliteStore {
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

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
    pub(super) async fn check_keys(&self) -> Result<(), StoreError> {
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
}
