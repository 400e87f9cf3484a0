//! `vmedia node import`: Ironic's `openstack baremetal node list --long -f json` and
//! `node show -f json` output, turned into create requests.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::ProgressBar;
use serde_json::Value;
use vmedia_proto::v1::CreateNodeRequest;

use super::verb::bar_style;
use crate::client::Clients;
use crate::output::{self, Format};

pub(super) async fn import(
    c: &mut Clients,
    file: &std::path::Path,
    format: Format,
) -> anyhow::Result<ExitCode> {
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
    let f: Vec<_> = failures
        .iter()
        .map(|(n, e)| serde_json::json!({"node": n, "error": e}))
        .collect();
    let v = serde_json::json!({
        "created": created.iter().map(|n| n.uuid.clone()).collect::<Vec<_>>(),
        "failures": f,
    });
    output::print(format, &v, || {
        let mut s = format!(
            "import: {} created, {} failed\n",
            created.len(),
            failures.len()
        );
        for (n, e) in &failures {
            s.push_str(&format!("  {n}: {e}\n"));
        }
        if masked > 0 {
            s.push_str(
                "note: Ironic prints passwords as \"******\"; set the real irmc_password with \
                 `vmedia node set NODE --driver-info irmc_password=...`\n",
            );
        }
        s
    })?;
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
