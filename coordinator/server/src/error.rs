//! The server's error type and its ONE mapping to `tonic::Status`.
//!
//! Every handler returns `Result<_, ServerError>` internally and converts at the very edge
//! with `Status::from`, so the gRPC code for a given failure is decided in exactly one place.

use coordinator_core::AgentId;
use tonic::{Code, Status};

/// Everything that can go wrong in the coordinator service.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration (file, flag or environment).
    #[error("configuration: {what}")]
    Config { what: String },

    /// Input that fails validation; `what` names the field.
    #[error("{what}")]
    InvalidArgument { what: String },

    /// No node with this uuid or name.
    #[error("Node {node} could not be found.")]
    NodeNotFound { node: String },

    /// No share agent with this id.
    #[error("Share agent {agent} could not be found.")]
    AgentNotFound { agent: AgentId },

    /// Duplicate uuid or name, or a write that raced another one.
    #[error("{what}")]
    Conflict { what: String },

    /// The request is valid but not in the node's current state (wrong verb for the state,
    /// deleting a node that is being deployed ...). The text follows Ironic's wording.
    #[error("{what}")]
    NotAllowed { what: String },

    /// The ramdisk's heartbeat carried a wrong or no agent token. Never carries the token.
    #[error("Invalid or missing agent token received.")]
    BadAgentToken { node: String },

    /// A ramdisk lookup found nothing in a lookup-allowed state.
    #[error("Lookup failed: no node in a deploy state matches {what}")]
    LookupNotFound { what: String },

    /// An agent was refused on its session stream.
    #[error("share agent {agent} refused: {reason}")]
    AgentRefused { agent: String, reason: String },

    /// The store failed while doing `op`; `subject` names the node (or what else it was about).
    #[error("store failed during {op} ({subject}): {source}")]
    Store {
        op: &'static str,
        subject: String,
        #[source]
        source: coordinator_store::StoreError,
    },

    /// A batch of status changes could not be committed; nothing of it happened.
    #[error("could not record the state change of node {node}: {detail}")]
    Commit { node: String, detail: String },

    /// The engine task is gone (shutting down).
    #[error("the coordinator is shutting down ({op})")]
    ShuttingDown { op: &'static str },

    /// This replica lost (or could not confirm) its leadership and stops acting as leader.
    #[error("leadership lost: {what}; stopping so that two replicas never lead at once")]
    LostLeadership { what: String },

    /// Serving failed (bind, transport).
    #[error("serving gRPC on {addr}: {what}")]
    Serve { addr: String, what: String },
}

impl ServerError {
    pub fn invalid(what: impl Into<String>) -> Self {
        Self::InvalidArgument { what: what.into() }
    }

    /// A store failure about one node.
    pub fn store(
        op: &'static str,
        node: impl std::fmt::Display,
        source: coordinator_store::StoreError,
    ) -> Self {
        Self::Store {
            op,
            subject: format!("node {node}"),
            source,
        }
    }

    /// A store failure about something other than one node (`what` says what).
    pub fn store_about(
        op: &'static str,
        what: impl Into<String>,
        source: coordinator_store::StoreError,
    ) -> Self {
        Self::Store {
            op,
            subject: what.into(),
            source,
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        let code = match &e {
            ServerError::Config { .. } | ServerError::InvalidArgument { .. } => {
                Code::InvalidArgument
            }
            ServerError::BadAgentToken { .. } => Code::InvalidArgument,
            ServerError::NodeNotFound { .. }
            | ServerError::AgentNotFound { .. }
            | ServerError::LookupNotFound { .. } => Code::NotFound,
            ServerError::Conflict { .. } => Code::AlreadyExists,
            ServerError::NotAllowed { .. } => Code::FailedPrecondition,
            ServerError::AgentRefused { .. } => Code::PermissionDenied,
            ServerError::Store { source, .. } => store_code(source),
            ServerError::ShuttingDown { .. }
            | ServerError::Commit { .. }
            | ServerError::LostLeadership { .. } => Code::Unavailable,
            ServerError::Serve { .. } => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

fn store_code(e: &coordinator_store::StoreError) -> Code {
    use coordinator_store::StoreError as S;
    match e {
        S::Conflict { .. } => Code::AlreadyExists,
        S::NotFound { .. } => Code::NotFound,
        S::VersionConflict { .. } => Code::Aborted,
        _ => Code::Internal,
    }
}
