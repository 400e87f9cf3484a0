//! Listing: pagination, filters, read-only views, the in-flight listing and the
//! desired agent state.

use std::collections::BTreeMap;

use coordinator_core::{
    AgentId, DeployStep, JobIntent, JobKind, MASK, Node, ProvisionState, Secret,
};
use uuid::Uuid;

use super::{in_flight_status, sample_node, uuids};
use crate::{NodeFilter, Store};

pub(super) async fn pagination<S: Store>(st: S) {
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

pub(super) async fn filters<S: Store>(st: S) {
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
            search: Some("2-".into()),
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

    // Power states: every node counted once; a batch write moves a node between counts.
    let power = st.count_by_power_state().await.unwrap();
    assert_eq!(
        power.values().sum::<u64>(),
        5,
        "count_by_power_state: {power:?}"
    );
    let all = st
        .list_nodes(&NodeFilter::default(), 100, None)
        .await
        .unwrap();
    let off = all
        .iter()
        .find(|n| n.status.power_state != Some(coordinator_core::PowerState::On))
        .unwrap();
    let was = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let from = off
        .status
        .power_state
        .map_or("", coordinator_core::PowerState::as_str);
    let mut s = off.status.clone();
    s.power_state = Some(coordinator_core::PowerState::On);
    st.update_statuses(&[(off.uuid(), off.version, s)])
        .await
        .unwrap();
    let after = st.count_by_power_state().await.unwrap();
    assert_eq!(was(&after, "power on"), was(&power, "power on") + 1);
    assert_eq!(was(&after, from), was(&power, from) - 1);
}

/// `list_node_views` lists what `list_nodes` lists, secrets masked and no token.
pub(super) async fn views<S: Store>(st: S) {
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

pub(super) async fn in_flight<S: Store>(st: S) {
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

pub(super) async fn agents<S: Store>(st: S) {
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
