//! Image references and checksums, as Ironic spells them.
//!
//! An image reference is a file name relative to the share root, an `http(s)://` URL, a
//! `glance://<uuid>` URL or a bare Glance UUID. Checksums come from Ironic's
//! `image_checksum` (md5/sha256/sha512 hex, optionally `algo:hex`) or Glance's
//! `os_hash_algo` + `os_hash_value`.

use std::fmt;
use std::str::FromStr;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::error::MediaError;

pub use reqwest::Url;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A file relative to the share root, used in place (never copied). Normalised:
    /// no leading `/`, no `.`/`..` components, no empty components.
    ShareFile(String),
    /// An http(s) URL, fetched once into the cache.
    Http(Url),
    /// A Glance v2 image id (lower-case UUID), fetched once into the cache.
    Glance(String),
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

impl ImageRef {
    /// Parse an image reference (see the module docs).
    pub fn parse(s: &str) -> Result<Self, MediaError> {
        let bad = |reason: &str| {
            Err(MediaError::InvalidImageRef {
                reference: s.to_string(),
                reason: reason.to_string(),
            })
        };
        let t = s.trim();
        if t.is_empty() {
            return bad("empty");
        }
        if let Some(id) = t.strip_prefix("glance://") {
            let id = id.trim_end_matches('/');
            if !is_uuid(id) {
                return bad("glance:// must be followed by an image UUID");
            }
            return Ok(ImageRef::Glance(id.to_ascii_lowercase()));
        }
        if is_uuid(t) {
            return Ok(ImageRef::Glance(t.to_ascii_lowercase()));
        }
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match Url::parse(t) {
                Ok(u) if u.host_str().is_some() => Ok(ImageRef::Http(u)),
                Ok(_) => bad("URL has no host"),
                Err(e) => bad(&format!("bad URL: {e}")),
            };
        }
        if t.contains("://") {
            return bad("unsupported scheme (use a share-relative path, http(s):// or glance://)");
        }
        if t.contains('\0') || t.contains('\\') {
            return bad("path contains NUL or backslash");
        }
        let mut parts = Vec::new();
        for part in t.split('/') {
            match part {
                "" | "." => {}
                ".." => return bad("path may not contain '..'"),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return bad("path names no file");
        }
        Ok(ImageRef::ShareFile(parts.join("/")))
    }

    /// A stable string that identifies this reference (the cache's index key).
    pub fn canonical(&self) -> String {
        match self {
            ImageRef::ShareFile(p) => format!("share:{p}"),
            ImageRef::Http(u) => format!("url:{u}"),
            ImageRef::Glance(id) => format!("glance:{id}"),
        }
    }
}

impl FromStr for ImageRef {
    type Err = MediaError;
    fn from_str(s: &str) -> Result<Self, MediaError> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::ShareFile(p) => f.write_str(p),
            // Shown in errors and logs: without user info or query (credentials).
            ImageRef::Http(u) => f.write_str(&crate::cache::redact_url(u)),
            ImageRef::Glance(id) => write!(f, "glance://{id}"),
        }
    }
}

/// A checksum algorithm Ironic/Glance use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgo {
    Md5,
    Sha256,
    Sha512,
}

impl ChecksumAlgo {
    /// Name as Glance's `os_hash_algo` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Md5 => "md5",
            ChecksumAlgo::Sha256 => "sha256",
            ChecksumAlgo::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            ChecksumAlgo::Md5 => 32,
            ChecksumAlgo::Sha256 => 64,
            ChecksumAlgo::Sha512 => 128,
        }
    }

    /// Parse `md5`, `sha256`, `sha512` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, MediaError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "md5" => Ok(ChecksumAlgo::Md5),
            "sha256" => Ok(ChecksumAlgo::Sha256),
            "sha512" => Ok(ChecksumAlgo::Sha512),
            _ => Err(MediaError::InvalidChecksum {
                value: s.to_string(),
                reason: "unsupported algorithm (md5, sha256, sha512)".into(),
            }),
        }
    }
}

/// An expected checksum: algorithm + lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    pub algo: ChecksumAlgo,
    pub hex: String,
}

