//! `irmc-sim`: a faithful simulator of FUJITSU iRMC BMCs (S4/S5/S6), as a library for
//! in-process tests and as the `irmc-sim` binary.
//!
//! # What it serves
//! N simulated iRMCs, each on its own loopback address (`127.1.0.1`, `127.1.0.2`, ...;
//! host parts `.0` and `.255` are skipped), on HTTPS and/or HTTP:
//! SCCI (`POST /config`), `GET /report.xml`, `GET /iRMC_Settings.pre`, the Redfish subset
//! a real iRMC offers for power state and boot override (`/redfish/v1/Systems/0`), and
//! the eLCM status call Ironic makes, and IPMI over LAN (RMCP+, [`ipmi`]) on UDP. Power and virtual media state is kept per node and
//! behaves like hardware (see [`scci`] for the rules). Requests are counted per node and
//! kind, faults can be injected per node or fleet-wide ([`fault`]), and a JSON control API
//! ([`control`]) exposes it all to other processes.
//!
//! # Layout
//! - [`node`]: per-node state ([`NodeState`]), [`NodeHandle`], [`BootSnapshot`].
//! - [`scci`]: SCCI XML parsing, opcode table, replies, settings dump, execution.
//! - [`report`]: models, firmware rules (virtual floppy), generated `/report.xml`.
//! - `server` (private): listeners, TLS, HTTP routing, auth (Basic/Digest), Redfish.
//! - [`fault`]: fault specs and deterministic decisions.
//! - [`control`]: the JSON control API.
//! - [`boot`] and [`ramdisk`]: the simulated server boot and deploy ramdisk; they plug in
//!   through the seam below ([`boot::SimBoot`] is the [`BootHook`] the binary registers
//!   with `--boot`).
//!
//! # The seam for the simulated server boot
//! Whenever a node powers on, or is reset/cycled while powered, the simulator takes a
//! [`BootSnapshot`] (boot override in effect, CD/FD/HD settings and connected flags,
//! disk slot, share map) and calls [`BootHook::on_power_on`] with a [`NodeHandle`];
//! whenever it powers off (or before a reset) it calls [`BootHook::on_power_off`]. Hooks
//! are called synchronously from request handlers and must not block: spawn the work.
//! A `Once` boot override is consumed before the hook runs (the snapshot still shows it).
//! Each power-on bumps [`NodeState::boot_generation`]; boot tasks keep the generation they
//! were started for and use [`NodeHandle::is_current`] to notice a reset or power-off.
//! The boot code records results with [`NodeHandle::record_boot`], and changes the rest of
//! the state (disk contents, `os_running`, `ramdisk_running`, `serverview_agent`,
//! `labels`) through [`NodeHandle::update`]; [`NodeHandle::power_off`] powers the node
//! off (calling the hook). Register a hook with [`SimBuilder::boot_hook`]; the default
//! is [`NoBoot`], which only keeps the BMC-side state.
//!
//! # Invariants
//! - No panics on network input; every reply is produced even for garbage requests.
//! - Passwords (the BMC's, and share passwords written through ConfigSpace) are held in
//!   [`Secret`] and never logged, serialised or shown.
//! - One tokio task per listener for accepting, one per connection.
//! - This crate knows nothing about gRPC or the coordinator.

mod auth;
pub mod boot;
pub mod control;
pub mod ethernet;
pub mod fault;
pub mod ipmi;
pub mod node;
pub mod ramdisk;
pub mod redfish_oem;
pub mod report;
pub mod scci;
mod server;
mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

pub use node::{
    BootEnabled, BootMode, BootOutcome, BootOverride, BootSnapshot, BootTarget, DiskSlot,
    MediaKind, MediaSettings, NodeHandle, NodeState, PowerState, RequestCounters, Secret,
    ShareType,
};
pub use report::Model;
pub use server::{NodeAddr, Sim};

use fault::FaultSpec;

/// Errors of the simulator library.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    #[error("invalid fault spec {spec:?}: {reason}")]
    BadFaultSpec { spec: String, reason: String },
    #[error("invalid share map {spec:?}: {reason}")]
    BadShareMap { spec: String, reason: String },
    #[error("cannot listen on {addr} for node {node}: {source}")]
    Bind {
        node: usize,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on control address {addr}: {source}")]
    ControlBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Called whenever a node powers on or is reset/cycled while powered (see the crate docs).
pub trait BootHook: Send + Sync + 'static {
    /// The server starts. Must not block; spawn inside.
    fn on_power_on(&self, node: NodeHandle, snapshot: BootSnapshot);
    /// The server stops: stop the running "OS"/ramdisk. Must not block.
    fn on_power_off(&self, node: NodeHandle);
}

/// The default hook: no simulated boot, the BMC side only.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBoot;

