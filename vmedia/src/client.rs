//! gRPC plumbing shared by the coordinator-facing subcommands (`node`, `share`, `watch`):
//! which coordinator and credentials (a profile, flags and `VMEDIA_*` variables: see
//! `coordinator_client::profile`), connecting (see `coordinator_client::conn`),
//! `key=value` argument parsing and plain-text tables.

use std::collections::HashMap;

use anyhow::Context as _;

pub use coordinator_client::conn::Clients;
pub use coordinator_client::profile::Target;
use coordinator_client::profile::{Explicit, resolve};

/// Works out the coordinator and credentials from `--profile`, `--coordinator` and the
/// environment; warnings (a token file others can read) go to stderr.
pub fn target(profile: Option<String>, coordinator: Option<String>) -> anyhow::Result<Target> {
    let t = resolve(&Explicit {
        profile,
        coordinator,
    })?;
    for w in &t.warnings {
        eprintln!("vmedia: warning: {w}");
    }
    Ok(t)
}

/// Connects to the target's coordinator (a comma-separated list of replicas finds the
/// leader).
pub async fn connect(t: &Target) -> anyhow::Result<Clients> {
    let c = coordinator_client::conn::connect(&t.coordinator, &t.access).await;
    match &t.profile {
        Some((name, file)) => c.with_context(|| format!("profile {name} ({})", file.display())),
        None => c,
    }
}

/// Turns a gRPC status into an error whose text is the server's message (no debug noise).
pub fn status_err(op: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{op}: {} ({:?})", s.message(), s.code())
}

/// Parses `key=value` arguments into a map; the value may itself contain '='.
pub fn parse_kv(items: &[String], flag: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("{flag} {item:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            anyhow::bail!("{flag} {item:?}: empty key");
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

/// Renders rows under headers with columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Sorted `k=v, k=v` rendering of a map for human output.
pub fn kv_line(map: &HashMap<String, String>) -> String {
    let mut items: Vec<_> = map.iter().collect();
    items.sort();
    items
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_parsing_keeps_equals_in_values() {
        let m = parse_kv(&["a=b=c".into()], "--x").unwrap();
        assert_eq!(m["a"], "b=c");
        assert!(parse_kv(&["nokey".into()], "--x").is_err());
        assert!(parse_kv(&["=v".into()], "--x").is_err());
    }

    #[test]
    fn table_pads_columns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
