//! Power actions, the power-state sync and out-of-band inspection, as table rows and a
//! few targeted checks.

use coordinator_core::{Inventory, PowerAction, merge_capabilities, merge_inventory};

use super::*;

fn inspected() -> Event {
    let mut properties = std::collections::BTreeMap::new();
    properties.insert("cpus".to_string(), "16".to_string());
    Event::JobFinished {
        job_id: JOB,
        result: JobResult {
            ok: true,
            output: JobOutputs {
                inventory: Some(Inventory {
                    properties,
                    macs: vec!["52:54:00:00:00:02".into()],
                }),
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

fn powering(action: PowerAction) -> NodeStatus {
    let mut s = st(P::Manageable, S::Power, Some(K::Power));
    s.target_power_state = Some(action);
    s
}

fn table() -> Vec<Row> {
    let force = MachineConfig {
        force_power_state_during_sync: true,
        ..Default::default()
    };
    let off_recorded_on = {
        let mut s = st(P::Active, S::None, None);
        s.power_state = Some(PowerState::On);
        s
    };
    vec![
        row(
            "inspect",
            st(P::Manageable, S::None, None),
            Event::Verb(Verb::Inspect),
            P::Inspecting,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "inspect again after a failure",
            st(P::InspectFailed, S::None, None),
            Event::Verb(Verb::Inspect),
            P::Inspecting,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "inspect admitted",
            st(P::Inspecting, S::Queued, None),
            admitted(),
            P::Inspecting,
            S::Inspect,
            &["send(inspect hardware)", "emit"],
        ),
        row(
            "inspect ok",
            st(P::Inspecting, S::Inspect, Some(K::Inspect)),
            inspected(),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "inspect failed",
            st(P::Inspecting, S::Inspect, Some(K::Inspect)),
            fail(false),
            P::InspectFailed,
            S::None,
            &["emit"],
        ),
        row(
            "inspect timeout",
            st(P::Inspecting, S::Inspect, Some(K::Inspect)),
            Event::Timeout { now_ms: NOW + 10 },
            P::InspectFailed,
            S::None,
            &["cancel", "emit"],
        ),
        row(
            "manage after inspect failed",
            st(P::InspectFailed, S::None, None),
            Event::Verb(Verb::Manage),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "power off an active node",
            st(P::Active, S::None, None),
            Event::Power(PowerAction::Off),
            P::Active,
            S::Power,
            &["send(power action)", "emit"],
        ),
        row(
            "power on a node not placed yet",
            {
                let mut s = st(P::Enroll, S::None, None);
                s.agent = None;
                s
            },
            Event::Power(PowerAction::On),
            P::Enroll,
            S::Queued,
            &["enqueue", "emit"],
        ),
        row(
            "power admitted",
            {
                let mut s = st(P::Enroll, S::Queued, None);
                s.target_power_state = Some(PowerAction::On);
                s
            },
            admitted(),
            P::Enroll,
            S::Power,
            &["send(power action)", "emit"],
        ),
        row(
            "power done",
            powering(PowerAction::On),
            ok(),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "power failed",
            powering(PowerAction::Off),
            fail(false),
            P::Manageable,
            S::None,
            &["emit"],
        ),
        row(
            "power timeout",
            powering(PowerAction::Off),
            Event::Timeout { now_ms: NOW + 10 },
            P::Manageable,
            S::None,
            &["cancel", "emit"],
        ),
        row(
            "sync: report only",
            off_recorded_on.clone(),
            Event::PowerObserved(PowerState::Off),
            P::Active,
            S::None,
            &["emit"],
        ),
        row(
            "sync: unchanged",
            off_recorded_on.clone(),
            Event::PowerObserved(PowerState::On),
            P::Active,
            S::None,
            &[],
        ),
        Row {
            cfg: force,
            ..row(
                "sync: forced back",
                off_recorded_on,
                Event::PowerObserved(PowerState::Off),
                P::Active,
                S::Power,
                &["send(power action)", "emit"],
            )
        },
    ]
}

#[test]
fn power_and_inspect_table() {
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

#[test]
fn power_job_carries_the_action_and_records_the_result() {
    let s = st(P::Active, S::None, None);
    let t = step(
        &s,
        &spec(),
        Event::Power(PowerAction::SoftReboot),
        NOW,
        &MachineConfig::default(),
    )
    .unwrap();
    assert_eq!(t.status.target_power_state, Some(PowerAction::SoftReboot));
    let Some(Action::SendJob { spec: job, intent }) = t.actions.first() else {
        panic!("no job: {:?}", t.actions)
    };
    assert_eq!(
        *job,
        JobSpec::Power {
            action: PowerAction::SoftReboot
        }
    );
    // The result: target cleared, state and its time recorded.
    let done = Event::JobFinished {
        job_id: intent.job_id,
        result: JobResult {
            ok: true,
            output: JobOutputs {
                power_state: Some(PowerState::On),
                ..Default::default()
            },
            ..Default::default()
        },
    };
    let t2 = step(&t.status, &spec(), done, NOW + 5, &MachineConfig::default()).unwrap();
    assert_eq!(t2.status.target_power_state, None);
    assert_eq!(t2.status.power_state, Some(PowerState::On));
    assert_eq!(t2.status.power_updated_at_ms, NOW + 5);
    assert!(t2.status.last_error.is_none());
    // A failure names the node, the BMC and Ironic's target.
    let t = step(
        &s,
        &spec(),
        Event::Power(PowerAction::Off),
        NOW,
        &MachineConfig::default(),
    )
    .unwrap();
    let job_id = t.status.job.unwrap().job_id;
    let failed = Event::JobFinished {
        job_id,
        result: JobResult {
            ok: false,
            error: Some("iRMC said no".into()),
            ..Default::default()
        },
    };
    let t3 = step(&t.status, &spec(), failed, NOW, &MachineConfig::default()).unwrap();
    let e = t3.status.last_error.unwrap();
    assert!(
        e.contains(&NODE.to_string())
            && e.contains("10.0.0.9")
            && e.contains("\"power off\"")
            && e.contains("iRMC said no"),
        "{e}"
    );
}

#[test]
fn power_refused_while_work_is_under_way() {
    for s in [
        st(P::Deploying, S::PrepareRamdisk, Some(K::PrepareRamdisk)),
        st(P::WaitCallback, S::WaitCallback, None),
        powering(PowerAction::On),
        st(P::Inspecting, S::Queued, None),
    ] {
        let e = step(
            &s,
            &spec(),
            Event::Power(PowerAction::Off),
            NOW,
            &MachineConfig::default(),
        )
        .expect_err("busy node");
        assert!(matches!(e, CoreError::PowerRefused { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&NODE.to_string()) && text.contains("10.0.0.9"),
            "{text}"
        );
    }
    // Not an operator action.
    assert!(
        step(
            &st(P::Active, S::None, None),
            &spec(),
            Event::Power(PowerAction::Status),
            NOW,
            &MachineConfig::default()
        )
        .is_err()
    );
    // Ironic's names and the CLI's both parse; nothing else does.
    for a in PowerAction::VERBS {
        assert_eq!(PowerAction::parse_verb(a.ironic_name()).unwrap(), a);
        assert_eq!(PowerAction::parse_verb(a.as_str()).unwrap(), a);
    }
    assert!(PowerAction::parse_verb("status").is_err());
    assert!(PowerAction::parse_verb("reset").is_err());
}

#[test]
fn deploy_without_a_mac_is_refused_with_the_inspect_line() {
    let mut no_mac = spec();
    no_mac.macs.clear();
    for (state, verb) in [(P::Available, Verb::Deploy), (P::Active, Verb::Rebuild)] {
        let e = step(
            &st(state, S::None, None),
            &no_mac,
            Event::Verb(verb),
            NOW,
            &MachineConfig::default(),
        )
        .expect_err("no MAC");
        let text = e.to_string();
        assert!(text.contains(&NODE.to_string()), "{text}");
        assert!(
            text.contains("inspect it") && text.contains("add a port"),
            "{text}"
        );
    }
    let node = coordinator_core::Node {
        spec: no_mac,
        status: st(P::Available, S::None, None),
        version: 1,
    };
    let deploy = coordinator_core::validate(&node)
        .into_iter()
        .find(|c| c.interface == "deploy")
        .unwrap();
    assert!(!deploy.result);
    assert!(
        deploy.reason.contains(coordinator_core::NO_MAC_REASON),
        "{}",
        deploy.reason
    );
}

#[test]
fn inventory_merges_as_ironic_does() {
    let mut s = spec();
    s.properties.insert(
        "capabilities".into(),
        "boot_mode:uefi,irmc_firmware_version:1.0".into(),
    );
    s.properties.insert("cpus".into(), "2".into());
    let mut properties = std::collections::BTreeMap::new();
    properties.insert("cpus".into(), "16".into());
    properties.insert(
        "capabilities".into(),
        "irmc_firmware_version:7.65F,irmc_virtual_fd:true".into(),
    );
    merge_inventory(
        &mut s,
        &Inventory {
            properties,
            macs: vec![
                "52-54-00-00-00-01".into(),
                "AA:BB:CC:DD:EE:FF".into(),
                "junk".into(),
            ],
        },
    );
    assert_eq!(s.properties["cpus"], "16");
    assert_eq!(
        s.properties["capabilities"],
        "boot_mode:uefi,irmc_firmware_version:7.65F,irmc_virtual_fd:true"
    );
    assert_eq!(s.macs, ["52:54:00:00:00:01", "aa:bb:cc:dd:ee:ff"]);
    assert_eq!(merge_capabilities("", "a:1"), "a:1");
    assert_eq!(merge_capabilities("a:1,,b", "a:2"), "a:2");
}
