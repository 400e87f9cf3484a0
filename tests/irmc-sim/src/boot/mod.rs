//! The simulated server boot: what a PRIMERGY does between "power on" and "OS running".
//!
//! On power-on/reset the firmware picks the boot device from the override:
//! - **CD** (virtual CD connected): mount the ISO through the share map (or a real Samba
//!   server), check it is ISO 9660 with an El Torito entry for the boot mode (UEFI -> 0xEF,
//!   Legacy -> BIOS), read the boot loader configuration (grub.cfg for UEFI, isolinux.cfg for
//!   BIOS, falling back to the other) for the kernel command line, read `parameters.txt` from
//!   the FAT volume labelled `ir-vfd-dev` on the virtual FD (or HD), merge it as
//!   ironic-python-agent does (only when the command line says `boot_method=vmedia`), wait
//!   the ramdisk boot delay and run the simulated deploy ramdisk ([`crate::ramdisk`]).
//! - **HDD** or no override: boot the local disk. It must hold a completely written image
//!   whose hash matches what the ramdisk recorded; then the node reports "OS running".
//! - **External ramdisk** ([`BootConfig::external_ramdisk`]): a real deploy ramdisk (stock
//!   ironic-python-agent, started by a test) plays the node's ramdisk. The firmware part
//!   is the same (the ISO must boot in the node's mode, the parameter image is read and
//!   merged), then the node shows `ramdisk_stage=external` and the merged parameters at
//!   `GET /nodes/{i}/ramdisk-params` until it powers off; no simulated ramdisk runs. The
//!   node's disk is the file `disk_dir/node-<index>.img` the real ramdisk writes (through
//!   a loop device); booting from disk then needs a partition table on it and reports
//!   the sha256 of the whole file.
//! - Anything that goes wrong is recorded as the boot outcome (visible in the node state and
//!   the control API, and logged), power stays on, and the node never calls back.
//!
//! Note for media builders: as in ironic-python-agent (`utils.get_agent_params`), the floppy
//! is merged only when the *ISO's* kernel command line carries `boot_method=vmedia`
//! (diskimage-builder's deploy ISO puts it in both isolinux.cfg and grub.cfg); the same key
//! inside `parameters.txt` has no effect. Progress is published in `NodeState::labels`:
//! `ramdisk_stage`, `ipa_callback_url`, `ipa_node_uuid`, `ipa_heartbeats`,
//! `ramdisk_lookup_attempts`. The node's NIC MAC is [`crate::ramdisk::node_mac`] of its BMC
//! address (plus `BOOTIF` when given), which is what the lookup sends.
//!
//! Layout: `iso.rs` (ISO 9660 / El Torito reader), `fat.rs` (FAT12/16/32 reader),
//! `cmdline.rs` (boot loader configuration, IPA parameter rules), `media.rs` (share map,
//! credentials, smbclient), this file (the [`crate::BootHook`] implementation).
//!
//! Invariants: at most one boot task per node; a power-off or reset aborts it (and with it
//! the ramdisk and everything it spawned). Blocking file reads run on the blocking pool.
//! Share passwords and agent tokens are never logged.

pub mod cmdline;
pub mod fat;
pub mod iso;
pub mod media;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest;

use crate::node::{BootMode, BootSnapshot, BootTarget, DiskSlot, MediaKind, NodeHandle};
use crate::ramdisk::{self, DiskTarget, RamdiskConfig, RamdiskHost, RamdiskTiming};
use crate::{BootHook, ShareMap};

use self::iso::{Iso, Platform};
use self::media::{MountReason, SmbOptions};

/// Volume label of the parameter image (Ironic `create_vfat_image`).
pub const PARAMS_LABEL: &str = "ir-vfd-dev";
/// File holding the parameters on that volume.
pub const PARAMS_FILE: &str = "parameters.txt";

/// Where boot loaders keep their configuration, in search order.
const GRUB_PATHS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/EFI/BOOT/grub.cfg",
    "/boot/grub2/grub.cfg",
];
const ISOLINUX_PATHS: &[&str] = &[
    "/isolinux/isolinux.cfg",
    "/isolinux.cfg",
    "/boot/isolinux/isolinux.cfg",
    "/syslinux/syslinux.cfg",
];

