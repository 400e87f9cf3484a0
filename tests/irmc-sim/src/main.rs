//! `irmc-sim`: run N simulated iRMCs until SIGINT/SIGTERM.
//!
//! Start-up prints one line per node (`node I IP https=URL http=URL ipmi=IP:PORT`) and a final
//! `ready ...` line, or with `--json` a single JSON object, so a parent process can parse
//! the addresses. Logs go to stderr (`RUST_LOG` filters, default `info`).

/// Many small, short-lived allocations per request (headers, XML, protobuf): mimalloc's
/// thread-local free lists cost a fraction of glibc malloc's consolidation work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;
use irmc_sim::fault::FaultSpec;
use irmc_sim::{Auth, Model, ShareMapEntry, Sim, SimBuilder};

#[derive(Parser, Debug)]
#[command(
    name = "irmc-sim",
    version,
    about = "Simulated FUJITSU iRMC BMCs (SCCI, report.xml, Redfish subset, IPMI over LAN) on loopback addresses"
)]
struct Args {
    /// Number of simulated iRMCs.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Address of the first iRMC; later ones count up, skipping .0 and .255.
    #[arg(long, default_value = "127.1.0.1")]
    base_address: Ipv4Addr,
    /// HTTPS port on every address (0 = ephemeral per address).
    #[arg(long, default_value_t = 443)]
    https_port: u16,
    /// Serve no HTTPS.
    #[arg(long)]
    no_https: bool,
    /// HTTP port on every address (0 = ephemeral); none by default.
    #[arg(long)]
    http_port: Option<u16>,
    /// IPMI-over-LAN (RMCP+) UDP port on every address (0 = ephemeral); same user and
    /// password as SCCI, cipher suites 3 and 17.
    #[arg(long, default_value_t = 623)]
    ipmi_port: u16,
    /// Serve no IPMI over LAN.
    #[arg(long)]
    no_ipmi: bool,
    /// BMC user name.
    #[arg(long, default_value = "admin")]
    username: String,
    /// BMC password (prefer --password-file or IRMC_SIM_PASSWORD).
    #[arg(
        long,
        env = "IRMC_SIM_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    password: Option<String>,
    /// File whose first line is the BMC password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Authentication for SCCI/eLCM: basic or digest.
    #[arg(long, default_value = "basic")]
    auth: Auth,
    /// iRMC model: S4, S5 or S6.
    #[arg(long, default_value = "S4")]
    model: Model,
    /// Firmware version (default: typical for the model).
    #[arg(long)]
    firmware: Option<String>,
    /// Serve this file as /report.xml on every node.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Busy window in ms after every power action and media connect: power and
    /// connect commands inside it get SCCI status 5 (Input/Output error), as a real
    /// iRMC answers commands sent in a tight sequence. 0 (default) turns it off.
    #[arg(long, default_value_t = 0)]
    busy_ms: u64,
    /// No licence key installed: ConfigSpace 1980 reads empty and remote image
    /// connects are refused with a licence message.
    #[arg(long)]
    no_licence: bool,
    /// Serve no Redfish (every /redfish path answers 404), as a controller whose
    /// Redfish is disabled or too old to use.
    #[arg(long)]
    no_redfish: bool,
    /// Write the CA certificate (PEM) that signs every node's certificate here.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Fault SPEC, e.g. `latency=200ms..2s`, `node=3,hang`, `error-rate=0.1`, `malformed`.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<FaultSpec>,
    /// Seed for deterministic faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `[scheme://][USER:PASS@]SERVER/SHARE=DIR`: where the simulated servers find media.
    #[arg(long = "share-map", value_name = "SPEC")]
    share_map: Vec<String>,
    /// JSON control API address (loopback), e.g. 127.0.0.1:9000 (port 0 = ephemeral).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Restore node states from this file when it exists, and write every node's state
    /// (JSON) to it on exit. Share passwords are never written.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Print the ready output as one JSON object.
    #[arg(long)]
    json: bool,
    /// Simulate the server boot and the deploy ramdisk (else the BMC side only).
    #[arg(long)]
    boot: bool,
    /// With --boot: keep written disk images as files here (else only their sha256).
    #[arg(long, requires = "boot")]
    disk_dir: Option<PathBuf>,
    /// With --boot: time from power-on to the ramdisk/OS running, e.g. 60s.
    #[arg(long, requires = "boot", value_parser = parse_duration)]
    boot_delay: Option<std::time::Duration>,
    /// With --boot: image download limit in bytes per second.
    #[arg(long, requires = "boot")]
    download_limit: Option<u64>,
    /// With --boot: short ramdisk timers (lookup retries, forced heartbeats) for benches.
    #[arg(long, requires = "boot")]
    fast_ramdisk: bool,
    /// With --boot: the deploy ramdisk's agent API port on each node address.
    #[arg(long, requires = "boot")]
    ipa_port: Option<u16>,
    /// With --boot: run no simulated deploy ramdisk; a real one started outside (stock
    /// ironic-python-agent) takes its place. The CD boot is checked as usual and its
    /// parameters are served at `GET /nodes/{i}/ramdisk-params` (control API); with
    /// --disk-dir, `node-<i>.img` there is the disk the real ramdisk writes.
    #[arg(long, requires = "boot")]
    external_ramdisk: bool,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    irmc_sim::fault::parse_duration(s)
        .ok_or_else(|| format!("invalid duration {s:?} (e.g. 200ms, 60s)"))
}

