//! `vmedia demo` ended by SIGTERM (what `timeout`, `kill` and CI runners send) stops every
//! process it started, as Ctrl-C does: once while it deploys, once while it keeps the
//! system running (`--keep`).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

/// Pids of live processes whose command line mentions `dir` (the demo's work directory
/// is on the command line of every process it starts).
fn processes_using(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Starts the demo, waits for a stderr line containing `marker`, sends SIGTERM, and
/// checks the exit status and that nothing it started survives.
async fn sigterm_after(marker: &str, keep: bool) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("vmedia-sigterm-")
        .tempdir()?;
    let bin = testkit::default_bin_dir()?.join("vmedia");
    let mut cmd = Command::new(bin);
    cmd.args(["demo", "--nodes", "6", "--shares", "2", "--work-dir"])
        .arg(work.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if keep {
        cmd.arg("--keep");
    } else {
        // Slow BMCs keep the deploy going while the signal arrives.
        cmd.arg("--sim-arg=--fault").arg("--sim-arg=latency=1s");
    }
    let mut demo = cmd.spawn()?;
    let pid = demo.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let mut lines = BufReader::new(
        demo.stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?,
    )
    .lines();
    let seen = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(l) = lines.next_line().await? {
            if l.contains(marker) {
                return Ok::<_, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await??;
    anyhow::ensure!(seen, "the demo ended before printing {marker:?}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The demo itself, the coordinator, two agents and a simulator.
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_using(work.path()).len() < 5 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the demo did not start its processes: {:?}",
            processes_using(work.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait()).await??;
    anyhow::ensure!(
        status.code() == Some(if keep { 0 } else { 143 }),
        "exit status {status}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_using(work.path());
        if left.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "still running after SIGTERM: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_deploy_stops_every_process() -> anyhow::Result<()> {
    sigterm_after("starting 1 coordinator", false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_keep_stops_every_process() -> anyhow::Result<()> {
    sigterm_after("the system keeps running", true).await
}