impl BootHook for NoBoot {
    fn on_power_on(&self, _node: NodeHandle, _snapshot: BootSnapshot) {}
    fn on_power_off(&self, _node: NodeHandle) {}
}

/// HTTP authentication the simulated iRMCs demand on SCCI/eLCM paths. Redfish paths
/// accept Basic in both modes (as Ironic's Redfish client uses it), `GET /redfish/v1/`
/// needs none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    Basic,
    Digest,
}

impl std::str::FromStr for Auth {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(Auth::Basic),
            "digest" => Ok(Auth::Digest),
            _ => Err(SimError::Config(format!(
                "unknown auth method {s:?} (basic or digest)"
            ))),
        }
    }
}

/// One `--share-map` entry: which directory holds what the iRMC would read from
/// `server`/`share`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareMapEntry {
    /// URL scheme when given (`smb://...`), else `None`.
    pub scheme: Option<String>,
    /// Server as the iRMC is told it (host, optionally `:port`).
    pub server: String,
    /// CIFS share name or NFS export path.
    pub share: String,
    /// Local directory standing for the share.
    pub dir: PathBuf,
    /// Share credentials when the entry demands them.
    pub user: Option<String>,
    pub password: Option<Secret>,
}

impl ShareMapEntry {
    /// A plain entry without credentials.
    pub fn new(
        server: impl Into<String>,
        share: impl Into<String>,
        dir: impl Into<PathBuf>,
    ) -> Self {
        ShareMapEntry {
            scheme: None,
            server: server.into(),
            share: share.into(),
            dir: dir.into(),
            user: None,
            password: None,
        }
    }

    /// Parse `[scheme://][USER:PASSWORD@]SERVER/SHARE=DIR`. The share is everything after
    /// the first `/` following the server, so NFS exports are written `SERVER//export/path`.
    pub fn parse(spec: &str) -> Result<Self, SimError> {
        let bad = |reason: &str| SimError::BadShareMap {
            // The spec may hold a password: never echo it.
            spec: redact_userinfo(spec),
            reason: reason.to_string(),
        };
        let (left, dir) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected SERVER/SHARE=DIR"))?;
        if dir.is_empty() {
            return Err(bad("empty directory"));
        }
        let (scheme, rest) = match left.split_once("://") {
            Some((s, r)) => (Some(s.to_string()), r),
            None => (None, left),
        };
        let (user, password, rest) = match rest.rsplit_once('@') {
            Some((cred, r)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some(u.to_string()), Some(Secret::new(p)), r)
            }
            None => (None, None, rest),
        };
        let (server, share) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected SERVER/SHARE=DIR"))?;
        if server.is_empty() || share.trim_matches('/').is_empty() {
            return Err(bad("empty server or share"));
        }
        Ok(ShareMapEntry {
            scheme,
            server: server.to_string(),
            share: share.to_string(),
            dir: PathBuf::from(dir),
            user,
            password,
        })
    }

    /// True when this entry serves `server`/`share` as an iRMC was configured with them
    /// (server case-insensitive, ignoring a port on the entry; share compared without
    /// leading/trailing slashes).
    pub fn matches(&self, server: &str, share: &str) -> bool {
        let host = |s: &str| {
            s.rsplit_once(':')
                .map_or(s, |(h, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        h
                    } else {
                        s
                    }
                })
                .to_string()
        };
        let server_ok = self.server.eq_ignore_ascii_case(server)
            || host(&self.server).eq_ignore_ascii_case(server);
        server_ok && self.share.trim_matches('/') == share.trim_matches('/')
    }
}

fn redact_userinfo(spec: &str) -> String {
    match spec.split_once('@') {
        Some((before, after)) => {
            let scheme = before
                .split_once("://")
                .map(|(s, _)| format!("{s}://"))
                .unwrap_or_default();
            format!("{scheme}******@{after}")
        }
        None => spec.to_string(),
    }
}

/// The share map, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ShareMap(Arc<Vec<ShareMapEntry>>);

impl ShareMap {
    pub fn new(entries: Vec<ShareMapEntry>) -> Self {
        ShareMap(Arc::new(entries))
    }
    /// All entries, in the order given.
    pub fn entries(&self) -> &[ShareMapEntry] {
        &self.0
    }
    /// The entry serving `server`/`share`, if any.
    pub fn resolve(&self, server: &str, share: &str) -> Option<&ShareMapEntry> {
        self.0.iter().find(|e| e.matches(server, share))
    }
}

