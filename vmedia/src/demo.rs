//! `vmedia demo`: the whole system on this machine, deploying a simulated fleet.
//!
//! It starts a coordinator (SQLite in a temporary data directory), M share agents with
//! local directories as shares and `irmc-sim` with N simulated iRMCs, builds a deploy ISO
//! and an instance image, enrolls every node, then manages, provides and deploys them all
//! through the public gRPC API while a progress bar counts nodes per state. The summary
//! gives nodes active and failed (with reasons), nodes per share, wall time and the cost
//! per node (CPU per process kind, bytes on the shares, BMC requests).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use testkit::{self as fleet, Fleet, FleetSpec, NodeSummary};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of simulated nodes
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Number of share agents
    #[arg(long, default_value_t = 4)]
    pub shares: usize,
    /// Print one JSON object instead of the human summary
    #[arg(long)]
    pub json: bool,
    /// SIGKILL one share agent this many seconds into the deploy, to show the fleet heal
    #[arg(long, value_name = "SECONDS")]
    pub kill_agent_after: Option<f64>,
    /// Leave every process running afterwards (Ctrl-C stops them)
    #[arg(long)]
    pub keep: bool,
    /// Work directory (default: a new temporary directory, removed unless --keep)
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Concurrent virtual-media boots per share agent
    #[arg(long, default_value_t = 64)]
    pub capacity: u32,
    /// Give up when the fleet is not settled after this long
    #[arg(long, default_value = "15m", value_parser = humantime_duration)]
    pub timeout: Duration,
    /// Extra irmc-sim arguments, e.g. --sim-arg=--fault --sim-arg=latency=200ms
    #[arg(long = "sim-arg", allow_hyphen_values = true)]
    pub sim_args: Vec<String>,
    /// Extra coordinator arguments, e.g. --coordinator-arg=--sync-power-state-interval=10s
    #[arg(long = "coordinator-arg", allow_hyphen_values = true)]
    pub coordinator_args: Vec<String>,
    /// A fleet of mixed iRMC generations and firmware (S4 old and new, S5, S6), some
    /// without IPMI, some without Redfish, some busy; prints which media path and which
    /// boot-device path the nodes took
    #[arg(long)]
    pub mixed_generations: bool,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.nodes == 0 || args.shares == 0 {
        anyhow::bail!("--nodes and --shares must be at least 1");
    }
    let temp;
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("vmedia-demo-").tempdir()?;
            if args.keep {
                temp.keep()
            } else {
                temp.path().to_path_buf()
            }
        }
    };
    let mut spec = FleetSpec::new(
        args.nodes,
        args.shares,
        work_dir.clone(),
        fleet::default_bin_dir()?,
    );
    spec.agent_capacity = args.capacity;
    // Every service gets a loopback metrics listener (open to this host only).
    spec.metrics = true;
    spec.sim_args = args.sim_args.clone();
    spec.coordinator_args
        .extend(args.coordinator_args.iter().cloned());
    spec.sim_args
        .extend(["--boot-delay".to_string(), "200ms".to_string()]);
    // The browser dashboard, on a loopback port.
    spec.dashboard = true;
    if args.mixed_generations {
        crate::demo_mixed::apply(&mut spec);
    }

    let say = |msg: &str| {
        if !args.json {
            eprintln!("{msg}");
        }
    };
    say(&format!(
        "starting 1 coordinator, {} share agents and {} simulated iRMCs in {}",
        args.shares,
        args.nodes,
        work_dir.display()
    ));
    if args.mixed_generations {
        let per = spec.nodes_per_sim;
        for (k, p) in crate::demo_mixed::PROFILES.iter().enumerate() {
            say(&format!(
                "  simulators {}, {}, ... ({per} nodes each): {}",
                k + 1,
                k + 1 + crate::demo_mixed::PROFILES.len(),
                p.label
            ));
        }
    }
    check_capacity(&spec)?;
    // Every child dies with the fleet: on SIGINT, SIGTERM or SIGHUP the fleet is shut down
    // as after a normal run (a start cut short drops its children, which kills them).
    let mut fleet = tokio::select! {
        r = Fleet::start(spec) => r?,
        sig = terminated() => {
            eprintln!("{}: stopped while starting", sig.name);
            return Ok(ExitCode::from(sig.exit_code));
        }
    };
    let outcome = tokio::select! {
        r = drive(&mut fleet, &args) => r,
        sig = terminated() => {
            eprintln!("{}: stopping every process of the demo", sig.name);
            fleet.shutdown().await;
            return Ok(ExitCode::from(sig.exit_code));
        }
    };
    let code = match &outcome {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report.to_json())?);
            } else {
                report.print();
            }
            if report.failed.is_empty() && report.active == args.nodes {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(_) => ExitCode::FAILURE,
    };
    if args.keep {
        let access = match &fleet.pki {
            Some(p) => format!(
                "\n  export VMEDIA_CA_FILE={}\n  export VMEDIA_TOKEN_FILE={}",
                p.ca_cert.display(),
                p.admin_token.display()
            ),
            None => String::new(),
        };
        // One `metrics: URL` line per service, the coordinator's first, then the agents'
        // in share order (scripts take the rest of the line as the URL).
        let urls = fleet.metrics_urls();
        let names: Vec<&str> = urls.iter().map(|(s, _)| s.as_str()).collect();
        let metrics: String =
            std::iter::once(format!("\n  Prometheus metrics of {}:", names.join(", ")))
                .chain(urls.iter().map(|(_, url)| format!("\nmetrics: {url}")))
                .collect();
        let dashboard = match (fleet.dashboard_url(), &fleet.pki) {
            (Some(url), Some(p)) => format!(
                "\ndashboard: {url}\n  (sign in with the token in {}; the certificate is signed by {})",
                p.reader_token.display(),
                p.ca_cert.display()
            ),
            (Some(url), None) => format!("\ndashboard: {url}"),
            (None, _) => String::new(),
        };
        eprintln!(
            "\nthe system keeps running (Ctrl-C or SIGTERM stops it):\n  export VMEDIA_COORDINATOR={}{access}{dashboard}\n  vmedia node list\n  vmedia share list{metrics}\n  logs: {}",
            fleet.coordinator_url(),
            work_dir.join("logs").display()
        );
        terminated().await;
    }
    fleet.shutdown().await;
    outcome.map(|_| code)
}

