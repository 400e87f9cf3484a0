//! Queries and row decoding shared by the [`Store`](crate::Store) methods.

use coordinator_core::{Node, NodeSpec, NodeStatus};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use crate::codec::{SealedTokens, Secrets, db, decode_node, encode_status, to_i64};
use crate::{NodeFilter, SecretKeys, StoreError};

impl SqliteStore {
    /// One page of nodes, full or as views.
    pub(super) async fn list(
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
        if let Some((name, hex)) = filter.search_needles() {
            q.push(" AND (instr(lower(name), ")
                .push_bind(name)
                .push(") > 0");
            if let Some(hex) = hex {
                q.push(" OR instr(lower(hex(uuid)), ")
                    .push_bind(hex)
                    .push(") > 0");
            }
            q.push(")");
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
    pub(super) fn status_update(
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
            "WITH v(uuid, expected, status, state, share, has_error, in_flight, token, power) AS (",
        );
        q.push_values(rows, |mut b, (uuid, expected, e)| {
            b.push_bind(uuid.as_bytes().to_vec())
                .push_bind(to_i64(expected))
                .push_bind(e.json)
                .push_bind(e.state)
                .push_bind(e.share)
                .push_bind(e.has_error)
                .push_bind(e.in_flight)
                .push_bind(e.token)
                .push_bind(e.power);
        });
        q.push(
            ") UPDATE nodes SET status = v.status, provision_state = v.state, share = v.share, \
             has_error = v.has_error, in_flight = v.in_flight, agent_token = v.token, \
             power_state = v.power, version = v.expected + 1 FROM v \
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
    pub(super) async fn diagnose(&self, chunk: &[(Uuid, u64, NodeStatus)]) -> StoreError {
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
}

pub(super) const NODE_COLUMNS: &str = "uuid, version, spec, status, agent_token";

/// A view never reads the token column.
pub(super) const VIEW_COLUMNS: &str = "uuid, version, spec, status";

/// Decodes a row of [`NODE_COLUMNS`] (or [`VIEW_COLUMNS`] with [`Secrets::Mask`]),
/// borrowing the text from the row instead of copying it.
pub(super) fn decode_row(row: &SqliteRow, secrets: Secrets<'_>) -> Result<Node, StoreError> {
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
pub(super) fn unique_or<'a>(
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
pub(super) async fn update_one(
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
         in_flight = ?, agent_token = ?, power_state = ?, version = ? WHERE uuid = ? AND version = ?",
    )
    .bind(e.json)
    .bind(e.state)
    .bind(e.share)
    .bind(e.has_error)
    .bind(e.in_flight)
    .bind(e.token)
    .bind(e.power)
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
