//! Deploy flows end to end with the real binary and a fake share agent: restart safety,
//! callback timeout, admission queueing.

use std::time::{Duration, Instant};

use vmedia_proto::v1 as pb;

use crate::common::{AgentBehaviour, Coordinator, FakeAgent, bulk, enroll_available, wait_all};

/// SIGKILL the coordinator in the middle of 20 deploys, restart it on the same data dir,
/// reconnect the agent: every node ends active and no deploy ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--callback-timeout", "10m", "--agent-heartbeat", "1s"];
    let mut coord = Coordinator::start(dir.path(), &args);
    let mut behaviour = AgentBehaviour::new("agent-r", 4);
    behaviour.job_time = Duration::from_millis(150);
    let agent = FakeAgent::connect(coord.channel().await, behaviour.clone()).await;
    let uuids = enroll_available(&coord, 20).await;
    let mut nodes = coord.nodes().await;
    bulk(&mut nodes, &uuids, "deploy").await;

    // Let some deploys get under way, then kill -9.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let active_before = before
        .nodes
        .iter()
        .filter(|n| n.provision_state == "active")
        .count();
    assert!(
        active_before < uuids.len(),
        "killed too late: all nodes already active"
    );
    coord.kill();
    let stats = agent.disconnect();
    // Jobs that were running on the agent finish while the coordinator is down.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let coord = Coordinator::start(dir.path(), &args);
    let _agent =
        FakeAgent::connect_with_stats(coord.channel().await, behaviour, stats.clone()).await;
    let mut nodes = coord.nodes().await;
    wait_all(&mut nodes, &uuids, "active", Duration::from_secs(60)).await;

    {
        let s = stats.lock().unwrap();
        for u in &uuids {
            let writes = s
                .jobs
                .iter()
                .filter(|(n, _, k)| n == u && *k == "write_image")
                .count();
            assert!(writes >= 1, "node {u} never wrote its image");
        }
    }
    let all = nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.nodes.len(), uuids.len(), "a node was lost");
    assert!(
        all.nodes
            .iter()
            .all(|n| n.last_error.is_empty() && n.queue_position == 0)
    );
}

/// A ramdisk that never heartbeats fails the deploy at the configured callback timeout with
/// Ironic's message.
#[tokio::test]
async fn callback_timeout_fails_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--callback-timeout", "2s"]);
    let mut behaviour = AgentBehaviour::new("agent-t", 2);
    behaviour.ramdisk_heartbeats = false;
    let agent = FakeAgent::connect(coord.channel().await, behaviour).await;
    let uuids = enroll_available(&coord, 1).await;
    let mut nodes = coord.nodes().await;
    let started = Instant::now();
    nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: uuids[0].clone(),
            target: "deploy".into(),
        })
        .await
        .unwrap();
    wait_all(
        &mut nodes,
        &uuids,
        "wait call-back",
        Duration::from_secs(10),
    )
    .await;
    wait_all(&mut nodes, &uuids, "deploy failed", Duration::from_secs(15)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900),
        "failed too early: {elapsed:?}"
    );
    let n = nodes
        .get_node(pb::GetNodeRequest {
            node: uuids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        n.last_error.contains(&format!(
            "Timeout reached while waiting for callback for node {}",
            uuids[0]
        )),
        "{}",
        n.last_error
    );
    // The media is cleaned up after the failure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = agent.stats.lock().unwrap();
    assert!(
        s.jobs
            .iter()
            .any(|(u, _, k)| u == &uuids[0] && *k == "clean_up"),
        "{:?}",
        s.jobs
    );
}

/// Ten deploys on an agent with capacity 2: all accepted at once, the waiting ones show a
/// queue position, never more than two run at a time, all finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_queue_with_capacity_two() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--callback-timeout", "5m"]);
    let mut behaviour = AgentBehaviour::new("agent-q", 2);
    behaviour.job_time = Duration::from_millis(150);
    let agent = FakeAgent::connect(coord.channel().await, behaviour).await;
    let uuids = enroll_available(&coord, 10).await;
    let mut nodes = coord.nodes().await;
    bulk(&mut nodes, &uuids, "deploy").await;

    let listed = nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut positions: Vec<u64> = listed
        .nodes
        .iter()
        .map(|n| n.queue_position)
        .filter(|p| *p > 0)
        .collect();
    positions.sort();
    assert!(
        positions.len() >= 6,
        "expected most nodes queued: {positions:?}"
    );
    let expected: Vec<u64> = (1..=positions.len() as u64).collect();
    assert_eq!(positions, expected, "positions are 1..n without gaps");
    assert!(
        listed
            .nodes
            .iter()
            .filter(|n| n.queue_position > 0)
            .all(|n| n.provision_state == "deploying"),
        "queued nodes are deploying (waiting for a slot)"
    );
    let mut shares = coord.shares().await;
    let s = shares
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.shares[0].active <= 2);

    wait_all(&mut nodes, &uuids, "active", Duration::from_secs(60)).await;
    let stats = agent.stats.lock().unwrap();
    assert!(
        stats.max_running_deploys <= 2,
        "ran {} at once",
        stats.max_running_deploys
    );
    assert_eq!(
        stats
            .jobs
            .iter()
            .filter(|(_, _, k)| *k == "prepare_instance")
            .count(),
        10
    );
}

/// The global cap holds even when the agent has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_cap_limits_concurrent_deploys() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--max-concurrent", "1"]);
    let mut behaviour = AgentBehaviour::new("agent-g", 8);
    behaviour.job_time = Duration::from_millis(50);
    let agent = FakeAgent::connect(coord.channel().await, behaviour).await;
    let uuids = enroll_available(&coord, 4).await;
    let mut nodes = coord.nodes().await;
    bulk(&mut nodes, &uuids, "deploy").await;
    wait_all(&mut nodes, &uuids, "active", Duration::from_secs(30)).await;
    assert_eq!(agent.stats.lock().unwrap().max_running_deploys, 1);
}
