//! Cost of the simulated boot + ramdisk at fleet scale: N nodes (default 100, override with
//! `RAMDISK_SCALE_NODES`) boot the same deploy ISO and floppy from the share map, call back,
//! write a 1 MiB image (hash-only disk) and power off. Prints wall time, time to first
//! heartbeat and resident memory, and checks every node finished.

use crate::boot_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use boot_support::*;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::ramdisk::RamdiskTiming;
use irmc_sim::{
    BootEnabled, BootMode, BootOverride, BootTarget, MediaSettings, PowerState, Secret,
    ShareMapEntry, ShareType, Sim, SimBuilder,
};
use serde_json::{Value, json};
use sha2::Digest;

const TOKEN: &str = "scale-token";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn media(image: &str) -> MediaSettings {
    MediaSettings {
        server: "127.0.0.1".into(),
        share_type: ShareType::Nfs,
        share_name: "/export".into(),
        image_name: image.into(),
        user: String::new(),
        password: Secret::default(),
        drives: 1,
        connected: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_deploy_concurrently() {
    if !have_tool("xorriso") || !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let n: usize = std::env::var("RAMDISK_SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("export");
    std::fs::create_dir_all(&share).unwrap();
    let image = vec![0x5Au8; 1 << 20];
    let sha = hex::encode(sha2::Sha256::digest(&image));
    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        image,
        ..Default::default()
    })
    .await;
    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    let params = format!("ipa-api-url={}\nipa-agent-token={TOKEN}\n", ironic.url());
    build_floppy(dir.path(), &share.join("params.img"), "ir-vfd-dev", &params);

    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(10),
        timing: RamdiskTiming::fast(),
        ..Default::default()
    })
    .unwrap();
    let sim = Sim::start(
        SimBuilder::new()
            .count(n)
            .base_address(random_base())
            .share(ShareMapEntry::new("127.0.0.1", "/export", &share))
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let rss_before = rss_kib();
    let t0 = Instant::now();
    for node in sim.nodes() {
        node.update(|s| {
            s.cd = media("deploy.iso");
            s.fd = media("params.img");
            s.boot = BootOverride {
                target: BootTarget::Cd,
                enabled: BootEnabled::Once,
                mode: BootMode::Uefi,
            };
        });
        node.power_on();
    }
    let callbacks = || -> BTreeSet<String> {
        ironic
            .log
            .lock()
            .unwrap()
            .heartbeats
            .iter()
            .filter_map(|(h, _)| h["callback_url"].as_str().map(str::to_string))
            .collect()
    };
    wait_for("every node to call back", 120, || callbacks().len() == n).await;
    let to_heartbeat = t0.elapsed();
    let rss_running = rss_kib();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut tasks = Vec::new();
    for cb in callbacks() {
        let client = client.clone();
        let url = ironic.url();
        let sha = sha.clone();
        tasks.push(tokio::spawn(async move {
            let post = |name: &str, params: Value, wait: bool| {
                client
                    .post(format!("{cb}/v1/commands/?wait={wait}&agent_token={TOKEN}"))
                    .json(&json!({"name": name, "params": params}))
                    .send()
            };
            let step = json!({"interface": "deploy", "step": "write_image", "args": {"image_info": {
                "id": "img", "urls": [format!("{url}/image.raw")], "os_hash_algo": "sha256", "os_hash_value": sha}}});
            let v: Value = post("deploy.execute_deploy_step", json!({"step": step}), true).await.unwrap().json().await.unwrap();
            assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
            post("standby.power_off", json!({}), false).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    wait_for("every node off", 60, || {
        sim.nodes()
            .iter()
            .all(|n| n.state().power == PowerState::Off)
    })
    .await;
    let total = t0.elapsed();
    for node in sim.nodes() {
        assert_eq!(node.state().disk.sha256.as_deref(), Some(sha.as_str()));
    }
    eprintln!(
        "ramdisk_scale: {n} nodes: first heartbeat from all after {:.2} s, deployed (1 MiB each) and off after {:.2} s; \
         RSS {} MiB before boot, {} MiB with {n} ramdisks running ({:.1} KiB per node)",
        to_heartbeat.as_secs_f64(),
        total.as_secs_f64(),
        rss_before / 1024,
        rss_running / 1024,
        rss_running.saturating_sub(rss_before) as f64 / n as f64
    );
    sim.shutdown().await;
}
