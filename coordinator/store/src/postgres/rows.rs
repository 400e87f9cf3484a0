//! Queries and row decoding shared by the [`Store`](crate::Store) methods.

use coordinator_core::{Node, NodeSpec, NodeStatus};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::PgStore;
use crate::codec::{SealedTokens, Secrets, db, decode_node, encode_status, to_i64};
use crate::{NodeFilter, SecretKeys, StoreError};

impl PgStore {
    /// One page of nodes, full or as views (which never read the token column).
    pub(super) async fn list(
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
        if let Some((name, hex)) = filter.search_needles() {
            q.push(" AND (strpos(lower(name), ")
                .push_bind(name)
                .push(") > 0");
            if let Some(hex) = hex {
                q.push(" OR strpos(encode(uuid, 'hex'), ")
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

    pub(super) async fn diagnose(&self, chunk: &[(Uuid, u64, NodeStatus)]) -> StoreError {
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
pub(super) fn decode_row(row: &PgRow, secrets: Secrets<'_>) -> Result<Node, StoreError> {
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

pub(super) fn unique_or<'a>(
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

pub(super) async fn update_one(
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
         in_flight = $5, agent_token = $6, power_state = $7, version = $8 WHERE uuid = $9 AND version = $10",
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

pub(super) const SELECT: &str = "SELECT uuid, version, spec, status, agent_token FROM nodes";
pub(super) const SELECT_VIEW: &str = "SELECT uuid, version, spec, status FROM nodes";
