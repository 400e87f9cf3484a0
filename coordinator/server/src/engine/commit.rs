//! Commit and side effects: one event at a time through the state machine into a
//! [`Batch`], then ONE store write for the whole batch (row by row when the store refuses
//! the batch, so that one bad row costs only its own node), then the jobs, events and replies.

use std::collections::{HashMap, HashSet};

use super::handle::Reply;
use super::{Engine, lock, now_ms, queue_position, queue_positions};
use crate::domain::{AgentJob, BulkOutcome, NodeEvent, NodeView, ToAgent};
use crate::error::ServerError;
use crate::metrics::EngineMetrics;
use coordinator_core::{self as core, Action, AgentId, Event, NodeId};
use uuid::Uuid;

/// Work gathered while applying one batch; performed after the commit.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) dirty: Vec<Uuid>,
    pub(super) dirty_set: HashSet<Uuid>,
    pub(super) sends: Vec<(AgentId, ToAgent)>,
    pub(super) emits: Vec<Uuid>,
    pub(super) replies: Vec<PendingReply>,
    pub(super) admit_needed: bool,
}

pub(super) enum PendingReply {
    Node(Uuid, Reply<NodeView>),
    Bulk(BulkOutcome, Reply<BulkOutcome>),
    Unit(Reply<()>),
}

impl Batch {
    pub(super) fn mark(&mut self, uuid: Uuid) {
        if self.dirty_set.insert(uuid) {
            self.dirty.push(uuid);
        }
    }
}

impl Engine {
    /// Applies one event to a cached node; queues the side effects in `b`.
    pub(super) fn apply(
        &mut self,
        b: &mut Batch,
        uuid: Uuid,
        event: Event,
    ) -> Result<(), ServerError> {
        let now = now_ms();
        let Some(node) = self.cache.get_mut(&uuid) else {
            return Err(ServerError::NodeNotFound {
                node: uuid.to_string(),
            });
        };
        let before = EngineMetrics::before(&event, &node.status);
        let t = core::step(&node.status, &node.spec, event, now, &self.machine)?;
        if t.is_noop(&node.status) {
            return Ok(());
        }
        node.status = t.status;
        self.metrics.transition(uuid, before, &node.status, now);
        let agent = node.status.agent.clone();
        b.mark(uuid);
        self.set_placed(uuid, agent.as_ref());
        for action in t.actions {
            self.act(b, uuid, action);
        }
        Ok(())
    }

    fn act(&mut self, b: &mut Batch, uuid: Uuid, action: Action) {
        match action {
            Action::Enqueue { needs_slot } => {
                self.placed_in_queue.remove(&uuid);
                lock(&self.queue).push(uuid, needs_slot);
                self.metrics.enqueued(uuid);
                b.admit_needed = true;
            }
            Action::SendJob { intent, spec } => {
                let Some(node) = self.cache.get(&uuid) else {
                    return;
                };
                let Some(agent) = node.status.agent.clone() else {
                    tracing::warn!(node = %uuid, job = %intent.job_id, "job intent without a share; kept for resume");
                    return;
                };
                let job = AgentJob {
                    node: uuid,
                    intent,
                    spec,
                    bmc: core::bmc_target(&node.spec).ok(),
                };
                b.sends.push((agent, ToAgent::Job(Box::new(job))));
            }
            Action::CancelJob { job_id } => {
                let Some(agent) = self.cache.get(&uuid).and_then(|n| n.status.agent.clone()) else {
                    return;
                };
                b.sends
                    .push((agent, ToAgent::Cancel { job_id, node: uuid }));
            }
            Action::ReleaseSlot => {
                let released = self.release_slot(&uuid);
                let dequeued = lock(&self.queue).remove(&uuid);
                if dequeued {
                    self.metrics.dequeued(&uuid);
                }
                if released || dequeued {
                    b.admit_needed = true;
                }
            }
            Action::Emit => b.emits.push(uuid),
        }
    }

    /// Rows the store did not write: drop their in-memory changes (reload what the store
    /// has), fail their callers, and keep their side effects from happening. Everything
    /// else in the batch goes ahead.
    async fn discard_failed(&mut self, b: &mut Batch, failed: &HashMap<Uuid, String>) {
        for (uuid, e) in failed {
            tracing::error!(node = %uuid, error = %e, "status commit failed; the node's change is discarded");
            self.evict(uuid);
            if let Ok(Some(n)) = self.store.get_node(&NodeId::Uuid(*uuid)).await {
                self.set_placed(*uuid, n.status.agent.as_ref());
                if n.status.in_flight() {
                    self.insert_cache(n);
                }
            }
        }
        b.sends.retain(|(_, msg)| match msg {
            ToAgent::Job(j) => !failed.contains_key(&j.node),
            ToAgent::Cancel { node, .. } | ToAgent::PowerQuery { node, .. } => {
                !failed.contains_key(node)
            }
            ToAgent::Welcome { .. } => true,
        });
        b.emits.retain(|u| !failed.contains_key(u));
        let any = failed.iter().next().map(|(u, e)| (*u, e.clone()));
        let replies = std::mem::take(&mut b.replies);
        for r in replies {
            let err = |node: String, detail: &str| ServerError::Commit {
                node,
                detail: detail.to_string(),
            };
            match r {
                PendingReply::Node(uuid, tx) => match failed.get(&uuid) {
                    Some(e) => {
                        let _ = tx.send(Err(err(uuid.to_string(), e)));
                    }
                    None => b.replies.push(PendingReply::Node(uuid, tx)),
                },
                // A bulk or unit reply cannot say which node failed: it fails as a whole,
                // so the caller retries (the verbs are idempotent).
                PendingReply::Bulk(_, tx) => {
                    if let Some((u, e)) = &any {
                        let _ = tx.send(Err(err(u.to_string(), e)));
                    }
                }
                PendingReply::Unit(tx) => {
                    if let Some((u, e)) = &any {
                        let _ = tx.send(Err(err(u.to_string(), e)));
                    }
                }
            }
        }
    }

