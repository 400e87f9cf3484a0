//! Images (deploy ISO, kernel and ramdisk, instance image and checksum), the instance
//! boot ISO and the boot mode, with the aliases and capabilities they can come from.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::err;
use crate::CoreError;
use crate::node::NodeSpec;

/// The disk formats the deploy ramdisk writes (ironic-python-agent 13's
/// `permitted_image_formats`: it refuses any other format it detects).
pub const DISK_FORMATS: [&str; 3] = ["raw", "qcow2", "gpt"];

/// Glance's container formats (`image_container_format`); the ramdisk ignores it.
const CONTAINER_FORMATS: [&str; 8] = [
    "bare",
    "ovf",
    "ova",
    "aki",
    "ari",
    "ami",
    "docker",
    "compressed",
];

/// The image's os_hash pair: Ironic's `image_os_hash_algo`/`image_os_hash_value`, else
/// this system's older `os_hash_algo`/`os_hash_value`.
pub fn os_hash(ii: &BTreeMap<String, String>) -> Option<(&str, &str)> {
    for (a, v) in [
        ("image_os_hash_algo", "image_os_hash_value"),
        ("os_hash_algo", "os_hash_value"),
    ] {
        if let (Some(a), Some(v)) = (ii.get(a), ii.get(v))
            && !a.is_empty()
            && !v.is_empty()
        {
            return Some((a, v));
        }
    }
    None
}

/// The deploy ISO reference, honouring the `irmc_deploy_iso` alias.
pub fn deploy_iso(spec: &NodeSpec) -> Option<&str> {
    alias(&spec.driver_info, "deploy_iso", "irmc_deploy_iso")
}

/// The instance boot ISO reference, honouring the `irmc_boot_iso` alias.
pub fn boot_iso(spec: &NodeSpec) -> Option<&str> {
    alias(&spec.instance_info, "boot_iso", "irmc_boot_iso")
}

/// "uefi" or "bios": `instance_info.deploy_boot_mode`, else the `boot_mode`
/// capability in `properties.capabilities` ("boot_mode:uefi,..."), else "uefi"
/// (Ironic's default since Yoga).
pub fn boot_mode(spec: &NodeSpec) -> &str {
    if let Some(m) = spec.instance_info.get("deploy_boot_mode") {
        return m;
    }
    capability(spec, "boot_mode").unwrap_or("uefi")
}

fn capability<'a>(spec: &'a NodeSpec, name: &str) -> Option<&'a str> {
    let caps = spec.properties.get("capabilities")?;
    caps.split(',').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

fn alias<'a>(map: &'a BTreeMap<String, String>, key: &str, old: &str) -> Option<&'a str> {
    map.get(key)
        .or_else(|| map.get(old))
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn check_boot_media(spec: &NodeSpec) -> Result<(), CoreError> {
    check_alias_pair(
        &spec.driver_info,
        "driver_info",
        "deploy_iso",
        "irmc_deploy_iso",
    )?;
    for k in [
        "deploy_iso",
        "irmc_deploy_iso",
        "deploy_kernel",
        "deploy_ramdisk",
    ] {
        if let Some(v) = spec.driver_info.get(k) {
            check_image_ref(&format!("driver_info.{k}"), v)?;
        }
    }
    Ok(())
}

fn check_alias_pair(
    map: &BTreeMap<String, String>,
    section: &str,
    key: &str,
    old: &str,
) -> Result<(), CoreError> {
    if let (Some(a), Some(b)) = (map.get(key), map.get(old))
        && a != b
    {
        return Err(err(
            format!("{section}.{key}"),
            format!("conflicts with its alias {old} ({a:?} vs {b:?}); set only one"),
        ));
    }
    Ok(())
}

