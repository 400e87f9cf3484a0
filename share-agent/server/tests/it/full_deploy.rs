//! A whole deploy through the real agent process, with irmc-sim simulating the
//! server boot and the deploy ramdisk: prepare-ramdisk (deploy ISO built from
//! a kernel + ramdisk, parameter floppy) -> the simulated firmware boots the
//! ISO, reads parameters.txt, the ramdisk looks up and heartbeats through the
//! agent -> write-image (the ramdisk downloads the image from the agent) ->
//! prepare-instance (ramdisk powers off, boot from disk) -> OS running.
//! The test plays the coordinator: it sends each job when Ironic would.

use std::time::Duration;

use crate::common::*;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::ramdisk::RamdiskTiming;
use irmc_sim::{PowerState, Sim, SimBuilder};
use vmedia_proto::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_one_node_end_to_end() {
    if !std::path::Path::new("/usr/lib/ISOLINUX/isolinux.bin").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "isolinux is required in CI"
        );
        eprintln!("skipping: isolinux not installed and CI unset");
        return;
    }
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    // The stub coordinator looks this node up by its BOOTIF MAC.
    let node = "known-node";
    std::fs::write(agent.share.join("ipa.kernel"), vec![3u8; 200_000]).unwrap();
    std::fs::write(agent.share.join("ipa.initramfs"), vec![4u8; 300_000]).unwrap();
    let image: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(agent.share.join("instance.img"), &image).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&image))
    };

    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(50),
        timing: RamdiskTiming::fast(),
        ..BootConfig::default()
    })
    .unwrap();
    let sim = Sim::start(
        SimBuilder::new()
            .count(1)
            .base_address(random_base())
            .https_port(Some(0))
            .credentials("admin", BMC_PASSWORD)
            .share(irmc_sim::ShareMapEntry::new(
                "127.0.0.1",
                "share",
                &agent.share,
            ))
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let ca = agent.dir.path().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let bmc = bmc_target(&sim, 0, &ca, 10);
    let job = |id: &str, kind: pb::job::Kind| pb::Job {
        job_id: id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc.clone()),
        kind: Some(kind),
    };

    // 1. prepare-ramdisk.
    stub.send(job(
        "e2e-1",
        pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_kernel: "ipa.kernel".into(),
            deploy_ramdisk: "ipa.initramfs".into(),
            boot_mode: "bios".into(),
            agent_token: GOOD_TOKEN.into(),
            bootif: "52:54:00:12:34:56".into(),
            ..Default::default()
        }),
    ))
    .await;
    let d = stub.final_update("e2e-1", Duration::from_secs(120)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);

    // 2. The ramdisk boots, looks up and heartbeats through the agent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let callback = loop {
        if let Some(h) = stub
            .ramdisk_heartbeats()
            .into_iter()
            .find(|h| h.node_uuid == node)
        {
            break h.callback_url;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "no ramdisk heartbeat; node state: {:?}",
                sim.node(0).state().last_boot
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(callback.starts_with("http"), "{callback}");

    // 3. write-image, as Ironic sends it on the first heartbeat.
    stub.send(job(
        "e2e-2",
        pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: callback.clone(),
            agent_token: GOOD_TOKEN.into(),
            image_source: "instance.img".into(),
            os_hash_algo: "sha256".into(),
            os_hash_value: sha.clone(),
            disk_format: "raw".into(),
            boot_mode: "bios".into(),
            image_type: "whole-disk".into(),
            timeout_s: 120,
            ..Default::default()
        }),
    ))
    .await;
    let d = stub.final_update("e2e-2", Duration::from_secs(150)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let disk = sim.node(0).state().disk;
    assert_eq!(disk.sha256.as_deref(), Some(sha.as_str()), "{disk:?}");

    // 4. prepare-instance: the ramdisk powers the node off, boot from disk.
    stub.send(job(
        "e2e-3",
        pb::job::Kind::PrepareInstance(pb::PrepareInstance {
            callback_url: callback,
            agent_token: GOOD_TOKEN.into(),
            boot_mode: "bios".into(),
            power_on: true,
            ..Default::default()
        }),
    ))
    .await;
    let d = stub.final_update("e2e-3", Duration::from_secs(120)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    assert!(!agent.share.join("nodes").join(node).exists());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = sim.node(0).state();
        if st.os_running {
            assert_eq!(st.power, PowerState::On);
            assert!(!st.cd.connected && !st.fd.connected);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "OS never ran: {:?}",
            st.last_boot
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.shutdown().await;
}

/// A partition image with `boot_option: netboot`: after write-image the agent reads the
/// root partition UUID from the (simulated) ramdisk, builds a boot ISO from the image's
/// kernel and ramdisk with `root=UUID=<uuid>`, and leaves it attached as the boot device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netboot_partition_image_gets_its_boot_iso() {
    if !std::path::Path::new("/usr/lib/ISOLINUX/isolinux.bin").exists() || !have_tool("xorriso") {
        assert!(
            std::env::var_os("CI").is_none(),
            "isolinux and xorriso are required in CI"
        );
        eprintln!("skipping: isolinux or xorriso not installed and CI unset");
        return;
    }
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let node = "known-node";
    std::fs::write(agent.share.join("ipa.kernel"), vec![3u8; 200_000]).unwrap();
    std::fs::write(agent.share.join("ipa.initramfs"), vec![4u8; 300_000]).unwrap();
    std::fs::write(agent.share.join("os.vmlinuz"), vec![5u8; 150_000]).unwrap();
    std::fs::write(agent.share.join("os.initrd"), vec![6u8; 250_000]).unwrap();
    let image: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(agent.share.join("root-part.img"), &image).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&image))
    };
    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(50),
        timing: RamdiskTiming::fast(),
        ..BootConfig::default()
    })
    .unwrap();
    let sim = Sim::start(
        SimBuilder::new()
            .count(1)
            .base_address(random_base())
            .https_port(Some(0))
            .credentials("admin", BMC_PASSWORD)
            .share(irmc_sim::ShareMapEntry::new(
                "127.0.0.1",
                "share",
                &agent.share,
            ))
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let ca = agent.dir.path().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let bmc = bmc_target(&sim, 0, &ca, 10);
    let job = |id: &str, kind: pb::job::Kind| pb::Job {
        job_id: id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc.clone()),
        kind: Some(kind),
    };
    stub.send(job(
        "nb-1",
        pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_kernel: "ipa.kernel".into(),
            deploy_ramdisk: "ipa.initramfs".into(),
            boot_mode: "bios".into(),
            agent_token: GOOD_TOKEN.into(),
            bootif: "52:54:00:12:34:56".into(),
            ..Default::default()
        }),
    ))
    .await;
    let d = stub.final_update("nb-1", Duration::from_secs(120)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let callback = loop {
        if let Some(h) = stub
            .ramdisk_heartbeats()
            .into_iter()
            .find(|h| h.node_uuid == node)
        {
            break h.callback_url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ramdisk heartbeat: {:?}",
            sim.node(0).state().last_boot
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stub.send(job(
        "nb-2",
        pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: callback.clone(),
            agent_token: GOOD_TOKEN.into(),
            image_source: "root-part.img".into(),
            os_hash_algo: "sha256".into(),
            os_hash_value: sha.clone(),
            disk_format: "raw".into(),
            boot_mode: "bios".into(),
            image_type: "partition".into(),
            partition: Some(pb::PartitionImage {
                kernel: "vmlinuz".into(),
                ramdisk: "initrd".into(),
                root_gb: 1,
                boot_option: "netboot".into(),
                ..Default::default()
            }),
            timeout_s: 120,
            ..Default::default()
        }),
    ))
    .await;
    let d = stub.final_update("nb-2", Duration::from_secs(150)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let written_uuid = d.output.unwrap().root_uuid;
    assert!(!written_uuid.is_empty());

    // Missing kernel: refused before the node is touched, naming the field.
    let instance = |id: &str, kernel: &str| {
        job(
            id,
            pb::job::Kind::PrepareInstance(pb::PrepareInstance {
                callback_url: callback.clone(),
                agent_token: GOOD_TOKEN.into(),
                boot_mode: "bios".into(),
                power_on: true,
                boot_option: "netboot".into(),
                kernel: kernel.into(),
                ramdisk: "os.initrd".into(),
                kernel_append_params: "console=ttyS0,115200".into(),
                ..Default::default()
            }),
        )
    };
    stub.send(instance("nb-3", "")).await;
    let d = stub.final_update("nb-3", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Failed as i32);
    assert!(
        d.error.contains(node) && d.error.contains("kernel") && d.error.contains("netboot"),
        "{}",
        d.error
    );
    assert_eq!(sim.node(0).state().power, PowerState::On, "node untouched");

    stub.send(instance("nb-4", "os.vmlinuz")).await;
    let d = stub.final_update("nb-4", Duration::from_secs(120)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let out = d.output.unwrap();
    assert_eq!(out.root_uuid, written_uuid, "the UUID the ramdisk reported");
    assert_eq!(out.files_written, 1, "the netboot ISO");
    let st = sim.node(0).state();
    assert!(
        st.cd.connected && st.cd.image_name.starts_with("boot-iso/"),
        "{:?}",
        st.cd
    );
    assert_eq!(st.boot.target, irmc_sim::BootTarget::Cd);
    assert_eq!(st.boot.enabled, irmc_sim::BootEnabled::Continuous);
    assert!(!agent.share.join("nodes").join(node).exists());
    // The ISO's BIOS menu boots the image's kernel with the root UUID.
    let iso = agent.share.join(&st.cd.image_name);
    let cfg = agent.dir.path().join("isolinux.cfg");
    let x = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/isolinux/isolinux.cfg"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(x.status.success(), "{x:?}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains(&format!(
            "APPEND initrd=/boot/initrd root=UUID={written_uuid} console=ttyS0,115200"
        )),
        "{text}"
    );
    sim.shutdown().await;
}
