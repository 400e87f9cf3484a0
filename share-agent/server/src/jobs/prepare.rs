//! prepare-ramdisk: deploy ISO on the share, the node's parameter image,
//! media attached, one-time boot from the remote CD, power on.
//!
//! The media path comes from the capability table (report.xml): a firmware with a
//! virtual floppy takes the SCCI floppy; one without a floppy but with usable Redfish
//! takes Fujitsu's Redfish virtual media for the HD image and the CD (4 requests per
//! attach instead of 2; SCCI again when that BMC answers 404); the rest take the SCCI
//! hard disk. Ejects stay on SCCI (its settings pre-check sees drives attached either
//! way).
//!
//! BMC cost (Basic auth, measured against irmc-sim): 2 settings GETs for the
//! eject pre-checks (+ 2 POSTs when media were attached), 2 POSTs per attach
//! (FD/HD, CD), 1 PATCH for the boot override, 1 GET power state, 1 POST
//! power: 9 requests for a node with nothing attached, 11 for a re-prepare.
//! The first job on a BMC adds one GET of /report.xml (cached per BMC).

use std::collections::BTreeMap;

use boot_media::{DeployIsoSpec, ImageForm, ImageRef, Loaders, Parameters};
use irmc::{
    BootMode, BootPersistence, BootTarget, MediaKind, MediaLocation, PowerAction, PowerState,
};
use vmedia_proto::v1 as pb;

use crate::config::ShareType;
use crate::error::AgentError;
use crate::jobs::JobCtx;
use crate::state::{Agent, PARAMS_FILE};

/// Parses `boot_mode` ("uefi" default | "bios").
pub fn boot_mode(ctx: &JobCtx, s: &str) -> Result<BootMode, AgentError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "uefi" => Ok(BootMode::Uefi),
        "bios" | "legacy" => Ok(BootMode::Legacy),
        other => Err(ctx.invalid("boot_mode", format!("{other:?} is not uefi or bios"))),
    }
}

/// Where the iRMC finds `image_name` on our share.
pub fn location(agent: &Agent, image_name: &str) -> MediaLocation {
    let s = &agent.cfg.share;
    MediaLocation {
        server: s.remote_image_server.clone(),
        share_type: match s.remote_image_share_type {
            ShareType::Cifs => irmc::ShareType::Cifs,
            ShareType::Nfs => irmc::ShareType::Nfs,
        },
        share_name: s.remote_image_share_name.clone(),
        image_name: image_name.to_string(),
        user_name: s.remote_image_user_name.clone(),
        password: s.remote_image_user_password.clone(),
        domain: s.remote_image_user_domain.clone(),
    }
}

/// The kind of drive the parameter image goes on for this BMC.
pub fn param_kind(has_virtual_fd: bool) -> (ImageForm, MediaKind) {
    if has_virtual_fd {
        (ImageForm::Floppy, MediaKind::Fd)
    } else {
        (ImageForm::HardDisk, MediaKind::Hd)
    }
}

/// The parameters.txt content, in a stable order: ipa-api-url,
/// ipa-agent-token, BOOTIF, boot_method, then extra params sorted by key.
pub fn parameters(
    ctx: &JobCtx,
    api_url: &str,
    p: &pb::PrepareRamdisk,
) -> Result<Parameters, AgentError> {
    let mut params = Parameters::new();
    let push = |params: &mut Parameters, k: &str, v: &str| {
        params
            .push(k, v)
            .map_err(|e| ctx.media_err("building parameters.txt", e))
    };
    push(&mut params, "ipa-api-url", api_url)?;
    push(&mut params, "ipa-agent-token", &p.agent_token)?;
    if !p.bootif.trim().is_empty() {
        push(&mut params, "BOOTIF", p.bootif.trim())?;
    }
    push(&mut params, "boot_method", "vmedia")?;
    let extra: BTreeMap<&String, &String> = p.extra_params.iter().collect();
    for (k, v) in extra {
        if matches!(
            k.as_str(),
            "ipa-api-url" | "ipa-agent-token" | "BOOTIF" | "boot_method"
        ) {
            return Err(ctx.invalid(
                "extra_params",
                format!("{k:?} is set by the agent and cannot be overridden"),
            ));
        }
        push(&mut params, k, v)?;
    }
    Ok(params)
}

