//! Single nodes: create, read, update, delete, uniqueness, many at once, the agent
//! token column, and what survives a reopen.

use coordinator_core::{AgentId, Node, NodeId, Secret};
use uuid::Uuid;

use super::{in_flight_status, sample_node, uuids};
use crate::{Store, StoreError};

pub(super) async fn crud<S: Store>(st: S) {
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

pub(super) async fn uniqueness<S: Store>(st: S) {
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

/// `get_nodes` reads what `get_node` reads, for many nodes at once, skipping unknown ones.
pub(super) async fn get_many<S: Store>(st: S) {
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
pub(super) async fn token_changes<S: Store>(st: S) {
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

pub(super) async fn durability_write<S: Store>(st: S) -> (Uuid, u64) {
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

pub(super) async fn durability_check<S: Store>(st: S, u: Uuid, version: u64) {
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
