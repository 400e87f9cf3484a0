//! A whole system on this machine: one coordinator (SQLite in a work directory), M share
//! agents whose shares are local directories, one `irmc-sim` process simulating N iRMCs on
//! loopback addresses, and a small HTTP server holding the deploy ISO and the instance
//! image. Every part is a real process talking over real sockets.
//!
//! `vmedia demo` drives it, and the end-to-end tests use it to kill and restart parts.
//!
//! Security is on by default, as in production: a development PKI from
//! [`crate::certs::init_dev_pki`] (the code behind `vmedia certs init`) gives the
//! coordinator its TLS certificate, each agent its client certificate (mTLS), and the
//! fleet an admin token. The free functions ([`list_all`], [`wait_until`]) take only an
//! address, so [`Fleet::start`] records the access settings for its coordinator URLs in a
//! process-wide table (keyed by URL, so parallel fleets do not mix).
//!
//! High availability: with `coordinators > 1` and a `database_url` (see [`Postgres`] for a
//! throwaway cluster), several replicas share one PostgreSQL; agents get the whole list
//! and follow the leader.
//!
//! Addresses: the simulated iRMCs live at `sim_base`, `sim_base + 1`, ... on port 443 with
//! a certificate signed by the simulator's own CA, which the nodes' `irmc_verify_ca`
//! points at (TLS is verified, as in production). Share `k` (1-based) is known to the
//! iRMCs as server `127.0.100.k`, share name `share`; the simulator maps that to the
//! agent's share directory and checks the share credentials like a CIFS server would.
//! Each simulated node's NIC MAC is `52:54:` followed by the four octets of its iRMC
//! address (the simulator's rule), which is how the deploy ramdisk's lookup finds it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use sha2::Digest as _;

use crate::certs::{DevPki, PkiSpec, init_dev_pki};
use crate::conn::{self, Access, Conn};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};
use vmedia_proto::v1::nodes_client::NodesClient;
use vmedia_proto::v1::shares_client::SharesClient;
use vmedia_proto::v1::{self as pb};

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
    /// Extra `irmc-sim` arguments (faults, boot delay ...).
    pub sim_args: Vec<String>,
    /// Extra `coordinator` arguments.
    pub coordinator_args: Vec<String>,
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
            sim_args: Vec::new(),
            coordinator_args: Vec::new(),
            share_password: "share-Pa55<&\"word".into(),
            sim_share_password: "share-Pa55<&\"word".into(),
            bmc_password: "bmc-Pa55<&\"word".into(),
            image_bytes: 4 << 20,
            bmc_port: 443,
            tls: true,
            coordinators: 1,
            database_url: None,
        }
    }
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

/// One child process with its log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait up to `grace`, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        self.kill().await;
    }

    /// CPU seconds (user + system) the process has used so far, from /proc.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.pid().and_then(proc_cpu_seconds)
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
}

/// utime + stime of a live process, in seconds.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some((utime + stime) / ticks)
}

/// Access settings per coordinator URL, for the free functions that get only a URL.
static ACCESS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Access>>> =
    std::sync::LazyLock::new(Default::default);

fn register_access(url: &str, access: &Access) {
    if let Ok(mut m) = ACCESS.lock() {
        m.insert(url.to_owned(), access.clone());
    }
}

fn forget_access(url: &str) {
    if let Ok(mut m) = ACCESS.lock() {
        m.remove(url);
    }
}

/// The access settings recorded for `url` (none: plain, no token).
pub fn access_for(url: &str) -> Access {
    ACCESS
        .lock()
        .ok()
        .and_then(|m| m.get(url).cloned())
        .unwrap_or_default()
}

/// A running local fleet.
pub struct Fleet {
    pub spec: FleetSpec,
    /// Replica 0.
    pub coordinator: Option<Proc>,
    pub coordinator_addr: SocketAddr,
    /// Replicas 1.. (HA fleets).
    pub more_coordinators: Vec<(SocketAddr, Option<Proc>)>,
    /// The development PKI and tokens (when `spec.tls`).
    pub pki: Option<DevPki>,
    /// What the fleet's own calls use: the CA and the admin token.
    pub access: Access,
    pub agents: Vec<Option<Proc>>,
    pub agent_http: Vec<SocketAddr>,
    pub sim: Proc,
    pub sim_control: Option<String>,
    pub ca_file: PathBuf,
    pub image_url: String,
    pub image_sha256: String,
    pub deploy_iso_url: String,
    /// BMC addresses, in node order.
    pub bmc_addresses: Vec<Ipv4Addr>,
    files: FileServer,
}

