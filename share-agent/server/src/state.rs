//! The agent's shared state: configuration, the share's caches, BMC clients
//! and capabilities, what it remembers per node, the job registry, and the
//! [`crate::bus`] tables it shares with the HTTP side. Jobs get it as
//! `Arc<Agent>`; nothing here runs on its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boot_media::{BootIsoStore, CachedImage, ImageCache};
use irmc::{BmcConfig, IrmcClient, IrmcError};
use tokio::sync::Semaphore;
use vmedia_proto::v1 as pb;

use crate::bus::{HeartbeatBus, Publications};

/// Longest wait for a ramdisk certificate whose heartbeat is being relayed (the
/// relay is one coordinator round trip).
const RAMDISK_CA_SETTLE: Duration = Duration::from_secs(10);
use crate::config::Config;
use crate::metrics::AgentMetrics;
use crate::registry::{JobRegistry, UpdateSink};

/// Directory (under the share root) holding one sub-directory per node.
pub const NODES_DIR: &str = "nodes";
/// The parameter image's file name inside a node's directory.
pub const PARAMS_FILE: &str = "params.img";

/// What the agent remembers about a node between jobs (in memory only: a
/// restarted agent still cleans up by deleting the node's directory).
#[derive(Debug, Default)]
pub struct NodeRecord {
    /// Cache entries this node holds a reference on (deploy ISO, boot ISO...).
    pub cache_refs: Vec<CachedImage>,
    /// Boot ISOs built for this node (share-relative names in the ISO store).
    pub iso_refs: Vec<String>,
    /// Virtual media currently attached by us.
    pub media_attached: bool,
}

/// What we learnt from a BMC's /report.xml (asked once per BMC).
#[derive(Debug, Clone)]
pub struct BmcCaps {
    /// "iRMC S4".
    pub model: String,
    /// "7.65F".
    pub firmware: String,
    /// Virtual floppy available (else the parameter image goes on a remote HD).
    pub has_virtual_fd: bool,
    /// Fujitsu's Redfish virtual media usable (the capability table): attach that way.
    pub redfish: bool,
}

/// Shared state of one agent process.
pub struct Agent {
    /// Effective configuration.
    pub cfg: Config,
    /// Canonical share root.
    pub share_root: PathBuf,
    /// Content-addressed image cache on the share.
    pub cache: ImageCache,
    /// Content-addressed boot ISOs on the share.
    pub iso_store: Arc<BootIsoStore>,
    /// Images published for download by ramdisks.
    pub publications: Arc<Publications>,
    /// Heartbeat wake-ups.
    pub heartbeats: Arc<HeartbeatBus>,
    /// Jobs.
    pub jobs: JobRegistry,
    /// Where job updates go.
    pub sink: UpdateSink,
    /// HTTP client for ramdisk commands.
    pub ramdisk_http: reqwest::Client,
    /// Prometheus metrics (counted whether or not a listener serves them).
    pub metrics: AgentMetrics,
    pub(crate) bmc_permits: Arc<Semaphore>,
    clients: Mutex<HashMap<String, IrmcClient>>,
    /// One HTTP connection pool per (TLS verification, timeout): building a
    /// TLS client costs milliseconds, a per-node client on a shared pool
    /// costs nothing.
    pools: Mutex<HashMap<String, reqwest::Client>>,
    caps: Mutex<HashMap<String, BmcCaps>>,
    nodes: Mutex<HashMap<String, NodeRecord>>,
    allocated: AtomicU64,
}

/// At most this many BMC clients are kept warm (connection pool + digest nonce).
const CLIENT_CACHE: usize = 4096;

impl Agent {
    /// Assembles the agent.
    pub fn new(
        cfg: Config,
        share_root: PathBuf,
        cache: ImageCache,
        iso_store: Arc<BootIsoStore>,
        ramdisk_http: reqwest::Client,
    ) -> Self {
        let permits = usize::try_from(cfg.bmc_max_concurrent).unwrap_or(64);
        let history = cfg.job_history;
        Self {
            cfg,
            share_root,
            cache,
            iso_store,
            publications: Arc::default(),
            heartbeats: Arc::default(),
            jobs: JobRegistry::new(history),
            sink: UpdateSink::default(),
            ramdisk_http,
            metrics: AgentMetrics::new(),
            bmc_permits: Arc::new(Semaphore::new(permits)),
            clients: Mutex::default(),
            pools: Mutex::default(),
            caps: Mutex::default(),
            nodes: Mutex::default(),
            allocated: AtomicU64::new(0),
        }
    }

