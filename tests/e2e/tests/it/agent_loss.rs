//! 50 nodes over 3 share agents; one agent is SIGKILLed mid-deploy. Its nodes are re-placed
//! on the survivors and every node still ends `active`. The iRMCs are spread over three
//! simulator processes, as in a large demo fleet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use testkit as fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_survive_a_killed_agent() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(50, 3)?;
    // A slow enough ramdisk boot that the kill lands while deploys are in flight.
    spec.sim_args = vec!["--boot-delay".into(), "2s".into()];
    // Three simulator processes (20 + 20 + 10 iRMCs), as a large demo fleet runs them.
    spec.nodes_per_sim = 20;
    let mut f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;

        // Wait until deploys are under way on every share, then kill share-1.
        let t0 = Instant::now();
        let before = loop {
            let nodes = f.list_all().await?;
            let in_flight = nodes
                .iter()
                .filter(|n| n.provision_state == "wait call-back")
                .count();
            if in_flight >= 5 {
                break nodes;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "deploys never got under way"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let victims: BTreeSet<String> = before
            .iter()
            .filter(|n| n.share == fleet::share_id(1))
            .map(|n| n.uuid.clone())
            .collect();
        anyhow::ensure!(!victims.is_empty(), "share-1 got no nodes");
        f.kill_agent(1).await?;

        let nodes = fleet::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || fleet::is_failed(n),
            |_| {},
        )
        .await?;
        let failed: Vec<_> = nodes
            .iter()
            .filter(|n| n.provision_state != "active")
            .collect();
        anyhow::ensure!(
            failed.is_empty(),
            "nodes not active after the agent loss: {failed:?}"
        );
        for n in &nodes {
            anyhow::ensure!(
                n.share != fleet::share_id(1),
                "{} still placed on the dead agent",
                n.name
            );
        }
        // Only the dead agent's nodes moved among those whose media were already on a
        // share. A deploy still queued for a boot slot has nothing on its share yet, and
        // work-conserving admission may hand it a free slot elsewhere: that move is free.
        for n in &before {
            let settled = n.provision_state == "wait call-back" || n.provision_state == "active";
            if settled && !victims.contains(&n.uuid) {
                let now = nodes
                    .iter()
                    .find(|m| m.uuid == n.uuid)
                    .map(|m| m.share.clone());
                anyhow::ensure!(
                    now.as_deref() == Some(n.share.as_str()),
                    "{} moved from {} to {:?}",
                    n.name,
                    n.share,
                    now
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}
