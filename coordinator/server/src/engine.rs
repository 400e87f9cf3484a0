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
//! a batch is one row write. Under load, commits are paced ([`COMMIT_PACE`]): a batch with
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator_core::{
    self as core, Action, AgentView, Cidr, DeployStep, Event, Loads, MachineConfig, Node, NodeId,
    PlacementNode, ProvisionState, Verb,
};
use coordinator_store::{NodeFilter, Store};
use tokio::sync::{broadcast, mpsc, oneshot};
use tonic::Status;
use uuid::Uuid;
use vmedia_proto::v1 as pb;

use crate::config::Config;
use crate::convert;
use crate::error::ServerError;

/// Most commands applied (and committed) together.
pub const MAX_BATCH: usize = 4096;

/// Nodes of a bulk verb loaded from the store together.
const BULK_LOAD: usize = 1000;

/// Least time between two status commits while commands keep arriving (see
/// [`Engine::run`]): bounds commits to 50 a second under load, at the price of at most
/// this much delay per state change.
const COMMIT_PACE: Duration = Duration::from_millis(20);

/// What the engine sends down an agent's session stream.
pub type AgentTx = mpsc::UnboundedSender<Result<pb::CoordinatorMessage, Status>>;

type Reply<T> = oneshot::Sender<Result<T, ServerError>>;

/// Commands the API and agent sessions send to the engine.
pub enum Cmd {
    Verb {
        node: NodeId,
        verb: Verb,
        reply: Reply<pb::Node>,
    },
    Bulk {
        nodes: Vec<NodeId>,
        verb: Verb,
        reply: Reply<pb::BulkSetProvisionStateResponse>,
    },
    /// The operator changed a node's spec (already stored).
    SpecChanged {
        node: Box<Node>,
    },
    /// The operator deleted a node (already gone from the store).
    Forget {
        uuid: Uuid,
    },
    Hello {
        hello: Box<pb::AgentHello>,
        tx: AgentTx,
        reply: Reply<u64>,
    },
    AgentHeartbeat {
        agent: String,
        session: u64,
        heartbeat: pb::AgentHeartbeat,
    },
    JobUpdate {
        agent: String,
        session: u64,
        update: pb::JobUpdate,
    },
    SessionClosed {
        agent: String,
        session: u64,
    },
    RamdiskLookup {
        req: pb::RamdiskLookupRequest,
        reply: Reply<pb::RamdiskLookupResponse>,
    },
    RamdiskHeartbeat {
        req: pb::RamdiskHeartbeatRequest,
        reply: Reply<()>,
    },
    ListShares {
        reply: Reply<Vec<pb::Share>>,
    },
    Drain {
        share: String,
        drained: bool,
        reply: Reply<pb::Share>,
    },
    Explain {
        node: Box<Node>,
        reply: Reply<pb::PlacementExplanation>,
    },
}

/// Nodes waiting for placement and admission, in arrival order. Shared with the API (under a
/// short-held mutex) so reads can show `queue_position` without a round trip to the engine.
#[derive(Default)]
pub struct Queue {
    order: BTreeMap<u64, Uuid>,
    entries: HashMap<Uuid, QueueEntry>,
    next: u64,
}

#[derive(Clone, Copy)]
struct QueueEntry {
    seq: u64,
    needs_slot: bool,
}

impl Queue {
    fn push(&mut self, uuid: Uuid, needs_slot: bool) {
        if self.entries.contains_key(&uuid) {
            return;
        }
        self.next += 1;
        self.order.insert(self.next, uuid);
        self.entries.insert(
            uuid,
            QueueEntry {
                seq: self.next,
                needs_slot,
            },
        );
    }

    fn remove(&mut self, uuid: &Uuid) -> bool {
        match self.entries.remove(uuid) {
            Some(e) => {
                self.order.remove(&e.seq);
                true
            }
            None => false,
        }
    }

    /// 1-based position, 0 when not queued. O(queue length): fine for reads, which are rare
    /// compared with the engine's own work.
    pub fn position(&self, uuid: &Uuid) -> u64 {
        match self.entries.get(uuid) {
            Some(e) => self.order.range(..e.seq).count() as u64 + 1,
            None => 0,
        }
    }

