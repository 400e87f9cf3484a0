//! The simulated ramdisk on its own (no BMC): agent token rules, API URL list handling,
//! the legacy `standby.prepare_image` command, and `system.lockdown`.

use crate::boot_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boot_support::*;
use irmc_sim::DiskSlot;
use irmc_sim::ramdisk::{
    self, DiskTarget, RamdiskConfig, RamdiskError, RamdiskHost, RamdiskTiming,
};
use serde_json::{Value, json};
use sha2::Digest;

#[derive(Default)]
struct Host {
    disk: Mutex<Option<DiskSlot>>,
    labels: Mutex<BTreeMap<String, String>>,
    power_offs: Mutex<u32>,
}

impl RamdiskHost for Host {
    fn power_off(&self) {
        *self.power_offs.lock().unwrap() += 1;
    }
    fn reboot(&self) {}
    fn disk_written(&self, slot: DiskSlot) {
        *self.disk.lock().unwrap() = Some(slot);
    }
    fn publish(&self, key: &str, value: &str) {
        self.labels.lock().unwrap().insert(key.into(), value.into());
    }
}

fn config(ip: Ipv4Addr, params: &[(&str, &str)]) -> RamdiskConfig {
    RamdiskConfig {
        node: format!("node 0 ({ip})"),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        listen_ip: IpAddr::V4(ip),
        default_port: 0,
        macs: vec![ramdisk::node_mac(ip)],
        disk: DiskTarget::HashOnly,
        timing: RamdiskTiming::fast(),
    }
}

fn client() -> reqwest::Client {
    ramdisk::http_client(Duration::from_secs(10), false).unwrap()
}

