//! Jobs: the work the coordinator asks a share agent to do ([`JobSpec`]), how the agent
//! reaches the node's BMC ([`BmcTarget`]), and what comes back ([`JobResult`]). Job ids
//! are derived, not drawn, so the state machine stays pure.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::machine::JobIdKey;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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

    /// The operator verbs (`vmedia node power <verb>`), in the CLI's order.
    pub const VERBS: [PowerAction; 6] = [
        Self::On,
        Self::Off,
        Self::Reboot,
        Self::SoftOff,
        Self::SoftReboot,
        Self::Nmi,
    ];

    /// Ironic's name for the target of this action (`PUT /v1/nodes/{node}/states/power`):
    /// `power on`, `power off`, `rebooting`, `soft power off`, `soft rebooting`,
    /// `inject nmi`. The actions Ironic has no target for keep the agent's spelling.
    pub fn ironic_name(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::Reboot => "rebooting",
            Self::SoftOff => "soft power off",
            Self::SoftReboot => "soft rebooting",
            Self::Nmi => "inject nmi",
            other => other.as_str(),
        }
    }

    /// An operator's power verb, by Ironic's target name or the CLI's short name
    /// (`on`, `off`, `reboot`, `soft-off`, `soft-reboot`, `nmi`). `status` and the
    /// agent-internal actions are not verbs.
    pub fn parse_verb(s: &str) -> Result<Self, CoreError> {
        let t = s.trim();
        Self::VERBS
            .into_iter()
            .find(|a| a.ironic_name() == t || a.as_str() == t)
            .ok_or_else(|| {
                CoreError::invalid(
                    "target",
                    format!(
                        "unknown power target {t:?}; expected one of \"power on\", \"power off\", \"rebooting\", \"soft power off\", \"soft rebooting\", \"inject nmi\""
                    ),
                )
            })
    }

    /// The power state the node should be in once the action is done (`None` for NMI).
    pub fn expected_state(self) -> Option<PowerState> {
        match self {
            Self::On | Self::Reboot | Self::Reset | Self::Cycle | Self::SoftReboot => {
                Some(PowerState::On)
            }
            Self::Off | Self::SoftOff => Some(PowerState::Off),
            Self::Nmi | Self::Status => None,
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

/// What out-of-band inspection found, with Ironic's names: `properties` holds
/// `cpus`, `cpu_arch`, `memory_mb`, `local_gb` and `capabilities` (and the firmware
/// versions inside it); `macs` the NICs' MACs, lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    pub properties: std::collections::BTreeMap<String, String>,
    pub macs: Vec<String>,
}

/// Facts a job learned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobOutputs {
    /// Set by an inspect job.
    pub inventory: Option<Inventory>,
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
        /// `instance_info.image_disk_format`; empty lets the ramdisk detect it.
        disk_format: String,
        boot_mode: String,
        image_type: String,
        timeout_s: u32,
        /// `instance_info.configdrive` as given (URL, gzip+base64 ISO or JSON text);
        /// it may hold secrets (user data), so it is never printed.
        configdrive: Secret,
        /// The node's name, the config drive's default `meta_data.name`.
        node_name: String,
        /// `instance_info.image_container_format`; empty when unset.
        container_format: String,
        /// Set for a partition image: what the ramdisk creates on the disk.
        partition: Option<crate::PartitionLayout>,
    },
    PrepareInstance {
        callback_url: String,
        agent_token: Secret,
        boot_iso: String,
        boot_mode: String,
        power_on: bool,
        /// `local` or `netboot` ([`boot_option`]).
        boot_option: String,
        /// For a netboot partition image: `instance_info.kernel` and `.ramdisk`.
        kernel: String,
        ramdisk: String,
        kernel_append_params: String,
    },
    CleanUp {
        power_off: bool,
    },
    Power {
        action: PowerAction,
    },
    BmcInfo,
    /// Out-of-band inspection: report.xml (and Redfish where the BMC has it).
    Inspect,
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
            Self::Inspect => JobKind::Inspect,
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

