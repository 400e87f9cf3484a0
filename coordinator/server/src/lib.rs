//! The coordinator service: configuration, the gRPC services (`Nodes`, `Shares`,
//! `AgentLink`, reflection, health), the engine that drives the provision state machine,
//! admission and timers, and the in-memory registry of share agents.
//!
//! # Layout
//! - `config.rs`: the one documented [`Config`] struct (clap + TOML + env, human durations).
//! - `error.rs`: [`ServerError`] and its ONE mapping to `tonic::Status`.
//! - `domain.rs`: the server's own domain types (agent hello, job updates, share views,
//!   node events, messages to agents): what the gRPC edges and the engine exchange.
//! - `convert.rs`: every conversion between wire (prost) and domain types.
//! - `engine/`: the single task that owns in-flight nodes, agents, the admission queue and
//!   the placement index; batches store writes (group commit); persists before acting. One
//!   module per concern (queue, nodes, agents, admission, ramdisk relay, commit); the loop
//!   in `engine/mod.rs` is a dispatch table.
//! - `api.rs`: `Nodes` and `Shares`; `link.rs`: `AgentLink`. These two are the gRPC edges:
//!   they take wire requests, convert them through `convert.rs`, and talk to the store and
//!   the engine in domain types only. The engine never sees a wire type.
//! - `metrics.rs`: the Prometheus metrics (events fed by the engine, levels read per
//!   scrape) and their listener (`metrics_listen`).
//! - `security.rs`: TLS (rustls; agents need a client certificate from the agent CA), API
//!   tokens and roles, and the follower's redirect: one tower layer in front of everything.
//! - `dashboard/`: the optional browser dashboard on its own listener (`dashboard_listen`).
//! - `lib.rs` ([`run`]): store selection (SQLite, or PostgreSQL with leader election),
//!   the at-rest key, the accept loop, and the follower -> leader hand-over.
//!
//! # High availability (PostgreSQL)
//! Every replica binds its listener at once and serves as a follower: store reads
//! (GetNode, ListNodes, ValidateNode) are answered, everything else gets UNAVAILABLE
//! "not the leader; leader is URL". Each follower polls a session advisory lock
//! ([`coordinator_store::PgStore::campaign`]); the one that gets it loads the in-flight
//! nodes (the same resume path as a restart), then swaps its follower services for the
//! full ones. A leader that loses its lock connection stops the process at once rather
//! than risk two leaders; agents and clients follow the redirect.
//!
//! # Invariants
//! - Domain rules (states, verbs, validation, placement) live in `coordinator-core`; this
//!   crate only orchestrates: it never decides a transition itself.
//! - Every status change is committed before its side effects (jobs, events, replies).
//! - Secrets leave only through `RevealSecrets` (admin) and jobs on an agent's own stream;
//!   at rest they are sealed by the store with the key file's current key.
//! - With no TLS or token settings the coordinator still starts (development mode) and
//!   says loudly at start-up what is unprotected.

pub mod api;
pub mod config;
pub mod convert;
pub mod dashboard;
pub mod domain;
pub mod engine;
pub mod error;
pub mod link;
pub mod logsafe;
pub mod metrics;
pub mod security;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Cli, Config};
pub use error::ServerError;

use coordinator_store::{PgStore, SecretKeys, SqliteStore, Store};
use futures::FutureExt as _;
use tokio::sync::{Mutex, mpsc};
use vmedia_proto::v1::agent_link_server::AgentLinkServer;
use vmedia_proto::v1::nodes_server::NodesServer;
use vmedia_proto::v1::shares_server::SharesServer;

use crate::security::{GateLayer, LeaderView, Leadership, Policy};

/// Largest gRPC message accepted or sent (bulk calls carry long node lists).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest AgentLink message an agent may send (a hello with every job it knows, a
/// batch of results: well under a megabyte at 10,000 nodes per agent).
const MAX_AGENT_MESSAGE: usize = 8 * 1024 * 1024;
/// Largest Shares request (they carry a share id).
const MAX_SHARES_MESSAGE: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per client connection. A CLI or an agent uses a handful;
/// without a limit one connection could open thousands of Watch snapshots at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// A TLS handshake that takes longer than this is dropped (a stalled peer must not hold a
/// task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A leader whose lock connection does not answer within this gives up leadership.
const LEASE_CHECK_LIMIT: Duration = Duration::from_secs(5);

