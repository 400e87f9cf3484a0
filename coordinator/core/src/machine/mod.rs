//! The provision state machine, as data: `step(status, spec, event) -> (status, actions)`.
//!
//! `mod.rs` holds what goes in and comes out ([`Event`], [`Action`], [`Transition`]) and
//! the entry points; `transitions.rs` the transitions themselves, one method per event.

mod transitions;

use uuid::Uuid;

use crate::agent::AgentId;
use crate::job::{JobSpec, build_job};
use crate::node::{JobIntent, NodeSpec, NodeStatus};
use crate::secret::Secret;
use crate::{CoreError, JobResult, Verb};
use transitions::Machine;

/// Tunables of the machine. Durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// How long to wait for the deploy ramdisk's first heartbeat (Ironic's
    /// `[conductor]deploy_callback_timeout`, default 1800 s).
    pub callback_timeout_ms: i64,
    /// Upper bound for any single job (prepare ramdisk, write image, ...).
    pub job_timeout_ms: i64,
    /// Run a CleanUp job on provide and after undeploy (Ironic's automated_clean).
    pub automated_clean: bool,
    /// Attempts for a job whose failure the agent marked retryable (1 = no retry).
    pub max_attempts: u32,
    /// Ironic's `[conductor]force_power_state_during_sync`: when the power-state sync
    /// finds a node in another state than recorded, power it back (true) or only record
    /// what it found (false, the default).
    pub force_power_state_during_sync: bool,
    /// Secret mixed into every job id, so that nobody who knows a node's uuid and
    /// history can compute its job ids. Random per coordinator process; job ids are
    /// persisted with their intent, so a restart never needs the old key.
    pub job_id_key: JobIdKey,
}

/// The job-id key: 32 bytes, never printed.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct JobIdKey(pub [u8; 32]);

impl std::fmt::Debug for JobIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobIdKey(******)")
    }
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            callback_timeout_ms: 1_800_000,
            job_timeout_ms: 3_600_000,
            automated_clean: false,
            max_attempts: 3,
            job_id_key: JobIdKey::default(),
            force_power_state_during_sync: false,
        }
    }
}

/// What happened to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An operator verb.
    Verb(Verb),
    /// Placement chose (or confirmed) the share agent for the node.
    Placed { agent: AgentId },
    /// Admission granted: the node may start its queued operation on `status.agent`.
    /// The token is used only when the operation is a deploy (a fresh one per deploy,
    /// drawn by the caller: see [`crate::new_agent_token`]).
    Admitted { agent_token: Secret },
    /// An agent reported the end of a job.
    JobFinished { job_id: Uuid, result: JobResult },
    /// The ramdisk heartbeated (its token was already checked by the caller).
    Heartbeat { callback_url: String },
    /// A timer fired; the machine checks `status.deadline_ms` against `now_ms`.
    Timeout { now_ms: i64 },
    /// The share agent `agent` is lost (stream gone, heartbeats missed).
    AgentLost { agent: AgentId },
    /// The node's share agent was drained by the operator.
    AgentDrained,
    /// An operator power action (`power on`, `power off`, `rebooting`, ...).
    Power(crate::PowerAction),
    /// The power-state sync read the node's power state from its BMC.
    PowerObserved(crate::PowerState),
}

/// Side effects the caller must perform, in order, AFTER persisting the new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Place the node (then feed [`Event::Placed`]) and admit it (then feed
    /// [`Event::Admitted`]). `needs_slot`: the operation holds one of the agent's
    /// virtual-media boot slots (deploys) until [`Action::ReleaseSlot`]; otherwise
    /// admission may be immediate (verify, clean).
    Enqueue { needs_slot: bool },
    /// Send this job to the node's agent (`status.agent`). The intent is already in
    /// `status.job`.
    SendJob { intent: JobIntent, spec: JobSpec },
    /// Cancel a job that is no longer wanted (abort, or superseded).
    CancelJob { job_id: Uuid },
    /// Give back the node's boot slot (idempotent: a node holds at most one) and
    /// drop it from the admission queue if it is still waiting.
    ReleaseSlot,
    /// Tell watchers about the new status.
    Emit,
}

