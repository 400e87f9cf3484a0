//! HTTP Basic and Digest (RFC 7616, MD5, qop=auth) checking on the BMC side.
//!
//! Digest nonces are stateless: `hex(unix seconds) || md5(secret || seconds)`. A nonce
//! is valid when its MAC matches and it is younger than [`NONCE_LIFETIME_S`]; an old
//! one gets a new challenge with `stale=true`, as RFC 7616 describes. Nonce counts are
//! not tracked (no replay protection: this is a test BMC).

use base64::Engine as _;
use md5::{Digest as _, Md5};

use crate::Secret;

/// Realm a real iRMC announces.
pub(crate) const REALM: &str = "iRMC RESTful";
/// How long a digest nonce stays valid.
pub(crate) const NONCE_LIFETIME_S: u64 = 300;

/// Result of checking an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    /// Missing or wrong credentials.
    Denied,
    /// Digest with an expired (but genuine) nonce.
    Stale,
}

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Make a nonce for time `now` (unix seconds).
pub(crate) fn make_nonce(secret: &[u8], now: u64) -> String {
    let ts = format!("{now:016x}");
    format!("{ts}{}", md5_hex(&[secret, ts.as_bytes()]))
}

/// Check a nonce: Some(true) valid, Some(false) genuine but stale, None forged.
fn nonce_state(secret: &[u8], nonce: &str, now: u64) -> Option<bool> {
    if nonce.len() != 48 || !nonce.is_ascii() {
        return None;
    }
    let (ts, mac) = nonce.split_at(16);
    if md5_hex(&[secret, ts.as_bytes()]) != mac {
        return None;
    }
    let t = u64::from_str_radix(ts, 16).ok()?;
    Some(now.saturating_sub(t) <= NONCE_LIFETIME_S && t <= now + 5)
}

/// The `WWW-Authenticate` value for Basic.
pub(crate) fn basic_challenge() -> String {
    format!("Basic realm=\"{REALM}\"")
}

/// The `WWW-Authenticate` value for Digest.
pub(crate) fn digest_challenge(secret: &[u8], now: u64, stale: bool) -> String {
    let nonce = make_nonce(secret, now);
    let opaque = md5_hex(&[secret, b"opaque"]);
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{nonce}\", opaque=\"{opaque}\"{stale}"
    )
}

/// Check a Basic `Authorization` header.
pub(crate) fn check_basic(header: &str, user: &str, password: &Secret) -> Verdict {
    let Some(b64) = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))
    else {
        return Verdict::Denied;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return Verdict::Denied;
    };
    let Ok(text) = String::from_utf8(raw) else {
        return Verdict::Denied;
    };
    match text.split_once(':') {
        Some((u, p)) if u == user && p == password.expose() => Verdict::Ok,
        _ => Verdict::Denied,
    }
}

/// Parse `k=v, k="v, with comma", ...` after the scheme.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                // Push whole UTF-8 characters.
                let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                val.push_str(&s[i..i + ch_len]);
                i += ch_len;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        out.push((key, val));
    }
    out
}

/// Check a Digest `Authorization` header for `method` and request target `uri`.
pub(crate) fn check_digest(
    header: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &Secret,
    secret: &[u8],
    now: u64,
) -> Verdict {
    let Some(rest) = header
        .strip_prefix("Digest ")
        .or_else(|| header.strip_prefix("digest "))
    else {
        return Verdict::Denied;
    };
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (Some(username), Some(realm), Some(nonce), Some(duri), Some(response)) = (
        get("username"),
        get("realm"),
        get("nonce"),
        get("uri"),
        get("response"),
    ) else {
        return Verdict::Denied;
    };
    if username != user || realm != REALM {
        return Verdict::Denied;
    }
    if let Some(alg) = get("algorithm")
        && !alg.eq_ignore_ascii_case("MD5")
    {
        return Verdict::Denied;
    }
    // The digest covers the uri the client states; it must name this request.
    if duri != uri && duri.split('?').next() != uri.split('?').next() {
        return Verdict::Denied;
    }
    let ha1 = md5_hex(&[
        user.as_bytes(),
        REALM.as_bytes(),
        password.expose().as_bytes(),
    ]);
    let ha2 = md5_hex(&[method.as_bytes(), duri.as_bytes()]);
    let expected = match get("qop") {
        Some(qop) => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return Verdict::Denied;
            };
            md5_hex(&[
                ha1.as_bytes(),
                nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => md5_hex(&[ha1.as_bytes(), nonce.as_bytes(), ha2.as_bytes()]),
    };
    if !expected.eq_ignore_ascii_case(response) {
        return Verdict::Denied;
    }
    match nonce_state(secret, nonce, now) {
        Some(true) => Verdict::Ok,
        Some(false) => Verdict::Stale,
        None => Verdict::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_response(
        user: &str,
        pw: &str,
        method: &str,
        uri: &str,
        nonce: &str,
        nc: &str,
        cnonce: &str,
    ) -> String {
        let ha1 = md5_hex(&[user.as_bytes(), REALM.as_bytes(), pw.as_bytes()]);
        let ha2 = md5_hex(&[method.as_bytes(), uri.as_bytes()]);
        md5_hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ])
    }

    #[test]
    fn digest_round_trip() {
        let secret = b"k";
        let pw = Secret::new("p@ss");
        let nonce = make_nonce(secret, 1000);
        let resp = client_response(
            "admin", "p@ss", "POST", "/config", &nonce, "00000001", "abc",
        );
        let h = format!(
            "Digest username=\"admin\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/config\", response=\"{resp}\", qop=auth, nc=00000001, cnonce=\"abc\", algorithm=MD5"
        );
        assert_eq!(
            check_digest(&h, "POST", "/config", "admin", &pw, secret, 1001),
            Verdict::Ok
        );
        assert_eq!(
            check_digest(
                &h,
                "POST",
                "/config",
                "admin",
                &pw,
                secret,
                1000 + NONCE_LIFETIME_S + 1
            ),
            Verdict::Stale
        );
        assert_eq!(
            check_digest(&h, "GET", "/config", "admin", &pw, secret, 1001),
            Verdict::Denied
        );
        assert_eq!(
            check_digest(
                &h,
                "POST",
                "/config",
                "admin",
                &Secret::new("x"),
                secret,
                1001
            ),
            Verdict::Denied
        );
        assert_eq!(
            check_digest(&h, "POST", "/config", "admin", &pw, b"other", 1001),
            Verdict::Denied
        );
    }

    #[test]
    fn basic() {
        let pw = Secret::new("pw");
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:pw")
        );
        assert_eq!(check_basic(&h, "admin", &pw), Verdict::Ok);
        assert_eq!(check_basic(&h, "root", &pw), Verdict::Denied);
        assert_eq!(check_basic("Basic !!!", "admin", &pw), Verdict::Denied);
        assert_eq!(check_basic("Bearer x", "admin", &pw), Verdict::Denied);
    }

    #[test]
    fn params_with_commas() {
        let p = parse_params("a=\"x, y\", b=2,c=\"q\\\"\"");
        assert_eq!(
            p,
            vec![
                ("a".into(), "x, y".into()),
                ("b".into(), "2".into()),
                ("c".into(), "q\"".into())
            ]
        );
    }
}
