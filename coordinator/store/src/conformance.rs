//! The backend-independent test suite. Each backend's tests call [`run_all`] with a
//! factory; the suite panics (a test failure) on the first broken contract, with a
//! message naming the check.
//!
//! The factory `make(k)` opens store number `k`: the first call for a given `k`
//! must give an EMPTY store; a later call with the same `k` (after every earlier
//! handle was dropped) must reopen the SAME data. Different `k` never share data.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use coordinator_core::{
    AgentId, DeployStep, JobIntent, JobKind, MASK, Node, NodeId, NodeSpec, NodeStatus, PowerState,
    ProvisionState, Secret,
};
use uuid::Uuid;

use crate::{NodeFilter, Store, StoreError};

/// Runs every conformance check, each on its own store.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: Store,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = S>,
{
    crud(make(0).await).await;
    uniqueness(make(1).await).await;
    pagination(make(2).await).await;
    filters(make(3).await).await;
    optimistic_concurrency(make(4).await).await;
    batch_atomicity(make(5).await).await;
    in_flight(make(6).await).await;
    agents(make(7).await).await;
    concurrent_writers(make(8).await).await;
    bulk(make(10).await).await;
    views(make(11).await).await;
    get_many(make(13).await).await;
    token_changes(make(12).await).await;
    // Durability: write, drop, reopen the same store.
    let (uuid, version) = durability_write(make(9).await).await;
    durability_check(make(9).await, uuid, version).await;
    // A third open of an existing store must work too (migrations are idempotent).
    durability_check(make(9).await, uuid, version).await;
}

/// A node with every field set, so a lossy encoding shows up.
pub fn sample_node(uuid: Uuid, name: Option<&str>) -> Node {
    let mut spec = NodeSpec::new(uuid);
    spec.name = name.map(str::to_string);
    spec.driver_info = BTreeMap::from([
        ("irmc_address".to_string(), "10.1.2.3".to_string()),
        ("irmc_username".to_string(), "admin".to_string()),
        ("irmc_password".to_string(), "s3cr\"et'".to_string()),
        ("deploy_iso".to_string(), "images/deploy.iso".to_string()),
    ]);
    spec.instance_info = BTreeMap::from([(
        "image_source".to_string(),
        "http://10.0.0.1/img.raw".to_string(),
    )]);
    spec.properties = BTreeMap::from([("capabilities".to_string(), "boot_mode:uefi".to_string())]);
    spec.macs = vec!["52:54:00:00:00:01".to_string()];
    spec.share_selector = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
    let mut status = NodeStatus::new(1_700_000_000_000);
    status.provision_state = ProvisionState::Available;
    status.power_state = Some(PowerState::Off);
    Node {
        spec,
        status,
        version: 0,
    }
}

fn in_flight_status(agent: &str) -> NodeStatus {
    let mut s = NodeStatus::new(5);
    s.provision_state = ProvisionState::WaitCallback;
    s.target_provision_state = Some(ProvisionState::Active);
    s.agent = Some(agent.into());
    s.step = DeployStep::WaitCallback;
    s.agent_token = Some(Secret::new("tok-123"));
    s.callback_url = Some("http://127.0.0.1:9999/".to_string());
    s.deadline_ms = Some(99);
    s.job = Some(JobIntent {
        job_id: Uuid::from_u128(77),
        kind: JobKind::PrepareRamdisk,
        attempt: 2,
    });
    s.job_seq = 3;
    s.progress = "waiting for ramdisk call-back".to_string();
    s
}

