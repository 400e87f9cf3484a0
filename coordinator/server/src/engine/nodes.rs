//! The nodes the engine holds: the cache of nodes with work under way (in full), the
//! compact placement index of every placed node, start-up resume, operator verbs, spec
//! changes, placement explanations and deadlines.

use std::net::IpAddr;

use coordinator_core::{
    self as core, AgentId, DeployStep, Event, Node, NodeId, PlacementNode, ProvisionState,
};
use uuid::Uuid;

use super::agents::Agent;
use super::commit::{Batch, PendingReply};
use super::handle::Reply;
use super::{Engine, lock, now_ms};
use crate::domain::{BulkFailure, BulkOutcome, Explanation, NodeView};
use crate::error::ServerError;

/// Nodes of a bulk verb loaded from the store together.
const BULK_LOAD: usize = 1000;

pub(super) fn bmc_ip(node: &Node) -> Option<IpAddr> {
    node.spec.bmc_address().and_then(|a| a.parse().ok())
}

impl Engine {
    /// Builds the compact placement index from the store's `(uuid, agent)` pairs: no spec or
    /// status is decoded.
    pub(super) async fn load_placement_index(&mut self) -> Result<(), ServerError> {
        let placed = self
            .store
            .placements()
            .await
            .map_err(|e| ServerError::store_about("load placement index", "all nodes", e))?;
        for (uuid, agent) in placed {
            self.set_placed(uuid, Some(&agent));
        }
        Ok(())
    }

    /// Reconciler: re-queue queued nodes, re-count slots, expect the agents of in-flight
    /// nodes back. Job intents are re-sent when their agent says hello; deadlines are in the
    /// statuses and re-armed by the tick.
    pub(super) async fn resume_in_flight(&mut self) -> Result<(), ServerError> {
        let mut nodes = self
            .store
            .nodes_in_flight()
            .await
            .map_err(|e| ServerError::store_about("resume in-flight nodes", "all nodes", e))?;
        nodes.sort_by_key(|n| (n.status.provision_updated_at_ms, n.uuid()));
        let now = now_ms();
        let resumed = nodes.len();
        for n in nodes {
            let uuid = n.uuid();
            if let Some(agent) = &n.status.agent {
                self.agents
                    .entry(agent.clone())
                    .or_insert_with(|| Agent::placeholder(agent, now));
            }
            match n.status.step {
                DeployStep::Queued => {
                    let needs_slot =
                        n.status.target_provision_state == Some(ProvisionState::Active);
                    lock(&self.queue).push(uuid, needs_slot);
                }
                DeployStep::PrepareRamdisk
                | DeployStep::WaitCallback
                | DeployStep::WriteImage
                | DeployStep::PrepareInstance => {
                    if let Some(agent) = &n.status.agent {
                        self.take_slot(uuid, agent.clone());
                    }
                }
                _ => {}
            }
            self.insert_cache(n);
        }
        if resumed > 0 {
            tracing::info!(
                resumed,
                queued = lock(&self.queue).len(),
                "resumed in-flight nodes"
            );
        }
        Ok(())
    }

    fn intern(&mut self, agent: &AgentId) -> u32 {
        if let Some(n) = self.agent_numbers.get(agent) {
            return *n;
        }
        let n = self.agent_names.len() as u32;
        self.agent_names.push(agent.clone());
        self.agent_numbers.insert(agent.clone(), n);
        n
    }

    /// Keeps the placement index and per-agent loads in step with a node's `status.agent`.
    pub(super) fn set_placed(&mut self, uuid: Uuid, agent: Option<&AgentId>) {
        let new = agent.map(|a| self.intern(a));
        let old = match new {
            Some(n) => self.placed.insert(uuid, n),
            None => self.placed.remove(&uuid),
        };
        if old == new {
            return;
        }
        if let Some(o) = old.and_then(|o| self.agent_names.get(o as usize)) {
            if let Some(c) = self.loads.per_agent.get_mut(o) {
                *c = c.saturating_sub(1);
            }
            self.loads.total = self.loads.total.saturating_sub(1);
        }
        if let Some(a) = agent {
            *self.loads.per_agent.entry(a.clone()).or_insert(0) += 1;
            self.loads.total += 1;
        }
    }

    pub(super) fn insert_cache(&mut self, n: Node) {
        for m in &n.spec.macs {
            self.macs.insert(m.to_ascii_lowercase(), n.uuid());
        }
        self.cache.insert(n.uuid(), n);
    }

    pub(super) fn evict(&mut self, uuid: &Uuid) {
        if let Some(n) = self.cache.remove(uuid) {
            for m in &n.spec.macs {
                let m = m.to_ascii_lowercase();
                if self.macs.get(&m) == Some(uuid) {
                    self.macs.remove(&m);
                }
            }
        }
    }

    /// Makes sure the node is cached (loading it from the store); returns its uuid.
    pub(super) async fn ensure_cached(&mut self, id: &NodeId) -> Result<Uuid, ServerError> {
        if let NodeId::Uuid(u) = id
            && self.cache.contains_key(u)
        {
            return Ok(*u);
        }
        let node = self
            .store
            .get_node(id)
            .await
            .map_err(|e| ServerError::store("load node", id, e))?
            .ok_or_else(|| ServerError::NodeNotFound {
                node: id.to_string(),
            })?;
        let uuid = node.uuid();
        if !self.cache.contains_key(&uuid) {
            self.insert_cache(node);
        }
        Ok(uuid)
    }

