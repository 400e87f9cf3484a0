//! Provision states, verbs and power states with Ironic's spelling.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Where a node is in its life. Names are Ironic's (`as_str`/`FromStr`/serde all
/// use them, e.g. `"wait call-back"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum ProvisionState {
    Enroll,
    Verifying,
    Manageable,
    Available,
    Deploying,
    WaitCallback,
    Active,
    DeployFailed,
    Deleting,
    Cleaning,
    CleanFailed,
    Error,
    /// Out-of-band inspection under way (`inspect` from `manageable`).
    Inspecting,
    /// Inspection failed; `manage` or `inspect` again.
    InspectFailed,
}

impl ProvisionState {
    pub const ALL: [ProvisionState; 14] = [
        Self::Enroll,
        Self::Verifying,
        Self::Manageable,
        Self::Available,
        Self::Deploying,
        Self::WaitCallback,
        Self::Active,
        Self::DeployFailed,
        Self::Deleting,
        Self::Cleaning,
        Self::CleanFailed,
        Self::Error,
        Self::Inspecting,
        Self::InspectFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enroll => "enroll",
            Self::Verifying => "verifying",
            Self::Manageable => "manageable",
            Self::Available => "available",
            Self::Deploying => "deploying",
            Self::WaitCallback => "wait call-back",
            Self::Active => "active",
            Self::DeployFailed => "deploy failed",
            Self::Deleting => "deleting",
            Self::Cleaning => "cleaning",
            Self::CleanFailed => "clean failed",
            Self::Error => "error",
            Self::Inspecting => "inspecting",
            Self::InspectFailed => "inspect failed",
        }
    }

    /// States in which an operation is under way (a job, a wait or a queue slot).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Verifying
                | Self::Deploying
                | Self::WaitCallback
                | Self::Deleting
                | Self::Cleaning
                | Self::Inspecting
        )
    }
}

impl fmt::Display for ProvisionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ProvisionState> for &'static str {
    fn from(s: ProvisionState) -> Self {
        s.as_str()
    }
}

impl FromStr for ProvisionState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| CoreError::invalid("provision_state", format!("unknown state {s:?}")))
    }
}

impl TryFrom<String> for ProvisionState {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

/// What an operator asks for. `"deleted"` is Ironic's older spelling of undeploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Manage,
    Provide,
    Deploy,
    Undeploy,
    Rebuild,
    Abort,
    /// Out-of-band inspection: `manageable | inspect failed -> inspecting -> manageable`.
    Inspect,
}

impl Verb {
    pub const ALL: [Verb; 7] = [
        Self::Manage,
        Self::Provide,
        Self::Deploy,
        Self::Undeploy,
        Self::Rebuild,
        Self::Abort,
        Self::Inspect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manage => "manage",
            Self::Provide => "provide",
            Self::Deploy => "deploy",
            Self::Undeploy => "undeploy",
            Self::Rebuild => "rebuild",
            Self::Abort => "abort",
            Self::Inspect => "inspect",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "deleted" => Ok(Self::Undeploy),
            _ => Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                CoreError::invalid(
                    "target",
                    format!(
                        "unknown verb {s:?}; expected one of manage, provide, deploy, undeploy (or deleted), rebuild, abort, inspect"
                    ),
                )
            }),
        }
    }
}

/// Last known power state, Ironic spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<PowerState> for &'static str {
    fn from(s: PowerState) -> Self {
        s.as_str()
    }
}

impl FromStr for PowerState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "power on" | "on" => Ok(Self::On),
            "power off" | "off" => Ok(Self::Off),
            _ => Err(CoreError::invalid(
                "power_state",
                format!("unknown power state {s:?}"),
            )),
        }
    }
}

impl TryFrom<String> for PowerState {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, CoreError> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ProvisionState::ALL {
            assert_eq!(s.as_str().parse::<ProvisionState>().unwrap(), s);
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<ProvisionState>(&j).unwrap(), s);
        }
        assert_eq!(ProvisionState::WaitCallback.as_str(), "wait call-back");
        for v in Verb::ALL {
            assert_eq!(v.as_str().parse::<Verb>().unwrap(), v);
        }
        assert_eq!("deleted".parse::<Verb>().unwrap(), Verb::Undeploy);
        assert!("explode".parse::<Verb>().is_err());
        assert!("waiting".parse::<ProvisionState>().is_err());
    }
}