impl Checksum {
    /// A checksum from an algorithm and its hex digest (validated, lower-cased).
    pub fn new(algo: ChecksumAlgo, hex: &str) -> Result<Self, MediaError> {
        let h = hex.trim().to_ascii_lowercase();
        if h.len() != algo.hex_len() || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(MediaError::InvalidChecksum {
                value: hex.to_string(),
                reason: format!("{} needs {} hex digits", algo.name(), algo.hex_len()),
            });
        }
        Ok(Checksum { algo, hex: h })
    }

    /// From Ironic's `image_checksum`: `algo:hex`, or bare hex whose length picks the
    /// algorithm (32 md5, 64 sha256, 128 sha512).
    pub fn from_image_checksum(s: &str) -> Result<Self, MediaError> {
        let t = s.trim();
        if let Some((algo, hex)) = t.split_once(':') {
            return Checksum::new(ChecksumAlgo::parse(algo)?, hex);
        }
        let algo = match t.len() {
            32 => ChecksumAlgo::Md5,
            64 => ChecksumAlgo::Sha256,
            128 => ChecksumAlgo::Sha512,
            _ => {
                return Err(MediaError::InvalidChecksum {
                    value: s.to_string(),
                    reason: "length matches none of md5/sha256/sha512".into(),
                });
            }
        };
        Checksum::new(algo, t)
    }

    /// From Glance's `os_hash_algo` + `os_hash_value`.
    pub fn from_os_hash(algo: &str, value: &str) -> Result<Self, MediaError> {
        Checksum::new(ChecksumAlgo::parse(algo)?, value)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

/// SHA-256 (always: the cache's content address) plus the algorithms of any expected
/// checksums, computed in one pass over the bytes.
pub(crate) struct ContentHasher {
    sha256: Sha256,
    md5: Option<Md5>,
    sha512: Option<Sha512>,
}

impl ContentHasher {
    pub(crate) fn new<'a>(expected: impl IntoIterator<Item = &'a Checksum>) -> Self {
        let mut h = ContentHasher {
            sha256: Sha256::new(),
            md5: None,
            sha512: None,
        };
        for c in expected {
            match c.algo {
                ChecksumAlgo::Md5 => h.md5 = Some(Md5::new()),
                ChecksumAlgo::Sha512 => h.sha512 = Some(Sha512::new()),
                ChecksumAlgo::Sha256 => {}
            }
        }
        h
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        if let Some(m) = &mut self.md5 {
            m.update(data);
        }
        if let Some(s) = &mut self.sha512 {
            s.update(data);
        }
    }

    /// Returns (sha256 hex, digests by algorithm).
    pub(crate) fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            md5: self.md5.map(|m| hex::encode(m.finalize())),
            sha512: self.sha512.map(|s| hex::encode(s.finalize())),
        }
    }
}

pub(crate) struct Digests {
    pub(crate) sha256: String,
    pub(crate) md5: Option<String>,
    pub(crate) sha512: Option<String>,
}

impl Digests {
    /// Check `expected`; `reference` names the image in the error.
    pub(crate) fn verify(&self, expected: &Checksum, reference: &str) -> Result<(), MediaError> {
        let actual = match expected.algo {
            ChecksumAlgo::Sha256 => Some(&self.sha256),
            ChecksumAlgo::Md5 => self.md5.as_ref(),
            ChecksumAlgo::Sha512 => self.sha512.as_ref(),
        };
        match actual {
            Some(a) if *a == expected.hex => Ok(()),
            other => Err(MediaError::ChecksumMismatch {
                reference: reference.to_string(),
                algo: expected.algo.name(),
                expected: expected.hex.clone(),
                actual: other.cloned().unwrap_or_else(|| "(not computed)".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refs() {
        let id = "0B6E3E2A-1111-4c4c-9d9d-0123456789ab";
        assert_eq!(
            ImageRef::parse(id).unwrap(),
            ImageRef::Glance(id.to_ascii_lowercase())
        );
        assert_eq!(
            ImageRef::parse(&format!("glance://{id}")).unwrap(),
            ImageRef::Glance(id.to_ascii_lowercase())
        );
        assert!(matches!(
            ImageRef::parse("https://x.example/a.iso").unwrap(),
            ImageRef::Http(_)
        ));
        assert_eq!(
            ImageRef::parse("/images/./deploy.iso").unwrap(),
            ImageRef::ShareFile("images/deploy.iso".into())
        );
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "ftp://x/y",
            "glance://nope",
            "/",
            "http://",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksums() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            Checksum::from_image_checksum(md5).unwrap().algo,
            ChecksumAlgo::Md5
        );
        let s256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            Checksum::from_image_checksum(s256).unwrap().algo,
            ChecksumAlgo::Sha256
        );
        assert_eq!(
            Checksum::from_image_checksum(&format!("SHA256:{}", s256.to_uppercase()))
                .unwrap()
                .hex,
            s256
        );
        assert!(Checksum::from_image_checksum("abc").is_err());
        assert!(Checksum::from_os_hash("sha1", s256).is_err());
        let c = [
            Checksum::new(ChecksumAlgo::Md5, md5).unwrap(),
            Checksum::new(ChecksumAlgo::Sha256, s256).unwrap(),
        ];
        let d = ContentHasher::new(&c).finish();
        d.verify(&c[0], "x").unwrap();
        d.verify(&c[1], "x").unwrap();
        let wrong = Checksum::new(ChecksumAlgo::Md5, &"0".repeat(32)).unwrap();
        assert!(matches!(
            d.verify(&wrong, "x"),
            Err(MediaError::ChecksumMismatch { .. })
        ));
    }
}
