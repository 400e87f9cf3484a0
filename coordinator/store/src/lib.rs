//! Coordinator persistence: the [`Store`] trait, the embedded SQLite backend
//! ([`SqliteStore`]), the PostgreSQL backend ([`PgStore`]) and one [`conformance`]
//! suite that every backend passes unchanged.
//!
//! # API summary
//! - [`Store`]: nodes (create/create_nodes/get/get_nodes/list/list_node_views/update_spec/
//!   update_status/update_statuses/delete), resume listing ([`Store::nodes_in_flight`]), per-state counts,
//!   each node's last [`HISTORY_PER_NODE`] state changes ([`Store::node_history`]), and the DESIRED
//!   state of agents (drained or not). Observed agent state (health, load) is not
//!   stored: it is rebuilt from agent registrations.
//! - Placement is kept in `NodeStatus::agent` (column `share`; no separate assignment table): it
//!   changes only through the state machine, so one optimistic-concurrency version
//!   guards it together with the rest of the status.
//! - [`SqliteStore::open_with`]`(data_dir, keys)`: file `data_dir/coordinator.sqlite`, WAL,
//!   `synchronous=NORMAL`, versioned migrations in table `schema_version`; one write
//!   connection, a pool of readers.
//! - [`PgStore::connect_with`]`(url, keys)`: PostgreSQL, same layout and semantics, for
//!   several coordinator replicas on one database; [`PgStore::campaign`] elects the one
//!   leader (session advisory lock on a dedicated connection, [`LeaderLease`]) and
//!   [`PgStore::leader`] tells followers where it is.
//! - [`SecretKeys`]: the at-rest key file (current key + old keys, by id).
//! - [`conformance::run_all`]: the backend-independent test suite.
//! - [`encode_spec`]/[`decode_spec`]: the single place driver_info is serialised, and
//!   so the single place secrets are sealed and opened.
//!
//! # Secrets at rest
//! With keys (the coordinator always has some), every secret value of driver_info and
//! instance_info ([`coordinator_core::is_secret_key`]: the BMC password ...) and the
//! ramdisk agent token are sealed with XChaCha20-Poly1305 before they reach SQL, bound
//! to their node and field (`secrets.rs`). A token is sealed once per deploy: later
//! status writes that keep it re-use its sealed text (`codec.rs`). Read-only views
//! ([`Store::list_node_views`]) mask secrets without opening them. Opening checks the
//! keys first: a wrong key, or stored values sealed with a key that was not given, or
//! sealed values and no key at all, is a [`StoreError::SecretKey`] at start-up, never
//! clear text written later.
//! Share passwords are not stored here at all: they stay in each share agent's own
//! configuration and only the share's user name reaches the coordinator.
//!
//! # Layout
//! - `lib.rs` the trait and error; `codec.rs` what goes into each column (shared);
//!   `secrets.rs` the key file and the AEAD; `sqlite/`, `postgres/` the backends (each:
//!   `mod.rs` opening, `schema.rs` migrations and the key check, `rows.rs` queries and row
//!   decoding, `store.rs` the trait; plus `writer.rs` and `leader.rs`); `conformance/` the
//!   shared suite, by topic.
//! - Tests, one binary (`tests/it/`): `sqlite.rs`, `secrets.rs` (bytes of the SQLite file),
//!   `postgres.rs` (starts its own throwaway cluster; suite + leader election).
//!
//! # Row layout (both backends)
//! uuid as 16 bytes (byte order = uuid order, so pagination is a range scan),
//! name (unique), filter columns (provision_state, share, has_error, in_flight,
//! indexed), the status version, spec and status as compact JSON (defaults
//! omitted), and the ramdisk agent token in its own column. Bulk writes use one
//! multi-row statement per 500 rows inside one transaction.
//! `node_history` (id, uuid, at_ms, from_state, to_state, last_error) is filled by a
//! trigger on `nodes` when `provision_state` changes, and trimmed to the newest
//! [`HISTORY_PER_NODE`] rows of that node by the same trigger: history costs no extra
//! round trip and commits (or rolls back) with the status write, group commit included.
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
use coordinator_core::{AgentId, Node, NodeId, NodeSpec, NodeStatus, ProvisionState};
use uuid::Uuid;

mod codec;
pub mod conformance;
mod postgres;
mod secrets;
mod sqlite;

pub use postgres::{LeaderLease, PgStore};
pub use secrets::SecretKeys;
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
    /// A secret key problem: a missing, unreadable or wrong key file, or stored secrets
    /// sealed with a key that was not given. Never carries key material or a secret.
    #[error("store: secret key: {what}")]
    SecretKey { what: String },
    /// Leadership among coordinator replicas is lost or unconfirmed.
    #[error("store: leader lease: {what}")]
    Lease { what: String },
    /// A stored secret of `node` cannot be opened (wrong key, altered data).
    #[error("store: node {node}: cannot open the stored secret {field}: {detail}")]
    Sealed {
        node: String,
        field: String,
        detail: String,
    },
}

/// Filters for [`Store::list_nodes`]; all set fields must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    pub provision_state: Option<ProvisionState>,
    /// Placed on this agent (column `share`).
    pub agent: Option<AgentId>,
    pub name_prefix: Option<String>,
    /// Only nodes whose `last_error` is set.
    pub with_last_error: bool,
    /// Free-text search: the name contains it, or the uuid's hex digits contain its hex
    /// digits (so a uuid prefix, with or without dashes, finds the node). Case-insensitive
    /// for ASCII. A full scan: the dashboard's search box, not the hot path.
    pub search: Option<String>,
}

