//! Our Redfish virtual-media client against sushy-tools 2.2 (PyPI, `sushy-emulator
//! --fake`), a Redfish service nobody here wrote: the drives are found from the service
//! root (sushy puts them under `Systems/<id>/VirtualMedia`, not where an iRMC has
//! them), `InsertMedia` makes sushy download the image from a loopback HTTP server
//! (Python's `http.server`), `EjectMedia` empties the drive.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use irmc::{
    BmcConfig, BootMode, BootPersistence, BootTarget, IrmcClient, PowerState, ResetType, Scheme,
    Secret, Transport,
};
use tokio::io::AsyncReadExt as _;

fn skip_or_fail(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason} (CI is set: a missing peer is a failure)");
    }
    eprintln!("\n*** SKIPPED: {reason} ***\n");
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn sushy_venv() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/sushy-setup.sh");
    let o = tokio::process::Command::new("bash")
        .arg(script)
        .output()
        .await
        .ok()?;
    if !o.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("venv="))
        .map(PathBuf::from)
}

async fn wait_http(port: u16, path: &str) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let t0 = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{url} never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `sushy-emulator --fake` on a free loopback port, and a client configuration for it.
async fn start_sushy(venv: &Path, dir: &Path) -> (tokio::process::Child, BmcConfig) {
    let port = free_tcp_port();
    let sushy = tokio::process::Command::new(venv.join("bin/sushy-emulator"))
        .args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_http(port, "/redfish/v1/").await;
    let mut cfg = BmcConfig::new("127.0.0.1", "admin", Secret::new("sushy-pw"));
    cfg.port = port;
    cfg.scheme = Scheme::Http;
    cfg.timeout = Duration::from_secs(30);
    (sushy, cfg)
}

#[tokio::test]
async fn insert_and_eject_against_sushy_tools() {
    let Some(venv) = sushy_venv().await else {
        return skip_or_fail(
            "sushy-tools could not be installed (PyPI unreachable or no python3-venv)",
        );
    };
    // The image, served over loopback HTTP by Python's http.server.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.iso"), vec![0x5a_u8; 64 * 1024]).unwrap();
    let http_port = free_tcp_port();
    let mut files = tokio::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &http_port.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_http(http_port, "/").await;

    let (mut sushy, cfg) = start_sushy(&venv, dir.path()).await;
    let c = IrmcClient::new(cfg.with_node("node-sushy")).unwrap();

    let drives = c.redfish_virtual_drives().await.unwrap();
    let cd = drives.iter().find(|d| d.is_cd()).expect("a CD drive");
    assert!(
        cd.path.starts_with("/redfish/v1/Systems/") && cd.path.contains("/VirtualMedia/"),
        "sushy keeps its drives under the system: {}",
        cd.path
    );
    assert!(!cd.inserted);

    let url = format!("http://127.0.0.1:{http_port}/deploy.iso");
    let before = c.requests_sent();
    c.redfish_insert_cd(&url).await.unwrap();
    eprintln!(
        "InsertMedia against sushy-tools: {} requests (discovery included)",
        c.requests_sent() - before
    );
    let st = c.redfish_cd_status().await.unwrap();
    assert!(st.inserted, "{st:?}");
    assert_eq!(st.image, url);
    // Inserting again replaces the image (eject, insert).
    c.redfish_insert_cd(&url).await.unwrap();
    assert!(c.redfish_eject_cd().await.unwrap());
    let st = c.redfish_cd_status().await.unwrap();
    assert!(!st.inserted, "{st:?}");
    assert!(
        !c.redfish_eject_cd().await.unwrap(),
        "nothing left to eject"
    );

    // sushy fetched the image from our file server on insert.
    let _ = files.start_kill();
    let mut log = String::new();
    let mut stderr = files.stderr.take().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut log)).await;
    assert!(
        log.contains("GET /deploy.iso"),
        "sushy did not download: {log}"
    );
    let _ = sushy.start_kill();
}

/// The DMTF boot override and power against sushy-tools, whose system is not an iRMC's
/// `Systems/0`: the client finds it from the service root after the first 404. Facts
/// measured on sushy-tools 2.2: it reads a `Once` override back as `Continuous`, and a
/// power change lands seconds after the reset, so the client polls.
#[tokio::test]
async fn boot_override_and_power_against_sushy_tools() {
    let Some(venv) = sushy_venv().await else {
        return skip_or_fail(
            "sushy-tools could not be installed (PyPI unreachable or no python3-venv)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut sushy, mut cfg) = start_sushy(&venv, dir.path()).await;
    cfg.transport = Transport::Redfish;
    let c = IrmcClient::new(cfg.with_node("node-sushy")).unwrap();

    c.set_boot_override(BootTarget::Cd, BootPersistence::Once, BootMode::Uefi)
        .await
        .unwrap();
    let info = c.system_info().await.unwrap();
    assert_eq!(info.boot_target.as_deref(), Some("Cd"), "{info:?}");
    assert!(
        matches!(info.boot_enabled.as_deref(), Some("Once" | "Continuous")),
        "{info:?}"
    );
    assert_eq!(info.boot_mode.as_deref(), Some("UEFI"), "{info:?}");

    // Power: whatever the fake system starts in, turn it off, then on, and see each
    // state arrive.
    let started = Instant::now();
    c.redfish_reset(ResetType::ForceOff).await.unwrap();
    c.wait_power_state(PowerState::Off, Duration::from_secs(40))
        .await
        .unwrap();
    c.redfish_reset(ResetType::On).await.unwrap();
    c.wait_power_state(PowerState::On, Duration::from_secs(40))
        .await
        .unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    eprintln!(
        "sushy-tools: off and on again in {:?}, {} requests in all",
        started.elapsed(),
        c.requests_sent()
    );
    let _ = sushy.start_kill();
}