impl Fleet {
    /// Starts every process and waits until the coordinator sees every agent.
    pub async fn start(mut spec: FleetSpec) -> Result<Fleet> {
        let w = &spec.work_dir;
        for d in ["logs", "data", "media"] {
            std::fs::create_dir_all(w.join(d))
                .with_context(|| format!("creating {}", w.join(d).display()))?;
        }
        for k in 1..=spec.shares {
            std::fs::create_dir_all(share_dir(w, k))?;
        }
        for bin in ["coordinator", "share-agent", "irmc-sim"] {
            let p = spec.bin_dir.join(bin);
            if !p.is_file() {
                bail!(
                    "{} not found; build it first (cargo build --release -p {}) or set VMEDIA_BIN_DIR",
                    p.display(),
                    if bin == "coordinator" {
                        "coordinator"
                    } else {
                        bin
                    }
                );
            }
        }

        // Media the demo deploys: a deploy ISO (served by URL: every agent fetches it once
        // into its cache) and a raw disk image with its sha256.
        let media = w.join("media");
        let iso = build_demo_deploy_iso(&media)?;
        let image = demo_image(spec.image_bytes);
        let image_sha256 = hex::encode(sha2::Sha256::digest(&image));
        let files = FileServer::start(vec![
            (
                "deploy.iso".to_string(),
                std::fs::read(&iso).context("reading the deploy ISO")?,
            ),
            ("disk.img".to_string(), image),
        ])
        .await?;
        let image_url = format!("http://{}/disk.img", files.addr);
        let deploy_iso_url = format!("http://{}/deploy.iso", files.addr);

        // Simulator first: it knows the shares and writes its CA.
        let ca_file = w.join("irmc-ca.pem");
        let bmc_pw_file = write_secret(w, "bmc-password", &spec.bmc_password)?;
        // A random loopback range can be taken by another fleet on this machine (tests
        // run in parallel): pick another one and try again.
        let mut attempts = 0;
        let (sim, ready) = loop {
            let mut sim_cmd = Command::new(spec.bin_dir.join("irmc-sim"));
            sim_cmd
                .arg("--count")
                .arg(spec.nodes.to_string())
                .arg("--base-address")
                .arg(spec.sim_base.to_string())
                .arg("--username")
                .arg("admin")
                .arg("--password-file")
                .arg(&bmc_pw_file)
                .arg("--cert-out")
                .arg(&ca_file)
                .arg("--control")
                .arg("127.0.0.1:0")
                .arg("--boot")
                .arg("--fast-ramdisk");
            // HTTPS always (it also writes the CA the nodes are enrolled with); plain HTTP
            // only when the nodes use it: one listener per address and port, and 10,000
            // addresses x 2 ports would not fit a 20,000 open-file limit.
            sim_cmd.arg("--https-port").arg("443");
            if spec.bmc_port != 443 {
                sim_cmd.arg("--http-port").arg(spec.bmc_port.to_string());
            }
            for k in 1..=spec.shares {
                sim_cmd.arg("--share-map").arg(format!(
                    "{}:{}@{}/share={}",
                    "demo",
                    spec.sim_share_password,
                    share_server(k),
                    share_dir(w, k).display()
                ));
            }
            sim_cmd.args(&spec.sim_args);
            let started = spawn_until(
                sim_cmd,
                "irmc-sim",
                &w.join("logs"),
                |l| l.starts_with("ready"),
                Duration::from_secs(120),
            )
            .await;
            match started {
                Ok(x) => break x,
                Err(e) if attempts < 8 && format!("{e:#}").contains("Address already in use") => {
                    attempts += 1;
                    spec.sim_base = random_sim_base();
                }
                Err(e) => return Err(e),
            }
        };
        let sim_control = ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("control="))
            .map(str::to_string);
        let bmc_addresses = (0..spec.nodes)
            .map(|i| sim_address(spec.sim_base, i))
            .collect::<Result<Vec<_>>>()?;

