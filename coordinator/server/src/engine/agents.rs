//! The agent registry and its health: sessions (hello, heartbeats, stream closed), job
//! results, loss, drain, the share views, and re-homing the idle nodes of lost or drained
//! agents.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use coordinator_core::{self as core, AgentId, AgentView, Cidr, Event, Node, PlacementNode};
use coordinator_store::NodeFilter;
use uuid::Uuid;

use super::commit::Batch;
use super::handle::AgentTx;
use super::nodes::bmc_ip;
use super::{Engine, lock, now_ms};
use crate::domain::{
    AgentHeartbeat, AgentHello, AgentJob, JobState, JobUpdate, NodeEvent, ShareHealth, ShareView,
    ToAgent,
};
use crate::error::ServerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// Connected and heartbeating.
    Healthy,
    /// Stream closed (or, after a restart, not reconnected yet): no new work; lost if it
    /// does not come back within the deadline.
    Suspect,
    /// Gone: its nodes' in-flight work restarted elsewhere.
    Lost,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspect => "suspect",
            Self::Lost => "lost",
        }
    }
}

pub(super) struct Agent {
    pub(super) hello: AgentHello,
    pub(super) view: AgentView,
    pub(super) session: Option<(u64, AgentTx)>,
    pub(super) health: Health,
    pub(super) last_seen_ms: i64,
    pub(super) last_heartbeat: AgentHeartbeat,
    pub(super) active: u32,
}

impl Agent {
    pub(super) fn placeholder(id: &AgentId, now_ms: i64) -> Self {
        Self {
            hello: AgentHello {
                agent: id.clone(),
                ..Default::default()
            },
            view: AgentView {
                id: id.clone(),
                capacity: 0,
                bmc_networks: Vec::new(),
                labels: BTreeMap::new(),
                healthy: false,
                drained: false,
            },
            session: None,
            health: Health::Suspect,
            last_seen_ms: now_ms,
            last_heartbeat: AgentHeartbeat::default(),
            active: 0,
        }
    }
}

impl Engine {
    /// A heartbeat on the agent's current session.
    pub(super) fn agent_heartbeat(
        &mut self,
        agent: &AgentId,
        session: u64,
        heartbeat: AgentHeartbeat,
    ) {
        if let Some(a) = self.agents.get_mut(agent)
            && a.session.as_ref().is_some_and(|(s, _)| *s == session)
        {
            a.last_seen_ms = now_ms();
            a.last_heartbeat = heartbeat;
        }
    }

    /// A job update: it also counts as a sign of life of its session.
    pub(super) async fn job_update_cmd(
        &mut self,
        b: &mut Batch,
        agent: &AgentId,
        session: u64,
        update: JobUpdate,
    ) {
        let current = self
            .agents
            .get_mut(agent)
            .filter(|a| a.session.as_ref().is_some_and(|(s, _)| *s == session));
        let Some(a) = current else {
            // A stream the engine already closed (or never opened): the agent re-sends
            // its finished results with its next hello.
            tracing::warn!(agent = %agent, node = %crate::logsafe::clean(&update.node_uuid), "job update from a closed session ignored");
            return;
        };
        a.last_seen_ms = now_ms();
        let update = self.store_inventory(agent, update).await;
        self.job_update(b, agent, update);
    }

    /// An inspection's result: the inventory goes into the node's spec (properties merged,
    /// ports added) BEFORE the state machine hears of it, so `manageable` after `inspecting`
    /// always means the properties are stored. A failed write fails the inspection.
    async fn store_inventory(&mut self, agent: &AgentId, mut u: JobUpdate) -> JobUpdate {
        let Some(inv) = u.result.output.inventory.take() else {
            return u;
        };
        if u.state != JobState::Succeeded {
            return u;
        }
        let (Ok(uuid), Ok(job_id)) = (Uuid::parse_str(&u.node_uuid), Uuid::parse_str(&u.job_id))
        else {
            return u;
        };
        let Some(node) = self.cache.get(&uuid) else {
            return u;
        };
        if node.status.job.map(|j| (j.job_id, j.kind)) != Some((job_id, core::JobKind::Inspect))
            || node.status.agent.as_ref() != Some(agent)
        {
            // Not this agent's inspection: `job_update` refuses it and says why.
            return u;
        }
        let mut spec = node.spec.clone();
        core::merge_inventory(&mut spec, &inv);
        if spec == node.spec {
            return u;
        }
        match self.store.update_spec(uuid, &spec).await {
            Ok(()) => {
                tracing::info!(node = %uuid, agent = %agent, macs = spec.macs.len(), "inspection stored");
                let status = node.status.clone();
                let version = node.version;
                self.evict(&uuid);
                self.insert_cache(Node {
                    spec,
                    status,
                    version,
                });
            }
            Err(e) => {
                u.state = JobState::Failed;
                u.result.ok = false;
                u.result.error = Some(format!(
                    "node {uuid}: BMC {}: inspect hardware: the inventory could not be stored: {e}",
                    spec.bmc_address().unwrap_or("<no irmc_address>")
                ));
            }
        }
        u
    }