/// A termination signal that arrived, and the exit status a shell gives it.
struct Terminated {
    name: &'static str,
    exit_code: u8,
}

/// Waits for SIGINT (Ctrl-C), SIGTERM (what `timeout`, `kill` and CI runners send) or
/// SIGHUP (a closed terminal).
async fn terminated() -> Terminated {
    use tokio::signal::unix::{SignalKind, signal};
    let stream = |kind| signal(kind).ok();
    let (mut term, mut hup) = (
        stream(SignalKind::terminate()),
        stream(SignalKind::hangup()),
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Terminated { name: "SIGINT", exit_code: 130 },
        _ = recv(&mut term) => Terminated { name: "SIGTERM", exit_code: 143 },
        _ = recv(&mut hup) => Terminated { name: "SIGHUP", exit_code: 129 },
    }
}

/// The next delivery of `s`; never, when the signal could not be registered.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Memory one simulated node costs across every process of a local fleet (the simulator's
/// node state and TLS listener, the agents' per-node records, the coordinator's index),
/// measured at 10,000 nodes with headroom (BENCHMARKS.md, "vmedia demo").
const BYTES_PER_NODE: u64 = 256 << 10;

/// Refuses, before anything starts, a fleet this machine cannot hold, with the reason:
/// loopback addresses for every simulated iRMC, and memory.
fn check_capacity(spec: &FleetSpec) -> Result<()> {
    if let Err(e) = fleet::spec::sim_address(spec.sim_base, spec.nodes - 1) {
        anyhow::bail!(
            "--nodes {}: this machine cannot give every simulated iRMC its own loopback address from {} ({e})",
            spec.nodes,
            spec.sim_base
        );
    }
    if let Some(avail) = mem_available_bytes() {
        let need = spec.nodes as u64 * BYTES_PER_NODE;
        if need > avail / 10 * 8 {
            anyhow::bail!(
                "--nodes {}: a local fleet needs about {} MiB of memory ({} KiB per simulated node across the simulator, the share agents and the coordinator), but only {} MiB are available; use at most {} nodes here",
                spec.nodes,
                need >> 20,
                BYTES_PER_NODE >> 10,
                avail >> 20,
                avail / 10 * 8 / BYTES_PER_NODE
            );
        }
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

struct Report {
    nodes: usize,
    active: usize,
    failed: Vec<NodeSummary>,
    per_share: BTreeMap<String, usize>,
    wall_s: f64,
    deploy_s: f64,
    cpu: fleet::CpuSeconds,
    share: BTreeMap<String, fleet::files::ShareUsage>,
    bmc_requests: Option<u64>,
    killed_agent: Option<String>,
    /// Nodes per media path and per boot-device path (`--mixed-generations`).
    paths: Option<(BTreeMap<String, usize>, BTreeMap<String, usize>)>,
}

impl Report {
    fn to_json(&self) -> serde_json::Value {
        let n = self.nodes.max(1) as f64;
        let share_bytes: u64 = self.share.values().map(|u| u.allocated).sum();
        serde_json::json!({
            "nodes_total": self.nodes,
            "nodes_active": self.active,
            "nodes_failed": self.failed.len(),
            "failures": self.failed.iter().map(|f| serde_json::json!({
                "node": f.name, "state": f.provision_state, "last_error": f.last_error})).collect::<Vec<_>>(),
            "per_share": self.per_share,
            "wall_s": round3(self.wall_s),
            "deploy_s": round3(self.deploy_s),
            "killed_agent": self.killed_agent,
            "media_paths": self.paths.as_ref().map(|p| &p.0),
            "boot_device_paths": self.paths.as_ref().map(|p| &p.1),
            "per_node": {
                "cpu_ms_coordinator": round3(self.cpu.coordinator * 1000.0 / n),
                "cpu_ms_agents": round3(self.cpu.agents * 1000.0 / n),
                "cpu_ms_simulator": round3(self.cpu.simulator * 1000.0 / n),
                "share_bytes_allocated": (share_bytes as f64 / n).round(),
                "bmc_requests": self.bmc_requests.map(|r| round3(r as f64 / n)),
            },
            "shares": self.share,
        })
    }

    fn print(&self) {
        let n = self.nodes.max(1) as f64;
        println!();
        println!("nodes active   {:>8} of {}", self.active, self.nodes);
        println!("nodes failed   {:>8}", self.failed.len());
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.failed {
            *reasons.entry(f.last_error.as_str()).or_insert(0) += 1;
        }
        for (r, c) in reasons {
            println!("  {c:>5} x {r}");
        }
        if let Some(k) = &self.killed_agent {
            println!("killed agent   {k:>8} (its nodes were re-placed)");
        }
        if let Some((media, boot)) = &self.paths {
            println!("media path (parameter image):");
            for (p, c) in media {
                println!("  {c:>5} x {p}");
            }
            println!("boot-device path:");
            for (p, c) in boot {
                println!("  {c:>5} x {p}");
            }
        }
        println!(
            "wall time      {:>8.1} s (deploy {:.1} s)",
            self.wall_s, self.deploy_s
        );
        println!();
        println!(
            "{:<12} {:>7} {:>7} {:>14}",
            "share", "nodes", "files", "allocated"
        );
        for (id, count) in &self.per_share {
            let u = self.share.get(id).copied().unwrap_or_default();
            println!("{id:<12} {count:>7} {:>7} {:>12} B", u.files, u.allocated);
        }
        println!();
        println!(
            "per node: coordinator CPU {:.2} ms, agents CPU {:.2} ms, simulator CPU {:.2} ms",
            self.cpu.coordinator * 1000.0 / n,
            self.cpu.agents * 1000.0 / n,
            self.cpu.simulator * 1000.0 / n
        );
        let share_bytes: u64 = self.share.values().map(|u| u.allocated).sum();
        print!(
            "          {:.0} bytes allocated on the shares",
            share_bytes as f64 / n
        );
        match self.bmc_requests {
            Some(r) => println!(", {:.1} BMC requests", r as f64 / n),
            None => println!(),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn drive(fleet: &mut Fleet, args: &DemoArgs) -> Result<Report> {
    let t0 = Instant::now();
    let addr = fleet.coordinator_url();
    let bar = progress_bar(args.json, args.nodes);

    bar.set_message("enrolling");
    let uuids = fleet.enroll_all().await?;
    let limit = args.timeout;
    fleet
        .make_available(&uuids, limit, |verb, c| {
            bar.set_message(format!("{verb}: {}", counts_line(c)))
        })
        .await?;

    let t_deploy = Instant::now();
    fleet.bulk(&uuids, "deploy").await?;
    let mut killed_agent = None;
    let kill_at = args.kill_agent_after.map(Duration::from_secs_f64);
    let done = |n: &NodeSummary| n.provision_state == "active" || fleet::is_failed(n);
    let nodes = loop {
        // Poll in short slices so the agent kill happens on time.
        let slice = match kill_at {
            Some(k) if killed_agent.is_none() => k
                .saturating_sub(t_deploy.elapsed())
                .max(Duration::from_millis(1)),
            _ => limit.saturating_sub(t_deploy.elapsed()),
        };
        let r = fleet::wait_until(&addr, &fleet.access, slice, done, |c| {
            bar.set_position(c.get("active").copied().unwrap_or(0) as u64);
            bar.set_message(format!("deploy: {}", counts_line(c)));
        })
        .await;
        match r {
            Ok(nodes) => break nodes,
            Err(e) => {
                if killed_agent.is_none() && kill_at.is_some() {
                    // Kill the agent with the most nodes, mid-deploy.
                    let k = busiest_share(&addr, &fleet.access).await.unwrap_or(1);
                    fleet.kill_agent(k).await?;
                    killed_agent = Some(fleet::share_id(k));
                    bar.println(format!(
                        "killed {} (SIGKILL) at {:.1} s",
                        fleet::share_id(k),
                        t_deploy.elapsed().as_secs_f64()
                    ));
                    continue;
                }
                bar.abandon();
                return Err(e);
            }
        }
    };
    let deploy_s = t_deploy.elapsed().as_secs_f64();
    let wall_s = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let mut per_share = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.provision_state == "active") {
        *per_share.entry(n.share.clone()).or_insert(0) += 1;
    }
    let counters = fleet.sim_counters().await.ok();
    let bmc_requests = counters.as_ref().and_then(|v| {
        v.get("total")
            .and_then(|t| t.get("total"))
            .and_then(|t| t.as_u64())
    });
    let paths = if args.mixed_generations {
        counters.as_ref().map(crate::demo_mixed::paths)
    } else {
        None
    };
    Ok(Report {
        nodes: nodes.len(),
        active: nodes
            .iter()
            .filter(|n| n.provision_state == "active")
            .count(),
        failed: nodes
            .iter()
            .filter(|n| n.provision_state != "active")
            .cloned()
            .collect(),
        per_share,
        wall_s,
        deploy_s,
        cpu: fleet.cpu_seconds(),
        share: fleet.share_usage(),
        bmc_requests,
        killed_agent,
        paths,
    })
}

fn counts_line(c: &BTreeMap<String, usize>) -> String {
    c.iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn busiest_share(addr: &str, access: &coordinator_client::conn::Access) -> Result<usize> {
    let nodes = fleet::list_all(addr, access).await?;
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.provision_state != "active") {
        *per.entry(n.share.clone()).or_insert(0) += 1;
    }
    let best = per
        .into_iter()
        .filter(|(s, _)| !s.is_empty())
        .max_by_key(|(_, c)| *c)
        .ok_or_else(|| anyhow!("no share has nodes in flight"))?;
    best.0
        .strip_prefix("share-")
        .and_then(|k| k.parse().ok())
        .context("unexpected share id")
}

fn progress_bar(hidden: bool, total: usize) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} active  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
