//! Admission policy: which queued nodes get placed, and which get admitted (and a boot
//! slot), in one round. Pure: the caller (the engine) passes the queue and the agents'
//! state in and applies the returned [`AdmissionStep`]s in order.
//!
//! # The rules, per queued node in arrival order
//! 1. A node that needs a boot slot (a deploy) waits when no healthy, connected, undrained
//!    agent has a free slot and it was already told where it is placed; it also waits while
//!    the global cap is reached (`global_cap` > 0 and `active_total >= global_cap`). Nodes
//!    that need no slot (verify, clean) go on behind waiting deploys.
//! 2. A node the caller no longer holds leaves the queue ([`AdmissionStep::Forget`]).
//! 3. Its agent: the current one while that is healthy and undrained, otherwise what
//!    [`place`] chooses. No agent: it waits.
//! 4. Work-conserving: a deploy whose agent is full, while some slot is free elsewhere,
//!    takes a free slot of another eligible agent instead, chosen by [`place`] among
//!    agents that are healthy, undrained, connected, have a free slot and hold at least
//!    TWO nodes fewer than the full one ("two nodes fewer": every move narrows the spread
//!    of loads, so nodes do not wander between equally loaded agents).
//! 5. The node is told its agent ([`AdmissionStep::Place`]) when that changed or it was
//!    not told yet in this stay in the queue; the loads follow the move.
//! 6. It is admitted ([`AdmissionStep::Admit`]) when its agent is connected and, for a
//!    deploy, has a free slot; a deploy then holds one of the agent's slots and counts
//!    towards the global cap for the rest of the round.
//!
//! Nodes behind a full agent do not block nodes of other agents.

use std::collections::HashMap;

use uuid::Uuid;

use crate::agent::AgentId;
use crate::placement::{AgentView, Loads, PlacementNode, place};

/// One share agent as admission sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSlots {
    /// As placement sees it (`healthy` and `drained` as of now).
    pub view: AgentView,
    /// It has a live session: jobs can be sent to it now.
    pub connected: bool,
    /// Boot slots in use (of `view.capacity`).
    pub active: u32,
}

/// One node waiting in the admission queue.
#[derive(Debug, Clone, Copy)]
pub struct QueuedNode<'a> {
    pub uuid: Uuid,
    /// It needs one of its agent's boot slots (a deploy).
    pub needs_slot: bool,
    /// It was already told where it is placed during this stay in the queue.
    pub placed: bool,
    /// What placement needs to know (`current`: the agent it is placed on now). `None`
    /// when the caller no longer holds the node.
    pub node: Option<PlacementNode<'a>>,
}

/// Everything one admission round looks at.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionInput<'a> {
    /// The queue, in arrival order.
    pub queue: &'a [QueuedNode<'a>],
    /// Every known agent.
    pub agents: &'a [AgentSlots],
    /// Nodes placed on each agent.
    pub loads: &'a Loads,
    /// Most boot slots in use at once over all agents; 0 = no cap.
    pub global_cap: u32,
    /// Boot slots in use now over all agents.
    pub active_total: u32,
}

/// What to do, in order. A node may get a `Place` and then an `Admit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionStep {
    /// The caller no longer holds the node: drop it from the queue.
    Forget { node: Uuid },
    /// Tell the node where it is placed (`Event::Placed`); it may go on waiting there.
    Place { node: Uuid, agent: AgentId },
    /// Admit the node on `agent` (`Event::Admitted`); with `takes_slot` it holds one of
    /// the agent's boot slots from now on.
    Admit {
        node: Uuid,
        agent: AgentId,
        takes_slot: bool,
    },
}

/// Free boot slots on agents that can take work now (healthy, connected, undrained). A
/// caller may leave out of [`AdmissionInput::queue`] the nodes that need a slot and are
/// already placed when this is 0: rule 1 makes them wait anyway.
pub fn free_slots(agents: &[AgentSlots]) -> u64 {
    agents
        .iter()
        .filter(|a| a.view.healthy && a.connected && !a.view.drained)
        .map(|a| u64::from(a.view.capacity.saturating_sub(a.active)))
        .sum()
}

