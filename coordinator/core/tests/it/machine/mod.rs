//! Table tests of the provision state machine.

use coordinator_core::{
    Action, AuthMethod, CoreError, DeployStep, Event, JobIntent, JobKind, JobOutputs, JobResult,
    JobSpec, MachineConfig, NodeSpec, NodeStatus, PowerState, ProvisionState as P, Secret,
    TlsVerify, Verb, step,
};
use uuid::Uuid;

const NOW: i64 = 1_000_000;
const NODE: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
const JOB: Uuid = Uuid::from_u128(0xdead);

fn spec() -> NodeSpec {
    let mut s = NodeSpec::new(NODE);
    for (k, v) in [
        ("irmc_address", "10.0.0.9"),
        ("irmc_username", "admin"),
        ("irmc_password", "pw"),
        ("deploy_iso", "deploy.iso"),
    ] {
        s.driver_info.insert(k.into(), v.into());
    }
    s.instance_info
        .insert("image_source".into(), "img.raw".into());
    s.macs.push("52:54:00:00:00:01".into());
    s
}

/// A status in `state`/`step`, placed on agent "a1"; with a job intent of `kind`.
fn st(state: P, step_: DeployStep, kind: Option<JobKind>) -> NodeStatus {
    let mut s = NodeStatus::new(0);
    s.provision_state = state;
    s.step = step_;
    s.agent = Some("a1".into());
    s.job = kind.map(|kind| JobIntent {
        job_id: JOB,
        kind,
        attempt: 1,
    });
    if kind.is_some() {
        s.deadline_ms = Some(NOW + 10);
    }
    if matches!(state, P::Deploying | P::WaitCallback) {
        s.target_provision_state = Some(P::Active);
        if step_ != DeployStep::Queued {
            s.agent_token = Some(Secret::new("tok"));
        }
    }
    if state == P::WaitCallback {
        s.deadline_ms = Some(NOW + 10);
    }
    if matches!(step_, DeployStep::WriteImage | DeployStep::PrepareInstance) {
        s.callback_url = Some("http://127.0.0.1:9999".into());
    }
    s
}

fn ok() -> Event {
    Event::JobFinished {
        job_id: JOB,
        result: JobResult {
            ok: true,
            output: JobOutputs {
                power_state: Some(PowerState::On),
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

fn fail(retryable: bool) -> Event {
    Event::JobFinished {
        job_id: JOB,
        result: JobResult {
            ok: false,
            error: Some("iRMC said no".into()),
            retryable,
            ..Default::default()
        },
    }
}

fn admitted() -> Event {
    Event::Admitted {
        agent_token: Secret::new("fresh-token"),
    }
}

/// Compact names of actions, for table rows.
fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Enqueue { needs_slot: true } => "enqueue(slot)".to_string(),
            Action::Enqueue { needs_slot: false } => "enqueue".to_string(),
            Action::SendJob { intent, .. } => format!("send({})", intent.kind.operation()),
            Action::CancelJob { .. } => "cancel".to_string(),
            Action::ReleaseSlot => "release".to_string(),
            Action::Emit => "emit".to_string(),
        })
        .collect()
}

struct Row {
    name: &'static str,
    from: NodeStatus,
    event: Event,
    cfg: MachineConfig,
    state: P,
    step: DeployStep,
    actions: &'static [&'static str],
}

fn row(
    name: &'static str,
    from: NodeStatus,
    event: Event,
    state: P,
    step: DeployStep,
    actions: &'static [&'static str],
) -> Row {
    Row {
        name,
        from,
        event,
        cfg: MachineConfig::default(),
        state,
        step,
        actions,
    }
}

fn clean_cfg() -> MachineConfig {
    MachineConfig {
        automated_clean: true,
        ..Default::default()
    }
}

use DeployStep as S;
use JobKind as K;

