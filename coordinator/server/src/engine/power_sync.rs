//! The power-state sync (Ironic's `sync_power_state_interval`): every placed node's power
//! state is read from its BMC once per period, by its share agent, and a change is
//! recorded through the state machine (`Event::PowerObserved`: report only, or power the
//! node back with `force_power_state_during_sync`).
//!
//! # Budget, not a herd
//! Each agent has a round: the list of its nodes, taken when the previous round ended and
//! the period has passed. Queries leave at an even rate, `nodes / period`, capped by the
//! agent's budget (`power_sync_budget` BMC requests per second): a token bucket filled on
//! every engine tick and never holding more than one second's worth. An agent with more
//! nodes than `budget x period` simply takes longer per round. A query that cost the agent
//! more than one BMC request (an IPMI session, a transport probe) is charged in full when
//! its report comes back.
//!
//! # Cost
//! One store read per agent and tick (the nodes of that tick's queries, for their BMC
//! settings), nothing written unless a power state changed. Nodes with a job under way are
//! skipped for the round: their job reports the power state itself.

use std::collections::HashMap;

use coordinator_core::{self as core, AgentId, Event, NodeId, PowerState};
use uuid::Uuid;

use super::Engine;
use super::agents::Health;
use super::commit::Batch;
use crate::domain::{PowerReport, ToAgent};

/// One agent's round.
#[derive(Debug, Default)]
struct Round {
    /// Nodes still to query in this round (popped from the end).
    todo: Vec<Uuid>,
    /// Nodes in the round when it started (the rate is `size / period`).
    size: usize,
    started_ms: i64,
    /// Requests the agent may send now (token bucket).
    tokens: f64,
}

/// The sync's state, kept by the engine.
#[derive(Debug, Default)]
pub struct PowerSync {
    rounds: HashMap<AgentId, Round>,
    last_tick_ms: i64,
    /// The power state each queried node had in the store when its query left, so an
    /// unchanged answer needs no store read.
    /// Outstanding queries: the agent asked, and the power state recorded when asking.
    expected: HashMap<Uuid, (AgentId, Option<PowerState>)>,
    /// Totals since start (logged at each finished round; `vmedia bench` reads the log).
    pub queries: u64,
    pub reports: u64,
    pub failures: u64,
    pub changes: u64,
    pub bmc_requests: u64,
}