/// Why a simulated boot failed. Every variant names the node and its BMC.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(
        "node {node} (BMC {bmc}): Virtual media: could not mount {drive} image {location}: {reason}"
    )]
    Mount {
        node: usize,
        bmc: IpAddr,
        drive: &'static str,
        location: String,
        reason: MountReason,
    },
    #[error("node {node} (BMC {bmc}): boot failure: CD image {location} is not bootable: {reason}")]
    NotBootable {
        node: usize,
        bmc: IpAddr,
        location: String,
        reason: String,
    },
    #[error("node {node} (BMC {bmc}): boot failure: {drive} parameter image {location}: {reason}")]
    ParamImage {
        node: usize,
        bmc: IpAddr,
        drive: &'static str,
        location: String,
        reason: String,
    },
    #[error("node {node} (BMC {bmc}): boot failure: no bootable device: {reason}")]
    NoBootDevice {
        node: usize,
        bmc: IpAddr,
        reason: String,
    },
    #[error("node {node} (BMC {bmc}): deploy ramdisk failed: {source}")]
    Ramdisk {
        node: usize,
        bmc: IpAddr,
        #[source]
        source: ramdisk::RamdiskError,
    },
    #[error("node {node} (BMC {bmc}): cannot set up the boot simulation: {reason}")]
    Setup {
        node: usize,
        bmc: IpAddr,
        reason: String,
    },
}

/// Knobs of the boot simulation.
#[derive(Clone, Debug)]
pub struct BootConfig {
    /// Time from power-on to the ramdisk (or OS) running: firmware POST plus kernel boot.
    pub boot_delay: Duration,
    /// Keep written images as files `DIR/node-<index>.img`; `None` keeps only a running
    /// sha256 (cheap at scale).
    pub disk_dir: Option<PathBuf>,
    /// Ramdisk timing (lookup backoff, forced heartbeats, bandwidth limit).
    pub timing: RamdiskTiming,
    /// Agent API port on the node's address (`ipa-listen-port` overrides it).
    pub ipa_port: u16,
    /// smbclient back end options.
    pub smb: SmbOptions,
    /// Leave the deploy ramdisk to a real one outside the simulator (see the module docs).
    pub external_ramdisk: bool,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            boot_delay: Duration::from_millis(200),
            disk_dir: None,
            timing: RamdiskTiming::realistic(),
            ipa_port: ramdisk::DEFAULT_PORT,
            smb: SmbOptions::default(),
            external_ramdisk: false,
        }
    }
}

/// The [`BootHook`] that simulates the server boot and the deploy ramdisk.
pub struct SimBoot {
    cfg: Arc<BootConfig>,
    client: reqwest::Client,
    /// Running boot task per node index.
    tasks: Mutex<HashMap<usize, tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for SimBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBoot").field("cfg", &self.cfg).finish()
    }
}

impl SimBoot {
    /// Build the hook; creates the disk directory when configured.
    pub fn new(cfg: BootConfig) -> Result<Self, std::io::Error> {
        if let Some(d) = &cfg.disk_dir {
            std::fs::create_dir_all(d)?;
        }
        let client =
            ramdisk::http_client(cfg.timing.http_timeout, false).map_err(std::io::Error::other)?;
        Ok(SimBoot {
            cfg: Arc::new(cfg),
            client,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    fn abort(&self, index: usize) {
        let mut t = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = t.remove(&index) {
            h.abort();
        }
    }
}

impl BootHook for SimBoot {
    fn on_power_on(&self, node: NodeHandle, snapshot: BootSnapshot) {
        self.abort(node.index());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                node = node.index(),
                "power-on outside a tokio runtime: boot not simulated"
            );
            return;
        };
        let cfg = self.cfg.clone();
        let client = self.client.clone();
        let index = node.index();
        let handle = rt.spawn(boot(node, snapshot, cfg, client));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index, handle.abort_handle());
    }

    fn on_power_off(&self, node: NodeHandle) {
        self.abort(node.index());
        node.update(|s| {
            s.ramdisk_running = false;
            s.os_running = false;
        });
    }
}

/// The ramdisk's view of the node it runs on.
struct NodeHost {
    node: NodeHandle,
    generation: u64,
}

impl RamdiskHost for NodeHost {
    fn power_off(&self) {
        if self.node.is_current(self.generation) {
            self.node.power_off();
        }
    }
    fn reboot(&self) {
        if self.node.is_current(self.generation) {
            self.node.reset("soft-reset");
        }
    }
    fn disk_written(&self, slot: DiskSlot) {
        self.node.update(|s| s.disk = slot);
    }
    fn publish(&self, key: &str, value: &str) {
        self.node.update(|s| {
            s.labels.insert(key.to_string(), value.to_string());
        });
    }
}

