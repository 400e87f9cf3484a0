//! A full share and a hanging BMC fail only the node's job; the agent stays
//! up and serves the next job.
//!
//! "Full" is real free space measured with statvfs on the share's file system
//! against the configured reserve: `min_free_bytes` is set above the free
//! space, so every write needs more than the file system has to give (kernel
//! mounts of a tiny tmpfs or loop device are not available to tests here).

use std::time::Duration;

use crate::common::*;
use vmedia_proto::v1 as pb;

fn prepare(job_id: &str, node: &str, bmc: pb::BmcTarget) -> pb::Job {
    pb::Job {
        job_id: job_id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc),
        kind: Some(pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_iso: "deploy.iso".into(),
            agent_token: "token-abcdefabcdefabcdefabcdefabcdef".into(),
            ..Default::default()
        })),
    }
}

fn info(job_id: &str, node: &str, bmc: pb::BmcTarget) -> pb::Job {
    pb::Job {
        job_id: job_id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc),
        kind: Some(pb::job::Kind::BmcInfo(pb::BmcInfo {})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_share_fails_the_job_not_the_agent() {
    let stub = FakeCoordinator::start().await;
    let mut agent = start_agent(
        &stub,
        AgentOpts {
            // Far above what any test machine has free.
            min_free_bytes: 1 << 60,
            ..Default::default()
        },
    )
    .await;
    stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), b"iso").unwrap();
    let (sim, ca) = start_sim(1, &agent.share, Boots::default(), None).await;
    let node = "full-node-1";
    stub.send(prepare("full-1", node, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let done = stub.final_update("full-1", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Failed as i32);
    let bmc = sim.addresses()[0].ip.to_string();
    assert!(done.error.contains("share full"), "{}", done.error);
    assert!(
        done.error.contains(node) && done.error.contains(&bmc),
        "{}",
        done.error
    );
    assert!(
        done.error.contains("writing the parameter image"),
        "{}",
        done.error
    );
    assert!(done.retryable);
    assert!(
        !agent
            .share
            .join("nodes")
            .join(node)
            .join("params.img")
            .exists()
    );
    // Nothing was attached, the node was not powered on.
    let st = sim.node(0).state();
    assert!(!st.cd.connected && !st.fd.connected);

    // Still alive and serving.
    assert!(agent.child.try_wait().unwrap().is_none());
    stub.send(info("full-2", node, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let ok = stub.final_update("full-2", Duration::from_secs(60)).await;
    assert_eq!(ok.state, pb::JobState::Succeeded as i32, "{}", ok.error);
    assert_eq!(ok.output.unwrap().bmc_model, "iRMC S4");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_bmc_times_out_and_the_next_job_runs() {
    let stub = FakeCoordinator::start().await;
    let mut agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), b"iso").unwrap();
    let (sim, ca) = start_sim(2, &agent.share, Boots::default(), None).await;
    sim.apply_fault(&irmc_sim::fault::parse_spec("node=0,hang").unwrap());

    let started = std::time::Instant::now();
    stub.send(prepare("hang-1", "hang-node", bmc_target(&sim, 0, &ca, 1)))
        .await;
    let done = stub.final_update("hang-1", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Failed as i32);
    let bmc = sim.addresses()[0].ip.to_string();
    assert!(done.error.contains(&bmc), "{}", done.error);
    assert!(done.error.contains("hang-node"), "{}", done.error);
    assert!(
        done.error.contains("irmc_client_timeout") || done.error.contains("timed out"),
        "{}",
        done.error
    );
    // A BMC that took the request and never answered is hung: the job is not retried,
    // so its node fails at this one deadline.
    assert!(!done.retryable, "a hung BMC's timeout must not be retried");
    assert!(!done.error.contains(BMC_PASSWORD));
    eprintln!(
        "hanging BMC failed after {:?}: {}",
        started.elapsed(),
        done.error
    );

    assert!(agent.child.try_wait().unwrap().is_none());
    stub.send(prepare(
        "hang-2",
        "healthy-node",
        bmc_target(&sim, 1, &ca, 10),
    ))
    .await;
    let ok = stub.final_update("hang-2", Duration::from_secs(60)).await;
    assert_eq!(ok.state, pb::JobState::Succeeded as i32, "{}", ok.error);
    assert!(sim.node(1).state().cd.connected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_are_refused_with_the_field_named() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let (sim, ca) = start_sim(1, &agent.share, Boots::default(), None).await;
    // A node name that would escape nodes/.
    stub.send(prepare("bad-1", "../../etc", bmc_target(&sim, 0, &ca, 10)))
        .await;
    let d = stub.final_update("bad-1", Duration::from_secs(30)).await;
    assert_eq!(d.state, pb::JobState::Failed as i32);
    assert!(d.error.contains("node_uuid"), "{}", d.error);
    // A deploy ISO that is not on the share.
    stub.send(prepare(
        "bad-2",
        "n-missing-iso",
        bmc_target(&sim, 0, &ca, 10),
    ))
    .await;
    let d = stub.final_update("bad-2", Duration::from_secs(30)).await;
    assert_eq!(d.state, pb::JobState::Failed as i32);
    assert!(d.error.contains("deploy_iso"), "{}", d.error);
    assert!(d.error.contains("n-missing-iso"), "{}", d.error);
    assert_eq!(
        sim.node(0).state().counters.total,
        0,
        "no BMC request for a job that cannot run"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_reports_jobs_in_hello() {
    let stub = FakeCoordinator::start().await;
    let mut agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let (sim, ca) = start_sim(1, &agent.share, Boots::default(), None).await;

    // A finished job...
    stub.send(info("rc-1", "rc-node", bmc_target(&sim, 0, &ca, 10)))
        .await;
    let first = stub.final_update("rc-1", Duration::from_secs(30)).await;
    assert_eq!(
        first.state,
        pb::JobState::Succeeded as i32,
        "{}",
        first.error
    );
    // ...and one still running when the session drops (slow BMC).
    sim.apply_fault(&irmc_sim::fault::parse_spec("latency=700ms").unwrap());
    stub.send(info("rc-2", "rc-node", bmc_target(&sim, 0, &ca, 10)))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stub.kick();

    let hello = stub.hello(1).await;
    let known: Vec<(String, i32)> = hello
        .known_jobs
        .iter()
        .map(|u| (u.job_id.clone(), u.state))
        .collect();
    assert!(
        known.contains(&("rc-1".to_string(), pb::JobState::Succeeded as i32)),
        "{known:?}"
    );
    assert!(known.iter().any(|(id, _)| id == "rc-2"), "{known:?}");
    // rc-2 finishes: its result arrives either in the new session or in a later hello.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let in_session = stub
            .updates("rc-2")
            .iter()
            .any(|u| u.state == pb::JobState::Succeeded as i32);
        let in_hello = stub
            .hellos()
            .iter()
            .flat_map(|h| h.known_jobs.clone())
            .any(|u| u.job_id == "rc-2" && u.state == pb::JobState::Succeeded as i32);
        if in_session || in_hello {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rc-2 never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The job ran once: re-sending its id replays the result, no new BMC work.
    let before = sim.node(0).state().counters.total;
    stub.send(info("rc-2", "rc-node", bmc_target(&sim, 0, &ca, 10)))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.node(0).state().counters.total, before);
    assert!(agent.child.try_wait().unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_node_run_one_at_a_time_and_can_be_cancelled() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let (sim, ca) = start_sim(1, &agent.share, Boots::default(), None).await;
    sim.apply_fault(&irmc_sim::fault::parse_spec("latency=400ms").unwrap());
    let node = "serial-node";
    let bmc = || bmc_target(&sim, 0, &ca, 10);
    // Two jobs for one node: the second waits for the first.
    stub.send(info("ser-1", node, bmc())).await;
    stub.send(info("ser-2", node, bmc())).await;
    let a = stub.final_update("ser-1", Duration::from_secs(30)).await;
    let b = stub.final_update("ser-2", Duration::from_secs(30)).await;
    assert_eq!(a.state, pb::JobState::Succeeded as i32, "{}", a.error);
    assert_eq!(b.state, pb::JobState::Succeeded as i32, "{}", b.error);
    let t = stub.timeline(&["ser-1", "ser-2"]);
    let end1 = t
        .iter()
        .position(|(id, s, _)| id == "ser-1" && *s != pb::JobState::Running as i32)
        .unwrap();
    let start2 = t.iter().position(|(id, _, _)| id == "ser-2").unwrap();
    assert!(end1 < start2, "ser-2 started before ser-1 ended: {t:?}");

    // A cancelled job ends FAILED, and the node is free for the next job.
    stub.send(info("can-1", node, bmc())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stub.cancel("can-1", node).await;
    let c = stub.final_update("can-1", Duration::from_secs(30)).await;
    assert_eq!(c.state, pb::JobState::Failed as i32);
    assert!(
        c.error.contains("cancelled") && c.error.contains(node),
        "{}",
        c.error
    );

    // A job cancelled while it waits for the node never starts.
    stub.send(info("q-1", node, bmc())).await;
    stub.send(info("q-2", node, bmc())).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stub.cancel("q-2", node).await;
    let q2 = stub.final_update("q-2", Duration::from_secs(30)).await;
    let q1 = stub.final_update("q-1", Duration::from_secs(30)).await;
    assert_eq!(q1.state, pb::JobState::Succeeded as i32, "{}", q1.error);
    assert_eq!(q2.state, pb::JobState::Failed as i32);
    assert!(q2.error.contains("cancelled"), "{}", q2.error);
    let started = stub
        .updates("q-2")
        .iter()
        .any(|u| u.progress.contains("started"));
    assert!(!started, "q-2 never started");

    sim.apply_fault(&irmc_sim::fault::parse_spec("clear").unwrap());
    stub.send(info("can-2", node, bmc())).await;
    let d = stub.final_update("can-2", Duration::from_secs(30)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    sim.shutdown().await;
}
