//! `manage` validates each BMC before a node may deploy: an iRMC S3 report, a report
//! without the iRMC section whose `Root@OS` names an S3, and an iRMC without a licence
//! key each leave the node in `enroll` with one line that names node, BMC and the
//! problem; `vmedia node validate` (the real CLI) shows that line in its `bmc` row, and
//! a deploy is refused. A current S4 passes and its row names the media path.

use std::process::Stdio;

fn fixture() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../irmc-sim/fixtures/report-s4-7.65F-rx300s8.xml"),
    )?)
}

/// `doc` written next to the fleet; the `--report` arguments that serve it.
fn report_args(dir: &std::path::Path, doc: String) -> anyhow::Result<Vec<String>> {
    let path = dir.join("report.xml");
    std::fs::write(&path, doc)?;
    Ok(vec!["--report".into(), path.display().to_string()])
}

/// Starts a one-node fleet with `sim_args`, runs `manage`, and returns the node's
/// summary and the `vmedia node validate --output json` rows.
async fn manage_one(
    sim_args: impl FnOnce(&std::path::Path) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<(testkit::NodeSummary, serde_json::Value, bool)> {
    let (mut spec, dir) = e2e::spec(1, 1)?;
    let extra = sim_args(dir.path())?;
    spec.sim_args.extend(extra);
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.bulk(&uuids, "manage").await?;
        let nodes = f
            .wait_until(
                e2e::SETTLE,
                |n| {
                    n.provision_state == "manageable"
                        || (n.provision_state == "enroll" && !n.last_error.is_empty())
                },
                |_| {},
            )
            .await?;
        let node = nodes
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no node"))?;
        let pki = f
            .pki
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the fleet runs without TLS"))?;
        let out = tokio::process::Command::new(testkit::default_bin_dir()?.join("vmedia"))
            .env_clear()
            .env("VMEDIA_COORDINATOR", f.coordinator_urls())
            .env("VMEDIA_CA_FILE", &pki.ca_cert)
            .env("VMEDIA_TOKEN_FILE", &pki.admin_token)
            .args(["node", "validate", &node.uuid, "--output", "json"])
            .stdin(Stdio::null())
            .output()
            .await?;
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow::anyhow!(
                "node validate printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        // A node that did not pass cannot deploy.
        let deploy_refused = f.bulk(&uuids, "deploy").await.is_err();
        Ok((node, rows, deploy_refused))
    }
    .await;
    f.shutdown().await;
    drop(dir);
    result
}

fn bmc_row(rows: &serde_json::Value) -> anyhow::Result<(bool, String)> {
    let row = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["interface"] == "bmc"))
        .ok_or_else(|| anyhow::anyhow!("no bmc row in {rows}"))?;
    Ok((
        row["result"].as_bool().unwrap_or(true),
        row["reason"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn assert_refused(
    case: &str,
    got: (testkit::NodeSummary, serde_json::Value, bool),
    wants: &[&str],
) -> anyhow::Result<()> {
    let (node, rows, deploy_refused) = got;
    anyhow::ensure!(
        node.provision_state == "enroll",
        "{case}: ended {}",
        node.provision_state
    );
    anyhow::ensure!(deploy_refused, "{case}: deploy was accepted");
    let (ok, reason) = bmc_row(&rows)?;
    anyhow::ensure!(!ok, "{case}: bmc row passed: {reason}");
    anyhow::ensure!(!reason.contains('\n'), "{case}: not one line: {reason}");
    anyhow::ensure!(reason.contains(&node.uuid), "{case}: no node: {reason}");
    anyhow::ensure!(reason.contains("127."), "{case}: no BMC: {reason}");
    for w in wants {
        anyhow::ensure!(reason.contains(w), "{case}: {w:?} missing: {reason}");
    }
    anyhow::ensure!(
        node.last_error == reason,
        "{case}: last_error {}",
        node.last_error
    );
    eprintln!("{case}: {reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_root_os_s3_and_no_licence_are_refused_at_manage() -> anyhow::Result<()> {
    let full = fixture()?;
    let s3 = full
        .replacen("OS=\"iRMC S4\"", "OS=\"iRMC S3\"", 1)
        .replacen("Version=\"7.65F\"", "Version=\"3.77A\"", 1)
        .replacen("<iRMC Name=\"iRMC S4\">", "<iRMC Name=\"iRMC S3\">", 1)
        .replacen(
            "<Firmware>7.65F</Firmware>",
            "<Firmware>3.77A</Firmware>",
            1,
        );
    anyhow::ensure!(s3.contains("Name=\"iRMC S3\""), "fixture changed");
    let got = manage_one(|d| report_args(d, s3.clone())).await?;
    assert_refused("S3 report", got, &["iRMC S3", "S4 or later"])?;

    let start = s3
        .find("<ManagementControllers")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?;
    let end = s3
        .find("</ManagementControllers>")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?
        + "</ManagementControllers>".len();
    let root_only = format!("{}{}", &s3[..start], &s3[end..]);
    let got = manage_one(|d| report_args(d, root_only.clone())).await?;
    assert_refused("Root@OS S3", got, &["iRMC S3", "3.77A", "S4 or later"])?;

    let got = manage_one(|_| Ok(vec!["--no-licence".into()])).await?;
    assert_refused("no licence", got, &["licence"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_s4_passes_and_names_its_media_path() -> anyhow::Result<()> {
    let (node, rows, _) = manage_one(|_| Ok(vec!["--firmware".into(), "9.62F".into()])).await?;
    anyhow::ensure!(
        node.provision_state == "manageable",
        "ended {} ({})",
        node.provision_state,
        node.last_error
    );
    let (ok, reason) = bmc_row(&rows)?;
    anyhow::ensure!(ok, "{reason}");
    anyhow::ensure!(reason.contains("iRMC S4 9.62F"), "{reason}");
    anyhow::ensure!(reason.contains("redfish-hd"), "{reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_bmcs_are_waited_out_and_the_deploy_succeeds() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(4, 1)?;
    // Every power action and media connect makes the iRMC busy for 400 ms: the agent's
    // next command (the CD connect after the HD/FD one, the power-on after it) is
    // refused with SCCI status 5 and sent again.
    spec.sim_args.extend(["--busy-ms".into(), "400".into()]);
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        let nodes = f
            .wait_until(
                e2e::SETTLE,
                |n| n.provision_state == "active" || testkit::is_failed(n),
                |_| {},
            )
            .await?;
        for n in &nodes {
            anyhow::ensure!(
                n.provision_state == "active",
                "{} ended {} ({})",
                n.name,
                n.provision_state,
                n.last_error
            );
        }
        let counters = f.sim_counters().await?;
        let refused = counters["total"]["busy_refused"].as_u64().unwrap_or(0);
        anyhow::ensure!(refused > 0, "no command met a busy iRMC: {counters}");
        eprintln!("4 deploys active; {refused} SCCI commands refused as busy and sent again");
        Ok(())
    }
    .await;
    f.shutdown().await;
    result
}