/// What the firmware found on the virtual CD and parameter drive.
#[derive(Debug)]
pub struct CdBoot {
    /// Kernel command line from the boot loader configuration.
    pub cmdline: String,
    /// Which configuration file it came from.
    pub config_path: String,
    /// `parameters.txt` when a parameter image was attached and readable.
    pub vmedia_params: Option<String>,
}

/// Inspect an ISO image: El Torito entry for `mode`, boot loader configuration, command line.
pub fn inspect_iso(file: std::fs::File, mode: BootMode) -> Result<(String, String), String> {
    let iso = Iso::open(Box::new(file)).map_err(|e| e.to_string())?;
    let entries = iso.boot_entries().map_err(|e| e.to_string())?;
    let want = match mode {
        BootMode::Uefi => Platform::Efi,
        BootMode::Legacy => Platform::Bios,
    };
    if !entries.iter().any(|e| e.platform == want && e.bootable) {
        return Err(format!(
            "no bootable El Torito entry for {} (entries: {})",
            mode.as_str(),
            entries
                .iter()
                .map(|e| format!(
                    "{:?}{}",
                    e.platform,
                    if e.bootable { "" } else { " (not bootable)" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let (first, second): (&[&str], &[&str]) = match mode {
        BootMode::Uefi => (GRUB_PATHS, ISOLINUX_PATHS),
        BootMode::Legacy => (ISOLINUX_PATHS, GRUB_PATHS),
    };
    for path in first.iter().chain(second.iter()) {
        let Some(bytes) = iso.read_file(path).map_err(|e| e.to_string())? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let line = if GRUB_PATHS.contains(path) {
            cmdline::grub_linux_args(&text)
        } else {
            cmdline::isolinux_append(&text)
        };
        if let Some(line) = line {
            return Ok((line, (*path).to_string()));
        }
    }
    Err("no boot loader configuration with a kernel command line (looked for grub.cfg and isolinux.cfg)".into())
}

/// [`inspect_iso`], remembered per file version: a fleet boots the same deploy ISO on
/// every node of a share, and the answer depends only on the bytes. A file is the same
/// version while its device, inode, size and modification time are (the share agents
/// write new media under a new name and rename, which changes the inode).
pub fn inspect_iso_cached(file: std::fs::File, mode: BootMode) -> Result<(String, String), String> {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::{Mutex, OnceLock};
    type Key = (u64, u64, u64, i64, i64, bool);
    static SEEN: OnceLock<Mutex<HashMap<Key, (String, String)>>> = OnceLock::new();
    let key = file.metadata().ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            mode == BootMode::Uefi,
        )
    });
    let seen = SEEN.get_or_init(Mutex::default);
    if let Some(k) = &key
        && let Some(hit) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(k)
    {
        return Ok(hit.clone());
    }
    let out = inspect_iso(file, mode)?;
    if let Some(k) = key {
        let mut g = seen.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a long-running simulator sees few distinct ISOs, but never grows forever.
        if g.len() >= 1024 {
            g.clear();
        }
        g.insert(k, out.clone());
    }
    Ok(out)
}

/// Read `parameters.txt` from the `ir-vfd-dev` volume of a parameter image.
/// `Ok(None)`: the image has no such volume or file (IPA then runs without them).
pub fn read_params(file: &std::fs::File) -> Result<Option<String>, String> {
    let vol = match fat::find_labelled(file, PARAMS_LABEL) {
        Ok(v) => v,
        Err(fat::FatError::NoLabel(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let data = vol
        .read_root_file(file, PARAMS_FILE)
        .map_err(|e| e.to_string())?;
    Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
}

async fn mount_and<T: Send + 'static>(
    node: &NodeHandle,
    kind: MediaKind,
    snap: &BootSnapshot,
    shares: &ShareMap,
    cfg: &BootConfig,
    inspect: impl FnOnce(std::fs::File) -> Result<T, String> + Send + 'static,
) -> Result<T, BootError> {
    let m = snap.media(kind);
    let location = media::location(m);
    let mounted = media::mount(m, shares, &cfg.smb)
        .await
        .map_err(|reason| BootError::Mount {
            node: node.index(),
            bmc: IpAddr::V4(node.address()),
            drive: media::drive_name(kind),
            location: location.clone(),
            reason,
        })?;
    let file = mounted.file.try_clone().map_err(|e| BootError::Setup {
        node: node.index(),
        bmc: IpAddr::V4(node.address()),
        reason: e.to_string(),
    })?;
    // ISO/FAT parsing does blocking reads: keep them off the async workers.
    let out = tokio::task::spawn_blocking(move || inspect(file))
        .await
        .map_err(|e| BootError::Setup {
            node: node.index(),
            bmc: IpAddr::V4(node.address()),
            reason: e.to_string(),
        })?;
    drop(mounted);
    out.map_err(|reason| match kind {
        MediaKind::Cd => BootError::NotBootable {
            node: node.index(),
            bmc: IpAddr::V4(node.address()),
            location,
            reason,
        },
        _ => BootError::ParamImage {
            node: node.index(),
            bmc: IpAddr::V4(node.address()),
            drive: media::drive_name(kind),
            location,
            reason,
        },
    })
}

/// The firmware part of a CD boot: everything up to "kernel starts".
pub async fn boot_cd(
    node: &NodeHandle,
    snap: &BootSnapshot,
    cfg: &BootConfig,
) -> Result<CdBoot, BootError> {
    let mode = snap.boot.mode;
    let (cmdline, config_path) =
        mount_and(node, MediaKind::Cd, snap, &snap.shares, cfg, move |f| {
            inspect_iso_cached(f, mode)
        })
        .await?;
    // The parameter image: the virtual floppy, else the virtual HD (S6 has no floppy).
    let param_drive = [MediaKind::Fd, MediaKind::Hd]
        .into_iter()
        .find(|k| snap.media(*k).connected);
    let vmedia_params = match param_drive {
        Some(kind) => mount_and(node, kind, snap, &snap.shares, cfg, |f| read_params(&f)).await?,
        None => None,
    };
    Ok(CdBoot {
        cmdline,
        config_path,
        vmedia_params,
    })
}

fn hash_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(h.finalize()), total))
}

/// Boot from the local disk: it must hold a completely written, unmodified image.
pub async fn boot_disk(node: &NodeHandle, snap: &BootSnapshot) -> Result<String, BootError> {
    let fail = |reason: String| BootError::NoBootDevice {
        node: node.index(),
        bmc: IpAddr::V4(node.address()),
        reason,
    };
    let disk = snap.disk.clone();
    let Some(want) = disk.sha256.clone() else {
        return Err(fail(if disk.bytes == 0 {
            "local disk is empty".into()
        } else {
            format!(
                "local disk holds {} bytes of an incompletely written or unverified image",
                disk.bytes
            )
        }));
    };
    if let Some(path) = disk.path.clone() {
        let p2 = path.clone();
        let got = tokio::task::spawn_blocking(move || hash_file(&p2))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("cannot read disk {}: {e}", path.display())))?;
        if got.0 != want || got.1 != disk.bytes {
            return Err(fail(format!(
                "disk contents do not match the deployed image (sha256 {} over {} bytes, expected {want} over {})",
                got.0, got.1, disk.bytes
            )));
        }
    }
    Ok(want)
}