/// `list_node_views` lists what `list_nodes` lists, secrets masked and no token.
async fn views<S: Store>(st: S) {
    let mut nodes = Vec::new();
    for i in 0..5u8 {
        let mut n = sample_node(Uuid::new_v4(), Some(&format!("view-{i}")));
        n.spec
            .instance_info
            .insert("image_token".into(), format!("img-{i}"));
        nodes.push(n);
    }
    st.create_nodes(&nodes).await.unwrap();
    let busy = nodes[2].uuid();
    st.update_status(busy, 1, &in_flight_status("agent-v"))
        .await
        .unwrap();
    let all = NodeFilter::default();
    let full = st.list_nodes(&all, 100, None).await.unwrap();
    let seen = st.list_node_views(&all, 100, None).await.unwrap();
    assert_eq!(uuids(&seen), uuids(&full), "views: same nodes, same order");
    for (v, f) in seen.iter().zip(&full) {
        assert_eq!(v.version, f.version, "views: version");
        assert_eq!(
            v.spec.driver_info["irmc_password"], MASK,
            "views: password masked"
        );
        assert_eq!(
            v.spec.instance_info["image_token"], MASK,
            "views: token masked"
        );
        assert_eq!(v.spec.driver_info["irmc_username"], "admin");
        assert!(v.status.agent_token.is_none(), "views: no agent token");
        let mut expected = f.clone();
        expected.spec.driver_info = coordinator_core::mask(&f.spec.driver_info);
        expected.spec.instance_info = coordinator_core::mask(&f.spec.instance_info);
        expected.status.agent_token = None;
        assert_eq!(v, &expected, "views: everything else as stored");
    }
    assert!(
        full.iter()
            .any(|n| n.status.agent_token.as_ref().map(Secret::expose) == Some("tok-123")),
        "views: the full listing still opens the token"
    );
    // Filters and pagination behave as for list_nodes.
    let f = NodeFilter {
        agent: Some("agent-v".into()),
        ..NodeFilter::default()
    };
    assert_eq!(
        uuids(&st.list_node_views(&f, 100, None).await.unwrap()),
        vec![busy]
    );
    let page = st.list_node_views(&all, 2, None).await.unwrap();
    assert_eq!(uuids(&page), uuids(&full[..2]));
    let next = st
        .list_node_views(&all, 2, Some(page[1].uuid()))
        .await
        .unwrap();
    assert_eq!(uuids(&next), uuids(&full[2..4]));
}

/// `get_nodes` reads what `get_node` reads, for many nodes at once, skipping unknown ones.
async fn get_many<S: Store>(st: S) {
    let nodes: Vec<Node> = (0..700)
        .map(|i| sample_node(Uuid::new_v4(), Some(&format!("many-{i}"))))
        .collect();
    st.create_nodes(&nodes).await.unwrap();
    st.update_status(nodes[3].uuid(), 1, &in_flight_status("agent-m"))
        .await
        .unwrap();
    let mut want: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();
    want.push(Uuid::new_v4());
    let mut got = st.get_nodes(&want).await.unwrap();
    assert_eq!(
        got.len(),
        nodes.len(),
        "get_nodes: every known node, no unknown one"
    );
    got.sort_by_key(Node::uuid);
    for n in &got {
        let one = st.get_node(&NodeId::Uuid(n.uuid())).await.unwrap().unwrap();
        assert_eq!(n, &one, "get_nodes: same as get_node");
    }
    assert!(st.get_nodes(&[]).await.unwrap().is_empty());
}

/// The agent token survives writes that keep it, and follows every change of it.
async fn token_changes<S: Store>(st: S) {
    let u = Uuid::new_v4();
    st.create_node(&sample_node(u, None)).await.unwrap();
    let token = |n: &Node| {
        n.status
            .agent_token
            .as_ref()
            .map(|t| t.expose().to_string())
    };
    let mut s = in_flight_status("agent-t");
    let mut v = 1;
    for (step, tok) in [
        (0, Some("first")),
        (1, Some("first")),
        (2, Some("second")),
        (3, None),
        (4, Some("first")),
        (5, Some("first")),
    ] {
        s.agent_token = tok.map(Secret::new);
        s.job_seq = step;
        // Alternate single writes and batches: both paths seal.
        v = if step % 2 == 0 {
            st.update_status(u, v, &s).await.unwrap()
        } else {
            let other = Uuid::new_v4();
            st.create_node(&sample_node(other, None)).await.unwrap();
            st.update_statuses(&[(u, v, s.clone()), (other, 1, s.clone())])
                .await
                .unwrap()[0]
        };
        let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
        assert_eq!(
            token(&got).as_deref(),
            tok,
            "token_changes: step {step} reads back its token"
        );
        assert_eq!(
            got.status.job_seq, step,
            "token_changes: step {step} written"
        );
    }
    // A node deleted and re-created under the same uuid starts without a token.
    st.delete_node(u).await.unwrap();
    st.create_node(&sample_node(u, None)).await.unwrap();
    let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
    assert_eq!(
        token(&got),
        None,
        "token_changes: re-created node has no token"
    );
}

