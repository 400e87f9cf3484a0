//! OpenStack config drives: what `instance_info.configdrive` may hold, and the
//! `config-2` ISO built from its JSON form.
//!
//! The value comes in one of three forms (Ironic's API tells them apart the same way):
//! - a URL (anything containing `://`): handed to the ramdisk as it is; the ramdisk
//!   downloads it;
//! - a gzipped, base64-encoded ISO: handed over as it is, once its decoded size has been
//!   checked against the ramdisk's limit ([`MAX_DECODED_BYTES`]);
//! - a JSON object with `meta_data`, `user_data`, `network_data` and `vendor_data`
//!   (all optional): built here into an ISO 9660 image laid out as Ironic lays it out
//!   (through openstacksdk's config drive builder), then gzipped and base64-encoded.
//!
//! Layout of a built drive (volume id `config-2`, Rock Ridge and Joliet names):
//! ```text
//! /openstack/2012-08-10/meta_data.json
//! /openstack/2012-08-10/network_data.json   only when network_data is a non-empty object
//! /openstack/2012-08-10/vendor_data2.json   only when vendor_data is a non-empty object
//! /openstack/2012-08-10/user_data           only when user_data is non-empty
//! /openstack/latest/...                     the same four files
//! ```
//! Ironic writes no `ec2` tree: openstacksdk's builder, which Ironic calls, writes only
//! the `openstack/<version>` directories above, so neither do we.
//!
//! As in Ironic, `meta_data.uuid` defaults to the node's UUID and `meta_data.name` to
//! its name; a `user_data` object or array is written as JSON text, a string as its
//! UTF-8 bytes.
//!
//! A config drive may hold secrets (passwords in user data, keys): its content never
//! appears in errors or Debug output.

use std::fmt;
use std::io::{Cursor, Read, Write};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::MediaError;

/// The volume label cloud-init and the ramdisk look for.
pub const LABEL: &str = "config-2";
/// The metadata versions written, as openstacksdk writes them.
pub const VERSIONS: [&str; 2] = ["2012-08-10", "latest"];
/// The largest decoded (gunzipped) config drive the ramdisk writes: ironic-python-agent
/// refuses one over 64 MiB (`MAX_CONFIG_DRIVE_SIZE_MB`), rounding the size up to MiB.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;
/// Keys of the JSON form (Ironic's API refuses any other).
pub const JSON_KEYS: [&str; 4] = ["meta_data", "network_data", "user_data", "vendor_data"];

/// The three forms of `instance_info.configdrive`.
#[derive(Clone, PartialEq, Eq)]
pub enum ConfigDriveSource {
    /// Downloaded by the ramdisk itself.
    Url(String),
    /// A gzipped, base64-encoded ISO image.
    Encoded(String),
    /// The JSON object form, to be built into an ISO.
    Json(ConfigDriveData),
}

impl fmt::Debug for ConfigDriveSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A URL may carry a temporary credential in its query: show the host only.
            Self::Url(u) => write!(f, "Url({})", redact_url(u)),
            Self::Encoded(s) => write!(f, "Encoded({} characters)", s.len()),
            Self::Json(_) => f.write_str("Json(..)"),
        }
    }
}

/// `scheme://host/...` with everything after the host cut off.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}/...")
        }
        None => "(not a URL)".into(),
    }
}

fn invalid(reason: impl Into<String>) -> MediaError {
    MediaError::InvalidConfigDrive {
        reason: reason.into(),
    }
}

impl ConfigDriveSource {
    /// Tells the form of a configdrive value apart, as Ironic's API does: a JSON object
    /// (text starting with `{`), a URL (contains `://`), or base64 (letters, digits,
    /// `+/=` and whitespace only). An empty value is `None`.
    pub fn parse(value: &str) -> Result<Option<Self>, MediaError> {
        let v = value.trim();
        if v.is_empty() || v == "null" {
            return Ok(None);
        }
        if v.starts_with('{') {
            let parsed: Value = serde_json::from_str(v)
                .map_err(|e| invalid(format!("it starts with '{{' but is not JSON: {e}")))?;
            return Ok(Some(Self::Json(ConfigDriveData::from_json(&parsed)?)));
        }
        if v.contains("://") {
            let scheme = v.split("://").next().unwrap_or_default();
            if scheme != "http" && scheme != "https" {
                return Err(invalid(format!(
                    "a URL must be http:// or https://, got scheme {scheme:?}"
                )));
            }
            return Ok(Some(Self::Url(v.to_string())));
        }
        let b64 = |c: char| c.is_ascii_alphanumeric() || "+/=\n\r\t ".contains(c);
        if !v.chars().all(b64) {
            return Err(invalid(
                "Invalid configdrive format: it is neither a JSON, nor a URL, nor a base64 string",
            ));
        }
        Ok(Some(Self::Encoded(v.to_string())))
    }
}

