//! `vmedia share list|drain|undrain`: the share agents as the coordinator sees them.

use std::process::ExitCode;

use crate::client::{Target, connect, kv_line, status_err, table};
use crate::output::{self, Format, OutputArgs};
use vmedia_proto::v1::{DrainShareRequest, ListSharesRequest, Share};

#[derive(clap::Subcommand)]
pub enum ShareCommand {
    /// List share agents with capacity, load and health
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Stop placing nodes on an agent; its nodes move to other agents
    Drain {
        /// Agent id
        share: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Allow placement on a drained agent again
    Undrain {
        /// Agent id
        share: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn run(target: &Target, cmd: ShareCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(target).await?;
    match cmd {
        ShareCommand::List { out } => {
            let shares = c
                .shares
                .list_shares(ListSharesRequest {})
                .await
                .map_err(|s| status_err("list shares", s))?
                .into_inner()
                .shares;
            let v = serde_json::Value::Array(shares.iter().map(share_json).collect());
            output::print(out.format(), &v, || share_table(&shares))?;
        }
        ShareCommand::Drain { share, out } => {
            let s = c
                .shares
                .drain_share(DrainShareRequest {
                    share: share.clone(),
                })
                .await
                .map_err(|s| status_err(&format!("drain share {share}"), s))?
                .into_inner();
            print_one(&s, out.format())?;
        }
        ShareCommand::Undrain { share, out } => {
            let s = c
                .shares
                .undrain_share(DrainShareRequest {
                    share: share.clone(),
                })
                .await
                .map_err(|s| status_err(&format!("undrain share {share}"), s))?
                .into_inner();
            print_one(&s, out.format())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `share list` table.
pub fn share_table(shares: &[Share]) -> String {
    let rows: Vec<Vec<String>> = shares
        .iter()
        .map(|s| {
            vec![
                s.id.clone(),
                s.health.clone(),
                format!("{}/{}", s.active, s.capacity),
                s.queued.to_string(),
                s.nodes.to_string(),
                bytes(s.free_bytes),
                format!("{} {}:{}", s.share_type, s.server, s.share_name),
                s.bmc_networks.join(","),
            ]
        })
        .collect();
    table(
        &[
            "SHARE",
            "HEALTH",
            "ACTIVE/CAP",
            "QUEUED",
            "NODES",
            "FREE",
            "EXPORT",
            "BMC NETWORKS",
        ],
        &rows,
    )
}

fn print_one(s: &Share, format: Format) -> anyhow::Result<()> {
    output::print(format, &share_json(s), || {
        format!(
            "share {}: {} (drained: {}), {} nodes, {}/{} active, {} queued, labels: {}\n",
            s.id,
            s.health,
            s.drained,
            s.nodes,
            s.active,
            s.capacity,
            s.queued,
            kv_line(&s.labels)
        )
    })
}

pub fn share_json(s: &Share) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "health": s.health, "drained": s.drained, "server": s.server,
        "share_type": s.share_type, "share_name": s.share_name, "capacity": s.capacity,
        "active": s.active, "queued": s.queued, "nodes": s.nodes, "free_bytes": s.free_bytes,
        "bmc_networks": s.bmc_networks, "labels": s.labels, "version": s.version,
        "last_heartbeat_ms": s.last_heartbeat_ms, "http_url": s.http_url,
    })
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
