//! Fetching URL and Glance images into the cache: Glance metadata (expected checksums,
//! size, disk format), one streamed download hashed on the way, checked, then renamed
//! into place and pinned under the state lock.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::index::{Entry, Sidecar};
use super::{GlanceConfig, ImageCache, lock};
use crate::error::MediaError;
use crate::fsio::temp_path_for;
use crate::image::{Checksum, ChecksumAlgo, ContentHasher, ImageRef, Url};

/// A URL fit for logs and errors: no user info, no query (either may carry credentials).
pub fn redact_url(u: &Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("******"));
    }
    u.to_string()
}

/// The key a reference is known by in the index and in the sidecars, which sit on the
/// share that BMCs read: the reference itself, unless it carries user info or a query
/// (a password, a signed URL), in which case its SHA-256.
pub(super) fn reference_key(canonical: &str) -> String {
    use sha2::Digest as _;
    let url = canonical.strip_prefix("url:").unwrap_or(canonical);
    let secretive = Url::parse(url)
        .map(|u| !u.username().is_empty() || u.password().is_some() || u.query().is_some())
        .unwrap_or(false);
    if secretive {
        format!(
            "sha256:{}",
            hex_lower(&sha2::Sha256::digest(canonical.as_bytes()))
        )
    } else {
        canonical.to_string()
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest wait for the next bytes of a download before it is given up.
const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Most redirects followed for a request that carries the Glance token.
const MAX_TOKEN_REDIRECTS: usize = 5;

/// A short, safe file extension from the last path segment of `name` (e.g. `.iso`).
fn extension_of(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= 8
                && ext.bytes().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!(".{}", ext.to_ascii_lowercase())
        }
        _ => String::new(),
    }
}

#[derive(Debug, Deserialize)]
struct GlanceImage {
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    os_hash_algo: Option<String>,
    #[serde(default)]
    os_hash_value: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    disk_format: Option<String>,
    #[serde(default)]
    container_format: Option<String>,
}

