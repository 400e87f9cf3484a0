//! The simulated deploy ramdisk: what ironic-python-agent (IPA) does once a simulated server
//! has booted the deploy ISO.
//!
//! Sequence (IPA's `agent.run`): API version discovery (`GET {ipa-api-url}/`), lookup
//! (`GET /v1/lookup?addresses=<macs>`, retried with random exponential backoff while it
//! fails), agent token selection, start of the command API on `<node address>:9999`, then
//! heartbeats (`POST /v1/heartbeat/{uuid}`) every `heartbeat_timeout × U(0.3, 0.6)`, 5-10 s
//! after an error, and once more when a command finishes.
//!
//! Layout: this file holds the runtime (configuration, lookup, heartbeat, shutdown);
//! `api.rs` the HTTP command API; `commands.rs` the extensions and their results;
//! `logs.rs` the `collect_system_logs` archive.
//!
//! Invariants:
//! - Everything a ramdisk spawns stops when [`run`]'s future is dropped (a power-off or
//!   reset aborts it): spawned tasks all watch the `Stop` signal that dies with `run`.
//! - The agent token never appears in logs, errors or Debug output.
//! - All timers use `tokio::time`, so tests can run a whole deploy under
//!   `tokio::time::pause()`.

mod api;
mod commands;
mod logs;
pub mod validation;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::boot::cmdline::Params;
use crate::node::DiskSlot;

pub use commands::{CommandRecord, CommandStatus};

/// IPA version reported in heartbeats and `GET /v1/status`.
pub const AGENT_VERSION: &str = "11.1.0";
/// Default agent API port (`ipa-listen-port`).
pub const DEFAULT_PORT: u16 = 9999;

/// API versions IPA knows (ironic_api_client): below 1.22 there is no lookup/heartbeat.
const MIN_IRONIC_VERSION: (u32, u32) = (1, 31);
const AGENT_VERSION_API: (u32, u32) = (1, 36);
const AGENT_TOKEN_API: (u32, u32) = (1, 62);
const MAX_KNOWN_API: (u32, u32) = (1, 68);

/// Errors that end a ramdisk run. Each carries the node it belongs to.
#[derive(Debug, thiserror::Error)]
pub enum RamdiskError {
    #[error("ramdisk on {node}: no ipa-api-url in the kernel parameters or parameters.txt")]
    NoApiUrl { node: String },
    #[error("ramdisk on {node}: unsupported ipa-api-url {url:?} ({reason})")]
    BadApiUrl {
        node: String,
        url: String,
        reason: String,
    },
    #[error("ramdisk on {node}: lookup gave up after {seconds} s; last error: {last}")]
    LookupTimeout {
        node: String,
        seconds: u64,
        last: String,
    },
    #[error("ramdisk on {node}: no agent token from lookup or parameters; agent locked down")]
    NoToken { node: String },
    #[error("ramdisk on {node}: cannot listen on {addr}: {reason}")]
    Listen {
        node: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("ramdisk on {node}: cannot build HTTP client: {reason}")]
    Client { node: String, reason: String },
}

/// The agent token: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentToken(String);

impl AgentToken {
    pub fn new(s: impl Into<String>) -> Self {
        AgentToken(s.into())
    }
    /// Clear text, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

/// Where `write_image` puts the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskTarget {
    /// Keep only a running sha256 and the byte count (cheap at scale).
    HashOnly,
    /// Write the image to this file (one per node).
    File(PathBuf),
}

