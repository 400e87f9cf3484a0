//! `vmedia watch [NODE]`: streams node events until interrupted (or the coordinator ends it).

use std::process::ExitCode;

use crate::client::{connect, status_err};
use vmedia_proto::v1::{NodeEvent, WatchRequest};

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Node uuid or name; all nodes when omitted
    pub node: Option<String>,
    /// Start with the current state of the selected nodes
    #[arg(long)]
    pub initial: bool,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events (0 = never)
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

pub async fn run(coordinator: &str, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(coordinator).await?;
    let mut stream = c
        .nodes
        .watch(WatchRequest {
            node: args.node.clone().unwrap_or_default(),
            initial: args.initial,
        })
        .await
        .map_err(|s| status_err("watch", s))?
        .into_inner();
    let mut seen = 0u64;
    while let Some(ev) = stream.message().await.map_err(|s| status_err("watch", s))? {
        if args.json {
            println!("{}", event_json(&ev));
        } else {
            println!("{}", event_line(&ev));
        }
        seen += 1;
        if args.count != 0 && seen >= args.count {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn event_line(ev: &NodeEvent) -> String {
    if ev.node_uuid.is_empty() {
        // Server notice (e.g. this watcher lagged and lost events).
        return format!("-- {}", ev.last_error);
    }
    let name = if ev.node_name.is_empty() {
        &ev.node_uuid
    } else {
        &ev.node_name
    };
    let mut s = format!("{name}: {}", ev.provision_state);
    if !ev.target_provision_state.is_empty() {
        s.push_str(&format!(" -> {}", ev.target_provision_state));
    }
    if !ev.progress.is_empty() {
        s.push_str(&format!(" [{}]", ev.progress));
    }
    if ev.queue_position > 0 {
        s.push_str(&format!(" (queue #{})", ev.queue_position));
    }
    if !ev.share.is_empty() {
        s.push_str(&format!(" on {}", ev.share));
    }
    if !ev.last_error.is_empty() {
        s.push_str(&format!(" error: {}", ev.last_error));
    }
    s
}

pub fn event_json(ev: &NodeEvent) -> serde_json::Value {
    serde_json::json!({
        "node_uuid": ev.node_uuid, "node_name": ev.node_name,
        "provision_state": ev.provision_state, "target_provision_state": ev.target_provision_state,
        "last_error": ev.last_error, "progress": ev.progress, "share": ev.share,
        "at_ms": ev.at_ms, "queue_position": ev.queue_position,
    })
}
