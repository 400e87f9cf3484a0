//! The agent's HTTP command API (IPA `api/app.py`): plain HTTP/1.1, JSON bodies.
//!
//! Routes: `GET /`, `GET /v1`, `GET /v1/status`, `GET|POST /v1/commands[/]`,
//! `GET /v1/commands/<id>`. Every `/v1/commands*` request needs `agent_token=<token>` in
//! the query (401 "Token invalid." otherwise), as IPA 12 does.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::Agent;
use super::commands::{self, ApiError};

/// Largest request body accepted (deploy step parameters carry the node and ports).
const MAX_BODY: usize = 4 << 20;

/// Accept connections until the ramdisk stops.
pub(crate) async fn serve(listener: TcpListener, agent: Arc<Agent>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(node = %agent.node, error = %e, "agent API accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let a = agent.clone();
        agent.spawn(async move {
            let svc = service_fn(move |req| {
                let a = a.clone();
                async move { Ok::<_, Infallible>(handle(a, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_json(),
    )
}

/// Decode `%XX` and `+` in a query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| decode(k) == key)
        .map(|(_, v)| decode(v))
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let base = format!(
        "http://{}",
        req.headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
    );
    match (method.clone(), path.as_str()) {
        (Method::GET, "") => json_response(
            StatusCode::OK,
            &json!({
                "name": "OpenStack Ironic Python Agent API",
                "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
                "versions": [{"id": "v1", "links": [{"href": format!("{base}/v1/"), "rel": "self"}]}],
                "default_version": {"id": "v1", "links": [{"href": format!("{base}/v1/"), "rel": "self"}]},
            }),
        ),
        (Method::GET, "/v1") => json_response(
            StatusCode::OK,
            &json!({
                "id": "v1",
                "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
                "media_types": [{"base": "application/json", "type": "application/vnd.openstack.ironic-python-agent.v1+json"}],
                "commands": [{"href": format!("{base}/v1/commands/"), "rel": "self"}],
                "status": [{"href": format!("{base}/v1/status/"), "rel": "self"}],
            }),
        ),
        (Method::GET, "/v1/status") => json_response(
            StatusCode::OK,
            &json!({"started_at": agent.started_at, "version": super::AGENT_VERSION}),
        ),
        (_, p) if p == "/v1/commands" || p.starts_with("/v1/commands/") => {
            let token = query_param(query.as_deref(), "agent_token");
            if token.as_deref() != Some(agent.token.expose()) {
                agent.log(format!("{method} {p}: rejected, token invalid"));
                return error_response(&ApiError::new(
                    401,
                    "Unauthorized",
                    "Token invalid.",
                    "Token invalid.",
                ));
            }
            let rest = p.strip_prefix("/v1/commands").unwrap_or_default();
            match (method, rest) {
                (Method::GET, "") => {
                    let list = agent
                        .commands
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|c| c.to_json())
                        .collect::<Vec<_>>();
                    json_response(StatusCode::OK, &json!({ "commands": list }))
                }
                (Method::GET, id) => {
                    let id = id.trim_start_matches('/');
                    let found = agent
                        .commands
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.to_json());
                    match found {
                        Some(v) => json_response(StatusCode::OK, &v),
                        None => error_response(&ApiError::new(
                            404,
                            "RequestedObjectNotFoundError",
                            "Requested object not found",
                            &format!("Command with id {id} not found."),
                        )),
                    }
                }
                (Method::POST, "") => {
                    let wait = query_param(query.as_deref(), "wait")
                        .is_some_and(|w| w.eq_ignore_ascii_case("true"));
                    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            return error_response(&ApiError::new(
                                413,
                                "InvalidContentError",
                                "Invalid request body",
                                "body too large or unreadable",
                            ));
                        }
                    };
                    let v: Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(e) => {
                            return error_response(&ApiError::new(
                                400,
                                "InvalidContentError",
                                "Invalid request body",
                                &format!("invalid JSON: {e}"),
                            ));
                        }
                    };
                    let Some(name) = v.get("name").and_then(Value::as_str) else {
                        return error_response(&ApiError::new(
                            400,
                            "InvalidContentError",
                            "Invalid request body",
                            "Missing command 'name' field.",
                        ));
                    };
                    let params = v.get("params").cloned().unwrap_or_else(|| json!({}));
                    if !params.is_object() {
                        return error_response(&ApiError::new(
                            400,
                            "InvalidContentError",
                            "Invalid request body",
                            "'params' must be a dictionary.",
                        ));
                    }
                    match commands::execute(&agent, name, params, wait).await {
                        Ok(v) => json_response(StatusCode::OK, &v),
                        Err(e) => error_response(&e),
                    }
                }
                _ => error_response(&ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "Method not allowed",
                    "",
                )),
            }
        }
        _ => error_response(&ApiError::new(
            404,
            "NotFound",
            "Not found",
            &format!("{method} {path}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(
            query_param(Some("wait=true&agent_token=a%2Bb"), "agent_token").as_deref(),
            Some("a+b")
        );
        assert_eq!(query_param(Some("wait=true"), "agent_token"), None);
        assert_eq!(query_param(Some("x=%zz%"), "x").as_deref(), Some("%zz%"));
        assert_eq!(query_param(None, "x"), None);
    }
}
