//! Share-agent loss and re-placement; the Watch stream and its lag notice.

use std::time::Duration;

use vmedia_proto::v1 as pb;

use crate::common::{
    AgentBehaviour, Coordinator, FakeAgent, bulk, enroll_available, node_req, wait_all,
};

/// Deploys stalled on an agent that goes away restart on the other agent from the safe
/// point (PrepareRamdisk with a fresh token) and finish there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_agent_deploys_restart_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(
        dir.path(),
        &["--agent-heartbeat", "200ms", "--callback-timeout", "10m"],
    );
    let mut a = AgentBehaviour::new("agent-a", 8);
    a.stall_deploys = true;
    let agent_a = FakeAgent::connect(coord.channel().await, a).await;
    let agent_b =
        FakeAgent::connect(coord.channel().await, AgentBehaviour::new("agent-b", 8)).await;
    let uuids = enroll_available(&coord, 12).await;
    let mut nodes = coord.nodes().await;
    bulk(&mut nodes, &uuids, "deploy").await;

    // Wait until the nodes on agent-a are stuck and the rest are active.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listed = nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let on_a: Vec<String> = listed
        .nodes
        .iter()
        .filter(|n| n.share == "agent-a")
        .map(|n| n.uuid.clone())
        .collect();
    assert!(!on_a.is_empty(), "placement put nothing on agent-a");
    for n in listed.nodes.iter().filter(|n| n.share == "agent-a") {
        assert_eq!(n.provision_state, "deploying", "{n:?}");
    }
    let old_tokens: Vec<(String, String)> = {
        let s = agent_a.stats.lock().unwrap();
        s.jobs
            .iter()
            .filter(|(_, _, k)| *k == "prepare_ramdisk")
            .map(|(n, j, _)| (n.clone(), j.clone()))
            .collect()
    };
    assert_eq!(old_tokens.len(), on_a.len());

    agent_a.disconnect();
    wait_all(&mut nodes, &uuids, "active", Duration::from_secs(30)).await;
    let listed = nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.nodes.iter().all(|n| n.share == "agent-b"),
        "all nodes end on agent-b"
    );
    {
        let s = agent_b.stats.lock().unwrap();
        for u in &on_a {
            assert!(
                s.jobs
                    .iter()
                    .any(|(n, _, k)| n == u && *k == "prepare_ramdisk"),
                "node {u} restarted from PrepareRamdisk on agent-b"
            );
        }
    }
    let mut shares = coord.shares().await;
    let list = shares
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    let a = list.shares.iter().find(|s| s.id == "agent-a").unwrap();
    assert_eq!(a.health, "lost");
    assert_eq!(a.active, 0);
}

