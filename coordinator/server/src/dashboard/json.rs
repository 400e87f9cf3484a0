//! The JSON the page's script reads. Nodes are the API's masked view (the same fields as
//! `vmedia node show --json`); nothing here can reveal a secret.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vmedia_proto::v1 as pb;

use super::data::ListParams;
use super::pages::when;
use super::{App, Fail};

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.text() }))).into_response()
    }
}

/// A node row of the table.
pub fn node_row(n: &pb::Node) -> Value {
    json!({
        "uuid": n.uuid,
        "name": n.name,
        "provision_state": n.provision_state,
        "target_provision_state": n.target_provision_state,
        "power_state": n.power_state,
        "share": n.share,
        "last_error": n.last_error,
        "progress": n.progress,
        "queue_position": n.queue_position,
    })
}

/// A node in full, secrets masked by the API's conversion.
pub fn node_full(n: &pb::Node) -> Value {
    let sorted = |m: &std::collections::HashMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    let mut v = node_row(n);
    if let Value::Object(o) = &mut v {
        o.insert("driver".into(), json!(n.driver));
        o.insert("driver_info".into(), Value::Object(sorted(&n.driver_info)));
        o.insert(
            "instance_info".into(),
            Value::Object(sorted(&n.instance_info)),
        );
        o.insert("properties".into(), Value::Object(sorted(&n.properties)));
        o.insert("macs".into(), json!(n.macs));
        o.insert("maintenance".into(), json!(n.maintenance));
        o.insert("created_at_ms".into(), json!(n.created_at_ms));
        o.insert("updated_at_ms".into(), json!(n.updated_at_ms));
        o.insert(
            "provision_updated_at_ms".into(),
            json!(n.provision_updated_at_ms),
        );
    }
    v
}

pub async fn summary(State(app): State<App>) -> Result<Json<Value>, Fail> {
    let (s, shares) = tokio::join!(app.summary(), app.shares());
    let s = s?;
    let failures: Vec<Value> = s
        .failures
        .groups
        .iter()
        .map(|g| {
            json!({
                "state": g.state,
                "reason": g.reason,
                "count": g.count,
                "example_uuid": g.example.0,
                "example_name": g.example.1,
            })
        })
        .collect();
    let shares = shares.map(|list| {
        list.iter()
            .map(|s| {
                json!({
                    "id": s.agent.as_str(),
                    "health": s.health.as_str(),
                    "capacity": s.capacity,
                    "active": s.active,
                    "queued": s.queued,
                    "nodes": s.nodes,
                    "free_bytes": s.free_bytes,
                })
            })
            .collect::<Vec<_>>()
    });
    Ok(Json(json!({
        "counts": s.counts,
        "total": s.total,
        "failures": failures,
        "failures_examined": s.failures.examined,
        "failures_capped": s.failures.capped,
        "shares": shares,
    })))
}

pub async fn nodes(
    State(app): State<App>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, Fail> {
    let q = params.validate()?;
    let page = app.node_page(&q).await?;
    Ok(Json(json!({
        "nodes": page.nodes.iter().map(node_row).collect::<Vec<_>>(),
        "next_marker": page.next.map(|u| u.to_string()),
    })))
}

pub async fn node(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, Fail> {
    let (n, _) = app.node(&id).await?;
    Ok(Json(node_full(&n)))
}

pub async fn history(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, Fail> {
    let (n, history) = app.node(&id).await?;
    let changes: Vec<Value> = history
        .iter()
        .map(|c| {
            json!({
                "at_ms": c.at_ms,
                "at": when(c.at_ms),
                "from": c.from.as_str(),
                "to": c.to.as_str(),
                "last_error": c.last_error,
            })
        })
        .collect();
    Ok(Json(json!({ "uuid": n.uuid, "changes": changes })))
}
