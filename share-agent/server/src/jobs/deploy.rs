//! write-image: the conversation with the deploy ramdisk, as Ironic's direct
//! deploy drives it (get_deploy_steps, execute_deploy_step write_image, wait,
//! get_partition_uuids, install_bootloader).
//!
//! Completion is heartbeat driven like Ironic (the ramdisk forces a heartbeat
//! when a command finishes and this agent relays heartbeats, so it wakes the
//! waiting job) with a bounded-backoff poll as a safety net for lost
//! heartbeats. The whole job is bounded by `WriteImage.timeout_s`.

use std::time::Duration;

use boot_media::{Checksum, ImageRef};
use serde_json::{Value, json};
use tokio::time::Instant;
use vmedia_proto::v1 as pb;

use crate::error::AgentError;
use crate::jobs::JobCtx;
use crate::ramdisk::{CommandStatus, RamdiskClient, command_status};
use secret::Secret;

/// Timeout of one ramdisk request (Ironic's `[agent]command_timeout`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll cadence while waiting: starts here, doubles, capped below.
const POLL_START: Duration = Duration::from_secs(1);
const POLL_MAX: Duration = Duration::from_secs(30);

/// The `image_info` Ironic 35.1 sends with write_image (`AgentDeploy.write_image`):
/// the formats as instance_info gives them (`null` when unset: the ramdisk then detects
/// the disk format itself), the checksums, the node, and for a partition image its disk
/// layout (`root_mb` = `root_gb` x 1024, `ephemeral_mb` = `ephemeral_gb` x 1024), boot
/// mode, boot option and partition table. `configdrive` is a separate argument.
pub fn image_info(node: &str, w: &pb::WriteImage, url: &str) -> Value {
    let id = w
        .image_source
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let text_or_null = |s: &str| {
        if s.is_empty() { Value::Null } else { json!(s) }
    };
    let mut info = json!({
        "id": id,
        "urls": [url],
        "disk_format": text_or_null(&w.disk_format),
        "container_format": text_or_null(&w.container_format),
        // Ironic's [agent]stream_raw_images default.
        "stream_raw_images": true,
    });
    if !w.image_checksum.is_empty() {
        info["checksum"] = json!(w.image_checksum);
    }
    if !w.os_hash_algo.is_empty() && !w.os_hash_value.is_empty() {
        info["os_hash_algo"] = json!(w.os_hash_algo);
        info["os_hash_value"] = json!(w.os_hash_value);
    }
    info["node_uuid"] = json!(node);
    if w.image_type == "partition" {
        let p = w.partition.clone().unwrap_or_default();
        info["kernel"] = text_or_null(&p.kernel);
        info["ramdisk"] = text_or_null(&p.ramdisk);
        info["root_gb"] = json!(p.root_gb);
        info["root_mb"] = json!(p.root_gb.saturating_mul(1024));
        info["swap_mb"] = json!(p.swap_mb);
        info["ephemeral_mb"] = json!(p.ephemeral_gb.saturating_mul(1024));
        info["ephemeral_format"] = text_or_null(&p.ephemeral_format);
        info["configdrive"] = Value::Null;
        info["preserve_ephemeral"] = json!(p.preserve_ephemeral);
        info["image_type"] = json!("partition");
        info["deploy_boot_mode"] = json!(if w.boot_mode == "bios" {
            "bios"
        } else {
            "uefi"
        });
        info["boot_option"] = json!(if p.boot_option.is_empty() {
            "local"
        } else {
            p.boot_option.as_str()
        });
        if !p.disk_label.is_empty() {
            info["disk_label"] = json!(p.disk_label);
        }
    }
    info
}

/// The `node` argument of the ramdisk's deploy commands. Ironic sends the whole node
/// (`node.as_dict()`); IPA reads the boot mode from `instance_info.deploy_boot_mode`
/// (else the `boot_mode` capability) and derives the partition table from it (UEFI ->
/// GPT) when it writes a partition image. Without them IPA falls back to the mode its own
/// ramdisk booted in.
pub fn ramdisk_node(node: &str, w: &pb::WriteImage) -> Value {
    let mode = if w.boot_mode == "bios" {
        "bios"
    } else {
        "uefi"
    };
    json!({
        "uuid": node,
        "instance_info": {"deploy_boot_mode": mode},
        "properties": {"capabilities": format!("boot_mode:{mode}")},
    })
}

