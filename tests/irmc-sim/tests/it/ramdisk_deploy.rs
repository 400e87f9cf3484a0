//! A whole virtual-media deploy against the simulator: the node boots the deploy ISO from the
//! share map, reads parameters.txt from the floppy, looks up (404, 404, 200) and heartbeats
//! to a fake Ironic API, and the test then drives the agent command API as Ironic's
//! conductor does. Runs in real time with the ramdisk's fast timing (about a second).

use crate::boot_support;

use std::time::Duration;

use base64::Engine;
use boot_support::*;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::ramdisk::{RamdiskTiming, node_mac};
use irmc_sim::{
    BootEnabled, BootMode, BootOverride, BootTarget, MediaSettings, NodeHandle, PowerState, Secret,
    ShareMapEntry, ShareType, Sim, SimBuilder,
};
use serde_json::{Value, json};
use sha2::Digest;

const TOKEN: &str = "Yh7uQm0pZ1sX4vC8bN2kL5jH9gF3dS6aW0eR7tY1uIo";

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
            mode: BootMode::Uefi,
        }
    });
}

async fn poll_command(client: &reqwest::Client, cb: &str, id: &str) -> Value {
    for _ in 0..600 {
        let v: Value = client
            .get(format!("{cb}/v1/commands/{id}?agent_token={TOKEN}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["command_status"] != "RUNNING" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("command {id} still running");
}

async fn post(
    client: &reqwest::Client,
    cb: &str,
    token: &str,
    wait: bool,
    name: &str,
    params: Value,
) -> (u16, Value) {
    let r = client
        .post(format!("{cb}/v1/commands/?wait={wait}&agent_token={token}"))
        .json(&json!({"name": name, "params": params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn deploy_through_the_simulated_boot_and_ramdisk() {
    if !have_tool("xorriso") || !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let image: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let image_sha = hex::encode(sha2::Sha256::digest(&image));
    let ironic = FakeIronic::start(IronicConfig {
        image: image.clone(),
        ..Default::default()
    })
    .await;

    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    let params = format!(
        "ipa-api-url={}\nipa-agent-token={TOKEN}\nBOOTIF=01-52-54-00-aa-bb-cc\nipa-global-request-id=req-1\n",
        ironic.url()
    );
    build_floppy(
        dir.path(),
        &share.join("image-node.img"),
        "ir-vfd-dev",
        &params,
    );

    let mut timing = RamdiskTiming::fast();
    // 200 kB at 1 MB/s: the write stays RUNNING long enough to see "Agent is busy".
    timing.bandwidth = Some(1_000_000);
    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(100),
        disk_dir: Some(dir.path().join("disks")),
        timing,
        ..Default::default()
    })
    .unwrap();
    let base = random_base();
    let sim = Sim::start(
        SimBuilder::new()
            .base_address(base)
            .share(ShareMapEntry {
                user: Some("ironic".into()),
                password: Some(Secret::new("share-pw")),
                ..ShareMapEntry::new("127.0.0.1", "share", &share)
            })
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let node = sim.node(0).clone();
    node.update(|s| {
        s.cd = media("deploy.iso");
        s.fd = media("image-node.img");
    });
    boot_from(&node, BootTarget::Cd);
    assert!(node.power_on());

    // Lookup is retried while Ironic answers 404, then the first heartbeat arrives.
    tokio::time::timeout(Duration::from_secs(30), ironic.heartbeat.notified())
        .await
        .unwrap();
    let cb = format!("http://{base}:9999");
    {
        let log = ironic.log.lock().unwrap();
        assert_eq!(log.root_gets, 1, "version discovery once");
        assert_eq!(log.lookups.len(), 3);
        for (q, v) in &log.lookups {
            assert!(q.contains(&node_mac(base)), "{q}");
            assert!(
                q.contains("52:54:00:aa:bb:cc"),
                "BOOTIF MAC is looked up too: {q}"
            );
            assert_eq!(v.as_deref(), Some("1.62"));
        }
        let (hb, v) = &log.heartbeats[0];
        assert_eq!(v.as_deref(), Some("1.68"));
        assert_eq!(hb["callback_url"], cb);
        // Lookup said "******": the floppy token is kept.
        assert_eq!(hb["agent_token"], TOKEN);
        assert!(hb["agent_version"].is_string());
    }
    let st = node.state();
    assert!(st.ramdisk_running);
    let outcome = st.last_boot.unwrap();
    assert!(
        outcome.ok && outcome.device == "cd" && outcome.stage == "ramdisk",
        "{outcome:?}"
    );
    assert!(outcome.message.contains("merged"), "{}", outcome.message);
    assert_eq!(st.labels["ipa_callback_url"], cb);
    assert_eq!(
        st.labels["ipa_node_uuid"],
        "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Token required on every /v1/commands* endpoint.
    for url in [
        format!("{cb}/v1/commands/"),
        format!("{cb}/v1/commands/?agent_token=wrong"),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"], "Token invalid.");
    }
    let (s, _) = post(
        &client,
        &cb,
        "wrong",
        true,
        "deploy.get_deploy_steps",
        json!({}),
    )
    .await;
    assert_eq!(s, 401);
    let status: Value = client
        .get(format!("{cb}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["version"].is_string());

    // get_deploy_steps (sync).
    let (s, v) = post(
        &client,
        &cb,
        TOKEN,
        true,
        "deploy.get_deploy_steps",
        json!({"node": {}, "ports": []}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "SUCCEEDED");
    assert_eq!(v["command_name"], "get_deploy_steps");
    let steps = v["command_result"]["deploy_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "write_image" && s["interface"] == "deploy")
    );

    // write_image with a wrong checksum: RUNNING, busy while running, then FAILED.
    let bad_step = json!({"interface": "deploy", "step": "write_image", "priority": 80, "args": {
        "image_info": {"id": "img-1", "urls": [format!("{}/image.raw", ironic.url())],
                       "checksum": "0".repeat(64), "disk_format": "raw", "stream_raw_images": true},
        "configdrive": null}});
    let (s, v) = post(
        &client,
        &cb,
        TOKEN,
        false,
        "deploy.execute_deploy_step",
        json!({"step": bad_step}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "RUNNING");
    let id = v["id"].as_str().unwrap().to_string();
    let (s, busy) = post(&client, &cb, TOKEN, false, "standby.sync", json!({})).await;
    assert_eq!(s, 409);
    assert_eq!(busy["message"], "Agent is busy");
    let hb_before = ironic.heartbeats();
    let v = poll_command(&client, &cb, &id).await;
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "ImageChecksumError");
    let details = v["command_error"]["details"].as_str().unwrap();
    assert!(
        details.contains(&image_sha) && details.contains("verification checksum"),
        "{details}"
    );
    let disk = node.state().disk;
    assert_eq!(
        (disk.sha256, disk.bytes),
        (None, image.len() as u64),
        "garbled disk"
    );
    // The finished command forces a heartbeat (at once in fast mode).
    wait_for("forced heartbeat", 30, || ironic.heartbeats() > hb_before).await;

    // write_image with the right checksum (os_hash pair).
    let step = json!({"interface": "deploy", "step": "write_image", "priority": 80, "args": {
        "image_info": {"id": "img-1", "urls": [format!("{}/image.raw", ironic.url())],
                       "os_hash_algo": "sha256", "os_hash_value": image_sha, "disk_format": "raw"},
        "configdrive": null}});
    let (_, v) = post(
        &client,
        &cb,
        TOKEN,
        false,
        "deploy.execute_deploy_step",
        json!({"step": step, "node": {}, "ports": []}),
    )
    .await;
    let v = poll_command(&client, &cb, v["id"].as_str().unwrap()).await;
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    assert_eq!(v["command_result"]["deploy_step"], step);
    let result = v["command_result"]["deploy_result"]["result"]
        .as_str()
        .unwrap();
    assert!(
        result.contains("image (img-1) written to device /dev/sda"),
        "{result}"
    );
    assert_eq!(ironic.log.lock().unwrap().image_gets, 2);

    let list: Value = client
        .get(format!("{cb}/v1/commands?agent_token={TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "get_deploy_steps",
            "execute_deploy_step",
            "execute_deploy_step"
        ]
    );

    let (_, v) = post(
        &client,
        &cb,
        TOKEN,
        true,
        "standby.get_partition_uuids",
        json!({}),
    )
    .await;
    assert_eq!(
        v["command_result"]["root uuid"],
        format!("0x{}", &image_sha[..8])
    );
    let (_, v) = post(
        &client,
        &cb,
        TOKEN,
        false,
        "image.install_bootloader",
        json!({"root_uuid": null, "efi_system_part_uuid": null, "target_boot_mode": "uefi"}),
    )
    .await;
    assert_eq!(
        poll_command(&client, &cb, v["id"].as_str().unwrap()).await["command_status"],
        "SUCCEEDED"
    );
    let (s, v) = post(
        &client,
        &cb,
        TOKEN,
        true,
        "deploy.no_such_command",
        json!({}),
    )
    .await;
    assert_eq!(
        (s, v["details"].as_str()),
        (400, Some("Unknown command: deploy.no_such_command"))
    );
    let (_, v) = post(
        &client,
        &cb,
        TOKEN,
        true,
        "log.collect_system_logs",
        json!({}),
    )
    .await;
    let logs = base64::engine::general_purpose::STANDARD
        .decode(v["command_result"]["system_logs"].as_str().unwrap())
        .unwrap();
    assert_eq!(&logs[..2], &[0x1f, 0x8b]);
    if have_tool("tar") {
        let tgz = dir.path().join("logs.tar.gz");
        std::fs::write(&tgz, &logs).unwrap();
        let out = std::process::Command::new("tar")
            .arg("xzOf")
            .arg(&tgz)
            .arg("journal")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let journal = String::from_utf8_lossy(&out.stdout);
        assert!(journal.contains("write_image"), "{journal}");
        assert!(!journal.contains(TOKEN));
    }

    let disk = node.state().disk;
    assert_eq!(disk.sha256.as_deref(), Some(image_sha.as_str()));
    let disk_file = dir.path().join("disks/node-0.img");
    assert_eq!(std::fs::read(&disk_file).unwrap(), image);

    // standby.power_off: the node turns itself off and the agent API goes away.
    let (_, v) = post(&client, &cb, TOKEN, false, "standby.power_off", json!({})).await;
    assert_eq!(v["command_name"], "power_off");
    wait_for("power off", 30, || node.state().power == PowerState::Off).await;
    assert!(!node.state().ramdisk_running);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect((base, 9999)).await.is_err(),
        "agent API closed"
    );

    // Disk boot: the written image boots.
    boot_from(&node, BootTarget::Hdd);
    node.power_on();
    wait_for("OS running", 120, || node.state().os_running).await;
    let outcome = node.state().last_boot.unwrap();
    assert!(outcome.ok && outcome.stage == "os", "{outcome:?}");

    // A garbled disk does not.
    let mut bytes = std::fs::read(&disk_file).unwrap();
    bytes[1000] ^= 0xFF;
    std::fs::write(&disk_file, bytes).unwrap();
    node.reset("power-cycle");
    wait_for("boot failure", 120, || {
        node.state().last_boot.is_some_and(|b| !b.ok)
    })
    .await;
    let outcome = node.state().last_boot.unwrap();
    assert_eq!(
        (outcome.device.as_str(), outcome.stage.as_str()),
        ("hdd", "firmware")
    );
    assert!(
        outcome.message.contains("do not match the deployed image"),
        "{}",
        outcome.message
    );
    assert!(!node.state().os_running);
    assert_eq!(
        node.state().power,
        PowerState::On,
        "power stays on at the failure screen"
    );

    sim.shutdown().await;
}

#[tokio::test]
async fn reset_restarts_and_power_off_stops_the_ramdisk() {
    if !have_tool("xorriso") || !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        ..Default::default()
    })
    .await;
    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    let params = format!("ipa-api-url={}\nipa-agent-token={TOKEN}\n", ironic.url());
    build_floppy(dir.path(), &share.join("fd.img"), "ir-vfd-dev", &params);
    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::ZERO,
        timing: RamdiskTiming::fast(),
        ..Default::default()
    })
    .unwrap();
    let base = random_base();
    let sim = Sim::start(
        SimBuilder::new()
            .base_address(base)
            .share(ShareMapEntry::new("127.0.0.1", "share", &share))
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let node = sim.node(0).clone();
    node.update(|s| {
        s.cd = media("deploy.iso");
        s.fd = media("fd.img");
        s.boot = BootOverride {
            target: BootTarget::Cd,
            enabled: BootEnabled::Continuous,
            mode: BootMode::Legacy,
        };
    });
    node.power_on();
    wait_for("first heartbeat", 20, || ironic.heartbeats() == 1).await;
    // A reset while the ramdisk runs: the old agent goes away, a new one boots on the same
    // address and port, looks up again and heartbeats again.
    node.reset("reset");
    wait_for("second heartbeat", 20, || ironic.heartbeats() == 2).await;
    assert_eq!(ironic.log.lock().unwrap().lookups.len(), 2);
    let st = node.state();
    assert_eq!(st.boot_generation, 2);
    assert!(st.ramdisk_running);
    let cb = format!("http://{base}:9999");
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{cb}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    node.power_off();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{cb}/v1/status"))
            .send()
            .await
            .is_err(),
        "agent API gone after power-off"
    );
    let n = ironic.heartbeats();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ironic.heartbeats(),
        n,
        "no heartbeats from a powered-off node"
    );
    sim.shutdown().await;
}
