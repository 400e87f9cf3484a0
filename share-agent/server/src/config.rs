//! The agent's configuration: one TOML file, every option overridable by a flag
//! or a `SHARE_AGENT_*` environment variable (flag/env > file > default).
//!
//! Share options keep the names of Ironic's `[irmc]` section so operators
//! recognise them (`remote_image_share_root`, `remote_image_server`, ...).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use secret::Secret;

/// How the iRMCs reach the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ShareType {
    /// SMB/CIFS (Ironic's default).
    #[serde(rename = "CIFS")]
    Cifs,
    /// NFS export.
    #[serde(rename = "NFS")]
    Nfs,
}

impl ShareType {
    fn parse(s: &str) -> Result<Self, AgentError> {
        match s.to_ascii_uppercase().as_str() {
            "CIFS" | "SMB" => Ok(Self::Cifs),
            "NFS" => Ok(Self::Nfs),
            other => Err(AgentError::config(
                "remote_image_share_type",
                format!("must be CIFS or NFS, got {other:?}"),
            )),
        }
    }

    /// The name used on the wire to the coordinator.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cifs => "CIFS",
            Self::Nfs => "NFS",
        }
    }
}

/// Command line. Every option can also come from the environment
/// (`SHARE_AGENT_<FLAG>` with dashes as underscores) or from the TOML file.
#[derive(Debug, Parser, Default)]
#[command(
    name = "share-agent",
    version,
    about = "Share agent for iRMC virtual-media provisioning"
)]
pub struct Cli {
    /// TOML configuration file (see deploy/share-agent.toml).
    #[arg(long, env = "SHARE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run the start-up checks, print the effective configuration and exit.
    #[arg(long)]
    pub check: bool,

