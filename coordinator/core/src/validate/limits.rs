//! Size and shape limits on what an operator (or an import) may store on a node, so that
//! no single request can bloat the store, the engine's memory or every listing, and so
//! that nothing looks like a sealed secret where the store never seals one.
//!
//! The limits are far above what a real node needs: Ironic nodes carry a few dozen
//! driver_info and instance_info keys with short values. The one large value Ironic
//! allows, a gzipped and base64-encoded config drive in `instance_info.configdrive`, gets
//! Ironic's own 64 MiB ceiling.

use std::collections::BTreeMap;

use super::{err, is_secret_key};
use crate::CoreError;
use crate::node::NodeSpec;

/// Most keys in one of driver_info, instance_info, properties and share_selector.
pub const MAX_KEYS: usize = 256;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Longest value, in bytes (except the config drive).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest `instance_info.configdrive` (Ironic's limit for a config drive).
pub const MAX_CONFIGDRIVE_BYTES: usize = 64 * 1024 * 1024;
/// Most port MAC addresses on one node.
pub const MAX_MACS: usize = 64;

/// The prefix the store gives sealed secrets at rest. A value that starts with it in a
/// field the store never seals would be read back as if it were one.
const SEALED_PREFIX: &str = "enc:v1:";

/// Checks the counts and sizes of every map and list of `spec`, and that no non-secret
/// value looks sealed. The first problem wins; the error names the field.
pub(super) fn check_limits(spec: &NodeSpec) -> Result<(), CoreError> {
    check_map("driver_info", &spec.driver_info, false)?;
    check_map("instance_info", &spec.instance_info, true)?;
    check_map("properties", &spec.properties, false)?;
    check_map("share_selector", &spec.share_selector, false)?;
    if spec.macs.len() > MAX_MACS {
        return Err(err(
            "macs",
            format!("{} MAC addresses; at most {MAX_MACS}", spec.macs.len()),
        ));
    }
    if let Some(name) = &spec.name
        && name.starts_with(SEALED_PREFIX)
    {
        return Err(err(
            "name",
            format!("must not start with {SEALED_PREFIX:?}"),
        ));
    }
    Ok(())
}

fn check_map(
    what: &str,
    map: &BTreeMap<String, String>,
    may_hold_configdrive: bool,
) -> Result<(), CoreError> {
    if map.len() > MAX_KEYS {
        return Err(err(what, format!("{} keys; at most {MAX_KEYS}", map.len())));
    }
    for (k, v) in map {
        if k.len() > MAX_KEY_BYTES {
            return Err(err(
                what,
                format!("a key of {} bytes; at most {MAX_KEY_BYTES}", k.len()),
            ));
        }
        let limit = if may_hold_configdrive && k == "configdrive" {
            MAX_CONFIGDRIVE_BYTES
        } else {
            MAX_VALUE_BYTES
        };
        if v.len() > limit {
            return Err(err(
                format!("{what}.{k}"),
                format!("{} bytes; at most {limit}", v.len()),
            ));
        }
        if v.starts_with(SEALED_PREFIX) && !is_secret_key(k) {
            return Err(err(
                format!("{what}.{k}"),
                format!(
                    "must not start with {SEALED_PREFIX:?}: the store reads such values as sealed secrets"
                ),
            ));
        }
    }
    Ok(())
}
