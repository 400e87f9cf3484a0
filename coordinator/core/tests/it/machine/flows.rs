//! The state machine beyond the transition table: invariants every step keeps, every
//! verb in every state, whole flows, and random walks over arbitrary event orders.

use super::*;

/// Properties every transition keeps.
pub(super) fn check_invariants(
    name: &str,
    before: &NodeStatus,
    after: &NodeStatus,
    actions: &[Action],
) {
    let sends: Vec<&JobIntent> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SendJob { intent, .. } => Some(intent),
            _ => None,
        })
        .collect();
    assert!(sends.len() <= 1, "{name}: at most one job per step");
    if let Some(intent) = sends.first() {
        // Intent persisted before it is sent.
        assert_eq!(
            after.job.as_ref(),
            Some(*intent),
            "{name}: intent in status"
        );
        assert_ne!(
            Some(intent.job_id),
            before.job.map(|j| j.job_id),
            "{name}: fresh job id"
        );
        assert!(
            after.deadline_ms.is_some(),
            "{name}: a running job has a deadline"
        );
        assert!(after.agent.is_some(), "{name}: a job needs an agent");
    }
    if after.provision_state != before.provision_state {
        assert_eq!(
            after.provision_updated_at_ms, NOW,
            "{name}: provision_updated_at"
        );
    }
    if after != before {
        assert_eq!(after.updated_at_ms, NOW, "{name}: updated_at");
        assert!(actions.contains(&Action::Emit), "{name}: change is emitted");
    }
    if !after.provision_state.is_transient() && after.provision_state != P::DeployFailed {
        // Only a power action runs outside an operation.
        assert!(
            after.job.is_none_or(|j| j.kind == K::Power),
            "{name}: settled node has no job"
        );
    }
    if matches!(
        after.provision_state,
        P::Active | P::Available | P::Manageable
    ) {
        assert!(
            after.agent_token.is_none(),
            "{name}: token dropped after the operation"
        );
        assert!(
            after.deadline_ms.is_none() || after.job.is_some_and(|j| j.kind == K::Power),
            "{name}: no deadline when settled (but a power action's)"
        );
    }
}

/// The states a node can be found in, each with a representative status.
fn every_state() -> Vec<NodeStatus> {
    vec![
        st(P::Enroll, S::None, None),
        st(P::Verifying, S::Verify, Some(K::BmcInfo)),
        st(P::Manageable, S::None, None),
        st(P::Available, S::None, None),
        st(P::Deploying, S::PrepareRamdisk, Some(K::PrepareRamdisk)),
        st(P::WaitCallback, S::WaitCallback, None),
        st(P::Active, S::None, None),
        st(P::DeployFailed, S::None, None),
        st(P::Deleting, S::CleanUp, Some(K::CleanUp)),
        st(P::Cleaning, S::CleanUp, Some(K::CleanUp)),
        st(P::CleanFailed, S::None, None),
        st(P::Error, S::None, None),
        st(P::Inspecting, S::Inspect, Some(K::Inspect)),
        st(P::InspectFailed, S::None, None),
    ]
}

#[test]
fn every_verb_in_every_state() {
    let allowed: &[(Verb, &[P])] = &[
        (
            Verb::Manage,
            &[P::Enroll, P::Available, P::CleanFailed, P::InspectFailed],
        ),
        (Verb::Inspect, &[P::Manageable, P::InspectFailed]),
        (Verb::Provide, &[P::Manageable]),
        (Verb::Deploy, &[P::Available, P::DeployFailed]),
        (Verb::Rebuild, &[P::Active, P::DeployFailed]),
        (Verb::Undeploy, &[P::Active, P::DeployFailed, P::Error]),
        (Verb::Abort, &[P::WaitCallback, P::Verifying]),
    ];
    let states = every_state();
    assert_eq!(states.len(), P::ALL.len(), "every state covered");
    for (verb, ok_in) in allowed {
        for from in &states {
            let state = from.provision_state;
            let got = step(
                from,
                &spec(),
                Event::Verb(*verb),
                NOW,
                &MachineConfig::default(),
            );
            if ok_in.contains(&state) {
                let t = got.unwrap_or_else(|e| panic!("{verb} in {state}: {e}"));
                assert_ne!(t.status.provision_state, state, "{verb} in {state} moves");
                check_invariants(verb.as_str(), from, &t.status, &t.actions);
            } else {
                let e = got.expect_err(&format!("{verb} must be refused in {state}"));
                assert_eq!(
                    e.to_string(),
                    format!(
                        "The requested action \"{verb}\" can not be performed on node \"{NODE}\" while it is in state \"{state}\"."
                    )
                );
            }
        }
    }
}