/// The boot simulation configured from the flags.
fn boot_hook(args: &Args) -> Result<irmc_sim::boot::SimBoot> {
    let mut cfg = irmc_sim::boot::BootConfig::default();
    if args.fast_ramdisk {
        cfg.timing = irmc_sim::ramdisk::RamdiskTiming::fast();
    }
    if let Some(d) = args.boot_delay {
        cfg.boot_delay = d;
    }
    cfg.disk_dir = args.disk_dir.clone();
    cfg.external_ramdisk = args.external_ramdisk;
    if args.download_limit.is_some() {
        cfg.timing.bandwidth = args.download_limit;
    }
    if let Some(p) = args.ipa_port {
        cfg.ipa_port = p;
    }
    irmc_sim::boot::SimBoot::new(cfg).context("setting up the boot simulation")
}

/// Raise the open-file limit: one listener per address plus connections.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let target = want.max(soft);
    if target <= soft {
        return soft;
    }
    // As root the hard limit can grow too; otherwise settle for the hard limit.
    if setrlimit(Resource::RLIMIT_NOFILE, target, target.max(hard)).is_ok() {
        return target;
    }
    let capped = target.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, capped, hard).is_ok() {
        return capped;
    }
    soft
}

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let password = match (&args.password, &args.password_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading password file {}", f.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        (None, None) => "admin".to_string(),
    };
    // Per node: the HTTPS and/or HTTP listener, the IPMI socket, and connections.
    let nofile = raise_nofile(args.count as u64 * 4 + 4096);
    let http_sockets = u64::from(!args.no_https) + u64::from(args.http_port.is_some());
    let fits = |per_node: u64| nofile == 0 || nofile >= args.count as u64 * per_node + 1024;
    // IPMI is one more socket per address. When the open-file limit cannot hold it, run
    // without IPMI and say so, rather than refusing a fleet size that worked before.
    let ipmi = !args.no_ipmi && fits(http_sockets + 1);
    if !args.no_ipmi && !ipmi {
        eprintln!(
            "irmc-sim: WARNING: {} nodes with IPMI need {} sockets each but the open-file limit is {nofile}: serving WITHOUT IPMI over LAN (raise ulimit -n, or pass --no-ipmi to silence this)",
            args.count,
            http_sockets + 1
        );
    }
    let mut b = SimBuilder::new()
        .count(args.count)
        .base_address(args.base_address)
        .https_port((!args.no_https).then_some(args.https_port))
        .http_port(args.http_port)
        .ipmi_port(ipmi.then_some(args.ipmi_port))
        .credentials(args.username.clone(), password)
        .auth(args.auth)
        .model(args.model)
        .busy(std::time::Duration::from_millis(args.busy_ms))
        .licensed(!args.no_licence)
        .redfish(!args.no_redfish)
        .seed(args.seed);
    if let Some(fw) = &args.firmware {
        b = b.firmware(fw.clone());
    }
    if let Some(r) = &args.report {
        let doc = std::fs::read_to_string(r)
            .with_context(|| format!("reading report {}", r.display()))?;
        b = b.report(doc);
    }
    for f in &args.faults {
        b = b.fault(f.clone());
    }
    for s in &args.share_map {
        b = b.share(ShareMapEntry::parse(s)?);
    }
    if let Some(c) = args.control {
        b = b.control(c);
    }
    if args.boot {
        b = b.boot_hook(boot_hook(&args)?);
    }
    if let Some(path) = args.state_file.as_ref().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading state file {}", path.display()))?;
        let states: Vec<(usize, irmc_sim::NodeState)> = serde_json::from_str(&text)
            .with_context(|| format!("parsing state file {}", path.display()))?;
        b = b.restore(states);
    }
    // Install signal handlers before announcing readiness: a parent may send SIGTERM as
    // soon as it has read the ready line.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let sim = Sim::start(b).await.context("starting the simulator")?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, sim.ca_pem())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let startup_ms = t0.elapsed().as_millis();
    let rss = rss_kib();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let v = serde_json::json!({
            "ready": true,
            "nodes": sim.addresses().iter().map(|a| serde_json::json!({
                "index": a.index, "address": a.ip.to_string(),
                "https": a.https_url(), "http": a.http_url(),
                "ipmi": a.ipmi.map(|s| s.to_string())})).collect::<Vec<_>>(),
            "control": sim.control_addr().map(|a| a.to_string()),
            "ca": args.cert_out.as_ref().map(|p| p.display().to_string()),
            "firmware": sim.firmware(),
            "startup_ms": startup_ms,
            "rss_kib": rss,
            "nofile": nofile,
        });
        writeln!(out, "{v}")?;
    } else {
        for a in sim.addresses() {
            let mut line = format!("node {} {}", a.index, a.ip);
            if let Some(u) = a.https_url() {
                line.push_str(&format!(" https={u}"));
            }
            if let Some(u) = a.http_url() {
                line.push_str(&format!(" http={u}"));
            }
            if let Some(s) = a.ipmi {
                line.push_str(&format!(" ipmi={s}"));
            }
            writeln!(out, "{line}")?;
        }
        let mut line = format!(
            "ready nodes={} startup_ms={startup_ms} rss_kib={rss} nofile={nofile}",
            sim.len()
        );
        if let Some(c) = sim.control_addr() {
            line.push_str(&format!(" control={c}"));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);

    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    if let Some(path) = &args.state_file {
        let views: Vec<_> = sim.nodes().iter().map(|n| (n.index(), n.state())).collect();
        let v = serde_json::to_vec_pretty(&views)?;
        std::fs::write(path, v)
            .with_context(|| format!("writing state file {}", path.display()))?;
    }
    sim.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.count == 0 {
        eprintln!("irmc-sim: --count must be at least 1");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("irmc-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("irmc-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