    /// Commits the batch, then performs its side effects.
    pub(super) async fn flush(&mut self, mut b: Batch) {
        if !b.dirty.is_empty() {
            let rows: Vec<(Uuid, u64, core::NodeStatus)> = b
                .dirty
                .iter()
                .filter_map(|u| self.cache.get(u).map(|n| (*u, n.version, n.status.clone())))
                .collect();
            let t0 = std::time::Instant::now();
            let written = self.store.update_statuses(&rows).await;
            self.metrics
                .committed(rows.len(), t0.elapsed().as_secs_f64());
            let failed: HashMap<Uuid, String> = match written {
                Ok(versions) => {
                    for ((uuid, _, _), v) in rows.iter().zip(versions) {
                        if let Some(n) = self.cache.get_mut(uuid) {
                            n.version = v;
                        }
                    }
                    HashMap::new()
                }
                // One row the store refuses (a node deleted or changed meanwhile) must not
                // cost every other node its update: commit the rows one by one, and drop
                // only what failed.
                Err(e) if rows.len() > 1 => {
                    tracing::warn!(error = %e, nodes = rows.len(), "status batch refused; committing its rows one by one");
                    let mut failed = HashMap::new();
                    for row in &rows {
                        match self.store.update_statuses(std::slice::from_ref(row)).await {
                            Ok(v) => {
                                if let (Some(n), Some(v)) = (self.cache.get_mut(&row.0), v.first())
                                {
                                    n.version = *v;
                                }
                            }
                            Err(e) => {
                                failed.insert(row.0, e.to_string());
                            }
                        }
                    }
                    failed
                }
                Err(e) => rows.iter().map(|(u, _, _)| (*u, e.to_string())).collect(),
            };
            if !failed.is_empty() {
                self.discard_failed(&mut b, &failed).await;
            }
        }
        for (agent, msg) in b.sends.drain(..) {
            match self.agents.get(&agent).and_then(|a| a.session.as_ref()) {
                Some((_, tx)) => {
                    if tx.send(msg).is_err() {
                        tracing::debug!(agent = %agent, "agent stream gone; job will be re-sent on reconnect");
                    }
                }
                None => {
                    tracing::debug!(agent = %agent, "agent not connected; job will be re-sent on reconnect")
                }
            }
        }
        if self.events.receiver_count() > 0 && !b.emits.is_empty() {
            let positions = queue_positions(&self.queue, &b.emits);
            for (uuid, pos) in b.emits.iter().zip(positions) {
                if let Some(n) = self.cache.get(uuid) {
                    // Stamped with the status's own time, which Watch's `since_ms` resume
                    // compares and re-sends: a resuming client recognises what it saw.
                    let _ = self
                        .events
                        .send(NodeEvent::of(n, pos, n.status.updated_at_ms));
                }
            }
        }
        for r in b.replies {
            match r {
                PendingReply::Node(uuid, tx) => {
                    let result = match self.cache.get(&uuid) {
                        Some(n) => Ok(NodeView {
                            node: n.clone(),
                            queue_position: queue_position(&self.queue, &uuid),
                        }),
                        None => self
                            .store
                            .get_node(&NodeId::Uuid(uuid))
                            .await
                            .map_err(|e| ServerError::store("read node", uuid, e))
                            .and_then(|n| {
                                n.ok_or(ServerError::NodeNotFound {
                                    node: uuid.to_string(),
                                })
                            })
                            .map(|node| NodeView {
                                node,
                                queue_position: 0,
                            }),
                    };
                    let _ = tx.send(result);
                }
                PendingReply::Bulk(outcome, tx) => {
                    let _ = tx.send(Ok(outcome));
                }
                PendingReply::Unit(tx) => {
                    let _ = tx.send(Ok(()));
                }
            }
        }
        // Nodes at rest leave the cache: memory stays proportional to work under way.
        for uuid in &b.dirty {
            if self.cache.get(uuid).is_some_and(|n| !n.status.in_flight()) {
                self.evict(uuid);
            }
        }
    }
}