/// The JSON form of a config drive.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConfigDriveData {
    /// `meta_data.json` (an object).
    pub meta_data: Map<String, Value>,
    /// `user_data`, bytes as written.
    pub user_data: Option<Vec<u8>>,
    /// `network_data.json`.
    pub network_data: Option<Map<String, Value>>,
    /// `vendor_data2.json`.
    pub vendor_data: Option<Map<String, Value>>,
}

impl fmt::Debug for ConfigDriveData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigDriveData")
            .field("meta_data_keys", &self.meta_data.keys().collect::<Vec<_>>())
            .field("user_data_bytes", &self.user_data.as_ref().map(Vec::len))
            .field("network_data", &self.network_data.is_some())
            .field("vendor_data", &self.vendor_data.is_some())
            .finish()
    }
}

impl ConfigDriveData {
    /// Reads the JSON object form, with the checks of Ironic's API schema: only the
    /// four keys; `meta_data`, `network_data` and `vendor_data` objects; `user_data` an
    /// object, array, string or null.
    pub fn from_json(v: &Value) -> Result<Self, MediaError> {
        let Some(obj) = v.as_object() else {
            return Err(invalid("the JSON form must be an object"));
        };
        if let Some(k) = obj.keys().find(|k| !JSON_KEYS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown key {k:?} (allowed: {})",
                JSON_KEYS.join(", ")
            )));
        }
        let object = |key: &str| -> Result<Option<Map<String, Value>>, MediaError> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m.clone())),
                Some(other) => Err(invalid(format!(
                    "{key} must be an object, got {}",
                    json_type(other)
                ))),
            }
        };
        let user_data = match obj.get("user_data") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone().into_bytes()),
            Some(v @ (Value::Object(_) | Value::Array(_))) => Some(v.to_string().into_bytes()),
            Some(other) => {
                return Err(invalid(format!(
                    "user_data must be an object, an array, a string or null, got {}",
                    json_type(other)
                )));
            }
        };
        Ok(Self {
            meta_data: object("meta_data")?.unwrap_or_default(),
            user_data,
            network_data: object("network_data")?,
            vendor_data: object("vendor_data")?,
        })
    }

    /// Fills `meta_data.uuid` with the node's UUID and `meta_data.name` with its name
    /// where they are missing, as Ironic does.
    pub fn with_node_defaults(mut self, uuid: &str, name: Option<&str>) -> Self {
        self.meta_data
            .entry("uuid")
            .or_insert_with(|| Value::String(uuid.to_string()));
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            self.meta_data
                .entry("name")
                .or_insert_with(|| Value::String(n.to_string()));
        }
        self
    }

    /// The files of the drive: (directory, file name, bytes), in a stable order.
    pub fn files(&self) -> Vec<(String, &'static str, Vec<u8>)> {
        let json = |m: &Map<String, Value>| Value::Object(m.clone()).to_string().into_bytes();
        let mut out = Vec::new();
        for version in VERSIONS {
            let dir = format!("openstack/{version}");
            out.push((dir.clone(), "meta_data.json", json(&self.meta_data)));
            if let Some(n) = self.network_data.as_ref().filter(|m| !m.is_empty()) {
                out.push((dir.clone(), "network_data.json", json(n)));
            }
            if let Some(v) = self.vendor_data.as_ref().filter(|m| !m.is_empty()) {
                out.push((dir.clone(), "vendor_data2.json", json(v)));
            }
            if let Some(u) = self.user_data.as_ref().filter(|u| !u.is_empty()) {
                out.push((dir, "user_data", u.clone()));
            }
        }
        out
    }

    /// The ISO 9660 image (volume `config-2`), in memory: config drives are small.
    pub fn build_iso(&self) -> Result<Vec<u8>, MediaError> {
        use hadris_iso::read::PathSeparator;
        use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
        use hadris_iso::write::{InputEntry, InputTree, IsoImageWriter};

        let files = self.files();
        let total: u64 = files.iter().map(|(_, _, b)| b.len() as u64).sum();
        if total > MAX_DECODED_BYTES {
            return Err(invalid(format!(
                "its files hold {total} bytes, over the ramdisk's limit of {MAX_DECODED_BYTES}"
            )));
        }
        let mut versions = Vec::new();
        for version in VERSIONS {
            let dir = format!("openstack/{version}");
            let entries = files
                .iter()
                .filter(|(d, _, _)| *d == dir)
                .map(|(_, name, bytes)| InputEntry::file(*name, bytes.clone()))
                .collect();
            versions.push(InputEntry::directory(version, entries));
        }
        let tree = InputTree {
            path_separator: PathSeparator::ForwardSlash,
            entries: vec![InputEntry::directory("openstack", versions)],
        };
        let opts = IsoFormatOptions {
            volume_name: LABEL.to_string(),
            system_id: None,
            volume_set_id: None,
            publisher_id: None,
            preparer_id: None,
            application_id: None,
            sector_size: 2048,
            path_separator: PathSeparator::ForwardSlash,
            // Rock Ridge and Joliet, as `genisoimage -J -r` writes them.
            features: CreationFeatures::extensions(),
            strict_charset: false,
        };
        let cursor = Cursor::new(Vec::with_capacity(total as usize + 64 * 1024));
        let cursor = IsoImageWriter::create(cursor, tree, opts).map_err(|e| {
            MediaError::InvalidConfigDrive {
                reason: format!("building its ISO image: {e}"),
            }
        })?;
        Ok(cursor.into_inner())
    }

    /// The ISO, gzipped and base64-encoded, as the ramdisk takes it.
    pub fn build_encoded(&self) -> Result<String, MediaError> {
        Ok(encode(&self.build_iso()?))
    }
}