/// A job id: the first 128 bits of SHA-256 over (the coordinator's job-id key, node uuid,
/// node creation time, per-node job counter), stamped as an RFC 9562 version-8
/// ("custom") UUID. Without the key nobody can compute a node's job ids from what they
/// can see; with the same key the id is reproducible (the machine's tests). Mixing in
/// the creation time keeps ids distinct when a node is deleted and re-created with the
/// same uuid while an agent still remembers the old ids.
pub(crate) fn job_uuid(key: &JobIdKey, node: Uuid, created_at_ms: i64, seq: u64) -> Uuid {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(key.0);
    h.update(node.as_bytes());
    h.update(created_at_ms.to_be_bytes());
    h.update(seq.to_be_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
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
            os_hash_algo: crate::validate::os_hash(&spec.instance_info)
                .map(|(a, _)| a.to_string())
                .unwrap_or_default(),
            os_hash_value: crate::validate::os_hash(&spec.instance_info)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default(),
            disk_format: ii("image_disk_format"),
            boot_mode,
            // Ironic: `image_type`, else a kernel or a ramdisk means a partition image.
            image_type: crate::validate::image_type(spec).to_string(),
            timeout_s: u32::try_from(cfg.job_timeout_ms / 1000).unwrap_or(u32::MAX),
            configdrive: Secret::new(ii("configdrive")),
            node_name: spec.name.clone().unwrap_or_default(),
            container_format: ii("image_container_format"),
            // Validation at create and update keeps the stored layout well formed; the
            // agent refuses a partition image that arrives without one.
            partition: crate::validate::partition_layout(spec, false)
                .ok()
                .flatten(),
        },
        JobKind::PrepareInstance => JobSpec::PrepareInstance {
            callback_url,
            agent_token: token,
            boot_iso: crate::validate::boot_iso(spec)
                .unwrap_or_default()
                .to_string(),
            boot_mode,
            power_on: true,
            boot_option: boot_option(spec).to_string(),
            kernel: ii("kernel"),
            ramdisk: ii("ramdisk"),
            kernel_append_params: spec
                .driver_info
                .get("kernel_append_params")
                .cloned()
                .unwrap_or_else(|| ii("kernel_append_params")),
        },
        JobKind::CleanUp => JobSpec::CleanUp { power_off: true },
        JobKind::Power => JobSpec::Power {
            action: s.target_power_state.unwrap_or(PowerAction::Status),
        },
        JobKind::BmcInfo => JobSpec::BmcInfo,
        JobKind::Inspect => JobSpec::Inspect,
    }
}

/// Writes an inspection's findings into the spec as Ironic's inspection does: each
/// property replaces the one of the same name, except `capabilities`, whose
/// `key:value` pairs are merged into the existing ones (Ironic's
/// `get_updated_capabilities`); every MAC not yet a port becomes one (normalised).
pub fn merge_inventory(spec: &mut NodeSpec, inv: &Inventory) {
    for (k, v) in &inv.properties {
        if k == "capabilities" {
            let merged =
                merge_capabilities(spec.properties.get(k).map(String::as_str).unwrap_or(""), v);
            spec.properties.insert(k.clone(), merged);
        } else {
            spec.properties.insert(k.clone(), v.clone());
        }
    }
    for mac in &inv.macs {
        let Some(octets) = crate::validate::parse_mac(mac) else {
            continue;
        };
        let mac = crate::validate::format_mac_pub(octets);
        if !spec.macs.iter().any(|m| m.eq_ignore_ascii_case(&mac)) {
            spec.macs.push(mac);
        }
    }
}

/// `a:1,b:2` updated with `b:3,c:4` gives `a:1,b:3,c:4` (order of first appearance).
pub fn merge_capabilities(old: &str, new: &str) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for item in old.split(',').chain(new.split(',')) {
        let Some((k, v)) = item.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            continue;
        }
        match pairs.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v.to_string(),
            None => pairs.push((k.to_string(), v.to_string())),
        }
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod job_id_tests {
    use super::{JobIdKey, job_uuid};
    use uuid::Uuid;

    #[test]
    fn job_ids_depend_on_the_key() {
        let node = Uuid::from_u128(0x1234);
        let a = JobIdKey([1; 32]);
        let b = JobIdKey([2; 32]);
        assert_eq!(job_uuid(&a, node, 5, 1), job_uuid(&a, node, 5, 1));
        assert_ne!(job_uuid(&a, node, 5, 1), job_uuid(&b, node, 5, 1));
        assert_ne!(job_uuid(&a, node, 5, 1), job_uuid(&a, node, 5, 2));
        assert_ne!(job_uuid(&a, node, 5, 1), job_uuid(&a, node, 6, 1));
        assert_eq!(job_uuid(&a, node, 5, 1).get_version_num(), 8);
        assert_eq!(format!("{a:?}"), "JobIdKey(******)");
    }
}

