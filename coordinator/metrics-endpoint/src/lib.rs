//! The HTTP listener the coordinator and every share agent serve their Prometheus
//! metrics on (`GET /metrics`), apart from their other ports.
//!
//! # Who may scrape
//! - A listener bound to a loopback address is open: only processes on the host reach it.
//! - Any other listener needs `Authorization: Bearer <token>`; which tokens count is the
//!   service's business (the coordinator: any reader or admin API token; a share agent:
//!   its `metrics_token_file`). [`gate_for`] refuses such a listener without tokens, with
//!   one line naming the option to set.
//!
//! # Format
//! The Prometheus text format 0.0.4 (`prometheus_client`'s `prometheus_text` encoder):
//! what every Prometheus version scrapes and what `promtool check metrics` reads.
//!
//! This crate knows nothing about nodes or agents: each service registers its own metrics
//! in a [`Registry`] and hands [`Endpoint::serve`] a function that renders them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
pub use prometheus_client;
use prometheus_client::registry::Registry;
use secret::Secret;

/// `Content-Type` of a scrape answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Says whether a presented bearer token may scrape.
pub type Authorize = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Renders the exposition text of one scrape (it may first read counts from a store).
pub type Render = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// Who may scrape a listener.
#[derive(Clone)]
pub enum Gate {
    /// Anyone who reaches it (loopback listeners).
    Open,
    /// Only requests with a bearer token `Authorize` accepts.
    Bearer(Authorize),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "Open",
            Self::Bearer(_) => "Bearer",
        })
    }
}

/// The gate for a listener on `listen`: open on loopback; elsewhere it needs `authorize`,
/// and without it the answer is the one-line refusal naming `token_option`.
pub fn gate_for(
    listen: SocketAddr,
    authorize: Option<Authorize>,
    token_option: &str,
) -> Result<Gate, String> {
    if listen.ip().is_loopback() {
        return Ok(Gate::Open);
    }
    match authorize {
        Some(a) => Ok(Gate::Bearer(a)),
        None => Err(format!(
            "metrics_listen: {listen} is not a loopback address, so scrapes need a bearer token; set {token_option} (or listen on 127.0.0.1)"
        )),
    }
}

/// The exposition text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        // Writing to a String cannot fail; an encoder error would be a bug in a metric.
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

/// Bearer tokens from a file: one per line, either the token alone or
/// `<role> <token> [name]` as in the coordinator's tokens file (roles `reader`, `admin`);
/// `#` starts a comment. `source` names the file in errors, which never quote a token.
pub fn parse_token_file(text: &str, source: &str) -> Result<Vec<Secret>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let token = match fields.as_slice() {
            [token] => *token,
            [role, token, ..] => {
                if !matches!(*role, "reader" | "admin") {
                    return Err(format!(
                        "token file {source} line {}: the role must be reader or admin",
                        i + 1
                    ));
                }
                *token
            }
            [] => continue,
        };
        if token.len() < 16 {
            return Err(format!(
                "token file {source} line {}: tokens must be at least 16 characters",
                i + 1
            ));
        }
        out.push(Secret::new(token));
    }
    if out.is_empty() {
        return Err(format!("token file {source}: holds no token"));
    }
    Ok(out)
}

/// An [`Authorize`] accepting any of `tokens` (each compared in constant time).
pub fn any_of(tokens: Vec<Secret>) -> Authorize {
    Arc::new(move |presented: &str| {
        let mut ok = false;
        for t in &tokens {
            ok |= t.ct_eq(presented);
        }
        ok
    })
}

/// A bound metrics listener.
pub struct Endpoint {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    gate: Gate,
}

#[derive(Clone)]
struct Served {
    gate: Gate,
    render: Render,
}

