//! Image sources that try to hurt the share: an endless download without a size, a Glance
//! that redirects the token-carrying request to another host, and URLs carrying
//! credentials, which must not end up in the sidecars on the exported share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use boot_media::{CacheConfig, GlanceConfig, ImageCache, ImageRef, Secret};
use futures::StreamExt as _;

const TOKEN: &str = "glance-s3cret-token";

async fn serve(app: axum::Router, ip: &str) -> String {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn config(share: &std::path::Path, glance: Option<&str>, max_bytes: u64) -> CacheConfig {
    CacheConfig {
        share_root: share.to_path_buf(),
        dir: "cache".into(),
        max_bytes,
        ttl: Duration::from_secs(3600),
        glance: glance.map(|g| GlanceConfig {
            endpoint: format!("{g}/glance").parse().unwrap(),
            token: Secret::new(TOKEN),
        }),
        http: reqwest::Client::new(),
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_endless_source_without_a_size_stops_at_max_bytes() {
    // A body streamed in chunks with no Content-Length, far longer than the cache.
    let app = axum::Router::new().route(
        "/endless",
        get(|| async {
            let chunk = bytes::Bytes::from(vec![0x5a; 64 * 1024]);
            let stream = futures::stream::repeat(chunk)
                .take(4096)
                .map(Ok::<_, std::io::Error>);
            axum::body::Body::from_stream(stream)
        }),
    );
    let base = serve(app, "127.0.0.1").await;
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), None, 4 << 20)).unwrap();
    let r = ImageRef::parse(&format!("{base}/endless")).unwrap();
    let err = cache
        .fetch(&r, None, "node-1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_bytes"), "{err}");
    // Nothing is left on the share: no partial file, no temp file.
    let left = files_under(&share.path().join("cache"));
    assert!(left.is_empty(), "left on the share: {left:?}");
}

#[derive(Default)]
struct Seen {
    tokens_at_store: Vec<Option<String>>,
}

#[tokio::test]
async fn the_glance_token_does_not_follow_a_redirect_to_another_host() {
    let data = vec![7u8; 100_000];
    let seen = Arc::new(Mutex::new(Seen::default()));
    // The object store: another origin (127.0.0.2), which records the token it gets.
    let store_app = axum::Router::new()
        .route(
            "/object",
            get(
                |State(s): State<Arc<Mutex<Seen>>>, h: HeaderMap| async move {
                    let t = h
                        .get("x-auth-token")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    s.lock().unwrap().tokens_at_store.push(t);
                    vec![7u8; 100_000]
                },
            ),
        )
        .with_state(seen.clone());
    let store = serve(store_app, "127.0.0.2").await;
    let size = data.len();
    let glance_app = axum::Router::new()
        .route(
            "/glance/v2/images/{id}",
            get(move |h: HeaderMap| async move {
                if h.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(
                    serde_json::json!({"status": "active", "size": size, "disk_format": "raw"}),
                )
                .into_response()
            }),
        )
        .route(
            "/glance/v2/images/{id}/file",
            get(move |h: HeaderMap| async move {
                if h.get("x-auth-token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, format!("{store}/object"))],
                )
                    .into_response()
            }),
        );
    let glance = serve(glance_app, "127.0.0.1").await;
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), Some(&glance), 64 << 20)).unwrap();
    let r = ImageRef::parse("6f1b1f0e-2c4d-4e6f-8a9b-0c1d2e3f4a5b").unwrap();
    let img = cache.fetch(&r, None, "node-1").await.unwrap();
    assert_eq!(std::fs::read(&img.path).unwrap(), data);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.tokens_at_store.len(), 1);
    assert_eq!(
        seen.tokens_at_store[0], None,
        "the Glance token was sent to another host"
    );
}

#[tokio::test]
async fn credentials_in_urls_stay_out_of_the_sidecars_and_errors() {
    let app = axum::Router::new().route("/img.raw", get(|| async { vec![1u8; 4096] }));
    let base = serve(app, "127.0.0.1").await;
    let with_creds = base.replacen("http://", "http://user:pa55word@", 1);
    let share = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(config(share.path(), None, 64 << 20)).unwrap();
    let r = ImageRef::parse(&format!("{with_creds}/img.raw?sig=S1GNATURE")).unwrap();
    let img = cache.fetch(&r, None, "node-1").await.unwrap();
    assert!(img.path.is_file());
    // Fetching again hits the cache (the hashed key is stable).
    let again = cache.fetch(&r, None, "node-2").await.unwrap();
    assert_eq!(again.path, img.path);
    for f in files_under(&share.path().join("cache")) {
        if f.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains("pa55word"), "{}: {text}", f.display());
            assert!(!text.contains("S1GNATURE"), "{}: {text}", f.display());
        }
    }
    // A restarted cache still finds it by the same reference.
    drop(cache);
    let reopened = ImageCache::new(config(share.path(), None, 64 << 20)).unwrap();
    let hit = reopened.fetch(&r, None, "node-3").await.unwrap();
    assert_eq!(hit.path, img.path);
    // The reference as shown in errors and logs carries neither.
    let shown = r.to_string();
    assert!(
        !shown.contains("pa55word") && !shown.contains("S1GNATURE"),
        "{shown}"
    );
}
