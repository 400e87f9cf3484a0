//! The config drive of a write-image job: `WriteImage.configdrive` (the node's
//! `instance_info.configdrive`) resolved to what the ramdisk's write_image takes as its
//! `configdrive` argument (and, as Ironic sends it, `image_info.configdrive`).
//!
//! - a URL is passed through (the ramdisk downloads it);
//! - a gzipped, base64-encoded ISO is checked (base64, gzip, decoded size against the
//!   ramdisk's 64 MiB limit) and passed through;
//! - the JSON form is built into a `config-2` ISO (see `boot_media::configdrive`).
//!
//! Encoded text over [`INLINE_LIMIT`] characters is not inlined: it is written to the
//! node's directory (mode 0600, it may hold secrets) and published on this agent's image
//! server under a fresh random URL for this job only, the way Ironic hands a large
//! drive over through its object store or HTTP server. The [`PreparedConfigDrive`]
//! withdraws the URL and deletes the file when dropped, that is when the job ends
//! whatever way it ends.

use std::path::PathBuf;
use std::sync::Arc;

use boot_media::configdrive::{self, INLINE_LIMIT, ResolvedConfigDrive};
use serde_json::Value;
use vmedia_proto::v1 as pb;

use crate::error::AgentError;
use crate::jobs::JobCtx;
use crate::state::Agent;

/// The file name of a published config drive inside the node's directory.
pub const FILE_NAME: &str = "configdrive";

/// A resolved config drive; dropping it withdraws its publication.
pub struct PreparedConfigDrive {
    /// The `configdrive` argument: a string (URL or gzip+base64) or null.
    pub arg: Value,
    publication: Option<(Arc<Agent>, String, PathBuf)>,
}

impl PreparedConfigDrive {
    /// True when the drive is served over HTTP rather than inlined.
    pub fn published(&self) -> bool {
        self.publication.is_some()
    }

    /// Sets `image_info.configdrive` as Ironic does (it sends the drive in both places).
    pub fn add_to_image_info(&self, info: &mut Value) {
        if !self.arg.is_null()
            && let Some(m) = info.as_object_mut()
        {
            m.insert("configdrive".into(), self.arg.clone());
        }
    }
}

impl Drop for PreparedConfigDrive {
    fn drop(&mut self) {
        if let Some((agent, token, path)) = self.publication.take() {
            agent.publications.unpublish(&token);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a published config drive");
            }
        }
    }
}

/// Resolves the job's config drive (see the module header).
pub async fn prepare(ctx: &JobCtx, w: &pb::WriteImage) -> Result<PreparedConfigDrive, AgentError> {
    let none = PreparedConfigDrive {
        arg: Value::Null,
        publication: None,
    };
    if w.configdrive.trim().is_empty() {
        return Ok(none);
    }
    ctx.progress("preparing the config drive").await;
    let (value, uuid, name) = (w.configdrive.clone(), ctx.node.clone(), w.node_name.clone());
    // Building an ISO or gunzipping up to 64 MiB is CPU work: off the runtime threads.
    let resolved = tokio::task::spawn_blocking(move || {
        configdrive::resolve(&value, &uuid, Some(name.as_str()).filter(|n| !n.is_empty()))
    })
    .await
    .map_err(|e| {
        ctx.invalid(
            "configdrive",
            format!("preparing it failed in a background task: {e}"),
        )
    })?
    .map_err(|e| ctx.media_err("preparing instance_info.configdrive", e))?;
    match resolved {
        None => Ok(none),
        Some(ResolvedConfigDrive::Inline(s)) => Ok(PreparedConfigDrive {
            arg: Value::String(s),
            publication: None,
        }),
        Some(ResolvedConfigDrive::Publish(bytes)) => publish(ctx, &bytes).await,
    }
}

async fn publish(ctx: &JobCtx, bytes: &[u8]) -> Result<PreparedConfigDrive, AgentError> {
    let agent = ctx.agent.clone();
    let dir = agent.node_dir(&ctx.node);
    let path = dir.join(FILE_NAME);
    ctx.ensure_space("publishing the config drive", &dir, bytes.len() as u64)
        .await?;
    let (p, data) = (path.clone(), bytes.to_vec());
    tokio::task::spawn_blocking(move || write_private(&p, &data))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| ctx.io_err("writing the config drive", &path, e))?;
    let (token, url_path) = agent.publications.publish(&ctx.node, path.clone());
    tracing::info!(node = %ctx.node, bytes = bytes.len(), limit = INLINE_LIMIT, "config drive served over HTTP");
    Ok(PreparedConfigDrive {
        arg: Value::String(format!("{}{url_path}", agent.cfg.ipa_api_url)),
        publication: Some((agent, token, path)),
    })
}

/// Writes `data` to `path` readable by its owner only, never visible half-written.
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}