/// The local disk as the firmware sees it: the simulated ramdisk's record, or with an
/// external ramdisk the disk file it wrote.
async fn boot_local_disk(
    node: &NodeHandle,
    snap: &BootSnapshot,
    cfg: &BootConfig,
) -> Result<String, BootError> {
    match (&cfg.disk_dir, cfg.external_ramdisk) {
        (Some(dir), true) if snap.disk.sha256.is_none() => {
            let path = dir.join(format!("node-{}.img", node.index()));
            let fail = |reason: String| BootError::NoBootDevice {
                node: node.index(),
                bmc: IpAddr::V4(node.address()),
                reason,
            };
            let p2 = path.clone();
            tokio::task::spawn_blocking(move || external_disk(&p2))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("disk {}: {e}", path.display())))
        }
        _ => boot_disk(node, snap).await,
    }
}

/// sha256 of a disk file written by an external ramdisk, when it holds a partition table
/// (an MBR or protective-MBR boot signature), as firmware needs to boot it.
fn external_disk(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr)
        .map_err(|e| format!("cannot read the first sector: {e}"))?;
    if mbr[510..] != [0x55, 0xaa] {
        return Err("local disk holds no partition table (no boot signature)".into());
    }
    hash_file(path)
        .map(|(sha, _)| sha)
        .map_err(|e| e.to_string())
}

