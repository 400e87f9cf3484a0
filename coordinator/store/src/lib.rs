//! Coordinator persistence: the [`Store`] trait, the embedded SQLite backend
//! ([`SqliteStore`]), the PostgreSQL backend ([`PgStore`]) and one [`conformance`]
//! suite that every backend passes unchanged.
//!
//! # API summary
//! - [`Store`]: nodes (create/create_nodes/get/list/update_spec/update_status/
//!   update_statuses/delete), resume listing ([`Store::nodes_in_flight`]), per-state counts, and the DESIRED
//!   state of agents (drained or not). Observed agent state (health, load) is not
//!   stored: it is rebuilt from agent registrations.
//! - Placement is kept in `NodeStatus::share` (no separate assignment table): it
//!   changes only through the state machine, so one optimistic-concurrency version
//!   guards it together with the rest of the status.
//! - [`SqliteStore::open`]`(data_dir)`: file `data_dir/coordinator.sqlite`, WAL,
//!   `synchronous=NORMAL`, versioned migrations in table `schema_version`.
//! - [`PgStore::connect`]`(url)`: PostgreSQL, same layout and semantics, for several
//!   coordinator replicas on one database.
//! - [`conformance::run_all`]: the backend-independent test suite.
//! - [`encode_spec`]/[`decode_spec`]: the single place driver_info is serialised
//!   (where at-rest encryption of secrets will go).
//!
//! # Layout
//! - `lib.rs` the trait and error; `codec.rs` what goes into each column (shared);
//!   `sqlite.rs`, `postgres.rs` the backends; `conformance.rs` the shared suite.
//! - Tests: `tests/sqlite.rs`, `tests/postgres.rs` (starts its own throwaway cluster).
//!
//! # Row layout (both backends)
//! uuid as 16 bytes (byte order = uuid order, so pagination is a range scan),
//! name (unique), filter columns (provision_state, share, has_error, in_flight,
//! indexed), the status version, spec and status as compact JSON (defaults
//! omitted), and the ramdisk agent token in its own column. Bulk writes use one
//! multi-row statement per 500 rows inside one transaction.
//!
//! # Invariants
//! - `update_status` succeeds only when the caller's `expected_version` equals the
//!   stored one; it returns the new version (old + 1). `update_statuses` is one
//!   transaction: all rows or none.
//! - Spec and status are separate columns; `update_spec` never touches the status
//!   version (operators and the state machine do not conflict).
//! - This crate knows nothing about gRPC.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use coordinator_core::{Node, NodeId, NodeSpec, NodeStatus, ProvisionState};
use uuid::Uuid;

mod codec;
pub mod conformance;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Everything a store can fail with. Each variant names the node or the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("node {node} not found")]
    NotFound { node: String },
    /// Duplicate uuid or name.
    #[error("{what} already exists")]
    Conflict { what: String },
    /// Optimistic concurrency: someone else updated the node's status first.
    #[error("node {node}: status version conflict (expected {expected}, found {found})")]
    VersionConflict {
        node: Uuid,
        expected: u64,
        found: u64,
    },
    #[error("store: {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("store: node {node}: cannot decode stored {what}: {detail}")]
    Corrupt {
        node: String,
        what: &'static str,
        detail: String,
    },
    #[error("store: data dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store: migration to schema version {version} failed: {detail}")]
    Migration { version: i64, detail: String },
}

/// Filters for [`Store::list_nodes`]; all set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    pub provision_state: Option<ProvisionState>,
    pub share: Option<String>,
    pub name_prefix: Option<String>,
    /// Only nodes whose `last_error` is set.
    pub with_last_error: bool,
}

/// Persistence of nodes and desired agent state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a node (its `version` is ignored; the stored version starts at 1).
    /// `Conflict` on a duplicate uuid or name.
    async fn create_node(&self, node: &Node) -> Result<(), StoreError>;

    /// Inserts many nodes in ONE transaction (bulk enrolment); any duplicate uuid
    /// or name fails the whole batch with `Conflict` and inserts nothing.
    async fn create_nodes(&self, nodes: &[Node]) -> Result<(), StoreError>;

    /// By uuid or name.
    async fn get_node(&self, id: &NodeId) -> Result<Option<Node>, StoreError>;

    /// Up to `limit` nodes with uuid > `marker`, ordered by uuid.
    async fn list_nodes(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, StoreError>;

    /// Replaces the spec (`spec.uuid` must equal `uuid`). `NotFound`, or `Conflict`
    /// when the new name is taken.
    async fn update_spec(&self, uuid: Uuid, spec: &NodeSpec) -> Result<(), StoreError>;

    /// Replaces the status if the stored version is `expected_version`; returns the
    /// new version. `VersionConflict` otherwise, `NotFound` if the node is gone.
    async fn update_status(
        &self,
        uuid: Uuid,
        expected_version: u64,
        status: &NodeStatus,
    ) -> Result<u64, StoreError>;

    /// Many [`Store::update_status`] in ONE transaction (group commit). Any conflict
    /// or missing node fails the whole batch and changes nothing. Returns the new
    /// versions, index-aligned with `batch`.
    async fn update_statuses(
        &self,
        batch: &[(Uuid, u64, NodeStatus)],
    ) -> Result<Vec<u64>, StoreError>;

    /// `NotFound` if absent.
    async fn delete_node(&self, uuid: Uuid) -> Result<(), StoreError>;

    /// Every node with work under way ([`NodeStatus::in_flight`]): job intent,
    /// queued, waiting for a call-back. For resuming after a restart. Ordered by uuid.
    async fn nodes_in_flight(&self) -> Result<Vec<Node>, StoreError>;

    /// `(uuid, share)` of every placed node, ordered by uuid: rebuilds a placement
    /// index at start-up without decoding any spec or status.
    async fn placements(&self) -> Result<Vec<(Uuid, String)>, StoreError>;

    /// Node count per provision state name (only states with nodes).
    async fn count_by_state(&self) -> Result<BTreeMap<String, u64>, StoreError>;

    /// Desired agent state: drained agents get no new work.
    async fn set_agent_drained(&self, agent_id: &str, drained: bool) -> Result<(), StoreError>;

    /// Ids of drained agents, sorted.
    async fn drained_agents(&self) -> Result<Vec<String>, StoreError>;
}

/// Serialises a spec for storage. The ONE place driver_info goes to bytes: at-rest
/// encryption of secret keys will be added here.
pub fn encode_spec(spec: &NodeSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
        node: spec.uuid.to_string(),
        what: "spec",
        detail: e.to_string(),
    })
}

/// Inverse of [`encode_spec`].
pub fn decode_spec(node: &str, text: &str) -> Result<NodeSpec, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        node: node.to_string(),
        what: "spec",
        detail: e.to_string(),
    })
}

/// Where the SQLite file lives inside a data dir.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("coordinator.sqlite")
}
