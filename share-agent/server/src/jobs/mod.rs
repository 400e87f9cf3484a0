//! Jobs sent by the coordinator over the `Session` stream.
//!
//! - `ctx`: [`JobCtx`], the per-job context (BMC client, progress, errors).
//! - `prepare`: prepare-ramdisk (deploy ISO, parameter image, media, boot).
//! - `deploy`: write-image (the ramdisk conversation).
//! - `configdrive`: the write-image job's config drive (pass through, build, or publish).
//! - `instance`: prepare-instance and clean-up.
//! - `netboot`: prepare-instance's boot ISO for a netbooted partition image.
//! - this file: dispatch, power actions, BMC info.
//!
//! Invariants: a job id runs at most once per process (a repeat gets the
//! recorded result, or attaches to the running job); one job at a time per
//! node; every failure is a FAILED update whose text names the node, the BMC
//! and the operation; a panicking job becomes a FAILED update, never a stuck one.

pub mod configdrive;
pub mod ctx;
pub mod deploy;
pub mod inspect;
pub mod instance;
pub mod netboot;
pub mod prepare;

use std::sync::Arc;

use irmc::{PowerAction, PowerState};
use vmedia_proto::v1 as pb;

pub use ctx::{JobCtx, bmc_config, check_node_name};

use crate::error::AgentError;
use crate::registry::Admission;
use crate::state::Agent;

/// Accepts a job from the coordinator.
pub fn submit(agent: &Arc<Agent>, job: pb::Job) {
    if job.job_id.is_empty() {
        tracing::warn!(node = %job.node_uuid, "job without job_id ignored");
        return;
    }
    match agent.jobs.admit(&job.job_id, &job.node_uuid) {
        Admission::Known(update) => {
            // Idempotency: replay what we know; never run the work twice.
            tracing::info!(job = %job.job_id, node = %job.node_uuid, "repeated job id: replaying its latest state");
            let agent = agent.clone();
            tokio::spawn(async move { agent.sink.send(update).await });
        }
        Admission::Run => {
            // Queue position is taken here, synchronously, so a node's jobs
            // run in the order the coordinator sent them.
            let turn = agent.jobs.enqueue(&job.node_uuid, &job.job_id);
            let agent = agent.clone();
            tokio::spawn(run(agent, job, turn));
        }
    }
}

/// Cancels a running job (its node lock is released when the task ends).
pub async fn cancel(agent: &Arc<Agent>, job_id: &str) {
    if let Some(node) = agent.jobs.cancel(job_id) {
        tracing::info!(job = %job_id, node = %node, "job cancelled by the coordinator");
    }
}

fn kind_name(kind: &Option<pb::job::Kind>) -> &'static str {
    match kind {
        Some(pb::job::Kind::PrepareRamdisk(_)) => "prepare-ramdisk",
        Some(pb::job::Kind::WriteImage(_)) => "write-image",
        Some(pb::job::Kind::PrepareInstance(_)) => "prepare-instance",
        Some(pb::job::Kind::CleanUp(_)) => "clean-up",
        Some(pb::job::Kind::Power(_)) => "power",
        Some(pb::job::Kind::BmcInfo(_)) => "bmc-info",
        Some(pb::job::Kind::Inspect(_)) => "inspect",
        None => "unknown",
    }
}

async fn run(
    agent: Arc<Agent>,
    job: pb::Job,
    (previous, done): (
        Option<tokio::sync::oneshot::Receiver<()>>,
        tokio::sync::oneshot::Sender<()>,
    ),
) {
    let job_id = job.job_id.clone();
    let node = job.node_uuid.clone();
    let bmc = job
        .bmc
        .as_ref()
        .map(|b| b.address.clone())
        .unwrap_or_default();
    let kind = kind_name(&job.kind);

    let agent2 = agent.clone();
    if let Some(previous) = previous {
        // Ok or Err: either way the previous job of this node is over.
        let _ = previous.await;
    }

    // The work runs in its own task so a panic or a cancel turns into a
    // FAILED update here instead of a job that stays RUNNING forever.
    let cancelled_early = agent.jobs.is_cancelled(&job_id);
    let work = tokio::spawn(async move {
        if cancelled_early {
            // Never started: park until the abort below lands.
            std::future::pending::<()>().await;
        }
        execute(agent2, job).await
    });
    // (Aborted at once when the coordinator cancelled it while it queued.)
    let _ = agent.jobs.set_abort(&job_id, work.abort_handle());
    let update = match work.await {
        Ok(u) => u,
        Err(e) => {
            let why = if e.is_cancelled() {
                "cancelled by the coordinator".to_string()
            } else {
                "internal error (the job panicked)".to_string()
            };
            pb::JobUpdate {
                job_id: job_id.clone(),
                node_uuid: node.clone(),
                state: pb::JobState::Failed as i32,
                progress: format!("{kind} failed"),
                error: format!("node {node}: BMC {bmc}: {kind} failed: {why}"),
                output: None,
                retryable: e.is_cancelled(),
            }
        }
    };
    if update.state == pb::JobState::Failed as i32 {
        tracing::warn!(job = %job_id, node = %node, error = %update.error, "{kind} failed");
    } else {
        tracing::info!(job = %job_id, node = %node, "{kind} succeeded");
    }
    // The result goes out before the next job of the node starts, so the
    // coordinator sees a node's jobs end in the order they ran.
    if agent.jobs.record(&update) {
        agent.sink.send(update).await;
    }
    agent.jobs.dequeue(&node, &job_id);
    drop(done);
}

