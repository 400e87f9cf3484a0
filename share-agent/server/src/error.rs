//! The crate's one error type. Every job failure names the node, the BMC and
//! the operation; start-up and config failures name the option.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration value is invalid.
    #[error("{option}: {reason}")]
    Config {
        /// The option, by its TOML/Ironic name.
        option: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A start-up check refused the share.
    #[error("{option}: {reason}")]
    Startup {
        /// The option whose value failed the check.
        option: String,
        /// Why.
        reason: String,
    },

    /// The job as sent by the coordinator cannot be run.
    #[error("node {node}: invalid job field {field}: {reason}")]
    InvalidJob {
        /// Node uuid.
        node: String,
        /// The offending field.
        field: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The iRMC failed an operation. `reason` is the client's text, which
    /// already reads "iRMC <operation> failed on <bmc> (node <uuid>). Reason: ...".
    #[error("{reason}")]
    Bmc {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// What we asked the BMC to do.
        operation: String,
        /// The client's error text.
        reason: String,
        /// Worth retrying (connect failure, timeout, 5xx).
        transient: bool,
    },

    /// Building or fetching boot media failed.
    #[error("node {node}: BMC {bmc}: {operation} failed: {reason}")]
    Media {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// Which media step.
        operation: String,
        /// The media library's error text.
        reason: String,
    },

    /// The share has not enough free space for a write.
    #[error(
        "node {node}: BMC {bmc}: {operation} failed: share full at '{}': need {needed} bytes + {reserve} reserved, {free} free",
        path.display()
    )]
    ShareFull {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// Which write.
        operation: String,
        /// The file that was to be written.
        path: PathBuf,
        /// Bytes the write needs.
        needed: u64,
        /// Bytes free on the share.
        free: u64,
        /// Bytes kept free by configuration.
        reserve: u64,
    },

    /// A file operation on the share failed.
    #[error("node {node}: BMC {bmc}: {operation} failed on '{}': {source}", path.display())]
    Io {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// Which file operation.
        operation: String,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The deploy ramdisk refused or failed a command.
    #[error("node {node}: BMC {bmc}: ramdisk {operation} failed: {reason}")]
    Ramdisk {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// The ramdisk command.
        operation: String,
        /// Why (the ramdisk's command_error text, HTTP status ...).
        reason: String,
        /// Worth retrying.
        transient: bool,
    },

    /// An operation did not finish in time.
    #[error("node {node}: BMC {bmc}: {operation} timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// Node uuid.
        node: String,
        /// BMC address.
        bmc: String,
        /// What we waited for.
        operation: String,
        /// How long we waited.
        after: Duration,
    },

    /// The coordinator link failed.
    #[error("coordinator {endpoint}: {operation} failed: {reason}")]
    Coordinator {
        /// Coordinator endpoint.
        endpoint: String,
        /// What we tried.
        operation: String,
        /// Why.
        reason: String,
    },

    /// The agent could not serve HTTP.
    #[error("http listener {addr}: {reason}")]
    Http {
        /// Listen address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl AgentError {
    /// A configuration error naming the option.
    pub fn config(option: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            option: option.to_string(),
            reason: reason.into(),
        }
    }

    /// A start-up refusal naming the option.
    pub fn startup(option: &str, reason: impl Into<String>) -> Self {
        Self::Startup {
            option: option.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the coordinator may retry the job as is (BMC unreachable, share full ...).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Bmc { transient, .. } | Self::Ramdisk { transient, .. } => *transient,
            Self::ShareFull { .. } | Self::Timeout { .. } => true,
            _ => false,
        }
    }
}
