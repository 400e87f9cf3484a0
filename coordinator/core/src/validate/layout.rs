//! The instance image's type and, for partition images, the disk layout the deploy
//! ramdisk creates, read from instance_info with Ironic's names and rules
//! (`deploy_utils.parse_instance_info`, `images.is_whole_disk_image`):
//!
//! - `image_type` (`partition` | `whole-disk`) wins; otherwise a `kernel` or a `ramdisk`
//!   makes it a partition image.
//! - a partition image needs `root_gb` (a positive integer); `swap_mb` and `ephemeral_gb`
//!   are integers (default 0); `ephemeral_format` defaults to `ext4` when there is an
//!   ephemeral partition; `preserve_ephemeral` is a boolean (default false).
//! - the partition table is `instance_info.capabilities` `disk_label` (`msdos` | `gpt`),
//!   else `gpt` in UEFI mode and the ramdisk's choice in BIOS mode.

use super::err;
use super::media::boot_mode;
use crate::CoreError;
use crate::node::NodeSpec;

/// Ironic's `[pxe]default_ephemeral_format`.
pub const DEFAULT_EPHEMERAL_FORMAT: &str = "ext4";

/// What a partition image deploy creates on the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionLayout {
    /// `instance_info.kernel`, passed to the ramdisk as given (empty when unset).
    pub kernel: String,
    /// `instance_info.ramdisk`, as given.
    pub ramdisk: String,
    pub root_gb: u64,
    pub swap_mb: u64,
    pub ephemeral_gb: u64,
    /// Empty when there is no ephemeral partition and none was asked for.
    pub ephemeral_format: String,
    pub preserve_ephemeral: bool,
    /// `msdos` or `gpt`; empty lets the ramdisk choose (BIOS mode without a capability).
    pub disk_label: String,
    /// How the instance boots: `local` (Ironic's only choice for the direct deploy) or
    /// `netboot` from `instance_info.capabilities` `boot_option`.
    pub boot_option: String,
}

/// Is the instance image a partition image?
pub fn is_partition_image(spec: &NodeSpec) -> bool {
    let ii = &spec.instance_info;
    match ii.get("image_type").map(String::as_str) {
        Some("partition") => true,
        Some(_) => false,
        None => ii.contains_key("kernel") || ii.contains_key("ramdisk"),
    }
}

/// The image type as the ramdisk is told it: `partition` or `whole-disk`.
pub fn image_type(spec: &NodeSpec) -> &'static str {
    if is_partition_image(spec) {
        "partition"
    } else {
        "whole-disk"
    }
}

/// `instance_info.capabilities`: a JSON object (Ironic stores a dict; imports and the
/// CLI give its JSON text) or Ironic's older `key:value,key:value` form.
fn instance_capability(spec: &NodeSpec, name: &str) -> Result<Option<String>, CoreError> {
    let Some(text) = spec.instance_info.get("capabilities") else {
        return Ok(None);
    };
    let text = text.trim();
    if text.starts_with('{') {
        let map = flat_json_object(text).map_err(|e| {
            err(
                "instance_info.capabilities",
                format!("not a flat JSON object: {e}"),
            )
        })?;
        return Ok(map.into_iter().find(|(k, _)| k == name).map(|(_, v)| v));
    }
    Ok(text.split(',').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    }))
}

fn int_field(spec: &NodeSpec, key: &str, default: u64) -> Result<u64, CoreError> {
    match spec.instance_info.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| {
            err(
                format!("instance_info.{key}"),
                format!("{v:?} is not a non-negative integer"),
            )
        }),
    }
}

/// Ironic's `strutils.bool_from_string(strict=True)` spellings.
fn strict_bool(field: &str, v: &str) -> Result<bool, CoreError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(err(
            field,
            format!("{v:?} is not a boolean; expected true or false"),
        )),
    }
}

