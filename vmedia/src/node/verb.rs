//! Provision verbs on one node or many: `SetProvisionState` for one, chunked
//! `BulkSetProvisionState` with a progress bar for many, and `--wait` on the watch stream.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use vmedia_proto::v1::{
    BulkSetProvisionStateRequest, NodeSelector, SetProvisionStateRequest, WatchRequest,
};

use super::{BULK_CHUNK, VerbArgs, print_node};
use crate::client::{Clients, status_err};
use crate::output::{self, Format};

pub(super) async fn verb(c: &mut Clients, target: &str, a: VerbArgs) -> anyhow::Result<ExitCode> {
    let selector_used = a.all || a.state.is_some() || a.share.is_some() || a.name_prefix.is_some();
    if a.nodes.is_empty() && !selector_used {
        anyhow::bail!(
            "{target}: name nodes, or select them with --all/--state/--share/--name-prefix"
        );
    }
    if !a.nodes.is_empty() && selector_used {
        anyhow::bail!("{target}: give either node names or a selector, not both");
    }
    // Subscribe before acting so no completion event is missed.
    let mut events = if a.wait {
        Some(
            c.nodes
                .watch(WatchRequest {
                    node: String::new(),
                    initial: false,
                    since_ms: 0,
                })
                .await
                .map_err(|s| status_err("watch", s))?
                .into_inner(),
        )
    } else {
        None
    };
    if a.nodes.len() == 1 {
        let node = &a.nodes[0];
        let n = c
            .nodes
            .set_provision_state(SetProvisionStateRequest {
                node: node.clone(),
                target: target.to_owned(),
            })
            .await
            .map_err(|s| status_err(&format!("{target} node {node}"), s))?
            .into_inner();
        if let Some(ev) = events.as_mut() {
            let wanted: HashSet<String> = [n.uuid.clone()].into();
            return wait_done(ev, target, &wanted, 1, a.timeout, a.out.format()).await;
        }
        print_node(&n, a.out.format())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut accepted = 0u64;
    let mut failures = Vec::new();
    if selector_used {
        let bar = ProgressBar::new_spinner().with_message(format!("{target}: selecting nodes"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let r = c
            .nodes
            .bulk_set_provision_state(BulkSetProvisionStateRequest {
                nodes: Vec::new(),
                selector: Some(NodeSelector {
                    provision_state: a.state.unwrap_or_default(),
                    share: a.share.unwrap_or_default(),
                    name_prefix: a.name_prefix.unwrap_or_default(),
                    all: a.all,
                }),
                target: target.to_owned(),
            })
            .await
            .map_err(|s| status_err(&format!("bulk {target}"), s))?
            .into_inner();
        bar.finish_and_clear();
        accepted += r.accepted;
        failures.extend(r.failures);
    } else {
        let bar = ProgressBar::new(a.nodes.len() as u64).with_style(bar_style());
        bar.set_message(target.to_owned());
        for chunk in a.nodes.chunks(BULK_CHUNK) {
            let r = c
                .nodes
                .bulk_set_provision_state(BulkSetProvisionStateRequest {
                    nodes: chunk.to_vec(),
                    selector: None,
                    target: target.to_owned(),
                })
                .await
                .map_err(|s| status_err(&format!("bulk {target}"), s))?
                .into_inner();
            accepted += r.accepted;
            failures.extend(r.failures);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    let refused = !failures.is_empty();
    if let Some(ev) = events.as_mut()
        && accepted > 0
    {
        for f in &failures {
            eprintln!("{target} refused for {}: {}", f.node, f.error);
        }
        // Explicit names or uuids narrow the events; a selector counts any node finishing.
        let wanted: HashSet<String> = a.nodes.iter().cloned().collect();
        let code = wait_done(ev, target, &wanted, accepted, a.timeout, a.out.format()).await?;
        return Ok(if refused { ExitCode::FAILURE } else { code });
    }
    let f: Vec<_> = failures
        .iter()
        .map(|f| serde_json::json!({"node": f.node, "error": f.error}))
        .collect();
    let v = serde_json::json!({"target": target, "accepted": accepted, "failures": f});
    output::print(a.out.format(), &v, || {
        let mut s = format!("{target}: {accepted} accepted, {} failed\n", failures.len());
        for f in &failures {
            s.push_str(&format!("  {}: {}\n", f.node, f.error));
        }
        s
    })?;
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Follows Watch events until `expected` nodes have ended the operation (no target state
/// left). `wanted` (uuids or names) narrows which nodes count; empty = any node.
async fn wait_done(
    events: &mut tonic::Streaming<vmedia_proto::v1::NodeEvent>,
    target: &str,
    wanted: &HashSet<String>,
    expected: u64,
    timeout_s: u64,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new(expected).with_style(bar_style());
    bar.set_message(format!("{target}: waiting"));
    let mut done: HashMap<String, (String, String)> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    while (done.len() as u64) < expected {
        let next = tokio::time::timeout_at(deadline, events.message()).await;
        let ev = match next {
            Err(_) => {
                bar.abandon();
                anyhow::bail!(
                    "{target}: {} of {expected} nodes finished within {timeout_s} s",
                    done.len()
                );
            }
            Ok(r) => match r.map_err(|s| status_err("watch", s))? {
                Some(ev) => ev,
                None => anyhow::bail!("{target}: the coordinator ended the event stream"),
            },
        };
        if ev.node_uuid.is_empty() {
            // Lag notice: events were dropped; the count may stall, the timeout still holds.
            bar.println(format!("warning: {}", ev.last_error));
            continue;
        }
        if !wanted.is_empty() && !wanted.contains(&ev.node_uuid) && !wanted.contains(&ev.node_name)
        {
            continue;
        }
        if ev.target_provision_state.is_empty() && !done.contains_key(&ev.node_uuid) {
            done.insert(
                ev.node_uuid.clone(),
                (ev.provision_state.clone(), ev.last_error.clone()),
            );
            bar.inc(1);
            bar.set_message(format!("{target}: {} {}", ev.node_uuid, ev.provision_state));
        }
    }
    bar.finish_and_clear();
    let failed: Vec<_> = done
        .iter()
        .filter(|(_, (_, err))| !err.is_empty())
        .collect();
    let nodes: Vec<_> = done
        .iter()
        .map(|(u, (st, err))| serde_json::json!({"uuid": u, "provision_state": st, "last_error": err}))
        .collect();
    let v = serde_json::json!({"target": target, "finished": nodes});
    output::print(format, &v, || {
        let mut s = format!(
            "{target}: {} finished, {} with errors\n",
            done.len(),
            failed.len()
        );
        for (u, (st, err)) in &failed {
            s.push_str(&format!("  {u}: {st}: {err}\n"));
        }
        s
    })?;
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}