async fn execute(agent: Arc<Agent>, job: pb::Job) -> pb::JobUpdate {
    let kind = kind_name(&job.kind);
    let mut ctx = JobCtx::new(agent, &job);
    let result = match check_node_name(&job.node_uuid) {
        Err(e) => Err(e),
        Ok(()) => {
            ctx.progress(&format!("{kind} started")).await;
            match &job.kind {
                Some(pb::job::Kind::PrepareRamdisk(p)) => {
                    prepare::prepare_ramdisk(&mut ctx, p).await
                }
                Some(pb::job::Kind::WriteImage(w)) => deploy::write_image(&mut ctx, w).await,
                Some(pb::job::Kind::PrepareInstance(p)) => {
                    instance::prepare_instance(&mut ctx, p).await
                }
                Some(pb::job::Kind::CleanUp(c)) => instance::clean_up(&mut ctx, c).await,
                Some(pb::job::Kind::Power(p)) => power(&mut ctx, p).await,
                Some(pb::job::Kind::BmcInfo(_)) => bmc_info(&mut ctx).await,
                Some(pb::job::Kind::Inspect(_)) => inspect::inspect(&mut ctx).await,
                None => Err(ctx.invalid("kind", "no job kind set")),
            }
        }
    };
    let output = Some(ctx.out_with_requests());
    match result {
        Ok(()) => pb::JobUpdate {
            job_id: ctx.job_id.clone(),
            node_uuid: ctx.node.clone(),
            state: pb::JobState::Succeeded as i32,
            progress: format!("{kind} done"),
            error: String::new(),
            output,
            retryable: false,
        },
        Err(e) => pb::JobUpdate {
            job_id: ctx.job_id.clone(),
            node_uuid: ctx.node.clone(),
            state: pb::JobState::Failed as i32,
            progress: format!("{kind} failed"),
            retryable: e.is_retryable(),
            error: e.to_string(),
            output,
        },
    }
}

/// The power-state sync's read of one node: not a job (no id, nothing recorded, no
/// per-node queue: a read does not disturb a running job), answered with a
/// `PowerReport`. The coordinator paces these within its BMC budget.
pub fn power_query(agent: &Arc<Agent>, q: pb::PowerQuery) {
    let agent = agent.clone();
    tokio::spawn(async move {
        let job = pb::Job {
            job_id: format!("power-sync-{}", q.node_uuid),
            node_uuid: q.node_uuid.clone(),
            bmc: q.bmc,
            kind: None,
        };
        let mut ctx = JobCtx::new(agent.clone(), &job);
        let read = match check_node_name(&q.node_uuid) {
            Err(e) => Err(e),
            Ok(()) => match ctx.client() {
                Ok(client) => ctx.bmc("get_power_state", client.power_state()).await,
                Err(e) => Err(e),
            },
        };
        let bmc_requests = ctx.out_with_requests().bmc_requests;
        let report = match read {
            Ok(s) => pb::PowerReport {
                node_uuid: q.node_uuid,
                power_state: power_text(s).to_string(),
                error: String::new(),
                bmc_requests,
            },
            Err(e) => pb::PowerReport {
                node_uuid: q.node_uuid,
                power_state: String::new(),
                error: e.to_string(),
                bmc_requests,
            },
        };
        agent.sink.send_power_report(report);
    });
}

/// Text for `JobOutput.power_state` (Ironic's words).
pub fn power_text(s: PowerState) -> &'static str {
    match s {
        PowerState::On | PowerState::PoweringOn => "power on",
        PowerState::Off | PowerState::PoweringOff => "power off",
    }
}

async fn power(ctx: &mut JobCtx, p: &pb::PowerAction) -> Result<(), AgentError> {
    let client = ctx.client()?;
    let action = match p.action.trim().to_ascii_lowercase().as_str() {
        "on" | "power on" => Some(PowerAction::On),
        "off" | "power off" => Some(PowerAction::Off),
        "reset" => Some(PowerAction::Reset),
        "cycle" => Some(PowerAction::Cycle),
        "soft-off" | "soft power off" => Some(PowerAction::SoftOff),
        "soft-reboot" | "soft rebooting" => Some(PowerAction::SoftReboot),
        "nmi" | "inject nmi" => Some(PowerAction::Nmi),
        // Ironic's reboot: reset a running node, power on a stopped one.
        "reboot" | "rebooting" => None,
        "status" => {
            let s = ctx.bmc("get_power_state", client.power_state()).await?;
            ctx.out.power_state = power_text(s).to_string();
            return Ok(());
        }
        other => {
            return Err(ctx.invalid(
                "power.action",
                format!("{other:?} is not one of on, off, reboot, reset, cycle, soft-off, soft-reboot, nmi, status"),
            ));
        }
    };
    let action = match action {
        Some(a) => a,
        None => {
            let s = ctx.bmc("get_power_state", client.power_state()).await?;
            if matches!(s, PowerState::On | PowerState::PoweringOn) {
                PowerAction::Reset
            } else {
                PowerAction::On
            }
        }
    };
    ctx.progress(&format!("power action {action:?}")).await;
    ctx.bmc("set_power_state", client.power(action)).await?;
    let s = ctx.bmc("get_power_state", client.power_state()).await?;
    ctx.out.power_state = power_text(s).to_string();
    Ok(())
}

async fn bmc_info(ctx: &mut JobCtx) -> Result<(), AgentError> {
    ctx.validate_bmc().await?;
    let client = ctx.client()?;
    let s = ctx.bmc("get_power_state", client.power_state()).await?;
    ctx.out.power_state = power_text(s).to_string();
    Ok(())
}
