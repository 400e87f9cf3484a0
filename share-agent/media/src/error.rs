//! The crate's single error type. Every variant names what was being done and to what
//! (path, image reference, URL); callers add the node and BMC.

use std::path::PathBuf;

/// Errors from building, storing and fetching boot media.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// A parameter key or value cannot be written to `parameters.txt` / a kernel cmdline.
    #[error("invalid boot parameter {key:?}: {reason}")]
    InvalidParameter { key: String, reason: String },

    /// Building a FAT image failed (in memory; never an input problem unless noted).
    #[error("building FAT {what} failed: {source}")]
    Fat {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A filesystem operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not enough free space on the share (or local disk) for a write.
    #[error("not enough space to write {path}: need {needed} bytes, {free} bytes free")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        free: u64,
    },

    /// Building an ISO image failed.
    #[error("building ISO {path}: {reason}")]
    Iso { path: PathBuf, reason: String },

    /// An external build-time tool (grub-mkstandalone) failed or is missing.
    #[error("running {tool}: {reason}")]
    Tool { tool: String, reason: String },

    /// An image reference could not be parsed or is not allowed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidImageRef { reference: String, reason: String },

    /// A share-relative image does not exist.
    #[error("image {reference:?} not found at {path}")]
    ImageNotFound { reference: String, path: PathBuf },

    /// An HTTP download or Glance call failed.
    #[error("{op} {url}: {reason}")]
    Http {
        op: &'static str,
        url: String,
        reason: String,
    },

    /// Glance is referenced but no Glance endpoint is configured.
    #[error("image {reference:?} is a Glance image but no Glance endpoint is configured")]
    GlanceNotConfigured { reference: String },

    /// A downloaded or local image does not match its expected checksum.
    #[error("checksum mismatch for image {reference:?}: expected {algo} {expected}, got {actual}")]
    ChecksumMismatch {
        reference: String,
        algo: &'static str,
        expected: String,
        actual: String,
    },

    /// A checksum string or algorithm is not understood.
    #[error("invalid checksum {value:?}: {reason}")]
    InvalidChecksum { value: String, reason: String },

    /// A store entry is unknown (release of a name never handed out).
    #[error("unknown {what} {name:?}")]
    UnknownEntry { what: &'static str, name: String },

    /// `instance_info.configdrive` cannot be used (its content is never shown).
    #[error("invalid config drive: {reason}")]
    InvalidConfigDrive { reason: String },

    /// A background task failed (panicked or was cancelled).
    #[error("{op}: background task failed: {reason}")]
    Task { op: &'static str, reason: String },
}

impl MediaError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MediaError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
