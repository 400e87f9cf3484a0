//! The JSON control API (`--control 127.0.0.1:PORT`) for tests in other processes.
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /health` | `{"ok":true,"nodes":N}` |
//! | `GET /nodes` | array of [`NodeView`] |
//! | `GET /nodes/{i}` | one [`NodeView`] |
//! | `POST /nodes/{i}/faults` | body `{"spec":"latency=1s,error-rate=0.5"}` (a fault SPEC, see [`crate::fault`]; `node=` is implied) or a `FaultSet` JSON object: replaces the node's faults |
//! | `POST /faults` | body `{"spec":"node=3,hang"}`: applied like `--fault` |
//! | `POST /nodes/{i}/agent` | body `{"connected":true}`: the ServerView agent flag (soft power needs it) |
//! | `POST /nodes/{i}/power` | body `{"action":"on"\|"off"\|"reset"\|"cycle"}` |
//! | `GET /nodes/{i}/ramdisk-params` | `{"node":i,"params":{...}}`: with `--external-ramdisk`, the parameters the booted deploy ISO hands the real ramdisk (404 while none runs) |
//! | `GET /counters` | `{"total":{...},"nodes":{"0":{...}}}` |
//! | `POST /counters/reset` | zero all counters |
//!
//! Secrets never appear, with one exception: media passwords serialise as `******`; the
//! agent token reaches only the external ramdisk's launcher, through `ramdisk-params`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fault::{FaultSet, parse_spec};
use crate::node::{NodeHandle, NodeState, RequestCounters};
use crate::server::{NodeAddr, Shared, counters_by_node, total_counters};

/// One node as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub addr: NodeAddr,
    pub state: NodeState,
    pub faults: FaultSet,
}

pub(crate) fn view(shared: &Shared, n: &NodeHandle) -> NodeView {
    NodeView {
        addr: shared.addrs[n.index()].clone(),
        state: n.state(),
        faults: n.faults(),
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = sd.changed() => {}
            }
        });
    }
}

fn reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, &json!({"error": msg.into()}))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(err(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let json_body = || -> Result<Value, Response<Full<Bytes>>> {
        serde_json::from_slice(&body)
            .map_err(|e| err(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    };
    let node_of = |s: &str| -> Result<NodeHandle, Response<Full<Bytes>>> {
        s.parse::<usize>()
            .ok()
            .and_then(|i| shared.nodes.get(i).cloned())
            .ok_or_else(|| err(StatusCode::NOT_FOUND, format!("no node {s}")))
    };
    let r = (|| -> Result<Response<Full<Bytes>>, Response<Full<Bytes>>> {
        Ok(match (&method, parts.as_slice()) {
            (&Method::GET, ["health"]) => reply(
                StatusCode::OK,
                &json!({"ok": true, "nodes": shared.nodes.len()}),
            ),
            (&Method::GET, ["nodes"]) => {
                let all: Vec<NodeView> = shared.nodes.iter().map(|n| view(&shared, n)).collect();
                reply(
                    StatusCode::OK,
                    &serde_json::to_value(all).unwrap_or(Value::Null),
                )
            }
            (&Method::GET, ["nodes", i]) => {
                let n = node_of(i)?;
                reply(
                    StatusCode::OK,
                    &serde_json::to_value(view(&shared, &n)).unwrap_or(Value::Null),
                )
            }
            (&Method::GET, ["nodes", i, "ramdisk-params"]) => {
                let n = node_of(i)?;
                match n.state().external_ramdisk_params {
                    Some(p) => reply(StatusCode::OK, &json!({"node": n.index(), "params": p})),
                    None => err(
                        StatusCode::NOT_FOUND,
                        format!("node {} runs no external deploy ramdisk", n.index()),
                    ),
                }
            }
            (&Method::POST, ["nodes", i, "faults"]) => {
                let n = node_of(i)?;
                let v = json_body()?;
                let set = match v.get("spec").and_then(Value::as_str) {
                    Some(spec) => {
                        let s = parse_spec(spec)
                            .map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
                        s.faults
                    }
                    None => serde_json::from_value::<FaultSet>(v).map_err(|e| {
                        err(StatusCode::BAD_REQUEST, format!("invalid fault set: {e}"))
                    })?,
                };
                n.set_faults(set.clone());
                reply(StatusCode::OK, &json!({"node": n.index(), "faults": set}))
            }
            (&Method::POST, ["faults"]) => {
                let v = json_body()?;
                let spec = v
                    .get("spec")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(StatusCode::BAD_REQUEST, "expected {\"spec\":\"...\"}"))?;
                let s =
                    parse_spec(spec).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
                shared.apply_fault(&s);
                reply(StatusCode::OK, &json!({"applied": spec}))
            }
            (&Method::POST, ["nodes", i, "agent"]) => {
                let n = node_of(i)?;
                let v = json_body()?;
                let c = v
                    .get("connected")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| err(StatusCode::BAD_REQUEST, "expected {\"connected\":bool}"))?;
                n.update(|s| s.serverview_agent = c);
                reply(
                    StatusCode::OK,
                    &json!({"node": n.index(), "serverview_agent": c}),
                )
            }
            (&Method::POST, ["nodes", i, "power"]) => {
                let n = node_of(i)?;
                let v = json_body()?;
                let changed = match v.get("action").and_then(Value::as_str) {
                    Some("on") => n.power_on(),
                    Some("off") => n.power_off(),
                    Some("reset") => n.reset("reset"),
                    Some("cycle") => n.reset("power-cycle"),
                    _ => {
                        return Err(err(
                            StatusCode::BAD_REQUEST,
                            "expected {\"action\":\"on|off|reset|cycle\"}",
                        ));
                    }
                };
                reply(
                    StatusCode::OK,
                    &json!({"node": n.index(), "changed": changed, "power": n.state().power}),
                )
            }
            (&Method::GET, ["counters"]) => {
                let total: RequestCounters = total_counters(&shared.nodes);
                reply(
                    StatusCode::OK,
                    &json!({"total": total, "nodes": counters_by_node(&shared.nodes)}),
                )
            }
            (&Method::POST, ["counters", "reset"]) => {
                for n in &shared.nodes {
                    n.update(|s| s.counters = RequestCounters::default());
                }
                reply(StatusCode::OK, &json!({"reset": true}))
            }
            (
                _,
                ["health"]
                | ["nodes"]
                | ["nodes", _]
                | ["counters"]
                | ["faults"]
                | ["counters", "reset"],
            )
            | (_, ["nodes", _, "faults" | "agent" | "power" | "ramdisk-params"]) => {
                err(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => err(StatusCode::NOT_FOUND, "not found"),
        })
    })();
    Ok(r.unwrap_or_else(|e| e))
}