/// One admission round (see the module docs for the rules). The steps assume that each
/// one the caller applies succeeds; the caller drops the `Admit` of a node whose `Place`
/// it could not apply.
pub fn admit(input: &AdmissionInput<'_>) -> Vec<AdmissionStep> {
    let mut out = Vec::new();
    if input.queue.is_empty() {
        return out;
    }
    let views: Vec<AgentView> = input.agents.iter().map(|a| a.view.clone()).collect();
    let index: HashMap<&AgentId, usize> = input
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (&a.view.id, i))
        .collect();
    // What changes during the round: slots taken, and loads as nodes move.
    let mut active: Vec<u32> = input.agents.iter().map(|a| a.active).collect();
    let mut active_total = input.active_total;
    let mut free = free_slots(input.agents);
    let mut loads = input.loads.clone();
    let cap = input.global_cap;

    for q in input.queue {
        if q.needs_slot && free == 0 && q.placed {
            continue;
        }
        if q.needs_slot && cap > 0 && active_total >= cap {
            // Deploys wait for the global cap; verify/clean work behind them may go on.
            continue;
        }
        let Some(node) = q.node else {
            out.push(AdmissionStep::Forget { node: q.uuid });
            continue;
        };
        let current = node.current;
        let current_ok =
            current.is_some_and(|s| views.iter().any(|v| &v.id == s && v.healthy && !v.drained));
        let chosen = if current_ok {
            current.cloned()
        } else {
            place(&node, &views, &loads).chosen
        };
        let Some(mut agent) = chosen else { continue };
        let full = |agent: &AgentId, active: &[u32]| {
            index
                .get(agent)
                .is_some_and(|&i| active[i] >= input.agents[i].view.capacity)
        };
        if q.needs_slot
            && free > 0
            && full(&agent, &active)
            && let Some(other) = free_agent_for(&node, &agent, input.agents, &active, &loads)
        {
            // Work-conserving admission: a deploy that would wait behind a full agent
            // takes a free slot of another eligible agent instead. Nothing of the node is
            // on its share before admission (the media are written by its first job), so
            // the move is free, and without it one share holding a few nodes more than
            // the others needs a whole extra round of deploys (64 nodes on 4 shares of 8
            // slots: 17 on one share = 3 rounds, not 2).
            agent = other;
        }
        if current != Some(&agent) || !q.placed {
            moved(&mut loads, current, &agent);
            out.push(AdmissionStep::Place {
                node: q.uuid,
                agent: agent.clone(),
            });
        }
        let Some(&i) = index.get(&agent) else {
            continue;
        };
        if !input.agents[i].connected {
            continue;
        }
        if q.needs_slot && active[i] >= input.agents[i].view.capacity {
            continue;
        }
        if q.needs_slot {
            active[i] += 1;
            active_total += 1;
            free = free.saturating_sub(1);
        }
        out.push(AdmissionStep::Admit {
            node: q.uuid,
            agent,
            takes_slot: q.needs_slot,
        });
    }
    out
}

/// Rule 4: an eligible agent other than `full` with a free boot slot and a live session,
/// holding at least two nodes fewer than `full`, chosen by [`place`] among those (so labels
/// and BMC networks are respected).
fn free_agent_for(
    node: &PlacementNode<'_>,
    full: &AgentId,
    agents: &[AgentSlots],
    active: &[u32],
    loads: &Loads,
) -> Option<AgentId> {
    let load = |id: &AgentId| loads.per_agent.get(id).copied().unwrap_or(0);
    let full_load = load(full);
    let open: Vec<AgentView> = agents
        .iter()
        .zip(active)
        .filter(|(a, active)| {
            let v = &a.view;
            &v.id != full
                && load(&v.id) + 1 < full_load
                && v.healthy
                && !v.drained
                && a.connected
                && **active < v.capacity
        })
        .map(|(a, _)| a.view.clone())
        .collect();
    if open.is_empty() {
        return None;
    }
    place(
        &PlacementNode {
            current: None,
            ..*node
        },
        &open,
        loads,
    )
    .chosen
}

/// A node moved from `from` to `to`: the loads follow (nothing when it stays).
fn moved(loads: &mut Loads, from: Option<&AgentId>, to: &AgentId) {
    if from == Some(to) {
        return;
    }
    if let Some(from) = from {
        if let Some(c) = loads.per_agent.get_mut(from) {
            *c = c.saturating_sub(1);
        }
        loads.total = loads.total.saturating_sub(1);
    }
    *loads.per_agent.entry(to.clone()).or_insert(0) += 1;
    loads.total += 1;
}
