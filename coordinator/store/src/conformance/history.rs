//! Node history (state changes recorded where they are committed) and the search filter.

use coordinator_core::{Node, NodeStatus, ProvisionState};
use uuid::Uuid;

use super::sample_node;
use crate::{HISTORY_PER_NODE, NodeFilter, StateChange, Store, StoreError};

fn with_state(base: &NodeStatus, state: ProvisionState, at_ms: i64) -> NodeStatus {
    let mut s = base.clone();
    s.provision_state = state;
    s.provision_updated_at_ms = at_ms;
    s.updated_at_ms = at_ms;
    s
}

pub(super) async fn history<S: Store>(st: S) {
    let u = Uuid::new_v4();
    let other = Uuid::new_v4();
    st.create_node(&sample_node(u, Some("hist-a")))
        .await
        .unwrap();
    st.create_node(&sample_node(other, Some("hist-b")))
        .await
        .unwrap();
    assert!(
        st.node_history(u).await.unwrap().is_empty(),
        "history: a new node has none"
    );
    assert!(st.node_history(Uuid::new_v4()).await.unwrap().is_empty());

    let base = sample_node(u, None).status;
    // One write, then a write that changes only the progress (no history), then a batch.
    let v = st
        .update_status(u, 1, &with_state(&base, ProvisionState::Deploying, 10))
        .await
        .unwrap();
    let mut same = with_state(&base, ProvisionState::Deploying, 10);
    same.progress = "still deploying".into();
    let v = st.update_status(u, v, &same).await.unwrap();
    let mut failed = with_state(&base, ProvisionState::DeployFailed, 20);
    failed.last_error = Some("BMC 10.1.2.3: connect refused".into());
    let vs = st
        .update_statuses(&[
            (u, v, failed),
            (other, 1, with_state(&base, ProvisionState::Manageable, 30)),
        ])
        .await
        .unwrap();
    let h = st.node_history(u).await.unwrap();
    assert_eq!(
        h,
        vec![
            StateChange {
                at_ms: 10,
                from: ProvisionState::Available,
                to: ProvisionState::Deploying,
                last_error: None,
            },
            StateChange {
                at_ms: 20,
                from: ProvisionState::Deploying,
                to: ProvisionState::DeployFailed,
                last_error: Some("BMC 10.1.2.3: connect refused".into()),
            },
        ],
        "history: each committed state change, oldest first, nothing for a write that keeps the state"
    );
    assert_eq!(st.node_history(other).await.unwrap().len(), 1);

    // A batch that fails records nothing.
    let bad = st
        .update_statuses(&[
            (u, vs[0], with_state(&base, ProvisionState::Available, 40)),
            (other, 99, with_state(&base, ProvisionState::Available, 40)),
        ])
        .await;
    assert!(matches!(bad, Err(StoreError::VersionConflict { .. })));
    assert_eq!(
        st.node_history(u).await.unwrap().len(),
        2,
        "history: a rolled-back batch leaves no history"
    );

    // Bounded: only the newest HISTORY_PER_NODE changes stay.
    let mut v = vs[0];
    let states = [ProvisionState::Available, ProvisionState::Deploying];
    let changes = HISTORY_PER_NODE + 10;
    for i in 0..changes {
        let s = with_state(&base, states[i % 2], 100 + i as i64);
        v = st.update_status(u, v, &s).await.unwrap();
    }
    let h = st.node_history(u).await.unwrap();
    assert_eq!(h.len(), HISTORY_PER_NODE, "history: bounded per node");
    assert_eq!(h.last().map(|c| c.at_ms), Some(100 + changes as i64 - 1));
    assert_eq!(
        h.first().map(|c| c.at_ms),
        Some(100 + (changes - HISTORY_PER_NODE) as i64),
        "history: the oldest are dropped first"
    );
    assert!(
        h.windows(2)
            .all(|w| w[0].at_ms < w[1].at_ms && w[0].to == w[1].from)
    );

    // Deleting a node deletes its history.
    st.delete_node(u).await.unwrap();
    assert!(st.node_history(u).await.unwrap().is_empty());
    assert_eq!(st.node_history(other).await.unwrap().len(), 1);
}

pub(super) async fn search<S: Store>(st: S) {
    let a = Uuid::parse_str("0a1b2c3d-0000-4000-8000-000000000001").unwrap();
    let b = Uuid::parse_str("ffee0000-0000-4000-8000-000000000002").unwrap();
    let c = Uuid::parse_str("12345678-0000-4000-8000-000000000003").unwrap();
    for (u, name) in [
        (a, Some("Rack7-Node01")),
        (b, Some("rack8-node02")),
        (c, None),
    ] {
        let mut n: Node = sample_node(u, name);
        if u == b {
            n.status.provision_state = ProvisionState::Active;
        }
        st.create_node(&n).await.unwrap();
    }
    let q = |text: &str, state: Option<ProvisionState>| {
        let f = NodeFilter {
            search: Some(text.to_owned()),
            provision_state: state,
            ..Default::default()
        };
        let st = &st;
        async move {
            st.list_node_views(&f, 100, None)
                .await
                .unwrap()
                .into_iter()
                .map(|n| n.uuid())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(q("node0", None).await, [a, b], "search: name substring");
    assert_eq!(q("RACK7", None).await, [a], "search: case-insensitive");
    assert_eq!(
        q("0a1b2c3d-00", None).await,
        [a],
        "search: uuid prefix with dashes"
    );
    assert_eq!(q("ffee", None).await, [b], "search: uuid hex");
    assert_eq!(
        q("12345678", None).await,
        [c],
        "search: a node without a name"
    );
    assert_eq!(q("node", Some(ProvisionState::Active)).await, [b]);
    assert!(q("%", None).await.is_empty(), "search: no wildcards");
    assert_eq!(q("  ", None).await.len(), 3, "search: blank matches all");
    // Paging over a search.
    let f = NodeFilter {
        search: Some("node".into()),
        ..Default::default()
    };
    let p1 = st.list_node_views(&f, 1, None).await.unwrap();
    let p2 = st.list_node_views(&f, 1, Some(p1[0].uuid())).await.unwrap();
    assert_eq!((p1[0].uuid(), p2[0].uuid()), (a, b));
}
