//! `vmedia node ...`: enrol, inspect and provision nodes through the coordinator.
//!
//! Verbs accept several nodes or a selector (`--all`, `--state`, `--share`, `--name-prefix`);
//! one node goes through `SetProvisionState`, anything else through `BulkSetProvisionState`
//! in chunks, with a progress bar. `import` reads Ironic's `openstack baremetal node
//! list --long -f json` / `node show -f json` output.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use vmedia_proto::v1::{
    BulkSetProvisionStateRequest, CreateNodeRequest, DeleteNodeRequest, ExplainPlacementRequest,
    GetNodeRequest, ListNodesRequest, Node, NodeSelector, SetProvisionStateRequest,
    UpdateNodeRequest, ValidateNodeRequest, WatchRequest,
};

use crate::client::{Clients, connect, kv_line, parse_kv, status_err, table};

/// Nodes per BulkSetProvisionState call, so the progress bar moves and no message gets huge.
const BULK_CHUNK: usize = 500;

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// Enrol a node
    Create(CreateArgs),
    /// Show one node
    Show {
        node: String,
        #[arg(long)]
        json: bool,
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
        #[arg(long)]
        json: bool,
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
    /// Which share agent serves the node and why
    Explain {
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// Enrol nodes from Ironic's `openstack baremetal node list --long -f json` or `node show -f json`
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
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
    #[arg(long)]
    pub json: bool,
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
    #[arg(long)]
    pub json: bool,
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
    #[arg(long)]
    pub json: bool,
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
    #[arg(long)]
    pub json: bool,
}

pub async fn run(coordinator: &str, cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(coordinator).await?;
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
            print_node(&n, a.json)?;
        }
        NodeCommand::Show { node, json } => {
            let n = get(&mut c, &node).await?;
            print_node(&n, json)?;
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
            print_node(&n, a.json)?;
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
        NodeCommand::Validate { node, json } => {
            let r = c
                .nodes
                .validate_node(ValidateNodeRequest { node: node.clone() })
                .await
                .map_err(|s| status_err(&format!("validate node {node}"), s))?
                .into_inner();
            let ok = r.interfaces.iter().all(|i| i.result);
            if json {
                let v: Vec<_> = r
                    .interfaces
                    .iter()
                    .map(|i| serde_json::json!({"interface": i.interface, "result": i.result, "reason": i.reason}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let rows: Vec<_> = r
                    .interfaces
                    .iter()
                    .map(|i| vec![i.interface.clone(), i.result.to_string(), i.reason.clone()])
                    .collect();
                print!("{}", table(&["INTERFACE", "RESULT", "REASON"], &rows));
            }
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
        NodeCommand::Explain { node, json } => {
            let e = c
                .nodes
                .explain_placement(ExplainPlacementRequest { node: node.clone() })
                .await
                .map_err(|s| status_err(&format!("explain placement of node {node}"), s))?
                .into_inner();
            if json {
                let cands: Vec<_> = e
                    .candidates
                    .iter()
                    .map(|c| serde_json::json!({"share": c.share, "eligible": c.eligible, "reason": c.reason, "score": c.score, "load": c.load, "capacity": c.capacity}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "node_uuid": e.node_uuid, "share": e.share, "reason": e.reason, "candidates": cands
                    }))?
                );
            } else {
                let chosen = if e.share.is_empty() {
                    "(none)"
                } else {
                    &e.share
                };
                println!("node {}: share {chosen}: {}", e.node_uuid, e.reason);
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
                print!(
                    "{}",
                    table(&["SHARE", "ELIGIBLE", "SCORE", "LOAD/CAP", "REASON"], &rows)
                );
            }
        }
        NodeCommand::Import { file, json } => return import(&mut c, &file, json).await,
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
    if a.json {
        let v: Vec<_> = nodes.iter().map(node_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
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
        print!(
            "{}",
            table(
                &[
                    "UUID",
                    "NAME",
                    "PROVISION STATE",
                    "POWER",
                    "SHARE",
                    "MAINTENANCE",
                    "LAST ERROR"
                ],
                &rows
            )
        );
    }
    Ok(())
}

async fn verb(c: &mut Clients, target: &str, a: VerbArgs) -> anyhow::Result<ExitCode> {
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
            return wait_done(ev, target, &wanted, 1, a.timeout, a.json).await;
        }
        print_node(&n, a.json)?;
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
        let code = wait_done(ev, target, &wanted, accepted, a.timeout, a.json).await?;
        return Ok(if refused { ExitCode::FAILURE } else { code });
    }
    if a.json {
        let f: Vec<_> = failures
            .iter()
            .map(|f| serde_json::json!({"node": f.node, "error": f.error}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"target": target, "accepted": accepted, "failures": f})
            )?
        );
    } else {
        println!("{target}: {accepted} accepted, {} failed", failures.len());
        for f in &failures {
            println!("  {}: {}", f.node, f.error);
        }
    }
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
    json: bool,
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
    if json {
        let nodes: Vec<_> = done
            .iter()
            .map(|(u, (st, err))| serde_json::json!({"uuid": u, "provision_state": st, "last_error": err}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"target": target, "finished": nodes})
            )?
        );
    } else {
        println!(
            "{target}: {} finished, {} with errors",
            done.len(),
            failed.len()
        );
        for (u, (st, err)) in &failed {
            println!("  {u}: {st}: {err}");
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn print_node(n: &Node, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&node_json(n))?);
        return Ok(());
    }
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
    print!("{}", table(&["FIELD", "VALUE"], &rows));
    Ok(())
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
        "maintenance": n.maintenance,
    })
}