/// What the fetched image adds to the job, as Ironic fills instance_info from Glance
/// (`_instance_info_for_glance`): Glance's disk and container formats win; an image that
/// came with no checksum at all (a Glance image) is described to the ramdisk by the
/// sha256 this agent computed while caching it, so the ramdisk can verify it.
fn with_image_facts(w: &pb::WriteImage, img: &boot_media::CachedImage) -> pb::WriteImage {
    let mut w = w.clone();
    if let Some(f) = img.disk_format.as_ref().filter(|f| !f.is_empty()) {
        w.disk_format = f.clone();
    }
    if let Some(f) = img.container_format.as_ref().filter(|f| !f.is_empty()) {
        w.container_format = f.clone();
    }
    if w.image_checksum.is_empty()
        && (w.os_hash_algo.is_empty() || w.os_hash_value.is_empty())
        && let Some(sha) = &img.sha256
    {
        w.os_hash_algo = "sha256".into();
        w.os_hash_value = sha.clone();
    }
    w
}

fn checksum(ctx: &JobCtx, w: &pb::WriteImage) -> Result<Option<Checksum>, AgentError> {
    if !w.os_hash_algo.is_empty() && !w.os_hash_value.is_empty() {
        return Checksum::from_os_hash(&w.os_hash_algo, &w.os_hash_value)
            .map(Some)
            .map_err(|e| ctx.media_err("reading os_hash_algo/os_hash_value", e));
    }
    if !w.image_checksum.is_empty() {
        return Checksum::from_image_checksum(&w.image_checksum)
            .map(Some)
            .map_err(|e| ctx.media_err("reading image_checksum", e));
    }
    Ok(None)
}

/// The write-image job.
pub async fn write_image(ctx: &mut JobCtx, w: &pb::WriteImage) -> Result<(), AgentError> {
    if w.timeout_s == 0 {
        return Err(ctx.invalid("timeout_s", "must be greater than 0"));
    }
    if w.agent_token.is_empty() {
        return Err(ctx.invalid("agent_token", "is required"));
    }
    if w.image_source.trim().is_empty() {
        return Err(ctx.invalid("image_source", "is required"));
    }
    if w.image_type == "partition" {
        match &w.partition {
            None => {
                return Err(ctx.invalid(
                    "partition",
                    "is required for a partition image (root_gb, swap_mb, ephemeral_gb, ...)",
                ));
            }
            Some(p) if p.root_gb == 0 => {
                return Err(ctx.invalid("partition.root_gb", "must be greater than 0"));
            }
            Some(_) => {}
        }
    }
    let limit = Duration::from_secs(u64::from(w.timeout_s));
    let agent = ctx.agent.clone();
    let http = agent
        .ramdisk_http_ready(&ctx.node, &w.callback_url)
        .await
        .map_err(|reason| AgentError::Ramdisk {
            node: ctx.node.clone(),
            bmc: ctx.bmc.clone(),
            operation: "connecting to the ramdisk".into(),
            reason,
            transient: false,
        })?;
    let mut ramdisk = RamdiskClient::new(
        http,
        &w.callback_url,
        Secret::new(w.agent_token.clone()),
        &ctx.node,
        &ctx.bmc,
    )?;
    // Heartbeats of this node wake the wait below from now on.
    let wake = agent.heartbeats.subscribe(&ctx.node);
    let mut published = None;
    let mut cached = None;
    let result = tokio::time::timeout(
        limit,
        conversation(ctx, w, &mut ramdisk, &wake, &mut published, &mut cached),
    )
    .await;
    ctx.out.ramdisk_requests = ramdisk.requests;
    // Withdraw the URL and the cache reference whatever happened: a URL is
    // valid only while the job that published it runs.
    if let Some(token) = published {
        agent.publications.unpublish(&token);
    }
    if let Some(img) = cached {
        agent.cache.release(&img, &ctx.node);
    }
    drop(wake);
    agent.heartbeats.forget(&ctx.node);
    match result {
        Ok(r) => r,
        Err(_) => Err(ctx.timeout_err("write_image (WriteImage.timeout_s)", limit)),
    }
}