impl ImageCache {
    /// Download `r` into the cache; returns (file name, sidecar).
    pub(super) async fn download(
        &self,
        r: &ImageRef,
        canonical: &str,
        checksum: Option<&Checksum>,
        user: &str,
    ) -> Result<(String, Sidecar), MediaError> {
        let reference = r.to_string();
        let mut expected: Vec<Checksum> = checksum.into_iter().cloned().collect();
        let mut expected_size = None;
        let mut formats: (Option<String>, Option<String>) = (None, None);
        let (url, ext, token) =
            match r {
                ImageRef::Http(u) => (u.clone(), extension_of(u.path()), None),
                ImageRef::Glance(id) => {
                    let g = self.cfg.glance.as_ref().ok_or_else(|| {
                        MediaError::GlanceNotConfigured {
                            reference: reference.clone(),
                        }
                    })?;
                    let meta = self.glance_metadata(g, id).await?;
                    if let Some(status) = &meta.status
                        && status != "active"
                    {
                        return Err(MediaError::Http {
                            op: "Glance image",
                            url: reference.clone(),
                            reason: format!("image status is {status:?}, not \"active\""),
                        });
                    }
                    if let (Some(a), Some(v)) = (&meta.os_hash_algo, &meta.os_hash_value) {
                        // An algorithm we do not know is not fatal while md5 is there.
                        if let Ok(c) = Checksum::from_os_hash(a, v) {
                            expected.push(c);
                        }
                    }
                    if let Some(md5) = &meta.checksum {
                        expected.push(Checksum::new(ChecksumAlgo::Md5, md5)?);
                    }
                    expected_size = meta.size;
                    formats = (meta.disk_format.clone(), meta.container_format.clone());
                    let ext = match meta.disk_format.as_deref() {
                        Some(f)
                            if !f.is_empty()
                                && f.len() <= 8
                                && f.bytes().all(|c| c.is_ascii_alphanumeric()) =>
                        {
                            format!(".{f}")
                        }
                        _ => String::new(),
                    };
                    (
                        glance_url(&g.endpoint, &[id, "file"])?,
                        ext,
                        Some(g.token.clone()),
                    )
                }
                ImageRef::ShareFile(_) => {
                    return Err(MediaError::InvalidImageRef {
                        reference,
                        reason: "share files are not downloaded".into(),
                    });
                }
            };
        let shown = redact_url(&url);
        let http_err = |e: reqwest::Error| MediaError::Http {
            op: "download image",
            url: shown.clone(),
            reason: e.without_url().to_string(),
        };
        let mut resp = match &token {
            Some(t) => self.send_with_token(url, t, None).await.map_err(http_err)?,
            None => self.cfg.http.get(url).send().await.map_err(http_err)?,
        };
        if !resp.status().is_success() {
            return Err(MediaError::Http {
                op: "download image",
                url: shown,
                reason: format!("HTTP {}", resp.status()),
            });
        }
        let size_hint = expected_size.or(resp.content_length());
        // Without a size, a source that never ends must not fill the share: nothing
        // larger than the whole cache can be cached anyway.
        let cap = size_hint.unwrap_or(self.cfg.max_bytes);

        let dir = self.cache_dir();
        if let Some(size) = size_hint {
            self.make_room(size, &dir.join(format!("<{reference}>")))
                .await?;
        }
        let tmp = temp_path_for(&dir.join("download"));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| MediaError::io("create", &tmp, e))?;
            let mut hasher = ContentHasher::new(&expected);
            let mut size = 0u64;
            loop {
                let next = tokio::time::timeout(STALL_TIMEOUT, resp.chunk())
                    .await
                    .map_err(|_| MediaError::Http {
                        op: "download image",
                        url: shown.clone(),
                        reason: format!(
                            "no data for {}s after {size} bytes",
                            STALL_TIMEOUT.as_secs()
                        ),
                    })?;
                let Some(chunk) = next.map_err(http_err)? else {
                    break;
                };
                size += chunk.len() as u64;
                if size > cap {
                    return Err(MediaError::Http {
                        op: "download image",
                        url: shown.clone(),
                        reason: match size_hint {
                            Some(_) => "more bytes than announced".into(),
                            None => format!(
                                "no size announced and more than the cache's max_bytes ({cap}) sent"
                            ),
                        },
                    });
                }
                f.write_all(&chunk)
                    .await
                    .map_err(|e| match e.raw_os_error() {
                        Some(28) => MediaError::NoSpace {
                            path: tmp.clone(),
                            needed: size,
                            free: 0,
                        },
                        _ => MediaError::io("write", &tmp, e),
                    })?;
                // Hashing runs inline: it is cheaper than the network for any real link.
                hasher.update(&chunk);
            }
            if size_hint.is_some_and(|s| size != s) {
                return Err(MediaError::Http {
                    op: "download image",
                    url: shown.clone(),
                    reason: format!("got {size} bytes, expected {size_hint:?}"),
                });
            }
            f.sync_all()
                .await
                .map_err(|e| MediaError::io("fsync", &tmp, e))?;
            drop(f);
            let digests = hasher.finish();
            for c in &expected {
                digests.verify(c, &reference)?;
            }
            let file = format!("{}{ext}", digests.sha256);
            let path = dir.join(&file);
            // Put the file in place and pin it for `user` in one step under the state
            // lock, which GC also holds while deleting: it cannot remove it in between.
            let meta = {
                let mut st = lock(&self.state);
                if path.is_file() {
                    // Same content under another reference: keep the existing file.
                    let _ = std::fs::remove_file(&tmp);
                } else {
                    std::fs::rename(&tmp, &path)
                        .map_err(|e| MediaError::io("rename into place", &path, e))?;
                }
                let entry = st.entries.entry(file.clone()).or_insert_with(|| Entry {
                    meta: Sidecar::default(),
                    users: BTreeSet::new(),
                    last_used: Instant::now(),
                });
                let meta = &mut entry.meta;
                meta.refs.insert(canonical.to_string());
                meta.size = size;
                meta.sha256 = digests.sha256.clone();
                meta.md5 = digests.md5.or(meta.md5.take());
                meta.sha512 = digests.sha512.or(meta.sha512.take());
                if formats.0.is_some() || formats.1.is_some() {
                    meta.disk_format = formats.0.take();
                    meta.container_format = formats.1.take();
                }
                let meta = meta.clone();
                entry.users.insert(user.to_string());
                entry.last_used = Instant::now();
                st.by_ref.insert(canonical.to_string(), file.clone());
                meta
            };
            self.write_sidecar(&file, &meta).await?;
            Ok((file, meta))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        } else {
            self.downloads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn glance_metadata(&self, g: &GlanceConfig, id: &str) -> Result<GlanceImage, MediaError> {
        let url = glance_url(&g.endpoint, &[id])?;
        let shown = redact_url(&url);
        let err = |reason: String| MediaError::Http {
            op: "Glance image metadata",
            url: shown.clone(),
            reason,
        };
        let resp = self
            .send_with_token(url, &g.token, Some("application/json"))
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| err(e.without_url().to_string()))?;
        serde_json::from_slice(&body).map_err(|e| err(format!("bad JSON: {e}")))
    }
}

impl ImageCache {
    /// GET `url` with the Glance token. Redirects within the same origin keep the token;
    /// a redirect to another origin (an object store's signed URL, say) is followed
    /// without it, by the ordinary client.
    async fn send_with_token(
        &self,
        mut url: Url,
        token: &secret::Secret,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        for _ in 0..=MAX_TOKEN_REDIRECTS {
            let mut req = self
                .token_http
                .get(url.clone())
                .header("X-Auth-Token", token.expose());
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            let resp = req.send().await?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            else {
                return Ok(resp);
            };
            if next.origin() != url.origin() {
                let mut req = self.cfg.http.get(next);
                if let Some(a) = accept {
                    req = req.header("Accept", a);
                }
                return req.send().await;
            }
            url = next;
        }
        // Too many same-origin redirects: the last answer is the error the caller shows.
        self.token_http
            .get(url)
            .header("X-Auth-Token", token.expose())
            .send()
            .await
    }
}

fn glance_url(endpoint: &Url, tail: &[&str]) -> Result<Url, MediaError> {
    let mut u = endpoint.clone();
    {
        let mut segs = u
            .path_segments_mut()
            .map_err(|()| MediaError::InvalidImageRef {
                reference: endpoint.to_string(),
                reason: "Glance endpoint cannot be a base URL".into(),
            })?;
        segs.pop_if_empty().push("v2").push("images");
        for t in tail {
            segs.push(t);
        }
    }
    Ok(u)
}
