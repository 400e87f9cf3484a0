//! Input validation with Ironic's field names; every error names the field, e.g.
//! `driver_info.irmc_port: must be 443 or 80, got "8443"`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use uuid::Uuid;

use crate::node::{Node, NodeSpec};
use crate::{CoreError, MASK};

/// Result of checking one interface, as Ironic's node-validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCheck {
    /// "power" | "management" | "boot" | "deploy"
    pub interface: &'static str,
    pub result: bool,
    /// Empty when `result`; otherwise every problem, "; "-separated.
    pub reason: String,
}

/// Drivers this system runs. `agent_irmc`/`iscsi_irmc` are Ironic's old classic
/// driver names, accepted so imported nodes need no edit.
pub const DRIVERS: [&str; 3] = ["irmc", "agent_irmc", "iscsi_irmc"];

const DISK_FORMATS: [&str; 10] = [
    "raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx", "iso", "ami", "ari", "aki",
];

/// Longest name, as Ironic's `name` column.
const MAX_NAME: usize = 255;

fn err(field: impl Into<String>, message: impl Into<String>) -> CoreError {
    CoreError::invalid(field, message)
}

/// Checks a spec for create/update: everything that is present must be well
/// formed, and the BMC credentials must be there. `image_source` is NOT required
/// here (it is needed only to deploy; see [`validate`]). The first problem wins.
pub fn validate_create(spec: &NodeSpec) -> Result<(), CoreError> {
    if let Some(name) = &spec.name {
        check_name(name)?;
    }
    if !DRIVERS.contains(&spec.driver.as_str()) {
        return Err(err(
            "driver",
            format!("unsupported driver {:?}; expected \"irmc\"", spec.driver),
        ));
    }
    check_bmc(&spec.driver_info)?;
    check_boot_media(spec)?;
    check_instance_info(&spec.instance_info, false)?;
    for (i, mac) in spec.macs.iter().enumerate() {
        if parse_mac(mac).is_none() {
            return Err(err(
                format!("macs[{i}]"),
                format!("invalid MAC address {mac:?}; expected 6 octets like 52:54:00:12:34:56"),
            ));
        }
    }
    for k in spec.share_selector.keys() {
        if k.is_empty() {
            return Err(err("share_selector", "empty label key"));
        }
    }
    check_boot_mode(spec)?;
    Ok(())
}

/// Per-interface check of a stored node: what a deploy would need.
pub fn validate(node: &Node) -> Vec<InterfaceCheck> {
    let spec = &node.spec;
    let bmc = check_bmc_all(&spec.driver_info);
    let mut boot = Vec::new();
    if let Err(e) = check_boot_media(spec) {
        boot.push(e.to_string());
    }
    if deploy_iso(spec).is_none()
        && (!spec.driver_info.contains_key("deploy_kernel")
            || !spec.driver_info.contains_key("deploy_ramdisk"))
    {
        boot.push(
            "driver_info.deploy_iso: required (or deploy_kernel and deploy_ramdisk)".to_string(),
        );
    }
    if let Err(e) = check_boot_mode(spec) {
        boot.push(e.to_string());
    }
    let mut deploy = Vec::new();
    if let Err(e) = check_instance_info(&spec.instance_info, true) {
        deploy.push(e.to_string());
    }
    for (i, mac) in spec.macs.iter().enumerate() {
        if parse_mac(mac).is_none() {
            deploy.push(format!("macs[{i}]: invalid MAC address {mac:?}"));
        }
    }
    let check = |interface: &'static str, problems: &[String]| InterfaceCheck {
        interface,
        result: problems.is_empty(),
        reason: problems.join("; "),
    };
    vec![
        check("power", &bmc),
        check("management", &bmc),
        check("boot", &boot),
        check("deploy", &deploy),
    ]
}

/// Canonical form of a spec before storing: MACs lowercased with ':' separators;
/// an empty name becomes `None`; an empty driver becomes "irmc".
pub fn normalize_spec(spec: &mut NodeSpec) {
    for mac in &mut spec.macs {
        if let Some(octets) = parse_mac(mac) {
            *mac = format_mac(octets);
        }
    }
    if spec.name.as_deref() == Some("") {
        spec.name = None;
    }
    if spec.driver.is_empty() {
        spec.driver = crate::DEFAULT_DRIVER.to_string();
    }
}

