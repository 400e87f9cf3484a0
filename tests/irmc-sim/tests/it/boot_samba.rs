//! Fidelity: the simulated firmware reads the deploy ISO and the parameter floppy from a real
//! Samba server on loopback (through smbclient, with the credentials the iRMC was given), so
//! the export, the credentials and the file names are proven from the BMC's side.

use crate::boot_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use boot_support::*;
use irmc_sim::boot::media::SmbOptions;
use irmc_sim::boot::{BootConfig, SimBoot};
use irmc_sim::ramdisk::RamdiskTiming;
use irmc_sim::{
    BootEnabled, BootMode, BootOverride, BootTarget, MediaSettings, PowerState, Secret,
    ShareMapEntry, ShareType, Sim, SimBuilder,
};

/// smbd in the foreground, stopped (by its own pid) when dropped.
struct Smbd(Child);

impl Drop for Smbd {
    fn drop(&mut self) {
        // SIGTERM lets smbd stop its child processes (it signals its own process group,
        // which is why it must not share ours); SIGKILL only if it lingers.
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smbd(root: &Path, port: u16, user: &str, password: &str) -> Smbd {
    for d in ["state", "cache", "lock", "pid", "private", "log", "share"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let r = root.display();
    let conf = format!(
        "[global]\n  workgroup = WORKGROUP\n  server role = standalone server\n  smb ports = {port}\n\
         interfaces = lo\n  bind interfaces only = yes\n  disable netbios = yes\n\
         state directory = {r}/state\n  cache directory = {r}/cache\n  lock directory = {r}/lock\n\
         pid directory = {r}/pid\n  private dir = {r}/private\n  log file = {r}/log/log.%m\n\
         passdb backend = tdbsam:{r}/private/passdb.tdb\n  server min protocol = SMB2_10\n\
         load printers = no\n  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n\
         [share]\n  path = {r}/share\n  read only = yes\n  valid users = {user}\n  force user = {user}\n"
    );
    let conf_path = root.join("smb.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut add = Command::new(tool_path("smbpasswd"))
        .arg("-c")
        .arg(&conf_path)
        .args(["-s", "-a", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        writeln!(stdin, "{password}\n{password}").unwrap();
    }
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smbpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Command::new(tool_path("smbd"))
        .args(["-F", "-s"])
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Smbd(child)
}

fn media(image: &str, share: &str, user: &str, password: &str) -> MediaSettings {
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

#[tokio::test]
async fn boot_through_a_real_samba_share() {
    for t in [
        "smbd",
        "smbpasswd",
        "smbclient",
        "xorriso",
        "mkfs.vfat",
        "mcopy",
    ] {
        if !have_tool(t) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let password = "Sh4re-Pa55";
    let port: u16 = rand::random_range(20_000..60_000);
    let _smbd = start_smbd(dir.path(), port, &user, password);
    let share = dir.path().join("share");

    let ironic = FakeIronic::start(IronicConfig {
        lookup_404s: 0,
        ..Default::default()
    })
    .await;
    build_iso(dir.path(), &share.join("deploy.iso"), &IsoSpec::default());
    let params = format!(
        "ipa-api-url={}\nipa-agent-token=tok-from-floppy\n",
        ironic.url()
    );
    build_floppy(
        dir.path(),
        &share.join("image-n0.img"),
        "ir-vfd-dev",
        &params,
    );

    // Wait for smbd to listen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "smbd did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let hook = SimBoot::new(BootConfig {
        boot_delay: Duration::from_millis(10),
        timing: RamdiskTiming::fast(),
        smb: SmbOptions {
            scratch: scratch.clone(),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let smb = |name: &str| {
        ShareMapEntry::parse(&format!(
            "smb://127.0.0.1:{port}/{name}={}",
            dir.path().join(name).display()
        ))
        .unwrap()
    };
    let sim = Sim::start(
        SimBuilder::new()
            .count(4)
            .base_address(random_base())
            .share(smb("share"))
            .share(smb("missing"))
            .boot_hook(hook),
    )
    .await
    .unwrap();
    let cases = [
        (media("deploy.iso", "share", &user, password), None),
        (
            media("deploy.iso", "share", &user, "wrong-password"),
            Some("access denied"),
        ),
        (
            media("nope.iso", "share", &user, password),
            Some("file not found"),
        ),
        (
            media("deploy.iso", "missing", &user, password),
            Some("share not found"),
        ),
    ];
    for (i, (cd, _)) in cases.iter().enumerate() {
        let node = sim.node(i);
        node.update(|s| {
            s.cd = cd.clone();
            s.fd = media("image-n0.img", "share", &user, password);
            s.boot = BootOverride {
                target: BootTarget::Cd,
                enabled: BootEnabled::Once,
                mode: BootMode::Legacy,
            };
        });
        node.power_on();
    }
    // The good node boots the ramdisk, which read the floppy over SMB and calls back.
    tokio::time::timeout(Duration::from_secs(60), ironic.heartbeat.notified())
        .await
        .unwrap();
    let hb = ironic.log.lock().unwrap().heartbeats[0].0.clone();
    assert_eq!(hb["agent_token"], "tok-from-floppy");
    assert_eq!(
        hb["callback_url"],
        format!("http://{}:9999", sim.node(0).address())
    );
    let o = sim.node(0).state().last_boot.unwrap();
    assert!(
        o.ok && o.message.contains("/isolinux/isolinux.cfg"),
        "{o:?}"
    );

    for (i, (_, want)) in cases.iter().enumerate().skip(1) {
        let node = sim.node(i);
        wait_for("boot failure", 60, || {
            node.state().last_boot.is_some_and(|b| !b.ok)
        })
        .await;
        let o = node.state().last_boot.unwrap();
        let want = want.unwrap();
        assert!(
            o.message
                .contains("Virtual media: could not mount CD image")
                && o.message.contains(want),
            "case {i}: {}",
            o.message
        );
        assert!(!o.message.contains("wrong-password"));
        assert_eq!(node.state().power, PowerState::On);
    }
    assert_eq!(ironic.heartbeats(), 1, "only the good node calls back");

    // Downloaded copies and credential files are cleaned up.
    sim.node(0).power_off();
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    sim.shutdown().await;
}