#[test]
fn ironic_refusal_message() {
    let e = step(
        &st(P::Active, S::None, None),
        &spec(),
        Event::Verb(Verb::Deploy),
        NOW,
        &MachineConfig::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "The requested action \"deploy\" can not be performed on node \"12345678-9abc-def0-1122-334455667788\" while it is in state \"active\"."
    );
}

#[test]
fn error_texts_name_node_bmc_and_operation() {
    let cfg = MachineConfig::default();
    let t = step(
        &st(P::Deploying, S::WriteImage, Some(K::WriteImage)),
        &spec(),
        fail(false),
        NOW,
        &cfg,
    )
    .unwrap();
    let e = t.status.last_error.unwrap();
    assert_eq!(
        e,
        format!("Deploy failed for node {NODE} (BMC 10.0.0.9) during write image: iRMC said no")
    );
    let t = step(
        &st(P::WaitCallback, S::WaitCallback, None),
        &spec(),
        Event::Timeout { now_ms: NOW + 10 },
        NOW + 10,
        &cfg,
    )
    .unwrap();
    let err = t.status.last_error.unwrap();
    assert!(
        err.starts_with(&format!(
            "Timeout reached while waiting for callback for node {NODE}:"
        )),
        "{err}"
    );
    assert!(err.contains("virtual media"), "{err}");
    let t = step(
        &st(P::Verifying, S::Verify, Some(K::BmcInfo)),
        &spec(),
        fail(false),
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(
        t.status.last_error.unwrap(),
        format!("Failed to verify node {NODE} (BMC 10.0.0.9) during read BMC info: iRMC said no")
    );
}

#[test]
fn unexpected_events_are_errors() {
    let cfg = MachineConfig::default();
    let e = step(
        &st(P::Active, S::None, None),
        &spec(),
        Event::Heartbeat {
            callback_url: "http://x".into(),
        },
        NOW,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            CoreError::UnexpectedEvent {
                state: P::Active,
                ..
            }
        ),
        "{e}"
    );
    let mut queued = st(P::Deploying, S::Queued, None);
    queued.agent = None;
    assert!(
        step(&queued, &spec(), admitted(), NOW, &cfg).is_err(),
        "admission needs a share"
    );
}