/// How a JSON value's type is named in errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// gzip, then standard base64 (what ironic-python-agent decodes).
pub fn encode(iso: &[u8]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(iso);
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a gzipped, base64-encoded config drive. Whitespace in the base64 text is
/// ignored. Stops (with IPA's wording) as soon as the output passes
/// [`MAX_DECODED_BYTES`] rounded up to a MiB, so a hostile value cannot fill memory.
pub fn decode(encoded: &str, node: &str) -> Result<Vec<u8>, MediaError> {
    let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            invalid(format!(
                "Config drive for node {node} is not base64 encoded or the content is malformed: {e}"
            ))
        })?;
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(gz.as_slice()).take(MAX_DECODED_BYTES + 1);
    reader.read_to_end(&mut out).map_err(|e| {
        invalid(format!(
            "Encountered error while decompressing config drive for node {node}: {e}"
        ))
    })?;
    if out.len() as u64 > MAX_DECODED_BYTES {
        // Count the rest without keeping it, for the size in the message.
        let mut rest = reader.into_inner();
        let extra = std::io::copy(&mut rest, &mut std::io::sink()).unwrap_or(0);
        let mib = (out.len() as u64 + extra).div_ceil(1024 * 1024);
        return Err(invalid(format!(
            "Config drive size exceeds maximum limit of 64MiB. Size of the given config drive is {mib} MiB for node {node}."
        )));
    }
    Ok(out)
}

/// A config drive resolved for one deploy: what goes into write_image's `configdrive`
/// argument, or the ISO to publish over HTTP when it is too large to inline.
#[derive(Clone)]
pub enum ResolvedConfigDrive {
    /// Pass this string (a URL or gzip+base64 text) to the ramdisk.
    Inline(String),
    /// Publish these gzip+base64 bytes at a URL and pass the URL.
    Publish(Arc<Vec<u8>>),
}

impl fmt::Debug for ResolvedConfigDrive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(s) => write!(f, "Inline({} characters)", s.len()),
            Self::Publish(b) => write!(f, "Publish({} bytes)", b.len()),
        }
    }
}