    /// A node's directory on the share.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.share_root.join(NODES_DIR).join(node)
    }

    /// Share-relative name of a node's parameter image (what the iRMC is told).
    pub fn params_share_name(node: &str) -> String {
        format!("{NODES_DIR}/{node}/{PARAMS_FILE}")
    }

    /// Runs `f` on a node's record.
    pub fn with_node<T>(&self, node: &str, f: impl FnOnce(&mut NodeRecord) -> T) -> T {
        let mut g = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        f(g.entry(node.to_string()).or_default())
    }

    /// Forgets a node entirely; returns its record.
    pub fn take_node(&self, node: &str) -> NodeRecord {
        let mut g = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        g.remove(node).unwrap_or_default()
    }

    /// Nodes with virtual media attached right now.
    pub fn active_boots(&self) -> u32 {
        let g = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        u32::try_from(g.values().filter(|r| r.media_attached).count()).unwrap_or(u32::MAX)
    }

    /// Bytes allocated by per-node files written since start (net of deletions).
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    pub(crate) fn add_allocated(&self, n: u64) {
        self.allocated.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub_allocated(&self, n: u64) {
        let _ = self
            .allocated
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// The HTTP client for a node's ramdisk: with IPA's auto-TLS (an https
    /// callback URL and a certificate from its heartbeat) a client trusting
    /// exactly that certificate, else the shared client (system roots).
    pub fn ramdisk_http_for(
        &self,
        node: &str,
        callback_url: &str,
    ) -> Result<reqwest::Client, String> {
        if !callback_url.trim().starts_with("https://") {
            return Ok(self.ramdisk_http.clone());
        }
        let Some(pem) = self.heartbeats.ca(node) else {
            return Ok(self.ramdisk_http.clone());
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("agent_verify_ca from the ramdisk's heartbeat is not PEM: {e}"))?;
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_certs_only(certs)
            .build()
            .map_err(|e| format!("cannot build an HTTPS client for agent_verify_ca: {e}"))
    }

    /// [`Self::ramdisk_http_for`] once the ramdisk's certificate has settled. The
    /// coordinator can send a job for a heartbeat before this agent has stored the
    /// `agent_verify_ca` that heartbeat carried (it is stored only once the
    /// coordinator accepted the heartbeat), so while such a heartbeat is being
    /// relayed this waits for it, polling, for at most `RAMDISK_CA_SETTLE`.
    pub async fn ramdisk_http_ready(
        &self,
        node: &str,
        callback_url: &str,
    ) -> Result<reqwest::Client, String> {
        if callback_url.trim().starts_with("https://") {
            let deadline = tokio::time::Instant::now() + RAMDISK_CA_SETTLE;
            while self.heartbeats.ca_pending(node) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.ramdisk_http_for(node, callback_url)
    }

    /// Free bytes on the share (0 when it cannot be read).
    pub fn free_bytes(&self) -> u64 {
        boot_media::free_bytes(&self.share_root).unwrap_or(0)
    }

    /// The heartbeat message for the coordinator.
    pub fn heartbeat(&self) -> pb::AgentHeartbeat {
        let stats = self.cache.stats();
        let (iso_entries, iso_bytes) = self.iso_store.stats();
        pb::AgentHeartbeat {
            free_bytes: self.free_bytes(),
            active_boots: self.active_boots(),
            running_jobs: self.jobs.running(),
            cache_entries: stats.entries as u64 + iso_entries as u64,
            cache_bytes: stats.bytes + iso_bytes,
            share_bytes_allocated: self.allocated(),
        }
    }

    pub(crate) fn client_for(&self, cfg: BmcConfig, key: String) -> Result<IrmcClient, IrmcError> {
        let mut g = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.get(&key) {
            return Ok(c.clone());
        }
        let pool_key = format!("{:?}|{}", cfg.verify, cfg.timeout.as_millis());
        let http = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            match pools.get(&pool_key) {
                Some(h) => h.clone(),
                None => {
                    let h = IrmcClient::http_client(&cfg.verify, cfg.timeout)?;
                    pools.insert(pool_key, h.clone());
                    h
                }
            }
        };
        let c = IrmcClient::with_http(cfg, http);
        if g.len() >= CLIENT_CACHE {
            // Any entry will do: a dropped client only costs a new TLS
            // handshake (and a digest round trip) next time.
            if let Some(k) = g.keys().next().cloned() {
                g.remove(&k);
            }
        }
        g.insert(key, c.clone());
        Ok(c)
    }

    pub(crate) fn caps_of(&self, bmc: &str) -> Option<BmcCaps> {
        self.caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bmc)
            .cloned()
    }

    pub(crate) fn set_caps(&self, bmc: &str, caps: BmcCaps) {
        self.caps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bmc.to_string(), caps);
    }
}