/// How the deployed instance boots: `netboot` (from a boot ISO with the partition
/// image's kernel and ramdisk) or `local` (from its disk). Read as Ironic's drivers
/// read it before netboot was dropped from the direct deploy: `boot_option` in
/// `instance_info.capabilities` (a JSON object, or `key:value,...` text), else
/// `instance_info.boot_option`; `netboot` counts only for a partition image (one with
/// `kernel` and `ramdisk`), a whole-disk image always boots locally.
pub fn boot_option(spec: &NodeSpec) -> &'static str {
    let ii = &spec.instance_info;
    if !(ii.contains_key("kernel") && ii.contains_key("ramdisk")) {
        return "local";
    }
    let from_caps = ii
        .get("capabilities")
        .and_then(|c| capability(c, "boot_option"));
    let value = from_caps.or_else(|| ii.get("boot_option").map(|s| s.trim().to_string()));
    if value.as_deref() == Some("netboot") {
        "netboot"
    } else {
        "local"
    }
}

/// One key of a capabilities value: `{"k": "v"}` JSON, or `k:v,k2:v2` text.
fn capability(caps: &str, key: &str) -> Option<String> {
    let caps = caps.trim();
    if caps.starts_with('{') {
        // A JSON object of strings, without a JSON parser in this pure crate: only the
        // flat `"key": "value"` shape Ironic stores is accepted.
        let inner = caps.trim_start_matches('{').trim_end_matches('}');
        return inner.split(',').find_map(|pair| {
            let (k, v) = pair.split_once(':')?;
            (k.trim().trim_matches('"') == key).then(|| v.trim().trim_matches('"').to_string())
        });
    }
    caps.split(',').find_map(|pair| {
        let (k, v) = pair.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> NodeSpec {
        let mut s = NodeSpec::new(Uuid::nil());
        for (k, v) in pairs {
            s.instance_info.insert((*k).into(), (*v).into());
        }
        s
    }

    #[test]
    fn boot_option_is_read_as_ironic_reads_capabilities() {
        let part = [("kernel", "k"), ("ramdisk", "r")];
        let with = |extra: (&str, &str)| {
            let mut p = part.to_vec();
            p.push(extra);
            boot_option(&spec(&p))
        };
        assert_eq!(boot_option(&spec(&part)), "local");
        assert_eq!(
            with(("capabilities", r#"{"boot_option": "netboot"}"#)),
            "netboot"
        );
        assert_eq!(
            with(("capabilities", "boot_mode:uefi,boot_option:netboot")),
            "netboot"
        );
        assert_eq!(
            with(("capabilities", r#"{"boot_option": "local"}"#)),
            "local"
        );
        assert_eq!(with(("boot_option", "netboot")), "netboot");
        // A whole-disk image boots from its disk whatever the option says.
        assert_eq!(
            boot_option(&spec(&[("capabilities", "boot_option:netboot")])),
            "local"
        );
    }

    #[test]
    fn configdrive_is_carried_and_never_printed() {
        let mut s = spec(&[("configdrive", r#"{"user_data": "password: hunter2"}"#)]);
        s.name = Some("n1".into());
        let job = build_job(
            JobKind::WriteImage,
            &s,
            &NodeStatus::new(0),
            &MachineConfig::default(),
        );
        let JobSpec::WriteImage {
            configdrive,
            node_name,
            ..
        } = &job
        else {
            panic!("not a write-image job");
        };
        assert!(configdrive.expose().contains("hunter2"));
        assert_eq!(node_name, "n1");
        assert!(!format!("{job:?}").contains("hunter2"));
    }
}