/// Configuration of a simulator; the single way to configure one in-process.
#[derive(Clone)]
pub struct SimBuilder {
    pub(crate) count: usize,
    pub(crate) base: Ipv4Addr,
    pub(crate) https_port: Option<u16>,
    pub(crate) http_port: Option<u16>,
    pub(crate) ipmi_port: Option<u16>,
    pub(crate) username: String,
    pub(crate) password: Secret,
    pub(crate) auth: Auth,
    pub(crate) model: Model,
    pub(crate) firmware: Option<String>,
    pub(crate) report: Option<Arc<str>>,
    pub(crate) faults: Vec<FaultSpec>,
    pub(crate) seed: u64,
    pub(crate) shares: Vec<ShareMapEntry>,
    pub(crate) hook: Arc<dyn BootHook>,
    pub(crate) control: Option<SocketAddr>,
    pub(crate) restore: Vec<(usize, NodeState)>,
    pub(crate) busy: std::time::Duration,
    pub(crate) licensed: bool,
    pub(crate) redfish: bool,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            count: 1,
            base: Ipv4Addr::new(127, 1, 0, 1),
            https_port: Some(0),
            http_port: None,
            ipmi_port: Some(0),
            username: "admin".into(),
            password: Secret::new("admin"),
            auth: Auth::Basic,
            model: Model::S4,
            firmware: None,
            report: None,
            faults: Vec::new(),
            seed: 0,
            shares: Vec::new(),
            hook: Arc::new(NoBoot),
            control: None,
            restore: Vec::new(),
            busy: std::time::Duration::ZERO,
            licensed: true,
            redfish: true,
        }
    }
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("count", &self.count)
            .field("base", &self.base)
            .field("https_port", &self.https_port)
            .field("http_port", &self.http_port)
            .field("ipmi_port", &self.ipmi_port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("auth", &self.auth)
            .field("model", &self.model)
            .field("firmware", &self.firmware)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("shares", &self.shares)
            .field("control", &self.control)
            .finish()
    }
}

impl SimBuilder {
    /// Defaults: 1 node at 127.1.0.1, HTTPS and IPMI on ephemeral ports, no HTTP, admin/admin,
    /// Basic auth, iRMC S4 7.65F, no faults, seed 0, no share map, no boot simulation.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of simulated iRMCs.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }
    /// Address of node 0; later nodes count up, skipping `.0` and `.255` host parts.
    pub fn base_address(mut self, ip: Ipv4Addr) -> Self {
        self.base = ip;
        self
    }
    /// HTTPS port (`Some(0)` = ephemeral per address, `None` = no HTTPS).
    pub fn https_port(mut self, port: Option<u16>) -> Self {
        self.https_port = port;
        self
    }
    /// HTTP port (`Some(0)` = ephemeral per address, `None` = no HTTP).
    pub fn http_port(mut self, port: Option<u16>) -> Self {
        self.http_port = port;
        self
    }
    /// IPMI-over-LAN UDP port (`Some(0)` = ephemeral per address, the default;
    /// `None` = no IPMI). The binary uses 623.
    pub fn ipmi_port(mut self, port: Option<u16>) -> Self {
        self.ipmi_port = port;
        self
    }
    /// BMC credentials.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = username.into();
        self.password = Secret::new(password.into());
        self
    }
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    pub fn model(mut self, model: Model) -> Self {
        self.model = model;
        self
    }
    /// Firmware version string (default: typical for the model).
    pub fn firmware(mut self, fw: impl Into<String>) -> Self {
        self.firmware = Some(fw.into());
        self
    }
    /// Serve this document as `/report.xml` on every node.
    pub fn report(mut self, xml: impl Into<String>) -> Self {
        self.report = Some(Arc::from(xml.into()));
        self
    }
    /// Add a fault spec applied at start.
    pub fn fault(mut self, spec: FaultSpec) -> Self {
        self.faults.push(spec);
        self
    }
    /// Seed for deterministic fault decisions.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Add one share map entry.
    pub fn share(mut self, entry: ShareMapEntry) -> Self {
        self.shares.push(entry);
        self
    }
    /// Replace the share map.
    pub fn share_map(mut self, entries: Vec<ShareMapEntry>) -> Self {
        self.shares = entries;
        self
    }
    /// Register the simulated boot.
    pub fn boot_hook(mut self, hook: impl BootHook) -> Self {
        self.hook = Arc::new(hook);
        self
    }
    /// Register a shared boot hook.
    pub fn boot_hook_arc(mut self, hook: Arc<dyn BootHook>) -> Self {
        self.hook = hook;
        self
    }
    /// Serve the JSON control API on this loopback address.
    pub fn control(mut self, addr: SocketAddr) -> Self {
        self.control = Some(addr);
        self
    }
    /// Start nodes from saved states (`(index, state)`, as `--state-file` writes them):
    /// power, boot override, media settings and connected flags, disk, flags and labels
    /// are restored; counters start at zero, no ramdisk is running, and share passwords
    /// (never saved) are empty until written again. Indices beyond the count are ignored.
    pub fn restore(mut self, states: Vec<(usize, NodeState)>) -> Self {
        self.restore = states;
        self
    }
    /// Busy window after every power action and media connect: commands of those
    /// kinds inside it are refused with SCCI status 5 (Input/Output error), as a real
    /// iRMC refuses commands sent in a tight sequence. Zero (the default) turns it off;
    /// [`NodeState::busy_ms`] overrides it per node.
    pub fn busy(mut self, window: std::time::Duration) -> Self {
        self.busy = window;
        self
    }
    /// Whether the iRMCs have a licence key installed (default: yes). Without one the
    /// key item (ConfigSpace 1980) reads empty and remote image connects are refused;
    /// [`NodeState::licensed`] overrides it per node.
    pub fn licensed(mut self, licensed: bool) -> Self {
        self.licensed = licensed;
        self
    }
    /// Whether Redfish is served (default: yes). Without it every Redfish path is 404,
    /// as on controllers whose Redfish is disabled; [`NodeState::redfish`] overrides it.
    pub fn redfish(mut self, on: bool) -> Self {
        self.redfish = on;
        self
    }
    /// The firmware string in effect.
    pub fn firmware_or_default(&self) -> &str {
        self.firmware
            .as_deref()
            .unwrap_or_else(|| self.model.default_firmware())
    }
}

