//! prepare-ramdisk end to end: fake coordinator -> real share-agent process ->
//! irmc-sim; checked through the simulator's state and the share's files.

use std::time::Duration;

use crate::common::*;
use irmc_sim::{BootEnabled, BootMode, BootTarget, PowerState};
use vmedia_proto::v1 as pb;

const NODE: &str = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123";
const TOKEN: &str = "tok-0123456789abcdef0123456789abcdef";

fn prepare_job(job_id: &str, node: &str, bmc: pb::BmcTarget) -> pb::Job {
    pb::Job {
        job_id: job_id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc),
        kind: Some(pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_iso: "deploy.iso".into(),
            boot_mode: "uefi".into(),
            agent_token: TOKEN.into(),
            bootif: "52:54:00:12:34:56".into(),
            extra_params: [("ipa-debug".to_string(), "1".to_string())].into(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_ramdisk_attaches_media_and_boots_from_cd() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(
        &stub,
        AgentOpts {
            log: Some("debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info".into()),
            ..Default::default()
        },
    )
    .await;
    let hello = stub.hello(0).await;
    assert_eq!(hello.agent_id, "agent-under-test");
    assert_eq!(hello.http_url, agent.url());
    assert_eq!(hello.capacity, 4);
    let share = hello.share.clone().unwrap();
    assert_eq!(
        (
            share.server.as_str(),
            share.share_type.as_str(),
            share.share_name.as_str()
        ),
        ("127.0.0.1", "CIFS", "share")
    );
    let hb = stub.heartbeat().await;
    assert!(hb.free_bytes > 0);

    std::fs::write(agent.share.join("deploy.iso"), vec![7u8; 64 * 1024]).unwrap();
    let boots = Boots::default();
    let (sim, ca) = start_sim(2, &agent.share, boots.clone(), None).await;

    // A slow BMC: every step lasts longer than the progress interval, so the
    // coordinator is told about each one while it runs.
    sim.apply_fault(&irmc_sim::fault::parse_spec("node=0,latency=600ms").unwrap());
    stub.send(prepare_job("job-1", NODE, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let done = stub.final_update("job-1", Duration::from_secs(60)).await;
    sim.apply_fault(&irmc_sim::fault::parse_spec("clear").unwrap());
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    let progress: Vec<String> = stub
        .updates("job-1")
        .into_iter()
        .filter(|u| u.state == pb::JobState::Running as i32)
        .map(|u| u.progress)
        .collect();
    for step in ["attaching the deploy ISO", "powering the node on"] {
        assert!(progress.iter().any(|p| p.contains(step)), "{progress:?}");
    }

    // The simulator's state: media written and connected, powered on.
    let st = sim.node(0).state();
    assert_eq!(st.power, PowerState::On);
    assert!(st.cd.connected && st.fd.connected, "{st:?}");
    assert_eq!(st.cd.image_name, "deploy.iso");
    assert_eq!(st.fd.image_name, format!("nodes/{NODE}/params.img"));
    for m in [&st.cd, &st.fd] {
        assert_eq!(m.server, "127.0.0.1");
        assert_eq!(m.share_name, "share");
        assert_eq!(m.user, "ironic");
        assert_eq!(m.password.expose(), "share-secret-pw");
    }
    // What the firmware saw when it powered on: one-time boot from the virtual CD.
    let seen = boots.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].boot.target, BootTarget::Cd);
    assert_eq!(seen[0].boot.enabled, BootEnabled::Once);
    assert_eq!(seen[0].boot.mode, BootMode::Uefi);
    assert!(seen[0].cd.connected && seen[0].fd.connected);
    // Once is consumed by the boot, as on real firmware.
    assert_ne!(st.boot.enabled, BootEnabled::Once);

    // The share: one per-node parameter floppy; mtools reads it back.
    let img = agent.share.join("nodes").join(NODE).join("params.img");
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), 1_474_560);
    if have_tool("mtype") {
        let out = std::process::Command::new("mtype")
            .arg("-i")
            .arg(&img)
            .arg("::parameters.txt")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            lines,
            vec![
                format!("ipa-api-url={}", agent.url()).as_str(),
                &format!("ipa-agent-token={TOKEN}"),
                "BOOTIF=52:54:00:12:34:56",
                "boot_method=vmedia",
                "ipa-debug=1",
            ]
        );
        let label = std::process::Command::new("mlabel")
            .arg("-s")
            .arg("-i")
            .arg(&img)
            .arg("::")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&label.stdout).contains("ir-vfd-dev"));
    }

    // Measured cost of one prepared node (JobOutput vs the simulator's counters).
    let out = done.output.clone().unwrap();
    let counted = sim.node(0).state().counters;
    assert_eq!(u64::from(out.bmc_requests), counted.total, "{counted:?}");
    assert_eq!(out.files_written, 1);
    assert_eq!(out.bytes_written, 1_474_560);
    assert!(
        out.bytes_allocated > 0 && out.bytes_allocated <= 64 * 1024,
        "{out:?}"
    );
    assert_eq!(out.bmc_model, "iRMC S4");
    assert!(out.bmc_has_virtual_fd);
    eprintln!(
        "MEASURE first node: bmc_requests={} (sim total={} {:?}) files={} bytes_written={} bytes_allocated={}",
        out.bmc_requests,
        counted.total,
        counted.scci,
        out.files_written,
        out.bytes_written,
        out.bytes_allocated
    );

    // Idempotency: the same job id again replays the result, no BMC request.
    stub.send(prepare_job("job-1", NODE, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let again = stub
        .final_update_n("job-1", 1, Duration::from_secs(30))
        .await;
    assert_eq!(again.state, pb::JobState::Succeeded as i32);
    assert_eq!(sim.node(0).state().counters.total, counted.total);

    // A second node on the same agent: no new deploy ISO bytes, one more floppy.
    let node2 = "2be26c0b-03f2-4d2e-ae87-c02d7f33c124";
    stub.send(prepare_job("job-2", node2, bmc_target(&sim, 1, &ca, 10)))
        .await;
    let d2 = stub.final_update("job-2", Duration::from_secs(60)).await;
    assert_eq!(d2.state, pb::JobState::Succeeded as i32, "{}", d2.error);
    // A fast BMC: steps of a few milliseconds are not worth a message each.
    let running = stub
        .updates("job-2")
        .iter()
        .filter(|u| u.state == pb::JobState::Running as i32)
        .count();
    assert!(
        running <= 1,
        "{running} progress messages for a fast job: {:?}",
        stub.updates("job-2")
    );
    let o2 = d2.output.unwrap();
    eprintln!(
        "MEASURE second node: bmc_requests={} files={} bytes_written={} bytes_allocated={}",
        o2.bmc_requests, o2.files_written, o2.bytes_written, o2.bytes_allocated
    );
    assert_eq!(o2.files_written, 1);

    // Re-preparing node 1 (warm BMC: report.xml cached, media attached before,
    // so the ejects really eject).
    stub.send(prepare_job("job-3", NODE, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let d3 = stub.final_update("job-3", Duration::from_secs(60)).await;
    assert_eq!(d3.state, pb::JobState::Succeeded as i32, "{}", d3.error);
    let o3 = d3.output.unwrap();
    eprintln!(
        "MEASURE re-prepare (warm BMC): bmc_requests={}",
        o3.bmc_requests
    );
    assert_eq!(
        sim.node(0).state().counters.report,
        1,
        "report.xml is read once per BMC"
    );

    // Clean-up removes every per-node file and ejects everything.
    stub.send(pb::Job {
        job_id: "job-4".into(),
        node_uuid: NODE.into(),
        bmc: Some(bmc_target(&sim, 0, &ca, 10)),
        kind: Some(pb::job::Kind::CleanUp(pb::CleanUp { power_off: true })),
    })
    .await;
    let d4 = stub.final_update("job-4", Duration::from_secs(60)).await;
    assert_eq!(d4.state, pb::JobState::Succeeded as i32, "{}", d4.error);
    assert!(!agent.share.join("nodes").join(NODE).exists());
    let st = sim.node(0).state();
    assert!(!st.cd.connected && !st.fd.connected);
    assert_eq!(st.power, PowerState::Off);
    assert!(
        agent.share.join("deploy.iso").exists(),
        "a share file used in place is never deleted"
    );

    // No secret ever reached the log, even at debug level.
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.contains("prepare-ramdisk succeeded"),
        "the log was captured"
    );
    for secret in [BMC_PASSWORD, "share-secret-pw", TOKEN] {
        assert!(!log.contains(secret), "{secret:?} leaked into the log");
    }

    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_without_virtual_fd_gets_a_hard_disk_image() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), b"iso").unwrap();
    let (sim, ca) = start_sim(1, &agent.share, Boots::default(), Some("9.62F")).await;
    stub.send(prepare_job("hd-1", NODE, bmc_target(&sim, 0, &ca, 10)))
        .await;
    let done = stub.final_update("hd-1", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    let st = sim.node(0).state();
    assert!(st.hd.connected && !st.fd.connected, "{st:?}");
    assert_eq!(st.hd.image_name, format!("nodes/{NODE}/params.img"));
    assert!(!done.output.unwrap().bmc_has_virtual_fd);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_instance_ejects_deletes_and_boots_from_disk() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), b"iso").unwrap();
    std::fs::write(agent.share.join("boot.iso"), b"boot").unwrap();
    let boots = Boots::default();
    let (sim, ca) = start_sim(1, &agent.share, boots.clone(), None).await;
    let bmc = bmc_target(&sim, 0, &ca, 10);
    stub.send(prepare_job("pi-1", NODE, bmc.clone())).await;
    let d = stub.final_update("pi-1", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let params = agent.share.join("nodes").join(NODE).join("params.img");
    assert!(params.exists());

    let instance = |job: &str, boot_iso: &str| pb::Job {
        job_id: job.into(),
        node_uuid: NODE.into(),
        bmc: Some(bmc.clone()),
        kind: Some(pb::job::Kind::PrepareInstance(pb::PrepareInstance {
            boot_iso: boot_iso.into(),
            boot_mode: "uefi".into(),
            power_on: true,
            ..Default::default()
        })),
    };
    stub.send(instance("pi-2", "")).await;
    let d = stub.final_update("pi-2", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let st = sim.node(0).state();
    assert!(!st.cd.connected && !st.fd.connected, "{st:?}");
    assert_eq!(st.boot.target, BootTarget::Hdd);
    assert_eq!(st.boot.enabled, BootEnabled::Continuous);
    assert_eq!(st.power, PowerState::On);
    assert!(!params.exists(), "the parameter image is deleted");
    let last = boots.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.target, BootTarget::Hdd);
    assert_eq!(d.output.unwrap().power_state, "power on");

    // A virtual-media-booted instance: the boot ISO stays attached.
    stub.send(instance("pi-3", "boot.iso")).await;
    let d = stub.final_update("pi-3", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    let st = sim.node(0).state();
    assert!(st.cd.connected && st.cd.image_name == "boot.iso", "{st:?}");
    assert_eq!(
        (st.boot.target, st.boot.enabled),
        (BootTarget::Cd, BootEnabled::Continuous)
    );

    // Power actions.
    for (id, action, want) in [
        ("pw-1", "off", PowerState::Off),
        ("pw-2", "reboot", PowerState::On),
        ("pw-3", "status", PowerState::On),
    ] {
        stub.send(pb::Job {
            job_id: id.into(),
            node_uuid: NODE.into(),
            bmc: Some(bmc.clone()),
            kind: Some(pb::job::Kind::Power(pb::PowerAction {
                action: action.into(),
            })),
        })
        .await;
        let d = stub.final_update(id, Duration::from_secs(60)).await;
        assert_eq!(
            d.state,
            pb::JobState::Succeeded as i32,
            "{action}: {}",
            d.error
        );
        assert_eq!(sim.node(0).state().power, want, "{action}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_iso_built_once_from_kernel_and_ramdisk() {
    let isolinux = std::path::Path::new("/usr/lib/ISOLINUX/isolinux.bin");
    if !isolinux.exists() {
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
    std::fs::write(agent.share.join("deploy.kernel"), vec![1u8; 300_000]).unwrap();
    std::fs::write(agent.share.join("deploy.initramfs"), vec![2u8; 500_000]).unwrap();
    let (sim, ca) = start_sim(2, &agent.share, Boots::default(), None).await;
    let job = |id: &str, node: &str, i: usize| pb::Job {
        job_id: id.into(),
        node_uuid: node.into(),
        bmc: Some(bmc_target(&sim, i, &ca, 10)),
        kind: Some(pb::job::Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_kernel: "deploy.kernel".into(),
            deploy_ramdisk: "deploy.initramfs".into(),
            boot_mode: "bios".into(),
            agent_token: TOKEN.into(),
            kernel_append_params: "console=ttyS0".into(),
            ..Default::default()
        })),
    };
    stub.send(job("iso-1", "iso-node-1", 0)).await;
    let d1 = stub.final_update("iso-1", Duration::from_secs(120)).await;
    assert_eq!(d1.state, pb::JobState::Succeeded as i32, "{}", d1.error);
    let cd = sim.node(0).state().cd;
    assert!(cd.connected && cd.image_name.ends_with(".iso"), "{cd:?}");
    let iso = agent.share.join(&cd.image_name);
    assert!(iso.exists(), "{}", iso.display());
    let o1 = d1.output.unwrap();
    assert_eq!(o1.files_written, 2, "the ISO and the parameter image");

    // A second node shares the same ISO: only its parameter image is new.
    stub.send(job("iso-2", "iso-node-2", 1)).await;
    let d2 = stub.final_update("iso-2", Duration::from_secs(120)).await;
    assert_eq!(d2.state, pb::JobState::Succeeded as i32, "{}", d2.error);
    assert_eq!(sim.node(1).state().cd.image_name, cd.image_name);
    let o2 = d2.output.unwrap();
    assert_eq!(o2.files_written, 1);
    assert_eq!(o2.bytes_written, 1_474_560);
    eprintln!(
        "MEASURE deploy ISO built: first node bytes_written={} second node bytes_written={} allocated={}",
        o1.bytes_written, o2.bytes_written, o2.bytes_allocated
    );
    if have_tool("xorriso") {
        let out = std::process::Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-report_el_torito", "plain"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("BIOS"), "{text}");
    }
    sim.shutdown().await;
}

/// `irmc_transport=ipmi`: the agent reads power state and sets the one-time boot device
/// over IPMI (the iRMC's remote CD/DVD, as Ironic did); the node boots the virtual CD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_ramdisk_over_ipmi_boots_from_the_remote_cd() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    let _ = stub.hello(0).await;
    std::fs::write(agent.share.join("deploy.iso"), vec![7u8; 64 * 1024]).unwrap();
    let boots = Boots::default();
    // IPMI on its real port (the agent's BmcTarget has no IPMI port): the address is a
    // random loopback one, so 623 is free there.
    let sim = irmc_sim::Sim::start(
        irmc_sim::SimBuilder::new()
            .base_address(random_base())
            .https_port(Some(0))
            .ipmi_port(Some(623))
            .credentials("admin", BMC_PASSWORD)
            .share(irmc_sim::ShareMapEntry::new(
                "127.0.0.1",
                "share",
                &agent.share,
            ))
            .boot_hook(boots.clone()),
    )
    .await
    .unwrap();
    let ca = agent.share.parent().unwrap().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let mut bmc = bmc_target(&sim, 0, &ca, 10);
    bmc.transport = "ipmi".into();
    stub.send(prepare_job("job-ipmi", NODE, bmc)).await;
    let done = stub.final_update("job-ipmi", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);

    let st = sim.node(0).state();
    assert_eq!(st.power, PowerState::On);
    let seen = boots.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].boot.target, BootTarget::Cd);
    assert_eq!(seen[0].boot.enabled, BootEnabled::Once);
    assert_eq!(
        st.ipmi_boot_selector,
        Some(0x8),
        "remote CD/DVD, data 2 = 0x20"
    );
    let c = &st.counters;
    assert_eq!(c.redfish_get + c.redfish_patch, 0, "{c:?}");
    assert_eq!(c.ipmi.get("set_system_boot_options"), Some(&1), "{c:?}");
    assert_eq!(c.ipmi.get("get_chassis_status"), Some(&1), "{c:?}");
    // The job's request count covers both: HTTP requests and IPMI datagrams.
    let out = done.output.unwrap();
    assert_eq!(
        u64::from(out.bmc_requests),
        c.total + c.ipmi_packets,
        "{c:?}"
    );
    eprintln!(
        "MEASURE prepare over IPMI: bmc_requests={} (HTTP {}, IPMI datagrams {})",
        out.bmc_requests, c.total, c.ipmi_packets
    );
    sim.shutdown().await;
}