/// Opens the store, resumes in-flight work, binds `cfg.listen` and serves until `shutdown`
/// completes. `on_bound` is called with the bound address (useful with port 0). With a
/// `database_url` the replica first serves as a follower until it wins the leadership.
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    warn_about_development_mode(&cfg);
    let keys = load_secret_keys(&cfg)?;
    let tls = security::server_tls(&cfg)?;
    let tokens = cfg
        .tokens_file
        .as_deref()
        .map(security::Tokens::from_file)
        .transpose()?;

    let (store, pg): (Arc<dyn Store>, Option<PgStore>) = match &cfg.database_url {
        Some(url) => {
            let pg = PgStore::connect_with(url.expose(), Some(keys))
                .await
                .map_err(|e| {
                    ServerError::store_about("connect to PostgreSQL", url.to_string(), e)
                })?;
            (Arc::new(pg.clone()), Some(pg))
        }
        None => {
            let st = SqliteStore::open_with(&cfg.data_dir, Some(keys))
                .await
                .map_err(|e| {
                    ServerError::store_about(
                        "open the store",
                        format!("data dir {}", cfg.data_dir.display()),
                        e,
                    )
                })?;
            (Arc::new(st), None)
        }
    };

    let metrics = Arc::new(metrics::Metrics::new());
    let shutdown = shutdown.boxed().shared();
    if let Some(listen) = cfg.metrics_listen {
        let tokens = cfg
            .tokens_file
            .as_deref()
            .map(security::Tokens::from_file)
            .transpose()?
            .map(Arc::new);
        let addr = metrics::start(
            listen,
            tokens,
            metrics.clone(),
            store.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|what| ServerError::Config { what })?;
        tracing::info!(listen = %addr, "serving Prometheus metrics on /metrics");
        // A line a parent process can read (tests, the demo).
        println!("coordinator metrics on http://{addr}/metrics");
    }

    let listen = cfg.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Serve {
            addr: listen.to_string(),
            what: format!("cannot bind: {e}"),
        })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Serve {
        addr: listen.to_string(),
        what: e.to_string(),
    })?;
    on_bound(addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let advertise = cfg
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));

    let leadership = LeaderView::new(if pg.is_some() {
        Leadership::Follower { leader: None }
    } else {
        Leadership::Leader
    });
    let policy = Arc::new(Policy {
        tokens,
        agents_need_certificates: cfg.agent_ca_file.is_some(),
        leadership: leadership.clone(),
    });
    let dashboard = dashboard::start(
        &cfg,
        store.clone(),
        policy.clone(),
        tls.clone(),
        shutdown.clone(),
    )
    .await?
    .map(|(slot, _)| slot);
    let ctx = Ctx {
        cfg,
        store,
        pg,
        policy,
        leadership,
        advertise,
        addr,
        metrics,
        dashboard,
    };
    match tls {
        Some(tls) => {
            let rx = accept_tls(listener, tokio_rustls::TlsAcceptor::from(tls));
            ctx.serve(rx, shutdown).await
        }
        None => {
            let rx = accept_plain(listener);
            ctx.serve(rx, shutdown).await
        }
    }
}

/// Says what development mode leaves open.
fn warn_about_development_mode(cfg: &Config) {
    if cfg.tls_cert_file.is_none() {
        tracing::warn!(
            "DEVELOPMENT MODE: gRPC WITHOUT TLS: traffic (including BMC passwords in agent jobs) is in clear and share agents are not authenticated; set tls_cert_file, tls_key_file and agent_ca_file (`vmedia certs init` makes a development set)"
        );
    } else if cfg.agent_ca_file.is_none() {
        tracing::warn!(
            "TLS without agent_ca_file: any client can open an AgentLink session; set agent_ca_file to require agent certificates"
        );
    }
    if cfg.tokens_file.is_none() {
        tracing::warn!(
            "DEVELOPMENT MODE: NO API AUTHENTICATION: every caller is admin (may reveal BMC passwords); set tokens_file"
        );
    }
}