/// The address of node `index` counting from `base`, skipping host parts `.0` and `.255`
/// (so 254 nodes fit in each /24). Errors when leaving 127.0.0.0/8.
pub fn node_address(base: Ipv4Addr, index: usize) -> Result<Ipv4Addr, SimError> {
    let base = u32::from(base);
    let last = base & 0xFF;
    if last == 0 || last == 255 {
        return Err(SimError::Config(format!(
            "base address {} must not end in .0 or .255",
            Ipv4Addr::from(base)
        )));
    }
    // Position of base within its /24 among the usable host parts 1..=254.
    let start = u64::from(base >> 8) * 254 + u64::from(last - 1);
    let pos = start + index as u64;
    let net = pos / 254;
    let host = (pos % 254) + 1;
    let ip = u32::try_from(net)
        .ok()
        .and_then(|n| n.checked_mul(256))
        .and_then(|n| n.checked_add(host as u32))
        .map(Ipv4Addr::from)
        .ok_or_else(|| SimError::Config("address space exhausted".into()))?;
    if ip.octets()[0] != 127 {
        return Err(SimError::Config(format!(
            "node {index} would get address {ip}, outside the loopback range 127.0.0.0/8"
        )));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_0_and_255() {
        let b = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(node_address(b, 0).unwrap(), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(node_address(b, 253).unwrap(), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(node_address(b, 254).unwrap(), Ipv4Addr::new(127, 1, 1, 1));
        let b = Ipv4Addr::new(127, 1, 0, 250);
        assert_eq!(node_address(b, 5).unwrap(), Ipv4Addr::new(127, 1, 1, 1));
        assert!(node_address(Ipv4Addr::new(127, 1, 0, 0), 0).is_err());
        assert!(node_address(Ipv4Addr::new(127, 255, 255, 254), 1).is_err());
        // 10,000 nodes from 127.1.0.1 stay in loopback and are unique.
        let set: std::collections::HashSet<_> = (0..10_000)
            .map(|i| node_address(Ipv4Addr::new(127, 1, 0, 1), i).unwrap())
            .collect();
        assert_eq!(set.len(), 10_000);
    }

    #[test]
    fn share_map_parse_and_match() {
        let e = ShareMapEntry::parse("127.0.0.1/share=/srv/x").unwrap();
        assert_eq!(
            (e.server.as_str(), e.share.as_str()),
            ("127.0.0.1", "share")
        );
        assert!(e.matches("127.0.0.1", "share"));
        assert!(e.matches("127.0.0.1", "/share/"));
        assert!(!e.matches("127.0.0.2", "share"));
        let e = ShareMapEntry::parse("smb://ironic:s3cret@127.0.0.1:1445/share=/d").unwrap();
        assert_eq!(e.scheme.as_deref(), Some("smb"));
        assert_eq!(e.user.as_deref(), Some("ironic"));
        assert_eq!(e.password.as_ref().unwrap().expose(), "s3cret");
        assert!(e.matches("127.0.0.1", "share"));
        let e = ShareMapEntry::parse("10.0.0.1//export/images=/d").unwrap();
        assert_eq!(e.share, "/export/images");
        assert!(e.matches("10.0.0.1", "/export/images"));
        let err = ShareMapEntry::parse("u:pw@nothing")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
        assert!(ShareMapEntry::parse("srv/share=").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let b = SimBuilder::new().credentials("admin", "hunter2");
        assert!(!format!("{b:?}").contains("hunter2"));
        assert_eq!(format!("{}", Secret::new("x")), "******");
    }
}