#[tokio::test]
async fn lookup_token_replaces_the_parameter_token() {
    let lookup_token = "L".repeat(43);
    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        lookup_token: lookup_token.clone(),
        ..Default::default()
    })
    .await;
    let ip = random_base();
    // The first URL refuses connections: IPA moves on to the next one.
    let urls = format!("http://127.0.0.1:1,{}", ironic.url());
    let host = Arc::new(Host::default());
    let run = tokio::spawn(ramdisk::run(
        config(
            ip,
            &[("ipa-api-url", &urls), ("ipa-agent-token", "floppy-token")],
        ),
        host.clone(),
        client(),
    ));
    tokio::time::timeout(Duration::from_secs(20), ironic.heartbeat.notified())
        .await
        .unwrap();
    let hb = ironic.log.lock().unwrap().heartbeats[0].0.clone();
    assert_eq!(hb["agent_token"], lookup_token.as_str());
    let cb = hb["callback_url"].as_str().unwrap().to_string();
    assert!(cb.starts_with(&format!("http://{ip}:")), "{cb}");
    assert_eq!(host.labels.lock().unwrap()["ipa_callback_url"], cb);

    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .get(format!("{cb}/v1/commands/?agent_token=floppy-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(format!("{cb}/v1/commands/?agent_token={lookup_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"commands": []}));

    // Legacy prepare_image: invalid image_info is refused before the command starts.
    let url = format!("{cb}/v1/commands/?wait=true&agent_token={lookup_token}");
    let r = c
        .post(&url)
        .json(&json!({"name": "standby.prepare_image", "params": {"image_info": {"id": "x"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "InvalidCommandParamsError");

    // A 404 from the image server fails the command with ImageDownloadError.
    let info = json!({"id": "img", "urls": [format!("{}/missing", ironic.url())], "checksum": "a".repeat(128)});
    let v: Value = c
        .post(&url)
        .json(&json!({"name": "standby.prepare_image", "params": {"image_info": info}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "ImageDownloadError");

    // An empty image is a valid image too; md5 accepted because lookup allowed it.
    let md5 = hex::encode(md5::Md5::digest(b""));
    // A partition image needs its layout, as IPA reads it (`image_info['root_mb']` ...):
    // without `preserve_ephemeral` the command fails with the KeyError text.
    let mut info = json!({"id": "img", "urls": [format!("{}/image.raw", ironic.url())], "checksum": md5, "image_type": "partition", "deploy_boot_mode": "uefi"});
    let v: Value = c
        .post(&url)
        .json(&json!({"name": "standby.prepare_image", "params": {"image_info": info}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["command_status"], "FAILED", "{v}");
    assert_eq!(v["command_error"]["details"], "'preserve_ephemeral'", "{v}");
    for (k, x) in [
        ("preserve_ephemeral", json!(false)),
        ("root_mb", json!(1024)),
        ("swap_mb", json!(0)),
        ("ephemeral_mb", json!(0)),
        ("ephemeral_format", Value::Null),
    ] {
        info[k] = x;
    }
    let v: Value = c
        .post(&url)
        .json(&json!({"name": "standby.prepare_image", "params": {"image_info": info}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["command_status"], "SUCCEEDED", "{v}");
    let result = v["command_result"]["result"].as_str().unwrap();
    assert!(
        result.starts_with("prepare_image: image (img) written to device /dev/sda root_uuid="),
        "{result}"
    );
    assert!(result.contains(" efi_system_partition_uuid="), "{result}");
    let slot = host.disk.lock().unwrap().clone().unwrap();
    assert_eq!(slot.sha256, Some(hex::encode(sha2::Sha256::digest(b""))));
    let v: Value = c
        .post(&url)
        .json(&json!({"name": "standby.get_partition_uuids", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(result.contains(v["command_result"]["root uuid"].as_str().unwrap()));
    assert!(v["command_result"]["efi system partition uuid"].is_string());

    // system.lockdown: the run ends and the API stops answering.
    let v: Value = c
        .post(&url)
        .json(&json!({"name": "system.lockdown", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["command_status"], "SUCCEEDED");
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(c.get(format!("{cb}/v1/status")).send().await.is_err());
    assert_eq!(host.labels.lock().unwrap()["ramdisk_stage"], "locked-down");
}

#[tokio::test]
async fn missing_token_url_and_mdns_end_the_ramdisk() {
    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        ..Default::default()
    })
    .await;
    let ip = random_base();
    let host = Arc::new(Host::default());
    // Lookup gives "******" and there is no ipa-agent-token: IPA locks down.
    let err = ramdisk::run(
        config(ip, &[("ipa-api-url", &ironic.url())]),
        host.clone(),
        client(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RamdiskError::NoToken { .. }), "{err}");
    assert_eq!(ironic.heartbeats(), 0);

    let err = ramdisk::run(
        config(ip, &[("ipa-agent-token", "t")]),
        host.clone(),
        client(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RamdiskError::NoApiUrl { .. }), "{err}");
    let err = ramdisk::run(
        config(ip, &[("ipa-api-url", "mdns")]),
        host.clone(),
        client(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("mDNS"), "{err}");

    // A lookup that never succeeds gives up after the lookup timeout.
    let mut cfg = config(
        ip,
        &[
            ("ipa-api-url", "http://127.0.0.1:1"),
            ("ipa-agent-token", "t"),
        ],
    );
    cfg.timing.lookup_timeout = Duration::from_millis(300);
    let err = ramdisk::run(cfg, host.clone(), client()).await.unwrap_err();
    assert!(matches!(err, RamdiskError::LookupTimeout { .. }), "{err}");
    assert!(err.to_string().contains(&format!("node 0 ({ip})")), "{err}");
}

#[tokio::test]
async fn heartbeat_cadence_follows_ipa() {
    // heartbeat_timeout 1 s: IPA heartbeats every 0.3-0.6 s; a forced heartbeat waits for the
    // minimum gap after the previous one.
    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        heartbeat_timeout: 1,
        ..Default::default()
    })
    .await;
    let ip = random_base();
    let host = Arc::new(Host::default());
    let mut cfg = config(
        ip,
        &[("ipa-api-url", &ironic.url()), ("ipa-agent-token", "t")],
    );
    cfg.timing.forced_heartbeat_gap = Duration::from_millis(250);
    let run = tokio::spawn(ramdisk::run(cfg, host.clone(), client()));
    wait_for("four heartbeats", 10, || ironic.heartbeats() >= 4).await;
    let times = ironic.log.lock().unwrap().heartbeat_times.clone();
    for w in times.windows(2).take(3) {
        let gap = (w[1] - w[0]).as_secs_f64();
        assert!(
            (0.29..1.2).contains(&gap),
            "heartbeat gap {gap} s outside 0.3-0.6 s (+ scheduling slack)"
        );
    }

    // A finished command forces a heartbeat, no sooner than the gap after the previous one.
    let cb = ironic.log.lock().unwrap().heartbeats[0].0["callback_url"]
        .as_str()
        .unwrap()
        .to_string();
    let before = ironic.heartbeats();
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let v: Value = c
        .post(format!("{cb}/v1/commands/?wait=true&agent_token=t"))
        .json(&json!({"name": "image.install_bootloader", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Nothing was written: the bootloader cannot be installed.
    assert_eq!(v["command_status"], "FAILED");
    assert!(
        v["command_error"]["details"]
            .as_str()
            .unwrap()
            .contains("no image was written")
    );
    let done = tokio::time::Instant::now();
    wait_for("forced heartbeat", 5, || ironic.heartbeats() > before).await;
    let times = ironic.log.lock().unwrap().heartbeat_times.clone();
    let forced = times[before];
    assert!(
        forced - done < Duration::from_millis(1000),
        "forced heartbeat came {:?} after the command",
        forced - done
    );
    assert!(
        forced - times[before - 1] >= Duration::from_millis(240),
        "minimum gap respected"
    );
    run.abort();
}
