//! `--external-ramdisk`: the firmware part of a CD boot runs as usual (ISO, parameter
//! image, `boot_method=vmedia` merge), then no simulated ramdisk runs; the merged
//! parameters go to the real ramdisk's launcher through the control API only. Booting from
//! disk then reads the disk file the real ramdisk wrote.

use crate::boot_support;

use std::time::Duration;

use boot_support::*;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::{
    BootEnabled, BootMode, BootOverride, BootTarget, MediaSettings, NodeHandle, Secret,
    ShareMapEntry, ShareType, Sim, SimBuilder,
};
use serde_json::Value;
use sha2::Digest;

const TOKEN: &str = "pX3vQm0pZ1sX4vC8bN2kL5jH9gF3dS6aW0eR7tY1uIo";

fn media(image: &str) -> MediaSettings {
    MediaSettings {
        server: "127.0.0.1".into(),
        share_type: ShareType::Cifs,
        share_name: "share".into(),
        image_name: image.into(),
        user: "ironic".into(),
        password: Secret::new("share-pw"),
        drives: 1,
        connected: true,
        ..Default::default()
    }
}

fn boot_from(node: &NodeHandle, target: BootTarget) {
    node.update(|s| {
        s.boot = BootOverride {
            target,
            enabled: BootEnabled::Once,
            mode: BootMode::Legacy,
        }
    });
}

/// Waits for the outcome of the node's current boot.
async fn outcome(node: &NodeHandle) -> irmc_sim::BootOutcome {
    wait_for("the boot outcome", 30, || {
        let s = node.state();
        s.last_boot
            .as_ref()
            .is_some_and(|o| o.generation == s.boot_generation)
    })
    .await;
    node.state().last_boot.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_ramdisk_gets_the_booted_parameters_and_its_disk_boots() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    build_floppy(
        dir.path(),
        &share.join("image-node.img"),
        "ir-vfd-dev",
        &format!("ipa-api-url=http://127.0.0.1:1\nipa-agent-token={TOKEN}\n"),
    );
    let disks = dir.path().join("disks");
    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(50),
        disk_dir: Some(disks.clone()),
        external_ramdisk: true,
        ..Default::default()
    })
    .unwrap();
    let sim = Sim::start(
        SimBuilder::new()
            .base_address(random_base())
            .share(ShareMapEntry {
                user: Some("ironic".into()),
                password: Some(Secret::new("share-pw")),
                ..ShareMapEntry::new("127.0.0.1", "share", &share)
            })
            .control("127.0.0.1:0".parse().unwrap())
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let ctl = format!("http://{}", sim.control_addr().unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let params_status = || async {
        http.get(format!("{ctl}/nodes/0/ramdisk-params"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let node = sim.node(0).clone();
    node.update(|s| {
        s.cd = media("deploy.iso");
        s.fd = media("image-node.img");
    });
    assert_eq!(params_status().await, 404, "no ramdisk runs before boot");

    boot_from(&node, BootTarget::Cd);
    assert!(node.power_on());
    let o = outcome(&node).await;
    assert!(o.ok && o.stage == "ramdisk", "{o:?}");
    wait_for("the external ramdisk's parameters", 30, || {
        node.state().external_ramdisk_params.is_some()
    })
    .await;
    let v: Value = http
        .get(format!("{ctl}/nodes/0/ramdisk-params"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The ISO's command line merged with parameters.txt, as IPA merges them.
    assert_eq!(v["params"]["ipa-agent-token"], TOKEN);
    assert_eq!(v["params"]["ipa-api-url"], "http://127.0.0.1:1");
    assert_eq!(v["params"]["boot_method"], "vmedia");
    assert_eq!(
        v["params"]["bios_marker"], "1",
        "legacy boot reads isolinux.cfg"
    );
    let st = node.state();
    assert!(st.ramdisk_running);
    assert_eq!(st.labels["ramdisk_stage"], "external");
    // The token is in no node view (nor, being unserialised, in the state file).
    let view = http
        .get(format!("{ctl}/nodes/0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!view.contains(TOKEN), "the node view shows the agent token");
    assert!(
        !serde_json::to_string(&node.state())
            .unwrap()
            .contains(TOKEN)
    );

    // Powered off, the ramdisk and its parameters are gone.
    assert!(node.power_off());
    assert_eq!(params_status().await, 404);

    // A disk the real ramdisk left without a partition table does not boot...
    std::fs::create_dir_all(&disks).unwrap();
    let disk = disks.join("node-0.img");
    let mut bytes = vec![0u8; 1 << 20];
    std::fs::write(&disk, &bytes).unwrap();
    boot_from(&node, BootTarget::Hdd);
    assert!(node.power_on());
    let o = outcome(&node).await;
    assert!(!o.ok && o.message.contains("no partition table"), "{o:?}");
    // ...one with an MBR boots, and the node reports what it holds.
    assert!(node.power_off());
    bytes[446] = 0x80;
    bytes[510] = 0x55;
    bytes[511] = 0xaa;
    std::fs::write(&disk, &bytes).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    boot_from(&node, BootTarget::Hdd);
    assert!(node.power_on());
    let o = outcome(&node).await;
    assert!(o.ok && o.message.contains(&sha), "{o:?}");
    assert!(node.state().os_running);
    sim.shutdown().await;
}
