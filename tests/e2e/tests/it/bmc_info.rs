//! `vmedia bmc info`, the real binary, against `irmc-sim --report` with the real iRMC S4
//! report: it prints the model and firmware, also from a report without the
//! ManagementControllers section (read from `Root@OS`); against a report that names no
//! iRMC anywhere it exits non-zero with a one-line reason.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../irmc-sim/fixtures/report-s4-7.65F-rx300s8.xml")
}

/// Starts one simulated iRMC serving `report` over HTTPS on 443; returns it, its address
/// and the CA file that verifies it.
async fn sim(
    report: &std::path::Path,
    dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, String, std::path::PathBuf)> {
    let bin = testkit::default_bin_dir()?;
    let base = testkit::random_sim_base();
    let ca = dir.join("ca.pem");
    let mut child = tokio::process::Command::new(bin.join("irmc-sim"))
        .args([
            "--count",
            "1",
            "--https-port",
            "443",
            "--username",
            "admin",
            "--password",
            "s3cret<&\"",
        ])
        .arg("--base-address")
        .arg(base.to_string())
        .arg("--report")
        .arg(report)
        .arg("--cert-out")
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    )
    .lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await? {
            if l.starts_with("ready") {
                return Ok(());
            }
        }
        anyhow::bail!("irmc-sim exited before it was ready")
    })
    .await??;
    Ok((child, base.to_string(), ca))
}

async fn bmc_info(address: &str, ca: &std::path::Path) -> anyhow::Result<std::process::Output> {
    let bin = testkit::default_bin_dir()?;
    Ok(tokio::process::Command::new(bin.join("vmedia"))
        .args([
            "bmc",
            "info",
            "--username",
            "admin",
            "--password",
            "s3cret<&\"",
            "--address",
            address,
        ])
        .arg("--ca")
        .arg(ca)
        .output()
        .await?)
}

#[tokio::test]
async fn bmc_info_reads_the_real_s4_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, address, ca) = sim(&fixture(), dir.path()).await?;
    let out = bmc_info(&address, &ca).await?;
    let _ = child.kill().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "vmedia bmc info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(stdout.contains("iRMC S4"), "{stdout}");
    anyhow::ensure!(stdout.contains("7.65F"), "{stdout}");
    anyhow::ensure!(!stdout.contains("s3cret"), "the password is printed");
    Ok(())
}

#[tokio::test]
async fn bmc_info_without_management_controllers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let full = std::fs::read_to_string(fixture())?;
    let start = full
        .find("<ManagementControllers")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?;
    let end = full
        .find("</ManagementControllers>")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?
        + "</ManagementControllers>".len();
    let stripped_doc = format!("{}{}", &full[..start], &full[end..]);

    // The Root element still says OS="iRMC S4" Version="7.65F": read from there.
    let stripped = dir.path().join("report.xml");
    std::fs::write(&stripped, &stripped_doc)?;
    let (mut child, address, ca) = sim(&stripped, dir.path()).await?;
    let out = bmc_info(&address, &ca).await?;
    let _ = child.kill().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "Root@OS fallback failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        stdout.contains("iRMC S4") && stdout.contains("7.65F"),
        "{stdout}"
    );

    // Nothing names the iRMC (no section, no Root attributes, no Summary): one line.
    let s = stripped_doc
        .find("<Summary>")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?;
    let e = stripped_doc
        .find("</Summary>")
        .ok_or_else(|| anyhow::anyhow!("fixture changed"))?
        + "</Summary>".len();
    let bare = format!("{}{}", &stripped_doc[..s], &stripped_doc[e..]).replacen(
        " Version=\"7.65F\" OS=\"iRMC S4\"",
        "",
        1,
    );
    let nameless = dir.path().join("nameless.xml");
    std::fs::write(&nameless, bare)?;
    let (mut child, address, ca) = sim(&nameless, dir.path()).await?;
    let out = bmc_info(&address, &ca).await?;
    let _ = child.kill().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        !out.status.success(),
        "succeeded with a report that names no iRMC"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(lines.len() == 1, "expected one line, got: {stderr}");
    anyhow::ensure!(lines[0].contains("ManagementControllers"), "{stderr}");
    anyhow::ensure!(lines[0].contains("Root@OS"), "{stderr}");
    anyhow::ensure!(
        lines[0].contains(&address),
        "the reason does not name the BMC: {stderr}"
    );
    anyhow::ensure!(!stderr.contains("s3cret"), "the password is printed");
    Ok(())
}
