//! Measurements (ignored by default; run with `cargo test -p coordinator --release --test
//! it -- scale:: --ignored --nocapture`): coordinator RSS per enrolled node and API latency.
//! `SCALE_NODES` sets the fleet size (default 100000).

use std::time::{Duration, Instant};

use vmedia_proto::v1 as pb;

use crate::common::{Coordinator, node_req};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: minutes of work"]
async fn rss_per_node_and_latency() {
    let n: u32 = std::env::var("SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(dir.path(), &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = rss_kib(coord.pid());

    // Enrol in bulk: 64 concurrent streams of CreateNode over one connection.
    let nodes = coord.nodes().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let workers = 64;
    for w in 0..workers {
        let mut c = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while i < n {
                let t = Instant::now();
                c.create_node(node_req(i)).await.unwrap();
                lat.push(t.elapsed());
                i += workers;
            }
            lat
        }));
    }
    let mut create_lat = Vec::new();
    for t in tasks {
        create_lat.extend(t.await.unwrap());
    }
    let enroll_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_enroll = rss_kib(coord.pid());

    // GetNode latency, one request at a time (pure round trip).
    let mut c = nodes.clone();
    let mut get_lat = Vec::new();
    for i in 0..2000u32 {
        let t = Instant::now();
        c.get_node(pb::GetNodeRequest {
            node: format!("node-{}", (i * 7919) % n),
        })
        .await
        .unwrap();
        get_lat.push(t.elapsed());
    }
    // CreateNode latency, one at a time.
    let mut create_serial = Vec::new();
    for i in 0..2000u32 {
        let t = Instant::now();
        c.create_node(node_req(n + i)).await.unwrap();
        create_serial.push(t.elapsed());
    }
    create_lat.sort();
    get_lat.sort();
    create_serial.sort();

    // Restart: the engine rebuilds its placement index from every node.
    coord.kill();
    let coord2 = Coordinator::start(dir.path(), &[]);
    let mut c2 = coord2.nodes().await;
    c2.get_node(pb::GetNodeRequest {
        node: "node-1".into(),
    })
    .await
    .unwrap();
    let after_restart = rss_kib(coord2.pid());
    let db_bytes = std::fs::metadata(dir.path().join("coordinator.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);

    println!("SCALE nodes={n}");
    println!(
        "SCALE enroll: {enroll_s:.1} s ({:.0} creates/s, 64 concurrent)",
        f64::from(n) / enroll_s
    );
    println!(
        "SCALE rss: base {base} KiB, after enroll {after_enroll} KiB => {:.0} B/node; after restart {after_restart} KiB => {:.0} B/node",
        (after_enroll.saturating_sub(base) * 1024) as f64 / f64::from(n),
        (after_restart.saturating_sub(base) * 1024) as f64 / f64::from(n)
    );
    println!("SCALE db file: {db_bytes} bytes");
    println!(
        "SCALE CreateNode (64 concurrent) p50 {:?} p99 {:?}",
        percentile(&create_lat, 0.5),
        percentile(&create_lat, 0.99)
    );
    println!(
        "SCALE CreateNode (serial) p50 {:?} p99 {:?}",
        percentile(&create_serial, 0.5),
        percentile(&create_serial, 0.99)
    );
    println!(
        "SCALE GetNode (serial) p50 {:?} p99 {:?}",
        percentile(&get_lat, 0.5),
        percentile(&get_lat, 0.99)
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is field 3; utime 14, stime 15 (1-based).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

async fn count_in_state(
    nodes: &mut vmedia_proto::v1::nodes_client::NodesClient<tonic::transport::Channel>,
    state: &str,
) -> usize {
    let mut marker = String::new();
    let mut n = 0;
    loop {
        let page = nodes
            .list_nodes(pb::ListNodesRequest {
                provision_state: state.into(),
                limit: 10_000,
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        n += page.nodes.len();
        if page.next_marker.is_empty() {
            return n;
        }
        marker = page.next_marker;
    }
}

async fn bulk_all(
    nodes: &mut vmedia_proto::v1::nodes_client::NodesClient<tonic::transport::Channel>,
    from: &str,
    target: &str,
) {
    nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            selector: Some(pb::NodeSelector {
                provision_state: from.into(),
                ..Default::default()
            }),
            target: target.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn wait_count(
    nodes: &mut vmedia_proto::v1::nodes_client::NodesClient<tonic::transport::Channel>,
    state: &str,
    want: usize,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count_in_state(nodes, state).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "only {n}/{want} nodes {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deploy throughput with 16 fake agents (in this process, jobs answered at once).
/// `DEPLOY_NODES` (default 2000). Reports wall time and coordinator CPU per deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn deploy_throughput() {
    let n: u32 = std::env::var("DEPLOY_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--callback-timeout", "30m"]);
    let mut agents = Vec::new();
    for i in 0..16 {
        let mut b = crate::common::AgentBehaviour::new(&format!("agent-{i:02}"), 64);
        b.job_time = Duration::from_millis(1);
        agents.push(crate::common::FakeAgent::connect(coord.channel().await, b).await);
    }
    let mut nodes = coord.nodes().await;
    let mut tasks = Vec::new();
    for w in 0..32u32 {
        let mut c = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                c.create_node(node_req(i)).await.unwrap();
                i += 32;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    bulk_all(&mut nodes, "enroll", "manage").await;
    wait_count(
        &mut nodes,
        "manageable",
        n as usize,
        Duration::from_secs(300),
    )
    .await;
    bulk_all(&mut nodes, "manageable", "provide").await;
    wait_count(
        &mut nodes,
        "available",
        n as usize,
        Duration::from_secs(300),
    )
    .await;

    let cpu0 = cpu_ticks(coord.pid());
    let t0 = Instant::now();
    bulk_all(&mut nodes, "available", "deploy").await;
    let accepted = t0.elapsed();
    wait_count(&mut nodes, "active", n as usize, Duration::from_secs(600)).await;
    let wall = t0.elapsed();
    let cpu_s = (cpu_ticks(coord.pid()) - cpu0) as f64 / 100.0;
    println!(
        "DEPLOY nodes={n} agents=16x64: bulk deploy accepted in {accepted:?}; all active in {wall:?}"
    );
    println!(
        "DEPLOY coordinator CPU {cpu_s:.2} s => {:.2} ms per deploy (includes serving the progress polls)",
        cpu_s * 1000.0 / f64::from(n)
    );
}
