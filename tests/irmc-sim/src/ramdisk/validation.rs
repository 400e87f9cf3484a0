//! What ironic-python-agent 13.0 accepts in `image_info`, and the errors it gives
//! otherwise, written from its `standby` extension and partition code:
//!
//! 1. `_validate_image_info` (before the write starts; `InvalidCommandParamsError`, 400):
//!    `id` and `urls` present, `urls` a non-empty list, a usable checksum.
//! 2. The partition-image arguments (`_write_partition_image`, `work_on_disk`): the keys
//!    are read with `image_info[...]`, so a missing one fails the command with the
//!    Python `KeyError` text (`'root_mb'`) as a `CommandExecutionError`; sizes go through
//!    `int()`.
//! 3. The disk format (`disk_utils.get_and_validate_image_format`): `raw` and `gpt` are
//!    written as they are; anything else is inspected, must be one of
//!    `permitted_image_formats` (raw, gpt, qcow2) and must match what Ironic said.

use serde_json::Value;

use super::commands::ApiError;

/// IPA's `[DEFAULT]permitted_image_formats`.
pub const PERMITTED_IMAGE_FORMATS: [&str; 3] = ["raw", "gpt", "qcow2"];

fn bad_params(details: &str) -> ApiError {
    ApiError::new(
        400,
        "InvalidCommandParamsError",
        "Invalid command parameters",
        details,
    )
}

fn execution_error(details: &str) -> ApiError {
    ApiError::new(
        500,
        "CommandExecutionError",
        "Command execution failed",
        details,
    )
}

fn non_empty_str(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// Python truthiness of a JSON value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// IPA's `standby._validate_image_info`, with its error texts.
pub fn validate_image_info(info: &Value, md5_allowed: bool) -> Result<(), ApiError> {
    let empty = serde_json::Map::new();
    let obj = match info {
        Value::Object(o) => o,
        // `image_info or {}`: null (or any falsy value) is an empty dictionary.
        _ => &empty,
    };
    for field in ["id", "urls"] {
        if !obj.contains_key(field) {
            return Err(bad_params(&format!("Image is missing '{field}' field.")));
        }
    }
    match obj.get("urls") {
        Some(Value::Array(a)) if !a.is_empty() => {}
        _ => {
            return Err(bad_params(
                "Image 'urls' must be a list with at least one element.",
            ));
        }
    }
    let mut checksum_avail = false;
    let mut md5sum_avail = false;
    match obj.get("checksum") {
        None | Some(Value::Null) => {}
        Some(c) => {
            let Some(c) = c.as_str().filter(|s| !s.is_empty()) else {
                return Err(bad_params("Image 'checksum' must be a non-empty string."));
            };
            if c.starts_with("http://") || c.starts_with("https://") || c.chars().count() > 32 {
                checksum_avail = true;
            } else if md5_allowed {
                md5sum_avail = true;
            }
        }
    }
    let mut os_hash_avail = false;
    if truthy(obj.get("os_hash_algo")) || truthy(obj.get("os_hash_value")) {
        if !non_empty_str(obj.get("os_hash_algo")) {
            return Err(bad_params(
                "Image 'os_hash_algo' must be a non-empty string.",
            ));
        }
        if !non_empty_str(obj.get("os_hash_value")) {
            return Err(bad_params(
                "Image 'os_hash_value' must be a non-empty string.",
            ));
        }
        os_hash_avail = true;
    }
    if !(checksum_avail || md5sum_avail || os_hash_avail) {
        return Err(bad_params(
            "Image checksum is not available, either the 'checksum' field or the \
             'os_hash_algo' and 'os_hash_value' fields pair must be set for image \
             verification.",
        ));
    }
    Ok(())
}

/// Python's `int(v)` on a JSON value, with its error texts.
fn python_int(v: &Value) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .ok_or_else(|| execution_error(&format!("cannot convert {n} to integer"))),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| {
            execution_error(&format!("invalid literal for int() with base 10: '{s}'"))
        }),
        Value::Null => Err(execution_error(
            "int() argument must be a string, a bytes-like object or a real number, not \
             'NoneType'",
        )),
        Value::Array(_) => Err(execution_error(
            "int() argument must be a string, a bytes-like object or a real number, not \
             'list'",
        )),
        Value::Object(_) => Err(execution_error(
            "int() argument must be a string, a bytes-like object or a real number, not \
             'dict'",
        )),
    }
}

/// A partition image's layout, read in IPA's order; `image_mb` is the image's size when
/// it was downloaded before partitioning (IPA then compares it with the root partition).
pub fn partition_layout(info: &Value, image_mb: Option<u64>) -> Result<(), ApiError> {
    let key = |k: &str| {
        info.get(k)
            .ok_or_else(|| execution_error(&format!("'{k}'")))
    };
    key("preserve_ephemeral")?;
    let root_mb = key("root_mb")?;
    if let Some(size) = image_mb {
        let root = python_int(root_mb)?;
        if i64::try_from(size).unwrap_or(i64::MAX) > root {
            return Err(bad_params(&format!(
                "Root partition is too small for requested image. Image virtual size: {size} \
                 MB, Root size: {} MB",
                display_python(root_mb)
            )));
        }
    }
    for k in ["swap_mb", "ephemeral_mb", "ephemeral_format"] {
        key(k)?;
    }
    for k in ["root_mb", "swap_mb", "ephemeral_mb"] {
        python_int(key(k)?)?;
    }
    Ok(())
}