/// Timing knobs. [`RamdiskTiming::realistic`] follows IPA; [`RamdiskTiming::fast`] is for
/// benches and multi-process tests that run in real time.
#[derive(Clone, Debug)]
pub struct RamdiskTiming {
    /// Lower bound of the lookup retry wait (`ipa-lookup-interval`, default 1 s).
    pub lookup_min: Duration,
    /// Upper bound of the lookup retry wait (60 s in IPA).
    pub lookup_max: Duration,
    /// Give up looking up after this long (`ipa-lookup-timeout`, 600 s).
    pub lookup_timeout: Duration,
    /// Minimum gap between a previous heartbeat and a forced one (5 s in IPA; 0 = at once).
    pub forced_heartbeat_gap: Duration,
    /// Wait after a failed heartbeat: `error_backoff × U(1, 2)` (5 s in IPA).
    pub heartbeat_error_backoff: Duration,
    /// Delay between answering `standby.power_off` and the host turning off.
    pub power_off_delay: Duration,
    /// Download bandwidth limit for `write_image`, bytes per second (None = unlimited).
    pub bandwidth: Option<u64>,
    /// Whole-request timeout toward Ironic (`ipa-http-request-timeout` overrides it); also the
    /// connect and per-read timeout of image downloads.
    pub http_timeout: Duration,
}

impl RamdiskTiming {
    /// IPA's defaults.
    pub fn realistic() -> Self {
        RamdiskTiming {
            lookup_min: Duration::from_secs(1),
            lookup_max: Duration::from_secs(60),
            lookup_timeout: Duration::from_secs(600),
            forced_heartbeat_gap: Duration::from_secs(5),
            heartbeat_error_backoff: Duration::from_secs(5),
            power_off_delay: Duration::from_secs(1),
            bandwidth: None,
            http_timeout: Duration::from_secs(30),
        }
    }

    /// Short waits for benches: lookups retry within a second, forced heartbeats go out
    /// at once, power-off is immediate.
    pub fn fast() -> Self {
        RamdiskTiming {
            lookup_min: Duration::from_millis(100),
            lookup_max: Duration::from_secs(1),
            lookup_timeout: Duration::from_secs(600),
            forced_heartbeat_gap: Duration::ZERO,
            heartbeat_error_backoff: Duration::from_millis(500),
            power_off_delay: Duration::ZERO,
            bandwidth: None,
            http_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for RamdiskTiming {
    fn default() -> Self {
        Self::realistic()
    }
}

/// Everything one ramdisk run needs.
#[derive(Clone, Debug)]
pub struct RamdiskConfig {
    /// Human-readable node name for logs and errors ("node 3 (127.1.0.4)").
    pub node: String,
    /// Merged kernel + vmedia parameters.
    pub params: Params,
    /// Address the command API binds (the node's own loopback address).
    pub listen_ip: IpAddr,
    /// Port when `ipa-listen-port` is absent.
    pub default_port: u16,
    /// MAC addresses of the node's NICs (sent in lookup).
    pub macs: Vec<String>,
    pub disk: DiskTarget,
    pub timing: RamdiskTiming,
}

/// What the ramdisk needs from the machine it runs on.
pub trait RamdiskHost: Send + Sync + 'static {
    /// `standby.power_off`: the server turns itself off.
    fn power_off(&self);
    /// `standby.reboot`: the server resets itself.
    fn reboot(&self);
    /// The local disk now holds this.
    fn disk_written(&self, slot: DiskSlot);
    /// Publish a fact (callback URL, node uuid, heartbeat count) to the node state.
    fn publish(&self, key: &str, value: &str);
}

/// Dropping the sender (when [`run`] ends or is aborted) stops every task the ramdisk spawned.
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<()>);

impl Stop {
    /// Resolves when the ramdisk stops.
    pub(crate) async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// Shared state of a running ramdisk.
pub(crate) struct Agent {
    pub node: String,
    pub token: AgentToken,
    pub timing: RamdiskTiming,
    pub disk: DiskTarget,
    pub host: Arc<dyn RamdiskHost>,
    pub client: reqwest::Client,
    pub md5_allowed: bool,
    pub commands: Mutex<Vec<CommandRecord>>,
    /// Last successfully written image: (partition uuids result, root uuid).
    pub written: Mutex<Option<commands::Written>>,
    /// Wakes the heartbeater for a forced heartbeat.
    pub force: Notify,
    /// Ends the run (system.lockdown).
    pub lockdown: Notify,
    pub stop: Stop,
    pub started_at: f64,
    /// Event journal served by `log.collect_system_logs`.
    pub journal: Mutex<Vec<String>>,
}

impl Agent {
    pub(crate) fn log(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::debug!(node = %self.node, "{line}");
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if j.len() < 10_000 {
            j.push(line);
        }
    }

