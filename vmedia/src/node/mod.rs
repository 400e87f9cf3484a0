//! `vmedia node ...`: enrol, inspect and provision nodes through the coordinator.
//!
//! Verbs accept several nodes or a selector (`--all`, `--state`, `--share`, `--name-prefix`);
//! one node goes through `SetProvisionState`, anything else through `BulkSetProvisionState`
//! in chunks, with a progress bar. `import` reads Ironic's `openstack baremetal node
//! list --long -f json` / `node show -f json` output.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;
use vmedia_proto::v1::{
    CreateNodeRequest, DeleteNodeRequest, ExplainPlacementRequest, GetNodeRequest,
    ListNodesRequest, Node, UpdateNodeRequest, ValidateNodeRequest,
};

use crate::client::{Clients, Target, connect, kv_line, parse_kv, status_err, table};
use crate::output::{self, Format, OutputArgs};

mod import;
mod power;
mod verb;

use import::import;
use power::{PowerArgs, power};
use verb::verb;

/// Nodes per BulkSetProvisionState call, so the progress bar moves and no message gets huge.
pub(super) const BULK_CHUNK: usize = 500;

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// Enrol a node
    Create(CreateArgs),
    /// Show one node
    Show {
        node: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List nodes (all pages unless --limit)
    List(ListArgs),
    /// Change a node's fields
    Set(SetArgs),
    /// Delete nodes
    Delete {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Check a node's fields per interface (power, management, boot, deploy)
    Validate {
        node: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// enroll -> manageable (checks the BMC)
    Manage(VerbArgs),
    /// manageable -> available
    Provide(VerbArgs),
    /// available -> active
    Deploy(VerbArgs),
    /// active -> available
    Undeploy(VerbArgs),
    /// active -> active with a fresh image
    Rebuild(VerbArgs),
    /// Stop a deploy waiting for its ramdisk or for a share slot
    Abort(VerbArgs),
    /// Out-of-band inspection, manageable -> inspecting -> manageable: fills properties
    /// (cpus, cpu_arch, memory_mb, local_gb, capabilities) and adds a port per NIC MAC.
    /// Waits with a progress bar (--no-wait to only start it)
    Inspect {
        #[command(flatten)]
        nodes: VerbArgs,
        /// Return once the coordinator accepted the inspections
        #[arg(long)]
        no_wait: bool,
    },
    /// Power actions: on | off | reboot | soft-off | soft-reboot | nmi (Ironic's "power on",
    /// "power off", "rebooting", "soft power off", "soft rebooting", "inject nmi")
    Power(PowerArgs),
    /// Which share agent serves the node and why
    Explain {
        node: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Enrol nodes from Ironic's `openstack baremetal node list --long -f json` or `node show -f json`
    Import {
        file: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub uuid: Option<String>,
    #[arg(long, default_value = "irmc")]
    pub driver: String,
    /// driver_info KEY=VALUE (repeatable), e.g. irmc_address=10.0.0.5
    #[arg(long = "driver-info")]
    pub driver_info: Vec<String>,
    /// instance_info KEY=VALUE (repeatable)
    #[arg(long = "instance-info")]
    pub instance_info: Vec<String>,
    /// properties KEY=VALUE (repeatable)
    #[arg(long = "property")]
    pub properties: Vec<String>,
    /// MAC address of a port (repeatable)
    #[arg(long = "mac")]
    pub macs: Vec<String>,
    /// Label the serving share agent must carry, KEY=VALUE (repeatable)
    #[arg(long = "share-selector")]
    pub share_selector: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub share: Option<String>,
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// Only nodes with a last_error
    #[arg(long)]
    pub with_last_error: bool,
    /// At most this many nodes (default: all)
    #[arg(long)]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct SetArgs {
    pub node: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long = "driver-info")]
    pub driver_info: Vec<String>,
    #[arg(long = "unset-driver-info")]
    pub unset_driver_info: Vec<String>,
    #[arg(long = "instance-info")]
    pub instance_info: Vec<String>,
    #[arg(long = "unset-instance-info")]
    pub unset_instance_info: Vec<String>,
    #[arg(long = "property")]
    pub properties: Vec<String>,
    #[arg(long = "unset-property")]
    pub unset_properties: Vec<String>,
    /// Replace the node's MAC list with these (repeatable)
    #[arg(long = "mac")]
    pub macs: Vec<String>,
    /// Replace the share selector with these KEY=VALUE labels (repeatable)
    #[arg(long = "share-selector")]
    pub share_selector: Vec<String>,
    #[arg(long)]
    pub maintenance: Option<bool>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct VerbArgs {
    /// Node uuids or names
    pub nodes: Vec<String>,
    /// Every node (combine with --state/--share/--name-prefix to narrow)
    #[arg(long)]
    pub all: bool,
    /// Nodes in this provision state
    #[arg(long)]
    pub state: Option<String>,
    /// Nodes placed on this share agent
    #[arg(long)]
    pub share: Option<String>,
    /// Nodes whose name starts with this
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// Wait until the operation ends on every accepted node, with a progress bar; exit
    /// status 1 if any node ends with an error
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub async fn run(target: &Target, cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(target).await?;
    match cmd {
        NodeCommand::Create(a) => {
            let req = CreateNodeRequest {
                uuid: a.uuid.unwrap_or_default(),
                name: a.name.unwrap_or_default(),
                driver: a.driver,
                driver_info: parse_kv(&a.driver_info, "--driver-info")?,
                instance_info: parse_kv(&a.instance_info, "--instance-info")?,
                properties: parse_kv(&a.properties, "--property")?,
                macs: a.macs,
                share_selector: parse_kv(&a.share_selector, "--share-selector")?,
            };
            let n = c
                .nodes
                .create_node(req)
                .await
                .map_err(|s| status_err("create node", s))?
                .into_inner();
            print_node(&n, a.out.format())?;
        }
        NodeCommand::Show { node, out } => {
            let n = get(&mut c, &node).await?;
            print_node(&n, out.format())?;
        }
        NodeCommand::List(a) => list(&mut c, a).await?,
        NodeCommand::Set(a) => {
            let req = UpdateNodeRequest {
                node: a.node.clone(),
                name: a.name,
                driver_info: parse_kv(&a.driver_info, "--driver-info")?,
                driver_info_remove: a.unset_driver_info,
                instance_info: parse_kv(&a.instance_info, "--instance-info")?,
                instance_info_remove: a.unset_instance_info,
                properties: parse_kv(&a.properties, "--property")?,
                properties_remove: a.unset_properties,
                replace_macs: !a.macs.is_empty(),
                macs: a.macs,
                maintenance: a.maintenance,
                replace_share_selector: !a.share_selector.is_empty(),
                share_selector: parse_kv(&a.share_selector, "--share-selector")?,
            };
            let n = c
                .nodes
                .update_node(req)
                .await
                .map_err(|s| status_err(&format!("update node {}", a.node), s))?
                .into_inner();
            print_node(&n, a.out.format())?;
        }
        NodeCommand::Delete { nodes } => {
            let mut failed = false;
            for node in nodes {
                match c
                    .nodes
                    .delete_node(DeleteNodeRequest { node: node.clone() })
                    .await
                {
                    Ok(_) => println!("deleted node {node}"),
                    Err(s) => {
                        failed = true;
                        eprintln!("{:#}", status_err(&format!("delete node {node}"), s));
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        NodeCommand::Validate { node, out } => {
            let r = c
                .nodes
                .validate_node(ValidateNodeRequest { node: node.clone() })
                .await
                .map_err(|s| status_err(&format!("validate node {node}"), s))?
                .into_inner();
            let ok = r.interfaces.iter().all(|i| i.result);
            let v: Vec<_> = r
                .interfaces
                .iter()
                .map(|i| serde_json::json!({"interface": i.interface, "result": i.result, "reason": i.reason}))
                .collect();
            output::print(out.format(), &Value::Array(v), || {
                let rows: Vec<_> = r
                    .interfaces
                    .iter()
                    .map(|i| vec![i.interface.clone(), i.result.to_string(), i.reason.clone()])
                    .collect();
                table(&["INTERFACE", "RESULT", "REASON"], &rows)
            })?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        NodeCommand::Manage(a) => return verb(&mut c, "manage", a).await,
        NodeCommand::Provide(a) => return verb(&mut c, "provide", a).await,
        NodeCommand::Deploy(a) => return verb(&mut c, "deploy", a).await,
        NodeCommand::Undeploy(a) => return verb(&mut c, "undeploy", a).await,
        NodeCommand::Rebuild(a) => return verb(&mut c, "rebuild", a).await,
        NodeCommand::Abort(a) => return verb(&mut c, "abort", a).await,
        NodeCommand::Inspect { mut nodes, no_wait } => {
            nodes.wait = !no_wait;
            return verb(&mut c, "inspect", nodes).await;
        }
        NodeCommand::Power(p) => return power(&mut c, p).await,
        NodeCommand::Explain { node, out } => {
            let e = c
                .nodes
                .explain_placement(ExplainPlacementRequest { node: node.clone() })
                .await
                .map_err(|s| status_err(&format!("explain placement of node {node}"), s))?
                .into_inner();
            let cands: Vec<_> = e
                .candidates
                .iter()
                .map(|c| serde_json::json!({"share": c.share, "eligible": c.eligible, "reason": c.reason, "score": c.score, "load": c.load, "capacity": c.capacity}))
                .collect();
            let v = serde_json::json!({
                "node_uuid": e.node_uuid, "share": e.share, "reason": e.reason, "candidates": cands
            });
            output::print(out.format(), &v, || {
                let chosen = if e.share.is_empty() {
                    "(none)"
                } else {
                    &e.share
                };
                let rows: Vec<_> = e
                    .candidates
                    .iter()
                    .map(|c| {
                        vec![
                            c.share.clone(),
                            if c.eligible { "yes" } else { "no" }.to_owned(),
                            format!("{:.4}", c.score),
                            format!("{}/{}", c.load, c.capacity),
                            c.reason.clone(),
                        ]
                    })
                    .collect();
                format!(
                    "node {}: share {chosen}: {}\n{}",
                    e.node_uuid,
                    e.reason,
                    table(&["SHARE", "ELIGIBLE", "SCORE", "LOAD/CAP", "REASON"], &rows)
                )
            })?;
        }
        NodeCommand::Import { file, out } => return import(&mut c, &file, out.format()).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(c: &mut Clients, node: &str) -> anyhow::Result<Node> {
    Ok(c.nodes
        .get_node(GetNodeRequest {
            node: node.to_owned(),
        })
        .await
        .map_err(|s| status_err(&format!("get node {node}"), s))?
        .into_inner())
}

async fn list(c: &mut Clients, a: ListArgs) -> anyhow::Result<()> {
    let mut nodes = Vec::new();
    let mut marker = String::new();
    let want = a.limit.map(|l| l as usize);
    loop {
        let page = want.map_or(1000, |w| (w - nodes.len()).min(1000) as u32);
        let r = c
            .nodes
            .list_nodes(ListNodesRequest {
                provision_state: a.state.clone().unwrap_or_default(),
                share: a.share.clone().unwrap_or_default(),
                name_prefix: a.name_prefix.clone().unwrap_or_default(),
                with_last_error: a.with_last_error,
                limit: page,
                marker: marker.clone(),
            })
            .await
            .map_err(|s| status_err("list nodes", s))?
            .into_inner();
        nodes.extend(r.nodes);
        if r.next_marker.is_empty() || want.is_some_and(|w| nodes.len() >= w) {
            break;
        }
        marker = r.next_marker;
    }
    let v = Value::Array(nodes.iter().map(node_json).collect());
    output::print(a.out.format(), &v, || node_table(&nodes))
}

/// The `node list` table.
pub fn node_table(nodes: &[Node]) -> String {
    let rows: Vec<_> = nodes
        .iter()
        .map(|n| {
            vec![
                n.uuid.clone(),
                n.name.clone(),
                n.provision_state.clone(),
                n.power_state.clone(),
                n.share.clone(),
                n.maintenance.to_string(),
                n.last_error.clone(),
            ]
        })
        .collect();
    table(
        &[
            "UUID",
            "NAME",
            "PROVISION STATE",
            "POWER",
            "SHARE",
            "MAINTENANCE",
            "LAST ERROR",
        ],
        &rows,
    )
}

pub(super) fn print_node(n: &Node, format: Format) -> anyhow::Result<()> {
    output::print(format, &node_json(n), || node_fields(n))
}

/// `node show` as FIELD/VALUE rows.
fn node_fields(n: &Node) -> String {
    let rows = vec![
        vec!["uuid".into(), n.uuid.clone()],
        vec!["name".into(), n.name.clone()],
        vec!["driver".into(), n.driver.clone()],
        vec!["provision_state".into(), n.provision_state.clone()],
        vec![
            "target_provision_state".into(),
            n.target_provision_state.clone(),
        ],
        vec!["power_state".into(), n.power_state.clone()],
        vec!["target_power_state".into(), n.target_power_state.clone()],
        vec![
            "power_updated_at_ms".into(),
            n.power_updated_at_ms.to_string(),
        ],
        vec!["progress".into(), n.progress.clone()],
        vec!["queue_position".into(), n.queue_position.to_string()],
        vec!["share".into(), n.share.clone()],
        vec!["maintenance".into(), n.maintenance.to_string()],
        vec!["last_error".into(), n.last_error.clone()],
        vec!["driver_info".into(), kv_line(&n.driver_info)],
        vec!["instance_info".into(), kv_line(&n.instance_info)],
        vec!["properties".into(), kv_line(&n.properties)],
        vec!["macs".into(), n.macs.join(", ")],
        vec!["share_selector".into(), kv_line(&n.share_selector)],
    ];
    table(&["FIELD", "VALUE"], &rows)
}

pub fn node_json(n: &Node) -> Value {
    serde_json::json!({
        "uuid": n.uuid, "name": n.name, "driver": n.driver, "driver_info": n.driver_info,
        "instance_info": n.instance_info, "properties": n.properties, "macs": n.macs,
        "share_selector": n.share_selector, "provision_state": n.provision_state,
        "target_provision_state": n.target_provision_state, "last_error": n.last_error,
        "power_state": n.power_state, "share": n.share, "progress": n.progress,
        "queue_position": n.queue_position, "created_at_ms": n.created_at_ms,
        "updated_at_ms": n.updated_at_ms, "provision_updated_at_ms": n.provision_updated_at_ms,
        "maintenance": n.maintenance, "target_power_state": n.target_power_state,
        "power_updated_at_ms": n.power_updated_at_ms,
    })
}

// ------------------------------------------------------------------ import
