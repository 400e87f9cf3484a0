//! Deploys that cannot work fail clearly, without costing the rest of the system:
//! wrong share credentials (the BMC cannot mount the media, the server never boots the
//! ramdisk) and a ramdisk that never calls back both end `deploy failed` at the call-back
//! timeout with a `last_error` that names the node and says what happened.

use std::time::Duration;

use testkit as fleet;

async fn deploy_expecting_failure(
    spec: testkit::FleetSpec,
) -> anyhow::Result<Vec<fleet::NodeSummary>> {
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        fleet::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || fleet::is_failed(n),
            |_| {},
        )
        .await
    }
    .await;
    f.shutdown().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_share_credentials_fail_the_boot_clearly() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(1, 1)?;
    spec.callback_timeout = Duration::from_secs(6);
    spec.sim_share_password = "not-what-the-agent-writes".into();
    let nodes = deploy_expecting_failure(spec).await?;
    let n = &nodes[0];
    anyhow::ensure!(
        n.provision_state == "deploy failed",
        "ended {}",
        n.provision_state
    );
    anyhow::ensure!(
        n.last_error.contains(&n.uuid),
        "last_error does not name the node: {}",
        n.last_error
    );
    anyhow::ensure!(
        n.last_error
            .to_lowercase()
            .contains("timeout reached while waiting for callback"),
        "last_error: {}",
        n.last_error
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramdisk_that_never_calls_back_times_out() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(1, 1)?;
    spec.callback_timeout = Duration::from_secs(5);
    // The server boots, but its ramdisk hangs before the lookup.
    spec.sim_args = vec!["--boot-delay".into(), "3600s".into()];
    let nodes = deploy_expecting_failure(spec).await?;
    let n = &nodes[0];
    anyhow::ensure!(
        n.provision_state == "deploy failed",
        "ended {}",
        n.provision_state
    );
    anyhow::ensure!(
        n.last_error.contains(&format!(
            "Timeout reached while waiting for callback for node {}",
            n.uuid
        )),
        "last_error: {}",
        n.last_error
    );
    Ok(())
}
