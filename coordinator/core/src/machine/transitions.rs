//! The transitions of the state machine: one method per event, on a working copy of the
//! status that collects the actions.

use uuid::Uuid;

use super::{Action, JobResult, MachineConfig};
use crate::agent::AgentId;
use crate::job::{build_job, job_uuid};
use crate::node::{DeployStep, JobIntent, JobKind, NodeSpec, NodeStatus};
use crate::secret::Secret;
use crate::{CoreError, PowerAction, PowerState, ProvisionState, Verb};

pub(super) struct Machine<'a> {
    pub(super) s: NodeStatus,
    pub(super) spec: &'a NodeSpec,
    pub(super) now: i64,
    pub(super) cfg: &'a MachineConfig,
    pub(super) actions: Vec<Action>,
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
            job_id: job_uuid(
                &self.cfg.job_id_key,
                self.uuid(),
                self.s.created_at_ms,
                self.s.job_seq,
            ),
            kind,
            attempt,
        };
        self.s.job = Some(intent);
        self.s.step = step;
        self.s.deadline_ms = Some(self.now.saturating_add(self.cfg.job_timeout_ms));
        let on = self.s.agent.as_ref().map_or("?", AgentId::as_str);
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
        if self.s.agent.is_some() {
            self.issue(JobKind::CleanUp, 1, DeployStep::CleanUp);
            self.s.progress = "cleaning up after failure".to_string();
        }
    }

    pub(super) fn verb(&mut self, verb: Verb) -> Result<(), CoreError> {
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
            (Verb::Manage, P::Available | P::CleanFailed | P::InspectFailed) => {
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
            | (Verb::Rebuild, P::Active | P::DeployFailed)
                if self.spec.macs.is_empty() =>
            {
                return Err(CoreError::DeployInvalid {
                    verb,
                    node: self.uuid(),
                    reason: crate::NO_MAC_REASON,
                });
            }
            (Verb::Inspect, P::Manageable | P::InspectFailed) => {
                self.cancel_job();
                self.settle();
                self.s.resume_state = Some(state);
                self.s.last_error = None;
                self.set_state(P::Inspecting, Some(P::Manageable));
                self.enqueue(false);
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
            (Verb::Abort, P::Deploying | P::Verifying | P::Cleaning | P::Inspecting)
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

    pub(super) fn placed(&mut self, agent: AgentId) {
        if self.s.step == DeployStep::Queued {
            self.s.progress = if self.s.provision_state == P::Deploying {
                format!("placed on share {agent}; waiting for a share slot")
            } else {
                format!("placed on share {agent}; waiting for admission")
            };
        }
        self.s.agent = Some(agent);
    }

    pub(super) fn admitted(&mut self, token: Secret) -> Result<(), CoreError> {
        if self.s.step != DeployStep::Queued {
            // Raced with an abort or a failure: hand the slot straight back.
            self.actions.push(Action::ReleaseSlot);
            return Ok(());
        }
        if self.s.agent.is_none() {
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
            P::Inspecting => self.issue(JobKind::Inspect, 1, DeployStep::Inspect),
            _ if self.s.target_power_state.is_some() => {
                self.issue(JobKind::Power, 1, DeployStep::Power)
            }
            _ => self.actions.push(Action::ReleaseSlot),
        }
        Ok(())
    }

    pub(super) fn job_finished(&mut self, job_id: Uuid, r: JobResult) {
        let Some(intent) = self.s.job.filter(|j| j.job_id == job_id) else {
            return; // stale or duplicate result: ignore
        };
        if let Some(p) = r.output.power_state {
            self.record_power(p);
        }
        if intent.kind == JobKind::Power {
            self.power_finished(&r);
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
                self.s.bmc_check = Some(crate::BmcCheck {
                    ok: true,
                    summary: r.output.bmc_check.unwrap_or_else(|| "verified".to_string()),
                    at_ms: self.now,
                });
            }
            (P::Verifying, _, false) => {
                self.settle();
                self.set_state(P::Enroll, None);
                let line = format!(
                    "Failed to verify node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                );
                if intent.kind == JobKind::BmcInfo {
                    self.s.bmc_check = Some(crate::BmcCheck {
                        ok: false,
                        summary: line.clone(),
                        at_ms: self.now,
                    });
                }
                self.s.last_error = Some(line);
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
            (P::Inspecting, JobKind::Inspect, true) => {
                self.settle();
                self.set_state(P::Manageable, None);
            }
            (P::Inspecting, _, _) => {
                self.settle();
                self.set_state(P::InspectFailed, None);
                self.s.last_error = Some(format!(
                    "Failed to inspect hardware of node {} (BMC {}) during {op}: {error}",
                    self.uuid(),
                    self.bmc()
                ));
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

    pub(super) fn heartbeat(&mut self, callback_url: String) -> Result<(), CoreError> {
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
                // The first authenticated heartbeat pins the ramdisk's address: whoever
                // holds the token later cannot point the deploy at another "ramdisk".
                let pinned = self.s.callback_url.as_deref().filter(|p| !p.is_empty());
                match pinned {
                    Some(p) if !callback_url.is_empty() && callback_url != p => {
                        return Err(CoreError::invalid(
                            "callback_url",
                            format!(
                                "node {} already heartbeats from another address; a changed call-back URL is refused while it deploys",
                                self.uuid()
                            ),
                        ));
                    }
                    None if !callback_url.is_empty() => self.s.callback_url = Some(callback_url),
                    _ => {}
                }
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

    pub(super) fn timeout(&mut self, at: i64) {
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
                let share = self.s.agent.as_ref().map_or("?", AgentId::as_str);
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
            (P::Inspecting, _) => {
                self.cancel_job();
                self.settle();
                self.set_state(P::InspectFailed, None);
                self.s.last_error = Some(format!(
                    "Failed to inspect hardware of node {uuid} (BMC {bmc}): timeout reached after {secs} s during {op}"
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
                if let Some(action) = self.s.target_power_state.take() {
                    self.s.last_error = Some(format!(
                        "Failed to set the power state of node {uuid} (BMC {bmc}) to \"{}\": timeout reached after {secs} s",
                        action.ironic_name()
                    ));
                }
                self.cancel_job();
                self.s.step = DeployStep::None;
                self.s.progress.clear();
            }
        }
    }

    pub(super) fn agent_lost(&mut self, agent: &AgentId) {
        if self.s.agent.as_ref() != Some(agent) {
            return;
        }
        self.s.agent = None;
        match self.s.provision_state {
            P::Deploying | P::WaitCallback => {
                // Safe point: start over with PrepareRamdisk (and a fresh token) elsewhere.
                self.cancel_job();
                self.s.agent_token = None;
                self.s.callback_url = None;
                self.set_state(P::Deploying, Some(P::Active));
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(true);
                self.s.progress = format!("share agent {agent} lost; waiting for a share slot");
            }
            P::Verifying | P::Deleting | P::Cleaning | P::Inspecting => {
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(false);
                self.s.progress = format!("share agent {agent} lost; waiting for a share agent");
            }
            _ => {
                if self.s.job.is_some() || self.s.step == DeployStep::Queued {
                    self.cancel_job();
                    self.s.target_power_state = None;
                    self.s.step = DeployStep::None;
                    self.s.progress.clear();
                    self.actions.push(Action::ReleaseSlot);
                }
            }
        }
    }

    pub(super) fn agent_drained(&mut self) {
        match self.s.step {
            // Nothing under way: free to move.
            DeployStep::None => self.s.agent = None,
            // Not admitted yet: place it again.
            DeployStep::Queued => {
                self.s.agent = None;
                let needs_slot = self.s.provision_state == P::Deploying;
                self.actions.push(Action::ReleaseSlot);
                self.enqueue(needs_slot);
            }
            // Running work finishes where it is.
            _ => {}
        }
    }
}

impl Machine<'_> {
    /// Records a power state read from the BMC, stamping the time it changed.
    fn record_power(&mut self, p: PowerState) {
        if self.s.power_state != Some(p) {
            self.s.power_state = Some(p);
            self.s.power_updated_at_ms = self.now;
        }
    }

    /// The end of a power job: the target is reached (or not: `last_error`).
    fn power_finished(&mut self, r: &JobResult) {
        let Some(action) = self.s.target_power_state.take() else {
            return;
        };
        if r.ok {
            if self
                .s
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("Failed to set the power state"))
            {
                self.s.last_error = None;
            }
        } else {
            let error = r
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the agent reported a failure without details".to_string());
            self.s.last_error = Some(format!(
                "Failed to set the power state of node {} (BMC {}) to \"{}\": {error}",
                self.uuid(),
                self.bmc(),
                action.ironic_name()
            ));
        }
    }

    /// True when no operation, job or queue slot is under way.
    fn idle(&self) -> bool {
        self.s.job.is_none()
            && self.s.step == DeployStep::None
            && !self.s.provision_state.is_transient()
    }

    /// An operator power action: refused while other work is under way (as Ironic
    /// refuses a locked node); otherwise persisted as the target, then sent.
    pub(super) fn power(&mut self, action: PowerAction) -> Result<(), CoreError> {
        let refuse = |m: &Self, reason: String| CoreError::PowerRefused {
            action: action.ironic_name(),
            node: m.uuid(),
            bmc: m.bmc().to_string(),
            reason,
        };
        if !PowerAction::VERBS.contains(&action) {
            return Err(refuse(self, "not an operator power action".to_string()));
        }
        if !self.idle() {
            let what = if self.s.target_power_state.is_some() {
                format!(
                    "the power action \"{}\" is still running",
                    self.s
                        .target_power_state
                        .map_or("", PowerAction::ironic_name)
                )
            } else {
                format!(
                    "it is in state \"{}\" with work under way ({})",
                    self.s.provision_state,
                    if self.s.progress.is_empty() {
                        "a job"
                    } else {
                        &self.s.progress
                    }
                )
            };
            return Err(refuse(self, format!("{what}; try again when it is done")));
        }
        self.s.target_power_state = Some(action);
        if self.s.agent.is_some() {
            self.issue(JobKind::Power, 1, DeployStep::Power);
            self.s.progress = format!(
                "{} on share {}",
                action.ironic_name(),
                self.s.agent.as_ref().map_or("?", AgentId::as_str)
            );
        } else {
            // Not placed yet: placement and admission first, then the job.
            self.enqueue(false);
        }
        Ok(())
    }

    /// The sync read the power state. Report only (Ironic's default): record the
    /// change. With `force_power_state_during_sync`, an idle node found in another
    /// state than recorded is powered back.
    pub(super) fn power_observed(&mut self, p: PowerState) {
        let before = self.s.power_state;
        if before == Some(p) {
            return;
        }
        match before {
            Some(want)
                if self.cfg.force_power_state_during_sync
                    && self.idle()
                    && self.s.agent.is_some() =>
            {
                let action = match want {
                    PowerState::On => PowerAction::On,
                    PowerState::Off => PowerAction::Off,
                };
                self.s.target_power_state = Some(action);
                self.issue(JobKind::Power, 1, DeployStep::Power);
                self.s.progress = format!(
                    "power-state sync found \"{p}\", recorded \"{want}\": forcing {}",
                    action.ironic_name()
                );
            }
            _ => self.record_power(p),
        }
    }
}