/// Above this many characters of gzip+base64 text a config drive is served over HTTP
/// instead of being inlined into the write_image command. 64 KiB keeps the command
/// (and the ramdisk's command log, which echoes it) small, while every config drive
/// made only of metadata, keys and a cloud-init script (typically 1-4 KiB encoded) still
/// travels inline, as Ironic sends it by default.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// Resolves `instance_info.configdrive` for node `uuid` (`name`): checks a given
/// encoded image (base64, gzip, decoded size), builds the JSON form, and decides
/// between inlining and publishing (above [`INLINE_LIMIT`]).
pub fn resolve(
    value: &str,
    uuid: &str,
    name: Option<&str>,
) -> Result<Option<ResolvedConfigDrive>, MediaError> {
    let encoded = match ConfigDriveSource::parse(value)? {
        None => return Ok(None),
        Some(ConfigDriveSource::Url(u)) => return Ok(Some(ResolvedConfigDrive::Inline(u))),
        Some(ConfigDriveSource::Encoded(e)) => {
            decode(&e, uuid)?;
            e
        }
        Some(ConfigDriveSource::Json(d)) => d.with_node_defaults(uuid, name).build_encoded()?,
    };
    Ok(Some(if encoded.len() > INLINE_LIMIT {
        ResolvedConfigDrive::Publish(Arc::new(encoded.into_bytes()))
    } else {
        ResolvedConfigDrive::Inline(encoded)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forms_are_told_apart_as_ironic_does() {
        assert_eq!(ConfigDriveSource::parse("  ").unwrap(), None);
        assert!(matches!(
            ConfigDriveSource::parse("https://h/cd?temp_url_sig=x").unwrap(),
            Some(ConfigDriveSource::Url(_))
        ));
        assert!(matches!(
            ConfigDriveSource::parse("H4sI AAAA\n").unwrap(),
            Some(ConfigDriveSource::Encoded(_))
        ));
        let e = ConfigDriveSource::parse("not base64!").unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a JSON, nor a URL, nor a base64")
        );
        let e = ConfigDriveSource::parse("ftp://h/x").unwrap_err();
        assert!(e.to_string().contains("http"));
        let e = ConfigDriveSource::parse(r#"{"meta_data": [], "x": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown key \"x\""), "{e}");
        let e = ConfigDriveSource::parse(r#"{"meta_data": []}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("meta_data must be an object, got an array")
        );
        let e = ConfigDriveSource::parse(r#"{"user_data": 5}"#).unwrap_err();
        assert!(e.to_string().contains("user_data must be"));
    }

    #[test]
    fn layout_matches_openstacksdk() {
        let d = ConfigDriveData::from_json(&json!({
            "meta_data": {"hostname": "h"},
            "user_data": {"a": 1},
            "network_data": {},
            "vendor_data": {"v": true},
        }))
        .unwrap()
        .with_node_defaults("u-1", Some("n1"));
        let names: Vec<String> = d
            .files()
            .iter()
            .map(|(d, n, _)| format!("{d}/{n}"))
            .collect();
        assert_eq!(
            names,
            [
                "openstack/2012-08-10/meta_data.json",
                "openstack/2012-08-10/vendor_data2.json",
                "openstack/2012-08-10/user_data",
                "openstack/latest/meta_data.json",
                "openstack/latest/vendor_data2.json",
                "openstack/latest/user_data",
            ]
        );
        assert_eq!(d.meta_data["uuid"], "u-1");
        assert_eq!(d.meta_data["name"], "n1");
        assert_eq!(d.user_data.as_deref(), Some(&br#"{"a":1}"#[..]));
        // Given values win over the node's.
        let d = d.with_node_defaults("other", Some("other"));
        assert_eq!(d.meta_data["uuid"], "u-1");
    }

    #[test]
    fn encode_decode_round_trip_and_limit() {
        let iso = ConfigDriveData::default()
            .with_node_defaults("u", None)
            .build_iso()
            .unwrap();
        assert_eq!(&iso[0x8001..0x8006], b"CD001");
        assert_eq!(&iso[0x8028..0x8030], b"config-2");
        assert_eq!(decode(&encode(&iso), "u").unwrap(), iso);
        let big = vec![0u8; MAX_DECODED_BYTES as usize + 1];
        let e = decode(&encode(&big), "node-7").unwrap_err().to_string();
        assert!(
            e.contains("exceeds maximum limit of 64MiB") && e.contains("65 MiB for node node-7"),
            "{e}"
        );
        let e = decode("AAAA", "n").unwrap_err().to_string();
        assert!(e.contains("decompressing"), "{e}");
    }

    #[test]
    fn large_drives_are_published() {
        let small = resolve(r#"{"meta_data": {"hostname": "h"}}"#, "u", None)
            .unwrap()
            .unwrap();
        assert!(matches!(small, ResolvedConfigDrive::Inline(_)));
        // Random-looking user data does not compress.
        let mut x = 0x1234_5678u64;
        let noise: String = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let big = json!({"user_data": noise}).to_string();
        assert!(matches!(
            resolve(&big, "u", None).unwrap().unwrap(),
            ResolvedConfigDrive::Publish(_)
        ));
        assert!(matches!(
            resolve("http://h/cd", "u", None).unwrap().unwrap(),
            ResolvedConfigDrive::Inline(u) if u == "http://h/cd"
        ));
    }

    #[test]
    fn debug_shows_no_content() {
        let s = ConfigDriveSource::parse(r##"{"user_data": "#cloud-config\npassword: hunter2"}"##)
            .unwrap()
            .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let u = ConfigDriveSource::parse("https://user:pw@h/x?sig=s3cr3t")
            .unwrap()
            .unwrap();
        let shown = format!("{u:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("pw"),
            "{shown}"
        );
    }
}