    pub(super) fn session_closed(&mut self, agent: &AgentId, session: u64) {
        if let Some(a) = self.agents.get_mut(agent)
            && a.session.as_ref().is_some_and(|(s, _)| *s == session)
        {
            // Probe: a closed stream makes the agent suspect at once; it is lost if
            // it does not come back within the heartbeat deadline.
            a.session = None;
            a.health = Health::Suspect;
            a.view.healthy = false;
            tracing::warn!(agent = %agent, "share agent stream closed; suspect until it reconnects");
        }
    }

    /// Every agent known (registered, or drained in the store), as a share view.
    pub(super) fn list_shares(&self) -> Vec<ShareView> {
        let ids: BTreeSet<AgentId> = self
            .agents
            .keys()
            .cloned()
            .chain(self.drained.iter().cloned())
            .collect();
        let queued = self.queued_per_agent();
        ids.iter().map(|id| self.share_view(id, &queued)).collect()
    }

    pub(super) fn agent_views(&self) -> Vec<AgentView> {
        self.agents
            .values()
            .map(|a| {
                let mut v = a.view.clone();
                v.drained = self.drained.contains(&v.id);
                v.healthy = a.health == Health::Healthy;
                v
            })
            .collect()
    }

    fn queued_per_agent(&self) -> HashMap<AgentId, u64> {
        let mut out = HashMap::new();
        for (uuid, _) in lock(&self.queue).snapshot() {
            if let Some(s) = self.cache.get(&uuid).and_then(|n| n.status.agent.clone()) {
                *out.entry(s).or_insert(0) += 1;
            }
        }
        out
    }

    fn share_view(&self, id: &AgentId, queued: &HashMap<AgentId, u64>) -> ShareView {
        let drained = self.drained.contains(id);
        let nodes = self.loads.per_agent.get(id).copied().unwrap_or(0);
        let queued = queued.get(id).copied().unwrap_or(0);
        match self.agents.get(id) {
            Some(a) => ShareView {
                agent: id.clone(),
                health: match a.health {
                    Health::Healthy if drained => ShareHealth::Drained,
                    Health::Healthy => ShareHealth::Healthy,
                    Health::Suspect => ShareHealth::Suspect,
                    Health::Lost => ShareHealth::Lost,
                },
                share: a.hello.share.clone(),
                capacity: u64::from(a.hello.capacity),
                active: u64::from(a.active),
                queued,
                nodes,
                free_bytes: if a.last_heartbeat.free_bytes > 0 {
                    a.last_heartbeat.free_bytes
                } else {
                    a.hello.free_bytes
                },
                bmc_networks: a.hello.bmc_networks.clone(),
                labels: a.hello.labels.clone(),
                version: a.hello.version.clone(),
                last_heartbeat_ms: a.last_seen_ms,
                http_url: a.hello.http_url.clone(),
                drained,
            },
            None => ShareView {
                agent: id.clone(),
                health: ShareHealth::Lost,
                share: None,
                capacity: 0,
                active: 0,
                queued,
                nodes,
                free_bytes: 0,
                bmc_networks: Vec::new(),
                labels: BTreeMap::new(),
                version: String::new(),
                last_heartbeat_ms: 0,
                http_url: String::new(),
                drained,
            },
        }
    }

    pub(super) async fn drain(
        &mut self,
        b: &mut Batch,
        agent: AgentId,
        drained: bool,
    ) -> Result<ShareView, ServerError> {
        if !self.agents.contains_key(&agent) && !self.drained.contains(&agent) {
            return Err(ServerError::AgentNotFound { agent });
        }
        self.store
            .set_agent_drained(&agent, drained)
            .await
            .map_err(|e| ServerError::store_about("drain share", format!("share {agent}"), e))?;
        if drained {
            self.rehome.push(agent.clone());
            self.drained.insert(agent.clone());
        } else {
            self.drained.remove(&agent);
        }
        // Queued nodes placed on a drained agent are re-placed by the next admission round;
        // work already running there finishes where it is.
        b.admit_needed = true;
        let queued = self.queued_per_agent();
        Ok(self.share_view(&agent, &queued))
    }

