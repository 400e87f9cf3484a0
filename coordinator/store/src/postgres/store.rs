//! The [`Store`] implementation.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use coordinator_core::{AgentId, Node, NodeId, NodeSpec, NodeStatus};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::rows::{decode_row, unique_or, update_one};
use super::{BATCH_ROWS, PgStore};
use crate::codec::{Secrets, create_batch_error, db, encode_status, to_i64};
use crate::{NodeFilter, StateChange, Store, StoreError, encode_spec};

#[async_trait]
impl Store for PgStore {
    async fn create_node(&self, node: &Node) -> Result<(), StoreError> {
        let spec = encode_spec(&node.spec, self.keys())?;
        let e = encode_status(node.spec.uuid, &node.status, self.keys(), &self.tokens)?;
        sqlx::query(
            "INSERT INTO nodes (uuid, name, provision_state, share, has_error, in_flight, power_state, \
             version, spec, status, agent_token) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10)",
        )
        .bind(node.spec.uuid.as_bytes().to_vec())
        .bind(node.spec.name.clone())
        .bind(e.state)
        .bind(e.share)
        .bind(e.has_error)
        .bind(e.in_flight)
        .bind(e.power)
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
                "INSERT INTO nodes (uuid, name, provision_state, share, has_error, in_flight, power_state, \
                 version, spec, status, agent_token) ",
            );
            q.push_values(rows, |mut b, (uuid, name, spec, e)| {
                b.push_bind(uuid.as_bytes().to_vec())
                    .push_bind(name)
                    .push_bind(e.state)
                    .push_bind(e.share)
                    .push_bind(e.has_error)
                    .push_bind(e.in_flight)
                    .push_bind(e.power)
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
                 power_state = v.power, version = v.expected + 1 FROM (",
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
                    .push_bind(e.token)
                    .push_bind(e.power);
            });
            q.push(
                ") AS v(uuid, expected, status, state, share, has_error, in_flight, token, power) \
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

    async fn count_by_power_state(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(Option<String>, i64)> =
            sqlx::query_as("SELECT power_state, COUNT(*) FROM nodes GROUP BY power_state")
                .fetch_all(&self.pool)
                .await
                .map_err(db("count nodes by power state"))?;
        Ok(crate::codec::power_counts(rows))
    }

    async fn node_history(&self, uuid: Uuid) -> Result<Vec<StateChange>, StoreError> {
        let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT at_ms, from_state, to_state, last_error FROM node_history \
             WHERE uuid = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(uuid.as_bytes().to_vec())
        .bind(crate::HISTORY_PER_NODE as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db("read node history"))?;
        crate::codec::decode_history(uuid, rows)
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
