//! Status writes: optimistic concurrency, batch atomicity, concurrent writers and bulk.

use std::collections::BTreeMap;
use std::sync::Arc;

use coordinator_core::{DeployStep, Node, NodeId, NodeStatus, ProvisionState};
use uuid::Uuid;

use super::{in_flight_status, sample_node};
use crate::{NodeFilter, Store, StoreError};

pub(super) async fn optimistic_concurrency<S: Store>(st: S) {
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

pub(super) async fn batch_atomicity<S: Store>(st: S) {
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

pub(super) async fn concurrent_writers<S: Store>(st: S) {
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

pub(super) async fn bulk<S: Store>(st: S) {
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
