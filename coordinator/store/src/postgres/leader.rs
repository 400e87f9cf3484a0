//! Leader election among coordinator replicas: a session advisory lock on a dedicated
//! connection.

use std::time::Duration;

use sqlx::{Connection as _, PgConnection};

use super::PgStore;
use crate::StoreError;
use crate::codec::db;

/// Advisory lock whose holder is the leading coordinator replica.
const LEADER_LOCK: i64 = 0x76_6d65_6469_614c; // "vmediaL"

impl PgStore {
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