/// Result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub status: NodeStatus,
    pub actions: Vec<Action>,
}

impl Transition {
    /// True when nothing changed and nothing is to be done (e.g. a stale job result);
    /// the caller need not write to the store.
    pub fn is_noop(&self, before: &NodeStatus) -> bool {
        self.actions.is_empty() && &self.status == before
    }
}

/// The state machine. Pure: the same inputs give the same output (job ids are
/// derived from the node's uuid, creation time and a per-node job counter, so they
/// are fresh for every job yet reproducible in tests).
///
/// Flows (Ironic names):
/// - manage: enroll -> verifying (Enqueue, then BmcInfo job) -> manageable; failure
///   -> enroll with last_error. available | clean failed -> manageable directly.
/// - provide: manageable -> available, via cleaning + CleanUp job when
///   `cfg.automated_clean`.
/// - deploy (available | deploy failed), rebuild (active | deploy failed):
///   -> deploying (Enqueue, "waiting for a share slot") -> Admitted -> PrepareRamdisk
///   -> wait call-back (deadline) -> Heartbeat -> deploying (WriteImage) ->
///   PrepareInstance -> active (ReleaseSlot). Any failure or timeout -> deploy failed
///   (last_error names node, BMC, operation) + best-effort CleanUp + ReleaseSlot.
/// - undeploy (active | deploy failed | error): -> deleting (CleanUp) -> [cleaning
///   (CleanUp) when automated_clean] -> available. Failure -> error / clean failed.
/// - abort: wait call-back -> deploy failed; a queued deploy/verify/clean -> back
///   where it was.
/// - inspect (manageable | inspect failed): -> inspecting (Enqueue, Inspect job) ->
///   manageable; failure or timeout -> inspect failed with last_error. The caller
///   writes the inventory into the spec before feeding the job's result.
/// - power (any state with no work under way): Power job with the action persisted
///   in `target_power_state`; its result records `power_state` (and the time it
///   changed), a failure only `last_error`. The sync's `PowerObserved` records a change
///   (or, with `force_power_state_during_sync`, powers the node back).
/// - AgentLost while a job or wait is in flight: back to the safe point (Enqueue
///   again, so the deploy restarts with PrepareRamdisk and a fresh token elsewhere).
pub fn step(
    node: &NodeStatus,
    spec: &NodeSpec,
    event: Event,
    now_ms: i64,
    cfg: &MachineConfig,
) -> Result<Transition, CoreError> {
    let mut m = Machine {
        s: node.clone(),
        spec,
        now: now_ms,
        cfg,
        actions: Vec::new(),
    };
    match event {
        Event::Verb(v) => m.verb(v)?,
        Event::Placed { agent } => m.placed(agent),
        Event::Admitted { agent_token } => m.admitted(agent_token)?,
        Event::JobFinished { job_id, result } => m.job_finished(job_id, result),
        Event::Heartbeat { callback_url } => m.heartbeat(callback_url)?,
        Event::Timeout { now_ms } => m.timeout(now_ms),
        Event::AgentLost { agent } => m.agent_lost(&agent),
        Event::AgentDrained => m.agent_drained(),
        Event::Power(action) => m.power(action)?,
        Event::PowerObserved(state) => m.power_observed(state),
    }
    let mut status = m.s;
    let mut actions = m.actions;
    if status != *node {
        status.updated_at_ms = now_ms;
        actions.push(Action::Emit);
    }
    Ok(Transition { status, actions })
}

/// The (intent, job) to re-send for a node whose `status.job` is set, e.g. after a
/// coordinator restart. `None` when no job is recorded.
pub fn resume_job(
    status: &NodeStatus,
    spec: &NodeSpec,
    cfg: &MachineConfig,
) -> Option<(JobIntent, JobSpec)> {
    let intent = status.job?;
    Some((intent, build_job(intent.kind, spec, status, cfg)))
}