// ------------------------------------------------------------------ import

async fn import(c: &mut Clients, file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let requests = parse_ironic_nodes(&text).with_context(|| format!("{}", file.display()))?;
    let bar = ProgressBar::new(requests.len() as u64).with_style(bar_style());
    bar.set_message("import");
    let mut created = Vec::new();
    let mut failures = Vec::new();
    for req in requests {
        let label = if req.name.is_empty() {
            req.uuid.clone()
        } else {
            req.name.clone()
        };
        match c.nodes.create_node(req).await {
            Ok(n) => created.push(n.into_inner()),
            Err(s) => failures.push((label, s.message().to_owned())),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let masked = created
        .iter()
        .filter(|n| {
            n.driver_info
                .get("irmc_password")
                .is_some_and(|p| p == "******")
        })
        .count();
    if json {
        let f: Vec<_> = failures
            .iter()
            .map(|(n, e)| serde_json::json!({"node": n, "error": e}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "created": created.iter().map(|n| n.uuid.clone()).collect::<Vec<_>>(),
                "failures": f,
            }))?
        );
    } else {
        println!(
            "import: {} created, {} failed",
            created.len(),
            failures.len()
        );
        for (n, e) in &failures {
            println!("  {n}: {e}");
        }
        if masked > 0 {
            println!(
                "note: Ironic prints passwords as \"******\"; set the real irmc_password with \
                 `vmedia node set NODE --driver-info irmc_password=...`"
            );
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Parses Ironic CLI JSON (one object or a list) into create requests.
pub fn parse_ironic_nodes(text: &str) -> anyhow::Result<Vec<CreateNodeRequest>> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    let items = match v {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => anyhow::bail!("expected a JSON object or a list of objects"),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(item).with_context(|| format!("node #{}", i + 1)))
        .collect()
}

/// Looks a field up under Ironic's `-f json` spellings: "Driver Info", "driver_info", ...
fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    let norm = |s: &str| s.to_ascii_lowercase().replace([' ', '-'], "_");
    let want = norm(name);
    obj.iter().find(|(k, _)| norm(k) == want).map(|(_, v)| v)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn string_map(v: Option<&Value>, what: &str) -> anyhow::Result<HashMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(HashMap::new()),
        Some(Value::Object(m)) => Ok(m
            .iter()
            .filter_map(|(k, v)| scalar(v).map(|s| (k.clone(), s)))
            .collect()),
        // Older clients print dicts as Python reprs or JSON text in a string.
        Some(Value::String(s)) if s.trim().is_empty() => Ok(HashMap::new()),
        Some(Value::String(s)) => {
            let inner: Value = serde_json::from_str(s)
                .with_context(|| format!("{what}: a string that is not a JSON object"))?;
            string_map(Some(&inner), what)
        }
        Some(_) => anyhow::bail!("{what}: expected an object"),
    }
}

fn parse_one(item: &Value) -> anyhow::Result<CreateNodeRequest> {
    let obj = item.as_object().context("expected a JSON object")?;
    let s = |name: &str| field(obj, name).and_then(scalar).unwrap_or_default();
    let macs = match field(obj, "macs").or_else(|| field(obj, "ports")) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => o.get("address").and_then(scalar),
                other => scalar(other),
            })
            .collect(),
        _ => Vec::new(),
    };
    let driver = s("driver");
    Ok(CreateNodeRequest {
        uuid: s("uuid"),
        name: s("name"),
        driver: if driver.is_empty() {
            "irmc".to_owned()
        } else {
            driver
        },
        driver_info: string_map(field(obj, "driver_info"), "driver_info")?,
        instance_info: string_map(field(obj, "instance_info"), "instance_info")?,
        properties: string_map(field(obj, "properties"), "properties")?,
        macs,
        share_selector: HashMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_list_long_output() {
        let text = r#"[{"UUID": "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c11", "Name": "n1", "Driver": "irmc",
            "Driver Info": {"irmc_address": "10.0.0.5", "irmc_port": 443, "irmc_verify_ca": false,
                            "irmc_password": "******"},
            "Instance Info": {}, "Properties": {"cpus": 8, "capabilities": "boot_mode:uefi"},
            "Provision State": "active"}]"#;
        let r = parse_ironic_nodes(text).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].uuid, "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c11");
        assert_eq!(r[0].name, "n1");
        assert_eq!(r[0].driver_info["irmc_port"], "443");
        assert_eq!(r[0].driver_info["irmc_verify_ca"], "false");
        assert_eq!(r[0].properties["cpus"], "8");
    }

    #[test]
    fn imports_show_output() {
        let text = r#"{"uuid": "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c12", "name": null, "driver": "irmc",
            "driver_info": {"irmc_address": "10.0.0.6"}, "instance_info": {"image_source": "http://x/i.img"},
            "properties": {}, "extra": {}}"#;
        let r = parse_ironic_nodes(text).unwrap();
        assert_eq!(r[0].name, "");
        assert_eq!(r[0].instance_info["image_source"], "http://x/i.img");
    }

    #[test]
    fn import_rejects_non_objects() {
        assert!(parse_ironic_nodes("3").is_err());
        assert!(parse_ironic_nodes("[1]").is_err());
        assert!(parse_ironic_nodes(r#"{"driver_info": 3}"#).is_err());
    }
}