async fn conversation(
    ctx: &mut JobCtx,
    w: &pb::WriteImage,
    ramdisk: &mut RamdiskClient,
    wake: &tokio::sync::Notify,
    published: &mut Option<String>,
    cached: &mut Option<boot_media::CachedImage>,
) -> Result<(), AgentError> {
    let agent = ctx.agent.clone();
    ctx.progress("fetching the instance image into the cache")
        .await;
    let r =
        ImageRef::parse(&w.image_source).map_err(|e| ctx.media_err("resolving image_source", e))?;
    let sum = checksum(ctx, w)?;
    if !matches!(r, ImageRef::ShareFile(_)) {
        ctx.ensure_space("fetching image_source", &agent.share_root, 0)
            .await?;
    }
    let img = agent
        .cache
        .fetch(&r, sum.as_ref(), &ctx.node)
        .await
        .map_err(|e| ctx.media_err("fetching image_source", e))?;
    let effective = with_image_facts(w, &img);
    let w = &effective;
    let (token, url_path) = agent.publications.publish(&ctx.node, img.path.clone());
    *published = Some(token);
    *cached = Some(img);
    let url = format!("{}{}", agent.cfg.ipa_api_url, url_path);

    ctx.progress("asking the ramdisk for its deploy steps")
        .await;
    let steps = ramdisk
        .command(
            "deploy.get_deploy_steps",
            json!({"node": ramdisk_node(&ctx.node, w), "ports": []}),
            true,
            COMMAND_TIMEOUT,
        )
        .await?;
    let offers_write_image = steps
        .pointer("/command_result/deploy_steps")
        .and_then(Value::as_object)
        .is_some_and(|managers| {
            managers
                .values()
                .filter_map(Value::as_array)
                .flatten()
                .any(|s| {
                    s.get("step").and_then(Value::as_str) == Some("write_image")
                        && s.get("interface").and_then(Value::as_str) == Some("deploy")
                })
        });
    if !offers_write_image {
        return Err(AgentError::Ramdisk {
            node: ctx.node.clone(),
            bmc: ctx.bmc.clone(),
            operation: "deploy.get_deploy_steps".into(),
            reason: "the ramdisk offers no deploy.write_image step".into(),
            transient: false,
        });
    }
    let versions = steps
        .pointer("/command_result/hardware_manager_version")
        .cloned()
        .unwrap_or(Value::Null);

    // Lives until the conversation ends: a published config drive is withdrawn then.
    let configdrive = super::configdrive::prepare(ctx, w).await?;
    let mut info = image_info(&ctx.node, w, &url);
    configdrive.add_to_image_info(&mut info);
    let step = json!({
        "interface": "deploy",
        "step": "write_image",
        "args": {"image_info": info, "configdrive": configdrive.arg.clone()},
    });
    ctx.progress("starting write_image on the ramdisk").await;
    ramdisk
        .command(
            "deploy.execute_deploy_step",
            json!({"step": step, "node": ramdisk_node(&ctx.node, w), "ports": [], "deploy_version": versions}),
            false,
            COMMAND_TIMEOUT,
        )
        .await?;

    ctx.progress("waiting for write_image to finish").await;
    wait_for(ctx, ramdisk, wake, "execute_deploy_step", Some(&step)).await?;

    ctx.progress("reading partition uuids").await;
    let parts = ramdisk
        .command(
            "standby.get_partition_uuids",
            json!({}),
            true,
            COMMAND_TIMEOUT,
        )
        .await?;
    let result = parts.get("command_result").cloned().unwrap_or(Value::Null);
    let root_uuid = result
        .get("root uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    ctx.out.root_uuid = root_uuid.clone();

    let uefi = w.boot_mode != "bios";
    let partition = w.image_type == "partition";
    if (uefi && !partition) || (partition && !root_uuid.is_empty()) {
        ctx.progress("installing the boot loader").await;
        let efi = result
            .get("efi system partition uuid")
            .cloned()
            .unwrap_or(Value::Null);
        let prep = result
            .get("PReP Boot partition uuid")
            .cloned()
            .unwrap_or(Value::Null);
        ramdisk
            .command(
                "image.install_bootloader",
                json!({"root_uuid": root_uuid, "efi_system_part_uuid": efi,
                       "prep_boot_part_uuid": prep,
                       "target_boot_mode": if uefi { "uefi" } else { "bios" }}),
                false,
                COMMAND_TIMEOUT,
            )
            .await?;
        wait_for(ctx, ramdisk, wake, "install_bootloader", None).await?;
    }
    Ok(())
}

/// Waits until the newest command named `name` is no longer RUNNING (and, for
/// a deploy step, reports the step we sent). Woken by heartbeats; polls with
/// a bounded backoff in case heartbeats are lost.
async fn wait_for(
    ctx: &mut JobCtx,
    ramdisk: &mut RamdiskClient,
    wake: &tokio::sync::Notify,
    name: &str,
    step: Option<&Value>,
) -> Result<(), AgentError> {
    let mut interval = POLL_START;
    let started = Instant::now();
    loop {
        match ramdisk.list(COMMAND_TIMEOUT).await {
            Ok(cmds) => {
                let newest = cmds
                    .iter()
                    .rev()
                    .find(|c| c.get("command_name").and_then(Value::as_str) == Some(name));
                if let Some(c) = newest {
                    match command_status(c) {
                        CommandStatus::Running => {}
                        CommandStatus::Succeeded => {
                            let reported = c.pointer("/command_result/deploy_step");
                            // Ironic keeps waiting when the step reported differs.
                            if step.is_none() || reported == step {
                                return Ok(());
                            }
                        }
                        CommandStatus::Failed(text) => {
                            return Err(AgentError::Ramdisk {
                                node: ctx.node.clone(),
                                bmc: ctx.bmc.clone(),
                                operation: name.to_string(),
                                reason: text,
                                transient: false,
                            });
                        }
                        CommandStatus::Other(s) => {
                            return Err(AgentError::Ramdisk {
                                node: ctx.node.clone(),
                                bmc: ctx.bmc.clone(),
                                operation: name.to_string(),
                                reason: format!("unexpected command_status {s}"),
                                transient: false,
                            });
                        }
                    }
                }
            }
            // A ramdisk busy writing may answer slowly; keep waiting (the job
            // timeout bounds the whole wait).
            Err(e) => tracing::debug!(node = %ctx.node, error = %e, "polling the ramdisk failed"),
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {
                interval = (interval * 2).min(POLL_MAX);
            }
        }
        ctx.progress(&format!(
            "waiting for {name} ({}s)",
            started.elapsed().as_secs()
        ))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_info_shape() {
        let w = pb::WriteImage {
            image_source: "http://example.com/images/disk.img".into(),
            image_checksum: "abc".into(),
            os_hash_algo: "sha256".into(),
            os_hash_value: "00".into(),
            disk_format: "qcow2".into(),
            ..Default::default()
        };
        let v = image_info("n1", &w, "http://agent/images/t/disk.img");
        assert_eq!(v["id"], "disk.img");
        assert_eq!(v["urls"][0], "http://agent/images/t/disk.img");
        assert_eq!(v["checksum"], "abc");
        assert_eq!(v["os_hash_algo"], "sha256");
        assert_eq!(v["disk_format"], "qcow2");
        assert_eq!(v["stream_raw_images"], true);
        assert_eq!(v["node_uuid"], "n1");
        assert_eq!(v["container_format"], Value::Null);
        assert!(v.get("image_type").is_none());
        assert!(v.get("root_mb").is_none());
    }

    #[test]
    fn glance_facts_fill_the_job() {
        let w = pb::WriteImage {
            image_source: "glance://5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c11".into(),
            disk_format: "raw".into(),
            ..Default::default()
        };
        let img = boot_media::CachedImage {
            reference: boot_media::ImageRef::parse("glance://5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c11")
                .unwrap(),
            share_relative: "cache/x".into(),
            path: "/nonexistent/x".into(),
            size: 1,
            sha256: Some("c".repeat(64)),
            cached: true,
            disk_format: Some("qcow2".into()),
            container_format: Some("bare".into()),
        };
        let e = with_image_facts(&w, &img);
        let v = image_info("n1", &e, "http://agent/i");
        assert_eq!(v["disk_format"], "qcow2");
        assert_eq!(v["container_format"], "bare");
        assert_eq!(v["os_hash_algo"], "sha256");
        assert_eq!(v["os_hash_value"], "c".repeat(64));
        assert!(v.get("checksum").is_none());
        // A job that has a checksum keeps its own.
        let w = pb::WriteImage {
            image_checksum: "a".repeat(64),
            ..w
        };
        assert!(with_image_facts(&w, &img).os_hash_value.is_empty());
    }

    #[test]
    fn image_info_partition_layout() {
        let w = pb::WriteImage {
            image_source: "http://example.com/images/part.img".into(),
            image_checksum: "a".repeat(64),
            image_type: "partition".into(),
            boot_mode: "bios".into(),
            partition: Some(pb::PartitionImage {
                kernel: "http://example.com/k".into(),
                ramdisk: "http://example.com/r".into(),
                root_gb: 10,
                swap_mb: 512,
                ephemeral_gb: 2,
                ephemeral_format: "ext4".into(),
                boot_option: "local".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = image_info("n1", &w, "http://agent/i");
        assert_eq!(v["disk_format"], Value::Null, "never silently raw");
        assert_eq!(v["root_gb"], 10);
        assert_eq!(v["root_mb"], 10240);
        assert_eq!(v["swap_mb"], 512);
        assert_eq!(v["ephemeral_mb"], 2048);
        assert_eq!(v["ephemeral_format"], "ext4");
        assert_eq!(v["preserve_ephemeral"], false);
        assert_eq!(v["image_type"], "partition");
        assert_eq!(v["deploy_boot_mode"], "bios");
        assert_eq!(v["boot_option"], "local");
        assert!(v.get("disk_label").is_none());
        assert_eq!(v["configdrive"], Value::Null);
    }

    #[test]
    fn ramdisk_node_carries_the_boot_mode() {
        let w = pb::WriteImage {
            boot_mode: "bios".into(),
            ..Default::default()
        };
        let n = ramdisk_node("n1", &w);
        assert_eq!(n["uuid"], "n1");
        assert_eq!(n["instance_info"]["deploy_boot_mode"], "bios");
        assert_eq!(n["properties"]["capabilities"], "boot_mode:bios");
        let uefi = ramdisk_node("n1", &pb::WriteImage::default());
        assert_eq!(uefi["instance_info"]["deploy_boot_mode"], "uefi");
    }
}