/// Makes sure the deploy ISO is on the share; returns its share-relative name.
async fn deploy_iso(
    ctx: &mut JobCtx,
    p: &pb::PrepareRamdisk,
    mode: BootMode,
) -> Result<String, AgentError> {
    let agent = ctx.agent.clone();
    if !p.deploy_iso.trim().is_empty() {
        let r =
            ImageRef::parse(&p.deploy_iso).map_err(|e| ctx.media_err("resolving deploy_iso", e))?;
        let needs_fetch = !matches!(r, ImageRef::ShareFile(_));
        if needs_fetch {
            ctx.ensure_space("fetching deploy_iso", &agent.share_root, 0)
                .await?;
        }
        let img = agent
            .cache
            .fetch(&r, None, &ctx.node)
            .await
            .map_err(|e| ctx.media_err("fetching deploy_iso", e))?;
        let name = img.share_relative.clone();
        let old = agent.with_node(&ctx.node, |rec| {
            std::mem::replace(&mut rec.cache_refs, vec![img])
        });
        for o in old {
            agent.cache.release(&o, &ctx.node);
        }
        return Ok(name);
    }
    if p.deploy_kernel.trim().is_empty() || p.deploy_ramdisk.trim().is_empty() {
        return Err(ctx.invalid(
            "deploy_iso",
            "neither deploy_iso nor deploy_kernel + deploy_ramdisk given",
        ));
    }
    ctx.ensure_space("building the deploy ISO", &agent.share_root, 0)
        .await?;
    let mut refs = Vec::new();
    for (field, value) in [
        ("deploy_kernel", &p.deploy_kernel),
        ("deploy_ramdisk", &p.deploy_ramdisk),
    ] {
        let r =
            ImageRef::parse(value).map_err(|e| ctx.media_err(&format!("resolving {field}"), e))?;
        let img = agent
            .cache
            .fetch(&r, None, &ctx.node)
            .await
            .map_err(|e| ctx.media_err(&format!("fetching {field}"), e))?;
        refs.push(img);
    }
    let mut shared = Parameters::new();
    shared
        .push("ipa-api-url", agent.cfg.ipa_api_url.as_str())
        .map_err(|e| ctx.media_err("building the deploy ISO", e))?;
    let b = &agent.cfg.bootloader;
    let loaders = Loaders {
        isolinux_bin: b.isolinux_bin.clone(),
        ldlinux_c32: b.ldlinux_c32.clone(),
        grub_efi: b.grub_efi.clone(),
        ..Loaders::default()
    };
    let spec = DeployIsoSpec {
        kernel: refs[0].path.clone(),
        ramdisk: refs[1].path.clone(),
        params: shared,
        extra_cmdline: p.kernel_append_params.clone(),
        bios: mode == BootMode::Legacy,
        uefi: mode == BootMode::Uefi,
        loaders,
    };
    let boot_spec = spec
        .to_boot_spec()
        .map_err(|e| ctx.media_err("building the deploy ISO", e))?;
    ctx.progress("building the deploy ISO").await;
    let handle = agent
        .iso_store
        .get_or_build_async(boot_spec, ctx.node.clone())
        .await
        .map_err(|e| ctx.media_err("building the deploy ISO", e))?;
    if handle.built {
        ctx.out.files_written += 1;
        ctx.out.bytes_written += handle.size;
    }
    let name = handle.share_relative.clone();
    let (old_refs, old_isos) = agent.with_node(&ctx.node, |rec| {
        (
            std::mem::replace(&mut rec.cache_refs, refs),
            std::mem::replace(&mut rec.iso_refs, vec![name.clone()]),
        )
    });
    for o in old_refs {
        agent.cache.release(&o, &ctx.node);
    }
    for o in old_isos.into_iter().filter(|o| *o != name) {
        let _ = agent.iso_store.release(&o, &ctx.node);
    }
    Ok(name)
}

