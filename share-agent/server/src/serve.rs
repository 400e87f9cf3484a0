//! The accept loop of the image and call-back server, with the limits an open port on
//! the provisioning network needs: a client must send a whole request head within
//! `http_header_timeout` or its connection is closed, and at most `http_max_connections`
//! connections are open at once (beyond that, new ones are closed at once). The file
//! descriptors a flood of slow clients would hold are the ones BMC sockets and share
//! writes need.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time a client has to send a whole request head (also between requests on a
    /// kept-alive connection, once the next request has started).
    pub header_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
}

/// Counters a test or the metrics can read.
#[derive(Default, Debug)]
pub struct ServeStats {
    /// Connections closed at once because the limit was reached.
    pub refused: AtomicU64,
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (at most
/// `drain` long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ServeStats>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut warned_full = false;
    loop {
        let (sock, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            if !warned_full {
                tracing::warn!(
                    limit = limits.max_connections,
                    %peer,
                    "HTTP connection limit reached; closing new connections until some end (http_max_connections)"
                );
                warned_full = true;
            }
            drop(sock);
            continue;
        };
        warned_full = false;
        let _ = sock.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(sock), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the drain period; closing them");
    }
}