async fn boot(node: NodeHandle, snap: BootSnapshot, cfg: Arc<BootConfig>, client: reqwest::Client) {
    let generation = snap.generation;
    let index = node.index();
    let bmc = node.address();
    match snap.target {
        BootTarget::Cd => {
            if !snap.cd.connected {
                let e = BootError::NoBootDevice {
                    node: index,
                    bmc: IpAddr::V4(bmc),
                    reason: "boot override is CD but no virtual CD is connected".into(),
                };
                fail(&node, generation, "cd", "firmware", &e);
                return;
            }
            let cd = match boot_cd(&node, &snap, &cfg).await {
                Ok(cd) => cd,
                Err(e) => {
                    fail(&node, generation, "cd", "firmware", &e);
                    return;
                }
            };
            let (params, merged) = cmdline::agent_params(&cd.cmdline, cd.vmedia_params.as_deref());
            tracing::info!(
                node = index, bmc = %bmc, config = %cd.config_path, vmedia_params = merged,
                params = ?ramdisk::masked_params(&params), "virtual CD booted, starting deploy ramdisk"
            );
            node.record_boot(
                generation,
                "cd",
                true,
                "ramdisk",
                &format!(
                    "booted deploy ramdisk from {} ({}); parameters.txt {}",
                    media::location(&snap.cd),
                    cd.config_path,
                    if merged {
                        "merged"
                    } else if cd.vmedia_params.is_some() {
                        "ignored (no boot_method=vmedia)"
                    } else {
                        "absent"
                    }
                ),
            );
            tokio::time::sleep(cfg.boot_delay).await;
            if !node.is_current(generation) {
                return;
            }
            if cfg.external_ramdisk {
                node.update(|s| {
                    s.ramdisk_running = true;
                    s.external_ramdisk_params = Some(params);
                    s.labels.insert("ramdisk_stage".into(), "external".into());
                });
                tracing::info!(node = index, bmc = %bmc, "deploy ramdisk left to an external ramdisk");
                return;
            }
            node.update(|s| s.ramdisk_running = true);
            let disk = match &cfg.disk_dir {
                Some(d) => DiskTarget::File(d.join(format!("node-{index}.img"))),
                None => DiskTarget::HashOnly,
            };
            let rcfg = RamdiskConfig {
                node: format!("node {index} ({bmc})"),
                params,
                listen_ip: IpAddr::V4(bmc),
                default_port: cfg.ipa_port,
                macs: vec![ramdisk::node_mac(bmc)],
                disk,
                timing: cfg.timing.clone(),
            };
            let host = Arc::new(NodeHost {
                node: node.clone(),
                generation,
            });
            let result = ramdisk::run(rcfg, host, client).await;
            node.update(|s| s.ramdisk_running = false);
            if let Err(source) = result {
                let e = BootError::Ramdisk {
                    node: index,
                    bmc: IpAddr::V4(bmc),
                    source,
                };
                fail(&node, generation, "cd", "ramdisk", &e);
            }
        }
        BootTarget::Hdd | BootTarget::None => match boot_local_disk(&node, &snap, &cfg).await {
            Ok(sha) => {
                tokio::time::sleep(cfg.boot_delay).await;
                if !node.is_current(generation) {
                    return;
                }
                node.update(|s| s.os_running = true);
                node.record_boot(
                    generation,
                    "hdd",
                    true,
                    "os",
                    &format!("OS running from local disk (image sha256 {sha})"),
                );
                tracing::info!(node = index, bmc = %bmc, "OS running from local disk");
            }
            Err(e) => fail(&node, generation, "hdd", "firmware", &e),
        },
        BootTarget::BiosSetup => {
            node.record_boot(generation, "none", true, "setup", "BIOS setup screen");
        }
        BootTarget::Pxe | BootTarget::UefiHttp => {
            let e = BootError::NoBootDevice {
                node: index,
                bmc: IpAddr::V4(bmc),
                reason: format!(
                    "{} boot: no boot server answered (network boot is not simulated)",
                    snap.target.as_str()
                ),
            };
            fail(&node, generation, "pxe", "firmware", &e);
        }
    }
}

/// Record a failed boot: the node stays powered on at the firmware's failure screen.
fn fail(node: &NodeHandle, generation: u64, device: &str, stage: &str, e: &BootError) {
    tracing::warn!(node = node.index(), bmc = %node.address(), device, stage, "{e}");
    node.record_boot(generation, device, false, stage, &e.to_string());
}
