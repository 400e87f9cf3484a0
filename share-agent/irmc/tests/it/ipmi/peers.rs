//! Our IPMI client against BMC simulators nobody here wrote, started by the tests:
//! pyghmi's `Bmc` (PyPI) and OpenIPMI's `ipmi_sim` (Debian `openipmi`).

use super::*;

fn skip_or_fail(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason} (CI is set: a missing peer is a failure)");
    }
    eprintln!("\n*** SKIPPED: {reason} ***\n");
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// pyghmi's BMC (`pyghmi.ipmi.bmc.Bmc` subclass, tests/peers/pyghmi_bmc.py).
#[tokio::test]
async fn client_against_pyghmi_bmc() {
    let setup = tokio::process::Command::new("bash")
        .arg(peers_dir().join("pyghmi-setup.sh"))
        .output()
        .await;
    let venv = match setup {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("venv="))
            .map(PathBuf::from),
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(_) => None,
    };
    let Some(venv) = venv else {
        return skip_or_fail("pyghmi could not be installed (PyPI unreachable or no python3-venv)");
    };
    let port = free_udp_port();
    let mut child = tokio::process::Command::new(venv.join("bin/python"))
        .arg(peers_dir().join("pyghmi_bmc.py"))
        .args(["127.0.0.1", &port.to_string(), "admin", PASSWORD])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));

    let mut cfg = ipmi_config(SocketAddr::from(([127, 0, 0, 1], port)), PASSWORD);
    cfg.ipmi.cipher = CipherChoice::Auto;
    let c = IpmiClient::new(&cfg);
    assert!(!c.power_on().await.unwrap());
    c.chassis_control(ChassisControl::PowerUp).await.unwrap();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("power on")
    );
    assert!(c.power_on().await.unwrap());
    let flags = BootFlags {
        valid: true,
        persistent: false,
        efi: true,
        device: BootDevice::RemoteCdrom,
    };
    c.set_boot_flags(flags).await.unwrap();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("bootflags a0 20"),
        "pyghmi saw Ironic's bytes"
    );
    assert_eq!(c.boot_flags().await.unwrap(), flags);
    let suite = c.session("probe", async |s| Ok(s.suite())).await.unwrap();
    assert_eq!(suite, CipherSuite::Suite3, "pyghmi speaks suite 3 only");
    // Wrong password: pyghmi's RAKP 2 HMAC does not match ours.
    let err = IpmiClient::new(&ipmi_config(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "nope-nope",
    ))
    .power_on()
    .await
    .unwrap_err();
    assert!(matches!(err, IrmcError::IpmiAuth { .. }), "{err}");
    let _ = child.kill().await;
}

/// The simulator's injected faults apply to IPMI too: a hanging BMC costs the client its
/// retries and a clear error; latency is counted like on HTTP.
#[tokio::test]
async fn sim_faults_apply_to_ipmi() {
    let sim = sim().await;
    let mut cfg = sim_config(&sim, PASSWORD);
    cfg.ipmi.reply_timeout = Duration::from_millis(100);
    cfg.ipmi.attempts = 2;
    let c = IpmiClient::new(&cfg);
    sim.apply_fault(&irmc_sim::fault::parse_spec("node=0,hang").unwrap());
    let err = c.power_on().await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("after 2 tries"),
        "{err}"
    );
    sim.apply_fault(&irmc_sim::fault::parse_spec("clear,latency=5ms").unwrap());
    assert!(!c.power_on().await.unwrap());
    assert!(sim.node(0).state().counters.delay_ms >= 7 * 5);
    sim.shutdown().await;
}

/// OpenIPMI's `ipmi_sim` (Debian `openipmi`), configured from tests/peers/ipmi_sim/.
#[tokio::test]
async fn client_against_openipmi_ipmi_sim() {
    let have = std::process::Command::new("ipmi_sim")
        .arg("--help")
        .output()
        .is_ok();
    if !have {
        return skip_or_fail("ipmi_sim is not installed (apt-get install openipmi)");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_udp_port();
    let src = peers_dir().join("ipmi_sim");
    let conf = std::fs::read_to_string(src.join("lan.conf.in"))
        .unwrap()
        .replace("@PORT@", &port.to_string())
        .replace("@DIR@", &d.display().to_string())
        .replace("@PASSWORD@", PASSWORD);
    std::fs::write(d.join("lan.conf"), conf).unwrap();
    std::fs::copy(src.join("peer.emu"), d.join("peer.emu")).unwrap();
    std::fs::copy(src.join("chassis.sh"), d.join("chassis.sh")).unwrap();
    std::fs::create_dir(d.join("state")).unwrap();
    let mut child = tokio::process::Command::new("ipmi_sim")
        .arg("-c")
        .arg(d.join("lan.conf"))
        .arg("-f")
        .arg(d.join("peer.emu"))
        .arg("-s")
        .arg(d.join("state"))
        .arg("-n")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut cfg = ipmi_config(SocketAddr::from(([127, 0, 0, 1], port)), PASSWORD);
    cfg.ipmi.reply_timeout = Duration::from_millis(200);
    cfg.ipmi.attempts = 25; // ipmi_sim needs a moment to bind
    let c = IpmiClient::new(&cfg);
    assert!(!c.power_on().await.unwrap());
    let log = || std::fs::read_to_string(d.join("log")).unwrap_or_default();
    c.chassis_control(ChassisControl::PowerUp).await.unwrap();
    assert!(log().contains("set power 1"), "{}", log());
    assert!(c.power_on().await.unwrap());
    let cd = BootFlags {
        valid: true,
        persistent: false,
        efi: false,
        device: BootDevice::Cdrom,
    };
    c.set_boot_flags(cd).await.unwrap();
    assert!(log().ends_with("set boot cdrom\n"), "{}", log());
    assert_eq!(c.boot_flags().await.unwrap().device, BootDevice::Cdrom);
    // ipmi_sim has no remote CD/DVD (0x20): a clear error naming the step.
    let err = c
        .set_boot_flags(BootFlags {
            device: BootDevice::RemoteCdrom,
            ..cd
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Set System Boot Options (boot flags): completion code 0xff"),
        "{err}"
    );
    c.chassis_control(ChassisControl::PowerDown).await.unwrap();
    assert!(!c.power_on().await.unwrap());
    let suite = c.session("probe", async |s| Ok(s.suite())).await.unwrap();
    assert_eq!(suite, CipherSuite::Suite3, "ipmi_sim negotiates suite 3");
    let _ = child.kill().await;
}

#[tokio::test]
async fn asf_ping_against_sim() {
    let sim = sim().await;
    let c = IpmiClient::new(&sim_config(&sim, PASSWORD));
    assert!(c.ping().await.unwrap(), "the pong says IPMI is supported");
    assert_eq!(sim.node(0).state().counters.ipmi.get("asf_ping"), Some(&1));
    sim.shutdown().await;
}
