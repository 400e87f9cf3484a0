//! Per-node state of one simulated iRMC and the handle that boot code uses to read and
//! change it.
//!
//! Every simulated BMC owns one [`NodeState`] behind a `std::sync::Mutex`. Critical
//! sections are tiny (copy a field, flip a flag) and never span an `.await`, so a plain
//! mutex is cheaper than an async one and cannot deadlock across tasks.
//!
//! The HTTP front end (SCCI, Redfish) and the simulated server boot (`BootHook`
//! implementations) both go through [`NodeHandle`]. Power transitions made through the
//! handle call the registered hook, so "the OS" starts and stops whatever changed the
//! power state: an SCCI command, a Redfish reset, the control API or the simulated
//! ramdisk powering itself off.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fault::FaultSet;
use crate::{BootHook, ShareMap};

/// A secret value (BMC or share password). Debug, Display and serialisation print
/// `******`; [`Secret::expose`] gives the clear text to code that must compare it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a clear-text secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The clear text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when no secret was set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("******")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "******" })
    }
}

/// Server power as the BMC sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PowerState {
    On,
    #[default]
    Off,
}

impl PowerState {
    /// The Redfish `PowerState` string.
    pub fn as_redfish(self) -> &'static str {
        match self {
            PowerState::On => "On",
            PowerState::Off => "Off",
        }
    }
}

/// Redfish `BootSourceOverrideTarget` values a simulated iRMC accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BootTarget {
    #[default]
    None,
    Pxe,
    Cd,
    Hdd,
    BiosSetup,
    UefiHttp,
}

impl BootTarget {
    /// All values, in the order the Redfish `AllowableValues` list shows them.
    pub const ALL: [BootTarget; 6] = [
        BootTarget::None,
        BootTarget::Pxe,
        BootTarget::Cd,
        BootTarget::Hdd,
        BootTarget::BiosSetup,
        BootTarget::UefiHttp,
    ];
    /// The Redfish spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BootTarget::None => "None",
            BootTarget::Pxe => "Pxe",
            BootTarget::Cd => "Cd",
            BootTarget::Hdd => "Hdd",
            BootTarget::BiosSetup => "BiosSetup",
            BootTarget::UefiHttp => "UefiHttp",
        }
    }
    /// Parse the Redfish spelling (exact, as a real iRMC does).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Redfish `BootSourceOverrideEnabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BootEnabled {
    #[default]
    Disabled,
    Once,
    Continuous,
}