/// The partition layout of a partition image (`None` for a whole-disk image). With
/// `require` (the node is about to be deployed, or its image is set) a missing `root_gb`
/// is an error that says what is missing and why.
pub fn partition_layout(
    spec: &NodeSpec,
    require: bool,
) -> Result<Option<PartitionLayout>, CoreError> {
    let ii = &spec.instance_info;
    if let Some(t) = ii.get("image_type")
        && t != "partition"
        && t != "whole-disk"
    {
        return Err(err(
            "instance_info.image_type",
            format!("invalid image_type {t:?}; valid are partition, whole-disk"),
        ));
    }
    let preserve_ephemeral = match ii.get("preserve_ephemeral") {
        None => false,
        Some(v) => strict_bool("instance_info.preserve_ephemeral", v)?,
    };
    if !is_partition_image(spec) {
        return Ok(None);
    }
    let root_gb = int_field(spec, "root_gb", 0)?;
    if root_gb == 0 && require {
        return Err(err(
            "instance_info.root_gb",
            "missing: a partition image (kernel/ramdisk or image_type=partition) needs the \
             root partition size in GiB, a positive integer",
        ));
    }
    let swap_mb = int_field(spec, "swap_mb", 0)?;
    let ephemeral_gb = int_field(spec, "ephemeral_gb", 0)?;
    let mut ephemeral_format = ii
        .get("ephemeral_format")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if !ephemeral_format.is_empty()
        && !ephemeral_format
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(err(
            "instance_info.ephemeral_format",
            format!("{ephemeral_format:?} is not a file system name (e.g. ext4, xfs, vfat)"),
        ));
    }
    if ephemeral_gb > 0 && ephemeral_format.is_empty() {
        ephemeral_format = DEFAULT_EPHEMERAL_FORMAT.to_string();
    }
    let disk_label = match instance_capability(spec, "disk_label")? {
        Some(l) if l == "msdos" || l == "gpt" => l,
        Some(l) => {
            return Err(err(
                "instance_info.capabilities",
                format!("disk_label must be msdos or gpt, got {l:?}"),
            ));
        }
        None if boot_mode(spec) == "uefi" => "gpt".to_string(),
        None => String::new(),
    };
    if boot_mode(spec) == "uefi" && disk_label == "msdos" {
        return Err(err(
            "instance_info.capabilities",
            "disk_label msdos cannot boot in UEFI mode; use gpt or leave it unset",
        ));
    }
    let boot_option = match instance_capability(spec, "boot_option")? {
        None => "local".to_string(),
        Some(o) if o == "local" || o == "netboot" => o,
        Some(o) => {
            return Err(err(
                "instance_info.capabilities",
                format!("boot_option must be local or netboot, got {o:?}"),
            ));
        }
    };
    let kernel = ii.get("kernel").cloned().unwrap_or_default();
    let ramdisk = ii.get("ramdisk").cloned().unwrap_or_default();
    if boot_option == "netboot" && require {
        for (k, v) in [("kernel", &kernel), ("ramdisk", &ramdisk)] {
            if v.is_empty() {
                return Err(err(
                    format!("instance_info.{k}"),
                    "missing: a netboot partition image boots the instance from its kernel \
                     and ramdisk",
                ));
            }
        }
    }
    Ok(Some(PartitionLayout {
        kernel,
        ramdisk,
        root_gb,
        swap_mb,
        ephemeral_gb,
        ephemeral_format,
        preserve_ephemeral,
        disk_label,
        boot_option,
    }))
}

/// Checks the layout fields: always that what is there is well formed, and, once the
/// image is chosen (`image_source` set) or the node is to be deployed, that a partition
/// image has what it needs.
pub(super) fn check_layout(spec: &NodeSpec, to_deploy: bool) -> Result<(), CoreError> {
    let require = to_deploy || spec.instance_info.contains_key("image_source");
    partition_layout(spec, require).map(|_| ())
}

/// A JSON object whose values are strings, numbers, booleans or null, as (key, value
/// text) pairs; nulls are left out. Enough for Ironic's capabilities without a JSON crate
/// in this pure crate.
fn flat_json_object(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = Json {
        s: text.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    p.eat(b'{')?;
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            let key = p.string()?;
            p.eat(b':')?;
            if let Some(v) = p.scalar()? {
                out.push((key, v));
            }
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(format!("expected , or }} at byte {}", p.i)),
            }
        }
    }
    if p.peek().is_some() {
        return Err(format!("trailing text at byte {}", p.i));
    }
    Ok(out)
}

struct Json<'a> {
    s: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn eat(&mut self, want: u8) -> Result<(), String> {
        match self.next() {
            Some(c) if c == want => Ok(()),
            _ => Err(format!("expected {} at byte {}", want as char, self.i)),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' | b'f' => {}
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            self.i += 4;
                            let ch = char::from_u32(hex).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "string is not UTF-8".to_string())
    }
    fn scalar(&mut self) -> Result<Option<String>, String> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            Some(b'{') | Some(b'[') => Err(format!("nested value at byte {}", self.i)),
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && !matches!(self.s[self.i], b',' | b'}')
                    && !self.s[self.i].is_ascii_whitespace()
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match word {
                    "null" => Ok(None),
                    "true" | "false" => Ok(Some(word.to_string())),
                    w if !w.is_empty() && w.parse::<f64>().is_ok() => Ok(Some(w.to_string())),
                    w => Err(format!("unexpected {w:?}")),
                }
            }
            None => Err("unexpected end".into()),
        }
    }
}
