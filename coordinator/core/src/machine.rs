//! The provision state machine, as data: `step(status, spec, event) -> (status, actions)`.

use uuid::Uuid;

use crate::node::{DeployStep, JobIntent, JobKind, NodeSpec, NodeStatus};
use crate::secret::Secret;
use crate::{CoreError, PowerState, ProvisionState, Verb};

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
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            callback_timeout_ms: 1_800_000,
            job_timeout_ms: 3_600_000,
            automated_clean: false,
            max_attempts: 3,
        }
    }
}

/// What happened to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An operator verb.
    Verb(Verb),
    /// Placement chose (or confirmed) the share agent for the node.
    Placed { share: String },
    /// Admission granted: the node may start its queued operation on `status.share`.
    /// The token is used only when the operation is a deploy (a fresh one per deploy,
    /// drawn by the caller: see [`crate::new_agent_token`]).
    Admitted { agent_token: Secret },
    /// An agent reported the end of a job.
    JobFinished { job_id: Uuid, result: JobResult },
    /// The ramdisk heartbeated (its token was already checked by the caller).
    Heartbeat { callback_url: String },
    /// A timer fired; the machine checks `status.deadline_ms` against `now_ms`.
    Timeout { now_ms: i64 },
    /// The share agent `share` is lost (stream gone, heartbeats missed).
    AgentLost { share: String },
    /// The node's share agent was drained by the operator.
    AgentDrained,
}

/// Outcome of a job, as the agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobResult {
    pub ok: bool,
    /// Agent's error text (it names the node, the BMC and the operation).
    pub error: Option<String>,
    pub retryable: bool,
    pub output: JobOutputs,
}

/// Facts a job learned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOutputs {
    pub power_state: Option<PowerState>,
    pub root_uuid: Option<String>,
    pub bmc_model: Option<String>,
    pub bmc_firmware: Option<String>,
    pub bmc_has_virtual_fd: Option<bool>,
}

/// How to reach the node's BMC (from driver_info, defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcTarget {
    pub address: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    /// "basic" | "digest"
    pub auth_method: String,
    pub client_timeout_s: u32,
    /// "true" | "false" | absolute path of a CA bundle on the agent
    pub verify_ca: String,
    /// irmc_transport: "redfish" | "ipmi" | "auto"
    pub transport: String,
}

/// The work a job does. Mirrors the proto `Job.kind` oneof; the server converts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    PrepareRamdisk {
        deploy_iso: String,
        deploy_kernel: String,
        deploy_ramdisk: String,
        boot_mode: String,
        agent_token: Secret,
        bootif: String,
        kernel_append_params: String,
    },
    WriteImage {
        callback_url: String,
        agent_token: Secret,
        image_source: String,
        image_checksum: String,
        os_hash_algo: String,
        os_hash_value: String,
        disk_format: String,
        boot_mode: String,
        image_type: String,
        timeout_s: u32,
    },
    PrepareInstance {
        callback_url: String,
        agent_token: Secret,
        boot_iso: String,
        boot_mode: String,
        power_on: bool,
    },
    CleanUp {
        power_off: bool,
    },
    Power {
        action: String,
    },
    BmcInfo,
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::PrepareRamdisk { .. } => JobKind::PrepareRamdisk,
            Self::WriteImage { .. } => JobKind::WriteImage,
            Self::PrepareInstance { .. } => JobKind::PrepareInstance,
            Self::CleanUp { .. } => JobKind::CleanUp,
            Self::Power { .. } => JobKind::Power,
            Self::BmcInfo => JobKind::BmcInfo,
        }
    }
}

/// Side effects the caller must perform, in order, AFTER persisting the new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Place the node (then feed [`Event::Placed`]) and admit it (then feed
    /// [`Event::Admitted`]). `needs_slot`: the operation holds one of the agent's
    /// virtual-media boot slots (deploys) until [`Action::ReleaseSlot`]; otherwise
    /// admission may be immediate (verify, clean).
    Enqueue { needs_slot: bool },
    /// Send this job to the node's agent (`status.share`). The intent is already in
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
        Event::Placed { share } => m.placed(share),
        Event::Admitted { agent_token } => m.admitted(agent_token)?,
        Event::JobFinished { job_id, result } => m.job_finished(job_id, result),
        Event::Heartbeat { callback_url } => m.heartbeat(callback_url)?,
        Event::Timeout { now_ms } => m.timeout(now_ms),
        Event::AgentLost { share } => m.agent_lost(&share),
        Event::AgentDrained => m.agent_drained(),
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