    pub(super) fn hello(
        &mut self,
        b: &mut Batch,
        hello: AgentHello,
        tx: AgentTx,
    ) -> Result<u64, ServerError> {
        let id = hello.agent.clone();
        let refuse = |reason: String| ServerError::AgentRefused {
            agent: if id.is_empty() {
                "<no id>".to_owned()
            } else {
                id.to_string()
            },
            reason,
        };
        if id.is_empty() {
            return Err(refuse("hello.agent_id is empty".to_owned()));
        }
        if hello.capacity == 0 {
            return Err(refuse("hello.capacity must be at least 1".to_owned()));
        }
        let mut networks = Vec::new();
        for n in &hello.bmc_networks {
            let cidr: Cidr = n
                .parse()
                .map_err(|e| refuse(format!("hello.bmc_networks: {e}")))?;
            networks.push(cidr);
        }
        self.next_session += 1;
        let session = self.next_session;
        let welcome = ToAgent::Welcome {
            coordinator_id: self.coordinator_id.clone(),
            heartbeat_interval_ms: self
                .cfg
                .agent_heartbeat
                .as_millis()
                .min(u128::from(u32::MAX)) as u32,
        };
        if tx.send(welcome).is_err() {
            return Err(refuse("stream closed before welcome".to_owned()));
        }
        let known: Vec<JobUpdate> = hello.known_jobs.clone();
        let now = now_ms();
        let agent = self
            .agents
            .entry(id.clone())
            .or_insert_with(|| Agent::placeholder(&id, now));
        let was = agent.health;
        agent.view = AgentView {
            id: id.clone(),
            capacity: hello.capacity,
            bmc_networks: networks,
            labels: hello.labels.clone(),
            healthy: true,
            drained: false,
        };
        agent.hello = AgentHello {
            known_jobs: Vec::new(),
            ..hello
        };
        // A new session replaces an old one: dropping the old sender ends that stream.
        agent.session = Some((session, tx));
        agent.health = Health::Healthy;
        agent.last_seen_ms = now;
        tracing::info!(agent = %id, session, previous = was.as_str(), known_jobs = known.len(), "share agent registered");

        // Collect results of jobs that finished while we were apart; re-send intents the
        // agent does not know (idempotent by job id).
        let known: HashMap<String, JobUpdate> =
            known.into_iter().map(|u| (u.job_id.clone(), u)).collect();
        let mine: Vec<Uuid> = self
            .cache
            .values()
            .filter(|n| n.status.agent.as_ref() == Some(&id) && n.status.job.is_some())
            .map(Node::uuid)
            .collect();
        for uuid in mine {
            let Some(node) = self.cache.get(&uuid) else {
                continue;
            };
            let Some(intent) = node.status.job else {
                continue;
            };
            match known.get(&intent.job_id.to_string()) {
                Some(u) if u.state == JobState::Running => {}
                Some(u) if matches!(u.state, JobState::Succeeded | JobState::Failed) => {
                    self.job_update(b, &id, u.clone());
                }
                _ => {
                    if let Some((intent, spec)) =
                        core::resume_job(&node.status, &node.spec, &self.machine)
                    {
                        let job = AgentJob {
                            node: uuid,
                            intent,
                            spec,
                            bmc: core::bmc_target(&node.spec).ok(),
                        };
                        b.sends.push((id.clone(), ToAgent::Job(Box::new(job))));
                    }
                }
            }
        }
        b.admit_needed = true;
        Ok(session)
    }

    fn job_update(&mut self, b: &mut Batch, agent: &AgentId, u: JobUpdate) {
        let Ok(uuid) = Uuid::parse_str(&u.node_uuid) else {
            tracing::warn!(agent = %agent, node = %crate::logsafe::clean(&u.node_uuid), "job update with a bad node uuid ignored");
            return;
        };
        let Ok(job_id) = Uuid::parse_str(&u.job_id) else {
            tracing::warn!(agent = %agent, node = %uuid, job = %crate::logsafe::clean(&u.job_id), "job update with a bad job id ignored");
            return;
        };
        let Some(node) = self.cache.get(&uuid) else {
            tracing::debug!(agent = %agent, node = %uuid, job = %job_id, "update for a node with no work under way ignored");
            return;
        };
        if node.status.agent.as_ref() != Some(agent) {
            // Only the agent a node is placed on may report its jobs: one share's agent
            // must not be able to finish another share's work.
            tracing::warn!(agent = %agent, node = %uuid, job = %job_id,
                placed = ?node.status.agent.as_ref().map(ToString::to_string),
                "job update refused: the node is not placed on this agent");
            return;
        }
        if node.status.job.map(|j| j.job_id) != Some(job_id) {
            tracing::debug!(agent = %agent, node = %uuid, job = %job_id, "update for a superseded job ignored");
            return;
        }
        if u.state == JobState::Running {
            // Progress is shown to watchers but not persisted (it changes often and a
            // restart re-derives it from the step). Nobody watching: nothing to build.
            if self.events.receiver_count() == 0 {
                return;
            }
            let mut ev = NodeEvent::of(node, 0, now_ms());
            if !u.progress.is_empty() {
                ev.progress = u.progress;
            }
            let _ = self.events.send(ev);
            return;
        }
        let mut result = u.result;
        if result.ok && result.output.inventory.take().is_some() {
            // An inspection's result replayed in a hello (`known_jobs`): its inventory was
            // not stored (that needs the async path of `job_update_cmd`), so inspect again.
            result.ok = false;
            result.retryable = true;
            result.error = Some(format!(
                "node {uuid}: inspect hardware: the result arrived with the agent's reconnection; inspecting again"
            ));
        }
        if let Err(e) = self.apply(b, uuid, Event::JobFinished { job_id, result }) {
            tracing::warn!(agent = %agent, node = %uuid, job = %job_id, error = %e, "job result not applied");
        }
    }

