//! Config drives read back by the real consumers: xorriso lists and extracts the ISO
//! (Rock Ridge names, volume id), blkid sees the `config-2` label, and cloud-init's own
//! config-drive datasource code (Debian's `cloud-init` package, under /usr/bin/python3)
//! reads the extracted tree back: hostname, public keys, user data, network data.

use std::path::Path;
use std::process::Command;

use boot_media::configdrive::{self, ConfigDriveData, ConfigDriveSource, ResolvedConfigDrive};
use serde_json::{Value, json};

use crate::common::{have_tool, run, scripts_dir, stdout};

const USER_DATA: &str = "#cloud-config\nruncmd:\n  - echo configdrive-ok > /run/marker\n";

fn network_data() -> Value {
    json!({
        "links": [{"id": "tap0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "mtu": 1500}],
        "networks": [{"id": "net0", "link": "tap0", "type": "ipv4", "ip_address": "192.0.2.10",
                      "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}],
        "services": [{"type": "dns", "address": "192.0.2.53"}]
    })
}

fn node_json() -> Value {
    json!({
        "meta_data": {
            "hostname": "node-7.example.org",
            "public_keys": {"ops": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 ops@example"},
        },
        "user_data": USER_DATA,
        "network_data": network_data(),
        "vendor_data": {"region": "r1"},
    })
}

fn have_cloud_init() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import cloudinit.sources.DataSourceConfigDrive"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("cloud-init (Debian package) is missing (CI is set, so this is a failure)");
        }
        eprintln!("skipping: cloud-init's Python modules are not importable by /usr/bin/python3");
    }
    ok
}

/// Extracts `iso` into `dir/tree` with xorriso (Rock Ridge names) and has cloud-init
/// read it.
fn cloud_init_reads(iso: &Path, dir: &Path) -> Value {
    let tree = dir.join("tree");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .arg("-extract")
        .arg("/")
        .arg(&tree));
    let out = stdout(
        Command::new("/usr/bin/python3")
            .arg(scripts_dir().join("cloudinit-read.py"))
            .arg(&tree),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("cloud-init reader printed {out:?}: {e}"))
}

fn check_read_back(got: &Value, uuid: &str) {
    assert_eq!(got["version"], 2, "{got}");
    assert_eq!(got["hostname"], "node-7.example.org");
    assert_eq!(got["uuid"], uuid);
    assert_eq!(got["name"], "node-7");
    assert_eq!(
        got["public_keys"],
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 ops@example"])
    );
    assert_eq!(got["userdata"], USER_DATA);
    assert_eq!(got["networkdata"], network_data());
    assert_eq!(got["vendordata2"], json!({"region": "r1"}));
    // cloud-init turned network_data into its own network config.
    let cfg = &got["network_config"]["config"];
    let text = cfg.to_string();
    assert!(
        text.contains("52:54:00:12:34:56") && text.contains("192.0.2.10"),
        "{cfg}"
    );
    assert!(text.contains("192.0.2.53"), "{cfg}");
}

#[test]
fn cloud_init_reads_our_config_drive() {
    if !have_tool("xorriso") || !have_tool("blkid") || !have_cloud_init() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let uuid = "0b6a1c52-8f3e-4a55-9d7e-1a2b3c4d5e6f";
    let data = ConfigDriveData::from_json(&node_json())
        .unwrap()
        .with_node_defaults(uuid, Some("node-7"));
    let iso = dir.path().join("config.iso");
    std::fs::write(&iso, data.build_iso().unwrap()).unwrap();

    // The label cloud-init (and the ramdisk) look the drive up by.
    let label = stdout(
        Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "LABEL"])
            .arg(&iso),
    );
    assert_eq!(label.trim(), "config-2");
    // The file names, as Rock Ridge gives them.
    let listing = stdout(
        Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-find", "/", "-type", "f"]),
    );
    for version in ["2012-08-10", "latest"] {
        for f in [
            "meta_data.json",
            "network_data.json",
            "vendor_data2.json",
            "user_data",
        ] {
            assert!(
                listing.contains(&format!("'/openstack/{version}/{f}'")),
                "{f} missing in {listing}"
            );
        }
    }
    assert!(!listing.contains("ec2"), "{listing}");

    check_read_back(&cloud_init_reads(&iso, dir.path()), uuid);
}

/// The path the share agent takes: the JSON text from instance_info, resolved to the
/// gzip+base64 string the ramdisk gets, decoded back as the ramdisk decodes it.
#[test]
fn cloud_init_reads_the_encoded_drive_the_ramdisk_gets() {
    if !have_tool("xorriso") || !have_cloud_init() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let uuid = "7d3e0c1a-0000-4000-8000-000000000007";
    let value = node_json().to_string();
    let Some(ResolvedConfigDrive::Inline(encoded)) =
        configdrive::resolve(&value, uuid, Some("node-7")).unwrap()
    else {
        panic!("a small config drive is inlined");
    };
    assert!(matches!(
        ConfigDriveSource::parse(&encoded).unwrap(),
        Some(ConfigDriveSource::Encoded(_))
    ));
    let iso = dir.path().join("decoded.iso");
    std::fs::write(&iso, configdrive::decode(&encoded, uuid).unwrap()).unwrap();
    // gzip itself agrees on the stream.
    let gz = dir.path().join("cd.gz");
    use base64::Engine as _;
    std::fs::write(
        &gz,
        base64::engine::general_purpose::STANDARD
            .decode(&encoded)
            .unwrap(),
    )
    .unwrap();
    if have_tool("gzip") {
        run(Command::new("gzip").arg("-t").arg(&gz));
    }
    check_read_back(&cloud_init_reads(&iso, dir.path()), uuid);
}
