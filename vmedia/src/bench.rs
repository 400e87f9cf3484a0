//! `vmedia bench`: the numbers that say whether the system scales, printed, not asserted.
//!
//! Sections (all by default; `--only NAME` picks some):
//! - `throughput`: N nodes over M share agents with zero-latency simulated iRMCs, all
//!   processes on this machine. Wall time and deploys per second; CPU milliseconds per
//!   deploy for the coordinator, the agents and the simulator (from /proc, per process);
//!   BMC requests per deploy (the simulator's counters) beside Ironic's sequence; bytes
//!   written (the agents' /proc write counters) and allocated on the shares per node;
//!   balance (max share load over the mean); movement when one agent is killed.
//! - `memory`: a coordinator alone, RSS before and after enrolling many nodes through the
//!   API, and the API's latency while doing it.
//! - `realistic`: injected BMC latency, a busy window after every power action and media
//!   connect (`--busy-ms`), a long ramdisk boot, a download limit and a
//!   capacity per share; the makespan against a lower bound computed from the same
//!   parameters and the latencies this run drew (see [`drawn_lower_bound`]: the best any
//!   schedule could do with those draws), beside two coarser bounds: one true for any
//!   draw ([`lower_bound`], every request at the minimum latency) and one on the
//!   expected makespan.
//!
//! The throughput run caps concurrent deploys per share (`--capacity`): every deploy in
//! flight holds sockets in the one simulator process, whose open-file limit is the first
//! wall at 10,000 nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use futures::StreamExt as _;
use serde_json::json;
use testkit::{self as fleet, Fleet, FleetSpec, NodeSummary};
use vmedia_proto::v1 as pb;

