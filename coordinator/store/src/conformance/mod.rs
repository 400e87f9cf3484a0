//! The backend-independent test suite. Each backend's tests call [`run_all`] with a
//! factory; the suite panics (a test failure) on the first broken contract, with a
//! message naming the check.
//!
//! The factory `make(k)` opens store number `k`: the first call for a given `k`
//! must give an EMPTY store; a later call with the same `k` (after every earlier
//! handle was dropped) must reopen the SAME data. Different `k` never share data.
//!
//! The checks, by topic: `nodes.rs` (single nodes, reopening), `listing.rs` (pages,
//! filters, views, in-flight, agents), `writes.rs` (status writes and bulk), `history.rs` (state-change
//! history, search).

mod history;
mod listing;
mod nodes;
mod writes;

use std::collections::BTreeMap;
use std::future::Future;

use coordinator_core::{
    DeployStep, JobIntent, JobKind, Node, NodeSpec, NodeStatus, PowerState, ProvisionState, Secret,
};
use uuid::Uuid;

use crate::Store;
use history::{history, search};
use listing::{agents, filters, in_flight, pagination, views};
use nodes::{crud, durability_check, durability_write, get_many, token_changes, uniqueness};
use writes::{batch_atomicity, bulk, concurrent_writers, optimistic_concurrency};

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
    history(make(14).await).await;
    search(make(15).await).await;
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

pub(super) fn in_flight_status(agent: &str) -> NodeStatus {
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

pub(super) fn uuids(nodes: &[Node]) -> Vec<Uuid> {
    nodes.iter().map(Node::uuid).collect()
}