impl Endpoint {
    /// Binds `listen` (port 0 picks a free port).
    pub async fn bind(listen: SocketAddr, gate: Gate) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("metrics_listen: cannot bind {listen}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("metrics_listen: {listen}: {e}"))?;
        Ok(Self {
            listener,
            addr,
            gate,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scrape URL.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Serves `GET /metrics` until `shutdown` completes.
    pub async fn serve(
        self,
        render: Render,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let addr = self.addr;
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(scrape))
            .fallback(|| async { (StatusCode::NOT_FOUND, "metrics are at /metrics\n") })
            .with_state(Served {
                gate: self.gate,
                render,
            });
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| format!("metrics listener {addr}: {e}"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn scrape(State(s): State<Served>, headers: HeaderMap) -> Response {
    if let Gate::Bearer(authorize) = &s.gate {
        let ok = bearer(&headers).is_some_and(|t| authorize(t));
        if !ok {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                "metrics need Authorization: Bearer <token>\n",
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return r;
        }
    }
    let body = (s.render)().await;
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    const TOKEN: &str = "scrape-token-0123456789";

    #[test]
    fn loopback_is_open_and_anything_else_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert!(matches!(gate_for(lo, None, "x"), Ok(Gate::Open)));
        for addr in ["0.0.0.0:9100", "10.1.2.3:9100", "[::]:9100"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let e = gate_for(addr, None, "metrics_token_file").unwrap_err();
            assert!(e.starts_with("metrics_listen:"), "{e}");
            assert!(e.contains("metrics_token_file"), "{e}");
            assert!(!e.contains('\n'), "{e}");
            let a = any_of(vec![Secret::new(TOKEN)]);
            assert!(matches!(
                gate_for(addr, Some(a), "metrics_token_file"),
                Ok(Gate::Bearer(_))
            ));
        }
    }

    #[test]
    fn token_files_take_bare_tokens_and_role_lines() {
        let t = parse_token_file(
            "# scrapers\nreader aaaaaaaaaaaaaaaa prometheus\nbbbbbbbbbbbbbbbb\n",
            "f",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(
            parse_token_file("short", "f")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            parse_token_file("root aaaaaaaaaaaaaaaa", "f")
                .unwrap_err()
                .contains("reader or admin")
        );
        assert!(
            parse_token_file("# none\n", "f")
                .unwrap_err()
                .contains("no token")
        );
        let e = parse_token_file("reader tooshort-secret", "f").unwrap_err();
        assert!(!e.contains("tooshort-secret"), "{e}");
    }

    async fn started(gate: Gate) -> (String, tokio::sync::oneshot::Sender<()>) {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        registry.register("vmedia_test_events", "Events seen", c.clone());
        c.inc();
        let registry = Arc::new(registry);
        let render: Render = Arc::new(move || {
            let r = registry.clone();
            Box::pin(async move { encode(&r) })
        });
        let ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), gate)
            .await
            .unwrap();
        let url = ep.url();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ep.serve(render, async move {
            let _ = rx.await;
        }));
        (url, tx)
    }

    #[tokio::test]
    async fn an_open_listener_serves_the_text_format() {
        let (url, _stop) = started(Gate::Open).await;
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("# TYPE vmedia_test_events_total counter\n"),
            "{body}"
        );
        assert!(body.contains("\nvmedia_test_events_total 1\n"), "{body}");
        let other = reqwest::get(url.replace("/metrics", "/other"))
            .await
            .unwrap();
        assert_eq!(other.status(), 404);
    }

    #[tokio::test]
    async fn a_bearer_listener_rejects_missing_and_wrong_tokens() {
        let (url, _stop) = started(Gate::Bearer(any_of(vec![Secret::new(TOKEN)]))).await;
        let c = reqwest::Client::new();
        let none = c.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert!(
            none.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let wrong = c
            .get(&url)
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        assert!(!wrong.text().await.unwrap().contains("vmedia_"));
        let right = c.get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(right.status(), 200);
        assert!(
            right
                .text()
                .await
                .unwrap()
                .contains("vmedia_test_events_total 1")
        );
    }
}