/// HTTP requests Ironic 35.1 (irmc power/management/boot, direct deploy) sends to one
/// iRMC for one deploy, counted in the request log of a full deploy against a stand-in
/// iRMC (26), and for enroll + manage (11). With IPMI answering, some Redfish GETs
/// become IPMI round trips instead; the count stays about the same.
const IRONIC_DEPLOY_REQUESTS: u64 = 26;
const IRONIC_MANAGE_REQUESTS: u64 = 11;
/// python-scciclient's fixed sleeps in that deploy: 5 s after each of the 4 virtual
/// media calls, 3 s after each of the 3 power calls.
const IRONIC_FIXED_SLEEP_S: u64 = 4 * 5 + 3 * 3;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Sections to run: throughput, memory, realistic (default: all)
    #[arg(long = "only", value_name = "SECTION")]
    pub only: Vec<String>,
    /// Nodes in the throughput run
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Share agents in the throughput run
    #[arg(long, default_value_t = 16)]
    pub shares: usize,
    /// Concurrent deploys per share agent in the throughput run. Every deploy in flight
    /// holds sockets and a ramdisk listener in the one simulator process, whose open-file
    /// limit (20,000 here) caps how many can run at once next to 10,000 BMC listeners.
    #[arg(long, default_value_t = 64)]
    pub capacity: u32,
    /// iRMC port for the throughput run: 443 (TLS, verified) or 80
    #[arg(long, default_value_t = 443)]
    pub bmc_port: u16,
    /// Nodes enrolled in the memory run
    #[arg(long, default_value_t = 100_000)]
    pub memory_nodes: usize,
    /// Nodes in the realistic run
    #[arg(long, default_value_t = 64)]
    pub realistic_nodes: usize,
    /// Share agents in the realistic run
    #[arg(long, default_value_t = 4)]
    pub realistic_shares: usize,
    /// Concurrent virtual-media boots per share in the realistic run
    #[arg(long, default_value_t = 8)]
    pub realistic_capacity: u32,
    /// Ramdisk boot time in the realistic run, seconds
    #[arg(long, default_value_t = 60.0)]
    pub realistic_boot_s: f64,
    /// BMC latency range in the realistic run, milliseconds
    #[arg(long, default_value_t = 200)]
    pub latency_min_ms: u64,
    #[arg(long, default_value_t = 2000)]
    pub latency_max_ms: u64,
    /// Busy window of each simulated iRMC after a power action or media connect in the
    /// realistic run, milliseconds (commands inside it get SCCI status 5; 0 = off)
    #[arg(long, default_value_t = 1000)]
    pub busy_ms: u64,
    /// Image download rate per node in the realistic run, bytes per second
    #[arg(long, default_value_t = 8 << 20)]
    pub bandwidth: u64,
    /// Instance image size in the realistic run, bytes
    #[arg(long, default_value_t = 64 << 20)]
    pub realistic_image_bytes: usize,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// Work directory (default: a temporary one)
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let temp = tempfile::Builder::new().prefix("vmedia-bench-").tempdir()?;
    let root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let mut out = serde_json::Map::new();
    if want("throughput") {
        let r = throughput(&args, root.join("throughput"))
            .await
            .context("throughput run")?;
        if !args.json {
            print_section("throughput", &r);
        }
        out.insert("throughput".into(), r);
    }
    if want("memory") {
        let r = memory(&args, root.join("memory"))
            .await
            .context("memory run")?;
        if !args.json {
            print_section("memory", &r);
        }
        out.insert("memory".into(), r);
    }
    if want("realistic") {
        let r = realistic(&args, root.join("realistic"))
            .await
            .context("realistic run")?;
        if !args.json {
            print_section("realistic", &r);
        }
        out.insert("realistic".into(), r);
    }
    if args.json {
        println!("{}", serde_json::Value::Object(out));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_section(name: &str, v: &serde_json::Value) {
    println!("== {name}");
    if let Some(m) = v.as_object() {
        for (k, v) in m {
            println!("  {k:<38} {v}");
        }
    }
    println!();
}

fn say(args: &BenchArgs, msg: impl AsRef<str>) {
    if !args.json {
        eprintln!("bench: {}", msg.as_ref());
    }
}

fn agents_write_bytes(f: &Fleet) -> u64 {
    f.agents
        .iter()
        .flatten()
        .map(fleet::Proc::write_bytes)
        .sum()
}

/// Files under the shares' per-node directories (`nodes/`, what one deploy adds when
/// the deploy ISO and the instance image are already cached): (files, bytes allocated).
fn node_files_allocated(f: &Fleet) -> (u64, u64) {
    (1..=f.spec.shares)
        .map(|k| fleet::files::dir_usage(&fleet::share_dir(&f.spec.work_dir, k).join("nodes")))
        .fold((0, 0), |(n, a), u| (n + u.files, a + u.allocated))
}

fn share_allocated(f: &Fleet) -> u64 {
    f.share_usage().values().map(|u| u.allocated).sum()
}

async fn bmc_total(f: &Fleet) -> u64 {
    f.sim_counters()
        .await
        .ok()
        .and_then(|v| {
            v.get("total")
                .and_then(|t| t.get("total"))
                .and_then(|t| t.as_u64())
        })
        .unwrap_or(0)
}

async fn throughput(args: &BenchArgs, dir: PathBuf) -> Result<serde_json::Value> {
    let n = args.nodes;
    let mut spec = FleetSpec::new(n, args.shares, dir, fleet::default_bin_dir()?);
    spec.agent_capacity = args.capacity.max(1);
    spec.bmc_port = args.bmc_port;
    spec.image_bytes = 1 << 20;
    spec.sim_args = vec!["--boot-delay".into(), "0s".into()];
    say(
        args,
        format!(
            "throughput: starting {n} simulated iRMCs and {} agents",
            args.shares
        ),
    );
    let mut f = Fleet::start(spec).await?;
    let result = async {
        let t = Instant::now();
        let uuids = f.enroll_all().await?;
        let enroll_s = t.elapsed().as_secs_f64();
        say(args, format!("throughput: enrolled {n} nodes in {enroll_s:.1} s"));
        let t = Instant::now();
        f.make_available(&uuids, Duration::from_secs(1800), |_, _| {}).await?;
        let manage_s = t.elapsed().as_secs_f64();
        say(args, format!("throughput: manage + provide in {manage_s:.1} s; deploying"));
        // Let the agents' idle BMC connections from manage (one per node) time out first:
        // the simulator holds the other end of each, and its open files are the limit.
        tokio::time::sleep(Duration::from_secs(6)).await;

        let cpu0 = f.cpu_seconds();
        let bmc0 = bmc_total(&f).await;
        let wr0 = agents_write_bytes(&f);
        let alloc0 = share_allocated(&f);
        let mut peak_alloc = alloc0;
        // Largest bytes allocated per node file seen under nodes/ while deploying.
        let mut node_file_peak: (u64, u64) = (0, 0);
        let t = Instant::now();
        f.bulk(&uuids, "deploy").await?;
        let nodes = fleet::wait_until(&f.coordinator_url(), &f.access, Duration::from_secs(1800), |x| {
            x.provision_state == "active" || fleet::is_failed(x)
        }, |c| {
            peak_alloc = peak_alloc.max(share_allocated(&f));
            let nf = node_files_allocated(&f);
            if nf.0 > 0 && nf.1 * node_file_peak.0.max(1) >= node_file_peak.1 * nf.0 {
                node_file_peak = nf;
            }
            if !args.json {
                eprint!("\rbench: deploy {:.0} s: {}          ", t.elapsed().as_secs_f64(),
                    c.iter().map(|(s, k)| format!("{s} {k}")).collect::<Vec<_>>().join(", "));
            }
        })
        .await?;
        let wall = t.elapsed().as_secs_f64();
        if !args.json {
            eprintln!();
        }
        let cpu1 = f.cpu_seconds();
        let bmc1 = bmc_total(&f).await;
        let wr1 = agents_write_bytes(&f);
        let alloc1 = share_allocated(&f);
        let active = nodes.iter().filter(|x| x.provision_state == "active").count();
        let per = |a: f64, b: f64| round3((b - a) * 1000.0 / n as f64);

        let mut per_share: BTreeMap<String, usize> = BTreeMap::new();
        for x in &nodes {
            *per_share.entry(x.share.clone()).or_insert(0) += 1;
        }
        let mean = n as f64 / args.shares as f64;
        let max = per_share.values().copied().max().unwrap_or(0) as f64;

        // Movement: kill the first agent and count who moves.
        let moved = movement(&mut f, &nodes).await?;

        Ok::<_, anyhow::Error>(json!({
            "nodes": n,
            "shares": args.shares,
            "bmc_port": args.bmc_port,
            "capacity_per_share": args.capacity,
            "nodes_active": active,
            "enroll_s": round3(enroll_s),
            "manage_provide_s": round3(manage_s),
            "deploy_wall_s": round3(wall),
            "deploys_per_s": round3(n as f64 / wall),
            "cpu_ms_per_deploy_coordinator": per(cpu0.coordinator, cpu1.coordinator),
            "cpu_ms_per_deploy_agents": per(cpu0.agents, cpu1.agents),
            "cpu_ms_per_deploy_coordinator_plus_agents": per(cpu0.coordinator + cpu0.agents, cpu1.coordinator + cpu1.agents),
            "cpu_ms_per_deploy_simulator": per(cpu0.simulator, cpu1.simulator),
            "bmc_requests_per_deploy": round3((bmc1 - bmc0) as f64 / n as f64),
            "ironic_bmc_requests_per_deploy": IRONIC_DEPLOY_REQUESTS,
            "ironic_bmc_requests_enroll_manage": IRONIC_MANAGE_REQUESTS,
            "ironic_fixed_sleeps_per_deploy_s": IRONIC_FIXED_SLEEP_S,
            "share_bytes_written_per_deploy": ((wr1.saturating_sub(wr0)) as f64 / n as f64).round(),
            "share_bytes_allocated_peak_per_node_in_flight": ((peak_alloc.saturating_sub(alloc0)) as f64 / n as f64).round(),
            "share_bytes_allocated_per_node_after": ((alloc1 as f64 - alloc0 as f64) / n as f64).round(),
            "share_bytes_allocated_per_extra_node_in_flight": if node_file_peak.0 > 0 {
                (node_file_peak.1 as f64 / node_file_peak.0 as f64).round()
            } else {
                0.0
            },
            "balance_max_over_mean": round3(max / mean),
            "per_share": per_share,
            "movement": moved,
        }))
    }
    .await;
    f.shutdown().await;
    result
}

/// Kills share agent 1 and waits until the coordinator has re-placed its nodes; returns
/// how many nodes it owned and how many nodes changed share.
async fn movement(f: &mut Fleet, before: &[NodeSummary]) -> Result<serde_json::Value> {
    let victim = fleet::share_id(1);
    let owned = before.iter().filter(|n| n.share == victim).count();
    f.kill_agent(1).await?;
    let t = Instant::now();
    let before_map: BTreeMap<&str, &str> = before
        .iter()
        .map(|n| (n.uuid.as_str(), n.share.as_str()))
        .collect();
    let after = fleet::wait_until(
        &f.coordinator_url(),
        &f.access,
        Duration::from_secs(300),
        |n| n.share != victim,
        |_| {},
    )
    .await?;
    let detect_s = t.elapsed().as_secs_f64();
    let moved = after
        .iter()
        .filter(|n| {
            before_map
                .get(n.uuid.as_str())
                .is_some_and(|s| *s != n.share)
        })
        .count();
    let moved_other = after
        .iter()
        .filter(|n| {
            before_map
                .get(n.uuid.as_str())
                .is_some_and(|s| *s != n.share && *s != victim)
        })
        .count();
    Ok(json!({
        "lost_agent_nodes": owned,
        "nodes_moved": moved,
        "nodes_moved_from_other_agents": moved_other,
        "seconds_until_replaced": round3(detect_s),
    }))
}

async fn memory(args: &BenchArgs, dir: PathBuf) -> Result<serde_json::Value> {
    let (mut proc, addr) = fleet::fleet::lone_coordinator(&fleet::default_bin_dir()?, &dir)?;
    let url = format!("http://{addr}");
    let result = async {
        let mut client = loop {
            if let Ok(c) = vmedia_proto::v1::nodes_client::NodesClient::connect(url.clone()).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = client
            .list_nodes(pb::ListNodesRequest {
                limit: 1,
                ..Default::default()
            })
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss0 = proc.rss_kib().unwrap_or(0);
        let m = args.memory_nodes;
        say(args, format!("memory: enrolling {m} nodes"));
        let t = Instant::now();
        let lat: Vec<Result<Duration>> = futures::stream::iter(0..m)
            .map(|i| {
                let mut c = client.clone();
                async move {
                    let t = Instant::now();
                    c.create_node(memory_node(i))
                        .await
                        .map_err(|s| anyhow!("create node {i}: {}", s.message()))?;
                    Ok(t.elapsed())
                }
            })
            .buffer_unordered(128)
            .collect()
            .await;
        let mut lat = lat.into_iter().collect::<Result<Vec<_>>>()?;
        let enroll_s = t.elapsed().as_secs_f64();
        // Let caches settle, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = proc.rss_kib().unwrap_or(0);
        // Single-request latency of GetNode, sequential.
        let mut get_lat = Vec::new();
        for i in (0..m).step_by((m / 1000).max(1)) {
            let t = Instant::now();
            client
                .get_node(pb::GetNodeRequest {
                    node: format!("mem-{i:06}"),
                })
                .await
                .map_err(|s| anyhow!("get node: {}", s.message()))?;
            get_lat.push(t.elapsed());
        }
        lat.sort();
        get_lat.sort();
        Ok::<_, anyhow::Error>(json!({
            "nodes_enrolled": m,
            "enroll_s": round3(enroll_s),
            "creates_per_s": round3(m as f64 / enroll_s),
            "rss_kib_before": rss0,
            "rss_kib_after": rss1,
            "rss_bytes_per_node": ((rss1.saturating_sub(rss0)) as f64 * 1024.0 / m as f64).round(),
            "create_latency_ms_p50_at_128_in_flight": ms(pct(&lat, 0.50)),
            "create_latency_ms_p99_at_128_in_flight": ms(pct(&lat, 0.99)),
            "get_latency_ms_p50": ms(pct(&get_lat, 0.50)),
            "get_latency_ms_p99": ms(pct(&get_lat, 0.99)),
        }))
    }
    .await;
    proc.stop(Duration::from_secs(5)).await;
    result
}

fn memory_node(i: usize) -> pb::CreateNodeRequest {
    let ip = [10u8, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let mut driver_info = std::collections::HashMap::new();
    driver_info.insert(
        "irmc_address".to_string(),
        format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]),
    );
    driver_info.insert("irmc_username".to_string(), "admin".to_string());
    driver_info.insert("irmc_password".to_string(), "bench-password".to_string());
    driver_info.insert("deploy_iso".to_string(), "deploy.iso".to_string());
    let mut instance_info = std::collections::HashMap::new();
    instance_info.insert(
        "image_source".to_string(),
        "http://images.example/disk.img".to_string(),
    );
    instance_info.insert("image_checksum".to_string(), "0".repeat(64));
    pb::CreateNodeRequest {
        name: format!("mem-{i:06}"),
        driver: "irmc".into(),
        driver_info,
        instance_info,
        macs: vec![format!(
            "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
            ip[0], ip[1], ip[2], ip[3]
        )],
        ..Default::default()
    }
}

async fn realistic(args: &BenchArgs, dir: PathBuf) -> Result<serde_json::Value> {
    let n = args.realistic_nodes;
    let m = args.realistic_shares;
    let c = args.realistic_capacity;
    let mut spec = FleetSpec::new(n, m, dir, fleet::default_bin_dir()?);
    spec.agent_capacity = c;
    spec.image_bytes = args.realistic_image_bytes;
    spec.sim_args = vec![
        "--fault".into(),
        format!(
            "latency={}ms..{}ms",
            args.latency_min_ms, args.latency_max_ms
        ),
        "--boot-delay".into(),
        format!("{}ms", (args.realistic_boot_s * 1000.0) as u64),
        "--download-limit".into(),
        args.bandwidth.to_string(),
        "--busy-ms".into(),
        args.busy_ms.to_string(),
        "--seed".into(),
        "7".into(),
    ];
    say(
        args,
        format!(
            "realistic: {n} nodes, {m} shares of capacity {c}, boot {} s",
            args.realistic_boot_s
        ),
    );
    let f = Fleet::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, Duration::from_secs(3600), |_, _| {})
            .await?;
        let bmc0 = bmc_total(&f).await;
        let bmc_before = bmc_per_node_counts(&f).await;
        let t = Instant::now();
        f.bulk(&uuids, "deploy").await?;
        let nodes = fleet::wait_until(
            &f.coordinator_url(),
            &f.access,
            Duration::from_secs(7200),
            |x| x.provision_state == "active" || fleet::is_failed(x),
            |cnt| {
                if !args.json {
                    eprint!(
                        "\rbench: realistic {:.0} s: {}          ",
                        t.elapsed().as_secs_f64(),
                        cnt.iter()
                            .map(|(s, k)| format!("{s} {k}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            },
        )
        .await?;
        let makespan = t.elapsed().as_secs_f64();
        if !args.json {
            eprintln!();
        }
        let bmc1 = bmc_per_node_counts(&f).await;
        let bmc_per_node = (bmc_total(&f).await - bmc0) as f64 / n as f64;
        // Per-node deltas over the deploy: requests, and latency the simulator injected.
        let delta = |i: &String, v: &NodeCounts| {
            let b = bmc_before.get(i).copied().unwrap_or_default();
            NodeCounts {
                total: v.total.saturating_sub(b.total),
                delay_ms: v.delay_ms.saturating_sub(b.delay_ms),
            }
        };
        let deltas: Vec<NodeCounts> = bmc1.iter().map(|(i, v)| delta(i, v)).collect();
        // The fewest BMC requests any node's deploy made.
        let bmc_min = deltas.iter().map(|d| d.total).min().unwrap_or(0);
        let lb = lower_bound(args, n, bmc_min, bmc_per_node);
        let drawn = drawn_lower_bound(args, &deltas);
        let mut per_share: BTreeMap<String, usize> = BTreeMap::new();
        for x in &nodes {
            *per_share.entry(x.share.clone()).or_insert(0) += 1;
        }
        Ok::<_, anyhow::Error>(json!({
            "nodes": n,
            "shares": m,
            "capacity_per_share": c,
            "bmc_latency_ms": format!("{}..{}", args.latency_min_ms, args.latency_max_ms),
            "ramdisk_boot_s": args.realistic_boot_s,
            "image_bytes": args.realistic_image_bytes,
            "download_bytes_per_s": args.bandwidth,
            "nodes_active": nodes.iter().filter(|x| x.provision_state == "active").count(),
            "bmc_requests_per_deploy": round3(bmc_per_node),
            "bmc_requests_per_deploy_min": bmc_min,
            "makespan_s": round3(makespan),
            "lower_bound_s": round3(drawn.bound_s),
            "ratio": round3(makespan / drawn.bound_s),
            "lower_bound_terms_s": {
                "longest_deploy": round3(drawn.longest_s),
                "total_over_slots": round3(drawn.mean_load_s),
                "two_deploys_on_one_slot": round3(drawn.pair_s),
            },
            "bmc_latency_injected_s_per_deploy": round3(drawn.mean_delay_s),
            "per_node_min_time_s": round3(lb.per_node_min_s),
            "rounds_per_share": lb.rounds,
            "min_latency_lower_bound_s": round3(lb.bound_s),
            "ratio_to_min_latency_lower_bound": round3(makespan / lb.bound_s),
            "expected_lower_bound_s": round3(lb.expected_bound_s),
            "ratio_to_expected_lower_bound": round3(makespan / lb.expected_bound_s),
            "per_share": per_share,
        }))
    }
    .await;
    f.shutdown().await;
    result
}

/// One simulated node's counters (`GET /counters`, `nodes.*`).
#[derive(Clone, Copy, Debug, Default)]
struct NodeCounts {
    /// BMC requests answered.
    total: u64,
    /// Latency injected into those answers, milliseconds.
    delay_ms: u64,
}

/// Counters per simulated node so far.
async fn bmc_per_node_counts(f: &Fleet) -> BTreeMap<String, NodeCounts> {
    let field = |c: &serde_json::Value, k: &str| c.get(k).and_then(|t| t.as_u64()).unwrap_or(0);
    f.sim_counters()
        .await
        .ok()
        .and_then(|v| {
            v.get("nodes").and_then(|n| n.as_object()).map(|m| {
                m.iter()
                    .map(|(k, c)| {
                        let counts = NodeCounts {
                            total: field(c, "total"),
                            delay_ms: field(c, "delay_ms"),
                        };
                        (k.clone(), counts)
                    })
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The realistic run's lower bound from the latencies this run actually drew.
struct DrawnBound {
    bound_s: f64,
    longest_s: f64,
    mean_load_s: f64,
    pair_s: f64,
    mean_delay_s: f64,
}

/// Lower bound on this run's makespan, from what each node's deploy had to take.
///
/// The simulator draws each reply's latency from (seed, node, request number) alone, so
/// node `i`'s BMC conversation costs the same injected time `d_i` under any schedule.
/// A deploy holds a boot slot from admission until the node is active, its BMC requests
/// go one at a time, the ramdisk boots only after power-on and downloads at most at
/// `bandwidth`. So deploy `i` holds a slot for at least `t_i = d_i + boot + image /
/// bandwidth`, and with `s = shares x capacity` slots (any node may go to any share):
/// - makespan >= max t_i;
/// - makespan >= sum t_i / s (the slots must absorb all of it);
/// - with more than `s` deploys, one slot runs two of the `s + 1` longest back to back:
///   makespan >= t_(s) + t_(s+1), sorted longest first.
///
/// It is the best any scheduler could do with hindsight of every draw.
fn drawn_lower_bound(args: &BenchArgs, deltas: &[NodeCounts]) -> DrawnBound {
    let fixed =
        args.realistic_boot_s + args.realistic_image_bytes as f64 / args.bandwidth.max(1) as f64;
    let mut t: Vec<f64> = deltas
        .iter()
        .map(|d| d.delay_ms as f64 / 1000.0 + fixed)
        .collect();
    t.sort_unstable_by(|a, b| b.total_cmp(a));
    let slots = args.realistic_shares.max(1) * (args.realistic_capacity.max(1) as usize);
    let longest_s = t.first().copied().unwrap_or(0.0);
    let mean_load_s = t.iter().sum::<f64>() / slots as f64;
    let pair_s = if t.len() > slots {
        t[slots - 1] + t[slots]
    } else {
        0.0
    };
    let mean_delay_s = if deltas.is_empty() {
        0.0
    } else {
        deltas.iter().map(|d| d.delay_ms as f64).sum::<f64>() / 1000.0 / deltas.len() as f64
    };
    DrawnBound {
        bound_s: longest_s.max(mean_load_s).max(pair_s),
        longest_s,
        mean_load_s,
        pair_s,
        mean_delay_s,
    }
}

/// Lower bounds on the realistic run's makespan.
struct LowerBound {
    per_node_min_s: f64,
    rounds: usize,
    /// Holds for every run of this configuration.
    bound_s: f64,
    /// Holds for the expected makespan (mean latency, mean request count).
    expected_bound_s: f64,
}

/// Lower bound on the makespan of deploying `n` nodes with the realistic parameters,
/// for any draw of latencies (coarser than [`drawn_lower_bound`]).
///
/// Facts it rests on (each checked in the code, not assumed):
/// - a deploy holds one of its share's `c` boot slots from admission until the node is
///   active (the coordinator releases the slot with the last job), so a share never runs
///   more than `c` deploys at once;
/// - a node's BMC requests go one at a time (one job per node at a time; a job awaits each
///   request), each delayed at least `latency_min` by the simulator; the ramdisk boots
///   only after the power-on request and downloads the image only after it booted;
///   the simulator caps each download at `bandwidth` bytes per second.
///
/// So every deploy lasts at least `t = r_min * latency_min + boot + image / bandwidth`
/// (`r_min`: the fewest BMC requests any deploy made). Whatever the placement, some share
/// holds at least `k = ceil(n / m)` nodes, and with `c` slots one of them runs at least
/// `ceil(k / c)` deploys back to back: makespan >= ceil(k / c) * t. That is the bound.
///
/// It uses the minimum latency, because any single run may draw low latencies; the
/// expected makespan has a tighter bound: a share's `c` slots must absorb
/// `k * E[t]` slot-seconds, so E[makespan] >= max(1, k / c) * E[t], with `E[t]` at the
/// mean latency and the mean request count.
fn lower_bound(args: &BenchArgs, n: usize, bmc_min: u64, bmc_mean: f64) -> LowerBound {
    let m = args.realistic_shares.max(1);
    let c = (args.realistic_capacity.max(1)) as usize;
    let k = n.div_ceil(m);
    let rounds = k.div_ceil(c);
    let fixed =
        args.realistic_boot_s + args.realistic_image_bytes as f64 / args.bandwidth.max(1) as f64;
    let per_node_min_s = bmc_min as f64 * args.latency_min_ms as f64 / 1000.0 + fixed;
    let mean_latency = (args.latency_min_ms + args.latency_max_ms) as f64 / 2000.0;
    let per_node_mean_s = bmc_mean * mean_latency + fixed;
    LowerBound {
        per_node_min_s,
        rounds,
        bound_s: rounds as f64 * per_node_min_s,
        expected_bound_s: (k as f64 / c as f64).max(1.0) * per_node_mean_s,
    }
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
