//! Admission: boot slots, and the round that places queued nodes and admits them while
//! their agent (and the global cap) has room. The policy is `coordinator_core::admit`, a
//! pure function; this module gathers its inputs and applies its steps.

use coordinator_core::{
    self as core, AdmissionInput, AdmissionStep, AgentId, AgentSlots, Event, PlacementNode,
    QueuedNode,
};
use uuid::Uuid;

use super::commit::Batch;
use super::nodes::bmc_ip;
use super::{Engine, lock};

fn token() -> core::Secret {
    core::new_agent_token(rand::random::<[u8; 32]>())
}

impl Engine {
    pub(super) fn take_slot(&mut self, uuid: Uuid, agent: AgentId) {
        if self.slots.contains_key(&uuid) {
            return;
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.active += 1;
        }
        self.slots.insert(uuid, agent);
        self.active_total += 1;
    }

    pub(super) fn release_slot(&mut self, uuid: &Uuid) -> bool {
        match self.slots.remove(uuid) {
            Some(agent) => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.active = a.active.saturating_sub(1);
                }
                self.active_total = self.active_total.saturating_sub(1);
                true
            }
            None => false,
        }
    }

    /// The agents as admission sees them (in id order).
    fn agent_slots(&self) -> Vec<AgentSlots> {
        self.agent_views()
            .into_iter()
            .zip(self.agents.values())
            .map(|(view, a)| AgentSlots {
                view,
                connected: a.session.is_some(),
                active: a.active,
            })
            .collect()
    }

    /// Admission round: asks the policy (`coordinator_core::admit`) which queued nodes to
    /// place and admit, then applies its steps.
    pub(super) fn admit(&mut self, b: &mut Batch) {
        if lock(&self.queue).is_empty() {
            return;
        }
        let agents = self.agent_slots();
        // This round runs after every slot release, with thousands of placed deploys
        // waiting: take only the entries it can move (the policy would skip the others).
        let free = core::free_slots(&agents);
        let queued: Vec<(Uuid, bool)> = lock(&self.queue)
            .iter()
            .filter(|(uuid, needs_slot)| {
                !(*needs_slot && free == 0 && self.placed_in_queue.contains(uuid))
            })
            .collect();
        if queued.is_empty() {
            return;
        }
        let steps = {
            let queue: Vec<QueuedNode<'_>> = queued
                .iter()
                .map(|&(uuid, needs_slot)| QueuedNode {
                    uuid,
                    needs_slot,
                    placed: self.placed_in_queue.contains(&uuid),
                    node: self.cache.get(&uuid).map(|node| PlacementNode {
                        uuid,
                        bmc_ip: bmc_ip(node),
                        share_selector: &node.spec.share_selector,
                        current: node.status.agent.as_ref(),
                    }),
                })
                .collect();
            core::admit(&AdmissionInput {
                queue: &queue,
                agents: &agents,
                loads: &self.loads,
                global_cap: self.cfg.max_concurrent,
                active_total: self.active_total,
            })
        };
        let mut not_placed = None;
        for step in steps {
            match step {
                AdmissionStep::Forget { node } => {
                    lock(&self.queue).remove(&node);
                    self.metrics.dequeued(&node);
                }
                AdmissionStep::Place { node, agent } => {
                    if let Err(e) = self.apply(
                        b,
                        node,
                        Event::Placed {
                            agent: agent.clone(),
                        },
                    ) {
                        tracing::warn!(node = %node, agent = %agent, error = %e, "placement not applied");
                        not_placed = Some(node);
                        continue;
                    }
                    self.placed_in_queue.insert(node);
                }
                AdmissionStep::Admit {
                    node,
                    agent,
                    takes_slot,
                } => {
                    if not_placed == Some(node) {
                        continue;
                    }
                    lock(&self.queue).remove(&node);
                    self.placed_in_queue.remove(&node);
                    self.metrics.admitted(node);
                    if takes_slot {
                        self.take_slot(node, agent.clone());
                    }
                    if let Err(e) = self.apply(
                        b,
                        node,
                        Event::Admitted {
                            agent_token: token(),
                        },
                    ) {
                        tracing::warn!(node = %node, agent = %agent, error = %e, "admission not applied");
                        self.release_slot(&node);
                    }
                }
            }
        }
    }
}