        // Certificates and tokens, with the same code as `vmedia certs init`.
        let pki = if spec.tls {
            Some(init_dev_pki(&PkiSpec {
                dir: w.join("pki"),
                agent_ids: (1..=spec.shares).map(share_id).collect(),
                hosts: Vec::new(),
                force: true,
            })?)
        } else {
            None
        };
        let access = match &pki {
            Some(p) => Access {
                ca_file: Some(p.ca_cert.clone()),
                token: None,
            }
            .with_token_file(&p.admin_token)?,
            None => Access::default(),
        };
        if spec.coordinators > 1 && spec.database_url.is_none() {
            bail!("several coordinators need a database_url (PostgreSQL)");
        }

        // Coordinators.
        let coordinator_addr = free_port()?;
        let more_coordinators = (1..spec.coordinators.max(1))
            .map(|_| free_port().map(|a| (a, None)))
            .collect::<Result<Vec<_>>>()?;
        let mut fleet = Fleet {
            coordinator: None,
            coordinator_addr,
            more_coordinators,
            pki,
            access,
            agents: Vec::new(),
            agent_http: Vec::new(),
            sim,
            sim_control,
            ca_file,
            image_url,
            image_sha256,
            deploy_iso_url,
            bmc_addresses,
            files,
            spec,
        };
        for i in 0..fleet.replica_count() {
            register_access(&fleet.replica_url(i), &fleet.access);
        }
        for i in 0..fleet.replica_count() {
            fleet.start_replica(i).await?;
        }

