//! The one error type of this crate.

use uuid::Uuid;

use crate::{ProvisionState, Verb};

/// Everything the domain can refuse. Each variant names the node and/or the field so
/// the API layer can pass the text through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// Bad input; `field` is the dotted path, e.g. `driver_info.irmc_port`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },

    /// A verb that the node's current state does not allow (Ironic's wording).
    #[error(
        "The requested action \"{verb}\" can not be performed on node \"{node}\" while it is in state \"{state}\"."
    )]
    VerbNotAllowed {
        verb: Verb,
        node: Uuid,
        state: ProvisionState,
    },

    /// Provisioning verbs are refused while the operator has the node in
    /// maintenance (undeploy and abort stay allowed).
    #[error(
        "The requested action \"{verb}\" can not be performed on node \"{node}\" while it is in maintenance mode."
    )]
    InMaintenance { verb: Verb, node: Uuid },

    /// A deploy (or rebuild) of a node that fails deploy validation.
    #[error("The requested action \"{verb}\" can not be performed on node \"{node}\": {reason}")]
    DeployInvalid {
        verb: Verb,
        node: Uuid,
        reason: &'static str,
    },

    /// A power action the node cannot take now (work under way, unknown action).
    #[error(
        "The power action \"{action}\" can not be performed on node \"{node}\" (BMC {bmc}): {reason}"
    )]
    PowerRefused {
        action: &'static str,
        node: Uuid,
        bmc: String,
        reason: String,
    },

    /// An internal event that makes no sense in the node's state (e.g. a ramdisk
    /// heartbeat for a node that is not deploying).
    #[error("node {node} in state \"{state}\" does not accept {event}")]
    UnexpectedEvent {
        node: Uuid,
        state: ProvisionState,
        event: &'static str,
    },
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Validation failures are [`CoreError::Invalid`].
pub type ValidationError = CoreError;
/// State-machine refusals are [`CoreError::VerbNotAllowed`] / [`CoreError::UnexpectedEvent`].
pub type StepError = CoreError;