/// The at-rest key: the configured file (which must exist), or `<data_dir>/secret.key`,
/// created with a fresh key on the first start. Old key files are added for reading.
fn load_secret_keys(cfg: &Config) -> Result<SecretKeys, ServerError> {
    let fail = |e: coordinator_store::StoreError| ServerError::Config {
        what: e.to_string(),
    };
    let path = cfg.secret_key_path();
    let mut keys = if cfg.secret_key_file.is_none() && !path.exists() {
        if cfg.database_url.is_some() {
            return Err(ServerError::Config {
                what:
                    "with database_url, give secret_key_file (the same key file on every replica)"
                        .to_owned(),
            });
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| ServerError::Config {
            what: format!("cannot create data dir {}: {e}", cfg.data_dir.display()),
        })?;
        let k = SecretKeys::create_file(&path).map_err(fail)?;
        tracing::warn!(key_file = %path.display(), key_id = k.current_id(),
            "created a new at-rest secret key; back it up: without it the stored BMC passwords cannot be read");
        k
    } else {
        SecretKeys::from_file(&path).map_err(fail)?
    };
    for old in &cfg.old_secret_key_file {
        keys = keys
            .with_old(SecretKeys::from_file(old).map_err(fail)?)
            .map_err(fail)?;
    }
    tracing::info!(key_id = keys.current_id(), "secrets are sealed at rest");
    Ok(keys)
}

/// Accepted plain TCP connections (Nagle off: `Server::tcp_nodelay` applies only to
/// listeners tonic binds itself, and small unary replies otherwise wait for the peer's
/// delayed ACK, ~40 ms per call).
fn accept_plain(listener: tokio::net::TcpListener) -> mpsc::Receiver<tokio::net::TcpStream> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    if tx.send(s).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    rx
}