    /// Stable agent name (default: the host name).
    #[arg(long, env = "SHARE_AGENT_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Coordinator gRPC endpoint, e.g. https://10.0.0.1:50051; several replicas comma
    /// separated (the agent follows the leader).
    #[arg(long, env = "SHARE_AGENT_COORDINATOR")]
    pub coordinator: Option<String>,
    /// CA bundle verifying the coordinator (https endpoints; default: system roots).
    #[arg(long, env = "SHARE_AGENT_COORDINATOR_CA_FILE")]
    pub coordinator_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the coordinator (mTLS).
    #[arg(long, env = "SHARE_AGENT_COORDINATOR_CERT_FILE")]
    pub coordinator_cert_file: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(long, env = "SHARE_AGENT_COORDINATOR_KEY_FILE")]
    pub coordinator_key_file: Option<PathBuf>,
    /// Concurrent virtual-media boots this share can feed.
    #[arg(long, env = "SHARE_AGENT_CAPACITY")]
    pub capacity: Option<u32>,
    /// CIDRs of the iRMCs this agent can reach (comma separated; empty = all).
    #[arg(long, env = "SHARE_AGENT_BMC_NETWORKS", value_delimiter = ',')]
    pub bmc_networks: Option<Vec<String>>,
    /// Labels, `key=value` (comma separated).
    #[arg(long, env = "SHARE_AGENT_LABELS", value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// HTTP listen address for images and ramdisk callbacks.
    #[arg(long, env = "SHARE_AGENT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Callback URL advertised to ramdisks (ipa-api-url) and image URL base.
    #[arg(long, env = "SHARE_AGENT_IPA_API_URL")]
    pub ipa_api_url: Option<String>,

    /// [irmc] remote_image_share_root: the exported directory on this host.
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_SHARE_ROOT")]
    pub remote_image_share_root: Option<PathBuf>,
    /// [irmc] remote_image_server: the address the iRMCs use to reach the share.
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_SERVER")]
    pub remote_image_server: Option<String>,
    /// [irmc] remote_image_share_type: CIFS (default) or NFS.
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_SHARE_TYPE")]
    pub remote_image_share_type: Option<String>,
    /// [irmc] remote_image_share_name (default "share").
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_SHARE_NAME")]
    pub remote_image_share_name: Option<String>,
    /// [irmc] remote_image_user_name.
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_USER_NAME")]
    pub remote_image_user_name: Option<String>,
    /// [irmc] remote_image_user_password (prefer the password file).
    #[arg(
        long,
        env = "SHARE_AGENT_REMOTE_IMAGE_USER_PASSWORD",
        hide_env_values = true
    )]
    pub remote_image_user_password: Option<String>,
    /// File holding the share password (first line).
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_USER_PASSWORD_FILE")]
    pub remote_image_user_password_file: Option<PathBuf>,
    /// [irmc] remote_image_user_domain.
    #[arg(long, env = "SHARE_AGENT_REMOTE_IMAGE_USER_DOMAIN")]
    pub remote_image_user_domain: Option<String>,
    /// The share root must be a mount point (checked in /proc/self/mountinfo).
    #[arg(long, env = "SHARE_AGENT_SHARE_IS_MOUNT")]
    pub share_is_mount: Option<bool>,
    /// Space kept free on the share; a write that would eat into it fails.
    #[arg(long, env = "SHARE_AGENT_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
    /// Samba configuration checked for the CIFS share (warning only).
    #[arg(long, env = "SHARE_AGENT_SMB_CONF")]
    pub smb_conf: Option<PathBuf>,
    /// NFS exports file checked for the export (warning only).
    #[arg(long, env = "SHARE_AGENT_NFS_EXPORTS")]
    pub nfs_exports: Option<PathBuf>,

    /// Image cache size limit in bytes.
    #[arg(long, env = "SHARE_AGENT_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<u64>,
    /// Unused cache entries older than this are removed (e.g. "7d").
    #[arg(long, env = "SHARE_AGENT_CACHE_TTL", value_parser = humantime::parse_duration)]
    pub cache_ttl: Option<Duration>,

    /// isolinux.bin for BIOS boot ISOs.
    #[arg(long, env = "SHARE_AGENT_ISOLINUX_BIN")]
    pub isolinux_bin: Option<PathBuf>,
    /// ldlinux.c32 for BIOS boot ISOs.
    #[arg(long, env = "SHARE_AGENT_LDLINUX_C32")]
    pub ldlinux_c32: Option<PathBuf>,
    /// Prebuilt GRUB BOOTX64.EFI for UEFI boot ISOs.
    #[arg(long, env = "SHARE_AGENT_GRUB_EFI")]
    pub grub_efi: Option<PathBuf>,

    /// Glance v2 endpoint, for `glance://` / UUID image references.
    #[arg(long, env = "SHARE_AGENT_GLANCE_ENDPOINT")]
    pub glance_endpoint: Option<String>,
    /// Glance token (X-Auth-Token).
    #[arg(long, env = "SHARE_AGENT_GLANCE_TOKEN", hide_env_values = true)]
    pub glance_token: Option<String>,

    /// Bound on concurrent BMC operations of this agent.
    #[arg(long, env = "SHARE_AGENT_BMC_MAX_CONCURRENT")]
    pub bmc_max_concurrent: Option<u32>,
    /// How long to wait for a node to power off before a hard power off.
    #[arg(long, env = "SHARE_AGENT_POWER_OFF_TIMEOUT", value_parser = humantime::parse_duration)]
    pub power_off_timeout: Option<Duration>,
    /// Heartbeat interval used until the coordinator says otherwise.
    #[arg(long, env = "SHARE_AGENT_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Longest wait between reconnect attempts to the coordinator.
    #[arg(long, env = "SHARE_AGENT_RECONNECT_MAX", value_parser = humantime::parse_duration)]
    pub reconnect_max: Option<Duration>,
    /// Finished job results kept for idempotent replays.
    #[arg(long, env = "SHARE_AGENT_JOB_HISTORY")]
    pub job_history: Option<usize>,
    /// Runtime threads: 0 = one per CPU core; 1 = a single-threaded runtime.
    #[arg(long, env = "SHARE_AGENT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Prometheus metrics listener (GET /metrics); off when unset. Open on loopback;
    /// elsewhere scrapes need a token from --metrics-token-file.
    #[arg(long, env = "SHARE_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer tokens scrapers present (one per line, or `<role> <token> [name]` lines).
    #[arg(long, env = "SHARE_AGENT_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// A client of the image and call-back server must send a whole request head within
    /// this time, or its connection is closed (default 10s).
    #[arg(long, env = "SHARE_AGENT_HTTP_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Option<Duration>,
    /// Most open connections to the image and call-back server (default 2048); beyond it
    /// new connections are closed at once, so that BMC sockets and share writes keep
    /// their file descriptors.
    #[arg(long, env = "SHARE_AGENT_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
}

