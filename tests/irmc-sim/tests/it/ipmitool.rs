//! The real `ipmitool -I lanplus` (Debian's 1.8.19) against the simulator's IPMI over
//! LAN, with cipher suites 3 and 17: power status/on/off, `chassis bootdev cdrom
//! options=efiboot`, and Ironic's iRMC work-around `raw 0x00 0x08 0x05 0xa0 0x20 ...`,
//! checked against what the simulated node then holds and what it boots.

use std::sync::{Arc, Mutex};

use irmc_sim::{
    BootEnabled, BootHook, BootMode, BootSnapshot, BootTarget, NodeHandle, PowerState, Sim,
    SimBuilder,
};

use crate::support::{in_ci, random_base};

const PASSWORD: &str = "Lan-pl4s";

/// What one power-on booted: device, override kind, reason.
type Boot = (BootTarget, BootEnabled, &'static str);

/// Records what every power-on would boot.
#[derive(Clone, Default)]
struct Boots(Arc<Mutex<Vec<Boot>>>);

impl BootHook for Boots {
    fn on_power_on(&self, _node: NodeHandle, s: BootSnapshot) {
        self.0
            .lock()
            .unwrap()
            .push((s.target, s.boot.enabled, s.reason));
    }
    fn on_power_off(&self, _node: NodeHandle) {}
}

fn have_ipmitool() -> bool {
    let ok = std::process::Command::new("ipmitool")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "ipmitool is missing (CI is set: install it, scripts/setup.sh)"
        );
        eprintln!("\n*** SKIPPED: ipmitool is not installed (apt-get install ipmitool) ***\n");
    }
    ok
}

struct Tool {
    host: String,
    port: u16,
    suite: u8,
}

impl Tool {
    /// Runs ipmitool with `args`; returns (success, stdout + stderr).
    async fn run(&self, password: &str, args: &[&str]) -> (bool, String) {
        let out = tokio::process::Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                &self.host,
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "admin", "-P", password, "-C", &self.suite.to_string()])
            // One retry, one second apart: a lost datagram on loopback is a bug here.
            .args(["-R", "1", "-N", "1"])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(PASSWORD, args).await;
        assert!(ok, "ipmitool -C {} {args:?} failed: {text}", self.suite);
        text
    }
}

async fn ipmitool_against_sim(suite: u8) {
    if !have_ipmitool() {
        return;
    }
    let boots = Boots::default();
    let sim = Sim::start(
        SimBuilder::new()
            .base_address(random_base())
            .credentials("admin", PASSWORD)
            .boot_hook(boots.clone()),
    )
    .await
    .unwrap();
    let a = sim.addresses()[0].clone();
    let node = sim.node(0).clone();
    let ipmi = a.ipmi.unwrap();
    let t = Tool {
        host: ipmi.ip().to_string(),
        port: ipmi.port(),
        suite,
    };

    assert!(
        t.ok(&["chassis", "power", "status"])
            .await
            .contains("Chassis Power is off")
    );
    assert!(t.ok(&["chassis", "power", "on"]).await.contains("Up/On"));
    assert_eq!(node.state().power, PowerState::On);
    assert!(
        t.ok(&["chassis", "power", "status"])
            .await
            .contains("Chassis Power is on")
    );

    // ipmitool's own boot device command: CD/DVD (0101b), EFI, next boot only.
    assert!(
        t.ok(&["chassis", "bootdev", "cdrom", "options=efiboot"])
            .await
            .contains("Set Boot Device to cdrom")
    );
    let st = node.state();
    assert_eq!(
        (st.boot.target, st.boot.enabled, st.boot.mode),
        (BootTarget::Cd, BootEnabled::Once, BootMode::Uefi)
    );
    let get = t.ok(&["chassis", "bootparam", "get", "5"]).await;
    assert!(get.contains("Boot parameter data: a014000000"), "{get}");
    assert!(get.contains("Force Boot from CD/DVD"), "{get}");

    // Ironic's iRMC driver: boot flags valid + EFI, once, device 1000b (remote CD/DVD).
    t.ok(&[
        "raw", "0x00", "0x08", "0x05", "0xa0", "0x20", "0x00", "0x00", "0x00",
    ])
    .await;
    let get = t.ok(&["chassis", "bootparam", "get", "5"]).await;
    assert!(get.contains("Boot parameter data: a020000000"), "{get}");
    assert!(
        get.contains("Force Boot from remotely connected CD/DVD"),
        "{get}"
    );
    assert_eq!(node.state().ipmi_boot_selector, Some(0x8));

    // What boots: a reset while on starts the server from the virtual CD, once.
    assert!(t.ok(&["chassis", "power", "reset"]).await.contains("Reset"));
    let seen = boots.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], (BootTarget::Cd, BootEnabled::Once, "reset"));
    // The override was for one boot: it is gone now, over IPMI as over Redfish.
    let get = t.ok(&["chassis", "bootparam", "get", "5"]).await;
    assert!(
        get.contains("Boot parameter data: 0000000000")
            || get.contains("Boot parameter data: 2000000000"),
        "{get}"
    );

    assert!(
        t.ok(&["chassis", "power", "off"])
            .await
            .contains("Down/Off")
    );
    assert_eq!(node.state().power, PowerState::Off);

    // A wrong password: ipmitool finds that the simulator's RAKP 2 HMAC does not match
    // its password and gives up before RAKP 3 (so the session never activates).
    let (ok, text) = t.run("wrong-pw", &["chassis", "power", "status"]).await;
    assert!(!ok, "{text}");
    let c = node.state().counters;
    assert_eq!(
        c.ipmi.get("rakp1").copied(),
        c.ipmi.get("rakp3").map(|n| n + 1),
        "{c:?}"
    );
    assert_eq!(c.ipmi.get("chassis_control"), Some(&3));
    assert_eq!(c.ipmi_dropped, 0, "{c:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn ipmitool_lanplus_suite3() {
    ipmitool_against_sim(3).await;
}

#[tokio::test]
async fn ipmitool_lanplus_suite17() {
    ipmitool_against_sim(17).await;
}