/// Drives a whole deploy and checks what the jobs carry.
#[test]
fn full_deploy_flow() {
    let cfg = MachineConfig {
        callback_timeout_ms: 5_000,
        ..Default::default()
    };
    let sp = spec();
    let mut s = st(P::Available, S::None, None);
    s.agent = None;
    let mut now = NOW;
    let mut go = |s: &NodeStatus, e: Event| {
        now += 1;
        step(s, &sp, e, now, &cfg).unwrap()
    };
    let mut ids = Vec::new();
    let job_of = |t: &coordinator_core::Transition| {
        t.actions.iter().find_map(|a| match a {
            Action::SendJob { intent, spec } => Some((*intent, spec.clone())),
            _ => None,
        })
    };
    let t = go(&s, Event::Verb(Verb::Deploy));
    assert_eq!(t.status.progress, "waiting for a share slot");
    assert_eq!(t.status.target_provision_state, Some(P::Active));
    let t = go(
        &t.status,
        Event::Placed {
            agent: "agent-7".into(),
        },
    );
    assert_eq!(t.status.agent.as_deref(), Some("agent-7"));
    let t = go(&t.status, admitted());
    let (intent, job) = job_of(&t).unwrap();
    ids.push(intent.job_id);
    match job {
        JobSpec::PrepareRamdisk {
            deploy_iso,
            agent_token,
            bootif,
            boot_mode,
            ..
        } => {
            assert_eq!(deploy_iso, "deploy.iso");
            assert_eq!(agent_token.expose(), "fresh-token");
            assert_eq!(bootif, "52:54:00:00:00:01");
            assert_eq!(boot_mode, "uefi");
        }
        other => panic!("{other:?}"),
    }
    let done = |id| Event::JobFinished {
        job_id: id,
        result: JobResult {
            ok: true,
            ..Default::default()
        },
    };
    let t = go(&t.status, done(intent.job_id));
    assert_eq!(t.status.provision_state, P::WaitCallback);
    assert_eq!(t.status.deadline_ms, Some(NOW + 4 + 5_000));
    let t = go(
        &t.status,
        Event::Heartbeat {
            callback_url: "http://10.0.0.9:9999".into(),
        },
    );
    let (intent, job) = job_of(&t).unwrap();
    ids.push(intent.job_id);
    match job {
        JobSpec::WriteImage {
            callback_url,
            agent_token,
            image_source,
            image_type,
            ..
        } => {
            assert_eq!(callback_url, "http://10.0.0.9:9999");
            assert_eq!(agent_token.expose(), "fresh-token");
            assert_eq!(image_source, "img.raw");
            assert_eq!(image_type, "whole-disk");
        }
        other => panic!("{other:?}"),
    }
    let t = go(&t.status, done(intent.job_id));
    let (intent, job) = job_of(&t).unwrap();
    ids.push(intent.job_id);
    assert!(matches!(
        job,
        JobSpec::PrepareInstance { power_on: true, .. }
    ));
    let t = go(&t.status, done(intent.job_id));
    assert_eq!(t.status.provision_state, P::Active);
    assert_eq!(t.status.target_provision_state, None);
    assert!(t.status.agent_token.is_none());
    assert!(!t.status.in_flight());
    assert_eq!(t.status.agent.as_deref(), Some("agent-7"), "stays placed");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every job has its own id");
}

