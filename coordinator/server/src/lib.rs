//! The coordinator service: configuration, the gRPC services (`Nodes`, `Shares`,
//! `AgentLink`, reflection, health), the engine that drives the provision state machine,
//! admission and timers, and the in-memory registry of share agents.
//!
//! # Layout
//! - `config.rs`: the one documented [`Config`] struct (clap + TOML + env, human durations).
//! - `error.rs`: [`ServerError`] and its ONE mapping to `tonic::Status`.
//! - `convert.rs`: the only module that sees both wire (prost) and domain types.
//! - `engine.rs`: the single task that owns in-flight nodes, agents, the admission queue and
//!   the placement index; batches store writes (group commit); persists before acting.
//! - `api.rs`: `Nodes` and `Shares`; `link.rs`: `AgentLink` (separable onto an mTLS listener).
//!
//! # Invariants
//! - Domain rules (states, verbs, validation, placement) live in `coordinator-core`; this
//!   crate only orchestrates: it never decides a transition itself.
//! - Every status change is committed before its side effects (jobs, events, replies).
//! - Secrets leave only through `RevealSecrets` and jobs on an agent's own stream.

pub mod api;
pub mod config;
pub mod convert;
pub mod engine;
pub mod error;
pub mod link;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Cli, Config};
pub use error::ServerError;

use coordinator_store::{PgStore, SecretKeys, SqliteStore, Store};
use vmedia_proto::v1::agent_link_server::AgentLinkServer;
use vmedia_proto::v1::nodes_server::NodesServer;
use vmedia_proto::v1::shares_server::SharesServer;

/// Largest gRPC message accepted or sent (bulk calls carry long node lists).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The secret keys: the named file, or `data_dir/secret.key` created on first start.
fn secret_keys(cfg: &Config) -> Result<SecretKeys, ServerError> {
    let err = |e| ServerError::store_about("load the secret key", "key file", e);
    let keys = match &cfg.secret_key_file {
        Some(path) => SecretKeys::from_file(path).map_err(err)?,
        None => {
            let path = cfg.data_dir.join("secret.key");
            if path.exists() {
                SecretKeys::from_file(&path).map_err(err)?
            } else {
                std::fs::create_dir_all(&cfg.data_dir).map_err(|e| ServerError::Config {
                    what: format!("cannot create data dir {}: {e}", cfg.data_dir.display()),
                })?;
                tracing::info!(path = %path.display(), "created a new secret key file");
                SecretKeys::create_file(&path).map_err(err)?
            }
        }
    };
    match &cfg.old_secret_key_file {
        Some(old) => keys
            .with_old(SecretKeys::from_file(old).map_err(err)?)
            .map_err(err),
        None => Ok(keys),
    }
}

async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let keys = secret_keys(cfg)?;
    Ok(match &cfg.database_url {
        Some(url) => Arc::new(PgStore::connect_with(url, Some(keys)).await.map_err(|e| {
            ServerError::store_about("connect to PostgreSQL", config::redact_url(url), e)
        })?),
        None => Arc::new(
            SqliteStore::open_with(&cfg.data_dir, Some(keys))
                .await
                .map_err(|e| {
                    ServerError::store_about(
                        "open the store",
                        format!("data dir {}", cfg.data_dir.display()),
                        e,
                    )
                })?,
        ),
    })
}

/// Opens the store, resumes in-flight work, binds `cfg.listen` and serves until `shutdown`
/// completes. `on_bound` is called with the bound address (useful with port 0).
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let store = open_store(&cfg).await?;
    let listen = cfg.listen;
    let (engine, handle) = engine::Engine::start(cfg, store.clone()).await?;
    let engine_task = tokio::spawn(engine.run());

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

    let api = api::Api {
        store,
        engine: handle.clone(),
    };
    let link = link::Link { engine: handle };
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
    health.set_serving::<SharesServer<api::Api>>().await;
    health.set_serving::<AgentLinkServer<link::Link>>().await;

    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            NodesServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            SharesServer::new(api)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(AgentLinkServer::new(link).max_decoding_message_size(MAX_MESSAGE))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(health_service)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
        .map_err(|e| ServerError::Serve {
            addr: addr.to_string(),
            what: e.to_string(),
        });
    engine_task.abort();
    result
}

/// Accepted connections with Nagle off: `Server::tcp_nodelay` applies only to listeners
/// tonic binds itself, and small unary replies otherwise wait for the peer's delayed ACK
/// (~40 ms per call).
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    })
}
