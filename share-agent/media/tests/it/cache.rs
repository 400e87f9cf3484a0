//! The image cache against a real HTTP server on loopback: plain URLs and a small fake
//! Glance v2 (metadata + file, X-Auth-Token), one download for concurrent requests,
//! checksums, share files in place, GC by TTL and size, restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use boot_media::{
    CacheConfig, Checksum, ChecksumAlgo, GlanceConfig, ImageCache, ImageRef, MediaError, Secret,
};
use md5::Digest as _;

const TOKEN: &str = "glance-s3cret-token";
const GLANCE_ID: &str = "6f1b1f0e-2c4d-4e6f-8a9b-0c1d2e3f4a5b";

#[derive(Default)]
struct Peer {
    files: HashMap<String, Vec<u8>>,
    hits: HashMap<String, AtomicUsize>,
}

impl Peer {
    fn hits(&self, name: &str) -> usize {
        self.hits.get(name).map_or(0, |h| h.load(Ordering::SeqCst))
    }
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

async fn serve_file(
    State(p): State<Arc<Peer>>,
    UrlPath(name): UrlPath<String>,
) -> impl IntoResponse {
    if let Some(h) = p.hits.get(&name) {
        h.fetch_add(1, Ordering::SeqCst);
    }
    // Slow enough that concurrent fetches overlap.
    tokio::time::sleep(Duration::from_millis(150)).await;
    match p.files.get(&name) {
        Some(b) => (StatusCode::OK, b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn authorised(h: &HeaderMap) -> bool {
    h.get("x-auth-token").and_then(|v| v.to_str().ok()) == Some(TOKEN)
}

async fn glance_meta(
    State(p): State<Arc<Peer>>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> impl IntoResponse {
    if !authorised(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(b) = p.files.get(&format!("glance-{id}")) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = serde_json::json!({
        "id": id, "status": "active", "disk_format": "iso", "container_format": "bare",
        "size": b.len(),
        "checksum": hex::encode(md5::Md5::digest(b)),
        "os_hash_algo": "sha512", "os_hash_value": hex::encode(sha2::Sha512::digest(b)),
    });
    axum::Json(body).into_response()
}

async fn glance_file(
    State(p): State<Arc<Peer>>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> impl IntoResponse {
    if !authorised(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let key = format!("glance-{id}");
    if let Some(c) = p.hits.get(&key) {
        c.fetch_add(1, Ordering::SeqCst);
    }
    match p.files.get(&key) {
        Some(b) => (StatusCode::OK, b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_peer(files: Vec<(&str, Vec<u8>)>) -> (String, Arc<Peer>) {
    let mut peer = Peer::default();
    for (n, b) in files {
        peer.hits.insert(n.to_string(), AtomicUsize::new(0));
        peer.files.insert(n.to_string(), b);
    }
    let peer = Arc::new(peer);
    let app = axum::Router::new()
        .route("/images/{name}", get(serve_file))
        .route("/glance/v2/images/{id}", get(glance_meta))
        .route("/glance/v2/images/{id}/file", get(glance_file))
        .with_state(peer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), peer)
}

fn config(share: &std::path::Path, base: &str, token: &str) -> CacheConfig {
    CacheConfig {
        share_root: share.to_path_buf(),
        dir: "cache".into(),
        max_bytes: 64 << 20,
        ttl: Duration::from_secs(3600),
        glance: Some(GlanceConfig {
            endpoint: format!("{base}/glance").parse().unwrap(),
            token: Secret::new(token),
        }),
        http: reqwest::Client::new(),
    }
}

fn cache_files(share: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(share.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn concurrent_url_fetches_share_one_download() {
    let data = blob(1 << 20, 7);
    let (base, peer) = start_peer(vec![("deploy.iso", data.clone())]).await;
    let share = tempfile::tempdir().unwrap();
    let cache = Arc::new(ImageCache::new(config(share.path(), &base, TOKEN)).unwrap());
    let r = ImageRef::parse(&format!("{base}/images/deploy.iso")).unwrap();
    let sum = Checksum::new(ChecksumAlgo::Sha256, &sha256(&data)).unwrap();

    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (cache, r, sum) = (cache.clone(), r.clone(), sum.clone());
            tokio::spawn(async move {
                cache
                    .fetch(&r, Some(&sum), &format!("node-{n}"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut images = Vec::new();
    for t in tasks {
        images.push(t.await.unwrap());
    }
    assert_eq!(peer.hits("deploy.iso"), 1, "one download for eight nodes");
    assert!(images.iter().all(|i| i == &images[0]));
    let img = &images[0];
    assert!(img.cached);
    assert_eq!(img.share_relative, format!("cache/{}.iso", sha256(&data)));
    assert_eq!(img.path, share.path().join(&img.share_relative));
    assert_eq!(std::fs::read(&img.path).unwrap(), data);
    assert_eq!(img.size, data.len() as u64);
    assert_eq!(img.sha256.as_deref(), Some(sha256(&data).as_str()));
    assert_eq!(cache.users(img), 8);
    let s = cache.stats();
    assert_eq!(
        (s.entries, s.bytes, s.in_use, s.downloads),
        (1, data.len() as u64, 1, 1)
    );
    // Eight fetches: the first missed (and downloaded), the seven others waited and hit.
    assert_eq!((s.misses, s.hits), (1, 7));

    // An md5 asked later is computed from the cached file, not downloaded again.
    let md5 = Checksum::new(ChecksumAlgo::Md5, &hex::encode(md5::Md5::digest(&data))).unwrap();
    cache.fetch(&r, Some(&md5), "node-9").await.unwrap();
    let wrong = Checksum::new(ChecksumAlgo::Md5, &"0".repeat(32)).unwrap();
    assert!(matches!(
        cache.fetch(&r, Some(&wrong), "node-9").await,
        Err(MediaError::ChecksumMismatch { .. })
    ));
    assert_eq!(peer.hits("deploy.iso"), 1);

    // A restarted cache adopts the file and does not download it again.
    drop(cache);
    let again = ImageCache::new(config(share.path(), &base, TOKEN)).unwrap();
    let img2 = again.fetch(&r, Some(&sum), "node-1").await.unwrap();
    assert_eq!(img2.path, img.path);
    assert_eq!(peer.hits("deploy.iso"), 1);
}

#[tokio::test]
async fn checksum_mismatch_leaves_nothing_behind() {
    let data = blob(300_000, 1);
    let (base, _peer) = start_peer(vec![("x.img", data.clone())]).await;
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), &base, TOKEN)).unwrap();
    let r = ImageRef::parse(&format!("{base}/images/x.img")).unwrap();
    let wrong = Checksum::from_image_checksum(&"ab".repeat(32)).unwrap();
    let e = cache.fetch(&r, Some(&wrong), "n").await.unwrap_err();
    assert!(matches!(e, MediaError::ChecksumMismatch { .. }), "{e}");
    assert!(e.to_string().contains("x.img"), "{e}");
    assert!(
        cache_files(share.path()).is_empty(),
        "{:?}",
        cache_files(share.path())
    );
    assert_eq!(cache.stats().entries, 0);

    let missing = ImageRef::parse(&format!("{base}/images/nope.img")).unwrap();
    let e = cache
        .fetch(&missing, None, "n")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404") && e.contains("nope.img"), "{e}");
}

#[tokio::test]
async fn glance_image_fetched_with_token_and_verified() {
    let data = blob(500_000, 3);
    let (base, peer) = start_peer(vec![(&format!("glance-{GLANCE_ID}"), data.clone())]).await;
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), &base, TOKEN)).unwrap();
    let r = ImageRef::parse(GLANCE_ID).unwrap();
    let img = cache.fetch(&r, None, "node-1").await.unwrap();
    assert_eq!(std::fs::read(&img.path).unwrap(), data);
    assert!(
        img.share_relative.ends_with(".iso"),
        "{}",
        img.share_relative
    );
    let same = cache
        .fetch(
            &ImageRef::parse(&format!("glance://{GLANCE_ID}")).unwrap(),
            None,
            "node-2",
        )
        .await
        .unwrap();
    assert_eq!(same.path, img.path);
    assert_eq!(peer.hits(&format!("glance-{GLANCE_ID}")), 1);
    // Glance's formats come along, also for the cache hit (they feed image_info).
    for i in [&img, &same] {
        assert_eq!(i.disk_format.as_deref(), Some("iso"));
        assert_eq!(i.container_format.as_deref(), Some("bare"));
    }

    // A wrong token is an error that does not print the token.
    let share2 = tempfile::tempdir().unwrap();
    let bad = ImageCache::new(config(share2.path(), &base, "wrong-token-value")).unwrap();
    let e = bad.fetch(&r, None, "n").await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong-token-value"), "{text}");
    assert!(!format!("{:?}", config(share2.path(), &base, TOKEN)).contains(TOKEN));

    // No Glance configured.
    let mut cfg = config(share2.path(), &base, TOKEN);
    cfg.glance = None;
    let none = ImageCache::new(cfg).unwrap();
    assert!(matches!(
        none.fetch(&r, None, "n").await,
        Err(MediaError::GlanceNotConfigured { .. })
    ));
}

#[tokio::test]
async fn share_files_are_used_in_place() {
    let share = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(share.path().join("images")).unwrap();
    let data = blob(10_000, 9);
    std::fs::write(share.path().join("images/deploy.iso"), &data).unwrap();
    std::fs::write(outside.path().join("secret.iso"), b"x").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.iso"),
        share.path().join("images/escape.iso"),
    )
    .unwrap();
    let cache = ImageCache::new(config(share.path(), "http://127.0.0.1:9", TOKEN)).unwrap();

    let img = cache
        .fetch(&ImageRef::parse("images/deploy.iso").unwrap(), None, "n")
        .await
        .unwrap();
    assert!(!img.cached);
    assert_eq!(img.share_relative, "images/deploy.iso");
    assert_eq!(img.path, share.path().join("images/deploy.iso"));
    assert_eq!(img.size, data.len() as u64);
    assert!(cache_files(share.path()).is_empty(), "never copied");

    let good = Checksum::new(ChecksumAlgo::Sha256, &sha256(&data)).unwrap();
    let checked = cache
        .fetch(
            &ImageRef::parse("/images/deploy.iso").unwrap(),
            Some(&good),
            "n",
        )
        .await
        .unwrap();
    assert_eq!(checked.sha256.as_deref(), Some(sha256(&data).as_str()));
    let bad = Checksum::new(ChecksumAlgo::Sha256, &sha256(b"other")).unwrap();
    assert!(matches!(
        cache
            .fetch(
                &ImageRef::parse("images/deploy.iso").unwrap(),
                Some(&bad),
                "n"
            )
            .await,
        Err(MediaError::ChecksumMismatch { .. })
    ));

    let e = cache
        .fetch(&ImageRef::parse("images/escape.iso").unwrap(), None, "n")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("outside the share root"), "{e}");
    let e = cache
        .fetch(&ImageRef::parse("images/missing.iso").unwrap(), None, "n")
        .await
        .unwrap_err();
    assert!(matches!(e, MediaError::ImageNotFound { .. }), "{e}");
    assert!(ImageRef::parse("../etc/passwd").is_err());
}

#[tokio::test]
async fn gc_honours_ttl_size_and_users() {
    let a = blob(200_000, 1);
    let b = blob(300_000, 2);
    let big = blob(900_000, 3);
    let (base, peer) = start_peer(vec![
        ("a.img", a.clone()),
        ("b.img", b.clone()),
        ("big.img", big.clone()),
    ])
    .await;
    let share = tempfile::tempdir().unwrap();
    let mut cfg = config(share.path(), &base, TOKEN);
    cfg.max_bytes = 1_000_000;
    let cache = ImageCache::new(cfg).unwrap();
    let ra = ImageRef::parse(&format!("{base}/images/a.img")).unwrap();
    let rb = ImageRef::parse(&format!("{base}/images/b.img")).unwrap();
    let ia = cache.fetch(&ra, None, "node-a").await.unwrap();
    let ib = cache.fetch(&rb, None, "node-b").await.unwrap();
    cache.release(&ib, "node-b");
    cache.release(&ib, "node-b"); // idempotent

    // Nothing is old yet.
    assert_eq!(cache.gc(0).await.unwrap().removed, 0);

    // Past the TTL only the unused image goes.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    let g = cache.gc(0).await.unwrap();
    assert_eq!((g.removed, g.bytes_freed), (1, b.len() as u64));
    assert!(!ib.path.exists() && ia.path.exists());
    assert_eq!(cache_files(share.path()).len(), 2, "a + its sidecar");
    tokio::time::resume();

    // Over the size limit while `a` is in use: a clear error, nothing deleted.
    let rbig = ImageRef::parse(&format!("{base}/images/big.img")).unwrap();
    let e = cache.fetch(&rbig, None, "node-c").await.unwrap_err();
    assert!(matches!(e, MediaError::NoSpace { .. }), "{e}");
    assert!(
        e.to_string().contains("big.img") && e.to_string().contains("900000"),
        "{e}"
    );
    assert!(ia.path.exists());
    // Once `a` is released, size-driven GC makes room.
    cache.release(&ia, "node-a");
    let ibig = cache.fetch(&rbig, None, "node-c").await.unwrap();
    assert!(!ia.path.exists() && ibig.path.exists());
    assert_eq!(peer.hits("big.img"), 2);
}

#[tokio::test]
async fn restart_drops_orphans_and_broken_sidecars() {
    let data = blob(50_000, 5);
    let (base, peer) = start_peer(vec![("keep.img", data.clone())]).await;
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), &base, TOKEN)).unwrap();
    let r = ImageRef::parse(&format!("{base}/images/keep.img")).unwrap();
    let img = cache.fetch(&r, None, "n").await.unwrap();
    drop(cache);
    let dir = share.path().join("cache");
    std::fs::write(dir.join("0123abcd.img"), b"orphan without sidecar").unwrap();
    std::fs::write(dir.join("feed.img"), b"x").unwrap();
    std::fs::write(dir.join("feed.img.json"), b"{not json").unwrap();
    std::fs::write(dir.join(".download.tmp-1-1"), b"half").unwrap();

    let cache = ImageCache::new(config(share.path(), &base, TOKEN)).unwrap();
    let name = img.path.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        cache_files(share.path()),
        vec![name.clone(), format!("{name}.json")]
    );
    assert_eq!(cache.fetch(&r, None, "n").await.unwrap().path, img.path);
    assert_eq!(peer.hits("keep.img"), 1);
}
