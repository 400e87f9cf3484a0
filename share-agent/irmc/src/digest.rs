//! RFC 7616 HTTP Digest authentication, client side: MD5, MD5-sess,
//! SHA-256 and SHA-256-sess, with `qop=auth` (or the RFC 2069 form when the
//! server offers no qop). `auth-int` alone is not supported.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Hash algorithm of a challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Self::Sha256 | Self::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }
}

/// A parsed `WWW-Authenticate: Digest ...` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth`.
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but the credentials were fine.
    pub stale: bool,
}

/// Splits `key=value, key="quoted, value"` parameters.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        // Skip separators.
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if !key.is_empty() {
            out.push((key, value));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

/// Parses one `WWW-Authenticate` header value; `None` unless it is a usable
/// Digest challenge.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let nonce = get("nonce")?;
    let algorithm = match get("algorithm") {
        Some(a) => Algorithm::parse(&a)?,
        None => Algorithm::Md5,
    };
    let qop = get("qop");
    let qop_auth = qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
    if qop.is_some() && !qop_auth {
        // Only auth-int offered: we cannot answer it.
        return None;
    }
    Some(Challenge {
        realm: get("realm").unwrap_or_default(),
        nonce,
        opaque: get("opaque"),
        algorithm,
        qop_auth,
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Computes the `Authorization` header value for one request.
pub(crate) fn authorization(
    ch: &Challenge,
    nc: u32,
    cnonce: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    let alg = ch.algorithm;
    let mut ha1 = alg.hash(&format!("{username}:{}:{password}", ch.realm));
    if alg.is_sess() {
        ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let nc_hex = format!("{nc:08x}");
    let response = if ch.qop_auth {
        alg.hash(&format!("{ha1}:{}:{nc_hex}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    let mut h = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, algorithm={}, response=\"{response}\"",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        alg.name()
    );
    if ch.qop_auth {
        h.push_str(&format!(", qop=auth, nc={nc_hex}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = &ch.opaque {
        h.push_str(&format!(", opaque={}", quote(opaque)));
    }
    h
}

/// A fresh client nonce.
pub(crate) fn new_cnonce() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 section 3.9.1 example (Mufasa / Circle of Life).
    const RFC_CHALLENGE_MD5: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn rfc7616_md5_example() {
        let ch = parse_challenge(RFC_CHALLENGE_MD5).unwrap();
        assert_eq!(ch.realm, "http-auth@example.org");
        assert!(ch.qop_auth);
        assert!(!ch.stale);
        let h = authorization(
            &ch,
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
        );
        assert!(
            h.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""),
            "{h}"
        );
        assert!(h.contains("nc=00000001"));
        assert!(h.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
    }

    #[test]
    fn rfc7616_sha256_example() {
        let c = RFC_CHALLENGE_MD5.replace("algorithm=MD5", "algorithm=SHA-256");
        let ch = parse_challenge(&c).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let h = authorization(
            &ch,
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
        );
        assert!(
            h.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{h}"
        );
    }

    #[test]
    fn rfc2617_example_without_sess() {
        // RFC 2617 section 3.5.
        let ch = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let h = authorization(
            &ch,
            1,
            "0a4f113b",
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
        );
        assert!(
            h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{h}"
        );
    }

    #[test]
    fn stale_and_non_digest() {
        let ch = parse_challenge(r#"Digest realm="r", nonce="n2", stale=TRUE"#).unwrap();
        assert!(ch.stale);
        assert!(!ch.qop_auth);
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(parse_challenge(r#"Basic realm="r""#).is_none());
        assert!(parse_challenge(r#"Digest realm="r""#).is_none(), "no nonce");
        assert!(parse_challenge(r#"Digest realm="r", nonce="n", qop="auth-int""#).is_none());
        assert!(parse_challenge(r#"Digest realm="r", nonce="n", algorithm=SHA-512"#).is_none());
        assert!(parse_challenge("").is_none());
        assert!(parse_challenge("Digest ,,,=,\"").is_none());
    }

    #[test]
    fn quotes_in_username_are_escaped() {
        let ch = parse_challenge(r#"Digest realm="a\"b", nonce="n""#).unwrap();
        assert_eq!(ch.realm, "a\"b");
        let h = authorization(&ch, 1, "c", "us\"er", "pw", "GET", "/");
        assert!(h.contains(r#"username="us\"er""#));
        assert!(!h.contains("pw"));
    }
}