impl Engine {
    /// Timer: starts due rounds and sends this tick's share of every round's queries.
    pub(super) async fn power_sync_tick(&mut self, b: &mut Batch, now: i64) {
        let period_ms = self.cfg.sync_power_state_interval.as_millis() as i64;
        if period_ms == 0 || self.cfg.power_sync_budget == 0 {
            return;
        }
        let dt_s = if self.power_sync.last_tick_ms == 0 {
            0.0
        } else {
            ((now - self.power_sync.last_tick_ms).max(0) as f64) / 1000.0
        };
        self.power_sync.last_tick_ms = now;
        let budget = f64::from(self.cfg.power_sync_budget);
        let live: Vec<(AgentId, u32)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.health == Health::Healthy && a.session.is_some())
            .filter_map(|(id, _)| self.agent_numbers.get(id).map(|n| (id.clone(), *n)))
            .collect();
        for (agent, number) in live {
            let round = self.power_sync.rounds.entry(agent.clone()).or_default();
            if round.todo.is_empty()
                && (round.started_ms == 0 || now - round.started_ms >= period_ms)
            {
                if round.started_ms != 0 && round.size > 0 {
                    tracing::debug!(agent = %agent, nodes = round.size, took_ms = now - round.started_ms, "power-state sync round done");
                }
                round.todo = self
                    .placed
                    .iter()
                    .filter(|(_, n)| **n == number)
                    .map(|(u, _)| *u)
                    .collect();
                round.todo.sort_unstable();
                round.size = round.todo.len();
                round.started_ms = now;
                round.tokens = 0.0;
            }
            if round.todo.is_empty() {
                continue;
            }
            let rate = (round.size as f64 * 1000.0 / period_ms as f64).min(budget);
            round.tokens = (round.tokens + rate * dt_s).min(rate.max(1.0));
            let n = (round.tokens.floor() as usize).min(round.todo.len());
            if n == 0 {
                continue;
            }
            round.tokens -= n as f64;
            let at = round.todo.len() - n;
            let batch: Vec<Uuid> = round.todo.split_off(at);
            self.send_power_queries(b, &agent, batch).await;
        }
    }

    async fn send_power_queries(&mut self, b: &mut Batch, agent: &AgentId, uuids: Vec<Uuid>) {
        // Busy nodes are skipped: their job reads the power state itself.
        let wanted: Vec<Uuid> = uuids
            .into_iter()
            .filter(|u| self.cache.get(u).is_none_or(|n| n.status.job.is_none()))
            .collect();
        let nodes = match self.store.get_nodes(&wanted).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(agent = %agent, nodes = wanted.len(), error = %e, "power-state sync: cannot load nodes; they wait for the next round");
                return;
            }
        };
        for n in nodes {
            if n.status.agent.as_ref() != Some(agent) || n.spec.maintenance {
                continue;
            }
            let Ok(bmc) = core::bmc_target(&n.spec) else {
                continue;
            };
            let uuid = n.uuid();
            self.power_sync
                .expected
                .insert(uuid, (agent.clone(), n.status.power_state));
            self.power_sync.queries += 1;
            b.sends.push((
                agent.clone(),
                ToAgent::PowerQuery {
                    node: uuid,
                    bmc: Box::new(bmc),
                },
            ));
        }
    }

    /// An agent's answer: a change goes through the state machine; the rest is counted.
    pub(super) async fn power_report(&mut self, b: &mut Batch, agent: &AgentId, r: PowerReport) {
        let Ok(uuid) = Uuid::parse_str(&r.node_uuid) else {
            tracing::warn!(agent = %agent, node = %crate::logsafe::clean(&r.node_uuid), "power report with a bad node uuid ignored");
            return;
        };
        // Only the agent that was asked may answer, and only once: another share's agent
        // cannot make up the power state of a node it does not serve.
        let expected = match self.power_sync.expected.get(&uuid) {
            Some((asked, state)) if asked == agent => *state,
            _ => {
                tracing::warn!(agent = %agent, node = %uuid, "power report for a node this agent was not asked about ignored");
                return;
            }
        };
        self.power_sync.expected.remove(&uuid);
        let ps = &mut self.power_sync;
        ps.reports += 1;
        ps.bmc_requests += u64::from(r.bmc_requests);
        if r.bmc_requests > 1
            && let Some(round) = ps.rounds.get_mut(agent)
        {
            round.tokens -= f64::from(r.bmc_requests - 1);
        }
        let Some(state) = r.power_state else {
            ps.failures += 1;
            tracing::info!(agent = %agent, node = %uuid, error = %r.error, "power-state sync: read failed");
            return;
        };
        let cached = self.cache.get(&uuid).map(|n| n.status.power_state);
        let known = cached.or(Some(expected));
        if known == Some(Some(state)) {
            return;
        }
        if let Err(e) = self.ensure_cached(&NodeId::Uuid(uuid)).await {
            tracing::debug!(node = %uuid, error = %e, "power report for a node that is gone");
            return;
        }
        let before = self.cache.get(&uuid).and_then(|n| n.status.power_state);
        match self.apply(b, uuid, Event::PowerObserved(state)) {
            Ok(()) => {
                if before != Some(state) {
                    self.power_sync.changes += 1;
                    tracing::info!(node = %uuid, agent = %agent, from = before.map_or("unknown", |p| p.as_str()), to = state.as_str(), "power-state sync: power state changed");
                }
            }
            Err(e) => tracing::warn!(node = %uuid, error = %e, "power report not applied"),
        }
        if !b.dirty_set.contains(&uuid)
            && self.cache.get(&uuid).is_some_and(|n| !n.status.in_flight())
        {
            self.evict(&uuid);
        }
    }
}
