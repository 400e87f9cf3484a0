//! Pure domain of the coordinator: the node model, input validation, the provision
//! state machine and placement of nodes onto share agents.
//!
//! This crate does no IO: no tokio, no gRPC, no database, no clock, no RNG. Time
//! (`now_ms`) and randomness (token bytes) are passed in, so every function is
//! deterministic and table-testable. Wire types (prost) never appear here; the
//! server converts at its edge.
//!
//! # API summary
//! - [`ProvisionState`], [`Verb`], [`PowerState`]: Ironic names via `as_str()`/`FromStr`.
//! - [`NodeSpec`] (operator's desire) / [`NodeStatus`] (machine's state) / [`Node`]
//!   (`spec + status + version`), [`NodeId`] (uuid or name), [`AgentId`] (a share agent),
//!   [`DeployStep`], [`JobIntent`].
//! - Validation: [`validate_create`], [`validate`] -> [`InterfaceCheck`]s,
//!   [`normalize_spec`], [`is_secret_key`], [`mask`]; [`Secret`] prints "******".
//! - State machine: [`step`]`(status, spec, Event, now_ms, &MachineConfig) ->
//!   Result<Transition { status, actions }, CoreError>`; [`resume_job`] rebuilds the job
//!   of a persisted intent; [`JobSpec`] what a job does, [`bmc_target`] reads driver_info
//!   into a [`BmcTarget`] ([`AuthMethod`], [`TlsVerify`]).
//! - Placement: [`place`]`(&PlacementNode, &[AgentView], &Loads) -> Placement` and
//!   [`rebalance`] for whole fleets.
//! - Admission: [`admit`]`(&AdmissionInput) -> Vec<AdmissionStep>`: which queued nodes are
//!   placed and which get admitted (and a boot slot) in one round; [`free_slots`].
//! - [`new_agent_token`]`([u8; 32]) -> Secret`.
//!
//! # Layout
//! - `state.rs` enums; `node.rs` model; `agent.rs` [`AgentId`]; `secret.rs`; `validate/`
//!   (by what is checked: BMC, media, identity); `machine/` (`step` and its types, then
//!   the transitions); `job.rs` (job specs, BMC target, job ids); `placement.rs`;
//!   `admission.rs`; `mix.rs` (the 64-bit mix behind job ids and placement); `error.rs`
//!   ([`CoreError`], the crate's one error type).
//!
//! # Invariants
//! - Only [`step`] changes a [`NodeStatus`] (besides the store's version counter).
//! - Every job intent gets a fresh `job_id` and is in the returned status before the
//!   `SendJob` action that sends it: persist, then act.
//! - Secrets ([`Secret`], secret driver_info keys) never appear in Debug/Display.

mod admission;
mod agent;
mod error;
mod job;
mod machine;
mod mix;
mod node;
mod placement;
mod secret;
mod state;
mod validate;

pub use admission::{AdmissionInput, AdmissionStep, AgentSlots, QueuedNode, admit, free_slots};
pub use agent::AgentId;
pub use error::{CoreError, StepError, ValidationError};
pub use job::{
    AuthMethod, BmcTarget, BmcTransport, Inventory, JobOutputs, JobResult, JobSpec, PowerAction,
    TlsVerify, bmc_target, merge_capabilities, merge_inventory,
};
pub use machine::{Action, Event, JobIdKey, MachineConfig, Transition, resume_job, step};
pub use node::{BmcCheck, DeployStep, JobIntent, JobKind, Node, NodeId, NodeSpec, NodeStatus};
pub use placement::{
    AgentView, CandidateView, Cidr, Loads, Placement, PlacementConfig, PlacementNode, Rebalance,
    RebalanceMode, place, place_with, rebalance,
};
pub use secret::{MASK, Secret, new_agent_token};
pub use state::{PowerState, ProvisionState, Verb};
pub use validate::{
    DEFAULT_EPHEMERAL_FORMAT, DISK_FORMATS, InterfaceCheck, NO_MAC_REASON, PartitionLayout,
    boot_iso, boot_mode, deploy_iso, image_type, is_partition_image, is_secret_key, mask,
    normalize_spec, os_hash, parse_mac, partition_layout, validate, validate_create,
};

/// The only driver this system has.
pub const DEFAULT_DRIVER: &str = "irmc";