#[test]
fn heartbeat_before_ramdisk_result_goes_straight_to_write() {
    let cfg = MachineConfig::default();
    let s = st(P::Deploying, S::PrepareRamdisk, Some(K::PrepareRamdisk));
    let t = step(
        &s,
        &spec(),
        Event::Heartbeat {
            callback_url: "http://cb".into(),
        },
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(t.status.step, S::PrepareRamdisk);
    assert_eq!(t.status.callback_url.as_deref(), Some("http://cb"));
    let t = step(&t.status, &spec(), ok(), NOW, &cfg).unwrap();
    assert_eq!(t.status.step, S::WriteImage);
    assert_eq!(names(&t.actions), ["send(write image)", "emit"]);
}

#[test]
fn retries_stop_at_max_attempts() {
    let cfg = MachineConfig {
        max_attempts: 2,
        ..Default::default()
    };
    let s = st(P::Deploying, S::WriteImage, Some(K::WriteImage));
    let t = step(&s, &spec(), fail(true), NOW, &cfg).unwrap();
    let j = t.status.job.unwrap();
    assert_eq!(j.attempt, 2);
    assert_eq!(t.status.progress, "write image on share a1 (attempt 2)");
    let again = Event::JobFinished {
        job_id: j.job_id,
        result: JobResult {
            ok: false,
            retryable: true,
            error: Some("still down".into()),
            ..Default::default()
        },
    };
    let t = step(&t.status, &spec(), again, NOW, &cfg).unwrap();
    assert_eq!(t.status.provision_state, P::DeployFailed);
    assert!(t.status.last_error.unwrap().ends_with("still down"));
}

#[test]
fn agent_lost_restarts_with_fresh_token_elsewhere() {
    let cfg = MachineConfig::default();
    let s = st(P::WaitCallback, S::WaitCallback, None);
    let t = step(
        &s,
        &spec(),
        Event::AgentLost { agent: "a1".into() },
        NOW,
        &cfg,
    )
    .unwrap();
    assert!(t.status.agent.is_none());
    assert!(t.status.agent_token.is_none());
    assert!(t.status.deadline_ms.is_none());
    let t = step(
        &t.status,
        &spec(),
        Event::Placed { agent: "a2".into() },
        NOW,
        &cfg,
    )
    .unwrap();
    let t = step(
        &t.status,
        &spec(),
        Event::Admitted {
            agent_token: Secret::new("second"),
        },
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(t.status.step, S::PrepareRamdisk);
    assert_eq!(t.status.agent_token.as_ref().unwrap().expose(), "second");
    assert_eq!(t.status.agent.as_deref(), Some("a2"));
}

#[test]
fn job_ids_are_deterministic_and_distinct_per_node() {
    let cfg = MachineConfig::default();
    let s = st(P::Deploying, S::Queued, None);
    let a = step(&s, &spec(), admitted(), NOW, &cfg).unwrap();
    let b = step(&s, &spec(), admitted(), NOW, &cfg).unwrap();
    assert_eq!(a, b, "pure");
    let mut other = spec();
    other.uuid = Uuid::from_u128(2);
    let c = step(&s, &other, admitted(), NOW, &cfg).unwrap();
    assert_ne!(a.status.job.unwrap().job_id, c.status.job.unwrap().job_id);
    // A re-created node (same uuid, new creation time) gets new ids.
    let mut s2 = s.clone();
    s2.created_at_ms += 1;
    let d = step(&s2, &spec(), admitted(), NOW, &cfg).unwrap();
    assert_ne!(a.status.job.unwrap().job_id, d.status.job.unwrap().job_id);
}

#[test]
fn resume_rebuilds_the_same_job() {
    let cfg = MachineConfig::default();
    let s = st(P::Deploying, S::Queued, None);
    let t = step(&s, &spec(), admitted(), NOW, &cfg).unwrap();
    let sent = t
        .actions
        .iter()
        .find_map(|a| match a {
            Action::SendJob { intent, spec } => Some((*intent, spec.clone())),
            _ => None,
        })
        .unwrap();
    let resumed = coordinator_core::resume_job(&t.status, &spec(), &cfg).unwrap();
    assert_eq!(resumed, sent);
    assert!(coordinator_core::resume_job(&st(P::Active, S::None, None), &spec(), &cfg).is_none());
}

#[test]
fn bmc_target_defaults() {
    let b = coordinator_core::bmc_target(&spec()).unwrap();
    assert_eq!(b.address, "10.0.0.9");
    assert_eq!(b.port, 443);
    assert_eq!(b.auth_method, AuthMethod::Basic);
    assert_eq!(b.client_timeout_s, 60);
    assert_eq!(b.verify_ca, TlsVerify::System);
    assert_eq!(b.password.expose(), "pw");
    assert!(!format!("{b:?}").contains("\"pw\""));
    let mut sp = spec();
    sp.driver_info
        .insert("irmc_verify_ca".into(), "False".into());
    sp.driver_info.insert("irmc_port".into(), "80".into());
    let b = coordinator_core::bmc_target(&sp).unwrap();
    assert_eq!((b.port, b.verify_ca), (80, TlsVerify::Insecure));
    sp.driver_info
        .insert("irmc_verify_ca".into(), "/etc/ssl/bmc-ca.pem".into());
    sp.driver_info
        .insert("irmc_auth_method".into(), "digest".into());
    let b = coordinator_core::bmc_target(&sp).unwrap();
    assert_eq!(b.verify_ca, TlsVerify::CaFile("/etc/ssl/bmc-ca.pem".into()));
    assert_eq!(b.auth_method, AuthMethod::Digest);
    sp.driver_info
        .insert("irmc_auth_method".into(), "ntlm".into());
    assert_eq!(
        coordinator_core::bmc_target(&sp).unwrap_err().to_string(),
        "driver_info.irmc_auth_method: must be basic or digest, got \"ntlm\""
    );
    sp.driver_info.remove("irmc_auth_method");
    sp.driver_info.remove("irmc_address");
    assert_eq!(
        coordinator_core::bmc_target(&sp).unwrap_err().to_string(),
        "driver_info.irmc_address: required"
    );
}

#[test]
fn maintenance_blocks_provisioning_but_not_teardown() {
    let cfg = MachineConfig::default();
    let mut sp = spec();
    sp.maintenance = true;
    let e = step(
        &st(P::Available, S::None, None),
        &sp,
        Event::Verb(Verb::Deploy),
        NOW,
        &cfg,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "The requested action \"deploy\" can not be performed on node \"{NODE}\" while it is in maintenance mode."
        )
    );
    let t = step(
        &st(P::Active, S::None, None),
        &sp,
        Event::Verb(Verb::Undeploy),
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(t.status.provision_state, P::Deleting);
}

#[test]
fn token_is_not_serialised_with_the_status() {
    let s = st(P::WaitCallback, S::WaitCallback, None);
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("tok"), "{json}");
    let back: NodeStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back.agent_token, None);
    assert_eq!(back.provision_state, P::WaitCallback);
    // Defaults are omitted: a fresh status is small.
    let fresh = serde_json::to_string(&NodeStatus::new(0)).unwrap();
    assert!(fresh.len() < 120, "{fresh}");
}

