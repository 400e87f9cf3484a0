//! Admission: boot slots, and the round that places queued nodes and admits them while
//! their agent (and the global cap) has room.

use coordinator_core::{self as core, AgentView, Event, PlacementNode};
use uuid::Uuid;

use super::agents::Health;
use super::commit::Batch;
use super::nodes::bmc_ip;
use super::{Engine, lock};

fn token() -> core::Secret {
    core::new_agent_token(rand::random::<[u8; 32]>())
}

impl Engine {
    pub(super) fn take_slot(&mut self, uuid: Uuid, share: String) {
        if self.slots.contains_key(&uuid) {
            return;
        }
        if let Some(a) = self.agents.get_mut(&share) {
            a.active += 1;
        }
        self.slots.insert(uuid, share);
        self.active_total += 1;
    }

    pub(super) fn release_slot(&mut self, uuid: &Uuid) -> bool {
        match self.slots.remove(uuid) {
            Some(share) => {
                if let Some(a) = self.agents.get_mut(&share) {
                    a.active = a.active.saturating_sub(1);
                }
                self.active_total = self.active_total.saturating_sub(1);
                true
            }
            None => false,
        }
    }

    /// Admission round: places queued nodes and admits them while their agent (and the
    /// global cap) has room. Nodes behind a full agent do not block nodes of other agents.
    pub(super) fn admit(&mut self, b: &mut Batch) {
        if lock(&self.queue).is_empty() {
            return;
        }
        let global_cap = self.cfg.max_concurrent;
        // Free boot slots on agents that can take work: lets the loop skip, cheaply, the
        // (possibly thousands of) placed deploys that can only wait.
        let mut free: u64 = self
            .agents
            .values()
            .filter(|a| {
                a.health == Health::Healthy
                    && a.session.is_some()
                    && !self.drained.contains(&a.view.id)
            })
            .map(|a| u64::from(a.view.capacity.saturating_sub(a.active)))
            .sum();
        // This round runs after every slot release, with thousands of placed deploys
        // waiting: take only the entries it can move. `free` never grows during the round,
        // so a placed deploy left out here would be skipped by the loop anyway.
        let queued: Vec<(Uuid, bool)> = lock(&self.queue)
            .iter()
            .filter(|(uuid, needs_slot)| {
                !(*needs_slot && free == 0 && self.placed_in_queue.contains(uuid))
            })
            .collect();
        if queued.is_empty() {
            return;
        }
        let views = self.agent_views();
        for (uuid, needs_slot) in queued {
            if needs_slot && free == 0 && self.placed_in_queue.contains(&uuid) {
                continue;
            }
            if needs_slot && global_cap > 0 && self.active_total >= global_cap {
                // Deploys wait for the global cap; verify/clean work behind them may go on.
                continue;
            }
            let Some(node) = self.cache.get(&uuid) else {
                lock(&self.queue).remove(&uuid);
                continue;
            };
            let current = node.status.share.clone();
            let current_ok = current
                .as_ref()
                .is_some_and(|s| views.iter().any(|v| &v.id == s && v.healthy && !v.drained));
            let share = if current_ok {
                current.clone()
            } else {
                let p = core::place(
                    &PlacementNode {
                        uuid,
                        bmc_ip: bmc_ip(node),
                        share_selector: &node.spec.share_selector,
                        current: current.as_deref(),
                    },
                    &views,
                    &self.loads,
                );
                p.chosen
            };
            let Some(mut share) = share else { continue };
            if needs_slot
                && free > 0
                && self
                    .agents
                    .get(&share)
                    .is_some_and(|a| a.active >= a.view.capacity)
                && let Some(other) = self.free_agent_for(uuid, &share, &views)
            {
                // Work-conserving admission: a deploy that would wait behind a full agent
                // takes a free slot of another eligible agent instead. Nothing of the
                // node is on its share before admission (the media are written by its
                // first job), so the move is free, and without it one share holding a
                // few nodes more than the others needs a whole extra round of deploys
                // (64 nodes on 4 shares of 8 slots: 17 on one share = 3 rounds, not 2).
                share = other;
            }
            if current.as_deref() != Some(share.as_str()) || !self.placed_in_queue.contains(&uuid) {
                if let Err(e) = self.apply(
                    b,
                    uuid,
                    Event::Placed {
                        share: share.clone(),
                    },
                ) {
                    tracing::warn!(node = %uuid, share, error = %e, "placement not applied");
                    continue;
                }
                self.placed_in_queue.insert(uuid);
            }
            let Some(agent) = self.agents.get(&share) else {
                continue;
            };
            if agent.session.is_none() {
                continue;
            }
            if needs_slot && agent.active >= agent.view.capacity {
                continue;
            }
            lock(&self.queue).remove(&uuid);
            self.placed_in_queue.remove(&uuid);
            if needs_slot {
                self.take_slot(uuid, share.clone());
                free = free.saturating_sub(1);
            }
            if let Err(e) = self.apply(
                b,
                uuid,
                Event::Admitted {
                    agent_token: token(),
                },
            ) {
                tracing::warn!(node = %uuid, share, error = %e, "admission not applied");
                self.release_slot(&uuid);
            }
        }
    }

    /// An eligible agent other than `full` with a free boot slot and a live session,
    /// chosen by core placement among those (so labels and BMC networks are respected).
    /// Only agents holding at least two nodes fewer than `full` qualify: every move then
    /// narrows the spread of loads, so balance only improves and nodes do not wander
    /// between equally loaded agents.
    fn free_agent_for(&self, uuid: Uuid, full: &str, views: &[AgentView]) -> Option<String> {
        let node = self.cache.get(&uuid)?;
        let load = |id: &str| self.loads.per_agent.get(id).copied().unwrap_or(0);
        let full_load = load(full);
        let open: Vec<AgentView> = views
            .iter()
            .filter(|v| {
                v.id != full
                    && load(&v.id) + 1 < full_load
                    && v.healthy
                    && !v.drained
                    && self
                        .agents
                        .get(&v.id)
                        .is_some_and(|a| a.session.is_some() && a.active < a.view.capacity)
            })
            .cloned()
            .collect();
        if open.is_empty() {
            return None;
        }
        core::place(
            &PlacementNode {
                uuid,
                bmc_ip: bmc_ip(node),
                share_selector: &node.spec.share_selector,
                current: None,
            },
            &open,
            &self.loads,
        )
        .chosen
    }
}
