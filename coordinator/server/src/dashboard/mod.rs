//! The fleet dashboard: a small read-only web UI on its own listener (`dashboard_listen`).
//!
//! # Layout
//! - `mod.rs`: start-up (bind, plain or TLS with the gRPC certificate), the router, the
//!   shared state and the one error type of the handlers.
//! - `auth.rs`: the same API tokens as gRPC (reader or admin). A login form trades a token
//!   for an HttpOnly, SameSite=Strict session cookie; scripts may send the bearer header
//!   instead. With no token file (development mode) the dashboard is open, said loudly at
//!   start-up like the gRPC API's own warning.
//! - `data.rs`: what the pages show, read from the store and the engine: counts by state,
//!   failures grouped by reason, share agents, one page of nodes, a node and its history.
//!   Nodes are converted with the API's masked view (`convert::node_into_proto`), so a
//!   page or JSON answer never holds a secret the API would not show.
//! - `pages.rs`: server-rendered HTML (semantic tables, forms that work without script);
//!   `json.rs`: the JSON the page's script reads; `live.rs`: server-sent events from the
//!   engine's watch stream, coalesced per node and sent at most once a second.
//! - `assets/`: the stylesheet and the one hand-written script, embedded with
//!   `include_str!` (no build step, nothing fetched from elsewhere).
//!
//! # Invariants
//! - Every route but the login form and the two static assets needs a session or a token;
//!   an unauthenticated request gets 401 and no data.
//! - The node table is paged in the store (marker + limit, at most [`MAX_PAGE`] rows);
//!   the whole fleet is never read for one request. Failure grouping reads at most
//!   [`data::FAILURES_EXAMINED`] failed nodes and is cached for a second.
//! - Request bodies are capped at [`MAX_BODY`]; query values are bounded and validated.

mod auth;
mod data;
mod json;
mod live;
mod pages;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use coordinator_store::Store;

use crate::config::Config;
use crate::engine::EngineHandle;
use crate::error::ServerError;
use crate::security::Policy;

/// Largest request body (the login form).
pub const MAX_BODY: usize = 4096;
/// Largest page of the node table.
pub const MAX_PAGE: u32 = 200;
/// Rows per page unless asked otherwise.
pub const DEFAULT_PAGE: u32 = 50;

/// The engine the dashboard talks to: replaced when a follower replica becomes leader.
#[derive(Clone, Default)]
pub struct EngineSlot(Arc<RwLock<Option<EngineHandle>>>);

impl EngineSlot {
    pub fn set(&self, h: EngineHandle) {
        match self.0.write() {
            Ok(mut g) => *g = Some(h),
            Err(p) => *p.into_inner() = Some(h),
        }
    }

    fn get(&self) -> Option<EngineHandle> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// What every handler shares.
struct Inner {
    store: Arc<dyn Store>,
    engine: EngineSlot,
    policy: Arc<Policy>,
    sessions: auth::Sessions,
    /// Cookies get `Secure` when the dashboard is HTTPS.
    https: bool,
    /// Open event streams (bounded by [`live::MAX_STREAMS`]).
    streams: AtomicUsize,
    failures: data::FailureCache,
    shutdown: crate::SharedShutdown,
}

#[derive(Clone)]
struct App(Arc<Inner>);

/// Binds `cfg.dashboard_listen` (when set) and serves the dashboard until `shutdown`.
/// Returns the slot the caller fills with the engine of each server generation, and the
/// bound address.
pub(crate) async fn start(
    cfg: &Config,
    store: Arc<dyn Store>,
    policy: Arc<Policy>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: crate::SharedShutdown,
) -> Result<Option<(EngineSlot, SocketAddr)>, ServerError> {
    let Some(listen) = cfg.dashboard_listen else {
        return Ok(None);
    };
    let fail = |what: String| ServerError::Serve {
        addr: listen.to_string(),
        what,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| fail(format!("dashboard: cannot bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail(format!("dashboard: {e}")))?;
    let slot = EngineSlot::default();
    let https = tls.is_some();
    let app = App(Arc::new(Inner {
        store,
        engine: slot.clone(),
        policy: policy.clone(),
        sessions: auth::Sessions::default(),
        https,
        streams: AtomicUsize::new(0),
        failures: data::FailureCache::default(),
        shutdown: shutdown.clone(),
    }));
    let router = router(app);
    let scheme = if https { "https" } else { "http" };
    if policy.tokens.is_none() {
        tracing::warn!(url = %format!("{scheme}://{addr}/"),
            "DEVELOPMENT MODE: DASHBOARD WITHOUT AUTHENTICATION: anyone who can reach it sees the fleet (never a password); set tokens_file");
    } else {
        tracing::info!(url = %format!("{scheme}://{addr}/"), "dashboard listening (API tokens: reader or admin)");
    }
    match tls {
        None => {
            tokio::spawn(async move {
                let r = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "dashboard stopped");
                }
            });
        }
        Some(tls) => {
            // The gRPC listener offers only h2; browsers here speak HTTP/1.1.
            let mut config = (*tls).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let rx = crate::accept_tls(listener, tokio_rustls::TlsAcceptor::from(Arc::new(config)));
            let listener = TlsListener { rx, addr };
            tokio::spawn(async move {
                let r = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "dashboard stopped");
                }
            });
        }
    }
    Ok(Some((slot, addr)))
}

fn router(app: App) -> Router {
    let protected = Router::new()
        .route("/", get(pages::index))
        .route("/node/{id}", get(pages::node))
        .route("/api/summary", get(json::summary))
        .route("/api/nodes", get(json::nodes))
        .route("/api/nodes/{id}", get(json::node))
        .route("/api/nodes/{id}/history", get(json::history))
        .route("/api/events", get(live::events))
        .route("/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require,
        ));
    Router::new()
        .merge(protected)
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/static/app.css", get(pages::css))
        .route("/static/app.js", get(pages::js))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Accepted TLS connections as an axum listener (handshakes run in their own tasks).
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.rx.recv().await {
                Some(io) => {
                    let peer = io
                        .get_ref()
                        .0
                        .peer_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    return (io, peer);
                }
                // The accept task is gone: nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// What a handler can fail with; pages answer HTML, `/api/` answers JSON.
#[derive(Debug)]
pub(crate) enum Fail {
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

impl Fail {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            Self::NotFound(_) => http::StatusCode::NOT_FOUND,
            Self::Internal(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::BadRequest(t) | Self::NotFound(t) | Self::Internal(t) => t,
        }
    }

    fn store(op: &str, e: coordinator_store::StoreError) -> Self {
        tracing::error!(error = %e, op, "dashboard: store read failed");
        Self::Internal(format!("{op}: {e}"))
    }
}
