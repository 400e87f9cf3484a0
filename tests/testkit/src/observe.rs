//! Watching a fleet from outside, as an operator would: node listings and waits through
//! the public API, the simulator's control API, and CPU per kind of process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use coordinator_client::conn::{self, Access};
use vmedia_proto::v1 as pb;

/// CPU seconds per part of the system.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuSeconds {
    pub coordinator: f64,
    pub agents: f64,
    pub simulator: f64,
}

/// What a poll of the coordinator shows of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeSummary {
    pub uuid: String,
    pub name: String,
    pub provision_state: String,
    pub last_error: String,
    pub share: String,
}

/// A node that an operation gave up on.
pub fn is_failed(n: &NodeSummary) -> bool {
    matches!(
        n.provision_state.as_str(),
        "deploy failed" | "clean failed" | "inspect failed" | "error"
    ) || (n.provision_state == "enroll" && !n.last_error.is_empty())
}

/// Provision states in which nothing more happens without an operator.
pub fn is_settled(state: &str) -> bool {
    matches!(
        state,
        "enroll"
            | "manageable"
            | "available"
            | "active"
            | "deploy failed"
            | "clean failed"
            | "error"
    )
}

/// Every node the coordinator knows, one page at a time. `coordinator` may list several
/// replicas (comma separated): the first that answers is used (any replica serves reads).
pub async fn list_all(coordinator: &str, access: &Access) -> Result<Vec<NodeSummary>> {
    let mut last = None;
    for url in conn::urls(coordinator) {
        match list_all_from(&url, access).await {
            Ok(nodes) => return Ok(nodes),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no coordinator address given")))
}

async fn list_all_from(url: &str, access: &Access) -> Result<Vec<NodeSummary>> {
    let mut c = conn::clients(url, access)
        .await
        .context("connecting to the coordinator")?
        .nodes
        .max_decoding_message_size(256 << 20);
    let mut out = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_nodes(pb::ListNodesRequest {
                limit: 5000,
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!("listing nodes: {}", s.message()))?
            .into_inner();
        out.extend(page.nodes.into_iter().map(|n| NodeSummary {
            uuid: n.uuid,
            name: n.name,
            provision_state: n.provision_state,
            last_error: n.last_error,
            share: n.share,
        }));
        if page.next_marker.is_empty() {
            return Ok(out);
        }
        marker = page.next_marker;
    }
}

/// Polls until every node satisfies `done` or `limit` passes; `progress` sees the count
/// per state after each poll. A coordinator that is briefly away (restarting) is waited for.
pub async fn wait_until(
    coordinator: &str,
    access: &Access,
    limit: Duration,
    done: impl Fn(&NodeSummary) -> bool,
    mut progress: impl FnMut(&BTreeMap<String, usize>),
) -> Result<Vec<NodeSummary>> {
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    let mut poll = Duration::from_millis(250);
    loop {
        match list_all(coordinator, access).await {
            Ok(nodes) => {
                poll = Duration::from_millis(250 + nodes.len() as u64 / 10);
                let mut counts = BTreeMap::new();
                for n in &nodes {
                    *counts.entry(n.provision_state.clone()).or_insert(0) += 1;
                }
                progress(&counts);
                if nodes.iter().all(&done) {
                    return Ok(nodes);
                }
                if Instant::now() > deadline {
                    let stuck: Vec<String> = nodes
                        .iter()
                        .filter(|n| !done(n))
                        .take(5)
                        .map(|n| format!("{} ({})", n.name, n.provision_state))
                        .collect();
                    bail!(
                        "not every node got there within {limit:?}; for example: {}",
                        stuck.join(", ")
                    );
                }
            }
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(e.context(last_err.unwrap_or_default()));
                }
                last_err = Some(format!("{e:#}"));
            }
        }
        // Listing is not free for the coordinator: poll large fleets less often.
        tokio::time::sleep(poll).await;
    }
}

/// GET a JSON document from a loopback HTTP server (the simulator's control API).
pub async fn http_get_json(addr: &str, path: &str) -> Result<serde_json::Value> {
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building an HTTP client")?;
    let reply = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = reply.status();
    if !status.is_success() {
        bail!("GET {url}: {status}");
    }
    reply
        .json()
        .await
        .with_context(|| format!("parsing JSON from {url}"))
}

/// POST a JSON document to a loopback HTTP server (the simulator's control API); returns
/// the JSON reply.
pub async fn http_post_json(
    addr: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    let url = format!("http://{addr}{path}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building an HTTP client")?;
    let reply = client
        .post(&url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = reply.status();
    if !status.is_success() {
        bail!("POST {url}: {status}");
    }
    reply
        .json()
        .await
        .with_context(|| format!("parsing JSON from {url}"))
}