        // Agents.
        let share_pw_file = write_secret(
            &fleet.spec.work_dir,
            "share-password",
            &fleet.spec.share_password,
        )?;
        for k in 1..=fleet.spec.shares {
            let http = free_port()?;
            fleet.agent_http.push(http);
            let proc = fleet.spawn_agent(k, http, &share_pw_file).await?;
            fleet.agents.push(Some(proc));
        }
        fleet
            .wait_shares_healthy(fleet.spec.shares, Duration::from_secs(60))
            .await?;
        Ok(fleet)
    }

    fn scheme(&self) -> &'static str {
        if self.pki.is_some() { "https" } else { "http" }
    }

    /// URL of replica 0 (the only one unless the fleet is HA).
    pub fn coordinator_url(&self) -> String {
        self.replica_url(0)
    }

    /// Every replica's URL, comma separated (what agents and [`list_all`] accept).
    pub fn coordinator_urls(&self) -> String {
        (0..self.replica_count())
            .map(|i| self.replica_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn replica_count(&self) -> usize {
        1 + self.more_coordinators.len()
    }

    pub fn replica_addr(&self, i: usize) -> SocketAddr {
        match i {
            0 => self.coordinator_addr,
            _ => self
                .more_coordinators
                .get(i - 1)
                .map_or(self.coordinator_addr, |r| r.0),
        }
    }

    pub fn replica_url(&self, i: usize) -> String {
        format!("{}://{}", self.scheme(), self.replica_addr(i))
    }

    fn replica_slot(&mut self, i: usize) -> Option<&mut Option<Proc>> {
        match i {
            0 => Some(&mut self.coordinator),
            _ => self.more_coordinators.get_mut(i - 1).map(|r| &mut r.1),
        }
    }

    /// (Re)starts the coordinator on the same data directory and address.
    pub async fn start_coordinator(&mut self) -> Result<()> {
        self.start_replica(0).await
    }

    /// (Re)starts coordinator replica `i` and waits until it answers (as leader or
    /// follower: any replica serves ListNodes).
    pub async fn start_replica(&mut self, i: usize) -> Result<()> {
        let w = self.spec.work_dir.clone();
        let addr = self.replica_addr(i);
        let name = if i == 0 {
            "coordinator".to_string()
        } else {
            format!("coordinator-{i}")
        };
        let data = if i == 0 {
            w.join("data")
        } else {
            w.join(format!("data-{i}"))
        };
        let mut cmd = Command::new(self.spec.bin_dir.join("coordinator"));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--callback-timeout")
            .arg(format!("{}s", self.spec.callback_timeout.as_secs().max(1)));
        if let Some(p) = &self.pki {
            cmd.arg("--tls-cert-file")
                .arg(&p.coordinator_cert)
                .arg("--tls-key-file")
                .arg(&p.coordinator_key)
                .arg("--agent-ca-file")
                .arg(&p.ca_cert)
                .arg("--tokens-file")
                .arg(&p.tokens)
                .arg("--secret-key-file")
                .arg(&p.secret_key);
        }
        if let Some(url) = &self.spec.database_url {
            // Through the environment: a URL may hold a password, and a command line is
            // visible to every user of the machine.
            cmd.env("COORDINATOR_DATABASE_URL", url);
        }
        cmd.args(&self.spec.coordinator_args);
        let proc = spawn_logged(cmd, &name, &w.join("logs"))?;
        if let Some(slot) = self.replica_slot(i) {
            *slot = Some(proc);
        }
        let url = self.replica_url(i);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = conn::clients(&url, &self.access).await
                && c.nodes
                    .list_nodes(pb::ListNodesRequest {
                        limit: 1,
                        ..Default::default()
                    })
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if let Some(Some(p)) = self.replica_slot(i)
                && let Ok(Some(status)) = p.child.try_wait()
            {
                bail!(
                    "{name} exited during start-up ({status}); see {}",
                    p.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs coordinator replica `i`.
    pub async fn kill_replica(&mut self, i: usize) {
        if let Some(slot) = self.replica_slot(i)
            && let Some(mut p) = slot.take()
        {
            p.kill().await;
        }
    }

    /// The replica that leads now (the one that answers ListShares), if any.
    pub async fn leader_index(&self) -> Option<usize> {
        for i in 0..self.replica_count() {
            let alive = match i {
                0 => self.coordinator.is_some(),
                _ => self
                    .more_coordinators
                    .get(i - 1)
                    .is_some_and(|r| r.1.is_some()),
            };
            if !alive {
                continue;
            }
            if let Ok(mut c) = conn::clients(&self.replica_url(i), &self.access).await
                && c.shares.list_shares(pb::ListSharesRequest {}).await.is_ok()
            {
                return Some(i);
            }
        }
        None
    }

    async fn spawn_agent(&self, k: usize, http: SocketAddr, share_pw_file: &Path) -> Result<Proc> {
        let identity = self
            .pki
            .as_ref()
            .and_then(|p| p.agents.get(&share_id(k)))
            .map(|(c, key)| (c.clone(), key.clone()));
        self.spawn_agent_as(k, &share_id(k), http, share_pw_file, identity)
    }

    /// Starts a share agent for share `k` under agent id `id`, presenting `identity`
    /// (certificate, key) to the coordinator. Tests use it for agents the coordinator
    /// must refuse (a certificate from another CA, none at all).
    pub fn spawn_agent_as(
        &self,
        k: usize,
        id: &str,
        http: SocketAddr,
        share_pw_file: &Path,
        identity: Option<(PathBuf, PathBuf)>,
    ) -> Result<Proc> {
        let w = &self.spec.work_dir;
        let mut cmd = Command::new(self.spec.bin_dir.join("share-agent"));
        if let Some(p) = &self.pki {
            cmd.arg("--coordinator-ca-file").arg(&p.ca_cert);
        }
        if let Some((cert, key)) = identity {
            cmd.arg("--coordinator-cert-file")
                .arg(cert)
                .arg("--coordinator-key-file")
                .arg(key);
        }
        cmd.arg("--agent-id")
            .arg(id)
            .arg("--coordinator")
            .arg(self.coordinator_urls())
            .arg("--capacity")
            .arg(self.spec.agent_capacity.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--ipa-api-url")
            .arg(format!("http://{http}"))
            .arg("--remote-image-share-root")
            .arg(share_dir(w, k))
            .arg("--remote-image-server")
            .arg(share_server(k))
            .arg("--remote-image-share-type")
            .arg("CIFS")
            .arg("--remote-image-share-name")
            .arg("share")
            .arg("--remote-image-user-name")
            .arg("demo")
            .arg("--remote-image-user-password-file")
            .arg(share_pw_file)
            // Every agent of the fleet shares this machine's few cores: one runtime
            // thread each spares the hand-offs between worker threads.
            .arg("--worker-threads")
            .arg("1");
        spawn_logged(cmd, id, &w.join("logs"))
    }

    /// The share password file the agents read.
    pub fn share_password_file(&self) -> PathBuf {
        self.spec.work_dir.join("share-password")
    }

    /// SIGKILLs share agent `k` (1-based).
    pub async fn kill_agent(&mut self, k: usize) -> Result<()> {
        let slot = self
            .agents
            .get_mut(k.wrapping_sub(1))
            .ok_or_else(|| anyhow!("no share agent {k}"))?;
        if let Some(mut p) = slot.take() {
            p.kill().await;
        }
        Ok(())
    }

    /// SIGKILLs the coordinator.
    pub async fn kill_coordinator(&mut self) {
        if let Some(mut p) = self.coordinator.take() {
            p.kill().await;
        }
    }

    /// Nodes client on the leader, with the fleet's admin token.
    pub async fn nodes_client(&self) -> Result<NodesClient<Conn>> {
        Ok(conn::connect(&self.coordinator_urls(), &self.access)
            .await
            .context("connecting to the coordinator")?
            .nodes)
    }

    /// Shares client on the leader, with the fleet's admin token.
    pub async fn shares_client(&self) -> Result<SharesClient<Conn>> {
        Ok(conn::connect(&self.coordinator_urls(), &self.access)
            .await
            .context("connecting to the coordinator")?
            .shares)
    }

    /// Waits until at least `n` shares report healthy.
    pub async fn wait_shares_healthy(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(mut c) = self.shares_client().await
                && let Ok(r) = c.list_shares(pb::ListSharesRequest {}).await
            {
                let healthy = r
                    .into_inner()
                    .shares
                    .iter()
                    .filter(|s| s.health == "healthy")
                    .count();
                if healthy >= n {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "fewer than {n} share agents registered within {limit:?}; see the logs in {}",
                    self.spec.work_dir.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The node definition for simulated node `i`.
    pub fn node_request(&self, i: usize) -> pb::CreateNodeRequest {
        let ip = self.bmc_addresses[i];
        let o = ip.octets();
        let mut driver_info = BTreeMap::new();
        driver_info.insert("irmc_address".to_string(), ip.to_string());
        driver_info.insert("irmc_username".to_string(), "admin".to_string());
        driver_info.insert("irmc_password".to_string(), self.spec.bmc_password.clone());
        driver_info.insert("irmc_port".to_string(), self.spec.bmc_port.to_string());
        driver_info.insert(
            "irmc_verify_ca".to_string(),
            self.ca_file.display().to_string(),
        );
        driver_info.insert("deploy_iso".to_string(), self.deploy_iso_url.clone());
        let mut instance_info = BTreeMap::new();
        instance_info.insert("image_source".to_string(), self.image_url.clone());
        instance_info.insert("image_checksum".to_string(), self.image_sha256.clone());
        instance_info.insert("image_disk_format".to_string(), "raw".to_string());
        let mut properties = BTreeMap::new();
        properties.insert("capabilities".to_string(), "boot_mode:uefi".to_string());
        pb::CreateNodeRequest {
            uuid: String::new(),
            name: format!("node-{:05}", i + 1),
            driver: "irmc".into(),
            driver_info: driver_info.into_iter().collect(),
            instance_info: instance_info.into_iter().collect(),
            properties: properties.into_iter().collect(),
            macs: vec![format!(
                "52:54:{:02x}:{:02x}:{:02x}:{:02x}",
                o[0], o[1], o[2], o[3]
            )],
            share_selector: Default::default(),
        }
    }

    /// Enrolls every simulated node (64 requests in flight); returns their uuids in node order.
    pub async fn enroll_all(&self) -> Result<Vec<String>> {
        use futures::StreamExt as _;
        let client = self.nodes_client().await?;
        let requests: Vec<_> = (0..self.spec.nodes).map(|i| self.node_request(i)).collect();
        let results: Vec<Result<String>> = futures::stream::iter(requests)
            .map(|req| {
                let mut c = client.clone();
                async move {
                    let name = req.name.clone();
                    c.create_node(req)
                        .await
                        .map(|r| r.into_inner().uuid)
                        .map_err(|s| anyhow!("enrolling {name}: {}", s.message()))
                }
            })
            .buffered(64)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// One provision verb on many nodes (bulk API, 5,000 per call); any refusal is an error.
    pub async fn bulk(&self, uuids: &[String], verb: &str) -> Result<()> {
        let mut client = self.nodes_client().await?;
        for chunk in uuids.chunks(5000) {
            let r = client
                .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
                    nodes: chunk.to_vec(),
                    selector: None,
                    target: verb.to_string(),
                })
                .await
                .map_err(|s| anyhow!("{verb}: {}", s.message()))?
                .into_inner();
            if let Some(f) = r.failures.first() {
                bail!(
                    "{verb} refused for {} node(s), e.g. {}: {}",
                    r.failures.len(),
                    f.node,
                    f.error
                );
            }
        }
        Ok(())
    }

    /// manage, then provide, waiting for each: every node ends `available`.
    pub async fn make_available(
        &self,
        uuids: &[String],
        limit: Duration,
        mut progress: impl FnMut(&str, &BTreeMap<String, usize>),
    ) -> Result<()> {
        for (verb, want) in [("manage", "manageable"), ("provide", "available")] {
            self.bulk(uuids, verb).await?;
            let nodes = wait_until(
                &self.coordinator_urls(),
                limit,
                |n| n.provision_state == want || is_failed(n),
                |c| progress(verb, c),
            )
            .await?;
            if let Some(bad) = nodes.iter().find(|n| n.provision_state != want) {
                bail!(
                    "{verb}: {} ended {} ({})",
                    bad.name,
                    bad.provision_state,
                    bad.last_error
                );
            }
        }
        Ok(())
    }

    /// Sum of CPU seconds used so far by the coordinator, the agents and the simulator.
    pub fn cpu_seconds(&self) -> CpuSeconds {
        CpuSeconds {
            coordinator: self
                .coordinator
                .as_ref()
                .and_then(Proc::cpu_seconds)
                .unwrap_or(0.0)
                + self
                    .more_coordinators
                    .iter()
                    .filter_map(|r| r.1.as_ref())
                    .filter_map(Proc::cpu_seconds)
                    .sum::<f64>(),
            agents: self
                .agents
                .iter()
                .flatten()
                .filter_map(Proc::cpu_seconds)
                .sum(),
            simulator: self.sim.cpu_seconds().unwrap_or(0.0),
        }
    }

    /// Bytes allocated on every share (du), per share id.
    pub fn share_usage(&self) -> BTreeMap<String, ShareUsage> {
        (1..=self.spec.shares)
            .map(|k| (share_id(k), dir_usage(&share_dir(&self.spec.work_dir, k))))
            .collect()
    }

    /// The simulator's request counters (`GET /counters` on its control API).
    pub async fn sim_counters(&self) -> Result<serde_json::Value> {
        let addr = self
            .sim_control
            .as_deref()
            .ok_or_else(|| anyhow!("the simulator has no control API"))?;
        http_get_json(addr, "/counters").await
    }

    /// One simulated node as the simulator sees it (`GET /nodes/{i}`).
    pub async fn sim_node(&self, i: usize) -> Result<serde_json::Value> {
        let addr = self
            .sim_control
            .as_deref()
            .ok_or_else(|| anyhow!("the simulator has no control API"))?;
        http_get_json(addr, &format!("/nodes/{i}")).await
    }

    /// Stops everything (SIGTERM, then SIGKILL).
    pub async fn shutdown(mut self) {
        for p in self.agents.iter_mut().flatten() {
            p.stop(Duration::from_secs(3)).await;
        }
        if let Some(p) = self.coordinator.as_mut() {
            p.stop(Duration::from_secs(3)).await;
        }
        for (_, p) in &mut self.more_coordinators {
            if let Some(p) = p.as_mut() {
                p.stop(Duration::from_secs(3)).await;
            }
        }
        for i in 0..self.replica_count() {
            forget_access(&self.replica_url(i));
        }
        self.sim.stop(Duration::from_secs(3)).await;
        self.files.stop();
    }
}

/// CPU seconds per part of the system.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuSeconds {
    pub coordinator: f64,
    pub agents: f64,
    pub simulator: f64,
}

/// Logical and allocated bytes under a directory, and its file count.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ShareUsage {
    pub files: u64,
    pub bytes: u64,
    pub allocated: u64,
}

/// Walks `dir` (missing or unreadable parts count as empty).
pub fn dir_usage(dir: &Path) -> ShareUsage {
    use std::os::unix::fs::MetadataExt as _;
    let mut u = ShareUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                u.files += 1;
                u.bytes += md.len();
                u.allocated += md.blocks() * 512;
            }
        }
    }
    u
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

fn write_secret(dir: &Path, name: &str, value: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).with_context(|| format!("writing {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

/// Spawns `cmd` with stdout and stderr appended to `logs/<name>.log`.
pub fn spawn_logged(mut cmd: Command, name: &str, logs: &Path) -> Result<Proc> {
    let log = logs.join(format!("{name}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name: name.to_string(),
        child,
        log,
    })
}

/// Spawns with stdout piped, waits for a line matching `ready`, then keeps copying
/// stdout to the log in the background.
async fn spawn_until(
    mut cmd: Command,
    name: &str,
    logs: &Path,
    ready: impl Fn(&str) -> bool,
    limit: Duration,
) -> Result<(Proc, String)> {
    let log = logs.join(format!("{name}.log"));
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name}: no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await? {
            if ready(&line) {
                return Ok::<_, std::io::Error>(Some(line));
            }
        }
        Ok(None)
    })
    .await;
    let line = match found {
        Ok(Ok(Some(l))) => l,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let _ = child.wait().await;
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            bail!("{name} exited before it was ready: {last}");
        }
        Err(_) => bail!(
            "{name} was not ready within {limit:?}; see {}",
            log.display()
        ),
    };
    // Drain the rest so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((
        Proc {
            name: name.to_string(),
            child,
            log,
        },
        line,
    ))
}