/// Drain: queued work waits for an eligible agent; idle nodes move to another agent;
/// undrain brings the agent back into placement.
#[tokio::test]
async fn drain_and_undrain() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    let _d = FakeAgent::connect(coord.channel().await, AgentBehaviour::new("agent-d", 4)).await;
    let mut shares = coord.shares().await;
    let s = shares
        .drain_share(pb::DrainShareRequest {
            share: "agent-d".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(s.drained);
    assert_eq!(s.health, "drained");
    // A drained-only fleet cannot serve a node: it waits, visibly.
    let mut nodes = coord.nodes().await;
    let n = nodes.create_node(node_req(1)).await.unwrap().into_inner();
    let r = nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: n.uuid.clone(),
            target: "manage".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.provision_state, "verifying");
    assert!(r.queue_position > 0, "{r:?}");
    let s = shares
        .undrain_share(pb::DrainShareRequest {
            share: "agent-d".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!s.drained);
    wait_all(
        &mut nodes,
        std::slice::from_ref(&n.uuid),
        "manageable",
        Duration::from_secs(10),
    )
    .await;
    let placed = nodes
        .get_node(pb::GetNodeRequest {
            node: n.uuid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.share, "agent-d");

    // A second agent joins; draining the first moves the idle node to it.
    let _e = FakeAgent::connect(coord.channel().await, AgentBehaviour::new("agent-e", 4)).await;
    shares
        .drain_share(pb::DrainShareRequest {
            share: "agent-d".into(),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = nodes
            .get_node(pb::GetNodeRequest {
                node: n.uuid.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if now.share == "agent-e" {
            assert_eq!(now.provision_state, "manageable");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle node not moved: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = shares
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    let d = list.shares.iter().find(|s| s.id == "agent-d").unwrap();
    assert_eq!(d.nodes, 0);
}

#[tokio::test]
async fn watch_streams_changes_and_flags_lag() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--watch-buffer", "8"]);
    let _agent = FakeAgent::connect(coord.channel().await, AgentBehaviour::new("agent-w", 4)).await;
    let mut nodes = coord.nodes().await;
    let first = nodes.create_node(node_req(0)).await.unwrap().into_inner();

    // One node, with its initial state first.
    let mut one = nodes
        .watch(pb::WatchRequest {
            node: "node-0".into(),
            initial: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ev = one.message().await.unwrap().unwrap();
    assert_eq!(ev.node_uuid, first.uuid);
    assert_eq!(ev.provision_state, "enroll");
    nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: first.uuid.clone(),
            target: "manage".into(),
        })
        .await
        .unwrap();
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("manageable") {
        let ev = tokio::time::timeout(Duration::from_secs(10), one.message())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert_eq!(ev.node_uuid, first.uuid, "only the watched node");
        states.push(ev.provision_state);
    }
    assert!(states.contains(&"verifying".to_owned()), "{states:?}");

    // A watcher that does not read falls behind by far more than the buffer: it gets a
    // lag notice instead of stalling the coordinator.
    let mut slow = nodes
        .watch(pb::WatchRequest {
            node: String::new(),
            initial: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut c = nodes.clone();
    let creates = tokio::spawn(async move {
        for i in 1..1500 {
            c.create_node(node_req(i)).await.unwrap();
        }
    });
    tokio::time::timeout(Duration::from_secs(60), creates)
        .await
        .expect("the coordinator kept serving while a watcher lagged")
        .unwrap();
    // One bulk call emits ~1500 events in one burst.
    let r = nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            selector: Some(pb::NodeSelector {
                provision_state: "enroll".into(),
                ..Default::default()
            }),
            target: "manage".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 1499);
    let mut lagged = false;
    let mut seen = 0;
    for _ in 0..10_000 {
        let Ok(Ok(Some(ev))) = tokio::time::timeout(Duration::from_secs(5), slow.message()).await
        else {
            break;
        };
        seen += 1;
        if ev.node_uuid.is_empty() && ev.last_error.starts_with("watch lagged:") {
            lagged = true;
            break;
        }
    }
    assert!(lagged, "no lag notice after {seen} events");
}

/// A resuming watcher (`since_ms`) first gets the latest state of exactly the nodes whose
/// status changed at or after that time, stamped with the status's own time, which is also
/// the stamp of the live event for the same change (so a client can drop repeats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_since_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    let _agent = FakeAgent::connect(coord.channel().await, AgentBehaviour::new("agent-r", 4)).await;
    let mut nodes = coord.nodes().await;
    let quiet = nodes.create_node(node_req(0)).await.unwrap().into_inner();
    let moved = nodes.create_node(node_req(1)).await.unwrap().into_inner();

    // A live watcher records the stamp of the change.
    let mut live = nodes
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let after_create = moved.updated_at_ms.max(quiet.updated_at_ms) + 1;
    // Statuses are stamped in ms: make sure the change lands after `after_create`.
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        <= after_create
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: moved.uuid.clone(),
            target: "manage".into(),
        })
        .await
        .unwrap();
    let mut last_live = None;
    while last_live
        .as_ref()
        .is_none_or(|e: &pb::NodeEvent| e.provision_state != "manageable")
    {
        let ev = tokio::time::timeout(Duration::from_secs(10), live.message())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        assert_eq!(ev.node_uuid, moved.uuid);
        last_live = Some(ev);
    }
    let last_live = last_live.unwrap();

    let mut resumed = nodes
        .watch(pb::WatchRequest {
            since_ms: after_create,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), resumed.message())
        .await
        .expect("snapshot in time")
        .unwrap()
        .unwrap();
    assert_eq!(first.node_uuid, moved.uuid, "only the node that changed");
    assert_eq!(first.provision_state, "manageable");
    assert_eq!(first.at_ms, last_live.at_ms, "same stamp as the live event");
    // The untouched node is not re-sent: the next event is a live one, of the next change.
    nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: quiet.uuid.clone(),
            target: "manage".into(),
        })
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.message())
        .await
        .expect("live event in time")
        .unwrap()
        .unwrap();
    assert_eq!(next.node_uuid, quiet.uuid);
    assert_ne!(next.provision_state, "enroll", "{next:?}");
}