fn display_python(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The format IPA's inspector would detect in the image's first bytes (the simulator
/// knows qcow2's magic; anything else reads as raw).
pub fn detect_format(head: &[u8]) -> &'static str {
    if head.starts_with(b"QFI\xfb") {
        "qcow2"
    } else {
        "raw"
    }
}

/// `get_and_validate_image_format`: `raw` and `gpt` are trusted; other formats (and
/// none) are inspected, must be permitted and must match what Ironic declared.
pub fn check_disk_format(declared: Option<&str>, head: &[u8]) -> Result<(), ApiError> {
    if matches!(declared, Some("raw") | Some("gpt")) {
        return Ok(());
    }
    let detected = detect_format(head);
    let invalid = |details: String| {
        ApiError::new(
            500,
            "InvalidImage",
            "The provided image is not valid for use",
            &details,
        )
    };
    if !PERMITTED_IMAGE_FORMATS.contains(&detected) {
        return Err(invalid(format!(
            "Security: Detected image format was {detected}, but only {} are allowed",
            PERMITTED_IMAGE_FORMATS.join(", ")
        )));
    }
    if let Some(d) = declared
        && !d.is_empty()
        && d != detected
        && d != "unknown"
    {
        return Err(invalid(format!(
            "Security: Expected format was {d}, but image was actually {detected}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_info_validation_matches_ipa() {
        let ok = json!({"id": "i", "urls": ["http://x"], "checksum": "a".repeat(64)});
        assert!(validate_image_info(&ok, false).is_ok());
        let md5 = json!({"id": "i", "urls": ["http://x"], "checksum": "a".repeat(32)});
        assert!(validate_image_info(&md5, true).is_ok());
        let e = validate_image_info(&md5, false).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.details.starts_with("Image checksum is not available"),
            "{e:?}"
        );
        let os = json!({"id": "i", "urls": ["u"], "os_hash_algo": "sha512", "os_hash_value": "ab"});
        assert!(validate_image_info(&os, false).is_ok());
        let half = json!({"id": "i", "urls": ["u"], "os_hash_algo": "sha512"});
        assert_eq!(
            validate_image_info(&half, false).unwrap_err().details,
            "Image 'os_hash_value' must be a non-empty string."
        );
        let e = validate_image_info(&json!({"urls": ["u"], "checksum": "a".repeat(64)}), true);
        assert_eq!(e.unwrap_err().details, "Image is missing 'id' field.");
        let e = validate_image_info(&json!({"id": "i", "urls": [], "checksum": "x"}), true);
        assert_eq!(
            e.unwrap_err().details,
            "Image 'urls' must be a list with at least one element."
        );
        let e = validate_image_info(&json!({"id": "i", "urls": ["u"], "checksum": ""}), true);
        assert_eq!(
            e.unwrap_err().details,
            "Image 'checksum' must be a non-empty string."
        );
        // A null checksum is "not given"; the os_hash pair then carries the check.
        let null_sum = json!({"id": "i", "urls": ["u"], "checksum": null,
                              "os_hash_algo": "sha256", "os_hash_value": "ab"});
        assert!(validate_image_info(&null_sum, false).is_ok());
        let url_sum = json!({"id": "i", "urls": ["u"], "checksum": "http://s/x"});
        assert!(validate_image_info(&url_sum, false).is_ok());
        assert!(validate_image_info(&Value::Null, true).is_err());
    }

    #[test]
    fn partition_arguments_like_ipa() {
        let full = json!({"preserve_ephemeral": false, "root_mb": 10240, "swap_mb": 0,
                          "ephemeral_mb": 0, "ephemeral_format": null});
        assert!(partition_layout(&full, Some(4)).is_ok());
        assert!(partition_layout(&full, None).is_ok());
        let mut missing = full.clone();
        missing.as_object_mut().unwrap().remove("root_mb");
        let e = partition_layout(&missing, None).unwrap_err();
        assert_eq!(
            (e.kind.as_str(), e.details.as_str()),
            ("CommandExecutionError", "'root_mb'")
        );
        let mut small = full.clone();
        small["root_mb"] = json!(2);
        let e = partition_layout(&small, Some(4)).unwrap_err();
        assert_eq!(
            e.details,
            "Root partition is too small for requested image. Image virtual size: 4 MB, Root size: 2 MB"
        );
        let mut text = full.clone();
        text["swap_mb"] = json!("lots");
        assert_eq!(
            partition_layout(&text, None).unwrap_err().details,
            "invalid literal for int() with base 10: 'lots'"
        );
    }

    #[test]
    fn disk_formats_like_ipa() {
        let raw = [0u8; 16];
        assert!(check_disk_format(Some("raw"), b"QFI\xfb").is_ok());
        assert!(check_disk_format(None, &raw).is_ok());
        assert!(check_disk_format(Some("qcow2"), b"QFI\xfb\0\0\0\x03").is_ok());
        let e = check_disk_format(Some("qcow2"), &raw).unwrap_err();
        assert_eq!(
            e.details,
            "Security: Expected format was qcow2, but image was actually raw"
        );
        assert_eq!(e.kind, "InvalidImage");
    }
}