    /// The positions of many nodes (0 for those not queued), index-aligned with `uuids`, in
    /// ONE walk over the queue however many of them are queued: listing thousands of nodes
    /// must not cost a walk per node.
    pub fn positions(&self, uuids: &[Uuid]) -> Vec<u64> {
        let mut out = vec![0; uuids.len()];
        let mut want: Vec<(u64, usize)> = uuids
            .iter()
            .enumerate()
            .filter_map(|(i, u)| self.entries.get(u).map(|e| (e.seq, i)))
            .collect();
        if want.is_empty() {
            return out;
        }
        want.sort_unstable();
        let mut w = 0;
        for (rank, seq) in self.order.keys().enumerate() {
            while let Some(&(s, i)) = want.get(w)
                && s == *seq
            {
                out[i] = rank as u64 + 1;
                w += 1;
            }
            if w == want.len() {
                break;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(node, needs_slot)` in arrival order.
    fn iter(&self) -> impl Iterator<Item = (Uuid, bool)> + '_ {
        self.order
            .values()
            .filter_map(|u| self.entries.get(u).map(|e| (*u, e.needs_slot)))
    }

    fn snapshot(&self) -> Vec<(Uuid, bool)> {
        self.iter().collect()
    }
}

pub type SharedQueue = Arc<Mutex<Queue>>;

/// Reads the queue position, tolerating a poisoned lock (a panic elsewhere must not take reads down).
pub fn queue_position(q: &SharedQueue, uuid: &Uuid) -> u64 {
    match q.lock() {
        Ok(g) => g.position(uuid),
        Err(p) => p.into_inner().position(uuid),
    }
}

/// [`Queue::positions`] under one short lock.
pub fn queue_positions(q: &SharedQueue, uuids: &[Uuid]) -> Vec<u64> {
    lock(q).positions(uuids)
}

fn lock(q: &SharedQueue) -> std::sync::MutexGuard<'_, Queue> {
    match q.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The API's handle on the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Cmd>,
    pub events: broadcast::Sender<pb::NodeEvent>,
    pub queue: SharedQueue,
}

impl EngineHandle {
    /// A handle with no engine behind it, for a follower replica: its services read the
    /// store directly and the gate keeps every engine call away (any that slipped through
    /// would fail with `ShuttingDown`).
    pub fn detached(watch_buffer: usize) -> Self {
        let (tx, _) = mpsc::channel(1);
        let (events, _) = broadcast::channel(watch_buffer.max(1));
        Self {
            tx,
            events,
            queue: SharedQueue::default(),
        }
    }

    /// Sends a command and waits for its reply.
    pub async fn call<T>(
        &self,
        op: &'static str,
        make: impl FnOnce(Reply<T>) -> Cmd,
    ) -> Result<T, ServerError> {
        let (tx, rx) = oneshot::channel();
        let t0 = std::time::Instant::now();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ServerError::ShuttingDown { op })?;
        let t1 = t0.elapsed();
        let r = rx.await.map_err(|_| ServerError::ShuttingDown { op })?;
        tracing::debug!(
            op,
            send_us = t1.as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "engine call"
        );
        r
    }

    /// Sends a command that has no reply.
    pub async fn tell(&self, op: &'static str, cmd: Cmd) -> Result<(), ServerError> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ServerError::ShuttingDown { op })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
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

struct Agent {
    hello: pb::AgentHello,
    view: AgentView,
    session: Option<(u64, AgentTx)>,
    health: Health,
    last_seen_ms: i64,
    last_heartbeat: pb::AgentHeartbeat,
    active: u32,
}

impl Agent {
    fn placeholder(id: &str, now_ms: i64) -> Self {
        Self {
            hello: pb::AgentHello {
                agent_id: id.to_owned(),
                ..Default::default()
            },
            view: AgentView {
                id: id.to_owned(),
                capacity: 0,
                bmc_networks: Vec::new(),
                labels: BTreeMap::new(),
                healthy: false,
                drained: false,
            },
            session: None,
            health: Health::Suspect,
            last_seen_ms: now_ms,
            last_heartbeat: pb::AgentHeartbeat::default(),
            active: 0,
        }
    }
}

/// Work gathered while applying one batch; performed after the commit.
#[derive(Default)]
struct Batch {
    dirty: Vec<Uuid>,
    dirty_set: HashSet<Uuid>,
    sends: Vec<(String, pb::CoordinatorMessage)>,
    emits: Vec<Uuid>,
    replies: Vec<PendingReply>,
    admit_needed: bool,
}

enum PendingReply {
    Node(Uuid, Reply<pb::Node>),
    Bulk(
        u64,
        Vec<pb::BulkFailure>,
        Reply<pb::BulkSetProvisionStateResponse>,
    ),
    Unit(Reply<()>),
}

impl Batch {
    fn mark(&mut self, uuid: Uuid) {
        if self.dirty_set.insert(uuid) {
            self.dirty.push(uuid);
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn token() -> core::Secret {
    core::new_agent_token(rand::random::<[u8; 32]>())
}

pub struct Engine {
    cfg: Config,
    machine: MachineConfig,
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Cmd>,
    events: broadcast::Sender<pb::NodeEvent>,
    queue: SharedQueue,
    coordinator_id: String,
    /// Nodes with work under way, in full.
    cache: HashMap<Uuid, Node>,
    /// MAC -> node, for cached nodes (ramdisk lookup).
    macs: HashMap<String, Uuid>,
    agents: BTreeMap<String, Agent>,
    drained: BTreeSet<String>,
    /// node -> interned agent number, for every node placed on an agent.
    placed: HashMap<Uuid, u32>,
    share_names: Vec<String>,
    share_numbers: HashMap<String, u32>,
    loads: Loads,
    /// Nodes holding a boot slot -> agent.
    slots: HashMap<Uuid, String>,
    /// Lost or drained agents whose idle nodes still have to be re-placed.
    rehome: Vec<String>,
    /// Re-placements that could not run (no other healthy agent, store error): retried
    /// on the next tick, so a lost agent's nodes are never left behind for good.
    rehome_retry: Vec<String>,
    /// Queued nodes already told where they are placed (so each admission round does not
    /// re-write them).
    placed_in_queue: HashSet<Uuid>,
    active_total: u32,
    next_session: u64,
}

impl Engine {
    /// Loads what the engine needs from the store (the reconciler half of start-up) and
    /// returns the engine plus the handle the API uses.
    pub async fn start(
        cfg: Config,
        store: Arc<dyn Store>,
    ) -> Result<(Self, EngineHandle), ServerError> {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let (events, _) = broadcast::channel(cfg.watch_buffer);
        let queue: SharedQueue = Arc::default();
        let machine = MachineConfig {
            callback_timeout_ms: cfg.callback_timeout.as_millis() as i64,
            job_timeout_ms: cfg.job_timeout.as_millis() as i64,
            automated_clean: cfg.automated_clean,
            ..MachineConfig::default()
        };
        let drained: BTreeSet<String> = store
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
            share_names: Vec::new(),
            share_numbers: HashMap::new(),
            loads: Loads::default(),
            slots: HashMap::new(),
            placed_in_queue: HashSet::new(),
            rehome: Vec::new(),
            rehome_retry: Vec::new(),
            active_total: 0,
            next_session: 0,
        };
        engine.load_placement_index().await?;
        engine.resume_in_flight().await?;
        Ok((engine, EngineHandle { tx, events, queue }))
    }

    /// Builds the compact placement index from the store's `(uuid, share)` pairs: no spec or
    /// status is decoded.
    async fn load_placement_index(&mut self) -> Result<(), ServerError> {
        let placed = self
            .store
            .placements()
            .await
            .map_err(|e| ServerError::store_about("load placement index", "all nodes", e))?;
        for (uuid, share) in placed {
            self.set_placed(uuid, Some(share.as_str()));
        }
        Ok(())
    }

    /// Reconciler: re-queue queued nodes, re-count slots, expect the agents of in-flight
    /// nodes back. Job intents are re-sent when their agent says hello; deadlines are in the
    /// statuses and re-armed by the tick.
    async fn resume_in_flight(&mut self) -> Result<(), ServerError> {
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
            if let Some(share) = &n.status.share {
                self.agents
                    .entry(share.clone())
                    .or_insert_with(|| Agent::placeholder(share, now));
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
                    if let Some(share) = &n.status.share {
                        self.take_slot(uuid, share.clone());
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

    fn intern(&mut self, share: &str) -> u32 {
        if let Some(n) = self.share_numbers.get(share) {
            return *n;
        }
        let n = self.share_names.len() as u32;
        self.share_names.push(share.to_owned());
        self.share_numbers.insert(share.to_owned(), n);
        n
    }

    /// Keeps the placement index and per-agent loads in step with a node's `status.share`.
    fn set_placed(&mut self, uuid: Uuid, share: Option<&str>) {
        let new = share.map(|s| self.intern(s));
        let old = match new {
            Some(n) => self.placed.insert(uuid, n),
            None => self.placed.remove(&uuid),
        };
        if old == new {
            return;
        }
        if let Some(o) = old.and_then(|o| self.share_names.get(o as usize).cloned()) {
            if let Some(c) = self.loads.per_agent.get_mut(&o) {
                *c = c.saturating_sub(1);
            }
            self.loads.total = self.loads.total.saturating_sub(1);
        }
        if let Some(s) = share {
            *self.loads.per_agent.entry(s.to_owned()).or_insert(0) += 1;
            self.loads.total += 1;
        }
    }

    fn insert_cache(&mut self, n: Node) {
        for m in &n.spec.macs {
            self.macs.insert(m.to_ascii_lowercase(), n.uuid());
        }
        self.cache.insert(n.uuid(), n);
    }

    fn evict(&mut self, uuid: &Uuid) {
        if let Some(n) = self.cache.remove(uuid) {
            for m in &n.spec.macs {
                let m = m.to_ascii_lowercase();
                if self.macs.get(&m) == Some(uuid) {
                    self.macs.remove(&m);
                }
            }
        }
    }

    fn take_slot(&mut self, uuid: Uuid, share: String) {
        if self.slots.contains_key(&uuid) {
            return;
        }
        if let Some(a) = self.agents.get_mut(&share) {
            a.active += 1;
        }
        self.slots.insert(uuid, share);
        self.active_total += 1;
    }

    fn release_slot(&mut self, uuid: &Uuid) -> bool {
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
                _ = tick.tick() => self.on_tick(&mut batch),
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

    /// Applies one event to a cached node; queues the side effects in `b`.
    fn apply(&mut self, b: &mut Batch, uuid: Uuid, event: Event) -> Result<(), ServerError> {
        let now = now_ms();
        let Some(node) = self.cache.get_mut(&uuid) else {
            return Err(ServerError::NodeNotFound {
                node: uuid.to_string(),
            });
        };
        let t = core::step(&node.status, &node.spec, event, now, &self.machine)?;
        if t.is_noop(&node.status) {
            return Ok(());
        }
        node.status = t.status;
        let share = node.status.share.clone();
        b.mark(uuid);
        self.set_placed(uuid, share.as_deref());
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
                b.admit_needed = true;
            }
            Action::SendJob { intent, spec } => {
                let Some(node) = self.cache.get(&uuid) else {
                    return;
                };
                let Some(share) = node.status.share.clone() else {
                    tracing::warn!(node = %uuid, job = %intent.job_id, "job intent without a share; kept for resume");
                    return;
                };
                let job =
                    convert::job_to_proto(uuid, &intent, &spec, core::bmc_target(&node.spec).ok());
                b.sends.push((
                    share,
                    pb::CoordinatorMessage {
                        msg: Some(pb::coordinator_message::Msg::Job(job)),
                    },
                ));
            }
            Action::CancelJob { job_id } => {
                let Some(share) = self.cache.get(&uuid).and_then(|n| n.status.share.clone()) else {
                    return;
                };
                b.sends.push((
                    share,
                    pb::CoordinatorMessage {
                        msg: Some(pb::coordinator_message::Msg::Cancel(pb::CancelJob {
                            job_id: job_id.to_string(),
                            node_uuid: uuid.to_string(),
                        })),
                    },
                ));
            }
            Action::ReleaseSlot => {
                let released = self.release_slot(&uuid);
                let dequeued = lock(&self.queue).remove(&uuid);
                if released || dequeued {
                    b.admit_needed = true;
                }
            }
            Action::Emit => b.emits.push(uuid),
        }
    }

    /// Makes sure the node is cached (loading it from the store); returns its uuid.
    async fn ensure_cached(&mut self, id: &NodeId) -> Result<Uuid, ServerError> {
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

    async fn handle(&mut self, cmd: Cmd, b: &mut Batch) {
        match cmd {
            Cmd::Verb { node, verb, reply } => match self.verb(b, &node, verb).await {
                Ok(uuid) => b.replies.push(PendingReply::Node(uuid, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Bulk { nodes, verb, reply } => {
                let mut accepted = 0;
                let mut failures = Vec::new();
                for chunk in nodes.chunks(BULK_LOAD) {
                    self.preload(chunk).await;
                    for id in chunk {
                        match self.verb(b, id, verb).await {
                            Ok(_) => accepted += 1,
                            Err(e) => failures.push(pb::BulkFailure {
                                node: id.to_string(),
                                error: e.to_string(),
                            }),
                        }
                    }
                }
                b.replies
                    .push(PendingReply::Bulk(accepted, failures, reply));
            }
            Cmd::SpecChanged { node } => {
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
            Cmd::Forget { uuid } => {
                self.placed_in_queue.remove(&uuid);
                self.evict(&uuid);
                self.set_placed(uuid, None);
                self.release_slot(&uuid);
                lock(&self.queue).remove(&uuid);
            }
            Cmd::Hello { hello, tx, reply } => {
                let r = self.hello(b, *hello, tx);
                let _ = reply.send(r);
            }
            Cmd::AgentHeartbeat {
                agent,
                session,
                heartbeat,
            } => {
                if let Some(a) = self.agents.get_mut(&agent)
                    && a.session.as_ref().is_some_and(|(s, _)| *s == session)
                {
                    a.last_seen_ms = now_ms();
                    a.last_heartbeat = heartbeat;
                }
            }
            Cmd::JobUpdate {
                agent,
                session,
                update,
            } => {
                if let Some(a) = self.agents.get_mut(&agent)
                    && a.session.as_ref().is_some_and(|(s, _)| *s == session)
                {
                    a.last_seen_ms = now_ms();
                }
                self.job_update(b, &agent, update);
            }
            Cmd::SessionClosed { agent, session } => {
                if let Some(a) = self.agents.get_mut(&agent)
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
            Cmd::RamdiskLookup { req, reply } => {
                let _ = reply.send(self.lookup(&req));
            }
            Cmd::RamdiskHeartbeat { req, reply } => match self.ramdisk_heartbeat(b, &req) {
                Ok(()) => b.replies.push(PendingReply::Unit(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::ListShares { reply } => {
                let ids: BTreeSet<String> = self
                    .agents
                    .keys()
                    .cloned()
                    .chain(self.drained.iter().cloned())
                    .collect();
                let queued = self.queued_per_share();
                let shares = ids.iter().map(|id| self.share_view(id, &queued)).collect();
                let _ = reply.send(Ok(shares));
            }
            Cmd::Drain {
                share,
                drained,
                reply,
            } => {
                let r = self.drain(b, share, drained).await;
                let _ = reply.send(r);
            }
            Cmd::Explain { node, reply } => {
                let views = self.agent_views();
                let bmc_ip = bmc_ip(&node);
                let p = core::place(
                    &PlacementNode {
                        uuid: node.uuid(),
                        bmc_ip,
                        share_selector: &node.spec.share_selector,
                        current: node.status.share.as_deref(),
                    },
                    &views,
                    &self.loads,
                );
                let _ = reply.send(Ok(convert::placement_to_proto(node.uuid(), p)));
            }
        }
    }

    async fn verb(&mut self, b: &mut Batch, id: &NodeId, verb: Verb) -> Result<Uuid, ServerError> {
        let uuid = self.ensure_cached(id).await?;
        let r = self.apply(b, uuid, Event::Verb(verb));
        if r.is_err() && !b.dirty_set.contains(&uuid) {
            // Nothing changed: do not keep an idle node in memory.
            if self.cache.get(&uuid).is_some_and(|n| !n.status.in_flight()) {
                self.evict(&uuid);
            }
        }
        r.map(|()| uuid)
    }

    fn agent_views(&self) -> Vec<AgentView> {
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

    fn queued_per_share(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for (uuid, _) in lock(&self.queue).snapshot() {
            if let Some(s) = self.cache.get(&uuid).and_then(|n| n.status.share.clone()) {
                *out.entry(s).or_insert(0) += 1;
            }
        }
        out
    }

    fn share_view(&self, id: &str, queued: &HashMap<String, u64>) -> pb::Share {
        let drained = self.drained.contains(id);
        let nodes = self.loads.per_agent.get(id).copied().unwrap_or(0);
        let queued = queued.get(id).copied().unwrap_or(0);
        match self.agents.get(id) {
            Some(a) => {
                let share = a.hello.share.clone().unwrap_or_default();
                pb::Share {
                    id: id.to_owned(),
                    health: if drained && a.health == Health::Healthy {
                        "drained".to_owned()
                    } else {
                        a.health.as_str().to_owned()
                    },
                    server: share.server,
                    share_type: share.share_type,
                    share_name: share.share_name,
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
                }
            }
            None => pb::Share {
                id: id.to_owned(),
                health: "lost".to_owned(),
                nodes,
                queued,
                drained,
                ..Default::default()
            },
        }
    }

    async fn drain(
        &mut self,
        b: &mut Batch,
        share: String,
        drained: bool,
    ) -> Result<pb::Share, ServerError> {
        if !self.agents.contains_key(&share) && !self.drained.contains(&share) {
            return Err(ServerError::ShareNotFound { share });
        }
        self.store
            .set_agent_drained(&share, drained)
            .await
            .map_err(|e| ServerError::store_about("drain share", format!("share {share}"), e))?;
        if drained {
            self.rehome.push(share.clone());
            self.drained.insert(share.clone());
        } else {
            self.drained.remove(&share);
        }
        // Queued nodes placed on a drained agent are re-placed by the next admission round;
        // work already running there finishes where it is.
        b.admit_needed = true;
        let queued = self.queued_per_share();
        Ok(self.share_view(&share, &queued))
    }

    fn hello(
        &mut self,
        b: &mut Batch,
        hello: pb::AgentHello,
        tx: AgentTx,
    ) -> Result<u64, ServerError> {
        let id = hello.agent_id.trim().to_owned();
        let refuse = |reason: String| ServerError::AgentRefused {
            agent: if id.is_empty() {
                "<no id>".to_owned()
            } else {
                id.clone()
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
        let welcome = pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(pb::Welcome {
                coordinator_id: self.coordinator_id.clone(),
                heartbeat_interval_ms: self
                    .cfg
                    .agent_heartbeat
                    .as_millis()
                    .min(u128::from(u32::MAX)) as u32,
            })),
        };
        if tx.send(Ok(welcome)).is_err() {
            return Err(refuse("stream closed before welcome".to_owned()));
        }
        let known: Vec<pb::JobUpdate> = hello.known_jobs.clone();
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
            labels: hello.labels.clone().into_iter().collect(),
            healthy: true,
            drained: false,
        };
        agent.hello = pb::AgentHello {
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
        let known: HashMap<String, pb::JobUpdate> =
            known.into_iter().map(|u| (u.job_id.clone(), u)).collect();
        let mine: Vec<Uuid> = self
            .cache
            .values()
            .filter(|n| n.status.share.as_deref() == Some(id.as_str()) && n.status.job.is_some())
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
                Some(u) if u.state == pb::JobState::Running as i32 => {}
                Some(u)
                    if u.state == pb::JobState::Succeeded as i32
                        || u.state == pb::JobState::Failed as i32 =>
                {
                    self.job_update(b, &id, u.clone());
                }
                _ => {
                    if let Some((intent, spec)) =
                        core::resume_job(&node.status, &node.spec, &self.machine)
                    {
                        let job = convert::job_to_proto(
                            uuid,
                            &intent,
                            &spec,
                            core::bmc_target(&node.spec).ok(),
                        );
                        b.sends.push((
                            id.clone(),
                            pb::CoordinatorMessage {
                                msg: Some(pb::coordinator_message::Msg::Job(job)),
                            },
                        ));
                    }
                }
            }
        }
        b.admit_needed = true;
        Ok(session)
    }

    fn job_update(&mut self, b: &mut Batch, agent: &str, u: pb::JobUpdate) {
        let Ok(uuid) = Uuid::parse_str(&u.node_uuid) else {
            tracing::warn!(agent, node = %u.node_uuid, "job update with a bad node uuid ignored");
            return;
        };
        let Ok(job_id) = Uuid::parse_str(&u.job_id) else {
            tracing::warn!(agent, node = %uuid, job = %u.job_id, "job update with a bad job id ignored");
            return;
        };
        let Some(node) = self.cache.get(&uuid) else {
            tracing::debug!(agent, node = %uuid, job = %job_id, "update for a node with no work under way ignored");
            return;
        };
        if node.status.job.map(|j| j.job_id) != Some(job_id) {
            tracing::debug!(agent, node = %uuid, job = %job_id, "update for a superseded job ignored");
            return;
        }
        if u.state == pb::JobState::Running as i32 {
            // Progress is shown to watchers but not persisted (it changes often and a
            // restart re-derives it from the step). Nobody watching: nothing to build.
            if self.events.receiver_count() == 0 {
                return;
            }
            let mut ev = convert::node_event(node, 0, now_ms());
            if !u.progress.is_empty() {
                ev.progress = u.progress;
            }
            let _ = self.events.send(ev);
            return;
        }
        let result = convert::job_result(&u);
        if let Err(e) = self.apply(b, uuid, Event::JobFinished { job_id, result }) {
            tracing::warn!(agent, node = %uuid, job = %job_id, error = %e, "job result not applied");
        }
    }

    fn lookup(
        &self,
        req: &pb::RamdiskLookupRequest,
    ) -> Result<pb::RamdiskLookupResponse, ServerError> {
        let allowed = |n: &Node| {
            matches!(
                n.status.provision_state,
                ProvisionState::Deploying | ProvisionState::WaitCallback
            )
        };
        let mut found: Option<&Node> = None;
        if !req.node_uuid.is_empty() {
            if let Ok(u) = Uuid::parse_str(&req.node_uuid) {
                found = self.cache.get(&u).filter(|n| allowed(n));
            }
        } else {
            let mut hits = BTreeSet::new();
            for a in &req.addresses {
                if let Some(u) = self.macs.get(&a.trim().to_ascii_lowercase()) {
                    hits.insert(*u);
                }
            }
            // More than one node matching is Ironic's DuplicateNodeOnLookup: not found.
            if hits.len() == 1
                && let Some(u) = hits.first()
            {
                found = self.cache.get(u).filter(|n| allowed(n));
            }
        }
        let n = found.ok_or_else(|| ServerError::LookupNotFound {
            what: if req.node_uuid.is_empty() {
                format!("addresses {}", req.addresses.join(","))
            } else {
                format!("node {}", req.node_uuid)
            },
        })?;
        Ok(pb::RamdiskLookupResponse {
            node_uuid: n.uuid().to_string(),
            properties: n.spec.properties.clone().into_iter().collect(),
            instance_info: core::mask(&n.spec.instance_info).into_iter().collect(),
            heartbeat_timeout_s: 300,
        })
    }

    fn ramdisk_heartbeat(
        &mut self,
        b: &mut Batch,
        req: &pb::RamdiskHeartbeatRequest,
    ) -> Result<(), ServerError> {
        let uuid = Uuid::parse_str(&req.node_uuid).map_err(|_| ServerError::NodeNotFound {
            node: req.node_uuid.clone(),
        })?;
        let Some(node) = self.cache.get(&uuid) else {
            return Err(ServerError::NodeNotFound {
                node: uuid.to_string(),
            });
        };
        let ok = node
            .status
            .agent_token
            .as_ref()
            .is_some_and(|t| t.ct_eq(&req.agent_token));
        if !ok {
            // Never log the presented token.
            tracing::warn!(node = %uuid, agent = %req.agent_id, bmc = node.spec.bmc_address().unwrap_or("-"),
                "ramdisk heartbeat refused: invalid or missing agent token");
            return Err(ServerError::BadAgentToken {
                node: uuid.to_string(),
            });
        }
        match self.apply(
            b,
            uuid,
            Event::Heartbeat {
                callback_url: req.callback_url.clone(),
            },
        ) {
            // A heartbeat in a record-only state is fine (IPA heartbeats periodically).
            Err(ServerError::NotAllowed { .. }) => Ok(()),
            other => other,
        }
    }

    fn on_tick(&mut self, b: &mut Batch) {
        let now = now_ms();
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
        let lost_after = self.cfg.agent_lost_after().as_millis() as i64;
        let lost: Vec<String> = self
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
    fn agent_lost(&mut self, b: &mut Batch, id: &str) {
        if let Some(a) = self.agents.get_mut(id) {
            a.health = Health::Lost;
            a.view.healthy = false;
            a.session = None;
        }
        let affected: Vec<Uuid> = self
            .cache
            .values()
            .filter(|n| n.status.share.as_deref() == Some(id))
            .map(Node::uuid)
            .collect();
        tracing::warn!(agent = id, nodes = affected.len(), "share agent lost");
        self.rehome.push(id.to_owned());
        for uuid in affected {
            self.release_slot(&uuid);
            if let Err(e) = self.apply(
                b,
                uuid,
                Event::AgentLost {
                    share: id.to_owned(),
                },
            ) {
                tracing::warn!(node = %uuid, agent = id, error = %e, "agent loss not applied");
            }
        }
        b.admit_needed = true;
    }

    /// Moves the idle nodes (no work under way) of lost or drained agents to other agents,
    /// through core placement, so every node keeps a serving agent. Nodes with work under way
    /// are handled by the state machine (AgentLost) or finish where they are (drain).
    async fn rehome_idle_nodes(&mut self, b: &mut Batch) {
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
                share: Some(agent.clone()),
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
                            current: node.status.share.as_deref(),
                        },
                        &views,
                        &self.loads,
                    );
                    let Some(to) = p.chosen.filter(|c| *c != agent) else {
                        continue;
                    };
                    self.insert_cache(node);
                    match self.apply(b, uuid, Event::Placed { share: to }) {
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

    /// Admission round: places queued nodes and admits them while their agent (and the
    /// global cap) has room. Nodes behind a full agent do not block nodes of other agents.
    fn admit(&mut self, b: &mut Batch) {
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

    /// Commits the batch, then performs its side effects.
    async fn flush(&mut self, mut b: Batch) {
        if !b.dirty.is_empty() {
            let rows: Vec<(Uuid, u64, core::NodeStatus)> = b
                .dirty
                .iter()
                .filter_map(|u| self.cache.get(u).map(|n| (*u, n.version, n.status.clone())))
                .collect();
            match self.store.update_statuses(&rows).await {
                Ok(versions) => {
                    for ((uuid, _, _), v) in rows.iter().zip(versions) {
                        if let Some(n) = self.cache.get_mut(uuid) {
                            n.version = v;
                        }
                    }
                }
                Err(e) => {
                    // Nothing was written: drop the in-memory changes (reload what the store
                    // has), fail the callers, and do no side effect.
                    tracing::error!(error = %e, nodes = rows.len(), "status commit failed; batch discarded");
                    let text = e.to_string();
                    for (uuid, _, _) in &rows {
                        self.evict(uuid);
                        if let Ok(Some(n)) = self.store.get_node(&NodeId::Uuid(*uuid)).await {
                            self.set_placed(*uuid, n.status.share.as_deref());
                            if n.status.in_flight() {
                                self.insert_cache(n);
                            }
                        }
                    }
                    for r in b.replies {
                        let err = |node: String| ServerError::Commit {
                            node,
                            detail: text.clone(),
                        };
                        match r {
                            PendingReply::Node(uuid, tx) => {
                                let _ = tx.send(Err(err(uuid.to_string())));
                            }
                            PendingReply::Bulk(_, _, tx) => {
                                let _ = tx.send(Err(err(format!("{} nodes", rows.len()))));
                            }
                            PendingReply::Unit(tx) => {
                                let _ = tx.send(Err(err("-".to_owned())));
                            }
                        }
                    }
                    return;
                }
            }
        }
        for (share, msg) in b.sends.drain(..) {
            match self.agents.get(&share).and_then(|a| a.session.as_ref()) {
                Some((_, tx)) => {
                    if tx.send(Ok(msg)).is_err() {
                        tracing::debug!(agent = %share, "agent stream gone; job will be re-sent on reconnect");
                    }
                }
                None => {
                    tracing::debug!(agent = %share, "agent not connected; job will be re-sent on reconnect")
                }
            }
        }
        if self.events.receiver_count() > 0 && !b.emits.is_empty() {
            let now = now_ms();
            let positions = queue_positions(&self.queue, &b.emits);
            for (uuid, pos) in b.emits.iter().zip(positions) {
                if let Some(n) = self.cache.get(uuid) {
                    let _ = self.events.send(convert::node_event(n, pos, now));
                }
            }
        }
        for r in b.replies {
            match r {
                PendingReply::Node(uuid, tx) => {
                    let result = match self.cache.get(&uuid) {
                        Some(n) => Ok(convert::node_to_proto(
                            n,
                            queue_position(&self.queue, &uuid),
                        )),
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
                            .map(|n| convert::node_to_proto(&n, 0)),
                    };
                    let _ = tx.send(result);
                }
                PendingReply::Bulk(accepted, failures, tx) => {
                    let _ = tx.send(Ok(pb::BulkSetProvisionStateResponse { accepted, failures }));
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

fn bmc_ip(node: &Node) -> Option<IpAddr> {
    node.spec.bmc_address().and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_positions_follow_arrival_and_close_gaps() {
        let mut q = Queue::default();
        let ids: Vec<Uuid> = (0..4u128).map(Uuid::from_u128).collect();
        for id in &ids {
            q.push(*id, true);
        }
        q.push(ids[0], true); // already queued: keeps its place
        assert_eq!(q.position(&ids[0]), 1);
        assert_eq!(q.position(&ids[3]), 4);
        assert!(q.remove(&ids[1]));
        assert!(!q.remove(&ids[1]));
        assert_eq!(q.position(&ids[2]), 2);
        assert_eq!(q.position(&ids[1]), 0);
        assert_eq!(q.len(), 3);
        let many = [ids[3], ids[1], ids[0], ids[3], Uuid::from_u128(99), ids[2]];
        assert_eq!(q.positions(&many), vec![3, 0, 1, 3, 0, 2]);
        assert_eq!(
            q.positions(&many),
            many.iter().map(|u| q.position(u)).collect::<Vec<_>>()
        );
        assert_eq!(Queue::default().positions(&many), vec![0; 6]);
        assert_eq!(
            q.snapshot().iter().map(|(u, _)| *u).collect::<Vec<_>>(),
            vec![ids[0], ids[2], ids[3]]
        );
    }
}
