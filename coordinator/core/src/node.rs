//! The node model: what the operator asked for ([`NodeSpec`]) kept apart from
//! where the node is in its life ([`NodeStatus`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agent::AgentId;
use crate::secret::Secret;
use crate::{PowerAction, PowerState, ProvisionState};

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Desired state: written by the operator (create / update), never by the state machine.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub uuid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub driver: String,
    /// Contains secrets (`irmc_password`); see [`crate::mask`] for views.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_info: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_info: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Lowercase `aa:bb:cc:dd:ee:ff` after [`crate::normalize_spec`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    /// Labels the serving share agent must carry (subset match).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub share_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
}

impl NodeSpec {
    /// A spec with the default driver and nothing else.
    pub fn new(uuid: Uuid) -> Self {
        Self {
            uuid,
            name: None,
            driver: crate::DEFAULT_DRIVER.to_string(),
            driver_info: BTreeMap::new(),
            instance_info: BTreeMap::new(),
            properties: BTreeMap::new(),
            macs: Vec::new(),
            share_selector: BTreeMap::new(),
            maintenance: false,
        }
    }

    /// `irmc_address`, if set.
    pub fn bmc_address(&self) -> Option<&str> {
        self.driver_info
            .get("irmc_address")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

// Manual Debug: driver_info holds the BMC password.
impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("driver_info", &crate::mask(&self.driver_info))
            .field("instance_info", &crate::mask(&self.instance_info))
            .field("properties", &self.properties)
            .field("macs", &self.macs)
            .field("share_selector", &self.share_selector)
            .field("maintenance", &self.maintenance)
            .finish()
    }
}

/// Where the node is in the deploy (or other) flow; finer than the provision state
/// so a restarted coordinator knows exactly what to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStep {
    /// Nothing under way.
    #[default]
    None,
    /// Waiting for placement and admission (a share slot).
    Queued,
    PrepareRamdisk,
    WaitCallback,
    WriteImage,
    PrepareInstance,
    CleanUp,
    Verify,
    /// A power action of the operator (or of the power-state sync) is running.
    Power,
    Inspect,
}

/// Which kind of job an intent is for. Mirrors the proto `Job.kind` oneof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    PrepareRamdisk,
    WriteImage,
    PrepareInstance,
    CleanUp,
    Power,
    BmcInfo,
    Inspect,
}

impl JobKind {
    /// Human name used in progress and error text.
    pub fn operation(self) -> &'static str {
        match self {
            Self::PrepareRamdisk => "prepare ramdisk",
            Self::WriteImage => "write image",
            Self::PrepareInstance => "prepare instance",
            Self::CleanUp => "clean up",
            Self::Power => "power action",
            Self::BmcInfo => "read BMC info",
            Self::Inspect => "inspect hardware",
        }
    }
}

/// A job the coordinator has decided to send. It is persisted in
/// [`NodeStatus::job`] BEFORE the job goes to the agent, so a restart re-sends the
/// same `job_id` (agents are idempotent by job id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIntent {
    pub job_id: Uuid,
    pub kind: JobKind,
    /// 1 for the first try; retries of a retryable failure count up.
    pub attempt: u32,
}

/// The result of the last BMC validation, stored on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmcCheck {
    /// The node passed (S4 or later, firmware capabilities known, licence present).
    pub ok: bool,
    /// One line: what the BMC is and which paths it takes, or why it cannot deploy.
    pub summary: String,
    /// When it was checked, ms since the epoch.
    pub at_ms: i64,
}

/// Observed/derived state, written only through [`crate::step`] (plus the store's
/// version counter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub provision_state: ProvisionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_provision_state: Option<ProvisionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    /// The power action asked for and not finished yet (Ironic's `target_power_state`);
    /// persisted with the job intent, so a restart re-sends the same action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_power_state: Option<PowerAction>,
    /// When `power_state` last changed (ms since the epoch; 0 = never seen).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub power_updated_at_ms: i64,
    /// The share agent the node is placed on. Stored under the JSON key `share` (the
    /// stored format predates the name; the store's `share` column holds the same value).
    #[serde(default, rename = "share", skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub progress: String,
    #[serde(default)]
    pub step: DeployStep,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobIntent>,
    /// Per-deploy ramdisk token. Not serialised with the rest of the status: the
    /// store keeps it in its own column (see `coordinator-store`).
    #[serde(skip)]
    pub agent_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// When the current wait (call-back) or job times out, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// State to return to when a queued operation is aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_state: Option<ProvisionState>,
    /// Counts jobs ever issued for this node; feeds deterministic job ids.
    #[serde(default)]
    pub job_seq: u64,
    /// The last BMC validation (the `manage` verb's verifying step): generation,
    /// firmware, licence and the media path, or the one line saying why the node cannot
    /// deploy. Shown by `vmedia node validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_check: Option<BmcCheck>,
    pub provision_updated_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_at_ms: i64,
}

impl NodeStatus {
    /// A freshly enrolled node.
    pub fn new(now_ms: i64) -> Self {
        Self {
            provision_state: ProvisionState::Enroll,
            target_provision_state: None,
            last_error: None,
            power_state: None,
            target_power_state: None,
            power_updated_at_ms: 0,
            agent: None,
            progress: String::new(),
            step: DeployStep::None,
            job: None,
            agent_token: None,
            callback_url: None,
            deadline_ms: None,
            resume_state: None,
            job_seq: 0,
            bmc_check: None,
            provision_updated_at_ms: now_ms,
            updated_at_ms: now_ms,
            created_at_ms: now_ms,
        }
    }

    /// True when the node has work under way that must be resumed after a restart:
    /// a job intent, a queue slot, or a wait with a deadline.
    pub fn in_flight(&self) -> bool {
        self.job.is_some()
            || self.step != DeployStep::None
            || self.deadline_ms.is_some()
            || self.provision_state.is_transient()
    }
}

/// A node as stored: spec + status + the store's optimistic-concurrency version
/// of the status (bumped by every `update_status`; 0 before the first insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub spec: NodeSpec,
    pub status: NodeStatus,
    pub version: u64,
}

impl Node {
    pub fn uuid(&self) -> Uuid {
        self.spec.uuid
    }
}

/// How an operator names a node: by uuid or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeId {
    Uuid(Uuid),
    Name(String),
}

impl FromStr for NodeId {
    type Err = std::convert::Infallible;
    /// Anything that parses as a UUID is a UUID (names that look like UUIDs are
    /// refused at create time, as in Ironic); the rest is a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match Uuid::parse_str(s) {
            Ok(u) => Self::Uuid(u),
            Err(_) => Self::Name(s.to_string()),
        })
    }
}

impl From<Uuid> for NodeId {
    fn from(u: Uuid) -> Self {
        Self::Uuid(u)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uuid(u) => write!(f, "{u}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}
