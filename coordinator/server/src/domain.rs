//! What the gRPC edges (`api.rs`, `link.rs`) and the engine exchange, in domain terms:
//! the server's own small types next to `coordinator-core`'s. No wire (prost) type appears
//! here; `convert.rs` maps each of them to and from its wire counterpart.

use std::collections::BTreeMap;

use coordinator_core::{
    AgentId, BmcTarget, JobIntent, JobResult, JobSpec, Node, Placement, PowerAction, PowerState,
    ProvisionState,
};
use uuid::Uuid;

/// The share a share agent serves, as the iRMCs see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareIdentity {
    /// `remote_image_server`: the address the iRMCs use.
    pub server: String,
    /// "CIFS" | "NFS"
    pub share_type: String,
    pub share_name: String,
}

/// What a share agent says about itself when its session opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentHello {
    /// Its id, trimmed (empty when it gave none: refused by the engine).
    pub agent: AgentId,
    pub version: String,
    pub share: Option<ShareIdentity>,
    /// Concurrent virtual-media boots it can feed.
    pub capacity: u32,
    /// CIDRs of the BMCs it can reach, unparsed (the engine refuses bad ones); empty = all.
    pub bmc_networks: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Base URL the ramdisks use.
    pub http_url: String,
    pub free_bytes: u64,
    /// Jobs it still runs or finished since it started.
    pub known_jobs: Vec<JobUpdate>,
}

/// What the coordinator uses of an agent's periodic heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentHeartbeat {
    pub free_bytes: u64,
}

/// Where a job stands, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Not said (or a state this coordinator does not know).
    Unspecified,
    Running,
    Succeeded,
    Failed,
}

/// A job update from an agent. The ids are kept as sent: the engine parses them and
/// ignores (with a warning) an update it cannot place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    pub job_id: String,
    pub node_uuid: String,
    pub state: JobState,
    /// The current step, human readable (shown to watchers, never stored).
    pub progress: String,
    /// The outcome as the state machine sees it (`ok` only when [`JobState::Succeeded`]);
    /// used once the job is no longer running.
    pub result: JobResult,
}

/// What the engine sends down an agent's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToAgent {
    /// The first message of a session.
    Welcome {
        coordinator_id: String,
        heartbeat_interval_ms: u32,
    },
    /// A job whose intent is committed.
    Job(Box<AgentJob>),
    /// A job that is no longer wanted.
    Cancel { job_id: Uuid, node: Uuid },
    /// The power-state sync: read this node's power state (no job, nothing persisted).
    PowerQuery { node: Uuid, bmc: Box<BmcTarget> },
}

/// An agent's answer to a power query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerReport {
    /// As sent; the engine parses it.
    pub node_uuid: String,
    /// `None` when the read failed (`error` says why).
    pub power_state: Option<PowerState>,
    pub error: String,
    pub bmc_requests: u32,
}

/// A job for an agent. Carries the BMC password and the agent token in clear: it goes
/// only onto the agent's own stream, never into logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentJob {
    pub node: Uuid,
    pub intent: JobIntent,
    pub spec: JobSpec,
    /// `None` when driver_info does not say how to reach the BMC.
    pub bmc: Option<BmcTarget>,
}

/// A deploy ramdisk's lookup, relayed by its agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RamdiskLookup {
    /// The relaying agent: only nodes placed on it are found.
    pub agent: AgentId,
    /// Optional; when given, the MACs are not looked at.
    pub node_uuid: String,
    /// MACs as the ramdisk sent them.
    pub addresses: Vec<String>,
}

/// The answer to a [`RamdiskLookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamdiskNode {
    pub node: Uuid,
    pub properties: BTreeMap<String, String>,
    /// Secrets masked.
    pub instance_info: BTreeMap<String, String>,
    pub heartbeat_timeout_s: u32,
}

/// A deploy ramdisk's heartbeat, relayed by its agent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RamdiskHeartbeat {
    /// The relaying agent (for logs).
    pub agent: AgentId,
    pub node_uuid: String,
    pub callback_url: String,
    /// Checked against the node's token in constant time; never logged.
    pub agent_token: String,
}

impl std::fmt::Debug for RamdiskHeartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RamdiskHeartbeat")
            .field("agent", &self.agent)
            .field("node_uuid", &self.node_uuid)
            .field("callback_url", &self.callback_url)
            .field("agent_token", &coordinator_core::MASK)
            .finish()
    }
}

/// How a share agent is doing, as `ListShares` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareHealth {
    Healthy,
    /// Its stream closed (or it has not reconnected since a restart): no new work.
    Suspect,
    Lost,
    /// Healthy, but drained by the operator.
    Drained,
}

impl ShareHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspect => "suspect",
            Self::Lost => "lost",
            Self::Drained => "drained",
        }
    }
}

/// One share agent and its share, as `ListShares` and `DrainShare` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareView {
    pub agent: AgentId,
    pub health: ShareHealth,
    /// What the agent said in its hello; `None` for an agent known only from the store
    /// (drained) or from in-flight nodes, that has not said hello.
    pub share: Option<ShareIdentity>,
    pub capacity: u64,
    /// Boots in flight now.
    pub active: u64,
    /// Waiting for admission on this share.
    pub queued: u64,
    /// Nodes placed here.
    pub nodes: u64,
    pub free_bytes: u64,
    pub bmc_networks: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub last_heartbeat_ms: i64,
    pub http_url: String,
    pub drained: bool,
}

/// A node with its place in the admission queue (0 when not queued), as every read shows it
/// once converted (secrets are masked by the conversion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub node: Node,
    pub queue_position: u64,
}

/// A node a bulk verb could not apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkFailure {
    /// As the caller named it (uuid or name).
    pub node: String,
    pub error: String,
}

/// What a bulk verb did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    pub accepted: u64,
    pub failures: Vec<BulkFailure>,
}

/// Where placement would put a node, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub node: Uuid,
    pub placement: Placement,
}

/// A change of a node, for watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub node: Uuid,
    pub name: Option<String>,
    pub provision_state: ProvisionState,
    pub target_provision_state: Option<ProvisionState>,
    pub last_error: Option<String>,
    pub progress: String,
    pub agent: Option<AgentId>,
    /// The last power state an agent reported.
    pub power_state: Option<PowerState>,
    /// The power action under way.
    pub target_power_state: Option<PowerAction>,
    /// When `power_state` last changed.
    pub power_updated_at_ms: i64,
    pub at_ms: i64,
    pub queue_position: u64,
}

impl NodeEvent {
    /// The event for a node's current status.
    pub fn of(n: &Node, queue_position: u64, at_ms: i64) -> Self {
        let st = &n.status;
        Self {
            node: n.spec.uuid,
            name: n.spec.name.clone(),
            provision_state: st.provision_state,
            target_provision_state: st.target_provision_state,
            last_error: st.last_error.clone(),
            progress: st.progress.clone(),
            agent: st.agent.clone(),
            power_state: st.power_state,
            target_power_state: st.target_power_state,
            power_updated_at_ms: st.power_updated_at_ms,
            at_ms,
            queue_position,
        }
    }
}