/// How many state changes [`Store::node_history`] keeps per node (older ones are dropped
/// in the same statement that records a new one).
pub const HISTORY_PER_NODE: usize = 50;

/// One committed change of a node's provision state, as the store recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The status' `provision_updated_at_ms` of the write that made the change.
    pub at_ms: i64,
    pub from: ProvisionState,
    pub to: ProvisionState,
    /// `last_error` as that write left it.
    pub last_error: Option<String>,
}

impl NodeFilter {
    /// The search text as the backends compare it: (lower-case name needle, lower-case
    /// hex needle of the uuid, `None` when the text holds anything but hex digits and
    /// dashes).
    pub(crate) fn search_needles(&self) -> Option<(String, Option<String>)> {
        let s = self.search.as_deref()?.trim();
        if s.is_empty() {
            return None;
        }
        let name = s.to_ascii_lowercase();
        let hex: String = name.chars().filter(|c| *c != '-').collect();
        let hex = (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex);
        Some((name, hex))
    }
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

    /// The nodes among `uuids` that exist, in full (as [`Store::get_node`] reads them), in
    /// no particular order: many nodes in one round trip (bulk verbs).
    async fn get_nodes(&self, uuids: &[Uuid]) -> Result<Vec<Node>, StoreError>;

    /// Up to `limit` nodes with uuid > `marker`, ordered by uuid.
    async fn list_nodes(
        &self,
        filter: &NodeFilter,
        limit: u32,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, StoreError>;

    /// [`Store::list_nodes`] for read-only views (ListNodes, Watch, selectors): the same
    /// nodes in the same order, but every secret of driver_info/instance_info reads as
    /// [`coordinator_core::MASK`] and `status.agent_token` is `None`. Nothing is
    /// decrypted, so a large listing costs no cryptography. Never act on these nodes.
    async fn list_node_views(
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

    /// `(uuid, agent)` of every placed node, ordered by uuid: rebuilds a placement
    /// index at start-up without decoding any spec or status.
    async fn placements(&self) -> Result<Vec<(Uuid, AgentId)>, StoreError>;

    /// Node count per provision state name (only states with nodes).
    async fn count_by_state(&self) -> Result<BTreeMap<String, u64>, StoreError>;

    /// Node count per last known power state name (`""` for never reported; only
    /// values with nodes).
    async fn count_by_power_state(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The node's recorded provision-state changes, oldest first: at most
    /// [`HISTORY_PER_NODE`], written by the same statement that commits each status change
    /// (a change that is rolled back leaves no history). Empty for an unknown node;
    /// deleting a node deletes its history.
    async fn node_history(&self, uuid: Uuid) -> Result<Vec<StateChange>, StoreError>;

    /// Desired agent state: drained agents get no new work.
    async fn set_agent_drained(&self, agent: &AgentId, drained: bool) -> Result<(), StoreError>;

    /// Ids of drained agents, sorted.
    async fn drained_agents(&self) -> Result<Vec<AgentId>, StoreError>;
}

/// Serialises a spec for storage. The ONE place driver_info goes to bytes: with `keys`,
/// every secret value ([`coordinator_core::is_secret_key`]) of driver_info and
/// instance_info is sealed under the current key, bound to the node and field. Without
/// keys the secrets are stored as given (library users and tests only: the coordinator
/// always passes keys).
pub fn encode_spec(spec: &NodeSpec, keys: Option<&SecretKeys>) -> Result<String, StoreError> {
    let text = match keys {
        None => serde_json::to_string(spec),
        Some(keys) => {
            let mut sealed = spec.clone();
            let uuid = spec.uuid;
            for (section, map) in [
                ("driver_info", &mut sealed.driver_info),
                ("instance_info", &mut sealed.instance_info),
            ] {
                for (k, v) in map.iter_mut() {
                    if coordinator_core::is_secret_key(k) && !v.is_empty() {
                        *v = keys.seal(&format!("{uuid}/{section}.{k}"), v)?;
                    }
                }
            }
            serde_json::to_string(&sealed)
        }
    };
    text.map_err(|e| StoreError::Corrupt {
        node: spec.uuid.to_string(),
        what: "spec",
        detail: e.to_string(),
    })
}

/// Inverse of [`encode_spec`]. A sealed value needs `keys` holding its key id; a secret
/// stored in clear (written without keys) is returned as it is and is sealed by the
/// next write that has keys.
pub fn decode_spec(
    node: &str,
    text: &str,
    keys: Option<&SecretKeys>,
) -> Result<NodeSpec, StoreError> {
    let mut spec: NodeSpec = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        node: node.to_string(),
        what: "spec",
        detail: e.to_string(),
    })?;
    let uuid = spec.uuid;
    for (section, map) in [
        ("driver_info", &mut spec.driver_info),
        ("instance_info", &mut spec.instance_info),
    ] {
        for (k, v) in map.iter_mut() {
            if !v.starts_with(secrets::SEALED_PREFIX) {
                continue;
            }
            let field = format!("{section}.{k}");
            let Some(keys) = keys else {
                return Err(StoreError::Sealed {
                    node: node.to_string(),
                    field,
                    detail: "it is encrypted and no secret key was given".to_string(),
                });
            };
            *v = keys
                .open(&format!("{uuid}/{field}"), v)
                .map_err(|detail| StoreError::Sealed {
                    node: node.to_string(),
                    field: field.clone(),
                    detail,
                })?;
        }
    }
    Ok(spec)
}

/// Where the SQLite file lives inside a data dir.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("coordinator.sqlite")
}