#[test]
fn the_agent_is_stored_under_the_share_key() {
    // The stored status format names the agent `share`; renaming the field must not
    // change what is written or what old rows read back as.
    let s = st(P::Available, S::None, None);
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""share":"a1""#), "{json}");
    let back: NodeStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back.agent.as_deref(), Some("a1"));
}

mod random_walks {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;

    /// Events as they could arrive, in any order, including stale and bogus ones.
    fn arb_event() -> impl Strategy<Value = u8> {
        0u8..16
    }

    fn event_for(code: u8, s: &NodeStatus, now: i64) -> Event {
        let current = s.job.map(|j| j.job_id).unwrap_or(JOB);
        match code {
            0 => Event::Verb(Verb::Manage),
            1 => Event::Verb(Verb::Provide),
            2 => Event::Verb(Verb::Deploy),
            3 => Event::Verb(Verb::Undeploy),
            4 => Event::Verb(Verb::Rebuild),
            5 => Event::Verb(Verb::Abort),
            6 => Event::Placed { agent: "a1".into() },
            7 => Event::Admitted {
                agent_token: Secret::new(format!("t{now}")),
            },
            8 | 9 => Event::JobFinished {
                job_id: current,
                result: JobResult {
                    ok: code == 8,
                    error: Some("x".into()),
                    retryable: now % 2 == 0,
                    ..Default::default()
                },
            },
            10 => Event::JobFinished {
                job_id: Uuid::from_u128(now as u128),
                result: JobResult::default(),
            },
            11 => Event::Heartbeat {
                callback_url: "http://127.0.0.1:1".into(),
            },
            12 => Event::Timeout {
                now_ms: now + 4_000_000,
            },
            13 => Event::AgentLost { agent: "a1".into() },
            14 => Event::AgentDrained,
            _ => Event::Timeout { now_ms: now },
        }
    }

    proptest! {
        // Failures are kept next to this file (`<file>.proptest-regressions`): proptest's
        // default looks for a lib.rs/main.rs above the source and would use another path.
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
            ..ProptestConfig::default()
        })]

        /// Any sequence of events keeps the invariants and never panics.
        #[test]
        fn invariants_hold_on_random_walks(codes in prop::collection::vec(arb_event(), 1..60), clean in any::<bool>()) {
            let cfg = MachineConfig { automated_clean: clean, ..Default::default() };
            let sp = spec();
            let mut s = NodeStatus::new(0);
            let mut now = NOW;
            let mut ids = std::collections::HashSet::new();
            for code in codes {
                now += 1;
                let ev = event_for(code, &s, now);
                let Ok(t) = step(&s, &sp, ev, now, &cfg) else { continue };
                for a in &t.actions {
                    if let Action::SendJob { intent, .. } = a {
                        prop_assert_eq!(t.status.job.as_ref(), Some(intent));
                        prop_assert!(ids.insert(intent.job_id), "job id reused");
                        prop_assert!(t.status.agent.is_some());
                    }
                }
                if t.status.job.is_some() {
                    prop_assert!(t.status.deadline_ms.is_some(), "a job always has a deadline");
                }
                if t.status.provision_state == P::WaitCallback {
                    prop_assert!(t.status.agent_token.is_some() && t.status.deadline_ms.is_some());
                }
                if matches!(t.status.step, S::PrepareRamdisk | S::WriteImage | S::PrepareInstance) {
                    prop_assert_eq!(t.status.provision_state, P::Deploying);
                    prop_assert!(t.status.agent_token.is_some());
                }
                if t.status.step == S::Queued {
                    prop_assert!(t.status.provision_state.is_transient());
                    prop_assert!(t.status.job.is_none());
                }
                if t.status.provision_state.is_transient() {
                    prop_assert!(t.status.step != S::None, "{:?} with no step", t.status.provision_state);
                }
                s = t.status;
            }
        }
    }
}

