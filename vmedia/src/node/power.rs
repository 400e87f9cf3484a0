//! `vmedia node power <verb>`: power actions on one node or many (`SetPowerState`, chunked
//! `BulkSetPowerState` for a list, one call for a selector), and `--wait` until every
//! accepted node's action has ended (its `target_power_state` is empty again).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use indicatif::ProgressBar;
use vmedia_proto::v1::{
    BulkSetPowerStateRequest, NodeSelector, SetPowerStateRequest, WatchRequest,
};

use super::verb::bar_style;
use super::{BULK_CHUNK, VerbArgs, print_node};
use crate::client::{Clients, status_err};
use crate::output;

/// The power verbs, with Ironic's target name for each.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PowerVerb {
    /// "power on"
    On,
    /// "power off"
    Off,
    /// "rebooting": reset a running node, power on a stopped one
    Reboot,
    /// "soft power off": ACPI shutdown
    SoftOff,
    /// "soft rebooting"
    SoftReboot,
    /// "inject nmi"
    Nmi,
}

impl PowerVerb {
    pub fn ironic_target(self) -> &'static str {
        match self {
            Self::On => "power on",
            Self::Off => "power off",
            Self::Reboot => "rebooting",
            Self::SoftOff => "soft power off",
            Self::SoftReboot => "soft rebooting",
            Self::Nmi => "inject nmi",
        }
    }
}

#[derive(clap::Args)]
pub struct PowerArgs {
    /// on | off | reboot | soft-off | soft-reboot | nmi
    pub verb: PowerVerb,
    #[command(flatten)]
    pub nodes: VerbArgs,
}

pub(super) async fn power(c: &mut Clients, p: PowerArgs) -> anyhow::Result<ExitCode> {
    let target = p.verb.ironic_target();
    let a = p.nodes;
    let selector_used = a.all || a.state.is_some() || a.share.is_some() || a.name_prefix.is_some();
    if a.nodes.is_empty() && !selector_used {
        anyhow::bail!(
            "power {target}: name nodes, or select them with --all/--state/--share/--name-prefix"
        );
    }
    if !a.nodes.is_empty() && selector_used {
        anyhow::bail!("power {target}: give either node names or a selector, not both");
    }
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
    let mut accepted = 0u64;
    let mut failures = Vec::new();
    let mut uuids: HashSet<String> = HashSet::new();
    if a.nodes.len() == 1 {
        let node = &a.nodes[0];
        let n = c
            .nodes
            .set_power_state(SetPowerStateRequest {
                node: node.clone(),
                target: target.to_owned(),
            })
            .await
            .map_err(|s| status_err(&format!("power {target} node {node}"), s))?
            .into_inner();
        if events.is_none() {
            print_node(&n, a.out.format())?;
            return Ok(ExitCode::SUCCESS);
        }
        accepted = 1;
        uuids.insert(n.uuid);
    } else if selector_used {
        let bar =
            ProgressBar::new_spinner().with_message(format!("power {target}: selecting nodes"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let r = c
            .nodes
            .bulk_set_power_state(BulkSetPowerStateRequest {
                nodes: Vec::new(),
                selector: Some(NodeSelector {
                    provision_state: a.state.clone().unwrap_or_default(),
                    share: a.share.clone().unwrap_or_default(),
                    name_prefix: a.name_prefix.clone().unwrap_or_default(),
                    all: a.all,
                }),
                target: target.to_owned(),
            })
            .await
            .map_err(|s| status_err(&format!("bulk power {target}"), s))?
            .into_inner();
        bar.finish_and_clear();
        accepted += r.accepted;
        failures.extend(r.failures);
    } else {
        let bar = ProgressBar::new(a.nodes.len() as u64).with_style(bar_style());
        bar.set_message(format!("power {target}"));
        for chunk in a.nodes.chunks(BULK_CHUNK) {
            let r = c
                .nodes
                .bulk_set_power_state(BulkSetPowerStateRequest {
                    nodes: chunk.to_vec(),
                    selector: None,
                    target: target.to_owned(),
                })
                .await
                .map_err(|s| status_err(&format!("bulk power {target}"), s))?
                .into_inner();
            accepted += r.accepted;
            failures.extend(r.failures);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        uuids.extend(a.nodes.iter().cloned());
    }
    for f in &failures {
        eprintln!("power {target} refused for {}: {}", f.node, f.error);
    }
    let mut errors: HashMap<String, String> = HashMap::new();
    let mut done = 0u64;
    if let Some(ev) = events.as_mut()
        && accepted > 0
    {
        let bar = ProgressBar::new(accepted).with_style(bar_style());
        bar.set_message(format!("power {target}: waiting"));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(a.timeout);
        let mut seen: HashSet<String> = HashSet::new();
        while done < accepted {
            let msg = match tokio::time::timeout_at(deadline, ev.message()).await {
                Err(_) => {
                    bar.abandon();
                    anyhow::bail!(
                        "power {target}: {done} of {accepted} nodes finished within {} s",
                        a.timeout
                    );
                }
                Ok(r) => r.map_err(|s| status_err("watch", s))?,
            };
            let Some(e) = msg else {
                anyhow::bail!("power {target}: the coordinator ended the event stream");
            };
            if e.node_uuid.is_empty()
                || (!uuids.is_empty()
                    && !uuids.contains(&e.node_uuid)
                    && !uuids.contains(&e.node_name))
            {
                continue;
            }
            if e.target_power_state.is_empty() && seen.insert(e.node_uuid.clone()) {
                done += 1;
                bar.inc(1);
                if e.last_error.starts_with("Failed to set the power state") {
                    errors.insert(e.node_uuid.clone(), e.last_error.clone());
                }
            }
        }
        bar.finish_and_clear();
    }
    let f: Vec<_> = failures
        .iter()
        .map(|f| serde_json::json!({"node": f.node, "error": f.error}))
        .chain(
            errors
                .iter()
                .map(|(n, e)| serde_json::json!({"node": n, "error": e})),
        )
        .collect();
    let v = serde_json::json!({"target": target, "accepted": accepted, "finished": done, "failures": f});
    output::print(a.out.format(), &v, || {
        let mut s = format!(
            "power {target}: {accepted} accepted, {} refused",
            failures.len()
        );
        if a.wait {
            s.push_str(&format!(", {done} finished, {} failed", errors.len()));
        }
        s.push('\n');
        for f in &failures {
            s.push_str(&format!("  {}: {}\n", f.node, f.error));
        }
        for (n, e) in &errors {
            s.push_str(&format!("  {n}: {e}\n"));
        }
        s
    })?;
    Ok(if failures.is_empty() && errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