    /// Loads the nodes of `ids` given by uuid that are not cached, in one store read, so a
    /// bulk verb does not read its nodes one by one. A failed read only means each node is
    /// then loaded on its own.
    async fn preload(&mut self, ids: &[NodeId]) {
        let missing: Vec<Uuid> = ids
            .iter()
            .filter_map(|id| match id {
                NodeId::Uuid(u) if !self.cache.contains_key(u) => Some(*u),
                _ => None,
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        match self.store.get_nodes(&missing).await {
            Ok(nodes) => {
                for n in nodes {
                    if !self.cache.contains_key(&n.uuid()) {
                        self.insert_cache(n);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(nodes = missing.len(), error = %e, "bulk load failed; loading nodes one by one");
            }
        }
    }

    /// One operator verb; replied to after the commit when applied.
    pub(super) async fn verb_cmd(
        &mut self,
        b: &mut Batch,
        node: NodeId,
        event: Event,
        reply: Reply<NodeView>,
    ) {
        match self.verb(b, &node, event).await {
            Ok(uuid) => b.replies.push(PendingReply::Node(uuid, reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// One verb for many nodes, loaded from the store [`BULK_LOAD`] at a time.
    pub(super) async fn bulk(
        &mut self,
        b: &mut Batch,
        nodes: Vec<NodeId>,
        event: Event,
        reply: Reply<BulkOutcome>,
    ) {
        let mut accepted = 0;
        let mut failures = Vec::new();
        for chunk in nodes.chunks(BULK_LOAD) {
            self.preload(chunk).await;
            for id in chunk {
                match self.verb(b, id, event.clone()).await {
                    Ok(_) => accepted += 1,
                    Err(e) => failures.push(BulkFailure {
                        node: id.to_string(),
                        error: e.to_string(),
                    }),
                }
            }
        }
        b.replies.push(PendingReply::Bulk(
            BulkOutcome { accepted, failures },
            reply,
        ));
    }

    /// One operator event (a provision verb or a power action) on one node.
    async fn verb(
        &mut self,
        b: &mut Batch,
        id: &NodeId,
        event: Event,
    ) -> Result<Uuid, ServerError> {
        let uuid = self.ensure_cached(id).await?;
        let r = self.apply(b, uuid, event);
        if r.is_err() && !b.dirty_set.contains(&uuid) {
            // Nothing changed: do not keep an idle node in memory.
            if self.cache.get(&uuid).is_some_and(|n| !n.status.in_flight()) {
                self.evict(&uuid);
            }
        }
        r.map(|()| uuid)
    }

    /// The operator changed a node's spec (already stored): a cached node takes it.
    pub(super) fn spec_changed(&mut self, node: Node) {
        let uuid = node.uuid();
        if let Some(cached) = self.cache.get(&uuid) {
            let status = cached.status.clone();
            let version = cached.version;
            self.evict(&uuid);
            self.insert_cache(Node {
                spec: node.spec,
                status,
                version,
            });
        }
    }

    /// The operator deleted a node (already gone from the store).
    /// Deletes an idle node: refused while the engine has work under way for it (in
    /// its cache, queued, or changed in the batch being built).
    pub(super) async fn delete(&mut self, b: &Batch, uuid: Uuid) -> Result<(), ServerError> {
        let busy = self
            .cache
            .get(&uuid)
            .filter(|n| n.status.in_flight())
            .map(|n| n.status.provision_state);
        if let Some(state) = busy {
            return Err(ServerError::NotAllowed {
                what: format!(
                    "Can not delete node \"{uuid}\" while it is in provision state \"{state}\"."
                ),
            });
        }
        if b.dirty_set.contains(&uuid) || lock(&self.queue).contains(&uuid) {
            return Err(ServerError::NotAllowed {
                what: format!("Can not delete node \"{uuid}\" while work on it is under way."),
            });
        }
        self.store
            .delete_node(uuid)
            .await
            .map_err(|e| ServerError::store("delete node", uuid, e))?;
        self.metrics.forget(&uuid);
        self.forget(uuid);
        Ok(())
    }

    pub(super) fn forget(&mut self, uuid: Uuid) {
        self.placed_in_queue.remove(&uuid);
        self.evict(&uuid);
        self.set_placed(uuid, None);
        self.release_slot(&uuid);
        lock(&self.queue).remove(&uuid);
    }

    /// Where placement would put `node` now, and why.
    pub(super) fn explain(&self, node: &Node) -> Explanation {
        let views = self.agent_views();
        let bmc_ip = bmc_ip(node);
        let p = core::place(
            &PlacementNode {
                uuid: node.uuid(),
                bmc_ip,
                share_selector: &node.spec.share_selector,
                current: node.status.agent.as_ref(),
            },
            &views,
            &self.loads,
        );
        Explanation {
            node: node.uuid(),
            placement: p,
        }
    }

    /// Times out every cached node whose deadline has passed.
    pub(super) fn fire_deadlines(&mut self, b: &mut Batch, now: i64) {
        let due: Vec<Uuid> = self
            .cache
            .values()
            .filter(|n| n.status.deadline_ms.is_some_and(|d| d <= now))
            .map(Node::uuid)
            .collect();
        for uuid in due {
            if let Err(e) = self.apply(b, uuid, Event::Timeout { now_ms: now }) {
                tracing::warn!(node = %uuid, error = %e, "timeout not applied");
            }
        }
    }
}