/// Accepted TLS connections. Each handshake runs in its own task; a refused one (for
/// example a client certificate not signed by the agent CA) is logged with the peer's
/// address and dropped.
pub(crate) fn accept_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> mpsc::Receiver<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (s, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(tls).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        tracing::warn!(peer = %peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// A stream over the shared accept queue. Each server generation (follower, then leader)
/// reads from the same queue, one after the other. The stream ends as soon as `stop`
/// turns true: it must let go of the queue at once, even while its server still drains
/// open connections, so the next generation can take new ones.
fn incoming<IO: Send + 'static>(
    rx: Arc<Mutex<mpsc::Receiver<IO>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<IO, std::io::Error>> + Send {
    futures::stream::unfold((rx, stop), |(rx, mut stop)| async move {
        let next = {
            let mut queue = tokio::select! {
                q = rx.lock() => q,
                _ = stop.wait_for(|s| *s) => return None,
            };
            tokio::select! {
                io = queue.recv() => io,
                _ = stop.wait_for(|s| *s) => None,
            }
        };
        next.map(|io| (Ok(io), (rx, stop)))
    })
}

pub(crate) type SharedShutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

struct Ctx {
    cfg: Config,
    store: Arc<dyn Store>,
    pg: Option<PgStore>,
    policy: Arc<Policy>,
    leadership: LeaderView,
    advertise: String,
    addr: SocketAddr,
    metrics: Arc<metrics::Metrics>,
    /// Where the dashboard (when configured) finds the current engine.
    dashboard: Option<dashboard::EngineSlot>,
}

impl Ctx {
    async fn serve<IO>(
        self,
        rx: mpsc::Receiver<IO>,
        shutdown: SharedShutdown,
    ) -> Result<(), ServerError>
    where
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
    {
        let rx = Arc::new(Mutex::new(rx));
        let Some(pg) = self.pg.clone() else {
            let (engine, handle) = engine::Engine::start(
                self.cfg.clone(),
                self.store.clone(),
                self.metrics.engine_metrics(),
            )
            .await?;
            self.metrics.set_engine(handle.clone());
            let engine_task = tokio::spawn(engine.run());
            let (_never, open) = tokio::sync::watch::channel(false);
            let r = self.generation(handle, incoming(rx, open), shutdown).await;
            engine_task.abort();
            return r;
        };

        // Follower until elected.
        let (stop_follower, mut follower_stopped) = tokio::sync::watch::channel(false);
        let follower = tokio::spawn({
            let ctx = self.clone_parts();
            let handle = engine::EngineHandle::detached(self.cfg.watch_buffer);
            let stream = incoming(rx.clone(), follower_stopped.clone());
            async move {
                ctx.generation(handle, stream, async move {
                    let _ = follower_stopped.wait_for(|s| *s).await;
                })
                .await
            }
        });
        let hints = tokio::spawn({
            let pg = pg.clone();
            let view = self.leadership.clone();
            let poll = self.cfg.leader_poll;
            async move {
                loop {
                    if let Ok(Some((url, _))) = pg.leader().await {
                        view.set(Leadership::Follower { leader: Some(url) });
                    }
                    tokio::time::sleep(poll).await;
                }
            }
        });
        let holder = format!("{}@pid{}", self.advertise, std::process::id());
        tracing::info!(advertise = %self.advertise, "following; campaigning for leadership");
        let lease = tokio::select! {
            l = pg.campaign(&self.advertise, &holder, self.cfg.leader_poll) => l,
            () = shutdown.clone() => {
                hints.abort();
                let _ = stop_follower.send(true);
                let _ = follower.await;
                return Ok(());
            }
        };
        hints.abort();
        let lease =
            lease.map_err(|e| ServerError::store_about("win the leadership", "leader lock", e))?;
        let t0 = std::time::Instant::now();
        // Clients asking now are told to come back here.
        self.leadership.set(Leadership::Follower {
            leader: Some(self.advertise.clone()),
        });
        let (engine, handle) = engine::Engine::start(
            self.cfg.clone(),
            self.store.clone(),
            self.metrics.engine_metrics(),
        )
        .await?;
        self.metrics.set_engine(handle.clone());
        let engine_task = tokio::spawn(engine.run());
        // Hand the listener over: the follower stops taking connections (its open ones
        // drain), then the leader's services take the queue.
        let _ = stop_follower.send(true);
        self.leadership.set(Leadership::Leader);
        tracing::info!(advertise = %self.advertise, took_ms = t0.elapsed().as_millis() as u64,
            "this replica now leads (in-flight work resumed)");
        let lost = lease.lost(self.cfg.leader_poll, LEASE_CHECK_LIMIT);
        let (_keep, never_stop) = tokio::sync::watch::channel(false);
        let result = tokio::select! {
            r = self.generation(handle, incoming(rx, never_stop), shutdown) => r,
            e = lost => {
                tracing::error!(error = %e, "leadership lost; stopping");
                Err(ServerError::LostLeadership { what: e.to_string() })
            }
        };
        engine_task.abort();
        drop(follower);
        result
    }

    fn clone_parts(&self) -> Ctx {
        Ctx {
            cfg: self.cfg.clone(),
            store: self.store.clone(),
            pg: self.pg.clone(),
            policy: self.policy.clone(),
            leadership: self.leadership.clone(),
            advertise: self.advertise.clone(),
            addr: self.addr,
            metrics: self.metrics.clone(),
            dashboard: self.dashboard.clone(),
        }
    }

    /// One server over `stream` with every service behind the gate, until `stop`.
    async fn generation<IO>(
        &self,
        handle: engine::EngineHandle,
        stream: impl futures::Stream<Item = Result<IO, std::io::Error>> + Send,
        stop: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError>
    where
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
    {
        let addr = self.addr;
        if let Some(d) = &self.dashboard {
            d.set(handle.clone());
        }
        let api = api::Api {
            store: self.store.clone(),
            engine: handle.clone(),
        };
        let link = link::Link {
            engine: handle,
            check_agent_identity: self.policy.agents_need_certificates,
        };
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vmedia_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServerError::Serve {
                addr: addr.to_string(),
                what: format!("reflection: {e}"),
            })?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vmedia_proto::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ServerError::Serve {
                addr: addr.to_string(),
                what: format!("reflection: {e}"),
            })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<NodesServer<api::Api>>().await;
        if self.leadership.get() == Leadership::Leader {
            health.set_serving::<SharesServer<api::Api>>().await;
            health.set_serving::<AgentLinkServer<link::Link>>().await;
        } else {
            health.set_not_serving::<SharesServer<api::Api>>().await;
            health
                .set_not_serving::<AgentLinkServer<link::Link>>()
                .await;
        }

        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            // Dead peers (a cut network, a frozen client) are noticed and their streams
            // freed instead of held forever.
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .layer(GateLayer::new(self.policy.clone()))
            .add_service(
                NodesServer::new(api.clone())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(
                SharesServer::new(api)
                    .max_decoding_message_size(MAX_SHARES_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(AgentLinkServer::new(link).max_decoding_message_size(MAX_AGENT_MESSAGE))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(health_service)
            .serve_with_incoming_shutdown(stream, stop)
            .await
            .map_err(|e| ServerError::Serve {
                addr: addr.to_string(),
                what: e.to_string(),
            })
    }
}