/// Is this driver_info/instance_info key a secret? `irmc_password`, any key ending
/// in `password`, `secret` or `token` (e.g. `agent_token`), and SNMP communities.
pub fn is_secret_key(key: &str) -> bool {
    // Runs for every key of every node read or written: no allocation.
    let ends_with = |suffix: &str| {
        key.len() >= suffix.len()
            && key.as_bytes()[key.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    ends_with("password")
        || ends_with("secret")
        || ends_with("token")
        || ends_with("snmp_community")
}

/// A copy of `map` with every secret value replaced by "******".
pub fn mask(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                MASK.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
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

/// Parses a MAC in `aa:bb:cc:dd:ee:ff` or `aa-bb-...` form (any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(sep) {
        if n == 6 || part.len() != 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

fn format_mac(o: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        o[0], o[1], o[2], o[3], o[4], o[5]
    )
}

fn check_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(err("name", format!("must be 1 to {MAX_NAME} characters")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(err(
            "name",
            format!("invalid character {c:?} in {name:?}; allowed: letters, digits, - . _ ~"),
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err(err(
            "name",
            format!("{name:?} looks like a UUID; names must not"),
        ));
    }
    Ok(())
}

fn check_bmc(di: &BTreeMap<String, String>) -> Result<(), CoreError> {
    match check_bmc_all(di).into_iter().next() {
        Some(problem) => {
            // check_bmc_all formats "field: message"; split back for the typed error.
            let (field, message) = problem
                .split_once(": ")
                .unwrap_or(("driver_info", &problem));
            Err(err(field, message))
        }
        None => Ok(()),
    }
}

/// Every BMC problem, each as "driver_info.key: message".
fn check_bmc_all(di: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut bad = |k: &str, m: String| out.push(format!("driver_info.{k}: {m}"));
    match di.get("irmc_address").map(String::as_str) {
        None | Some("") => bad("irmc_address", "required".into()),
        Some(a) if !valid_host(a) => bad(
            "irmc_address",
            format!("not an IP address or host name: {a:?}"),
        ),
        Some(_) => {}
    }
    for k in ["irmc_username", "irmc_password"] {
        if di.get(k).is_none_or(|v| v.is_empty()) {
            bad(k, "required".into());
        }
    }
    if let Some(p) = di.get("irmc_port")
        && p != "443"
        && p != "80"
    {
        bad("irmc_port", format!("must be 443 or 80, got {p:?}"));
    }
    if let Some(m) = di.get("irmc_auth_method")
        && m != "basic"
        && m != "digest"
    {
        bad(
            "irmc_auth_method",
            format!("must be basic or digest, got {m:?}"),
        );
    }
    if let Some(t) = di.get("irmc_client_timeout")
        && !t.parse::<u32>().is_ok_and(|n| n > 0)
    {
        bad(
            "irmc_client_timeout",
            format!("must be a positive integer (seconds), got {t:?}"),
        );
    }
    if let Some(t) = di.get("irmc_transport")
        && !matches!(t.as_str(), "redfish" | "ipmi" | "auto")
    {
        bad(
            "irmc_transport",
            format!(
                "must be redfish, ipmi or auto (how power state and boot device are done), got {t:?}"
            ),
        );
    }
    if let Some(v) = di.get("irmc_verify_ca")
        && parse_bool(v).is_none()
        && !v.starts_with('/')
    {
        bad(
            "irmc_verify_ca",
            format!("must be true, false or an absolute path to a CA bundle, got {v:?}"),
        );
    }
    out
}

/// Ironic-style boolean strings.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

fn valid_host(a: &str) -> bool {
    if a.parse::<IpAddr>().is_ok() {
        return true;
    }
    // Bracketed IPv6 as in URLs.
    if let Some(inner) = a.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    a.len() <= 253
        && a.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn check_boot_media(spec: &NodeSpec) -> Result<(), CoreError> {
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

fn check_instance_info(ii: &BTreeMap<String, String>, to_deploy: bool) -> Result<(), CoreError> {
    let source = ii.get("image_source").filter(|s| !s.is_empty());
    match source {
        Some(s) => check_image_ref("instance_info.image_source", s)?,
        None if to_deploy => return Err(err("instance_info.image_source", "required to deploy")),
        None => {}
    }
    if let Some(c) = ii.get("image_checksum") {
        check_checksum(c)?;
    }
    match (ii.get("os_hash_algo"), ii.get("os_hash_value")) {
        (Some(algo), Some(value)) => {
            let len = match algo.as_str() {
                "md5" => 32,
                "sha256" => 64,
                "sha512" => 128,
                _ => {
                    return Err(err(
                        "instance_info.os_hash_algo",
                        format!("must be md5, sha256 or sha512, got {algo:?}"),
                    ));
                }
            };
            if value.len() != len || !value.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(err(
                    "instance_info.os_hash_value",
                    format!("must be {len} hex digits for {algo}"),
                ));
            }
        }
        (Some(_), None) => {
            return Err(err(
                "instance_info.os_hash_value",
                "required with os_hash_algo",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                "instance_info.os_hash_algo",
                "required with os_hash_value",
            ));
        }
        (None, None) => {}
    }
    // Ironic refuses an HTTP image without a checksum: the ramdisk could not verify it.
    if to_deploy
        && let Some(s) = source
        && is_url(s)
        && !ii.contains_key("image_checksum")
        && !ii.contains_key("os_hash_value")
    {
        return Err(err(
            "instance_info.image_checksum",
            "required for an http(s) image_source (or os_hash_algo + os_hash_value)",
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
                "unknown disk format {f:?}; expected one of {}",
                DISK_FORMATS.join(", ")
            ),
        ));
    }
    Ok(())
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

fn check_boot_mode(spec: &NodeSpec) -> Result<(), CoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> NodeSpec {
        let mut s = NodeSpec::new(Uuid::from_u128(1));
        s.name = Some("node-1".into());
        for (k, v) in [
            ("irmc_address", "10.0.0.5"),
            ("irmc_username", "admin"),
            ("irmc_password", "pw"),
            ("deploy_iso", "images/deploy.iso"),
        ] {
            s.driver_info.insert(k.into(), v.into());
        }
        s.instance_info
            .insert("image_source".into(), "https://img.example/u.qcow2".into());
        s.instance_info
            .insert("image_checksum".into(), "a".repeat(64));
        s.macs.push("52:54:00:AA:bb:01".into());
        s
    }

    fn msg(spec: &NodeSpec) -> String {
        validate_create(spec).unwrap_err().to_string()
    }

    #[test]
    fn good_spec_passes_everything() {
        let s = good();
        validate_create(&s).unwrap();
        let node = Node {
            status: crate::NodeStatus::new(0),
            spec: s,
            version: 1,
        };
        for c in validate(&node) {
            assert!(c.result, "{c:?}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(&str, &str, &str, &str)> = vec![
            (
                "driver_info",
                "irmc_port",
                "8443",
                "driver_info.irmc_port: must be 443 or 80, got \"8443\"",
            ),
            (
                "driver_info",
                "irmc_auth_method",
                "ntlm",
                "driver_info.irmc_auth_method: must be basic or digest, got \"ntlm\"",
            ),
            (
                "driver_info",
                "irmc_transport",
                "snmp",
                "driver_info.irmc_transport: must be redfish, ipmi or auto",
            ),
            (
                "driver_info",
                "irmc_client_timeout",
                "0",
                "driver_info.irmc_client_timeout: must be a positive integer",
            ),
            (
                "driver_info",
                "irmc_client_timeout",
                "x",
                "driver_info.irmc_client_timeout:",
            ),
            (
                "driver_info",
                "irmc_verify_ca",
                "maybe",
                "driver_info.irmc_verify_ca:",
            ),
            (
                "driver_info",
                "irmc_address",
                "bad host!",
                "driver_info.irmc_address: not an IP",
            ),
            (
                "driver_info",
                "deploy_iso",
                "../etc/passwd",
                "driver_info.deploy_iso: must not contain \"..\"",
            ),
            (
                "driver_info",
                "deploy_iso",
                "/abs.iso",
                "driver_info.deploy_iso: must be relative",
            ),
            (
                "driver_info",
                "deploy_iso",
                "ftp://x/y.iso",
                "driver_info.deploy_iso: unsupported scheme",
            ),
            (
                "driver_info",
                "irmc_deploy_iso",
                "other.iso",
                "driver_info.deploy_iso: conflicts with its alias",
            ),
            (
                "instance_info",
                "image_checksum",
                "abc",
                "instance_info.image_checksum: must be an md5",
            ),
            (
                "instance_info",
                "os_hash_algo",
                "sha1",
                "instance_info.os_hash_value: required with os_hash_algo",
            ),
            (
                "instance_info",
                "image_disk_format",
                "floppy",
                "instance_info.image_disk_format: unknown disk format",
            ),
            (
                "instance_info",
                "boot_iso",
                "a/../../b",
                "instance_info.boot_iso: must not contain",
            ),
        ];
        for (section, k, v, want) in cases {
            let mut s = good();
            let map = if section == "driver_info" {
                &mut s.driver_info
            } else {
                &mut s.instance_info
            };
            map.insert(k.into(), v.into());
            let got = msg(&s);
            assert!(
                got.starts_with(want),
                "{k}={v}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn required_bmc_fields() {
        for k in ["irmc_address", "irmc_username", "irmc_password"] {
            let mut s = good();
            s.driver_info.remove(k);
            assert_eq!(msg(&s), format!("driver_info.{k}: required"));
        }
    }

    #[test]
    fn accepted_values() {
        let mut s = good();
        for (k, v) in [
            ("irmc_port", "80"),
            ("irmc_auth_method", "digest"),
            ("irmc_verify_ca", "/etc/ssl/ca.pem"),
            ("irmc_client_timeout", "30"),
            ("irmc_deploy_iso", "images/deploy.iso"),
        ] {
            s.driver_info.insert(k.into(), v.into());
        }
        for v in ["False", "true"] {
            s.driver_info.insert("irmc_verify_ca".into(), v.into());
            validate_create(&s).unwrap();
        }
        for src in [
            "glance://0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
            "0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
            "images/ubuntu.img",
            "http://10.0.0.1:8080/u.img",
        ] {
            s.instance_info.insert("image_source".into(), src.into());
            validate_create(&s).unwrap();
        }
        for c in [
            "d41d8cd98f00b204e9800998ecf8427e",
            &"f".repeat(128),
            "https://x/SHA256SUMS",
        ] {
            s.instance_info
                .insert("image_checksum".into(), c.to_string());
            validate_create(&s).unwrap();
        }
        s.instance_info.remove("image_checksum");
        s.instance_info
            .insert("os_hash_algo".into(), "sha512".into());
        s.instance_info
            .insert("os_hash_value".into(), "0".repeat(128));
        validate_create(&s).unwrap();
    }

    #[test]
    fn macs_and_names() {
        let mut s = good();
        s.macs.push("52:54:00:aa:bb".into());
        assert_eq!(
            msg(&s),
            "macs[1]: invalid MAC address \"52:54:00:aa:bb\"; expected 6 octets like 52:54:00:12:34:56"
        );
        for bad in [
            "52:54:00:aa:bb:cc:dd",
            "zz:54:00:aa:bb:cc",
            "5254.00aa.bbcc",
            "",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
        let mut s = good();
        s.macs = vec!["52-54-00-AA-BB-CC".into()];
        normalize_spec(&mut s);
        assert_eq!(s.macs, vec!["52:54:00:aa:bb:cc"]);

        for bad in [
            "has space",
            "sl/ash",
            "0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
        ] {
            let mut s = good();
            s.name = Some(bad.into());
            assert!(msg(&s).starts_with("name: "), "{bad}");
        }
        let mut s = good();
        s.name = Some("rack1.node-07_a~b".into());
        validate_create(&s).unwrap();
        s.driver = "ipmi".into();
        assert_eq!(
            msg(&s),
            "driver: unsupported driver \"ipmi\"; expected \"irmc\""
        );
    }

    #[test]
    fn deploy_needs_image_and_checksum() {
        let mut s = good();
        s.instance_info.clear();
        validate_create(&s).unwrap();
        let node = Node {
            status: crate::NodeStatus::new(0),
            spec: s.clone(),
            version: 1,
        };
        let deploy = validate(&node)
            .into_iter()
            .find(|c| c.interface == "deploy")
            .unwrap();
        assert!(!deploy.result);
        assert_eq!(
            deploy.reason,
            "instance_info.image_source: required to deploy"
        );

        s.instance_info
            .insert("image_source".into(), "http://x/img".into());
        let node = Node {
            status: crate::NodeStatus::new(0),
            spec: s.clone(),
            version: 1,
        };
        let deploy = validate(&node)
            .into_iter()
            .find(|c| c.interface == "deploy")
            .unwrap();
        assert!(
            deploy
                .reason
                .starts_with("instance_info.image_checksum: required")
        );

        s.driver_info.remove("deploy_iso");
        s.driver_info.remove("irmc_password");
        let node = Node {
            status: crate::NodeStatus::new(0),
            spec: s,
            version: 1,
        };
        let checks = validate(&node);
        assert_eq!(checks[0].reason, "driver_info.irmc_password: required");
        assert!(
            checks[2]
                .reason
                .contains("driver_info.deploy_iso: required")
        );
    }

    #[test]
    fn secrets_are_masked() {
        for k in [
            "irmc_password",
            "ipmi_password",
            "x_secret",
            "agent_token",
            "irmc_snmp_community",
            "IRMC_Password",
            "token",
            "clé_TOKEN",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "irmc_username",
            "irmc_address",
            "password_hint_len",
            "",
            "ken",
            "é",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
        let s = good();
        let m = mask(&s.driver_info);
        assert_eq!(m["irmc_password"], MASK);
        assert_eq!(m["irmc_username"], "admin");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("\"pw\""), "{dbg}");
        assert!(dbg.contains(MASK));
    }

    #[test]
    fn boot_mode_sources() {
        let mut s = good();
        assert_eq!(boot_mode(&s), "uefi");
        s.properties
            .insert("capabilities".into(), "foo:bar, boot_mode:bios".into());
        assert_eq!(boot_mode(&s), "bios");
        s.instance_info
            .insert("deploy_boot_mode".into(), "uefi".into());
        assert_eq!(boot_mode(&s), "uefi");
        s.properties
            .insert("capabilities".into(), "boot_mode:legacy".into());
        assert!(msg(&s).starts_with("properties.capabilities: boot_mode"));
    }
}
