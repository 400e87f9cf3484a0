//! The BMC settings of driver_info (`irmc_*`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::err;
use crate::CoreError;

pub(super) fn check_bmc(di: &BTreeMap<String, String>) -> Result<(), CoreError> {
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
pub(super) fn check_bmc_all(di: &BTreeMap<String, String>) -> Vec<String> {
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
    if let Some(t) = di.get("irmc_transport")
        && t.parse::<crate::BmcTransport>().is_err()
    {
        bad(
            "irmc_transport",
            format!(
                "must be redfish, ipmi or auto (how power state and boot device are done), got {t:?}"
            ),
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
