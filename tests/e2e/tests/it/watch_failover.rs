//! `vmedia watch` (the real binary, `--output json`) against three coordinator replicas on
//! one PostgreSQL while nodes deploy; the leader, which serves the watch, is SIGKILLed
//! mid-deploy. The watch keeps running, reconnects to the new leader, resumes from the last
//! event it printed, and its output ends up holding every node's final state (`active`):
//! nothing is lost across the leader change. The watch is frozen (SIGSTOP) from just before
//! the kill until every node is active, so those final states can only reach it through
//! the resume (`since_ms`), never as live events.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::{self as fleet, Postgres, default_bin_dir};
use tokio::io::{AsyncBufReadExt as _, BufReader};

type Lines = Arc<Mutex<Vec<String>>>;

fn collect(r: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut r = BufReader::new(r).lines();
        while let Ok(Some(l)) = r.next_line().await {
            if let Ok(mut v) = sink.lock() {
                v.push(l);
            }
        }
    });
    lines
}

fn snapshot(l: &Lines) -> Vec<String> {
    l.lock().map(|v| v.clone()).unwrap_or_default()
}

/// The last state the watch printed per node uuid, from its JSON lines.
fn last_states(lines: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| anyhow::anyhow!("not JSON: {l:?}: {e}"))?;
        let node = v["node_uuid"].as_str().unwrap_or_default();
        if !node.is_empty() {
            out.insert(
                node.to_owned(),
                v["provision_state"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_leader_kill_without_losing_events() -> anyhow::Result<()> {
    if Postgres::bin_dir().is_none() {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is required in CI"
        );
        eprintln!("skipping: PostgreSQL not installed");
        return Ok(());
    }
    let bin = default_bin_dir()?.join("vmedia");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it first",
        bin.display()
    );
    let (mut spec, dir) = e2e::spec(20, 2)?;
    let pg = Postgres::start(&dir.path().join("pg"))?;
    spec.sim_args = vec!["--boot-delay".into(), "1s".into()];
    spec.coordinators = 3;
    spec.database_url = Some(pg.url("postgres"));
    let mut f = e2e::start(spec).await?;
    let mut watch = None;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        let pki = f
            .pki
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the fleet runs without TLS"))?;
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("VMEDIA_COORDINATOR", f.coordinator_urls())
            .env("VMEDIA_CA_FILE", &pki.ca_cert)
            .env("VMEDIA_TOKEN_FILE", &pki.admin_token)
            .args(["watch", "--initial", "--output", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = collect(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        );
        let err = collect(
            child
                .stderr
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stderr"))?,
        );
        watch = Some(child);

        // `--initial` prints every node first: then the watch is subscribed.
        let t0 = Instant::now();
        while last_states(&snapshot(&out))?.len() < uuids.len() {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "the watch printed no initial state; stderr: {:?}",
                snapshot(&err)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        f.bulk(&uuids, "deploy").await?;
        let urls = f.coordinator_urls();
        let t0 = Instant::now();
        loop {
            let nodes = fleet::list_all(&urls, &f.access).await?;
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
        let leader = f
            .leader_index()
            .await
            .ok_or_else(|| anyhow::anyhow!("no leader before the kill"))?;
        let printed_before_kill = snapshot(&out).len();
        let pid = watch
            .as_ref()
            .and_then(tokio::process::Child::id)
            .ok_or_else(|| anyhow::anyhow!("the watch exited before the kill"))?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
        f.kill_replica(leader).await;

        let nodes = fleet::wait_until(
            &urls,
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
            "nodes not active after the fail-over: {failed:?}"
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)?;

        // Every node's final state reaches the watch (bounded wait: the watch may still be
        // backing off when the last node turns active).
        let want: HashSet<&str> = uuids.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        loop {
            let states = last_states(&snapshot(&out))?;
            let missing: Vec<_> = want
                .iter()
                .filter(|u| states.get(**u).map(String::as_str) != Some("active"))
                .collect();
            if missing.is_empty() {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < e2e::SETTLE,
                "the watch never showed {} nodes active: {missing:?}; stderr: {:?}",
                missing.len(),
                snapshot(&err)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let child = watch.as_mut().ok_or_else(|| anyhow::anyhow!("no watch"))?;
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "the watch exited; stderr: {:?}",
            snapshot(&err)
        );
        let notes = snapshot(&err);
        anyhow::ensure!(
            notes.iter().any(|l| l.contains("resuming")),
            "the watch never noticed the leader change; stderr: {notes:?}"
        );
        println!(
            "watch: {} events before the kill, {} in all; notices: {notes:?}",
            printed_before_kill,
            snapshot(&out).len()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(mut w) = watch {
        let _ = w.start_kill();
        let _ = w.wait().await;
    }
    f.shutdown().await;
    drop(pg);
    result
}
