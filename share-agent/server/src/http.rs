//! The agent's HTTP side, towards the nodes:
//!
//! - `GET|HEAD /images/{token}/{name}`: images a current job published, with
//!   single-range `Range` support. Only files in the publication table are
//!   served; a path under the share root that no job published is a 404.
//! - The deploy ramdisk's Ironic API subset, on ironic-python-agent's paths:
//!   `GET /` (version document), `GET /v1/lookup`, `POST /v1/heartbeat/{uuid}`.
//!   Lookup and heartbeat need `X-OpenStack-Ironic-API-Version >= 1.22`, as in
//!   Ironic, and are relayed to the coordinator over gRPC.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use vmedia_proto::v1 as pb;

use crate::bus::{HeartbeatBus, Publications};
use crate::filestream::{ChunkPool, file_body};
use crate::link::Coordinators;

/// What the ramdisk-facing API needs from the rest of the agent.
#[derive(Clone)]
pub struct HttpState {
    /// Published images.
    pub publications: Arc<Publications>,
    /// Wakes jobs waiting for a node's next heartbeat.
    pub heartbeats: Arc<HeartbeatBus>,
    /// The coordinator relay.
    /// The coordinator in use (follows the leader among replicas).
    pub link: Coordinators,
    /// This agent's id (sent with every relay).
    pub agent_id: String,
    /// Read buffers for image downloads.
    pub chunks: Arc<ChunkPool>,
}

/// Image downloads are read in chunks of this size...
pub const IMAGE_CHUNK: usize = 256 * 1024;
/// ...and this many idle chunk buffers are kept for the next downloads (16 MiB).
pub const IMAGE_CHUNKS_KEPT: usize = 64;

/// Builds the router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/v1/lookup", get(lookup))
        .route("/v1/heartbeat/{uuid}", post(heartbeat))
        .route("/images/{token}/{name}", get(image).head(image))
        .with_state(state)
}

/// The version the agent advertises to ramdisks (Ironic's max as IPA knows it).
pub const API_VERSION: &str = "1.68";
const MIN_VERSION: &str = "1.1";

async fn root() -> Json<serde_json::Value> {
    let v1 = serde_json::json!({
        "id": "v1",
        "links": [],
        "status": "CURRENT",
        "min_version": MIN_VERSION,
        "version": API_VERSION,
    });
    Json(serde_json::json!({
        "name": "OpenStack Ironic API",
        "description": "Ironic API subset served by a share agent for deploy ramdisks",
        "versions": [v1.clone()],
        "default_version": v1,
    }))
}

/// Ironic's error body: the fault document is itself a JSON string.
fn ironic_error(status: StatusCode, fault: &str, message: &str) -> Response {
    let inner = serde_json::json!({"faultcode": fault, "faultstring": message, "debuginfo": null});
    let body = serde_json::json!({"error_message": inner.to_string()});
    (status, Json(body)).into_response()
}

/// Ironic returns 404 for the ramdisk endpoints below API 1.22 (a missing header means 1.1).
fn version_ok(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get("x-openstack-ironic-api-version")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let v = v.trim();
    if v.eq_ignore_ascii_case("latest") {
        return true;
    }
    let Some((major, minor)) = v.split_once('.') else {
        return false;
    };
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(1), Ok(minor)) => minor >= 22,
        (Ok(m), Ok(_)) => m > 1,
        _ => false,
    }
}

fn not_found() -> Response {
    ironic_error(
        StatusCode::NOT_FOUND,
        "Client",
        "The resource could not be found.",
    )
}

fn status_to_response(s: &tonic::Status) -> Response {
    match s.code() {
        tonic::Code::NotFound => ironic_error(StatusCode::NOT_FOUND, "Client", s.message()),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
            ironic_error(StatusCode::BAD_REQUEST, "Client", s.message())
        }
        tonic::Code::Aborted | tonic::Code::AlreadyExists => {
            ironic_error(StatusCode::CONFLICT, "Client", s.message())
        }
        _ => ironic_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server",
            &format!("coordinator unavailable: {}", s.message()),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    #[serde(default)]
    addresses: String,
    #[serde(default)]
    node_uuid: Option<String>,
}