pub(super) fn check_instance_info(
    ii: &BTreeMap<String, String>,
    to_deploy: bool,
) -> Result<(), CoreError> {
    let source = ii.get("image_source").filter(|s| !s.is_empty());
    match source {
        Some(s) => check_image_ref("instance_info.image_source", s)?,
        None if to_deploy => return Err(err("instance_info.image_source", "required to deploy")),
        None => {}
    }
    if let Some(c) = ii.get("image_checksum") {
        check_checksum(c)?;
    }
    for (ka, kv) in [
        ("os_hash_algo", "os_hash_value"),
        ("image_os_hash_algo", "image_os_hash_value"),
    ] {
        check_os_hash(ii, ka, kv)?;
    }
    // Ironic refuses an HTTP image without a checksum: the ramdisk could not verify it.
    if to_deploy
        && let Some(s) = source
        && is_url(s)
        && !ii.contains_key("image_checksum")
        && os_hash(ii).is_none()
    {
        return Err(err(
            "instance_info.image_checksum",
            "required for an http(s) image_source (or image_os_hash_algo + image_os_hash_value)",
        ));
    }
    check_alias_pair(ii, "instance_info", "boot_iso", "irmc_boot_iso")?;
    for k in ["boot_iso", "irmc_boot_iso", "kernel", "ramdisk"] {
        if let Some(v) = ii.get(k) {
            check_image_ref(&format!("instance_info.{k}"), v)?;
        }
    }
    if let Some(f) = ii.get("image_disk_format")
        && !DISK_FORMATS.contains(&f.as_str())
    {
        return Err(err(
            "instance_info.image_disk_format",
            format!(
                "unknown disk format {f:?}; the deploy ramdisk writes {} (leave it unset to let \
                 the ramdisk detect the format)",
                DISK_FORMATS.join(", ")
            ),
        ));
    }
    if let Some(f) = ii.get("image_container_format")
        && !CONTAINER_FORMATS.contains(&f.as_str())
    {
        return Err(err(
            "instance_info.image_container_format",
            format!(
                "unknown container format {f:?}; expected one of {}",
                CONTAINER_FORMATS.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_os_hash(ii: &BTreeMap<String, String>, ka: &str, kv: &str) -> Result<(), CoreError> {
    match (ii.get(ka), ii.get(kv)) {
        (Some(algo), Some(value)) => {
            let len = match algo.as_str() {
                "md5" => 32,
                "sha256" => 64,
                "sha512" => 128,
                _ => {
                    return Err(err(
                        format!("instance_info.{ka}"),
                        format!("must be md5, sha256 or sha512, got {algo:?}"),
                    ));
                }
            };
            if value.len() != len || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(err(
                    format!("instance_info.{kv}"),
                    format!("must be {len} hex digits for {algo}"),
                ));
            }
            Ok(())
        }
        (Some(_), None) => Err(err(
            format!("instance_info.{kv}"),
            format!("required with {ka}"),
        )),
        (None, Some(_)) => Err(err(
            format!("instance_info.{ka}"),
            format!("required with {kv}"),
        )),
        (None, None) => Ok(()),
    }
}

fn check_checksum(c: &str) -> Result<(), CoreError> {
    if is_url(c) {
        return Ok(());
    }
    let hex = c.chars().all(|ch| ch.is_ascii_hexdigit());
    if hex && matches!(c.len(), 32 | 64 | 128) {
        return Ok(());
    }
    Err(err(
        "instance_info.image_checksum",
        format!(
            "must be an md5 (32), sha256 (64) or sha512 (128) hex digest or a URL, got {} characters",
            c.len()
        ),
    ))
}

fn is_url(s: &str) -> bool {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            return !host.is_empty();
        }
    }
    false
}

/// An image reference: share-relative path without "..", http(s) URL, Glance UUID
/// or `glance://<id>` URL.
fn check_image_ref(field: &str, v: &str) -> Result<(), CoreError> {
    if v.is_empty() {
        return Err(err(field, "empty image reference"));
    }
    if v.starts_with("http://") || v.starts_with("https://") {
        return if is_url(v) {
            Ok(())
        } else {
            Err(err(field, format!("URL without a host: {v:?}")))
        };
    }
    if let Some(id) = v.strip_prefix("glance://") {
        return if id.is_empty() || id.contains('/') && Uuid::parse_str(id).is_err() {
            Err(err(field, format!("bad glance:// reference {v:?}")))
        } else {
            Ok(())
        };
    }
    if Uuid::parse_str(v).is_ok() {
        return Ok(());
    }
    if v.contains("://") {
        return Err(err(
            field,
            format!(
                "unsupported scheme in {v:?}; expected a share-relative path, http(s)://, a Glance UUID or glance://"
            ),
        ));
    }
    if v.starts_with('/') || v.starts_with('\\') {
        return Err(err(
            field,
            format!("must be relative to the share root, got {v:?}"),
        ));
    }
    if v.split(['/', '\\']).any(|c| c == "..") {
        return Err(err(field, format!("must not contain \"..\": {v:?}")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(err(field, "control character in path"));
    }
    Ok(())
}

pub(super) fn check_boot_mode(spec: &NodeSpec) -> Result<(), CoreError> {
    if let Some(m) = spec.instance_info.get("deploy_boot_mode")
        && m != "uefi"
        && m != "bios"
    {
        return Err(err(
            "instance_info.deploy_boot_mode",
            format!("must be uefi or bios, got {m:?}"),
        ));
    }
    if let Some(m) = capability(spec, "boot_mode")
        && m != "uefi"
        && m != "bios"
    {
        return Err(err(
            "properties.capabilities",
            format!("boot_mode must be uefi or bios, got {m:?}"),
        ));
    }
    Ok(())
}