/// BMC connection facts from driver_info, defaults applied (port 443, basic auth,
/// 60 s client timeout, verify TLS).
pub fn bmc_target(spec: &NodeSpec) -> Result<BmcTarget, CoreError> {
    let di = &spec.driver_info;
    let req = |k: &str| {
        di.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| CoreError::invalid(format!("driver_info.{k}"), "required"))
    };
    let port = match di.get("irmc_port").map(String::as_str) {
        None | Some("443") => 443,
        Some("80") => 80,
        Some(p) => {
            return Err(CoreError::invalid(
                "driver_info.irmc_port",
                format!("must be 443 or 80, got {p:?}"),
            ));
        }
    };
    let client_timeout_s = match di.get("irmc_client_timeout") {
        None => 60,
        Some(t) => t.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            CoreError::invalid(
                "driver_info.irmc_client_timeout",
                format!("must be a positive integer (seconds), got {t:?}"),
            )
        })?,
    };
    let verify_ca = match di.get("irmc_verify_ca") {
        None => "true".to_string(),
        Some(v) => match crate::validate::parse_bool(v) {
            Some(b) => b.to_string(),
            None => v.clone(),
        },
    };
    Ok(BmcTarget {
        address: req("irmc_address")?,
        port,
        username: req("irmc_username")?,
        password: Secret::new(req("irmc_password")?),
        auth_method: di
            .get("irmc_auth_method")
            .cloned()
            .unwrap_or_else(|| "basic".to_string()),
        client_timeout_s,
        verify_ca,
        transport: di
            .get("irmc_transport")
            .cloned()
            .unwrap_or_else(|| "auto".to_string()),
    })
}

/// A fresh, reproducible job id: a 128-bit mix of (node uuid, node creation time,
/// per-node job counter), stamped as an RFC 9562 version-8 ("custom") UUID. Mixing
/// in the creation time keeps ids distinct when a node is deleted and re-created
/// with the same uuid while an agent still remembers the old ids.
fn job_uuid(node: Uuid, created_at_ms: i64, seq: u64) -> Uuid {
    let (hi, lo) = node.as_u64_pair();
    let a = mix64(hi ^ mix64(lo ^ mix64(seq ^ mix64(created_at_ms as u64))));
    let b = mix64(a ^ 0x9e37_79b9_7f4a_7c15 ^ seq.rotate_left(32));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// splitmix64's finaliser: a cheap bijective 64-bit mix.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn build_job(kind: JobKind, spec: &NodeSpec, s: &NodeStatus, cfg: &MachineConfig) -> JobSpec {
    let di = |k: &str| spec.driver_info.get(k).cloned().unwrap_or_default();
    let ii = |k: &str| spec.instance_info.get(k).cloned().unwrap_or_default();
    let token = s.agent_token.clone().unwrap_or_default();
    let callback_url = s.callback_url.clone().unwrap_or_default();
    let boot_mode = crate::validate::boot_mode(spec).to_string();
    match kind {
        JobKind::PrepareRamdisk => JobSpec::PrepareRamdisk {
            deploy_iso: crate::validate::deploy_iso(spec)
                .unwrap_or_default()
                .to_string(),
            deploy_kernel: di("deploy_kernel"),
            deploy_ramdisk: di("deploy_ramdisk"),
            boot_mode,
            agent_token: token,
            bootif: spec.macs.first().cloned().unwrap_or_default(),
            kernel_append_params: spec
                .driver_info
                .get("kernel_append_params")
                .cloned()
                .unwrap_or_else(|| ii("kernel_append_params")),
        },
        JobKind::WriteImage => JobSpec::WriteImage {
            callback_url,
            agent_token: token,
            image_source: ii("image_source"),
            image_checksum: ii("image_checksum"),
            os_hash_algo: ii("os_hash_algo"),
            os_hash_value: ii("os_hash_value"),
            disk_format: ii("image_disk_format"),
            boot_mode,
            // Ironic: a kernel + ramdisk pair means a partition image.
            image_type: if spec.instance_info.contains_key("kernel")
                && spec.instance_info.contains_key("ramdisk")
            {
                "partition".to_string()
            } else {
                "whole-disk".to_string()
            },
            timeout_s: u32::try_from(cfg.job_timeout_ms / 1000).unwrap_or(u32::MAX),
        },
        JobKind::PrepareInstance => JobSpec::PrepareInstance {
            callback_url,
            agent_token: token,
            boot_iso: crate::validate::boot_iso(spec)
                .unwrap_or_default()
                .to_string(),
            boot_mode,
            power_on: true,
        },
        JobKind::CleanUp => JobSpec::CleanUp { power_off: true },
        JobKind::Power => JobSpec::Power {
            action: "status".to_string(),
        },
        JobKind::BmcInfo => JobSpec::BmcInfo,
    }
}