async fn lookup(
    State(st): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Response {
    if !version_ok(&headers) {
        return not_found();
    }
    let addresses: Vec<String> = q
        .addresses
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    let node_uuid = q.node_uuid.filter(|u| !u.is_empty()).unwrap_or_default();
    if addresses.is_empty() && node_uuid.is_empty() {
        return ironic_error(
            StatusCode::BAD_REQUEST,
            "Client",
            "Incomplete lookup request: at least one MAC address or a node UUID is required.",
        );
    }
    let mut link = st.link.client();
    let req = pb::RamdiskLookupRequest {
        agent_id: st.agent_id.clone(),
        addresses,
        node_uuid,
    };
    match link.ramdisk_lookup(req).await {
        Ok(resp) => {
            let r = resp.into_inner();
            let body = serde_json::json!({
                "node": {
                    "uuid": r.node_uuid,
                    "properties": r.properties,
                    "instance_info": r.instance_info,
                    "driver_internal_info": {},
                    "links": [],
                },
                "config": {
                    "heartbeat_timeout": if r.heartbeat_timeout_s == 0 { 300 } else { r.heartbeat_timeout_s },
                    // The token was delivered on the virtual floppy (pre-generated
                    // for virtual media), so lookup never reveals it.
                    "agent_token": "******",
                    "agent_token_required": true,
                    "agent_md5_checksum_enable": true,
                    "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false,
                                "prepend_host_reverse": true, "global_prefix": null},
                    "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
                },
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(s) => status_to_response(&s),
    }
}

#[derive(Debug, Default, Deserialize)]
struct HeartbeatBody {
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    agent_token: Option<String>,
    #[serde(default)]
    agent_version: Option<String>,
    #[serde(default)]
    agent_verify_ca: Option<String>,
}

/// A ramdisk heartbeat, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Where the ramdisk's API listens; empty when not sent.
    pub callback_url: String,
    /// The agent token (never logged).
    pub agent_token: String,
    /// The ramdisk's version, as it says.
    pub agent_version: String,
    /// The ramdisk's self-signed CA (automatic TLS), when it sent one.
    pub agent_verify_ca: Option<String>,
}

/// Why a heartbeat body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeartbeatRefusal {
    /// The body is not a heartbeat; the text is the client-facing reason.
    Invalid(String),
    /// No (or an empty) agent token.
    NoToken,
}

/// Parses a heartbeat body (empty = an empty object) and checks it as Ironic does: JSON
/// object, a call-back URL with an http or https scheme, a token.
pub fn parse_heartbeat(body: &[u8]) -> Result<Heartbeat, HeartbeatRefusal> {
    let hb: HeartbeatBody = if body.is_empty() {
        HeartbeatBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| HeartbeatRefusal::Invalid(format!("Invalid heartbeat body: {e}")))?
    };
    let callback_url = hb.callback_url.unwrap_or_default();
    let scheme_ok = callback_url.starts_with("http://") || callback_url.starts_with("https://");
    if !callback_url.is_empty() && !scheme_ok {
        let shown: String = callback_url
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        return Err(HeartbeatRefusal::Invalid(format!(
            "Invalid callback_url {shown:?}: the scheme must be http or https"
        )));
    }
    let agent_token = hb
        .agent_token
        .filter(|t| !t.is_empty())
        .ok_or(HeartbeatRefusal::NoToken)?;
    Ok(Heartbeat {
        callback_url,
        agent_token,
        agent_version: hb.agent_version.unwrap_or_default(),
        agent_verify_ca: hb.agent_verify_ca,
    })
}

