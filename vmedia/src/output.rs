//! One output switch for every command that shows nodes, shares or events:
//! `--output table|json|yaml` (`-o`), with `--json` kept as an alias of `--output json` so
//! existing scripts keep working.
//!
//! A command builds one JSON value (the machine-readable shape, the same for JSON and
//! YAML) and, lazily, its table; [`print`] picks. Streams (`watch`, `--wait`) print one
//! item at a time with [`print_item`]: a line of text, one compact JSON object per line,
//! or one YAML document per event.

use serde_json::Value;

/// How a command prints what it shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people
    #[default]
    Table,
    /// JSON (pretty; one object per line for streams)
    Json,
    /// YAML (one document per event for streams)
    Yaml,
}

/// The `--output`/`--json` flags, flattened into each command that prints.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct OutputArgs {
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Same as --output json (kept for scripts)
    #[arg(long, conflicts_with = "output")]
    json: bool,
}

impl OutputArgs {
    pub fn format(self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

impl From<Format> for OutputArgs {
    fn from(output: Format) -> Self {
        Self {
            output,
            json: false,
        }
    }
}

/// A whole document: pretty JSON, YAML, or the table `table` builds.
pub fn render(
    format: Format,
    value: &Value,
    table: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Format::Yaml => serde_norway::to_string(value)?,
    })
}

/// [`render`] to stdout.
pub fn print(format: Format, value: &Value, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    print!("{}", render(format, value, table)?);
    Ok(())
}

/// One item of a stream: a line of text, a line of JSON, or a YAML document.
pub fn render_item(
    format: Format,
    value: &Value,
    line: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => format!("{}\n", line()),
        Format::Json => format!("{}\n", serde_json::to_string(value)?),
        Format::Yaml => format!("---\n{}", serde_norway::to_string(value)?),
    })
}

/// [`render_item`] to stdout, flushed so a pipe sees each event as it happens.
pub fn print_item(
    format: Format,
    value: &Value,
    line: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let text = render_item(format, value, line)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use vmedia_proto::v1 as pb;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        out: OutputArgs,
    }

    fn parse(args: &[&str]) -> Result<Format, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map(|c| c.out.format())
    }

    #[test]
    fn flags() {
        assert_eq!(parse(&[]).unwrap(), Format::Table);
        assert_eq!(parse(&["--json"]).unwrap(), Format::Json);
        assert_eq!(parse(&["--output", "yaml"]).unwrap(), Format::Yaml);
        assert_eq!(parse(&["-o", "json"]).unwrap(), Format::Json);
        assert!(parse(&["--json", "--output", "yaml"]).is_err());
        assert!(parse(&["--output", "xml"]).is_err());
    }

    fn node() -> pb::Node {
        pb::Node {
            uuid: "0b0e4a4e-7f0c-4a53-9d7c-2d2f1c1d9a01".into(),
            name: "rack1-07".into(),
            driver: "irmc".into(),
            driver_info: [
                ("irmc_address".to_owned(), "10.0.0.7".to_owned()),
                ("irmc_password".to_owned(), "******".to_owned()),
            ]
            .into(),
            provision_state: "active".into(),
            power_state: "power on".into(),
            share: "share-1".into(),
            macs: vec!["52:54:0a:00:00:07".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_node_in_each_format() {
        let n = node();
        let v = crate::node::node_json(&n);
        let table = || crate::node::node_table(std::slice::from_ref(&n));

        let json = render(Format::Json, &v, table).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["provision_state"], "active");
        assert_eq!(back["driver_info"]["irmc_password"], "******");

        let yaml = render(Format::Yaml, &v, table).unwrap();
        assert!(yaml.contains("provision_state: active\n"), "{yaml}");
        assert!(yaml.contains("name: rack1-07\n"), "{yaml}");
        assert!(yaml.contains("- 52:54:0a:00:00:07\n"), "{yaml}");
        // YAML and JSON carry the same document.
        let from_yaml: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(from_yaml, v);

        let t = render(Format::Table, &v, table).unwrap();
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("UUID"), "{t}");
        let row = lines.next().unwrap();
        assert!(
            row.contains("rack1-07") && row.contains("active") && row.contains("share-1"),
            "{t}"
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn a_share_list_in_each_format() {
        let s = pb::Share {
            id: "share-1".into(),
            health: "healthy".into(),
            capacity: 16,
            active: 3,
            nodes: 40,
            free_bytes: 3 << 30,
            share_type: "cifs".into(),
            server: "10.0.9.1".into(),
            share_name: "share".into(),
            ..Default::default()
        };
        let v = Value::Array(vec![crate::share::share_json(&s)]);
        let table = || crate::share::share_table(std::slice::from_ref(&s));
        let yaml = render(Format::Yaml, &v, table).unwrap();
        assert!(yaml.starts_with("- "), "{yaml}");
        assert!(yaml.contains("  id: share-1\n"), "{yaml}");
        let json: Value = serde_json::from_str(&render(Format::Json, &v, table).unwrap()).unwrap();
        assert_eq!(json[0]["free_bytes"], 3u64 << 30);
        let t = render(Format::Table, &v, table).unwrap();
        assert!(
            t.contains("3/16") && t.contains("3.0 GiB") && t.contains("cifs 10.0.9.1:share"),
            "{t}"
        );
    }

    #[test]
    fn stream_items() {
        let ev = pb::NodeEvent {
            node_uuid: "u1".into(),
            node_name: "n1".into(),
            provision_state: "deploying".into(),
            target_provision_state: "active".into(),
            at_ms: 1_700_000_000_123,
            ..Default::default()
        };
        let v = crate::watch::event_json(&ev);
        let line = || crate::watch::event_line(&ev);
        assert_eq!(
            render_item(Format::Table, &v, line).unwrap(),
            "n1: deploying -> active\n"
        );
        let j = render_item(Format::Json, &v, line).unwrap();
        assert_eq!(j.lines().count(), 1);
        let back: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back["at_ms"], 1_700_000_000_123i64);
        let y = render_item(Format::Yaml, &v, line).unwrap();
        assert!(
            y.starts_with("---\n") && y.contains("provision_state: deploying\n"),
            "{y}"
        );
    }
}
