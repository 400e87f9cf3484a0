//! Netboot at prepare-instance: a partition image deployed with `boot_option: netboot`
//! and no `boot_iso` boots from a boot ISO built here from the image's kernel and
//! ramdisk, with `root=UUID=<root partition UUID>` (see `boot_media::netboot`).
//!
//! The root UUID is asked from the deploy ramdisk (`standby.get_partition_uuids`, the
//! call Ironic makes after write_image) while it still runs, before it is powered off.
//! The ISO goes into the content-addressed ISO store; this node holds a reference to it
//! (and to the cached kernel and ramdisk) until its clean-up.

use std::time::Duration;

use boot_media::{ImageRef, Loaders, NetbootSpec};
use irmc::BootMode;
use serde_json::{Value, json};
use vmedia_proto::v1 as pb;

use crate::error::AgentError;
use crate::jobs::JobCtx;
use crate::ramdisk::RamdiskClient;
use secret::Secret;

/// True when this prepare-instance builds a netboot ISO.
pub fn wanted(p: &pb::PrepareInstance) -> bool {
    p.boot_option == "netboot" && p.boot_iso.trim().is_empty()
}

/// Checks the job's netboot fields before anything is done to the node.
pub fn check(ctx: &JobCtx, p: &pb::PrepareInstance) -> Result<(), AgentError> {
    for (field, value) in [("kernel", &p.kernel), ("ramdisk", &p.ramdisk)] {
        if value.trim().is_empty() {
            return Err(ctx.invalid(
                field,
                "is required for boot_option netboot without a boot_iso (instance_info.kernel and .ramdisk of the partition image)",
            ));
        }
    }
    if p.callback_url.trim().is_empty() {
        return Err(ctx.invalid(
            "callback_url",
            "is required for boot_option netboot: the root partition UUID is read from the deploy ramdisk",
        ));
    }
    Ok(())
}

/// The root partition's UUID, from the running deploy ramdisk.
pub async fn root_uuid(ctx: &mut JobCtx, p: &pb::PrepareInstance) -> Result<String, AgentError> {
    ctx.progress("reading the root partition UUID from the ramdisk")
        .await;
    let ramdisk_err = |ctx: &JobCtx, reason: String| AgentError::Ramdisk {
        node: ctx.node.clone(),
        bmc: ctx.bmc.clone(),
        operation: "standby.get_partition_uuids".into(),
        reason,
        transient: false,
    };
    let http = ctx
        .agent
        .ramdisk_http_for(&ctx.node, p.callback_url.trim())
        .map_err(|reason| ramdisk_err(ctx, reason))?;
    let mut r = RamdiskClient::new(
        http,
        p.callback_url.trim(),
        Secret::new(p.agent_token.clone()),
        &ctx.node,
        &ctx.bmc,
    )?;
    let got = r
        .command(
            "standby.get_partition_uuids",
            json!({}),
            true,
            Duration::from_secs(60),
        )
        .await;
    ctx.out.ramdisk_requests += r.requests;
    let got = got?;
    let uuid = got
        .pointer("/command_result/root uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    if uuid.is_empty() {
        return Err(ramdisk_err(
            ctx,
            "the ramdisk reported no root uuid (was a partition image written?)".into(),
        ));
    }
    ctx.out.root_uuid = uuid.clone();
    Ok(uuid)
}

/// Fetches kernel and ramdisk, builds (or reuses) the netboot ISO and records this
/// node's references; returns the ISO's share-relative name.
pub async fn build(
    ctx: &mut JobCtx,
    p: &pb::PrepareInstance,
    root_uuid: &str,
    mode: BootMode,
) -> Result<String, AgentError> {
    let agent = ctx.agent.clone();
    ctx.ensure_space("building the netboot ISO", &agent.share_root, 0)
        .await?;
    let mut refs = Vec::new();
    for (field, value) in [("kernel", &p.kernel), ("ramdisk", &p.ramdisk)] {
        let fetched = match ImageRef::parse(value) {
            Ok(r) => agent.cache.fetch(&r, None, &ctx.node).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(img) => refs.push(img),
            Err(e) => {
                for img in refs {
                    agent.cache.release(&img, &ctx.node);
                }
                return Err(ctx.media_err(&format!("fetching instance_info.{field}"), e));
            }
        }
    }
    let b = &agent.cfg.bootloader;
    let spec = NetbootSpec {
        kernel: refs[0].path.clone(),
        ramdisk: refs[1].path.clone(),
        root_uuid: root_uuid.to_string(),
        kernel_append_params: p.kernel_append_params.clone(),
        bios: mode == BootMode::Legacy,
        uefi: mode == BootMode::Uefi,
        loaders: Loaders {
            isolinux_bin: b.isolinux_bin.clone(),
            ldlinux_c32: b.ldlinux_c32.clone(),
            grub_efi: b.grub_efi.clone(),
            ..Loaders::default()
        },
    };
    let built = match spec.to_boot_spec() {
        Ok(boot_spec) => {
            ctx.progress("building the netboot ISO").await;
            agent
                .iso_store
                .get_or_build_async(boot_spec, ctx.node.clone())
                .await
        }
        Err(e) => Err(e),
    };
    let handle = match built {
        Ok(h) => h,
        Err(e) => {
            for img in refs {
                agent.cache.release(&img, &ctx.node);
            }
            return Err(ctx.media_err("building the netboot ISO", e));
        }
    };
    if handle.built {
        ctx.out.files_written += 1;
        ctx.out.bytes_written += handle.size;
    }
    let name = handle.share_relative.clone();
    agent.with_node(&ctx.node, |rec| {
        rec.cache_refs.extend(refs);
        rec.iso_refs.push(name.clone());
    });
    Ok(name)
}
