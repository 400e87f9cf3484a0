//! What shapes a local fleet ([`FleetSpec`]) and the naming rules every part agrees on:
//! share ids and directories, the simulated share servers' addresses, and the loopback
//! address of each simulated iRMC.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

/// Everything that shapes a local fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub nodes: usize,
    pub shares: usize,
    /// Scratch directory: data dir, shares, logs, media. Created if missing.
    pub work_dir: PathBuf,
    /// Where the `coordinator`, `share-agent` and `irmc-sim` binaries are.
    pub bin_dir: PathBuf,
    /// Address of the first simulated iRMC.
    pub sim_base: Ipv4Addr,
    /// Concurrent virtual-media boots per share agent.
    pub agent_capacity: u32,
    /// Coordinator's deploy call-back timeout.
    pub callback_timeout: Duration,
    /// Simulated iRMCs per `irmc-sim` process: larger fleets run several simulators on
    /// consecutive address ranges, so that no process outgrows its open-file limit (every
    /// simulated iRMC holds listeners and connections). Node indices in `sim_args` faults
    /// count within each simulator.
    pub nodes_per_sim: usize,
    /// Extra `irmc-sim` arguments (faults, boot delay ...), given to every simulator.
    pub sim_args: Vec<String>,
    /// Per-simulator extra arguments, after `sim_args`: simulator k gets
    /// `sim_profiles[k % len]` (a mixed fleet: generations, firmware, no IPMI, busy ...).
    pub sim_profiles: Vec<Vec<String>>,
    /// Extra `coordinator` arguments.
    pub coordinator_args: Vec<String>,
    /// Extra share-agent arguments, given to every agent.
    pub agent_args: Vec<String>,
    /// Share credentials the agents write into the iRMCs; `sim_share_password` is what the
    /// simulated share server accepts (differs only in the wrong-credentials scenario).
    pub share_password: String,
    pub sim_share_password: String,
    /// BMC password of every simulated iRMC.
    pub bmc_password: String,
    /// Size of the instance image the demo deploys.
    pub image_bytes: usize,
    /// iRMC port the nodes are enrolled with: 443 (HTTPS, verified against the
    /// simulator's CA) or 80 (plain HTTP).
    pub bmc_port: u16,
    /// TLS + mTLS + API tokens (default true). False runs the coordinator in its
    /// development mode (plain text, no tokens).
    pub tls: bool,
    /// Coordinator replicas (default 1). More than one needs `database_url`.
    pub coordinators: usize,
    /// PostgreSQL for the coordinators; `None`: SQLite in the work directory.
    pub database_url: Option<String>,
    /// Give the coordinator (replica 0) and every share agent a Prometheus metrics
    /// listener on a free loopback port (default false); see [`crate::Fleet::metrics_urls`].
    pub metrics: bool,
    /// Give the coordinator (replica 0) a browser dashboard on a free loopback port
    /// ([`crate::Fleet::dashboard_url`]). Default false.
    pub dashboard: bool,
}

impl FleetSpec {
    /// Defaults for `nodes` nodes over `shares` shares in `work_dir`.
    pub fn new(nodes: usize, shares: usize, work_dir: PathBuf, bin_dir: PathBuf) -> Self {
        FleetSpec {
            nodes,
            shares,
            work_dir,
            bin_dir,
            sim_base: random_sim_base(),
            agent_capacity: 64,
            callback_timeout: Duration::from_secs(1800),
            nodes_per_sim: default_nodes_per_sim(),
            sim_args: Vec::new(),
            sim_profiles: Vec::new(),
            coordinator_args: Vec::new(),
            agent_args: Vec::new(),
            share_password: "share-Pa55<&\"word".into(),
            sim_share_password: "share-Pa55<&\"word".into(),
            bmc_password: "bmc-Pa55<&\"word".into(),
            image_bytes: 4 << 20,
            bmc_port: 443,
            tls: true,
            coordinators: 1,
            database_url: None,
            metrics: false,
            dashboard: false,
        }
    }
}

/// Simulated iRMCs per simulator process: a fifth of the open-file hard limit, at most
/// 2,500 (a simulated iRMC needs a listener or two, and connections while it deploys).
pub fn default_nodes_per_sim() -> usize {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    usize::try_from(hard / 5).unwrap_or(2500).clamp(100, 2500)
}

/// A random `127.R.S.1` base (R in 2..=241, S in 0..=199, so 10,000 nodes still fit below
/// 127.R.255.255) so that concurrent fleets on one machine rarely collide.
pub fn random_sim_base() -> Ipv4Addr {
    use std::hash::{BuildHasher as _, Hasher as _};
    // RandomState is seeded from the OS for every instance: a cheap random u64.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let x = h.finish();
    Ipv4Addr::new(127, 2 + (x % 240) as u8, ((x >> 16) % 200) as u8, 1)
}

/// The directory holding this program's sibling binaries (release or debug), or
/// `VMEDIA_BIN_DIR` when set.
pub fn default_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("VMEDIA_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the vmedia executable")?;
    let mut dir = exe
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the vmedia executable has no parent directory"))?;
    // Test binaries live in target/<profile>/deps; the service binaries one level up.
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

pub fn share_id(k: usize) -> String {
    format!("share-{k}")
}

pub fn share_server(k: usize) -> String {
    format!("127.0.100.{k}")
}

pub fn share_dir(work: &Path, k: usize) -> PathBuf {
    work.join("shares").join(share_id(k))
}

/// Address of simulated iRMC `i`, counting like the simulator (skips .0 and .255).
pub fn sim_address(base: Ipv4Addr, i: usize) -> Result<Ipv4Addr> {
    let mut a = u32::from(base);
    let mut left = i;
    loop {
        let last = a & 0xff;
        if last != 0 && last != 255 {
            if left == 0 {
                break;
            }
            left -= 1;
        }
        a = a
            .checked_add(1)
            .ok_or_else(|| anyhow!("address range exhausted"))?;
    }
    let ip = Ipv4Addr::from(a);
    if ip.octets()[0] != 127 {
        bail!("simulated iRMC {i} would leave 127.0.0.0/8");
    }
    Ok(ip)
}
