//! A running local fleet: start every process, take parts down and bring them back,
//! enroll and drive nodes through the public API, and read what each part used.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use coordinator_client::conn::{self, Access, Conn};
use coordinator_client::pki::{DevPki, PkiSpec, init_dev_pki};
use sha2::Digest as _;
use tokio::process::Command;
use vmedia_proto::v1::nodes_client::NodesClient;
use vmedia_proto::v1::shares_client::SharesClient;
use vmedia_proto::v1::{self as pb};

use crate::files::{
    FileServer, ShareUsage, build_demo_deploy_iso, demo_image, dir_usage, write_secret,
};
use crate::observe::{CpuSeconds, NodeSummary, http_get_json, is_failed, list_all, wait_until};
use crate::process::{Proc, free_port, spawn_logged, spawn_until};
use crate::spec::{FleetSpec, random_sim_base, share_dir, share_id, share_server, sim_address};

/// A coordinator on its own: development mode (plain text, no tokens), SQLite in
/// `dir/data`, its log in `dir/logs`, on a free loopback port. For measurements of the
/// coordinator alone (the bench's memory run).
pub fn lone_coordinator(bin_dir: &Path, dir: &Path) -> Result<(Proc, SocketAddr)> {
    for d in ["logs", "data"] {
        std::fs::create_dir_all(dir.join(d))
            .with_context(|| format!("creating {}", dir.join(d).display()))?;
    }
    let addr = free_port()?;
    let mut cmd = Command::new(bin_dir.join("coordinator"));
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir.join("data"));
    Ok((spawn_logged(cmd, "coordinator", &dir.join("logs"))?, addr))
}

/// One `irmc-sim` process and the slice of the fleet it simulates.
pub struct SimProc {
    pub proc: Proc,
    /// Index of its first node in the fleet.
    pub first: usize,
    pub count: usize,
    /// Its control API address.
    pub control: Option<String>,
    /// The CA that signs its iRMCs' certificates (the nodes' `irmc_verify_ca`).
    pub ca_file: PathBuf,
}

impl SimProc {
    fn control(&self) -> Result<&str> {
        self.control
            .as_deref()
            .ok_or_else(|| anyhow!("{} has no control API", self.proc.name))
    }
}

