//! The engine: ONE task that owns every node with work under way, the agent registry, the
//! admission queue and the placement index, and drives `coordinator_core::step`.
//!
//! # Why one task
//! Every state change of every node goes through here, so there are no locks around node
//! state and no lost updates. Throughput comes from batching: the task takes every command
//! that is waiting (up to [`MAX_BATCH`]), applies all of them in memory, then writes all
//! changed statuses in ONE store transaction (`update_statuses`, group commit), and only
//! then performs the side effects (jobs to agents, watch events, API replies).
//!
//! # Cost per deploy
//! A deploy is five or six status writes (queued, admitted with its first job, waiting
//! for the call-back, writing the image, preparing the instance, active; a deploy admitted
//! at once is queued and admitted in the same batch). Every transition of one node within
//! a batch is one row write. Under load, commits are paced (`COMMIT_PACE`): a batch with
//! something to commit waits for the pace and takes in whatever arrived meanwhile, so
//! commits and wake-ups stay at a bounded rate while rows per commit grow. Ramdisk
//! heartbeats that change nothing write nothing; job progress lines are dropped before
//! they reach the engine when nobody watches (`link.rs`); watch events are only built
//! when someone watches.
//!
//! # Invariants
//! - Persist, then act: a job goes to an agent only after the status holding its intent is
//!   committed. A crash between the two is healed on restart: the intent is re-sent (agents
//!   are idempotent by job id) when the agent says hello.
//! - Memory: only nodes with work under way are held in full (`cache`); every other node
//!   costs one entry in the placement index (uuid -> interned agent number).
//! - Observed agent state (sessions, health, load) lives only here and is rebuilt from
//!   registrations; desired agent state (drained) is in the store.
//!
//! # Rooms
//! One task, several concerns, one module each; [`Engine::run`] is the loop and
//! `Engine::handle` a dispatch table from [`Cmd`] to the room that serves it.
//! - `handle.rs`: [`Cmd`] and [`EngineHandle`], what the gRPC services send in.
//! - `queue.rs`: the admission [`Queue`], shared with the API for `queue_position`.
//! - `nodes.rs`: the cache of nodes with work under way, the placement index, start-up
//!   resume, operator verbs and spec changes, deadlines.
//! - `agents.rs`: the agent registry and its health: sessions, heartbeats, job results,
//!   loss, drain, and re-homing the idle nodes of lost or drained agents.
//! - `admission.rs`: boot slots and the admission round (the policy itself is
//!   `coordinator_core::admit`).
//! - `relay.rs`: the deploy ramdisk's lookup and heartbeat, relayed by its agent.
//! - `commit.rs`: the `Batch` of one loop turn, `apply`/`act` (one event through the state
//!   machine, its actions queued), and `flush` (commit, then side effects).

mod admission;
mod agents;
mod commit;
mod handle;
mod nodes;
mod power_sync;
mod queue;
mod relay;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use coordinator_core::{AgentId, Event, Loads, MachineConfig, Node};
use coordinator_store::Store;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::NodeEvent;
use crate::error::ServerError;
use crate::metrics::EngineMetrics;

pub use handle::{AgentTx, Cmd, EngineHandle};
pub use queue::{Queue, SharedQueue, queue_position, queue_positions};

use agents::Agent;
use commit::Batch;
use queue::lock;

/// Most commands applied (and committed) together.
pub const MAX_BATCH: usize = 4096;

/// Least time between two status commits while commands keep arriving (see
/// [`Engine::run`]): bounds commits to 50 a second under load, at the price of at most
/// this much delay per state change.
const COMMIT_PACE: Duration = Duration::from_millis(20);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct Engine {
    cfg: Config,
    machine: MachineConfig,
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Cmd>,
    events: broadcast::Sender<NodeEvent>,
    queue: SharedQueue,
    coordinator_id: String,
    /// Nodes with work under way, in full.
    cache: HashMap<Uuid, Node>,
    /// MAC -> node, for cached nodes (ramdisk lookup).
    macs: HashMap<String, Uuid>,
    agents: BTreeMap<AgentId, Agent>,
    drained: BTreeSet<AgentId>,
    /// node -> interned agent number, for every node placed on an agent.
    placed: HashMap<Uuid, u32>,
    agent_names: Vec<AgentId>,
    agent_numbers: HashMap<AgentId, u32>,
    loads: Loads,
    /// Nodes holding a boot slot -> agent.
    slots: HashMap<Uuid, AgentId>,
    /// Lost or drained agents whose idle nodes still have to be re-placed.
    rehome: Vec<AgentId>,
    /// Re-placements that could not run (no other healthy agent, store error): retried
    /// on the next tick, so a lost agent's nodes are never left behind for good.
    rehome_retry: Vec<AgentId>,
    /// Queued nodes already told where they are placed (so each admission round does not
    /// re-write them).
    placed_in_queue: HashSet<Uuid>,
    active_total: u32,
    next_session: u64,
    /// Counters and histograms fed as events happen (see `crate::metrics`).
    metrics: EngineMetrics,
    /// The power-state sync's per-agent rounds (`power_sync.rs`).
    power_sync: power_sync::PowerSync,
}

