//! The top of the crate: builds the shared state, the image cache and ISO
//! store, the HTTP side and the coordinator link, runs them until shutdown
//! and waits for them. Only this module knows every other one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use boot_media::{BootIsoStore, CacheConfig, GlanceConfig, ImageCache};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::AgentError;
use crate::state::Agent;
use crate::{filestream, http, link, serve};

/// Runs the agent until `shutdown` fires. `share_root` is the canonical root
/// returned by [`crate::checks::check_share_root`].
pub async fn run(
    mut cfg: Config,
    share_root: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .map_err(|e| {
            AgentError::config(
                "http_listen",
                format!("cannot bind {}: {e}", cfg.http_listen),
            )
        })?;
    let bound = listener.local_addr().map_err(|e| AgentError::Http {
        addr: cfg.http_listen.to_string(),
        reason: e.to_string(),
    })?;
    // An ephemeral port (tests) is only known now.
    if cfg.http_listen.port() == 0 && cfg.ipa_api_url.ends_with(":0") {
        cfg.ipa_api_url = format!("http://{bound}");
    }
    if cfg.ipa_api_url.contains("://0.0.0.0") || cfg.ipa_api_url.contains("://[::]") {
        tracing::warn!(ipa_api_url = %cfg.ipa_api_url, "ipa_api_url is a wildcard address; ramdisks cannot reach it (set ipa_api_url)");
    }

    let http_client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| {
            AgentError::config(
                "glance_endpoint",
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
    let glance = match &cfg.glance {
        Some(g) => Some(GlanceConfig {
            endpoint: g.endpoint.parse().map_err(|e| {
                AgentError::config("glance_endpoint", format!("{:?}: {e}", g.endpoint))
            })?,
            token: g.token.clone(),
        }),
        None => None,
    };
    let cache = ImageCache::new(CacheConfig {
        share_root: share_root.clone(),
        dir: "cache".to_string(),
        max_bytes: cfg.cache.max_bytes,
        ttl: cfg.cache.ttl,
        glance,
        http: http_client.clone(),
    })
    .map_err(|e| {
        AgentError::startup(
            "remote_image_share_root",
            format!("cannot open the image cache: {e}"),
        )
    })?;
    let iso_store = BootIsoStore::new(share_root.clone(), "boot-iso").map_err(|e| {
        AgentError::startup(
            "remote_image_share_root",
            format!("cannot open the boot ISO store: {e}"),
        )
    })?;

    let coordinators = link::Coordinators::new(&cfg.coordinator, &cfg.coordinator_tls)?;
    let agent = Arc::new(Agent::new(
        cfg,
        share_root,
        cache,
        Arc::new(iso_store),
        http_client,
    ));

    let state = http::HttpState {
        publications: agent.publications.clone(),
        heartbeats: agent.heartbeats.clone(),
        link: coordinators.clone(),
        agent_id: agent.cfg.agent_id.clone(),
        chunks: filestream::ChunkPool::new(http::IMAGE_CHUNK, http::IMAGE_CHUNKS_KEPT),
    };
    let app = http::router(state);
    tracing::info!(listen = %bound, ipa_api_url = %agent.cfg.ipa_api_url, "serving images and ramdisk callbacks");
    // A line a parent process can parse (tests, the demo).
    println!(
        "share-agent {} listening on http://{bound}",
        agent.cfg.agent_id
    );

    if let Some(listen) = agent.cfg.metrics_listen {
        let addr = crate::metrics::start(
            listen,
            agent.cfg.metrics_token_file.as_deref(),
            agent.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(listen = %addr, "serving Prometheus metrics on /metrics");
        println!(
            "share-agent {} metrics on http://{addr}/metrics",
            agent.cfg.agent_id
        );
    }

    let sd = shutdown.clone();
    let limits = serve::Limits {
        header_timeout: agent.cfg.http_header_timeout,
        max_connections: agent.cfg.http_max_connections,
    };
    let server = tokio::spawn(serve::serve(
        listener,
        app,
        limits,
        Arc::new(serve::ServeStats::default()),
        sd,
        Duration::from_secs(5),
    ));
    // Size limit and TTL of the cache are also enforced when nothing writes.
    let gc_agent = agent.clone();
    let gc_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        tick.tick().await;
        loop {
            tokio::select! {
                () = gc_stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = gc_agent.cache.gc(0).await {
                        tracing::warn!(error = %e, "periodic cache gc failed");
                    }
                }
            }
        }
    });
    let link_task = tokio::spawn(link::run(agent.clone(), coordinators, shutdown.clone()));

    shutdown.cancelled().await;
    let _ = link_task.await;
    match server.await {
        Ok(()) => Ok(()),
        Err(e) => Err(AgentError::Http {
            addr: bound.to_string(),
            reason: e.to_string(),
        }),
    }
}