impl BootEnabled {
    pub const ALL: [BootEnabled; 3] = [
        BootEnabled::Disabled,
        BootEnabled::Once,
        BootEnabled::Continuous,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            BootEnabled::Disabled => "Disabled",
            BootEnabled::Once => "Once",
            BootEnabled::Continuous => "Continuous",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Redfish `BootSourceOverrideMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BootMode {
    #[default]
    #[serde(rename = "UEFI")]
    Uefi,
    Legacy,
}

impl BootMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "UEFI",
            BootMode::Legacy => "Legacy",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "UEFI" => Some(BootMode::Uefi),
            "Legacy" => Some(BootMode::Legacy),
            _ => None,
        }
    }
}

/// The boot override (Redfish `Boot` object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BootOverride {
    pub target: BootTarget,
    pub enabled: BootEnabled,
    pub mode: BootMode,
}

impl BootOverride {
    /// The device the firmware boots from when the override applies, else `None`.
    pub fn effective_target(&self) -> BootTarget {
        match self.enabled {
            BootEnabled::Disabled => BootTarget::None,
            _ => self.target,
        }
    }
}

/// Which virtual drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum MediaKind {
    Cd,
    Fd,
    Hd,
}

impl MediaKind {
    pub const ALL: [MediaKind; 3] = [MediaKind::Cd, MediaKind::Fd, MediaKind::Hd];
    /// Lower-case name used in logs and the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Cd => "cd",
            MediaKind::Fd => "fd",
            MediaKind::Hd => "hd",
        }
    }
}

/// Share type as written to ConfigSpace (0 = NFS, 1 = CIFS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ShareType {
    #[default]
    Nfs,
    Cifs,
}

impl ShareType {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(ShareType::Nfs),
            1 => Some(ShareType::Cifs),
            _ => None,
        }
    }
    pub fn code(self) -> u8 {
        match self {
            ShareType::Nfs => 0,
            ShareType::Cifs => 1,
        }
    }
}

/// Remote image settings of one virtual drive, as written through ConfigSpace, plus the
/// "connected" flag set by `ConnectRemote{Cd,Fd,Hd}Image`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaSettings {
    /// Image server address as the iRMC sees it.
    pub server: String,
    pub share_type: ShareType,
    /// CIFS share name or NFS export path.
    pub share_name: String,
    /// Image path relative to the share.
    pub image_name: String,
    pub user: String,
    /// Serialised as `******`; never read back from a state file.
    #[serde(skip_deserializing)]
    pub password: Secret,
    pub domain: String,
    /// Number of emulated drives (1A68 / 1A58 / 1A48).
    pub drives: u32,
    /// Attach mode item (1A67 / 1A57 / 1A47); never written by Ironic.
    pub attach_mode: u32,
    /// True while the image is connected.
    pub connected: bool,
}

impl MediaSettings {
    /// True when any of server, share name or image name is empty: a real iRMC refuses
    /// to connect or eject such a drive.
    pub fn is_incomplete(&self) -> bool {
        self.server.is_empty() || self.share_name.is_empty() || self.image_name.is_empty()
    }
}

/// What a deploy wrote to the node's local disk. The simulated ramdisk fills it; a disk
/// boot checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSlot {
    /// Hex sha256 of the image written, if any.
    pub sha256: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// Where the bytes were stored, when the simulator keeps them.
    pub path: Option<PathBuf>,
}

/// Result of the last boot attempt, recorded by the boot code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootOutcome {
    /// Boot generation this outcome belongs to (see [`NodeState::boot_generation`]).
    pub generation: u64,
    /// Device booted: "cd", "hdd", "pxe", "none".
    pub device: String,
    /// True when the boot reached its payload (ramdisk or OS).
    pub ok: bool,
    /// Stage reached, e.g. "firmware", "ramdisk", "os".
    pub stage: String,
    /// Operator-facing text, e.g. the firmware's boot-failure message.
    pub message: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// Number of requests served per kind, for "BMC requests per deploy" accounting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestCounters {
    /// SCCI commands by opcode name (a CMDSEQ with 9 commands counts 9 here).
    pub scci: BTreeMap<String, u64>,
    /// POST /config requests (HTTP level).
    pub config_posts: u64,
    pub report: u64,
    pub settings: u64,
    pub redfish_get: u64,
    pub redfish_patch: u64,
    pub redfish_post: u64,
    pub elcm: u64,
    /// Requests rejected with 401 (including the first leg of digest).
    pub unauthorized: u64,
    pub not_found: u64,
    /// IPMI-over-LAN requests by name (`open_session`, `rakp1`, `get_chassis_status`, ...).
    pub ipmi: BTreeMap<String, u64>,
    /// UDP datagrams received on the IPMI port.
    pub ipmi_packets: u64,
    /// IPMI datagrams dropped (garbage, bad integrity code, unknown session).
    pub ipmi_dropped: u64,
    /// IPMI sessions refused in RAKP (unknown user, wrong password, bad role).
    pub ipmi_unauthorized: u64,
    /// SCCI commands refused as busy (status 5) inside a busy window.
    pub busy_refused: u64,
    /// Every HTTP request this node's listener answered (or hung on).
    pub total: u64,
    /// Latency injected into this node's replies, summed, in milliseconds. Draws depend
    /// only on (seed, node, request number), not on timing, so a benchmark can compute
    /// from it how long this node's BMC conversation had to take under any schedule.
    pub delay_ms: u64,
}

/// The full per-node state. Public fields so boot code and tests can read everything;
/// change it through [`NodeHandle::update`] or the dedicated methods.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeState {
    pub power: PowerState,
    pub boot: BootOverride,
    /// Boot device selector last written over IPMI (boot flags data 2 bits 5:2), so
    /// Get System Boot Options reports 1000b (remote CD/DVD) when that was set.
    pub ipmi_boot_selector: Option<u8>,
    pub cd: MediaSettings,
    pub fd: MediaSettings,
    pub hd: MediaSettings,
    /// ConfigSpace item 1A80 ("remote media enabled").
    pub remote_media_enabled: bool,
    /// Every other ConfigSpace item written, by OE (hex upper-case), values as text.
    /// Password items are never stored here.
    pub config_space: BTreeMap<String, String>,
    /// The ServerView agent runs in the OS: soft power commands work only when set.
    pub serverview_agent: bool,
    /// The installed OS (booted from disk) is running.
    pub os_running: bool,
    /// The simulated deploy ramdisk is running.
    pub ramdisk_running: bool,
    /// Local disk contents.
    pub disk: DiskSlot,
    /// Incremented on every power-on and every reset while on. Boot tasks remember the
    /// generation they were started for and stop when it changes.
    pub boot_generation: u64,
    /// Number of power-on/reset events since start.
    pub boots: u64,
    /// Last boot outcome recorded by the boot code.
    pub last_boot: Option<BootOutcome>,
    /// Free-form facts the boot code publishes (e.g. "ipa_callback_url").
    pub labels: BTreeMap<String, String>,
    /// With an external deploy ramdisk (`--external-ramdisk`): the parameters the booted
    /// deploy ISO hands it (command line merged with `parameters.txt`), while it runs. They
    /// hold the agent token, so they are never serialised (not in the control API's node
    /// view, not in the state file); `GET /nodes/{i}/ramdisk-params` alone returns them.
    #[serde(skip)]
    pub external_ramdisk_params: Option<BTreeMap<String, String>>,
    pub counters: RequestCounters,
    /// This node's busy window after power actions and media connects, in ms
    /// (overrides the fleet's `--busy-ms`; 0 turns it off for this node).
    pub busy_ms: Option<u64>,
    /// This node has a licence key installed (overrides the fleet's `--no-licence`).
    pub licensed: Option<bool>,
    /// This node serves Redfish (overrides the fleet's `--no-redfish`).
    pub redfish: Option<bool>,
    /// This node's own `/report.xml` document (another generation or firmware than the
    /// fleet's, or a report without the iRMC section); `None` serves the fleet's.
    #[serde(skip)]
    pub report: Option<String>,
    /// Until when power actions and media connects are refused as busy.
    #[serde(skip)]
    pub busy_until: Option<std::time::Instant>,
}

impl NodeState {
    /// Settings of one drive.
    pub fn media(&self, kind: MediaKind) -> &MediaSettings {
        match kind {
            MediaKind::Cd => &self.cd,
            MediaKind::Fd => &self.fd,
            MediaKind::Hd => &self.hd,
        }
    }
    /// Mutable settings of one drive.
    pub fn media_mut(&mut self, kind: MediaKind) -> &mut MediaSettings {
        match kind {
            MediaKind::Cd => &mut self.cd,
            MediaKind::Fd => &mut self.fd,
            MediaKind::Hd => &mut self.hd,
        }
    }
}

/// What the firmware sees when the server powers on: passed to
/// [`BootHook::on_power_on`](crate::BootHook::on_power_on).
#[derive(Clone, Debug)]
pub struct BootSnapshot {
    /// Node index (0-based) and BMC address.
    pub index: usize,
    pub address: Ipv4Addr,
    /// Boot generation of this power-on.
    pub generation: u64,
    /// The override in effect for this boot. A `Once` override has already been
    /// consumed in the node state (as real firmware does) but is shown here.
    pub boot: BootOverride,
    /// Device the firmware boots from: the override target when enabled, else `None`
    /// (meaning "the normal boot order": the local disk).
    pub target: BootTarget,
    pub cd: MediaSettings,
    pub fd: MediaSettings,
    pub hd: MediaSettings,
    pub disk: DiskSlot,
    /// Why the server starts: "power-on", "reset", "power-cycle", "soft-reset".
    pub reason: &'static str,
    /// The share map (server/share -> directory) the simulator was started with.
    pub shares: ShareMap,
}

impl BootSnapshot {
    /// Settings of one drive.
    pub fn media(&self, kind: MediaKind) -> &MediaSettings {
        match kind {
            MediaKind::Cd => &self.cd,
            MediaKind::Fd => &self.fd,
            MediaKind::Hd => &self.hd,
        }
    }
}

/// Immutable facts of a node plus its state cell.
pub(crate) struct NodeInner {
    pub index: usize,
    pub address: Ipv4Addr,
    pub state: Mutex<NodeState>,
    pub faults: Mutex<FaultSet>,
    /// Request sequence number, drives the deterministic fault RNG.
    pub seq: AtomicU64,
}

/// Shared context every node handle can reach.
pub(crate) struct NodeContext {
    pub hook: Arc<dyn BootHook>,
    pub shares: ShareMap,
}

/// A cheap, cloneable handle on one simulated node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) inner: Arc<NodeInner>,
    pub(crate) ctx: Arc<NodeContext>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("index", &self.inner.index)
            .field("address", &self.inner.address)
            .finish()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NodeHandle {
    /// Node index (0-based).
    pub fn index(&self) -> usize {
        self.inner.index
    }

    /// The node's BMC address.
    pub fn address(&self) -> Ipv4Addr {
        self.inner.address
    }

    /// The share map the simulator was started with.
    pub fn shares(&self) -> &ShareMap {
        &self.ctx.shares
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A poisoned lock only means a panic elsewhere while holding it; the state is
        // plain data, so keep serving it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the whole state.
    pub fn state(&self) -> NodeState {
        self.lock().clone()
    }

    /// Change the state with a closure (no power side effects, no hook calls).
    pub fn update<R>(&self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        f(&mut self.lock())
    }

    /// True while `generation` is still the node's current boot and power is on: boot
    /// tasks poll this to stop when the server was reset or powered off.
    pub fn is_current(&self, generation: u64) -> bool {
        let s = self.lock();
        s.power == PowerState::On && s.boot_generation == generation
    }

    /// Record the outcome of boot `generation` (ignored if a newer boot started).
    pub fn record_boot(&self, generation: u64, device: &str, ok: bool, stage: &str, message: &str) {
        let mut s = self.lock();
        if s.boot_generation != generation {
            return;
        }
        s.last_boot = Some(BootOutcome {
            generation,
            device: device.to_string(),
            ok,
            stage: stage.to_string(),
            message: message.to_string(),
            at_unix: now_unix(),
        });
    }

    /// Power on. Returns false when already on (nothing happens, as on real hardware).
    pub fn power_on(&self) -> bool {
        self.start(false, "power-on")
    }

    /// Hard power off. Returns false when already off.
    pub fn power_off(&self) -> bool {
        {
            let mut s = self.lock();
            if s.power == PowerState::Off {
                return false;
            }
            s.power = PowerState::Off;
            s.os_running = false;
            s.ramdisk_running = false;
            s.external_ramdisk_params = None;
            s.serverview_agent = false;
        }
        self.ctx.hook.on_power_off(self.clone());
        true
    }

    /// Reset (or power-cycle): when on, stop the OS and start a new boot; when off, a
    /// reset does nothing and a cycle powers on.
    pub fn reset(&self, reason: &'static str) -> bool {
        let was_on = self.lock().power == PowerState::On;
        if was_on {
            {
                let mut s = self.lock();
                s.os_running = false;
                s.ramdisk_running = false;
                s.external_ramdisk_params = None;
                s.serverview_agent = false;
            }
            self.ctx.hook.on_power_off(self.clone());
            self.start(true, reason)
        } else if reason == "power-cycle" {
            self.start(false, reason)
        } else {
            false
        }
    }

    /// Common power-on path: bump the generation, consume a `Once` override, snapshot,
    /// call the hook.
    fn start(&self, allow_when_on: bool, reason: &'static str) -> bool {
        let snapshot = {
            let mut s = self.lock();
            if s.power == PowerState::On && !allow_when_on {
                return false;
            }
            s.power = PowerState::On;
            s.boot_generation += 1;
            s.boots += 1;
            let boot = s.boot;
            if boot.enabled == BootEnabled::Once {
                s.boot.enabled = BootEnabled::Disabled;
                s.boot.target = BootTarget::None;
            }
            BootSnapshot {
                index: self.inner.index,
                address: self.inner.address,
                generation: s.boot_generation,
                boot,
                target: boot.effective_target(),
                cd: s.cd.clone(),
                fd: s.fd.clone(),
                hd: s.hd.clone(),
                disk: s.disk.clone(),
                reason,
                shares: self.ctx.shares.clone(),
            }
        };
        tracing::debug!(node = self.inner.index, bmc = %self.inner.address, reason, "server starts");
        self.ctx.hook.on_power_on(self.clone(), snapshot);
        true
    }

    /// Next value of the per-node request sequence (for deterministic fault decisions).
    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Faults currently configured for this node.
    pub(crate) fn faults(&self) -> FaultSet {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace this node's faults.
    pub fn set_faults(&self, faults: FaultSet) {
        *self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }
}
