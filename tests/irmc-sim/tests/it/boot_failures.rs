//! Boots that must fail the way a BMC reports it: the outcome is recorded on the node (and
//! so visible in the control API), power stays on, and nothing calls back.

use crate::boot_support;

use std::time::Duration;

use boot_support::*;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::ramdisk::RamdiskTiming;
use irmc_sim::{
    BootEnabled, BootMode, BootOutcome, BootOverride, BootTarget, MediaSettings, NodeHandle,
    PowerState, Secret, ShareMapEntry, ShareType, Sim, SimBuilder,
};

fn media(share: &str, image: &str, user: &str, password: &str) -> MediaSettings {
    MediaSettings {
        server: "127.0.0.1".into(),
        share_type: ShareType::Cifs,
        share_name: share.into(),
        image_name: image.into(),
        user: user.into(),
        password: Secret::new(password),
        drives: 1,
        connected: true,
        ..Default::default()
    }
}

async fn outcome(node: &NodeHandle) -> BootOutcome {
    wait_for("a boot outcome", 20, || {
        node.state()
            .last_boot
            .is_some_and(|b| !b.ok || b.stage != "ramdisk")
    })
    .await;
    node.state().last_boot.unwrap()
}

#[tokio::test]
async fn failed_boots_are_recorded() {
    if !have_tool("xorriso") || !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    // An ISO whose command line lacks boot_method=vmedia: the floppy is not read.
    let plain_grub = "menuentry x {\n linux /vmlinuz quiet\n}\n";
    build_iso(
        dir.path(),
        &share.join("plain.iso"),
        &IsoSpec {
            grub: Some(plain_grub),
            isolinux: None,
            ..Default::default()
        },
    );
    build_floppy(
        dir.path(),
        &share.join("fd.img"),
        "ir-vfd-dev",
        "ipa-api-url=http://127.0.0.1:9\n",
    );
    std::fs::write(share.join("not-an-iso.iso"), vec![7u8; 70_000]).unwrap();

    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(10),
        timing: RamdiskTiming::fast(),
        ..Default::default()
    })
    .unwrap();
    let sim = Sim::start(
        SimBuilder::new()
            .count(8)
            .base_address(random_base())
            .share(ShareMapEntry {
                user: Some("ironic".into()),
                password: Some(Secret::new("right")),
                ..ShareMapEntry::new("127.0.0.1", "share", &share)
            })
            .boot_hook(hook),
    )
    .await
    .unwrap();

    let cases: Vec<(MediaSettings, BootTarget, &str)> = vec![
        (
            media("share", "deploy.iso", "ironic", "wrong"),
            BootTarget::Cd,
            "could not mount CD image //127.0.0.1/share/deploy.iso: access denied",
        ),
        (
            media("share", "missing.iso", "ironic", "right"),
            BootTarget::Cd,
            "could not mount CD image //127.0.0.1/share/missing.iso: file not found",
        ),
        (
            media("other", "deploy.iso", "ironic", "right"),
            BootTarget::Cd,
            "could not mount CD image //127.0.0.1/other/deploy.iso: share not found",
        ),
        (
            media("share", "not-an-iso.iso", "ironic", "right"),
            BootTarget::Cd,
            "is not bootable: not an ISO 9660 image",
        ),
        (
            MediaSettings {
                connected: false,
                ..media("share", "deploy.iso", "ironic", "right")
            },
            BootTarget::Cd,
            "no virtual CD is connected",
        ),
        (
            media("share", "deploy.iso", "ironic", "right"),
            BootTarget::Pxe,
            "network boot is not simulated",
        ),
        (
            media("share", "deploy.iso", "ironic", "right"),
            BootTarget::Hdd,
            "local disk is empty",
        ),
    ];
    for (i, (cd, target, _)) in cases.iter().enumerate() {
        let node = sim.node(i);
        node.update(|s| {
            s.cd = cd.clone();
            s.boot = BootOverride {
                target: *target,
                enabled: BootEnabled::Once,
                mode: BootMode::Uefi,
            };
        });
        assert!(node.power_on());
    }
    for (i, (_, _, want)) in cases.iter().enumerate() {
        let node = sim.node(i);
        let o = outcome(node).await;
        assert!(!o.ok, "case {i}: {o:?}");
        assert!(
            o.message.contains(want),
            "case {i}: {:?} does not contain {want:?}",
            o.message
        );
        assert!(
            o.message
                .contains(&format!("node {i} (BMC {})", node.address())),
            "{}",
            o.message
        );
        let st = node.state();
        assert_eq!(st.power, PowerState::On, "power stays on (case {i})");
        assert!(!st.ramdisk_running && !st.os_running);
    }
    // The password never shows in an outcome.
    assert!(
        !sim.node(0)
            .state()
            .last_boot
            .unwrap()
            .message
            .contains("wrong")
    );

    // Floppy attached but the ISO's command line has no boot_method=vmedia: IPA ignores
    // parameters.txt, so the ramdisk has no ipa-api-url and never calls back.
    let node = sim.node(7);
    node.update(|s| {
        s.cd = media("share", "plain.iso", "ironic", "right");
        s.fd = media("share", "fd.img", "ironic", "right");
        s.boot = BootOverride {
            target: BootTarget::Cd,
            enabled: BootEnabled::Once,
            mode: BootMode::Uefi,
        };
    });
    node.power_on();
    let o = outcome(node).await;
    assert_eq!((o.ok, o.stage.as_str()), (false, "ramdisk"), "{o:?}");
    assert!(o.message.contains("no ipa-api-url"), "{}", o.message);

    // Power-off while a boot is pending leaves nothing running.
    node.power_off();
    assert!(!node.state().ramdisk_running);
    sim.shutdown().await;
}
