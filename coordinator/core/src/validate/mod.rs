//! Input validation with Ironic's field names; every error names the field, e.g.
//! `driver_info.irmc_port: must be 443 or 80, got "8443"`.
//!
//! By what is checked: `bmc.rs` the BMC settings of driver_info; `media.rs` images, the
//! instance and the boot mode (and where they come from: aliases, capabilities);
//! `layout.rs` the image type and a partition image's disk layout;
//! `identity.rs` the node's name and MACs; `limits.rs` sizes, counts and look-alike sealed
//! values. This file holds the entry points and the
//! secret-key rule.

mod bmc;
mod identity;
mod layout;
mod limits;
mod media;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::node::{Node, NodeSpec};
use crate::{CoreError, MASK};

pub(crate) use bmc::parse_bool;
use bmc::{check_bmc, check_bmc_all};
pub use identity::parse_mac;

/// `aa:bb:cc:dd:ee:ff`, lowercase.
pub(crate) fn format_mac_pub(o: [u8; 6]) -> String {
    format_mac(o)
}
use identity::{check_name, format_mac};
use layout::check_layout;
pub use layout::{
    DEFAULT_EPHEMERAL_FORMAT, PartitionLayout, image_type, is_partition_image, partition_layout,
};
use limits::check_limits;
#[cfg(test)]
use limits::{MAX_KEY_BYTES, MAX_KEYS, MAX_MACS, MAX_VALUE_BYTES};
pub use media::{DISK_FORMATS, boot_iso, boot_mode, deploy_iso, os_hash};
use media::{check_boot_media, check_boot_mode, check_instance_info};

/// Result of checking one interface, as Ironic's node-validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCheck {
    /// "power" | "management" | "boot" | "deploy", and "bmc" once the BMC was verified
    /// (its reason is then set also when it passed: the paths the BMC takes)
    pub interface: &'static str,
    pub result: bool,
    /// Empty when `result`; otherwise every problem, "; "-separated.
    pub reason: String,
}

/// The deploy check's line for a node without any port: the deploy ramdisk finds its
/// node by MAC, so without one the deploy would only end at the call-back timeout.
pub const NO_MAC_REASON: &str = "macs: the node has no port (MAC address), so the deploy ramdisk's lookup cannot find it; inspect it (`vmedia node inspect <node>`) or add a port (`vmedia node set <node> --mac aa:bb:cc:dd:ee:ff`)";

/// Drivers this system runs. `agent_irmc`/`iscsi_irmc` are Ironic's old classic
/// driver names, accepted so imported nodes need no edit.
pub const DRIVERS: [&str; 3] = ["irmc", "agent_irmc", "iscsi_irmc"];

pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> CoreError {
    CoreError::invalid(field, message)
}

/// Checks a spec for create/update: everything that is present must be well
/// formed, and the BMC credentials must be there. `image_source` is NOT required
/// here (it is needed only to deploy; see [`validate`]). The first problem wins.
pub fn validate_create(spec: &NodeSpec) -> Result<(), CoreError> {
    check_limits(spec)?;
    if let Some(name) = &spec.name {
        check_name(name)?;
    }
    if !DRIVERS.contains(&spec.driver.as_str()) {
        return Err(err(
            "driver",
            format!("unsupported driver {:?}; expected \"irmc\"", spec.driver),
        ));
    }
    check_bmc(&spec.driver_info)?;
    check_boot_media(spec)?;
    check_instance_info(&spec.instance_info, false)?;
    check_layout(spec, false)?;
    for (i, mac) in spec.macs.iter().enumerate() {
        if parse_mac(mac).is_none() {
            return Err(err(
                format!("macs[{i}]"),
                format!("invalid MAC address {mac:?}; expected 6 octets like 52:54:00:12:34:56"),
            ));
        }
    }
    for k in spec.share_selector.keys() {
        if k.is_empty() {
            return Err(err("share_selector", "empty label key"));
        }
    }
    check_boot_mode(spec)?;
    Ok(())
}

/// Per-interface check of a stored node: what a deploy would need.
pub fn validate(node: &Node) -> Vec<InterfaceCheck> {
    let spec = &node.spec;
    let bmc = check_bmc_all(&spec.driver_info);
    let mut boot = Vec::new();
    if let Err(e) = check_boot_media(spec) {
        boot.push(e.to_string());
    }
    if deploy_iso(spec).is_none()
        && (!spec.driver_info.contains_key("deploy_kernel")
            || !spec.driver_info.contains_key("deploy_ramdisk"))
    {
        boot.push(
            "driver_info.deploy_iso: required (or deploy_kernel and deploy_ramdisk)".to_string(),
        );
    }
    if let Err(e) = check_boot_mode(spec) {
        boot.push(e.to_string());
    }
    let mut deploy = Vec::new();
    if let Err(e) = check_instance_info(&spec.instance_info, true) {
        deploy.push(e.to_string());
    }
    if let Err(e) = check_layout(spec, true) {
        deploy.push(e.to_string());
    }
    for (i, mac) in spec.macs.iter().enumerate() {
        if parse_mac(mac).is_none() {
            deploy.push(format!("macs[{i}]: invalid MAC address {mac:?}"));
        }
    }
    if spec.macs.is_empty() {
        deploy.push(NO_MAC_REASON.to_string());
    }
    let check = |interface: &'static str, problems: &[String]| InterfaceCheck {
        interface,
        result: problems.is_empty(),
        reason: problems.join("; "),
    };
    let mut checks = vec![
        check("power", &bmc),
        check("management", &bmc),
        check("boot", &boot),
        check("deploy", &deploy),
    ];
    // What the BMC itself said at the last `manage` (generation, firmware, licence):
    // the line that explains why a node stays in enroll, or which paths it takes.
    if let Some(c) = &node.status.bmc_check {
        checks.push(InterfaceCheck {
            interface: "bmc",
            result: c.ok,
            reason: c.summary.clone(),
        });
    }
    checks
}

/// Canonical form of a spec before storing: MACs lowercased with ':' separators;
/// an empty name becomes `None`; an empty driver becomes "irmc".
pub fn normalize_spec(spec: &mut NodeSpec) {
    for mac in &mut spec.macs {
        if let Some(octets) = parse_mac(mac) {
            *mac = format_mac(octets);
        }
    }
    if spec.name.as_deref() == Some("") {
        spec.name = None;
    }
    if spec.driver.is_empty() {
        spec.driver = crate::DEFAULT_DRIVER.to_string();
    }
}

/// Is this driver_info/instance_info key a secret? `irmc_password`, any key ending
/// in `password`, `secret` or `token` (e.g. `agent_token`), and SNMP communities.
pub fn is_secret_key(key: &str) -> bool {
    // Runs for every key of every node read or written: no allocation.
    let ends_with = |suffix: &str| {
        key.len() >= suffix.len()
            && key.as_bytes()[key.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    ends_with("password")
        || ends_with("secret")
        || ends_with("token")
        || ends_with("snmp_community")
}

/// A copy of `map` with every secret value replaced by "******".
pub fn mask(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                MASK.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}