impl Engine {
    /// Loads what the engine needs from the store (the reconciler half of start-up) and
    /// returns the engine plus the handle the API uses.
    pub async fn start(
        cfg: Config,
        store: Arc<dyn Store>,
        metrics: EngineMetrics,
    ) -> Result<(Self, EngineHandle), ServerError> {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let (events, _) = broadcast::channel(cfg.watch_buffer);
        let queue: SharedQueue = Arc::default();
        let machine = MachineConfig {
            callback_timeout_ms: cfg.callback_timeout.as_millis() as i64,
            job_timeout_ms: cfg.job_timeout.as_millis() as i64,
            automated_clean: cfg.automated_clean,
            job_id_key: coordinator_core::JobIdKey(rand::random()),
            force_power_state_during_sync: cfg.force_power_state_during_sync,
            ..MachineConfig::default()
        };
        let drained: BTreeSet<AgentId> = store
            .drained_agents()
            .await
            .map_err(|e| ServerError::store_about("load drained agents", "agents", e))?
            .into_iter()
            .collect();
        let mut engine = Self {
            cfg,
            machine,
            store,
            rx,
            events: events.clone(),
            queue: queue.clone(),
            coordinator_id: format!("coordinator-{}", Uuid::new_v4()),
            cache: HashMap::new(),
            macs: HashMap::new(),
            agents: BTreeMap::new(),
            drained,
            placed: HashMap::new(),
            agent_names: Vec::new(),
            agent_numbers: HashMap::new(),
            loads: Loads::default(),
            slots: HashMap::new(),
            placed_in_queue: HashSet::new(),
            rehome: Vec::new(),
            rehome_retry: Vec::new(),
            active_total: 0,
            next_session: 0,
            metrics,
            power_sync: power_sync::PowerSync::default(),
        };
        engine.load_placement_index().await?;
        engine.resume_in_flight().await?;
        Ok((engine, EngineHandle { tx, events, queue }))
    }

    fn tick_interval(&self) -> Duration {
        let shortest = self
            .cfg
            .callback_timeout
            .min(self.cfg.job_timeout)
            .min(self.cfg.agent_heartbeat);
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Runs until every handle is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.tick_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit: Option<tokio::time::Instant> = None;
        loop {
            let mut batch = Batch::default();
            let mut taken = 0;
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd, &mut batch).await;
                    // Take everything else that is already waiting: one commit for all of it.
                    taken = self.take_waiting(&mut batch, 1).await;
                }
                _ = tick.tick() => self.on_tick(&mut batch).await,
            }
            // Commit pacing: under load, a batch with something to commit waits until
            // COMMIT_PACE after the previous commit and takes in what arrived meanwhile.
            // Commits (and wake-ups of this task) then stay at a bounded rate however
            // many events arrive; an idle engine commits at once.
            if !batch.dirty.is_empty()
                && let Some(due) = last_commit.map(|t| t + COMMIT_PACE)
                && due > tokio::time::Instant::now()
            {
                tokio::time::sleep_until(due).await;
                self.take_waiting(&mut batch, taken).await;
            }
            if !self.rehome.is_empty() {
                self.rehome_idle_nodes(&mut batch).await;
            }
            if batch.admit_needed {
                self.admit(&mut batch);
            }
            if !batch.dirty.is_empty() {
                last_commit = Some(tokio::time::Instant::now());
            }
            self.flush(batch).await;
        }
        tracing::info!("engine stopped");
    }

    /// Handles the commands already waiting, up to [`MAX_BATCH`] in the batch; returns how
    /// many the batch holds now.
    async fn take_waiting(&mut self, batch: &mut Batch, mut taken: usize) -> usize {
        while taken < MAX_BATCH {
            match self.rx.try_recv() {
                Ok(cmd) => self.handle(cmd, batch).await,
                Err(_) => break,
            }
            taken += 1;
        }
        taken
    }

    /// The dispatch table: which room serves which command.
    async fn handle(&mut self, cmd: Cmd, b: &mut Batch) {
        match cmd {
            Cmd::Verb { node, verb, reply } => {
                self.verb_cmd(b, node, Event::Verb(verb), reply).await
            }
            Cmd::Bulk { nodes, verb, reply } => self.bulk(b, nodes, Event::Verb(verb), reply).await,
            Cmd::Power {
                node,
                action,
                reply,
            } => self.verb_cmd(b, node, Event::Power(action), reply).await,
            Cmd::BulkPower {
                nodes,
                action,
                reply,
            } => self.bulk(b, nodes, Event::Power(action), reply).await,
            Cmd::PowerReport { agent, report } => self.power_report(b, &agent, report).await,
            Cmd::SpecChanged { node } => self.spec_changed(*node),
            Cmd::Forget { uuid } => {
                self.metrics.forget(&uuid);
                self.forget(uuid);
            }
            Cmd::Delete { uuid, reply } => {
                let _ = reply.send(self.delete(b, uuid).await);
            }
            Cmd::Explain { node, reply } => {
                let _ = reply.send(Ok(self.explain(&node)));
            }
            Cmd::Hello { hello, tx, reply } => {
                let _ = reply.send(self.hello(b, *hello, tx));
            }
            Cmd::AgentHeartbeat {
                agent,
                session,
                heartbeat,
            } => self.agent_heartbeat(&agent, session, heartbeat),
            Cmd::JobUpdate {
                agent,
                session,
                update,
            } => self.job_update_cmd(b, &agent, session, update).await,
            Cmd::SessionClosed { agent, session } => self.session_closed(&agent, session),
            Cmd::ListShares { reply } => {
                let _ = reply.send(Ok(self.list_shares()));
            }
            Cmd::Drain {
                agent,
                drained,
                reply,
            } => {
                let r = self.drain(b, agent, drained).await;
                let _ = reply.send(r);
            }
            Cmd::RamdiskLookup { req, reply } => {
                let _ = reply.send(self.lookup(&req));
            }
            Cmd::RamdiskHeartbeat { req, reply } => self.ramdisk_heartbeat_cmd(b, &req, reply),
        }
    }

    /// Timer: deadlines of nodes, then the health of agents.
    async fn on_tick(&mut self, b: &mut Batch) {
        let now = now_ms();
        self.fire_deadlines(b, now);
        self.check_agents(b, now);
        self.power_sync_tick(b, now).await;
    }
}
