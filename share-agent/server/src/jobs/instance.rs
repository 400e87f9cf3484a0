//! prepare-instance (ramdisk off, media out, boot from disk, a given boot ISO or a
//! netboot ISO built here (`netboot`), power on) and clean-up (everything out, every per-node file deleted).

use std::time::Duration;

use boot_media::ImageRef;
use irmc::{BootPersistence, BootTarget, MediaKind, PowerAction, PowerState};
use serde_json::json;
use vmedia_proto::v1 as pb;

use crate::error::AgentError;
use crate::jobs::JobCtx;
use crate::jobs::netboot;
use crate::jobs::power_text;
use crate::jobs::prepare::{boot_mode, location};
use crate::ramdisk::RamdiskClient;
use secret::Secret;

/// Deletes the node's directory (parameter image and anything else per node).
async fn delete_node_files(ctx: &mut JobCtx) -> Result<(), AgentError> {
    let dir = ctx.agent.node_dir(&ctx.node);
    let freed = dir_allocation(&dir).await;
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {
            ctx.agent.sub_allocated(freed);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ctx.io_err("deleting the node's files", &dir, e)),
    }
}

async fn dir_allocation(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(mut rd) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(e)) = rd.next_entry().await {
            if let Ok(m) = e.metadata().await {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Ejects the CD and the parameter drive(s). `kinds` lists what to eject.
async fn eject(ctx: &mut JobCtx, kinds: &[MediaKind]) -> Result<(), AgentError> {
    let client = ctx.client()?;
    if let Some(first) = kinds.first() {
        ctx.bmc(first.eject_operation(), client.eject_all(kinds))
            .await?;
    }
    ctx.agent.with_node(&ctx.node, |r| r.media_attached = false);
    Ok(())
}

/// Powers the node off: through the ramdisk when we can reach it, then
/// bounded polling of the power state, then a hard power off.
async fn power_off(ctx: &mut JobCtx, callback_url: &str, token: &str) -> Result<(), AgentError> {
    let client = ctx.client()?;
    let limit = ctx.agent.cfg.power_off_timeout;
    if !callback_url.is_empty() {
        ctx.progress("asking the ramdisk to power off").await;
        let http = ctx
            .agent
            .ramdisk_http_ready(&ctx.node, callback_url)
            .await
            .map_err(|reason| AgentError::Ramdisk {
                node: ctx.node.clone(),
                bmc: ctx.bmc.clone(),
                operation: "connecting to the ramdisk".into(),
                reason,
                transient: false,
            })?;
        let mut r = RamdiskClient::new(
            http,
            callback_url,
            Secret::new(token.to_string()),
            &ctx.node,
            &ctx.bmc,
        )?;
        let asked = r
            .command(
                "standby.power_off",
                json!({}),
                false,
                Duration::from_secs(30),
            )
            .await;
        ctx.out.ramdisk_requests += r.requests;
        match asked {
            Ok(_) => {
                match ctx
                    .bmc(
                        "get_power_state",
                        client.wait_power_state(PowerState::Off, limit),
                    )
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        tracing::warn!(node = %ctx.node, error = %e, "soft power off did not finish; forcing it")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(node = %ctx.node, error = %e, "ramdisk power off failed; forcing it")
            }
        }
    } else {
        let s = ctx.bmc("get_power_state", client.power_state()).await?;
        if s == PowerState::Off {
            return Ok(());
        }
    }
    ctx.progress("powering the node off").await;
    ctx.bmc("set_power_state", client.power(PowerAction::Off))
        .await?;
    ctx.bmc(
        "get_power_state",
        client.wait_power_state(PowerState::Off, limit),
    )
    .await
}

/// The prepare-instance job.
pub async fn prepare_instance(ctx: &mut JobCtx, p: &pb::PrepareInstance) -> Result<(), AgentError> {
    let mode = boot_mode(ctx, &p.boot_mode)?;
    let agent = ctx.agent.clone();
    // Netboot needs the root partition UUID from the ramdisk: ask before powering it off.
    let netboot_root = if netboot::wanted(p) {
        netboot::check(ctx, p)?;
        Some(netboot::root_uuid(ctx, p).await?)
    } else {
        None
    };
    power_off(ctx, p.callback_url.trim(), &p.agent_token).await?;

    let caps = ctx.caps().await?;
    let param_drive = if caps.has_virtual_fd {
        MediaKind::Fd
    } else {
        MediaKind::Hd
    };
    ctx.progress("ejecting virtual media").await;
    eject(ctx, &[MediaKind::Cd, param_drive]).await?;

    agent.heartbeats.forget_ca(&ctx.node);
    ctx.progress("deleting the parameter image").await;
    delete_node_files(ctx).await?;
    // The deploy ISO is no longer needed by this node.
    let rec = agent.take_node(&ctx.node);
    for img in rec.cache_refs {
        agent.cache.release(&img, &ctx.node);
    }
    for iso in rec.iso_refs {
        let _ = agent.iso_store.release(&iso, &ctx.node);
    }

    let client = ctx.client()?;
    let boot_iso = if let Some(root_uuid) = &netboot_root {
        Some(netboot::build(ctx, p, root_uuid, mode).await?)
    } else if p.boot_iso.trim().is_empty() {
        None
    } else {
        let r = ImageRef::parse(&p.boot_iso).map_err(|e| ctx.media_err("resolving boot_iso", e))?;
        if !matches!(r, ImageRef::ShareFile(_)) {
            ctx.ensure_space("fetching boot_iso", &agent.share_root, 0)
                .await?;
        }
        let img = agent
            .cache
            .fetch(&r, None, &ctx.node)
            .await
            .map_err(|e| ctx.media_err("fetching boot_iso", e))?;
        let name = img.share_relative.clone();
        agent.with_node(&ctx.node, |rec| rec.cache_refs.push(img));
        Some(name)
    };
    if let Some(name) = boot_iso {
        ctx.progress("attaching the boot ISO").await;
        agent.with_node(&ctx.node, |rec| rec.media_attached = true);
        ctx.bmc(
            MediaKind::Cd.insert_operation(),
            client.attach_on(caps.redfish, MediaKind::Cd, &location(&agent, &name)),
        )
        .await?;
        ctx.bmc(
            "set_boot_device",
            client.set_boot_override(BootTarget::Cd, BootPersistence::Continuous, mode),
        )
        .await?;
    } else {
        ctx.progress("setting persistent boot from disk").await;
        ctx.bmc(
            "set_boot_device",
            client.set_boot_override(BootTarget::Hdd, BootPersistence::Continuous, mode),
        )
        .await?;
    }
    if p.power_on {
        ctx.progress("powering the node on").await;
        ctx.bmc("set_power_state", client.power(PowerAction::On))
            .await?;
        ctx.out.power_state = power_text(PowerState::On).to_string();
    } else {
        ctx.out.power_state = power_text(PowerState::Off).to_string();
    }
    Ok(())
}

/// The clean-up job: files and cache references are released even when the
/// BMC fails, and the BMC error is reported afterwards.
pub async fn clean_up(ctx: &mut JobCtx, c: &pb::CleanUp) -> Result<(), AgentError> {
    let agent = ctx.agent.clone();
    ctx.progress("ejecting virtual media").await;
    let ejected = eject(ctx, &[MediaKind::Cd, MediaKind::Fd, MediaKind::Hd]).await;

    ctx.progress("deleting the node's files").await;
    agent.publications.unpublish_node(&ctx.node);
    agent.heartbeats.forget_ca(&ctx.node);
    let deleted = delete_node_files(ctx).await;
    let rec = agent.take_node(&ctx.node);
    for img in rec.cache_refs {
        agent.cache.release(&img, &ctx.node);
    }
    for iso in rec.iso_refs {
        let _ = agent.iso_store.release(&iso, &ctx.node);
    }
    ejected?;
    deleted?;
    if c.power_off {
        let client = ctx.client()?;
        ctx.progress("powering the node off").await;
        ctx.bmc("set_power_state", client.power(PowerAction::Off))
            .await?;
        ctx.out.power_state = power_text(PowerState::Off).to_string();
    }
    Ok(())
}
