//! One node from enroll to `active`, checked from every side: the coordinator's view, the
//! simulated server (booted the deploy ISO, wrote the image, booted from disk) and the share
//! (the per-node parameter image is gone afterwards; the cached images stay).

use std::time::Duration;

use testkit as fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_enroll_to_active() -> anyhow::Result<()> {
    let (spec, _dir) = e2e::spec(1, 1)?;
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        let nodes = fleet::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || fleet::is_failed(n),
            |_| {},
        )
        .await?;
        let n = &nodes[0];
        anyhow::ensure!(
            n.provision_state == "active",
            "node ended {} ({})",
            n.provision_state,
            n.last_error
        );
        anyhow::ensure!(
            n.last_error.is_empty(),
            "active node keeps an error: {}",
            n.last_error
        );
        anyhow::ensure!(n.share == fleet::share_id(1), "placed on {:?}", n.share);

        // The simulated server runs the deployed OS from its disk.
        let sim = f.sim_node(0).await?;
        let text = sim.to_string();
        anyhow::ensure!(
            text.contains(&f.image_sha256),
            "the simulated disk does not hold the image {}: {text}",
            f.image_sha256
        );
        // No per-node file is left on the share once the node is active.
        let share = fleet::share_dir(&f.spec.work_dir, 1);
        let leftovers: Vec<String> = walk(&share)
            .into_iter()
            .filter(|p| p.contains(&uuids[0]))
            .collect();
        anyhow::ensure!(
            leftovers.is_empty(),
            "per-node files left on the share: {leftovers:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    result
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