struct Machine<'a> {
    s: NodeStatus,
    spec: &'a NodeSpec,
    now: i64,
    cfg: &'a MachineConfig,
    actions: Vec<Action>,
}

use ProvisionState as P;

impl Machine<'_> {
    fn uuid(&self) -> Uuid {
        self.spec.uuid
    }

    fn bmc(&self) -> &str {
        self.spec.bmc_address().unwrap_or("<no irmc_address>")
    }

    fn set_state(&mut self, state: ProvisionState, target: Option<ProvisionState>) {
        if self.s.provision_state != state || self.s.target_provision_state != target {
            self.s.provision_updated_at_ms = self.now;
        }
        self.s.provision_state = state;
        self.s.target_provision_state = target;
    }

    fn not_allowed(&self, verb: Verb) -> CoreError {
        CoreError::VerbNotAllowed {
            verb,
            node: self.uuid(),
            state: self.s.provision_state,
        }
    }

    /// Forgets the current job, asking the agent to cancel it.
    fn cancel_job(&mut self) {
        if let Some(j) = self.s.job.take() {
            self.actions.push(Action::CancelJob { job_id: j.job_id });
        }
        self.s.deadline_ms = None;
    }

    /// Clears everything that belongs to one operation.
    fn settle(&mut self) {
        self.s.step = DeployStep::None;
        self.s.job = None;
        self.s.deadline_ms = None;
        self.s.agent_token = None;
        self.s.callback_url = None;
        self.s.resume_state = None;
        self.s.progress.clear();
    }

    fn enqueue(&mut self, needs_slot: bool) {
        self.cancel_job();
        self.s.step = DeployStep::Queued;
        self.s.progress = if needs_slot {
            "waiting for a share slot".to_string()
        } else {
            "waiting for a share agent".to_string()
        };
        self.actions.push(Action::Enqueue { needs_slot });
    }

    /// Records the intent, then asks for it to be sent (persist before act).
    fn issue(&mut self, kind: JobKind, attempt: u32, step: DeployStep) {
        self.s.job_seq += 1;
        let intent = JobIntent {
            job_id: job_uuid(self.uuid(), self.s.created_at_ms, self.s.job_seq),
            kind,
            attempt,
        };
        self.s.job = Some(intent);
        self.s.step = step;
        self.s.deadline_ms = Some(self.now.saturating_add(self.cfg.job_timeout_ms));
        let on = self.s.share.as_deref().unwrap_or("?");
        self.s.progress = if attempt > 1 {
            format!("{} on share {on} (attempt {attempt})", kind.operation())
        } else {
            format!("{} on share {on}", kind.operation())
        };
        let spec = build_job(kind, self.spec, &self.s, self.cfg);
        self.actions.push(Action::SendJob { intent, spec });
    }

    /// Any deploy failure: deploy failed + last_error, slot released, best-effort
    /// clean-up of the media on the share.
    fn fail_deploy(&mut self, error: String) {
        self.cancel_job();
        self.settle();
        self.set_state(P::DeployFailed, None);
        self.s.last_error = Some(error);
        self.actions.push(Action::ReleaseSlot);
        if self.s.share.is_some() {
            self.issue(JobKind::CleanUp, 1, DeployStep::CleanUp);
            self.s.progress = "cleaning up after failure".to_string();
        }
    }

    fn verb(&mut self, verb: Verb) -> Result<(), CoreError> {
        let state = self.s.provision_state;
        if self.spec.maintenance && !matches!(verb, Verb::Undeploy | Verb::Abort) {
            return Err(CoreError::InMaintenance {
                verb,
                node: self.uuid(),
            });
        }
        match (verb, state) {
            (Verb::Manage, P::Enroll) => {
                self.set_state(P::Verifying, Some(P::Manageable));
                self.s.last_error = None;
                self.s.resume_state = Some(P::Enroll);
                self.enqueue(false);
            }
            (Verb::Manage, P::Available | P::CleanFailed) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::Manageable, None);
            }
            (Verb::Provide, P::Manageable) => {
                self.s.last_error = None;
                if self.cfg.automated_clean {
                    self.set_state(P::Cleaning, Some(P::Available));
                    self.s.resume_state = Some(P::Manageable);
                    self.enqueue(false);
                } else {
                    self.set_state(P::Available, None);
                }
            }
            (Verb::Deploy, P::Available | P::DeployFailed)
            | (Verb::Rebuild, P::Active | P::DeployFailed) => {
                // A best-effort clean-up from an earlier failure may still run.
                self.cancel_job();
                self.settle();
                self.s.resume_state = Some(state);
                self.s.last_error = None;
                self.set_state(P::Deploying, Some(P::Active));
                self.enqueue(true);
            }
            (Verb::Undeploy, P::Active | P::DeployFailed | P::Error) => {
                self.cancel_job();
                self.settle();
                self.s.resume_state = Some(state);
                self.s.last_error = None;
                self.set_state(P::Deleting, Some(P::Available));
                self.enqueue(false);
            }
            (Verb::Abort, P::WaitCallback) => {
                let msg = format!(
                    "Deploy of node {} (BMC {}) aborted by the operator while waiting for the ramdisk call-back",
                    self.uuid(),
                    self.bmc()
                );
                self.fail_deploy(msg);
            }
            (Verb::Abort, P::Deploying | P::Verifying | P::Cleaning)
                if self.s.step == DeployStep::Queued =>
            {
                let back = self.s.resume_state.unwrap_or(match state {
                    P::Deploying => P::Available,
                    P::Verifying => P::Enroll,
                    _ => P::Manageable,
                });
                self.settle();
                self.set_state(back, None);
                self.actions.push(Action::ReleaseSlot);
            }
            (Verb::Abort, P::Verifying) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::Enroll, None);
                self.s.last_error = Some(format!(
                    "Verification of node {} (BMC {}) aborted by the operator",
                    self.uuid(),
                    self.bmc()
                ));
            }
            _ => return Err(self.not_allowed(verb)),
        }
        Ok(())
    }

    fn placed(&mut self, share: String) {
        if self.s.step == DeployStep::Queued {
            self.s.progress = if self.s.provision_state == P::Deploying {
                format!("placed on share {share}; waiting for a share slot")
            } else {
                format!("placed on share {share}; waiting for admission")
            };
        }
        self.s.share = Some(share);
    }

    fn admitted(&mut self, token: Secret) -> Result<(), CoreError> {
        if self.s.step != DeployStep::Queued {
            // Raced with an abort or a failure: hand the slot straight back.
            self.actions.push(Action::ReleaseSlot);
            return Ok(());
        }
        if self.s.share.is_none() {
            return Err(CoreError::UnexpectedEvent {
                node: self.uuid(),
                state: self.s.provision_state,
                event: "admission before placement",
            });
        }
        match self.s.provision_state {
            P::Verifying => self.issue(JobKind::BmcInfo, 1, DeployStep::Verify),
            P::Deploying => {
                self.s.agent_token = Some(token);
                self.s.callback_url = None;
                self.issue(JobKind::PrepareRamdisk, 1, DeployStep::PrepareRamdisk);
            }
            P::Deleting | P::Cleaning => self.issue(JobKind::CleanUp, 1, DeployStep::CleanUp),
            _ => self.actions.push(Action::ReleaseSlot),
        }
        Ok(())
    }

    fn job_finished(&mut self, job_id: Uuid, r: JobResult) {
        let Some(intent) = self.s.job.filter(|j| j.job_id == job_id) else {
            return; // stale or duplicate result: ignore
        };
        if let Some(p) = r.output.power_state {
            self.s.power_state = Some(p);
        }
        // Outside a running operation (e.g. the clean-up after a failed deploy) a
        // job's result only clears the intent.
        if !self.s.provision_state.is_transient() || intent.kind == JobKind::Power {
            self.s.job = None;
            self.s.deadline_ms = None;
            self.s.step = DeployStep::None;
            self.s.progress.clear();
            return;
        }
        if !r.ok && r.retryable && intent.attempt < self.cfg.max_attempts {
            self.issue(intent.kind, intent.attempt + 1, self.s.step);
            return;
        }
        let error = r
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "the agent reported a failure without details".to_string());
        let op = intent.kind.operation();
        match (self.s.provision_state, intent.kind, r.ok) {
            (P::Verifying, JobKind::BmcInfo, true) => {
                self.settle();
                self.set_state(P::Manageable, None);
            }
            (P::Verifying, _, false) => {
                self.settle();
                self.set_state(P::Enroll, None);
                self.s.last_error = Some(format!(
                    "Failed to verify node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                ));
            }
            (P::Deploying, JobKind::PrepareRamdisk, true) => {
                self.s.job = None;
                if self.s.callback_url.is_some() {
                    // The ramdisk heartbeated before the agent's result arrived.
                    self.issue(JobKind::WriteImage, 1, DeployStep::WriteImage);
                } else {
                    self.set_state(P::WaitCallback, Some(P::Active));
                    self.s.step = DeployStep::WaitCallback;
                    self.s.deadline_ms =
                        Some(self.now.saturating_add(self.cfg.callback_timeout_ms));
                    self.s.progress = "waiting for ramdisk call-back".to_string();
                }
            }
            (P::Deploying, JobKind::WriteImage, true) => {
                self.issue(JobKind::PrepareInstance, 1, DeployStep::PrepareInstance)
            }
            (P::Deploying, JobKind::PrepareInstance, true) => {
                self.settle();
                self.s.last_error = None;
                self.set_state(P::Active, None);
                self.actions.push(Action::ReleaseSlot);
            }
            (P::Deploying | P::WaitCallback, _, _) => {
                let msg = format!(
                    "Deploy failed for node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                );
                self.s.job = None; // finished: nothing to cancel
                self.fail_deploy(msg);
            }
            (P::Deleting, _, true) => {
                self.settle();
                if self.cfg.automated_clean {
                    self.set_state(P::Cleaning, Some(P::Available));
                    self.issue(JobKind::CleanUp, 1, DeployStep::CleanUp);
                } else {
                    self.set_state(P::Available, None);
                }
            }
            (P::Deleting, _, false) => {
                self.settle();
                self.set_state(P::Error, None);
                self.s.last_error = Some(format!(
                    "Failed to tear down node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                ));
            }
            (P::Cleaning, _, true) => {
                self.settle();
                self.set_state(P::Available, None);
            }
            (P::Cleaning, _, false) => {
                self.settle();
                self.set_state(P::CleanFailed, None);
                self.s.last_error = Some(format!(
                    "Failed to clean node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                ));
            }
            _ => {
                self.s.job = None;
                self.s.deadline_ms = None;
            }
        }
    }

    fn heartbeat(&mut self, callback_url: String) -> Result<(), CoreError> {
        match (self.s.provision_state, self.s.step) {
            (P::WaitCallback, _) => {
                self.s.callback_url = Some(callback_url);
                self.set_state(P::Deploying, Some(P::Active));
                self.issue(JobKind::WriteImage, 1, DeployStep::WriteImage);
            }
            (
                P::Deploying,
                DeployStep::PrepareRamdisk | DeployStep::WriteImage | DeployStep::PrepareInstance,
            ) => {
                self.s.callback_url = Some(callback_url);
            }
            (state, _) => {
                return Err(CoreError::UnexpectedEvent {
                    node: self.uuid(),
                    state,
                    event: "a ramdisk heartbeat",
                });
            }
        }
        Ok(())
    }

    fn timeout(&mut self, at: i64) {
        let Some(deadline) = self.s.deadline_ms else {
            return;
        };
        if at < deadline {
            return;
        }
        let uuid = self.uuid();
        let bmc = self.bmc().to_string();
        let op = self
            .s
            .job
            .map(|j| j.kind.operation())
            .unwrap_or("operation");
        let secs = self.cfg.job_timeout_ms / 1000;
        match (self.s.provision_state, self.s.step) {
            (P::WaitCallback, _) => {
                // Ironic's exact words first (operators grep for them), then what they
                // mean for virtual media: the server never ran the deploy ramdisk, which
                // is what a BMC that cannot mount the share's media looks like.
                let waited = self.cfg.callback_timeout_ms / 1000;
                let share = self.s.share.as_deref().unwrap_or("?");
                self.fail_deploy(format!(
                    "Timeout reached while waiting for callback for node {uuid}: no deploy \
                     ramdisk looked up within {waited} s after BMC {bmc} booted from the \
                     virtual CD on share {share}; check the BMC's virtual media (share \
                     credentials, share name, image names) and its console"
                ));
            }
            (P::Deploying, _) => self.fail_deploy(format!(
                "Deploy failed for node {uuid} (BMC {bmc}): timeout reached after {secs} s during {op}"
            )),
            (P::Verifying, _) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::Enroll, None);
                self.s.last_error = Some(format!(
                    "Failed to verify node {uuid} (BMC {bmc}): timeout reached after {secs} s during {op}"
                ));
            }
            (P::Deleting, _) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::Error, None);
                self.s.last_error = Some(format!(
                    "Failed to tear down node {uuid} (BMC {bmc}): timeout reached after {secs} s during {op}"
                ));
            }
            (P::Cleaning, _) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::CleanFailed, None);
                self.s.last_error = Some(format!(
                    "Failed to clean node {uuid} (BMC {bmc}): timeout reached after {secs} s during {op}"
                ));
            }
            _ => {
                // A best-effort job (clean-up after failure, power) overran: forget it.
                self.cancel_job();
                self.s.step = DeployStep::None;
                self.s.progress.clear();
            }
        }
    }

    fn agent_lost(&mut self, share: &str) {
        if self.s.share.as_deref() != Some(share) {
            return;
        }
        self.s.share = None;
        match self.s.provision_state {
            P::Deploying | P::WaitCallback => {
                // Safe point: start over with PrepareRamdisk (and a fresh token) elsewhere.
                self.cancel_job();
                self.s.agent_token = None;
                self.s.callback_url = None;
                self.set_state(P::Deploying, Some(P::Active));
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(true);
                self.s.progress = format!("share agent {share} lost; waiting for a share slot");
            }
            P::Verifying | P::Deleting | P::Cleaning => {
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(false);
                self.s.progress = format!("share agent {share} lost; waiting for a share agent");
            }
            _ => {
                if self.s.job.is_some() {
                    self.cancel_job();
                    self.s.step = DeployStep::None;
                    self.s.progress.clear();
                }
            }
        }
    }

    fn agent_drained(&mut self) {
        match self.s.step {
            // Nothing under way: free to move.
            DeployStep::None => self.s.share = None,
            // Not admitted yet: place it again.
            DeployStep::Queued => {
                self.s.share = None;
                let needs_slot = self.s.provision_state == P::Deploying;
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(needs_slot);
            }
            // Running work finishes where it is.
            _ => {}
        }
    }
}
