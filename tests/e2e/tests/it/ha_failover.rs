//! Three coordinator replicas on one PostgreSQL; the leader is SIGKILLed mid-deploy of 50
//! nodes. A follower takes the lead, the agents follow it, and every node ends `active`.
//! Prints the measured take-over time (SIGKILL -> the new leader answers a leader-only call).

use std::time::{Duration, Instant};

use coordinator_client::conn;
use testkit::{self as fleet, Postgres};
use vmedia_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_deploy_loses_no_node() -> anyhow::Result<()> {
    if Postgres::bin_dir().is_none() {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is required in CI"
        );
        eprintln!("skipping: PostgreSQL not installed");
        return Ok(());
    }
    let (mut spec, dir) = e2e::spec(50, 2)?;
    let pg = Postgres::start(&dir.path().join("pg"))?;
    spec.sim_args = vec!["--boot-delay".into(), "1s".into()];
    spec.coordinators = 3;
    spec.database_url = Some(pg.url("postgres"));
    let mut f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        let urls = f.coordinator_urls();
        let t0 = Instant::now();
        loop {
            let nodes = fleet::list_all(&urls, &f.access).await?;
            let active = nodes.iter().filter(|n| n.provision_state == "active").count();
            let in_flight = nodes
                .iter()
                .filter(|n| n.provision_state == "wait call-back" || n.provision_state == "deploying")
                .count();
            if in_flight >= 10 && active < nodes.len() {
                break;
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(120), "deploys never got under way");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leader = f
            .leader_index()
            .await
            .ok_or_else(|| anyhow::anyhow!("no leader before the kill"))?;
        // A follower serves reads itself and sends writes to the leader.
        let follower = (leader + 1) % f.replica_count();
        let mut c = conn::clients(&f.replica_url(follower), &f.access).await?;
        let shown = c.nodes.get_node(pb::GetNodeRequest { node: uuids[0].clone() }).await?.into_inner();
        anyhow::ensure!(shown.driver_info.get("irmc_password").map(String::as_str) == Some("******"));
        let e = c
            .nodes
            .set_provision_state(pb::SetProvisionStateRequest { node: uuids[0].clone(), target: "undeploy".into() })
            .await
            .unwrap_err();
        anyhow::ensure!(e.code() == tonic::Code::Unavailable, "{e:?}");
        anyhow::ensure!(
            e.message().contains(&format!("not the leader; leader is {}", f.replica_url(leader))),
            "{}",
            e.message()
        );
        let killed_at = Instant::now();
        f.kill_replica(leader).await;
        let new_leader = loop {
            if let Some(i) = f.leader_index().await {
                break i;
            }
            anyhow::ensure!(killed_at.elapsed() < Duration::from_secs(60), "no replica took the lead");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let takeover = killed_at.elapsed();
        println!("leader take-over: replica {leader} killed, replica {new_leader} leads after {takeover:?}");
        anyhow::ensure!(new_leader != leader);

        let nodes = fleet::wait_until(&urls, &f.access, e2e::SETTLE, |n| n.provision_state == "active" || fleet::is_failed(n), |_| {})
            .await?;
        anyhow::ensure!(nodes.len() == uuids.len(), "lost nodes: {} of {}", nodes.len(), uuids.len());
        let failed: Vec<_> = nodes.iter().filter(|n| n.provision_state != "active").collect();
        anyhow::ensure!(failed.is_empty(), "nodes not active after the fail-over: {failed:?}");
        println!("all {} nodes active {:?} after the leader was killed", nodes.len(), killed_at.elapsed());
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let bmc_password = f.spec.bmc_password.clone();
    f.shutdown().await;
    drop(pg);
    result?;
    // The BMC password is sealed in PostgreSQL too: no byte of the cluster (tables, WAL)
    // holds it in clear.
    let mut stack = vec![dir.path().join("pg")];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                files += 1;
                anyhow::ensure!(
                    !bytes
                        .windows(bmc_password.len())
                        .any(|w| w == bmc_password.as_bytes()),
                    "{} holds the BMC password in clear",
                    p.display()
                );
            }
        }
    }
    anyhow::ensure!(
        files > 100,
        "expected a PostgreSQL cluster, read {files} files"
    );
    Ok(())
}