/// Writes the node's parameter image; returns its share-relative name.
pub async fn write_param_image(
    ctx: &mut JobCtx,
    params: &Parameters,
    form: ImageForm,
) -> Result<String, AgentError> {
    let agent = ctx.agent.clone();
    // Sparse all the way: the image is never expanded to its 1.4/4 MiB, only its few
    // non-zero blocks are built and written.
    let image = boot_media::parameter_image_sparse(params, form)
        .map_err(|e| ctx.media_err("building the parameter image", e))?;
    let dir = agent.node_dir(&ctx.node);
    let path = dir.join(PARAMS_FILE);
    let needed = image.allocated_bytes();
    ctx.ensure_space("writing the parameter image", &path, needed)
        .await?;
    // Directory, old size and the write in one trip to the blocking pool, not three.
    enum Step {
        Dir(std::io::Error),
        Write(boot_media::MediaError),
    }
    let (d2, p2) = (dir.clone(), path.clone());
    let done = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(&d2).map_err(Step::Dir)?;
        let old_alloc = std::fs::metadata(&p2).map(|m| m.blocks() * 512);
        let stats = boot_media::write_atomic_sparse(&p2, &image).map_err(Step::Write)?;
        Ok::<_, Step>((old_alloc, stats))
    })
    .await
    .map_err(|e| {
        ctx.io_err(
            "writing the parameter image",
            &path,
            std::io::Error::other(e.to_string()),
        )
    })?;
    let (old_alloc, stats) = done.map_err(|e| match e {
        Step::Dir(e) => ctx.io_err("creating the node directory", &dir, e),
        Step::Write(e) => ctx.media_err("writing the parameter image", e),
    })?;
    if let Ok(old) = old_alloc {
        agent.sub_allocated(old);
    }
    agent.add_allocated(stats.bytes_allocated);
    ctx.out.bytes_written += stats.bytes_written;
    ctx.out.bytes_allocated += stats.bytes_allocated;
    ctx.out.files_written += 1;
    Ok(Agent::params_share_name(&ctx.node))
}

/// The prepare-ramdisk job.
pub async fn prepare_ramdisk(ctx: &mut JobCtx, p: &pb::PrepareRamdisk) -> Result<(), AgentError> {
    if p.agent_token.trim().is_empty() {
        return Err(ctx.invalid("agent_token", "is required (goes into parameters.txt)"));
    }
    let mode = boot_mode(ctx, &p.boot_mode)?;
    let agent = ctx.agent.clone();
    let params = parameters(ctx, &agent.cfg.ipa_api_url, p)?;

    ctx.progress("resolving the deploy ISO").await;
    let iso = deploy_iso(ctx, p, mode).await?;

    ctx.progress("reading BMC capabilities").await;
    let caps = ctx.caps().await?;
    let (form, kind) = param_kind(caps.has_virtual_fd);

    ctx.progress("writing the parameter image").await;
    let image = write_param_image(ctx, &params, form).await?;

    let client = ctx.client()?;
    ctx.progress("ejecting virtual media").await;
    ctx.bmc(
        MediaKind::Cd.eject_operation(),
        client.eject_all(&[MediaKind::Cd, kind]),
    )
    .await?;

    ctx.progress("attaching the parameter image").await;
    ctx.bmc(
        kind.insert_operation(),
        client.attach_on(caps.redfish, kind, &location(&agent, &image)),
    )
    .await?;
    agent.with_node(&ctx.node, |r| r.media_attached = true);
    ctx.progress("attaching the deploy ISO").await;
    ctx.bmc(
        MediaKind::Cd.insert_operation(),
        client.attach_on(caps.redfish, MediaKind::Cd, &location(&agent, &iso)),
    )
    .await?;

    ctx.progress("setting one-time boot from the virtual CD")
        .await;
    ctx.bmc(
        "set_boot_device",
        client.set_boot_override(BootTarget::Cd, BootPersistence::Once, mode),
    )
    .await?;

    let state = ctx.bmc("get_power_state", client.power_state()).await?;
    let action = if matches!(state, PowerState::On | PowerState::PoweringOn) {
        PowerAction::Reset
    } else {
        PowerAction::On
    };
    ctx.progress(if action == PowerAction::Reset {
        "resetting the node"
    } else {
        "powering the node on"
    })
    .await;
    ctx.bmc("set_power_state", client.power(action)).await?;
    ctx.out.power_state = "power on".to_string();
    Ok(())
}