/// Raises this process's soft open-file limit to its hard limit; the simulators, agents
/// and coordinator it starts inherit it. Best effort: a limit that cannot be read or raised
/// stays as it is, and the fleet's sizing ([`FleetSpec::nodes_per_sim`]) keeps each
/// simulator within it.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Starts the simulator processes: one per [`FleetSpec::nodes_per_sim`] nodes, on
/// consecutive address ranges from `spec.sim_base`. On failure, those already started are
/// stopped.
async fn start_sims(spec: &FleetSpec, bmc_pw_file: &Path) -> Result<Vec<SimProc>> {
    let w = &spec.work_dir;
    let per = spec.nodes_per_sim.max(1);
    let mut sims: Vec<SimProc> = Vec::new();
    let mut first = 0;
    while first < spec.nodes.max(1) {
        let count = per.min(spec.nodes - first).max(1);
        let k = sims.len();
        let name = if spec.nodes <= per {
            "irmc-sim".to_string()
        } else {
            format!("irmc-sim-{}", k + 1)
        };
        let ca_file = if k == 0 {
            w.join("irmc-ca.pem")
        } else {
            w.join(format!("irmc-ca-{}.pem", k + 1))
        };
        let mut cmd = Command::new(spec.bin_dir.join("irmc-sim"));
        cmd.arg("--count")
            .arg(count.to_string())
            .arg("--base-address")
            .arg(sim_address(spec.sim_base, first)?.to_string())
            .arg("--username")
            .arg("admin")
            .arg("--password-file")
            .arg(bmc_pw_file)
            .arg("--cert-out")
            .arg(&ca_file)
            .arg("--control")
            .arg("127.0.0.1:0")
            .arg("--boot")
            .arg("--fast-ramdisk");
        // HTTPS always (it also writes the CA the nodes are enrolled with); plain HTTP
        // only when the nodes use it: one listener per address and port counts against
        // each simulator's open-file limit.
        cmd.arg("--https-port").arg("443");
        if spec.bmc_port != 443 {
            cmd.arg("--http-port").arg(spec.bmc_port.to_string());
        }
        for s in 1..=spec.shares {
            cmd.arg("--share-map").arg(format!(
                "{}:{}@{}/share={}",
                "demo",
                spec.sim_share_password,
                share_server(s),
                share_dir(w, s).display()
            ));
        }
        cmd.args(&spec.sim_args);
        if !spec.sim_profiles.is_empty() {
            cmd.args(&spec.sim_profiles[k % spec.sim_profiles.len()]);
        }
        let started = spawn_until(
            cmd,
            &name,
            &w.join("logs"),
            |l| l.starts_with("ready"),
            Duration::from_secs(120),
        )
        .await;
        let (proc, ready) = match started {
            Ok(x) => x,
            Err(e) => {
                for s in &mut sims {
                    s.proc.kill().await;
                }
                return Err(e);
            }
        };
        let control = ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("control="))
            .map(str::to_string);
        sims.push(SimProc {
            proc,
            first,
            count,
            control,
            ca_file,
        });
        first += count;
    }
    Ok(sims)
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
    /// The simulator processes, in node order: each simulates a contiguous slice of the
    /// fleet (see [`FleetSpec::nodes_per_sim`]).
    pub sims: Vec<SimProc>,
    pub image_url: String,
    pub image_sha256: String,
    pub deploy_iso_url: String,
    /// BMC addresses, in node order.
    pub bmc_addresses: Vec<Ipv4Addr>,
    /// Metrics listener of replica 0 (with `spec.metrics`).
    pub coordinator_metrics: Option<SocketAddr>,
    /// Metrics listener of each share agent, in share order (with `spec.metrics`).
    pub agent_metrics: Vec<SocketAddr>,
    /// The dashboard's address (replica 0), when `spec.dashboard`.
    pub dashboard_addr: Option<SocketAddr>,
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

        // Simulators first: they know the shares and write their CAs.
        let bmc_pw_file = write_secret(w, "bmc-password", &spec.bmc_password)?;
        raise_open_file_limit();
        // A random loopback range can be taken by another fleet on this machine (tests
        // run in parallel): pick another one and try again.
        let mut attempts = 0;
        let sims = loop {
            match start_sims(&spec, &bmc_pw_file).await {
                Ok(sims) => break sims,
                Err(e) if attempts < 8 && format!("{e:#}").contains("Address already in use") => {
                    attempts += 1;
                    spec.sim_base = random_sim_base();
                }
                Err(e) => return Err(e),
            }
        };
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
        let (coordinator_metrics, agent_metrics) = if spec.metrics {
            (
                Some(free_port()?),
                (0..spec.shares)
                    .map(|_| free_port())
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            (None, Vec::new())
        };
        let dashboard_addr = if spec.dashboard {
            Some(free_port()?)
        } else {
            None
        };
        let mut fleet = Fleet {
            dashboard_addr,
            coordinator: None,
            coordinator_addr,
            more_coordinators,
            pki,
            access,
            agents: Vec::new(),
            agent_http: Vec::new(),
            sims,
            image_url,
            image_sha256,
            deploy_iso_url,
            bmc_addresses,
            coordinator_metrics,
            agent_metrics,
            files,
            spec,
        };
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

    /// The dashboard's URL (`https` when the fleet has TLS: the coordinator's certificate,
    /// signed by the fleet's CA), when `spec.dashboard`.
    pub fn dashboard_url(&self) -> Option<String> {
        self.dashboard_addr
            .map(|a| format!("{}://{a}/", self.scheme()))
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
        if i == 0
            && let Some(m) = self.coordinator_metrics
        {
            cmd.arg("--metrics-listen").arg(m.to_string());
        }
        if let (0, Some(a)) = (i, self.dashboard_addr) {
            cmd.arg("--dashboard-listen").arg(a.to_string());
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
            .arg("1")
            .args(&self.spec.agent_args);
        if let Some(m) = self.agent_metrics.get(k.wrapping_sub(1)) {
            cmd.arg("--metrics-listen").arg(m.to_string());
        }
        spawn_logged(cmd, id, &w.join("logs"))
    }

    /// `(service, scrape URL)` of every metrics listener: the coordinator first, then the
    /// share agents in share order. Empty unless `spec.metrics`.
    pub fn metrics_urls(&self) -> Vec<(String, String)> {
        let url = |a: &SocketAddr| format!("http://{a}/metrics");
        self.coordinator_metrics
            .iter()
            .map(|a| ("coordinator".to_string(), url(a)))
            .chain(
                self.agent_metrics
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (share_id(i + 1), url(a))),
            )
            .collect()
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
            self.sim_of(i).0.ca_file.display().to_string(),
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
            let nodes = self
                .wait_until(
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

    /// Every node, listed through the fleet's replicas with its admin access.
    pub async fn list_all(&self) -> Result<Vec<NodeSummary>> {
        list_all(&self.coordinator_urls(), &self.access).await
    }

    /// [`crate::observe::wait_until`] on this fleet's replicas with its admin access.
    pub async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&NodeSummary) -> bool,
        progress: impl FnMut(&BTreeMap<String, usize>),
    ) -> Result<Vec<NodeSummary>> {
        wait_until(
            &self.coordinator_urls(),
            &self.access,
            limit,
            done,
            progress,
        )
        .await
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
            simulator: self.sims.iter().filter_map(|s| s.proc.cpu_seconds()).sum(),
        }
    }

    /// Bytes allocated on every share (du), per share id.
    pub fn share_usage(&self) -> BTreeMap<String, ShareUsage> {
        (1..=self.spec.shares)
            .map(|k| (share_id(k), dir_usage(&share_dir(&self.spec.work_dir, k))))
            .collect()
    }

    /// The simulator process that simulates node `i`, and `i`'s index within it.
    pub fn sim_of(&self, i: usize) -> (&SimProc, usize) {
        let k = self
            .sims
            .iter()
            .rposition(|s| s.first <= i)
            .unwrap_or_default();
        (&self.sims[k], i - self.sims[k].first)
    }

    /// The simulators' request counters (`GET /counters` on each control API), merged as
    /// if one simulator served the whole fleet: `total` summed field by field, `nodes`
    /// keyed by the fleet-wide node index.
    pub async fn sim_counters(&self) -> Result<serde_json::Value> {
        let mut total = serde_json::Map::new();
        let mut nodes = serde_json::Map::new();
        for sim in &self.sims {
            let v = http_get_json(sim.control()?, "/counters").await?;
            if let Some(t) = v.get("total").and_then(|t| t.as_object()) {
                for (k, n) in t {
                    let sum = total.get(k).and_then(|x| x.as_u64()).unwrap_or(0)
                        + n.as_u64().unwrap_or(0);
                    total.insert(k.clone(), sum.into());
                }
            }
            if let Some(m) = v.get("nodes").and_then(|m| m.as_object()) {
                for (k, c) in m {
                    let i = k.parse::<usize>().unwrap_or(0) + sim.first;
                    nodes.insert(i.to_string(), c.clone());
                }
            }
        }
        Ok(serde_json::json!({"total": total, "nodes": nodes}))
    }

    /// One simulated node as its simulator sees it (`GET /nodes/{i}`).
    pub async fn sim_node(&self, i: usize) -> Result<serde_json::Value> {
        let (sim, j) = self.sim_of(i);
        http_get_json(sim.control()?, &format!("/nodes/{j}")).await
    }

    /// Switches simulated node `i`'s power behind the coordinator's back, through the
    /// simulator's control API (`action`: on, off, reset, cycle).
    pub async fn sim_power(&self, i: usize, action: &str) -> Result<serde_json::Value> {
        let (sim, j) = self.sim_of(i);
        crate::observe::http_post_json(
            sim.control()?,
            &format!("/nodes/{j}/power"),
            &serde_json::json!({ "action": action }),
        )
        .await
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
        for s in &mut self.sims {
            s.proc.stop(Duration::from_secs(3)).await;
        }
        self.files.stop();
    }
}
