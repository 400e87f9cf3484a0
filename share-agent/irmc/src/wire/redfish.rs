//! The Redfish JSON subset: the system resource, the boot override and the
//! reset action.

use std::fmt;

use super::{WireError, malformed};

/// Redfish `PowerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// `On`
    On,
    /// `Off`
    Off,
    /// `PoweringOn`
    PoweringOn,
    /// `PoweringOff`
    PoweringOff,
}

impl PowerState {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::Off => "Off",
            Self::PoweringOn => "PoweringOn",
            Self::PoweringOff => "PoweringOff",
        }
    }

    /// From the Redfish string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "On" => Some(Self::On),
            "Off" => Some(Self::Off),
            "PoweringOn" => Some(Self::PoweringOn),
            "PoweringOff" => Some(Self::PoweringOff),
            _ => None,
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Boot.BootSourceOverrideTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootTarget {
    /// Remote (virtual) CD.
    Cd,
    /// Local disk.
    Hdd,
    /// Network.
    Pxe,
    /// Clear the override.
    None,
}

impl BootTarget {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cd => "Cd",
            Self::Hdd => "Hdd",
            Self::Pxe => "Pxe",
            Self::None => "None",
        }
    }
}

/// `Boot.BootSourceOverrideEnabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootPersistence {
    /// Next boot only.
    Once,
    /// Every boot.
    Continuous,
}

impl BootPersistence {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "Once",
            Self::Continuous => "Continuous",
        }
    }
}

/// `Boot.BootSourceOverrideMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootMode {
    /// `UEFI`
    Uefi,
    /// `Legacy`
    Legacy,
}

impl BootMode {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uefi => "UEFI",
            Self::Legacy => "Legacy",
        }
    }
}

/// `ComputerSystem.Reset` `ResetType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetType {
    /// `On`
    On,
    /// `ForceOff`
    ForceOff,
    /// `GracefulShutdown`
    GracefulShutdown,
    /// `GracefulRestart`
    GracefulRestart,
    /// `ForceRestart`
    ForceRestart,
    /// `Nmi`
    Nmi,
    /// `PowerCycle`
    PowerCycle,
}

impl ResetType {
    /// The Redfish string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "On",
            Self::ForceOff => "ForceOff",
            Self::GracefulShutdown => "GracefulShutdown",
            Self::GracefulRestart => "GracefulRestart",
            Self::ForceRestart => "ForceRestart",
            Self::Nmi => "Nmi",
            Self::PowerCycle => "PowerCycle",
        }
    }
}

/// Redfish system resource path on an iRMC.
pub const REDFISH_SYSTEM: &str = "/redfish/v1/Systems/0";
/// Redfish reset action path on an iRMC.
pub const REDFISH_RESET: &str = "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset";

/// The PATCH body for a boot override. `BootTarget::None` disables the
/// override and sends no mode.
pub fn boot_override_body(
    target: BootTarget,
    persistence: BootPersistence,
    mode: BootMode,
) -> String {
    let boot = if target == BootTarget::None {
        serde_json::json!({
            "BootSourceOverrideTarget": "None",
            "BootSourceOverrideEnabled": "Disabled",
        })
    } else {
        serde_json::json!({
            "BootSourceOverrideTarget": target.as_str(),
            "BootSourceOverrideEnabled": persistence.as_str(),
            "BootSourceOverrideMode": mode.as_str(),
        })
    };
    serde_json::json!({ "Boot": boot }).to_string()
}

/// The POST body for a reset action.
pub fn reset_body(kind: ResetType) -> String {
    serde_json::json!({ "ResetType": kind.as_str() }).to_string()
}

/// What we read from `GET /redfish/v1/Systems/0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    /// `PowerState`.
    pub power_state: PowerState,
    /// `Manufacturer`, if present.
    pub manufacturer: Option<String>,
    /// `Boot.BootSourceOverrideTarget`, if present.
    pub boot_target: Option<String>,
    /// `Boot.BootSourceOverrideEnabled`, if present.
    pub boot_enabled: Option<String>,
    /// `Boot.BootSourceOverrideMode`, if present.
    pub boot_mode: Option<String>,
}

/// Parses the Redfish system resource.
pub fn parse_system(body: &str) -> Result<SystemInfo, WireError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| malformed(format!("Redfish reply is not JSON: {e}")))?;
    let ps = v
        .get("PowerState")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("Redfish system has no PowerState"))?;
    let power_state =
        PowerState::parse(ps).ok_or_else(|| malformed(format!("unknown PowerState {ps:?}")))?;
    let s = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_owned);
    let boot = v.get("Boot");
    Ok(SystemInfo {
        power_state,
        manufacturer: s(v.get("Manufacturer")),
        boot_target: s(boot.and_then(|b| b.get("BootSourceOverrideTarget"))),
        boot_enabled: s(boot.and_then(|b| b.get("BootSourceOverrideEnabled"))),
        boot_mode: s(boot.and_then(|b| b.get("BootSourceOverrideMode"))),
    })
}
