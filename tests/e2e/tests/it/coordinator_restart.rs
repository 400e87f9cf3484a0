//! The coordinator is SIGKILLed mid-deploy and restarted on the same data directory: every
//! node still ends `active`, none is lost or stuck.

use std::time::{Duration, Instant};

use testkit as fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_mid_deploy_resumes_every_node() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(30, 2)?;
    spec.sim_args = vec!["--boot-delay".into(), "1s".into()];
    let mut f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        let t0 = Instant::now();
        loop {
            let nodes = f.list_all().await?;
            let active = nodes
                .iter()
                .filter(|n| n.provision_state == "active")
                .count();
            let in_flight = nodes
                .iter()
                .filter(|n| {
                    n.provision_state == "wait call-back" || n.provision_state == "deploying"
                })
                .count();
            if in_flight >= 5 && active < nodes.len() {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "deploys never got under way"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        f.kill_coordinator().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        f.start_coordinator().await?;

        let nodes = fleet::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || fleet::is_failed(n),
            |_| {},
        )
        .await?;
        anyhow::ensure!(
            nodes.len() == uuids.len(),
            "lost nodes: {} of {}",
            nodes.len(),
            uuids.len()
        );
        let failed: Vec<_> = nodes
            .iter()
            .filter(|n| n.provision_state != "active")
            .collect();
        anyhow::ensure!(
            failed.is_empty(),
            "nodes not active after the restart: {failed:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}