/// The TOML file. Sections mirror the effective config; unknown keys are an
/// error naming the key, so a typo never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    agent: FileAgent,
    #[serde(default)]
    irmc: FileIrmc,
    #[serde(default)]
    cache: FileCache,
    #[serde(default)]
    bootloader: FileBootloader,
    #[serde(default)]
    glance: FileGlance,
    #[serde(default)]
    bmc: FileBmc,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAgent {
    id: Option<String>,
    coordinator: Option<String>,
    coordinator_ca_file: Option<PathBuf>,
    coordinator_cert_file: Option<PathBuf>,
    coordinator_key_file: Option<PathBuf>,
    capacity: Option<u32>,
    bmc_networks: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    http_listen: Option<SocketAddr>,
    ipa_api_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    reconnect_max: Option<Duration>,
    job_history: Option<usize>,
    worker_threads: Option<usize>,
    metrics_listen: Option<SocketAddr>,
    metrics_token_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    http_header_timeout: Option<Duration>,
    http_max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIrmc {
    remote_image_share_root: Option<PathBuf>,
    remote_image_server: Option<String>,
    remote_image_share_type: Option<String>,
    remote_image_share_name: Option<String>,
    remote_image_user_name: Option<String>,
    remote_image_user_password: Option<Secret>,
    remote_image_user_password_file: Option<PathBuf>,
    remote_image_user_domain: Option<String>,
    share_is_mount: Option<bool>,
    min_free_bytes: Option<u64>,
    smb_conf: Option<PathBuf>,
    nfs_exports: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    max_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBootloader {
    isolinux_bin: Option<PathBuf>,
    ldlinux_c32: Option<PathBuf>,
    grub_efi: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGlance {
    endpoint: Option<String>,
    token: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBmc {
    max_concurrent: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    power_off_timeout: Option<Duration>,
}

/// The share this agent serves (Ironic's `[irmc] remote_image_*`).
#[derive(Debug, Clone, Serialize)]
pub struct ShareConfig {
    /// Directory exported by the NFS/CIFS server (on this host).
    pub remote_image_share_root: PathBuf,
    /// Address the iRMCs use to reach the share server.
    pub remote_image_server: String,
    /// CIFS or NFS.
    pub remote_image_share_type: ShareType,
    /// CIFS share name or NFS export path.
    pub remote_image_share_name: String,
    /// Share user (CIFS).
    pub remote_image_user_name: String,
    /// Share password (CIFS); never printed.
    pub remote_image_user_password: Secret,
    /// Share user domain (CIFS).
    pub remote_image_user_domain: String,
    /// Refuse to start unless the share root is a mount point.
    pub share_is_mount: bool,
    /// Bytes kept free on the share.
    pub min_free_bytes: u64,
    /// Samba config checked at start (warning only).
    pub smb_conf: PathBuf,
    /// NFS exports file checked at start (warning only).
    pub nfs_exports: PathBuf,
}

/// Image cache limits.
#[derive(Debug, Clone, Serialize)]
pub struct CacheSettings {
    /// Size limit of the cache directory.
    pub max_bytes: u64,
    /// Unused entries older than this go first.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

/// Boot loader files for boot ISOs built on this agent.
#[derive(Debug, Clone, Serialize)]
pub struct BootloaderSettings {
    /// isolinux.bin (BIOS).
    pub isolinux_bin: PathBuf,
    /// ldlinux.c32 (BIOS).
    pub ldlinux_c32: PathBuf,
    /// Prebuilt BOOTX64.EFI (UEFI); none = build with grub-mkstandalone.
    pub grub_efi: Option<PathBuf>,
}

/// Glance v2 access.
#[derive(Debug, Clone, Serialize)]
pub struct GlanceSettings {
    /// Image API endpoint.
    pub endpoint: String,
    /// X-Auth-Token; never printed.
    pub token: Secret,
}

/// TLS settings of the coordinator link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CoordinatorTls {
    /// CA bundle; none = the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mTLS.
    pub cert_file: Option<PathBuf>,
    /// Its key (never printed: only the path is).
    pub key_file: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Stable agent name.
    pub agent_id: String,
    /// Coordinator gRPC endpoint(s), comma separated for several replicas.
    pub coordinator: String,
    /// TLS towards the coordinator (used with an https endpoint).
    pub coordinator_tls: CoordinatorTls,
    /// Concurrent virtual-media boots this share can feed.
    pub capacity: u32,
    /// CIDRs of reachable iRMCs; empty = all.
    pub bmc_networks: Vec<IpNet>,
    /// Free-form labels (rack, zone...).
    pub labels: BTreeMap<String, String>,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Callback URL advertised to ramdisks (`ipa-api-url`), also the image URL base.
    pub ipa_api_url: String,
    /// The share.
    pub share: ShareConfig,
    /// Cache limits.
    pub cache: CacheSettings,
    /// Boot loaders.
    pub bootloader: BootloaderSettings,
    /// Glance, when configured.
    pub glance: Option<GlanceSettings>,
    /// Bound on concurrent BMC operations.
    pub bmc_max_concurrent: u32,
    /// Wait for a soft power-off before forcing it.
    #[serde(with = "humantime_serde")]
    pub power_off_timeout: Duration,
    /// Heartbeat interval until the coordinator sets one.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Longest reconnect backoff.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Finished job results kept for idempotent replays.
    pub job_history: usize,
    /// Runtime threads (0: one per core). With 1 the agent runs on a single-threaded
    /// runtime: no hand-offs between worker threads, which is cheaper where many agents
    /// share a few cores (a test bed) or the share server is small.
    pub worker_threads: usize,
    /// Prometheus metrics listener; none = off. Open on loopback, else token-protected.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer tokens for a metrics listener off loopback (required there).
    pub metrics_token_file: Option<PathBuf>,
    /// Time a client has to send a whole request head.
    #[serde(with = "humantime_serde")]
    pub http_header_timeout: Duration,
    /// Most open connections to the HTTP server.
    pub http_max_connections: usize,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "share-agent".to_string())
}

fn read_password_file(path: &Path) -> Result<Secret, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AgentError::config(
            "remote_image_user_password_file",
            format!("cannot read '{}': {e}", path.display()),
        )
    })?;
    Ok(Secret::new(
        text.lines().next().unwrap_or_default().to_string(),
    ))
}