#[test]
fn the_first_heartbeat_pins_the_callback_url() {
    let cfg = MachineConfig::default();
    let hb = |url: &str| Event::Heartbeat {
        callback_url: url.into(),
    };
    let mut s = st(P::Deploying, S::WriteImage, Some(K::WriteImage));
    s.callback_url = Some("http://10.0.0.5:9999".into());
    // The same address, or none: accepted, nothing changes.
    for same in ["http://10.0.0.5:9999", ""] {
        let t = step(&s, &spec(), hb(same), NOW, &cfg).unwrap();
        assert_eq!(
            t.status.callback_url.as_deref(),
            Some("http://10.0.0.5:9999")
        );
    }
    // Another address: refused, and the pinned one stays.
    let e = step(&s, &spec(), hb("http://10.6.6.6:9999"), NOW, &cfg).unwrap_err();
    assert!(
        matches!(e, CoreError::Invalid { ref field, .. } if field == "callback_url"),
        "{e}"
    );
    // Nothing pinned yet (a heartbeat without an address earlier): the first one pins.
    s.callback_url = None;
    let t = step(&s, &spec(), hb("http://10.0.0.7:9999"), NOW, &cfg).unwrap();
    assert_eq!(
        t.status.callback_url.as_deref(),
        Some("http://10.0.0.7:9999")
    );
}

#[test]
fn the_bmc_validation_is_stored_on_the_node_and_shown_by_validate() {
    let cfg = MachineConfig::default();
    let mut node = coordinator_core::Node {
        spec: spec(),
        status: NodeStatus::new(0),
        version: 1,
    };
    // Not verified yet: no "bmc" row.
    assert!(
        coordinator_core::validate(&node)
            .iter()
            .all(|c| c.interface != "bmc")
    );
    let passed = Event::JobFinished {
        job_id: JOB,
        result: JobResult {
            ok: true,
            output: JobOutputs {
                bmc_check: Some("iRMC S5 1.60P: parameter image by scci-hd".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    };
    let t = step(
        &st(P::Verifying, S::Verify, Some(K::BmcInfo)),
        &spec(),
        passed,
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(t.status.provision_state, P::Manageable);
    let c = t.status.bmc_check.clone().unwrap();
    assert!(c.ok);
    assert_eq!(c.at_ms, NOW);
    node.status = t.status;
    let row = coordinator_core::validate(&node)
        .into_iter()
        .find(|c| c.interface == "bmc")
        .unwrap();
    assert!(row.result);
    assert!(row.reason.contains("scci-hd"), "{}", row.reason);

    // A refusal (an S3, no licence) keeps the node in enroll with one line.
    let t = step(
        &st(P::Verifying, S::Verify, Some(K::BmcInfo)),
        &spec(),
        fail(false),
        NOW,
        &cfg,
    )
    .unwrap();
    assert_eq!(t.status.provision_state, P::Enroll);
    node.status = t.status;
    let row = coordinator_core::validate(&node)
        .into_iter()
        .find(|c| c.interface == "bmc")
        .unwrap();
    assert!(!row.result);
    assert_eq!(
        row.reason,
        format!("Failed to verify node {NODE} (BMC 10.0.0.9) during read BMC info: iRMC said no")
    );
    // Stored as JSON like the rest of the status.
    let json = serde_json::to_string(&node.status).unwrap();
    let back: NodeStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back.bmc_check, node.status.bmc_check);
}