    /// Spawn a task that ends when the ramdisk stops.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.wait() => {}
                _ = fut => {}
            }
        });
    }
}

/// MAC address the simulator gives the NIC of the node whose BMC is at `ip`:
/// `52:54:` followed by the four address octets (unique per simulated node).
pub fn node_mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Normalise a `BOOTIF` value (`01-aa-bb-cc-dd-ee-ff` from pxelinux, or `aa:bb:...`).
pub fn normalize_bootif(v: &str) -> Option<String> {
    let v = v.trim().to_ascii_lowercase();
    let parts: Vec<&str> = v.split(['-', ':']).collect();
    let parts = match parts.len() {
        7 if parts[0] == "01" => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    if parts
        .iter()
        .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Some(parts.join(":"))
    } else {
        None
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn fmt_version(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// The Ironic API endpoint(s) and request options derived from the parameters.
struct IronicApi {
    urls: Vec<String>,
    timeout: Duration,
    version: (u32, u32),
    request_id: Option<String>,
    client: reqwest::Client,
}

impl IronicApi {
    /// Send one request, trying each URL on connection errors and moving the one that
    /// answers to the front (IPA `_request`).
    async fn request(
        &mut self,
        method: reqwest::Method,
        path: &str,
        version: Option<(u32, u32)>,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut last = String::from("no API URL");
        for i in 0..self.urls.len() {
            let url = format!("{}{}", self.urls[i].trim_end_matches('/'), path);
            let mut req = self
                .client
                .request(method.clone(), &url)
                .timeout(self.timeout)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json");
            if let Some(v) = version {
                req = req.header("X-OpenStack-Ironic-API-Version", fmt_version(v));
            }
            if let Some(id) = &self.request_id {
                req = req.header("X-OpenStack-Request-ID", id);
            }
            if let Some(b) = body {
                req = req.body(b.to_string());
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
                    if i > 0 {
                        let good = self.urls.remove(i);
                        self.urls.insert(0, good);
                    }
                    return Ok((status, bytes.to_vec()));
                }
                Err(e) if e.is_connect() || e.is_timeout() => last = format!("{url}: {e}"),
                Err(e) => return Err(format!("{url}: {e}")),
            }
        }
        Err(last)
    }
}

/// Build the HTTP client a ramdisk uses (one per simulator is enough; it pools
/// connections). `insecure` skips TLS verification (`ipa-insecure`).
pub fn http_client(timeout: Duration, insecure: bool) -> Result<reqwest::Client, String> {
    // Connect and per-read timeouts only: an image download may legitimately take far
    // longer than one API call (Ironic API calls get a whole-request timeout each).
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        // Everything the simulator talks to is on loopback: never route via an env proxy.
        .no_proxy()
        .pool_max_idle_per_host(4);
    if insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| e.to_string())
}

fn param_bool(p: &Params, key: &str) -> bool {
    p.get(key)
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Outcome of a lookup attempt that returned 200.
struct LookupResult {
    uuid: String,
    heartbeat_timeout: f64,
    token: Option<String>,
    md5_allowed: bool,
}

fn parse_lookup(body: &[u8]) -> Result<LookupResult, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let uuid = v
        .pointer("/node/uuid")
        .and_then(Value::as_str)
        .ok_or("lookup response has no node.uuid")?
        .to_string();
    // Old APIs put heartbeat_timeout at the top level; IPA wraps it into config.
    let config = match v.get("config") {
        Some(c) => c.clone(),
        None => match v.get("heartbeat_timeout") {
            Some(h) => json!({ "heartbeat_timeout": h }),
            None => return Err("lookup response has no config".into()),
        },
    };
    let hb = config
        .get("heartbeat_timeout")
        .and_then(|h| {
            h.as_f64()
                .or_else(|| h.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|h: &f64| !h.is_nan())
        .ok_or("lookup config has no heartbeat_timeout")?;
    let token = config
        .get("agent_token")
        .and_then(Value::as_str)
        .map(str::to_string);
    let md5_allowed = config
        .get("agent_md5_checksum_enable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(LookupResult {
        uuid,
        // Bounded so a silly value ("inf", 1e300) cannot overflow a Duration (NaN was refused).
        heartbeat_timeout: hb.clamp(1.0, 1e7),
        token,
        md5_allowed,
    })
}

/// Run the ramdisk until it is locked down, fails, or the future is dropped (power-off).
///
/// `client` is shared by all ramdisks of a simulator. The node's disk and power are reached
/// through `host`.
pub async fn run(
    cfg: RamdiskConfig,
    host: Arc<dyn RamdiskHost>,
    client: reqwest::Client,
) -> Result<(), RamdiskError> {
    let node = cfg.node.clone();
    let p = &cfg.params;
    let timing = cfg.timing.clone();

    // ---- API URL(s) and client ----
    let raw_url = p
        .get("ipa-api-url")
        .ok_or_else(|| RamdiskError::NoApiUrl { node: node.clone() })?;
    let urls: Vec<String> = raw_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    for u in &urls {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(RamdiskError::BadApiUrl {
                node: node.clone(),
                url: u.clone(),
                reason: if u == "mdns" {
                    "mDNS discovery is not simulated".into()
                } else {
                    "must start with http:// or https://".into()
                },
            });
        }
    }
    let client = if param_bool(p, "ipa-insecure") && urls.iter().any(|u| u.starts_with("https")) {
        http_client(timing.http_timeout, true).map_err(|reason| RamdiskError::Client {
            node: node.clone(),
            reason,
        })?
    } else {
        client
    };
    let mut api = IronicApi {
        urls,
        timeout: p
            .get("ipa-http-request-timeout")
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .filter(|t| !t.is_zero())
            .unwrap_or(timing.http_timeout),
        version: MIN_IRONIC_VERSION,
        request_id: p.get("ipa-global-request-id").cloned(),
        client: client.clone(),
    };
    host.publish("ramdisk_stage", "lookup");

    // ---- version discovery ----
    api.version = match p
        .get("ipa-ironic-api-version")
        .and_then(|v| parse_version(v))
    {
        Some(v) => v,
        None => match api.request(reqwest::Method::GET, "/", None, None).await {
            Ok((200, body)) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/default_version/version")
                        .and_then(Value::as_str)
                        .and_then(parse_version)
                })
                .unwrap_or(MIN_IRONIC_VERSION),
            _ => MIN_IRONIC_VERSION,
        },
    };

    // ---- lookup ----
    let mut macs: Vec<String> = cfg.macs.clone();
    if let Some(b) = p.get("BOOTIF").and_then(|b| normalize_bootif(b))
        && !macs.contains(&b)
    {
        macs.push(b);
    }
    let lookup_path = format!("/v1/lookup?addresses={}", macs.join(","));
    let lookup_version = api.version.min(AGENT_TOKEN_API);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    let mut conflicts: u32 = 0;
    let lookup = loop {
        attempt += 1;
        let last = match api
            .request(
                reqwest::Method::GET,
                &lookup_path,
                Some(lookup_version),
                None,
            )
            .await
        {
            Ok((200, body)) => match parse_lookup(&body) {
                Ok(l) => break l,
                Err(e) => e,
            },
            Ok((409, _)) => {
                // IPA pauses 5, 10, then 30 s on each further conflict (scaled by the
                // lookup interval, so fast mode waits 0.5, 1 and 3 s).
                let factor = [5u32, 10, 30][conflicts.min(2) as usize];
                conflicts += 1;
                tokio::time::sleep(timing.lookup_min * factor).await;
                "409 Conflict".to_string()
            }
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => e,
        };
        host.publish("ramdisk_lookup_attempts", &attempt.to_string());
        if started.elapsed() >= timing.lookup_timeout {
            return Err(RamdiskError::LookupTimeout {
                node,
                seconds: timing.lookup_timeout.as_secs(),
                last,
            });
        }
        // tenacity wait_random_exponential: U(0, min(max, 2^attempt)), at least `min`.
        let high = timing
            .lookup_max
            .min(Duration::from_secs(1u64 << attempt.min(16)));
        let wait = high
            .mul_f64(rand::rng().random::<f64>())
            .max(timing.lookup_min);
        tracing::debug!(node = %node, attempt, error = %last, ?wait, "lookup failed, retrying");
        tokio::time::sleep(wait).await;
    };

    // ---- token ----
    // A lookup token of at least 32 characters replaces the parameter one; "******" (a
    // pre-generated token) and short values keep the parameter token.
    let token = match (&lookup.token, p.get("ipa-agent-token")) {
        (Some(t), _) if t.len() >= 32 && t != "******" => AgentToken::new(t.clone()),
        (_, Some(t)) if !t.is_empty() => AgentToken::new(t.clone()),
        _ => {
            host.publish("ramdisk_stage", "locked-down");
            return Err(RamdiskError::NoToken { node });
        }
    };
    host.publish("ipa_node_uuid", &lookup.uuid);

    // ---- command API ----
    let port = p
        .get("ipa-listen-port")
        .and_then(|v| v.parse().ok())
        .unwrap_or(cfg.default_port);
    let addr = SocketAddr::new(cfg.listen_ip, port);
    // After a reset the previous boot's listener is dropped a scheduler tick after its task
    // was aborted: retry briefly instead of failing the new boot.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(RamdiskError::Listen {
                    node,
                    addr,
                    reason: e.to_string(),
                });
            }
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let advertise_host = p
        .get("ipa-advertise-host")
        .cloned()
        .unwrap_or_else(|| local.ip().to_string());
    let advertise_port = p
        .get("ipa-advertise-port")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(local.port());
    let proto = p
        .get("ipa-advertise-protocol")
        .cloned()
        .unwrap_or_else(|| "http".into());
    let host_part = if advertise_host.contains(':') {
        format!("[{advertise_host}]")
    } else {
        advertise_host
    };
    let callback_url = format!("{proto}://{host_part}:{advertise_port}");
    host.publish("ipa_callback_url", &callback_url);

    let (stop_tx, stop_rx) = watch::channel(());
    let agent = Arc::new(Agent {
        node: node.clone(),
        token,
        timing: timing.clone(),
        disk: cfg.disk.clone(),
        host: host.clone(),
        client,
        md5_allowed: lookup.md5_allowed,
        commands: Mutex::new(Vec::new()),
        written: Mutex::new(None),
        force: Notify::new(),
        lockdown: Notify::new(),
        stop: Stop(stop_rx),
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        journal: Mutex::new(Vec::new()),
    });
    agent.log(format!(
        "lookup ok: node {} after {attempt} attempt(s); heartbeat_timeout {}",
        lookup.uuid, lookup.heartbeat_timeout
    ));
    agent.spawn(api::serve(listener, agent.clone()));
    host.publish("ramdisk_stage", "running");
    tracing::info!(node = %node, uuid = %lookup.uuid, callback = %callback_url, "ramdisk running");

    // ---- heartbeats ----
    let hb_version = api.version.min(MAX_KNOWN_API);
    let mut body = serde_json::Map::new();
    body.insert("callback_url".into(), json!(callback_url));
    if hb_version >= AGENT_TOKEN_API {
        body.insert("agent_token".into(), json!(agent.token.expose()));
    }
    if hb_version >= AGENT_VERSION_API {
        body.insert("agent_version".into(), json!(AGENT_VERSION));
    }
    let body = Value::Object(body);
    let path = format!("/v1/heartbeat/{}", lookup.uuid);
    let mut sent: u64 = 0;
    let mut last_sent: Option<Instant> = None;
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = agent.force.notified() => {
                // A forced heartbeat goes out once the minimum gap since the last one passed.
                let earliest = last_sent.map(|t| t + timing.forced_heartbeat_gap).unwrap_or_else(Instant::now);
                if earliest > Instant::now() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(earliest) => {}
                        _ = agent.lockdown.notified() => break,
                    }
                }
            }
            _ = agent.lockdown.notified() => break,
        }
        let outcome = api
            .request(reqwest::Method::POST, &path, Some(hb_version), Some(&body))
            .await;
        last_sent = Some(Instant::now());
        sent += 1;
        host.publish("ipa_heartbeats", &sent.to_string());
        let ok = matches!(outcome, Ok((202, _)) | Ok((200, _)) | Ok((204, _)));
        let wait = if ok {
            Duration::from_secs_f64(lookup.heartbeat_timeout * rand::rng().random_range(0.3..0.6))
        } else {
            let detail = match &outcome {
                Ok((status, body)) => {
                    format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                }
                Err(e) => e.clone(),
            };
            agent.log(format!("heartbeat failed: {detail}"));
            timing
                .heartbeat_error_backoff
                .mul_f64(rand::rng().random_range(1.0..2.0))
        };
        next = Instant::now() + wait;
    }
    agent.log("agent locked down");
    host.publish("ramdisk_stage", "locked-down");
    drop(stop_tx);
    Ok(())
}

