//! `vmedia media configdrive`: the `config-2` ISO a share agent builds from the JSON
//! form of `instance_info.configdrive`, built offline from files so operators can
//! inspect it (mount it, extract it with xorriso, feed it to cloud-init).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use boot_media::ConfigDriveData;
use serde_json::{Map, Value};

/// Inputs of `vmedia media configdrive`.
#[derive(Debug, clap::Args)]
pub struct ConfigDriveArgs {
    /// meta_data.json: a JSON object (hostname, public_keys, ...).
    #[arg(long, value_name = "FILE")]
    meta_data: PathBuf,
    /// user_data, written as it is (cloud-config, a script, Ignition ...).
    #[arg(long, value_name = "FILE")]
    user_data: Option<PathBuf>,
    /// network_data.json: a JSON object (links, networks, services).
    #[arg(long, value_name = "FILE")]
    network_data: Option<PathBuf>,
    /// vendor_data2.json: a JSON object.
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<PathBuf>,
    /// The node's UUID, for meta_data.uuid when the file has none (as the share agent
    /// fills it in).
    #[arg(long)]
    node_uuid: Option<String>,
    /// The node's name, for meta_data.name when the file has none.
    #[arg(long)]
    node_name: Option<String>,
    /// Write the gzipped, base64-encoded text the ramdisk receives instead of the ISO.
    #[arg(long)]
    encoded: bool,
    /// Output file (written atomically).
    #[arg(long)]
    out: PathBuf,
}

fn read_object(what: &str, path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --{what} {}", path.display()))?;
    match serde_json::from_str::<Value>(&text)
        .with_context(|| format!("--{what} {}: not JSON", path.display()))?
    {
        Value::Object(m) => Ok(m),
        _ => anyhow::bail!("--{what} {}: must hold a JSON object", path.display()),
    }
}

/// Builds the drive and writes it; returns the line to print.
pub fn run(a: ConfigDriveArgs) -> anyhow::Result<String> {
    let mut data = ConfigDriveData {
        meta_data: read_object("meta-data", &a.meta_data)?,
        user_data: None,
        network_data: a
            .network_data
            .as_deref()
            .map(|p| read_object("network-data", p))
            .transpose()?,
        vendor_data: a
            .vendor_data
            .as_deref()
            .map(|p| read_object("vendor-data", p))
            .transpose()?,
    };
    if let Some(p) = &a.user_data {
        data.user_data =
            Some(std::fs::read(p).with_context(|| format!("reading --user-data {}", p.display()))?);
    }
    if let Some(uuid) = &a.node_uuid {
        data = data.with_node_defaults(uuid, a.node_name.as_deref());
    } else if let Some(name) = &a.node_name {
        data.meta_data
            .entry("name")
            .or_insert_with(|| Value::String(name.clone()));
    }
    let iso = data.build_iso()?;
    let files: Vec<String> = data
        .files()
        .iter()
        .map(|(d, n, _)| format!("{d}/{n}"))
        .collect();
    let (bytes, what) = if a.encoded {
        (
            boot_media::configdrive::encode(&iso).into_bytes(),
            "gzip+base64 config drive",
        )
    } else {
        (iso, "config drive ISO (label config-2)")
    };
    let stats = boot_media::write_atomic(&a.out, &bytes, true)?;
    Ok(format!(
        "{}: {what}, {} bytes: {}",
        a.out.display(),
        stats.bytes_written,
        files.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn have(tool: &str) -> bool {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} >/dev/null"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok || std::env::var_os("CI").is_none(),
            "{tool} missing in CI"
        );
        if !ok {
            eprintln!("skipping: {tool} not installed");
        }
        ok
    }

    fn args(d: &Path, out: &str, extra: &[&str]) -> ConfigDriveArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ConfigDriveArgs,
        }
        let md = d.join("md.json");
        let o = d.join(out);
        let mut v = vec![
            "configdrive".to_string(),
            "--meta-data".into(),
            md.display().to_string(),
            "--out".into(),
            o.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        Cli::try_parse_from(v).unwrap().a
    }

    #[test]
    fn builds_the_drive_the_share_agent_builds() {
        if !have("xorriso") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("md.json"), r#"{"hostname": "n1"}"#).unwrap();
        std::fs::write(d.path().join("ud"), b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(d.path().join("nd.json"), r#"{"links": [], "networks": [], "services": [{"type": "dns", "address": "192.0.2.53"}]}"#).unwrap();
        let ud = d.path().join("ud").display().to_string();
        let nd = d.path().join("nd.json").display().to_string();
        let line = run(args(
            d.path(),
            "cd.iso",
            &[
                "--user-data",
                &ud,
                "--network-data",
                &nd,
                "--node-uuid",
                "u-1",
            ],
        ))
        .unwrap();
        assert!(line.contains("openstack/latest/user_data"), "{line}");
        let tree = d.path().join("tree");
        let st = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(d.path().join("cd.iso"))
            .args(["-extract", "/"])
            .arg(&tree)
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        // The share agent's own build of the same JSON form, file for file.
        let same = ConfigDriveData::from_json(&serde_json::json!({
            "meta_data": {"hostname": "n1"},
            "user_data": "#!/bin/sh\necho hi\n",
            "network_data": {"links": [], "networks": [], "services": [{"type": "dns", "address": "192.0.2.53"}]},
        }))
        .unwrap()
        .with_node_defaults("u-1", None);
        for (dir, name, bytes) in same.files() {
            let got = std::fs::read(tree.join(&dir).join(name)).unwrap();
            assert_eq!(got, bytes, "{dir}/{name}");
        }

        // --encoded writes what the ramdisk receives; it decodes to a config-2 ISO.
        run(args(d.path(), "cd.b64", &["--encoded"])).unwrap();
        let text = std::fs::read_to_string(d.path().join("cd.b64")).unwrap();
        let iso = boot_media::configdrive::decode(&text, "u-1").unwrap();
        assert_eq!(&iso[0x8028..0x8030], b"config-2");
    }

    #[test]
    fn bad_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("md.json"), "[1]").unwrap();
        let e = run(args(d.path(), "x.iso", &[])).unwrap_err().to_string();
        assert!(
            e.contains("--meta-data") && e.contains("JSON object"),
            "{e}"
        );
        std::fs::remove_file(d.path().join("md.json")).unwrap();
        let e = format!("{:#}", run(args(d.path(), "x.iso", &[])).unwrap_err());
        assert!(e.contains("reading --meta-data"), "{e}");
        assert!(!d.path().join("x.iso").exists());
    }
}