impl Config {
    /// Builds the effective configuration from the command line (which may name a file).
    pub fn load(cli: &Cli) -> Result<Self, AgentError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AgentError::config("config", format!("cannot read '{}': {e}", path.display()))
                })?;
                Self::parse_file(&text)?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Parses a TOML file with defaults for everything not in it (for tests and tools).
    pub fn from_toml(text: &str) -> Result<Self, AgentError> {
        Self::merge(&Cli::default(), Self::parse_file(text)?)
    }

    fn parse_file(text: &str) -> Result<FileConfig, AgentError> {
        // toml's message names the offending key and line; keep it on one line.
        toml::from_str(text)
            .map_err(|e| AgentError::config("config", e.to_string().replace('\n', " ")))
    }

    fn merge(cli: &Cli, f: FileConfig) -> Result<Self, AgentError> {
        let c = cli;
        let share_type = match c
            .remote_image_share_type
            .clone()
            .or(f.irmc.remote_image_share_type)
        {
            Some(s) => ShareType::parse(&s)?,
            None => ShareType::Cifs,
        };
        let password = if let Some(p) = &c.remote_image_user_password {
            Secret::new(p.clone())
        } else if let Some(path) = &c.remote_image_user_password_file {
            read_password_file(path)?
        } else if let Some(p) = f.irmc.remote_image_user_password {
            p
        } else if let Some(path) = &f.irmc.remote_image_user_password_file {
            read_password_file(path)?
        } else {
            Secret::default()
        };
        let nets: Vec<String> = c
            .bmc_networks
            .clone()
            .or(f.agent.bmc_networks)
            .unwrap_or_default();
        let mut bmc_networks = Vec::with_capacity(nets.len());
        for n in nets.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let net: IpNet = n.parse().map_err(|_| {
                AgentError::config(
                    "bmc_networks",
                    format!("{n:?} is not a CIDR (e.g. 10.1.0.0/16)"),
                )
            })?;
            bmc_networks.push(net);
        }
        let mut labels = f.agent.labels.unwrap_or_default();
        for kv in c.labels.iter().flatten().filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| AgentError::config("labels", format!("{kv:?} is not key=value")))?;
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let http_listen = c
            .http_listen
            .or(f.agent.http_listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 6385)));
        let ipa_api_url = c
            .ipa_api_url
            .clone()
            .or(f.agent.ipa_api_url)
            .unwrap_or_else(|| format!("http://{http_listen}"))
            .trim_end_matches('/')
            .to_string();
        if !(ipa_api_url.starts_with("http://") || ipa_api_url.starts_with("https://")) {
            return Err(AgentError::config(
                "ipa_api_url",
                format!("{ipa_api_url:?} must be an http:// or https:// URL"),
            ));
        }
        let coordinator = c
            .coordinator
            .clone()
            .or(f.agent.coordinator)
            .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
        let coordinator = if coordinator.contains("://") {
            coordinator
        } else {
            format!("http://{coordinator}")
        };
        let coordinator_tls = CoordinatorTls {
            ca_file: c
                .coordinator_ca_file
                .clone()
                .or(f.agent.coordinator_ca_file),
            cert_file: c
                .coordinator_cert_file
                .clone()
                .or(f.agent.coordinator_cert_file),
            key_file: c
                .coordinator_key_file
                .clone()
                .or(f.agent.coordinator_key_file),
        };
        if coordinator_tls.cert_file.is_some() != coordinator_tls.key_file.is_some() {
            return Err(AgentError::config(
                "coordinator_cert_file",
                "coordinator_cert_file and coordinator_key_file go together",
            ));
        }
        let capacity = c.capacity.or(f.agent.capacity).unwrap_or(32);
        if capacity == 0 {
            return Err(AgentError::config("capacity", "must be at least 1"));
        }
        let bmc_max_concurrent = c.bmc_max_concurrent.or(f.bmc.max_concurrent).unwrap_or(64);
        if bmc_max_concurrent == 0 {
            return Err(AgentError::config(
                "bmc_max_concurrent",
                "must be at least 1",
            ));
        }
        let server = c
            .remote_image_server
            .clone()
            .or(f.irmc.remote_image_server)
            .unwrap_or_default();
        if server.is_empty() {
            return Err(AgentError::config(
                "remote_image_server",
                "is required (the address the iRMCs use to reach this share)",
            ));
        }
        let metrics_listen = c.metrics_listen.or(f.agent.metrics_listen);
        let metrics_token_file = c.metrics_token_file.clone().or(f.agent.metrics_token_file);
        if let Some(listen) = metrics_listen
            && metrics_token_file.is_none()
            && let Err(e) = metrics_endpoint::gate_for(listen, None, "metrics_token_file")
        {
            return Err(AgentError::config(
                "metrics_listen",
                e.trim_start_matches("metrics_listen: ").to_string(),
            ));
        }
        let glance_endpoint = c.glance_endpoint.clone().or(f.glance.endpoint);
        let glance_token = c
            .glance_token
            .clone()
            .map(Secret::new)
            .or(f.glance.token)
            .unwrap_or_default();
        Ok(Self {
            agent_id: c.agent_id.clone().or(f.agent.id).unwrap_or_else(host_name),
            coordinator,
            coordinator_tls,
            capacity,
            bmc_networks,
            labels,
            http_listen,
            ipa_api_url,
            share: ShareConfig {
                remote_image_share_root: c
                    .remote_image_share_root
                    .clone()
                    .or(f.irmc.remote_image_share_root)
                    .unwrap_or_else(|| PathBuf::from("/remote_image_share_root")),
                remote_image_server: server,
                remote_image_share_type: share_type,
                remote_image_share_name: c
                    .remote_image_share_name
                    .clone()
                    .or(f.irmc.remote_image_share_name)
                    .unwrap_or_else(|| "share".to_string()),
                remote_image_user_name: c
                    .remote_image_user_name
                    .clone()
                    .or(f.irmc.remote_image_user_name)
                    .unwrap_or_default(),
                remote_image_user_password: password,
                remote_image_user_domain: c
                    .remote_image_user_domain
                    .clone()
                    .or(f.irmc.remote_image_user_domain)
                    .unwrap_or_default(),
                share_is_mount: c.share_is_mount.or(f.irmc.share_is_mount).unwrap_or(false),
                min_free_bytes: c.min_free_bytes.or(f.irmc.min_free_bytes).unwrap_or(0),
                smb_conf: c
                    .smb_conf
                    .clone()
                    .or(f.irmc.smb_conf)
                    .unwrap_or_else(|| PathBuf::from("/etc/samba/smb.conf")),
                nfs_exports: c
                    .nfs_exports
                    .clone()
                    .or(f.irmc.nfs_exports)
                    .unwrap_or_else(|| PathBuf::from("/etc/exports")),
            },
            cache: CacheSettings {
                max_bytes: c
                    .cache_max_bytes
                    .or(f.cache.max_bytes)
                    .unwrap_or(100 * 1024 * 1024 * 1024),
                ttl: c
                    .cache_ttl
                    .or(f.cache.ttl)
                    .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
            },
            bootloader: BootloaderSettings {
                isolinux_bin: c
                    .isolinux_bin
                    .clone()
                    .or(f.bootloader.isolinux_bin)
                    .unwrap_or_else(|| PathBuf::from("/usr/lib/ISOLINUX/isolinux.bin")),
                ldlinux_c32: c
                    .ldlinux_c32
                    .clone()
                    .or(f.bootloader.ldlinux_c32)
                    .unwrap_or_else(|| PathBuf::from("/usr/lib/syslinux/modules/bios/ldlinux.c32")),
                grub_efi: c.grub_efi.clone().or(f.bootloader.grub_efi),
            },
            glance: glance_endpoint.map(|endpoint| GlanceSettings {
                endpoint,
                token: glance_token,
            }),
            bmc_max_concurrent,
            power_off_timeout: c
                .power_off_timeout
                .or(f.bmc.power_off_timeout)
                .unwrap_or(Duration::from_secs(30)),
            heartbeat_interval: c
                .heartbeat_interval
                .or(f.agent.heartbeat_interval)
                .unwrap_or(Duration::from_secs(10)),
            reconnect_max: c
                .reconnect_max
                .or(f.agent.reconnect_max)
                .unwrap_or(Duration::from_secs(30)),
            job_history: c.job_history.or(f.agent.job_history).unwrap_or(10_000),
            worker_threads: c.worker_threads.or(f.agent.worker_threads).unwrap_or(0),
            metrics_listen,
            metrics_token_file,
            http_header_timeout: c
                .http_header_timeout
                .or(f.agent.http_header_timeout)
                .unwrap_or(Duration::from_secs(10)),
            http_max_connections: c
                .http_max_connections
                .or(f.agent.http_max_connections)
                .unwrap_or(2048)
                .max(1),
        })
    }

    /// The effective configuration as TOML-ish JSON with secrets redacted, for the start-up log.
    pub fn redacted(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<unprintable config: {e}>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[agent]
id = "share-07"
coordinator = "10.0.0.1:50051"
capacity = 8
bmc_networks = ["10.1.0.0/16"]
labels = { rack = "r12" }
http_listen = "127.0.0.1:7000"

[irmc]
remote_image_share_root = "/srv/share"
remote_image_server = "10.0.0.5"
remote_image_share_type = "nfs"
remote_image_user_password = "s3cr&t"

[cache]
ttl = "2h"
"#;

    #[test]
    fn file_values_and_defaults() {
        let c = Config::from_toml(FILE).unwrap();
        assert_eq!(c.agent_id, "share-07");
        assert_eq!(c.coordinator, "http://10.0.0.1:50051");
        assert_eq!(c.capacity, 8);
        assert_eq!(c.share.remote_image_share_type, ShareType::Nfs);
        assert_eq!(c.share.remote_image_share_name, "share");
        assert_eq!(c.ipa_api_url, "http://127.0.0.1:7000");
        assert_eq!(c.cache.ttl, Duration::from_secs(7200));
        assert_eq!(c.labels["rack"], "r12");
        let shown = c.redacted();
        assert!(!shown.contains("s3cr&t"), "{shown}");
        assert!(shown.contains("******"));
        assert!(!format!("{c:?}").contains("s3cr&t"));
    }

    #[test]
    fn shipped_example_config_parses() {
        let f = Config::parse_file(include_str!("../../../deploy/share-agent.toml")).unwrap();
        assert_eq!(f.irmc.remote_image_share_name.as_deref(), Some("share"));
        assert_eq!(f.bmc.power_off_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn flags_override_file() {
        let cli = Cli::parse_from([
            "share-agent",
            "--capacity",
            "3",
            "--remote-image-share-type",
            "CIFS",
            "--labels",
            "zone=z1,rack=r1",
        ]);
        let c = Config::merge(&cli, Config::parse_file(FILE).unwrap()).unwrap();
        assert_eq!(c.capacity, 3);
        assert_eq!(c.share.remote_image_share_type, ShareType::Cifs);
        assert_eq!(c.labels["rack"], "r1");
        assert_eq!(c.labels["zone"], "z1");
    }

    #[test]
    fn errors_name_the_option() {
        let e =
            Config::from_toml("[irmc]\nremote_image_server='x'\nremote_image_share_type='SMB3'")
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("remote_image_share_type:"), "{e}");
        let e = Config::from_toml("[irmc]\nremote_image_sever='x'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("remote_image_sever"), "{e}");
        let e = Config::from_toml("").unwrap_err().to_string();
        assert!(e.starts_with("remote_image_server:"), "{e}");
        let e = Config::from_toml(
            "[agent]\nbmc_networks=['10.0.0.0/33']\n[irmc]\nremote_image_server='x'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("bmc_networks:"), "{e}");
        let e = Config::from_toml(
            "[agent]\nmetrics_listen='0.0.0.0:9465'\n[irmc]\nremote_image_server='x'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("metrics_listen:"), "{e}");
        assert!(e.contains("metrics_token_file"), "{e}");
        let c = Config::from_toml(
            "[agent]\nmetrics_listen='127.0.0.1:9465'\n[irmc]\nremote_image_server='x'",
        )
        .unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9465".parse().unwrap()));
    }
}
