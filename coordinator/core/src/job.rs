//! Jobs: the work the coordinator asks a share agent to do ([`JobSpec`]), how the agent
//! reaches the node's BMC ([`BmcTarget`]), and what comes back ([`JobResult`]). Job ids
//! are derived, not drawn, so the state machine stays pure.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::mix::mix64;
use crate::node::{JobKind, NodeSpec, NodeStatus};
use crate::secret::Secret;
use crate::{CoreError, MachineConfig, PowerState};

/// HTTP authentication scheme of the BMC (`irmc_auth_method`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    #[default]
    Basic,
    Digest,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Digest => "digest",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = ();
    /// Exactly `basic` or `digest`, as validation accepts them.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "basic" => Ok(Self::Basic),
            "digest" => Ok(Self::Digest),
            _ => Err(()),
        }
    }
}

/// How power state and the boot device are done (`irmc_transport`): Redfish, IPMI over
/// LAN, or `auto` (the agent probes once per BMC and keeps what answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BmcTransport {
    Redfish,
    Ipmi,
    #[default]
    Auto,
}

impl BmcTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redfish => "redfish",
            Self::Ipmi => "ipmi",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for BmcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BmcTransport {
    type Err = ();
    /// Exactly `redfish`, `ipmi` or `auto`, as validation accepts them.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "redfish" => Ok(Self::Redfish),
            "ipmi" => Ok(Self::Ipmi),
            "auto" => Ok(Self::Auto),
            _ => Err(()),
        }
    }
}

/// How the agent verifies the BMC's TLS certificate (`irmc_verify_ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum TlsVerify {
    /// Against the agent's system trust store (the default; `irmc_verify_ca=true`).
    #[default]
    System,
    /// Against the CA bundle at this absolute path on the agent's host.
    CaFile(String),
    /// Not at all (an explicit opt-out: `irmc_verify_ca=false`).
    Insecure,
}

/// A power action on the node, as the agent's power job takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerAction {
    On,
    Off,
    /// Ironic's reboot: reset a running node, power on a stopped one.
    Reboot,
    Reset,
    Cycle,
    SoftOff,
    SoftReboot,
    Nmi,
    /// Only read the power state.
    Status,
}

impl PowerAction {
    pub const ALL: [PowerAction; 9] = [
        Self::On,
        Self::Off,
        Self::Reboot,
        Self::Reset,
        Self::Cycle,
        Self::SoftOff,
        Self::SoftReboot,
        Self::Nmi,
        Self::Status,
    ];

    /// The agent's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Reboot => "reboot",
            Self::Reset => "reset",
            Self::Cycle => "cycle",
            Self::SoftOff => "soft-off",
            Self::SoftReboot => "soft-reboot",
            Self::Nmi => "nmi",
            Self::Status => "status",
        }
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of a job, as the agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobResult {
    pub ok: bool,
    /// Agent's error text (it names the node, the BMC and the operation).
    pub error: Option<String>,
    pub retryable: bool,
    pub output: JobOutputs,
}

/// Facts a job learned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOutputs {
    pub power_state: Option<PowerState>,
    pub root_uuid: Option<String>,
    pub bmc_model: Option<String>,
    pub bmc_firmware: Option<String>,
    pub bmc_has_virtual_fd: Option<bool>,
    /// The BMC validation's one line (read BMC info): generation, firmware, media path.
    pub bmc_check: Option<String>,
}

/// How to reach the node's BMC (from driver_info, defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmcTarget {
    pub address: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub auth_method: AuthMethod,
    pub client_timeout_s: u32,
    pub verify_ca: TlsVerify,
    pub transport: BmcTransport,
}

/// The work a job does. Mirrors the proto `Job.kind` oneof; the server converts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSpec {
    PrepareRamdisk {
        deploy_iso: String,
        deploy_kernel: String,
        deploy_ramdisk: String,
        boot_mode: String,
        agent_token: Secret,
        bootif: String,
        kernel_append_params: String,
    },
    WriteImage {
        callback_url: String,
        agent_token: Secret,
        image_source: String,
        image_checksum: String,
        os_hash_algo: String,
        os_hash_value: String,
        disk_format: String,
        boot_mode: String,
        image_type: String,
        timeout_s: u32,
    },
    PrepareInstance {
        callback_url: String,
        agent_token: Secret,
        boot_iso: String,
        boot_mode: String,
        power_on: bool,
    },
    CleanUp {
        power_off: bool,
    },
    Power {
        action: PowerAction,
    },
    BmcInfo,
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::PrepareRamdisk { .. } => JobKind::PrepareRamdisk,
            Self::WriteImage { .. } => JobKind::WriteImage,
            Self::PrepareInstance { .. } => JobKind::PrepareInstance,
            Self::CleanUp { .. } => JobKind::CleanUp,
            Self::Power { .. } => JobKind::Power,
            Self::BmcInfo => JobKind::BmcInfo,
        }
    }
}