    /// Timer: agents silent for too long are lost; re-placements that failed are retried.
    pub(super) fn check_agents(&mut self, b: &mut Batch, now: i64) {
        let lost_after = self.cfg.agent_lost_after().as_millis() as i64;
        let lost: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.health != Health::Lost && now - a.last_seen_ms > lost_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            self.agent_lost(b, &id);
        }
        let retry = std::mem::take(&mut self.rehome_retry);
        for id in retry {
            // Back in service (reconnected, or undrained) in the meantime: nothing to move.
            let back = self
                .agents
                .get(&id)
                .is_some_and(|a| a.health == Health::Healthy)
                && !self.drained.contains(&id);
            if !back && !self.rehome.contains(&id) {
                self.rehome.push(id);
            }
        }
    }

    /// The agent is gone: its in-flight nodes go back to their safe point and are
    /// re-placed on another agent by the next admission round.
    fn agent_lost(&mut self, b: &mut Batch, id: &AgentId) {
        if let Some(a) = self.agents.get_mut(id) {
            a.health = Health::Lost;
            a.view.healthy = false;
            a.session = None;
        }
        let affected: Vec<Uuid> = self
            .cache
            .values()
            .filter(|n| n.status.agent.as_ref() == Some(id))
            .map(Node::uuid)
            .collect();
        tracing::warn!(agent = %id, nodes = affected.len(), "share agent lost");
        self.rehome.push(id.clone());
        for uuid in affected {
            self.release_slot(&uuid);
            if let Err(e) = self.apply(b, uuid, Event::AgentLost { agent: id.clone() }) {
                tracing::warn!(node = %uuid, agent = %id, error = %e, "agent loss not applied");
            }
        }
        b.admit_needed = true;
    }

    /// Moves the idle nodes (no work under way) of lost or drained agents to other agents,
    /// through core placement, so every node keeps a serving agent. Nodes with work under way
    /// are handled by the state machine (AgentLost) or finish where they are (drain).
    pub(super) async fn rehome_idle_nodes(&mut self, b: &mut Batch) {
        const PAGE: u32 = 1000;
        for agent in std::mem::take(&mut self.rehome) {
            let views = self.agent_views();
            if !views
                .iter()
                .any(|v| v.healthy && !v.drained && v.id != agent)
            {
                tracing::warn!(agent = %agent, "no other share agent can take its nodes yet; retrying");
                self.rehome_retry.push(agent);
                continue;
            }
            let filter = NodeFilter {
                agent: Some(agent.clone()),
                ..NodeFilter::default()
            };
            let mut marker = None;
            let mut moved = 0u64;
            loop {
                let page = match self.store.list_nodes(&filter, PAGE, marker).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(agent = %agent, error = %e, "cannot list the nodes of a lost/drained agent; retrying");
                        self.rehome_retry.push(agent.clone());
                        break;
                    }
                };
                let full = page.len() == PAGE as usize;
                marker = page.last().map(Node::uuid);
                for node in page {
                    let uuid = node.uuid();
                    if self.cache.contains_key(&uuid) {
                        continue;
                    }
                    let p = core::place(
                        &PlacementNode {
                            uuid,
                            bmc_ip: bmc_ip(&node),
                            share_selector: &node.spec.share_selector,
                            current: node.status.agent.as_ref(),
                        },
                        &views,
                        &self.loads,
                    );
                    let Some(to) = p.chosen.filter(|c| *c != agent) else {
                        continue;
                    };
                    self.insert_cache(node);
                    match self.apply(b, uuid, Event::Placed { agent: to }) {
                        Ok(()) => moved += 1,
                        Err(e) => {
                            tracing::warn!(node = %uuid, agent = %agent, error = %e, "re-placement not applied");
                            self.evict(&uuid);
                        }
                    }
                }
                if !full {
                    break;
                }
            }
            if moved > 0 {
                tracing::info!(agent = %agent, moved, "re-placed the idle nodes of a lost/drained agent");
            }
        }
    }
}