/// Snapshot of a ramdisk's parameters with secrets masked, for logs and the control API.
pub fn masked_params(p: &Params) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| {
            let secret = k.contains("token") || k.contains("password");
            (k.clone(), if secret { "******".into() } else { v.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootif_forms() {
        assert_eq!(
            normalize_bootif("01-AA-bb-cc-dd-ee-ff").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(
            normalize_bootif("aa:bb:cc:dd:ee:ff").as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
        assert_eq!(normalize_bootif("zz:bb:cc:dd:ee:ff"), None);
        assert_eq!(normalize_bootif("aa:bb"), None);
    }

    #[test]
    fn mac_from_address() {
        assert_eq!(node_mac(Ipv4Addr::new(127, 1, 0, 10)), "52:54:7f:01:00:0a");
    }

    #[test]
    fn lookup_parsing() {
        let l = parse_lookup(
            br#"{"node":{"uuid":"u1"},"config":{"heartbeat_timeout":30,"agent_token":"******"}}"#,
        )
        .unwrap();
        assert_eq!(l.uuid, "u1");
        assert_eq!(l.heartbeat_timeout, 30.0);
        assert_eq!(l.token.as_deref(), Some("******"));
        let l = parse_lookup(br#"{"node":{"uuid":"u2"},"heartbeat_timeout":"300"}"#).unwrap();
        assert_eq!(l.heartbeat_timeout, 300.0);
        assert!(parse_lookup(br#"{"node":{},"config":{"heartbeat_timeout":3}}"#).is_err());
        assert!(parse_lookup(br#"{"node":{"uuid":"x"},"config":{}}"#).is_err());
        assert!(parse_lookup(b"not json").is_err());
        let l =
            parse_lookup(br#"{"node":{"uuid":"x"},"config":{"heartbeat_timeout":"inf"}}"#).unwrap();
        assert_eq!(l.heartbeat_timeout, 1e7);
        assert!(
            parse_lookup(br#"{"node":{"uuid":"x"},"config":{"heartbeat_timeout":"NaN"}}"#).is_err()
        );
    }

    #[test]
    fn token_is_masked() {
        let t = AgentToken::new("secret-token-value");
        assert_eq!(format!("{t:?}"), "******");
        let mut p = Params::new();
        p.insert("ipa-agent-token".into(), "abc".into());
        p.insert("ipa-api-url".into(), "http://x".into());
        let m = masked_params(&p);
        assert_eq!(m["ipa-agent-token"], "******");
        assert_eq!(m["ipa-api-url"], "http://x");
    }
}