/// BMC connection facts from driver_info, defaults applied (port 443, basic auth,
/// 60 s client timeout, verify TLS).
pub fn bmc_target(spec: &NodeSpec) -> Result<BmcTarget, CoreError> {
    let di = &spec.driver_info;
    let req = |k: &str| {
        di.get(k)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| CoreError::invalid(format!("driver_info.{k}"), "required"))
    };
    let port = match di.get("irmc_port").map(String::as_str) {
        None | Some("443") => 443,
        Some("80") => 80,
        Some(p) => {
            return Err(CoreError::invalid(
                "driver_info.irmc_port",
                format!("must be 443 or 80, got {p:?}"),
            ));
        }
    };
    let client_timeout_s = match di.get("irmc_client_timeout") {
        None => 60,
        Some(t) => t.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            CoreError::invalid(
                "driver_info.irmc_client_timeout",
                format!("must be a positive integer (seconds), got {t:?}"),
            )
        })?,
    };
    let verify_ca = match di.get("irmc_verify_ca") {
        None => TlsVerify::System,
        Some(v) => match crate::validate::parse_bool(v) {
            Some(true) => TlsVerify::System,
            Some(false) => TlsVerify::Insecure,
            None => TlsVerify::CaFile(v.clone()),
        },
    };
    Ok(BmcTarget {
        address: req("irmc_address")?,
        port,
        username: req("irmc_username")?,
        password: Secret::new(req("irmc_password")?),
        auth_method: match di.get("irmc_auth_method") {
            None => AuthMethod::Basic,
            Some(m) => m.parse().map_err(|()| {
                CoreError::invalid(
                    "driver_info.irmc_auth_method",
                    format!("must be basic or digest, got {m:?}"),
                )
            })?,
        },
        client_timeout_s,
        verify_ca,
        transport: match di.get("irmc_transport") {
            None => BmcTransport::Auto,
            Some(t) => t.parse().map_err(|()| {
                CoreError::invalid(
                    "driver_info.irmc_transport",
                    format!("must be redfish, ipmi or auto, got {t:?}"),
                )
            })?,
        },
    })
}

/// A fresh, reproducible job id: a 128-bit mix of (node uuid, node creation time,
/// per-node job counter), stamped as an RFC 9562 version-8 ("custom") UUID. Mixing
/// in the creation time keeps ids distinct when a node is deleted and re-created
/// with the same uuid while an agent still remembers the old ids.
pub(crate) fn job_uuid(node: Uuid, created_at_ms: i64, seq: u64) -> Uuid {
    let (hi, lo) = node.as_u64_pair();
    let a = mix64(hi ^ mix64(lo ^ mix64(seq ^ mix64(created_at_ms as u64))));
    let b = mix64(a ^ 0x9e37_79b9_7f4a_7c15 ^ seq.rotate_left(32));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

pub(crate) fn build_job(
    kind: JobKind,
    spec: &NodeSpec,
    s: &NodeStatus,
    cfg: &MachineConfig,
) -> JobSpec {
    let di = |k: &str| spec.driver_info.get(k).cloned().unwrap_or_default();
    let ii = |k: &str| spec.instance_info.get(k).cloned().unwrap_or_default();
    let token = s.agent_token.clone().unwrap_or_default();
    let callback_url = s.callback_url.clone().unwrap_or_default();
    let boot_mode = crate::validate::boot_mode(spec).to_string();
    match kind {
        JobKind::PrepareRamdisk => JobSpec::PrepareRamdisk {
            deploy_iso: crate::validate::deploy_iso(spec)
                .unwrap_or_default()
                .to_string(),
            deploy_kernel: di("deploy_kernel"),
            deploy_ramdisk: di("deploy_ramdisk"),
            boot_mode,
            agent_token: token,
            bootif: spec.macs.first().cloned().unwrap_or_default(),
            kernel_append_params: spec
                .driver_info
                .get("kernel_append_params")
                .cloned()
                .unwrap_or_else(|| ii("kernel_append_params")),
        },
        JobKind::WriteImage => JobSpec::WriteImage {
            callback_url,
            agent_token: token,
            image_source: ii("image_source"),
            image_checksum: ii("image_checksum"),
            os_hash_algo: ii("os_hash_algo"),
            os_hash_value: ii("os_hash_value"),
            disk_format: ii("image_disk_format"),
            boot_mode,
            // Ironic: a kernel + ramdisk pair means a partition image.
            image_type: if spec.instance_info.contains_key("kernel")
                && spec.instance_info.contains_key("ramdisk")
            {
                "partition".to_string()
            } else {
                "whole-disk".to_string()
            },
            timeout_s: u32::try_from(cfg.job_timeout_ms / 1000).unwrap_or(u32::MAX),
        },
        JobKind::PrepareInstance => JobSpec::PrepareInstance {
            callback_url,
            agent_token: token,
            boot_iso: crate::validate::boot_iso(spec)
                .unwrap_or_default()
                .to_string(),
            boot_mode,
            power_on: true,
        },
        JobKind::CleanUp => JobSpec::CleanUp { power_off: true },
        JobKind::Power => JobSpec::Power {
            action: PowerAction::Status,
        },
        JobKind::BmcInfo => JobSpec::BmcInfo,
    }
}