/// GET a JSON document from a loopback HTTP/1.1 server (the simulator's control API).
pub async fn http_get_json(addr: &str, path: &str) -> Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP reply from {addr}{path}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).with_context(|| format!("parsing JSON from {addr}{path}"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Deterministic, incompressible-looking bytes for the demo disk image.
fn demo_image(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A deploy ISO for the simulated servers: a real El Torito ISO (isolinux + GRUB) whose
/// kernel and ramdisk are placeholders: the simulator reads the boot configuration and
/// runs its own simulated ramdisk instead of executing them.
fn build_demo_deploy_iso(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("deploy.iso");
    if out.is_file() {
        return Ok(out);
    }
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    std::fs::write(&kernel, b"simulated deploy kernel\n")?;
    std::fs::write(&initrd, b"simulated deploy ramdisk\n")?;
    let spec = boot_media::DeployIsoSpec {
        kernel,
        ramdisk: initrd,
        params: boot_media::Parameters::default(),
        extra_cmdline: "ipa-debug=1".into(),
        bios: true,
        uefi: true,
        loaders: boot_media::Loaders::default(),
    };
    boot_media::build_deploy_iso(&spec, &out)
        .map_err(|e| anyhow!("building the demo deploy ISO: {e}"))?;
    Ok(out)
}

/// A minimal static file server on loopback for the demo's images.
struct FileServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    async fn start(files: Vec<(String, Vec<u8>)>) -> Result<FileServer> {
        use std::sync::Arc;
        let files: Arc<BTreeMap<String, bytes::Bytes>> = Arc::new(
            files
                .into_iter()
                .map(|(n, b)| (format!("/{n}"), bytes::Bytes::from(b)))
                .collect(),
        );
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let files = files.clone();
            async move {
                match files.get(uri.path()) {
                    Some(b) => (axum::http::StatusCode::OK, b.clone()),
                    None => (axum::http::StatusCode::NOT_FOUND, bytes::Bytes::new()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FileServer { addr, task })
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// What a poll of the coordinator shows of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeSummary {
    pub uuid: String,
    pub name: String,
    pub provision_state: String,
    pub last_error: String,
    pub share: String,
}

/// A node that an operation gave up on.
pub fn is_failed(n: &NodeSummary) -> bool {
    matches!(
        n.provision_state.as_str(),
        "deploy failed" | "clean failed" | "error"
    ) || (n.provision_state == "enroll" && !n.last_error.is_empty())
}

/// Provision states in which nothing more happens without an operator.
pub fn is_settled(state: &str) -> bool {
    matches!(
        state,
        "enroll"
            | "manageable"
            | "available"
            | "active"
            | "deploy failed"
            | "clean failed"
            | "error"
    )
}

/// Every node the coordinator knows, one page at a time. `coordinator` may list several
/// replicas (comma separated): the first that answers is used (any replica serves reads).
pub async fn list_all(coordinator: &str) -> Result<Vec<NodeSummary>> {
    let mut last = None;
    for url in conn::urls(coordinator) {
        match list_all_from(&url).await {
            Ok(nodes) => return Ok(nodes),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no coordinator address given")))
}

async fn list_all_from(url: &str) -> Result<Vec<NodeSummary>> {
    let mut c = conn::clients(url, &access_for(url))
        .await
        .context("connecting to the coordinator")?
        .nodes
        .max_decoding_message_size(256 << 20);
    let mut out = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_nodes(pb::ListNodesRequest {
                limit: 5000,
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!("listing nodes: {}", s.message()))?
            .into_inner();
        out.extend(page.nodes.into_iter().map(|n| NodeSummary {
            uuid: n.uuid,
            name: n.name,
            provision_state: n.provision_state,
            last_error: n.last_error,
            share: n.share,
        }));
        if page.next_marker.is_empty() {
            return Ok(out);
        }
        marker = page.next_marker;
    }
}

/// Polls until every node satisfies `done` or `limit` passes; `progress` sees the count
/// per state after each poll. A coordinator that is briefly away (restarting) is waited for.
pub async fn wait_until(
    coordinator: &str,
    limit: Duration,
    done: impl Fn(&NodeSummary) -> bool,
    mut progress: impl FnMut(&BTreeMap<String, usize>),
) -> Result<Vec<NodeSummary>> {
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    let mut poll = Duration::from_millis(250);
    loop {
        match list_all(coordinator).await {
            Ok(nodes) => {
                poll = Duration::from_millis(250 + nodes.len() as u64 / 10);
                let mut counts = BTreeMap::new();
                for n in &nodes {
                    *counts.entry(n.provision_state.clone()).or_insert(0) += 1;
                }
                progress(&counts);
                if nodes.iter().all(&done) {
                    return Ok(nodes);
                }
                if Instant::now() > deadline {
                    let stuck: Vec<String> = nodes
                        .iter()
                        .filter(|n| !done(n))
                        .take(5)
                        .map(|n| format!("{} ({})", n.name, n.provision_state))
                        .collect();
                    bail!(
                        "not every node got there within {limit:?}; for example: {}",
                        stuck.join(", ")
                    );
                }
            }
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(e.context(last_err.unwrap_or_default()));
                }
                last_err = Some(format!("{e:#}"));
            }
        }
        // Listing is not free for the coordinator: poll large fleets less often.
        tokio::time::sleep(poll).await;
    }
}

/// A throwaway PostgreSQL cluster on a loopback port (initdb + pg_ctl, fsync off), for
/// HA fleets and tests. Stopped (immediate mode) on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl Postgres {
    /// The directory holding `initdb`/`pg_ctl`: `$PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`. `None` when PostgreSQL is not installed.
    pub fn bin_dir() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("PG_BIN") {
            return Some(PathBuf::from(p));
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        found.sort();
        found.pop()
    }

    /// Initialises and starts a cluster in `dir` (created; must not hold one already).
    pub fn start(dir: &Path) -> Result<Postgres> {
        let bin = Self::bin_dir().ok_or_else(|| anyhow!("PostgreSQL is not installed"))?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let root = is_root();
        if root {
            // initdb and postgres refuse to run as root: hand the directory over.
            let st = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .context("chown for PostgreSQL")?;
            if !st.success() {
                bail!("chown of {} for PostgreSQL failed", dir.display());
            }
        }
        let run = |tool: &str, args: &[&str]| -> Result<std::process::Output> {
            let exe = bin.join(tool);
            let mut cmd = if root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&exe);
                c
            } else {
                std::process::Command::new(&exe)
            };
            cmd.args(args)
                .output()
                .with_context(|| format!("running {tool}"))
        };
        let data = dir.join("data");
        let data_s = data.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let out = run(
            "initdb",
            &[
                "-D",
                data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log = dir.join("postgres.log");
        let log_s = log.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let mut last = String::new();
        // A free port may be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            let port = free_port()?.port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
                dir.display()
            );
            let out = run(
                "pg_ctl",
                &["-D", data_s, "-o", &opts, "-l", log_s, "-w", "start"],
            )?;
            if out.status.success() {
                return Ok(Postgres { bin, data, port });
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        bail!("could not start PostgreSQL: {last}")
    }

    /// URL of database `db` (user postgres, trust auth on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

/// Whether this process runs as root (effective uid from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