async fn heartbeat(
    State(st): State<HttpState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !version_ok(&headers) {
        return not_found();
    }
    let hb = match parse_heartbeat(&body) {
        Ok(hb) => hb,
        Err(HeartbeatRefusal::Invalid(text)) => {
            return ironic_error(StatusCode::BAD_REQUEST, "Client", &text);
        }
        Err(HeartbeatRefusal::NoToken) => {
            let node: String = uuid
                .chars()
                .take(64)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            tracing::warn!(node = %node, "heartbeat rejected: no agent token");
            return ironic_error(
                StatusCode::BAD_REQUEST,
                "Client",
                "Invalid or missing agent token received.",
            );
        }
    };
    let callback_url = hb.callback_url;
    let token = hb.agent_token;
    // Jobs the coordinator sends for this heartbeat wait for its certificate.
    let carries_ca = hb
        .agent_verify_ca
        .as_deref()
        .is_some_and(|p| p.contains("BEGIN CERTIFICATE"));
    if carries_ca {
        st.heartbeats.ca_in_flight(&uuid, true);
    }
    let mut link = st.link.client();
    let req = pb::RamdiskHeartbeatRequest {
        agent_id: st.agent_id.clone(),
        node_uuid: uuid.clone(),
        callback_url,
        agent_token: token,
        agent_version: hb.agent_version,
    };
    let relayed = link.ramdisk_heartbeat(req).await;
    let reply = match relayed {
        Ok(_) => {
            // Kept only once the coordinator accepted the token, so a stranger
            // cannot plant a certificate for a node.
            if let Some(pem) = hb
                .agent_verify_ca
                .filter(|p| p.contains("BEGIN CERTIFICATE"))
            {
                st.heartbeats.set_ca(&uuid, pem);
            }
            st.heartbeats.beat(&uuid);
            StatusCode::ACCEPTED.into_response()
        }
        Err(s) => {
            // The request (which holds the token) is never logged.
            tracing::warn!(node = %uuid, code = ?s.code(), reason = %s.message(), "heartbeat rejected by the coordinator");
            status_to_response(&s)
        }
    };
    if carries_ca {
        st.heartbeats.ca_in_flight(&uuid, false);
    }
    reply
}

/// A parsed `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// Serve the whole file (no header, or one we do not honour, e.g. multi-range).
    Full,
    /// Serve `start..=end`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 §14.1.2).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        // Multipart ranges are optional for a server; the full body is a valid answer.
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Full;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Partial(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Full;
    };
    if start >= len {
        return RangeSpec::Unsatisfiable;
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(len - 1),
            _ => return RangeSpec::Full,
        }
    };
    RangeSpec::Partial(start, end)
}

async fn image(
    State(st): State<HttpState>,
    Path((token, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(p) = st.publications.get(&token).filter(|p| p.name == name) else {
        return (StatusCode::NOT_FOUND, "not published\n").into_response();
    };
    let path = p.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((f, len))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    let (file, len) = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(node = %p.node, path = %p.path.display(), error = %e, "published image cannot be opened");
            return (StatusCode::NOT_FOUND, "image gone\n").into_response();
        }
    };
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let mut resp_headers = HeaderMap::new();
    resp_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let (status, start, count) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial(s, e) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{len}")) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeSpec::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp_headers.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, resp_headers).into_response();
        }
    };
    resp_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return (status, resp_headers).into_response();
    }
    let body = file_body(file, start, count, st.chunks.clone());
    (status, resp_headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), RangeSpec::Partial(0, 3));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeSpec::Partial(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeSpec::Partial(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), RangeSpec::Partial(0, 9));
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            RangeSpec::Partial(8, 9)
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeSpec::Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeSpec::Full);
    }

    #[test]
    fn api_version_gate() {
        let mut h = HeaderMap::new();
        assert!(!version_ok(&h));
        h.insert(
            "x-openstack-ironic-api-version",
            HeaderValue::from_static("1.21"),
        );
        assert!(!version_ok(&h));
        h.insert(
            "x-openstack-ironic-api-version",
            HeaderValue::from_static("1.22"),
        );
        assert!(version_ok(&h));
        h.insert(
            "x-openstack-ironic-api-version",
            HeaderValue::from_static("1.68"),
        );
        assert!(version_ok(&h));
        h.insert(
            "x-openstack-ironic-api-version",
            HeaderValue::from_static("latest"),
        );
        assert!(version_ok(&h));
        h.insert(
            "x-openstack-ironic-api-version",
            HeaderValue::from_static("bogus"),
        );
        assert!(!version_ok(&h));
    }

    #[test]
    fn error_body_shape() {
        let r = ironic_error(StatusCode::BAD_REQUEST, "Client", "nope");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