fn uuids(nodes: &[Node]) -> Vec<Uuid> {
    nodes.iter().map(Node::uuid).collect()
}

async fn crud<S: Store>(st: S) {
    let u = Uuid::new_v4();
    let mut n = sample_node(u, Some("crud-1"));
    n.version = 42; // ignored by create
    st.create_node(&n).await.unwrap();
    let got = st
        .get_node(&NodeId::Uuid(u))
        .await
        .unwrap()
        .expect("crud: get by uuid");
    assert_eq!(got.spec, n.spec, "crud: spec round-trip");
    assert_eq!(got.status, n.status, "crud: status round-trip");
    assert_eq!(got.version, 1, "crud: first version is 1");
    let by_name = st.get_node(&NodeId::Name("crud-1".into())).await.unwrap();
    assert_eq!(by_name.map(|n| n.uuid()), Some(u), "crud: get by name");
    assert!(
        st.get_node(&NodeId::Name("nope".into()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        st.get_node(&NodeId::Uuid(Uuid::new_v4()))
            .await
            .unwrap()
            .is_none()
    );

    // Spec updates do not touch the status version.
    let mut spec = n.spec.clone();
    spec.name = Some("crud-renamed".into());
    spec.driver_info.insert("irmc_port".into(), "80".into());
    st.update_spec(u, &spec).await.unwrap();
    let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
    assert_eq!(got.spec, spec, "crud: update_spec");
    assert_eq!(got.version, 1, "crud: update_spec keeps the status version");
    assert!(
        st.get_node(&NodeId::Name("crud-1".into()))
            .await
            .unwrap()
            .is_none()
    );

    // Status with every field, including the token column.
    let status = in_flight_status("agent-a");
    let v = st.update_status(u, 1, &status).await.unwrap();
    assert_eq!(v, 2, "crud: update_status returns old + 1");
    let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
    assert_eq!(got.status, status, "crud: status with token round-trip");
    assert_eq!(
        got.status.agent_token.as_ref().map(Secret::expose),
        Some("tok-123")
    );
    assert_eq!(got.version, 2);

    st.delete_node(u).await.unwrap();
    assert!(
        st.get_node(&NodeId::Uuid(u)).await.unwrap().is_none(),
        "crud: deleted"
    );
    assert!(matches!(
        st.delete_node(u).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        st.update_spec(u, &spec).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        st.update_status(u, 2, &status).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn uniqueness<S: Store>(st: S) {
    let a = Uuid::new_v4();
    st.create_node(&sample_node(a, Some("same"))).await.unwrap();
    let e = st
        .create_node(&sample_node(Uuid::new_v4(), Some("same")))
        .await;
    match e {
        Err(StoreError::Conflict { what }) => {
            assert!(what.contains("same"), "names the name: {what}")
        }
        other => panic!("uniqueness: duplicate name must conflict, got {other:?}"),
    }
    let e = st.create_node(&sample_node(a, Some("other"))).await;
    match e {
        Err(StoreError::Conflict { what }) => assert!(what.contains(&a.to_string()), "{what}"),
        other => panic!("uniqueness: duplicate uuid must conflict, got {other:?}"),
    }
    // Unnamed nodes never collide.
    st.create_node(&sample_node(Uuid::new_v4(), None))
        .await
        .unwrap();
    st.create_node(&sample_node(Uuid::new_v4(), None))
        .await
        .unwrap();
    // Renaming onto a taken name conflicts; the failed rename changes nothing.
    let b = Uuid::new_v4();
    st.create_node(&sample_node(b, Some("b"))).await.unwrap();
    let mut spec = sample_node(b, Some("same")).spec;
    spec.driver_info.insert("irmc_port".into(), "80".into());
    assert!(matches!(
        st.update_spec(b, &spec).await,
        Err(StoreError::Conflict { .. })
    ));
    let got = st.get_node(&NodeId::Uuid(b)).await.unwrap().unwrap();
    assert_eq!(got.spec.name.as_deref(), Some("b"));
    assert!(!got.spec.driver_info.contains_key("irmc_port"));
    // A deleted node's name is free again.
    st.delete_node(a).await.unwrap();
    st.create_node(&sample_node(Uuid::new_v4(), Some("same")))
        .await
        .unwrap();
}

async fn pagination<S: Store>(st: S) {
    let mut all: Vec<Uuid> = (0..25).map(|_| Uuid::new_v4()).collect();
    // Edge values sort first/last.
    all.push(Uuid::nil());
    all.push(Uuid::max());
    for (i, u) in all.iter().enumerate() {
        st.create_node(&sample_node(*u, Some(&format!("p{i}"))))
            .await
            .unwrap();
    }
    all.sort();
    let f = NodeFilter::default();
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = st.list_nodes(&f, 10, marker).await.unwrap();
        assert!(page.len() <= 10, "pagination: limit respected");
        if page.is_empty() {
            break;
        }
        marker = page.last().map(Node::uuid);
        seen.extend(uuids(&page));
    }
    assert_eq!(seen, all, "pagination: every node once, in uuid order");
    assert!(
        st.list_nodes(&f, 0, None).await.unwrap().is_empty(),
        "limit 0"
    );
    // A marker that is not a node still works as a position.
    let mid = all[13];
    let after: Vec<Uuid> = uuids(&st.list_nodes(&f, 100, Some(mid)).await.unwrap());
    assert_eq!(after, all[14..].to_vec());
    let after_max = st.list_nodes(&f, 100, Some(Uuid::max())).await.unwrap();
    assert!(after_max.is_empty());
}

async fn filters<S: Store>(st: S) {
    let mk = |name: &str, state: ProvisionState, agent: Option<&str>, err: bool| {
        let mut n = sample_node(Uuid::new_v4(), Some(name));
        n.status.provision_state = state;
        n.status.agent = agent.map(AgentId::from);
        n.status.last_error = err.then(|| "boom".to_string());
        n
    };
    let nodes = [
        mk("rack1-a", ProvisionState::Available, Some("s1"), false),
        mk("rack1-b", ProvisionState::Active, Some("s1"), false),
        mk("rack2-a", ProvisionState::Available, Some("s2"), true),
        mk("rack2_b", ProvisionState::DeployFailed, None, true),
        mk("rack%-c", ProvisionState::Enroll, None, false),
    ];
    for n in &nodes {
        st.create_node(n).await.unwrap();
    }
    let names = |v: Vec<Node>| {
        let mut n: Vec<String> = v.into_iter().filter_map(|n| n.spec.name).collect();
        n.sort();
        n
    };
    let q = |f: NodeFilter| {
        let st = &st;
        async move { names(st.list_nodes(&f, 1000, None).await.unwrap()) }
    };
    assert_eq!(
        q(NodeFilter {
            provision_state: Some(ProvisionState::Available),
            ..Default::default()
        })
        .await,
        ["rack1-a", "rack2-a"]
    );
    assert_eq!(
        q(NodeFilter {
            agent: Some("s1".into()),
            ..Default::default()
        })
        .await,
        ["rack1-a", "rack1-b"]
    );
    assert_eq!(
        q(NodeFilter {
            name_prefix: Some("rack2".into()),
            ..Default::default()
        })
        .await,
        ["rack2-a", "rack2_b"]
    );
    // Wildcard characters are literal.
    assert_eq!(
        q(NodeFilter {
            name_prefix: Some("rack2_".into()),
            ..Default::default()
        })
        .await,
        ["rack2_b"]
    );
    assert_eq!(
        q(NodeFilter {
            name_prefix: Some("rack%".into()),
            ..Default::default()
        })
        .await,
        ["rack%-c"]
    );
    assert_eq!(
        q(NodeFilter {
            with_last_error: true,
            ..Default::default()
        })
        .await,
        ["rack2-a", "rack2_b"]
    );
    assert_eq!(
        q(NodeFilter {
            provision_state: Some(ProvisionState::Available),
            agent: Some("s2".into()),
            with_last_error: true,
            name_prefix: Some("rack".into()),
        })
        .await,
        ["rack2-a"]
    );
    // Filter columns follow status updates.
    let n = &nodes[0];
    let mut s = n.status.clone();
    s.provision_state = ProvisionState::Active;
    s.agent = Some("s2".into());
    s.last_error = Some("x".into());
    st.update_status(n.uuid(), 1, &s).await.unwrap();
    assert_eq!(
        q(NodeFilter {
            agent: Some("s2".into()),
            with_last_error: true,
            ..Default::default()
        })
        .await,
        ["rack1-a", "rack2-a"]
    );
    let mut want: Vec<(Uuid, AgentId)> = vec![
        (nodes[0].uuid(), "s2".into()),
        (nodes[1].uuid(), "s1".into()),
        (nodes[2].uuid(), "s2".into()),
    ];
    want.sort();
    assert_eq!(st.placements().await.unwrap(), want, "placements");
    let counts = st.count_by_state().await.unwrap();
    let want: BTreeMap<String, u64> = [
        ("active", 2),
        ("available", 1),
        ("deploy failed", 1),
        ("enroll", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, want, "count_by_state");
}

async fn optimistic_concurrency<S: Store>(st: S) {
    let u = Uuid::new_v4();
    st.create_node(&sample_node(u, None)).await.unwrap();
    let mut s1 = sample_node(u, None).status;
    s1.progress = "first".into();
    let mut s2 = s1.clone();
    s2.progress = "second".into();
    assert_eq!(st.update_status(u, 1, &s1).await.unwrap(), 2);
    match st.update_status(u, 1, &s2).await {
        Err(StoreError::VersionConflict {
            node,
            expected,
            found,
        }) => {
            assert_eq!((node, expected, found), (u, 1, 2));
        }
        other => panic!("optimistic concurrency: stale write must conflict, got {other:?}"),
    }
    let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
    assert_eq!(
        got.status.progress, "first",
        "the losing write changed nothing"
    );
    assert_eq!(st.update_status(u, 2, &s2).await.unwrap(), 3);
}

async fn batch_atomicity<S: Store>(st: S) {
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for u in &ids {
        st.create_node(&sample_node(*u, None)).await.unwrap();
    }
    let mut s = sample_node(ids[0], None).status;
    s.provision_state = ProvisionState::Deploying;
    // Third entry carries a stale version: nothing may be written.
    let bad: Vec<(Uuid, u64, NodeStatus)> = vec![
        (ids[0], 1, s.clone()),
        (ids[1], 1, s.clone()),
        (ids[2], 7, s.clone()),
    ];
    assert!(matches!(
        st.update_statuses(&bad).await,
        Err(StoreError::VersionConflict { .. })
    ));
    for u in &ids {
        let n = st.get_node(&NodeId::Uuid(*u)).await.unwrap().unwrap();
        assert_eq!(n.version, 1, "batch atomicity: rolled back");
        assert_eq!(n.status.provision_state, ProvisionState::Available);
    }
    // A missing node also fails the whole batch.
    let bad = vec![(ids[0], 1, s.clone()), (Uuid::new_v4(), 1, s.clone())];
    assert!(matches!(
        st.update_statuses(&bad).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        st.get_node(&NodeId::Uuid(ids[0]))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let good: Vec<(Uuid, u64, NodeStatus)> = ids.iter().map(|u| (*u, 1, s.clone())).collect();
    assert_eq!(st.update_statuses(&good).await.unwrap(), vec![2, 2, 2]);
    assert!(st.update_statuses(&[]).await.unwrap().is_empty());
    let deploying = st
        .list_nodes(
            &NodeFilter {
                provision_state: Some(ProvisionState::Deploying),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(deploying.len(), 3);
}

async fn in_flight<S: Store>(st: S) {
    let idle = Uuid::new_v4();
    let queued = Uuid::new_v4();
    let waiting = Uuid::new_v4();
    let failed_cleanup = Uuid::new_v4();
    st.create_node(&sample_node(idle, None)).await.unwrap();
    let mut n = sample_node(queued, None);
    n.status.provision_state = ProvisionState::Deploying;
    n.status.step = DeployStep::Queued;
    st.create_node(&n).await.unwrap();
    let mut n = sample_node(waiting, None);
    n.status = in_flight_status("a1");
    st.create_node(&n).await.unwrap();
    // Deploy failed but a best-effort clean-up job is recorded: resume it too.
    let mut n = sample_node(failed_cleanup, None);
    n.status.provision_state = ProvisionState::DeployFailed;
    n.status.job = Some(JobIntent {
        job_id: Uuid::new_v4(),
        kind: JobKind::CleanUp,
        attempt: 1,
    });
    st.create_node(&n).await.unwrap();

    let mut want = vec![queued, waiting, failed_cleanup];
    want.sort();
    assert_eq!(
        uuids(&st.nodes_in_flight().await.unwrap()),
        want,
        "in-flight listing"
    );
    let got = st.nodes_in_flight().await.unwrap();
    let w = got.iter().find(|n| n.uuid() == waiting).unwrap();
    assert_eq!(
        w.status,
        in_flight_status("a1"),
        "in-flight node comes back whole"
    );

    // Settling a node removes it.
    let mut s = in_flight_status("a1");
    s.provision_state = ProvisionState::Active;
    s.target_provision_state = None;
    s.step = DeployStep::None;
    s.job = None;
    s.deadline_ms = None;
    s.agent_token = None;
    st.update_status(waiting, 1, &s).await.unwrap();
    let mut want = vec![queued, failed_cleanup];
    want.sort();
    assert_eq!(uuids(&st.nodes_in_flight().await.unwrap()), want);
}

async fn agents<S: Store>(st: S) {
    assert!(st.drained_agents().await.unwrap().is_empty());
    st.set_agent_drained(&AgentId::from("b"), true)
        .await
        .unwrap();
    st.set_agent_drained(&AgentId::from("a"), true)
        .await
        .unwrap();
    st.set_agent_drained(&AgentId::from("a"), true)
        .await
        .unwrap(); // idempotent
    st.set_agent_drained(&AgentId::from("c"), false)
        .await
        .unwrap();
    assert_eq!(
        st.drained_agents().await.unwrap(),
        ["a", "b"].map(AgentId::from)
    );
    st.set_agent_drained(&AgentId::from("b"), false)
        .await
        .unwrap();
    assert_eq!(st.drained_agents().await.unwrap(), ["a"].map(AgentId::from));
}

async fn concurrent_writers<S: Store>(st: S) {
    let st = Arc::new(st);
    let ids: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
    for u in &ids {
        st.create_node(&sample_node(*u, None)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, u) in ids.iter().enumerate() {
        let st = Arc::clone(&st);
        let u = *u;
        tasks.push(tokio::spawn(async move {
            let mut v = 1;
            for round in 0..10 {
                let mut s = sample_node(u, None).status;
                s.progress = format!("round {round}");
                v = if i % 2 == 0 {
                    st.update_status(u, v, &s).await.unwrap()
                } else {
                    st.update_statuses(&[(u, v, s)]).await.unwrap()[0]
                };
            }
            v
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            11,
            "concurrent writers: every write landed"
        );
    }
}

async fn durability_write<S: Store>(st: S) -> (Uuid, u64) {
    let u = Uuid::new_v4();
    st.create_node(&sample_node(u, Some("durable")))
        .await
        .unwrap();
    let v = st
        .update_status(u, 1, &in_flight_status("d1"))
        .await
        .unwrap();
    st.set_agent_drained(&AgentId::from("d1"), true)
        .await
        .unwrap();
    drop(st);
    (u, v)
}

async fn durability_check<S: Store>(st: S, u: Uuid, version: u64) {
    let n = st
        .get_node(&NodeId::Name("durable".into()))
        .await
        .unwrap()
        .expect("durability: node survives reopen");
    assert_eq!(n.uuid(), u);
    assert_eq!(n.version, version);
    assert_eq!(n.status, in_flight_status("d1"));
    assert_eq!(uuids(&st.nodes_in_flight().await.unwrap()), vec![u]);
    assert_eq!(
        st.drained_agents().await.unwrap(),
        ["d1"].map(AgentId::from)
    );
}

async fn bulk<S: Store>(st: S) {
    // More rows than one statement carries, to cross chunk boundaries.
    let nodes: Vec<Node> = (0..1234)
        .map(|i| {
            let mut n = sample_node(Uuid::new_v4(), Some(&format!("bulk-{i}")));
            if i % 3 == 0 {
                n.status = in_flight_status("b1");
            }
            n
        })
        .collect();
    st.create_nodes(&nodes).await.unwrap();
    st.create_nodes(&[]).await.unwrap();
    let mut listed = Vec::new();
    let mut marker = None;
    loop {
        let page = st
            .list_nodes(&NodeFilter::default(), 500, marker)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        marker = Some(last.uuid());
        listed.extend(page);
    }
    assert_eq!(listed.len(), nodes.len(), "bulk: every node stored");
    let by_uuid: BTreeMap<Uuid, &Node> = nodes.iter().map(|n| (n.uuid(), n)).collect();
    for got in &listed {
        let want = by_uuid[&got.uuid()];
        assert_eq!(
            (&got.spec, &got.status, got.version),
            (&want.spec, &want.status, 1)
        );
    }
    assert_eq!(st.nodes_in_flight().await.unwrap().len(), 412);

    // A duplicate anywhere in a batch inserts nothing.
    let fresh: Vec<Node> = (0..700)
        .map(|i| sample_node(Uuid::new_v4(), Some(&format!("fresh-{i}"))))
        .collect();
    let mut bad = fresh.clone();
    bad.push(sample_node(Uuid::new_v4(), Some("bulk-5")));
    assert!(matches!(
        st.create_nodes(&bad).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        st.get_node(&NodeId::Name("fresh-0".into()))
            .await
            .unwrap()
            .is_none(),
        "bulk: failed batch left nothing behind"
    );

    // A big status batch across chunks, then one with a stale entry at the end.
    let mut s = sample_node(Uuid::nil(), None).status;
    s.provision_state = ProvisionState::Deploying;
    s.step = DeployStep::Queued;
    let batch: Vec<(Uuid, u64, NodeStatus)> =
        listed.iter().map(|n| (n.uuid(), 1, s.clone())).collect();
    let versions = st.update_statuses(&batch).await.unwrap();
    assert!(versions.iter().all(|v| *v == 2));
    assert_eq!(st.nodes_in_flight().await.unwrap().len(), 1234);
    let mut stale: Vec<(Uuid, u64, NodeStatus)> = listed
        .iter()
        .map(|n| (n.uuid(), 2, sample_node(n.uuid(), None).status))
        .collect();
    let last = stale.len() - 1;
    stale[last].1 = 1;
    match st.update_statuses(&stale).await {
        Err(StoreError::VersionConflict {
            node,
            expected,
            found,
        }) => {
            assert_eq!((node, expected, found), (stale[last].0, 1, 2));
        }
        other => panic!("bulk: stale entry must fail the batch, got {other:?}"),
    }
    assert_eq!(
        st.nodes_in_flight().await.unwrap().len(),
        1234,
        "bulk: batch rolled back"
    );

    // The same node twice in one batch applies in order.
    let u = listed[0].uuid();
    let mut a = s.clone();
    a.progress = "a".into();
    let mut b = s.clone();
    b.progress = "b".into();
    assert_eq!(
        st.update_statuses(&[(u, 2, a), (u, 3, b)]).await.unwrap(),
        vec![3, 4]
    );
    let got = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
    assert_eq!((got.version, got.status.progress.as_str()), (4, "b"));
}