fn table() -> Vec<Row> {
    let queued_deploy = {
        let mut s = st(P::Deploying, S::Queued, None);
        s.resume_state = Some(P::Available);
        s
    };
    let queued_rebuild = {
        let mut s = st(P::Deploying, S::Queued, None);
        s.resume_state = Some(P::Active);
        s
    };
    vec![
        // manage / verify
        row(
            "manage",
            st(P::Enroll, S::None, None),
            Event::Verb(Verb::Manage),
            P::Verifying,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "verify admitted",
            st(P::Verifying, S::Queued, None),
            admitted(),
            P::Verifying,
            S::Verify,
            &["send(read BMC info)", "emit"],
        ),
        row(
            "verify ok",
            st(P::Verifying, S::Verify, Some(K::BmcInfo)),
            ok(),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "verify failed",
            st(P::Verifying, S::Verify, Some(K::BmcInfo)),
            fail(false),
            P::Enroll,
            S::None,
            &["emit"],
        ),
        row(
            "verify timeout",
            st(P::Verifying, S::Verify, Some(K::BmcInfo)),
            Event::Timeout { now_ms: NOW + 10 },
            P::Enroll,
            S::None,
            &["cancel", "emit"],
        ),
        row(
            "manage available",
            st(P::Available, S::None, None),
            Event::Verb(Verb::Manage),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "manage clean failed",
            st(P::CleanFailed, S::None, None),
            Event::Verb(Verb::Manage),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        // provide / clean
        row(
            "provide",
            st(P::Manageable, S::None, None),
            Event::Verb(Verb::Provide),
            P::Available,
            S::None,
            &["emit"],
        ),
        Row {
            cfg: clean_cfg(),
            ..row(
                "provide with clean",
                st(P::Manageable, S::None, None),
                Event::Verb(Verb::Provide),
                P::Cleaning,
                S::Queued,
                &["enqueue", "emit"],
            )
        },
        row(
            "clean admitted",
            st(P::Cleaning, S::Queued, None),
            admitted(),
            P::Cleaning,
            S::CleanUp,
            &["send(clean up)", "emit"],
        ),
        row(
            "clean ok",
            st(P::Cleaning, S::CleanUp, Some(K::CleanUp)),
            ok(),
            P::Available,
            S::None,
            &["emit"],
        ),
        row(
            "clean failed",
            st(P::Cleaning, S::CleanUp, Some(K::CleanUp)),
            fail(false),
            P::CleanFailed,
            S::None,
            &["emit"],
        ),
        row(
            "clean timeout",
            st(P::Cleaning, S::CleanUp, Some(K::CleanUp)),
            Event::Timeout { now_ms: NOW + 11 },
            P::CleanFailed,
            S::None,
            &["cancel", "emit"],
        ),
        // deploy
        row(
            "deploy",
            st(P::Available, S::None, None),
            Event::Verb(Verb::Deploy),
            P::Deploying,
            S::Queued,
            &["enqueue(slot)", "emit"],
        ),
        row(
            "deploy again after failure",
            st(P::DeployFailed, S::None, None),
            Event::Verb(Verb::Deploy),
            P::Deploying,
            S::Queued,
            &["enqueue(slot)", "emit"],
        ),
        row(
            "deploy cancels leftover clean-up",
            st(P::DeployFailed, S::CleanUp, Some(K::CleanUp)),
            Event::Verb(Verb::Deploy),
            P::Deploying,
            S::Queued,
            &["cancel", "enqueue(slot)", "emit"],
        ),
        row(
            "rebuild",
            st(P::Active, S::None, None),
            Event::Verb(Verb::Rebuild),
            P::Deploying,
            S::Queued,
            &["enqueue(slot)", "emit"],
        ),
        row(
            "placed",
            st(P::Deploying, S::Queued, None),
            Event::Placed { agent: "a2".into() },
            P::Deploying,
            S::Queued,
            &["emit"],
        ),
        row(
            "placed again, same",
            st(P::Deploying, S::Queued, None),
            Event::Placed { agent: "a1".into() },
            P::Deploying,
            S::Queued,
            &["emit"],
        ),
        row(
            "admitted",
            st(P::Deploying, S::Queued, None),
            admitted(),
            P::Deploying,
            S::PrepareRamdisk,
            &["send(prepare ramdisk)", "emit"],
        ),
        row(
            "ramdisk ready",
            st(P::Deploying, S::PrepareRamdisk, Some(K::PrepareRamdisk)),
            ok(),
            P::WaitCallback,
            S::WaitCallback,
            &["emit"],
        ),
        row(
            "heartbeat",
            st(P::WaitCallback, S::WaitCallback, None),
            Event::Heartbeat {
                callback_url: "http://127.0.0.1:9999".into(),
            },
            P::Deploying,
            S::WriteImage,
            &["send(write image)", "emit"],
        ),
        row(
            "image written",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            ok(),
            P::Deploying,
            S::PrepareInstance,
            &["send(prepare instance)", "emit"],
        ),
        row(
            "instance ready",
            st(P::Deploying, S::PrepareInstance, Some(K::PrepareInstance)),
            ok(),
            P::Active,
            S::None,
            &["release", "emit"],
        ),
        // deploy failures
        row(
            "prepare ramdisk failed",
            st(P::Deploying, S::PrepareRamdisk, Some(K::PrepareRamdisk)),
            fail(false),
            P::DeployFailed,
            S::CleanUp,
            &["release", "send(clean up)", "emit"],
        ),
        row(
            "write image failed",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            fail(false),
            P::DeployFailed,
            S::CleanUp,
            &["release", "send(clean up)", "emit"],
        ),
        row(
            "prepare instance failed",
            st(P::Deploying, S::PrepareInstance, Some(K::PrepareInstance)),
            fail(false),
            P::DeployFailed,
            S::CleanUp,
            &["release", "send(clean up)", "emit"],
        ),
        row(
            "retryable failure retried",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            fail(true),
            P::Deploying,
            S::WriteImage,
            &["send(write image)", "emit"],
        ),
        row(
            "callback timeout",
            st(P::WaitCallback, S::WaitCallback, None),
            Event::Timeout { now_ms: NOW + 10 },
            P::DeployFailed,
            S::CleanUp,
            &["release", "send(clean up)", "emit"],
        ),
        row(
            "callback not yet due",
            st(P::WaitCallback, S::WaitCallback, None),
            Event::Timeout { now_ms: NOW + 9 },
            P::WaitCallback,
            S::WaitCallback,
            &[],
        ),
        row(
            "job timeout",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            Event::Timeout { now_ms: NOW + 10 },
            P::DeployFailed,
            S::CleanUp,
            &["cancel", "release", "send(clean up)", "emit"],
        ),
        row(
            "best-effort clean-up done",
            st(P::DeployFailed, S::CleanUp, Some(K::CleanUp)),
            ok(),
            P::DeployFailed,
            S::None,
            &["emit"],
        ),
        row(
            "best-effort clean-up failed",
            st(P::DeployFailed, S::CleanUp, Some(K::CleanUp)),
            fail(true),
            P::DeployFailed,
            S::None,
            &["emit"],
        ),
        row(
            "best-effort clean-up timeout",
            st(P::DeployFailed, S::CleanUp, Some(K::CleanUp)),
            Event::Timeout { now_ms: NOW + 10 },
            P::DeployFailed,
            S::None,
            &["cancel", "emit"],
        ),
        row(
            "stale job result",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            Event::JobFinished {
                job_id: Uuid::from_u128(1),
                result: JobResult::default(),
            },
            P::Deploying,
            S::WriteImage,
            &[],
        ),
        // agents lost / drained
        row(
            "agent lost in wait call-back",
            st(P::WaitCallback, S::WaitCallback, None),
            Event::AgentLost { agent: "a1".into() },
            P::Deploying,
            S::Queued,
            &["release", "enqueue(slot)", "emit"],
        ),
        row(
            "agent lost mid job",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            Event::AgentLost { agent: "a1".into() },
            P::Deploying,
            S::Queued,
            &["cancel", "release", "enqueue(slot)", "emit"],
        ),
        row(
            "agent lost while queued",
            st(P::Deploying, S::Queued, None),
            Event::AgentLost { agent: "a1".into() },
            P::Deploying,
            S::Queued,
            &["release", "enqueue(slot)", "emit"],
        ),
        row(
            "agent lost while verifying",
            st(P::Verifying, S::Verify, Some(K::BmcInfo)),
            Event::AgentLost { agent: "a1".into() },
            P::Verifying,
            S::Queued,
            &["release", "cancel", "enqueue", "emit"],
        ),
        row(
            "other agent lost",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            Event::AgentLost { agent: "a9".into() },
            P::Deploying,
            S::WriteImage,
            &[],
        ),
        row(
            "agent lost, idle node",
            st(P::Active, S::None, None),
            Event::AgentLost { agent: "a1".into() },
            P::Active,
            S::None,
            &["emit"],
        ),
        row(
            "drained, idle node",
            st(P::Active, S::None, None),
            Event::AgentDrained,
            P::Active,
            S::None,
            &["emit"],
        ),
        row(
            "drained, queued node",
            st(P::Deploying, S::Queued, None),
            Event::AgentDrained,
            P::Deploying,
            S::Queued,
            &["release", "enqueue(slot)", "emit"],
        ),
        row(
            "drained, running job",
            st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
            Event::AgentDrained,
            P::Deploying,
            S::WriteImage,
            &[],
        ),
        // undeploy
        row(
            "undeploy",
            st(P::Active, S::None, None),
            Event::Verb(Verb::Undeploy),
            P::Deleting,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "undeploy failed deploy",
            st(P::DeployFailed, S::None, None),
            Event::Verb(Verb::Undeploy),
            P::Deleting,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "undeploy error",
            st(P::Error, S::None, None),
            Event::Verb(Verb::Undeploy),
            P::Deleting,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "delete admitted",
            st(P::Deleting, S::Queued, None),
            admitted(),
            P::Deleting,
            S::CleanUp,
            &["send(clean up)", "emit"],
        ),
        row(
            "deleted",
            st(P::Deleting, S::CleanUp, Some(K::CleanUp)),
            ok(),
            P::Available,
            S::None,
            &["emit"],
        ),
        Row {
            cfg: clean_cfg(),
            ..row(
                "deleted then clean",
                st(P::Deleting, S::CleanUp, Some(K::CleanUp)),
                ok(),
                P::Cleaning,
                S::CleanUp,
                &["send(clean up)", "emit"],
            )
        },
        row(
            "delete failed",
            st(P::Deleting, S::CleanUp, Some(K::CleanUp)),
            fail(false),
            P::Error,
            S::None,
            &["emit"],
        ),
        // abort
        row(
            "abort wait call-back",
            st(P::WaitCallback, S::WaitCallback, None),
            Event::Verb(Verb::Abort),
            P::DeployFailed,
            S::CleanUp,
            &["release", "send(clean up)", "emit"],
        ),
        row(
            "abort queued deploy",
            queued_deploy,
            Event::Verb(Verb::Abort),
            P::Available,
            S::None,
            &["release", "emit"],
        ),
        row(
            "abort queued rebuild",
            queued_rebuild,
            Event::Verb(Verb::Abort),
            P::Active,
            S::None,
            &["release", "emit"],
        ),
        row(
            "abort verify",
            st(P::Verifying, S::Verify, Some(K::BmcInfo)),
            Event::Verb(Verb::Abort),
            P::Enroll,
            S::None,
            &["cancel", "emit"],
        ),
        // admission races
        row(
            "admitted after abort",
            st(P::Available, S::None, None),
            admitted(),
            P::Available,
            S::None,
            &["release"],
        ),
    ]
}

#[test]
fn transition_table() {
    for r in table() {
        let before = r.from.clone();
        let t = step(&r.from, &spec(), r.event.clone(), NOW, &r.cfg)
            .unwrap_or_else(|e| panic!("{}: unexpected error {e}", r.name));
        assert_eq!(t.status.provision_state, r.state, "{}: state", r.name);
        assert_eq!(t.status.step, r.step, "{}: step", r.name);
        assert_eq!(names(&t.actions), r.actions, "{}: actions", r.name);
        check_invariants(r.name, &before, &t.status, &t.actions);
    }
}

/// Invariants, every verb in every state, the deploy flow end to end, and random walks.
mod flows;

use flows::check_invariants;
mod power_inspect;
