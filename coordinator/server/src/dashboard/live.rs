//! Live updates: the engine's watch events as server-sent events, coalesced.
//!
//! Each stream keeps the newest event per node and sends them at most once per
//! [`TICK`], at most [`MAX_PER_TICK`] nodes at a time; beyond that (or when the engine's
//! broadcast drops events for a slow stream) it sends one `overflow` event instead, and
//! the page re-reads its summary. A browser therefore gets at most one small message a
//! second however many of 100,000 nodes change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::App;
use crate::domain::NodeEvent;

/// How often a stream sends what changed.
pub const TICK: Duration = Duration::from_secs(1);
/// Most nodes in one message.
pub const MAX_PER_TICK: usize = 200;
/// Most event streams open at once.
pub const MAX_STREAMS: usize = 256;

/// Releases a stream's slot when the stream ends.
struct Slot(App);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn event_json(e: &NodeEvent) -> serde_json::Value {
    json!({
        "uuid": e.node.to_string(),
        "name": e.name,
        "provision_state": e.provision_state.as_str(),
        "target_provision_state": e.target_provision_state.map(|s| s.as_str()),
        "last_error": e.last_error,
        "progress": e.progress,
        "share": e.agent.as_ref().map(|a| a.as_str()),
        "power_state": e.power_state.map(|p| p.as_str()),
        "at_ms": e.at_ms,
    })
}

pub async fn events(State(app): State<App>) -> Response {
    let Some(engine) = app.0.engine.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no engine on this replica").into_response();
    };
    if app.0.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        app.0.streams.fetch_sub(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live streams").into_response();
    }
    let slot = Slot(app.clone());
    let mut rx = engine.events.subscribe();
    let shutdown = app.0.shutdown.clone();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        let _slot = slot;
        let mut pending: HashMap<Uuid, NodeEvent> = HashMap::new();
        let mut overflow: u64 = 0;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = shutdown.fuse();
        let hello = Event::default().event("hello").data("{}");
        if tx.send(Ok(hello)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if overflow > 0 {
                            overflow += 1;
                        } else if pending.len() >= MAX_PER_TICK && !pending.contains_key(&ev.node) {
                            overflow = pending.len() as u64 + 1;
                            pending.clear();
                        } else {
                            pending.insert(ev.node, ev);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        overflow += n + pending.len() as u64;
                        pending.clear();
                    }
                    // The engine is gone (a new leader generation): the browser reconnects.
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let msg = if overflow > 0 {
                        let m = Event::default().event("overflow").data(json!({ "changes": overflow }).to_string());
                        overflow = 0;
                        m
                    } else if pending.is_empty() {
                        continue;
                    } else {
                        let list: Vec<_> = pending.values().map(event_json).collect();
                        pending.clear();
                        Event::default().event("nodes").data(serde_json::Value::from(list).to_string())
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
