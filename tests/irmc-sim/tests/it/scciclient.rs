//! Compatibility with the reference client: python-scciclient 0.17.0 (from PyPI, in a
//! venv cached under the target directory) drives simulated iRMCs on port 443 over
//! HTTPS, and the simulator's state is checked after every step.
//!
//! Skips only when python3/pip/PyPI are unavailable (or port 443 cannot be bound) and
//! CI is unset; in CI those fail the test.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use irmc_sim::{Auth, MediaKind, Model, PowerState, ShareType, Sim, SimBuilder};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const VERSION: &str = "0.17.0";

/// Create (once per target dir) a venv with python-scciclient installed.
fn venv() -> Result<PathBuf, String> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("py-venv-scciclient-{VERSION}"));
        // Test binaries run as separate processes (nextest): serialise the install
        // across them with a lock file, so one creates the venv and the others reuse it.
        std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).map_err(|e| e.to_string())?;
        let lock = std::fs::File::create(dir.with_extension("lock")).map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| format!("locking the venv: {e}"))?;
        let marker = dir.join(".installed");
        if marker.exists() {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let st = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("python3 -m venv: {e}"))?;
        if !st.success() {
            return Err(format!("python3 -m venv failed: {st}"));
        }
        let out = std::process::Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "-q",
                "--disable-pip-version-check",
                "--timeout",
                "30",
            ])
            .arg(format!("python-scciclient=={VERSION}"))
            .output()
            .map_err(|e| format!("pip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(&marker, VERSION).map_err(|e| e.to_string())?;
        Ok(dir)
    })
    .clone()
}

struct Py {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Py {
    async fn start(venv: &Path, host: &str, auth: &str) -> Py {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/drive_scciclient.py");
        let mut child = Command::new(venv.join("bin/python"))
            .arg(script)
            .args([host, "admin", "p4ss", auth])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut py = Py {
            child,
            stdin,
            lines,
        };
        let hello = py.read().await;
        assert_eq!(hello["step"], "hello");
        py
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("python step timed out")
            .unwrap()
            .expect("python exited");
        serde_json::from_str(&line).unwrap()
    }

    /// Run a step; returns the JSON line.
    async fn step(&mut self, name: &str) -> Value {
        self.stdin
            .write_all(format!("{name}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let v = self.read().await;
        assert_eq!(v["step"], name, "{v}");
        v
    }

    async fn ok(&mut self, name: &str) -> Value {
        let v = self.step(name).await;
        assert_eq!(v["ok"], true, "step {name} failed: {v}");
        v["result"].clone()
    }

    async fn err(&mut self, name: &str) -> String {
        let v = self.step(name).await;
        assert_eq!(v["ok"], false, "step {name} should fail: {v}");
        v["error"].as_str().unwrap().to_string()
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Start a sim on port 443 of a random loopback address, or None to skip.
async fn start_443(b: SimBuilder) -> Option<Sim> {
    match Sim::start(b.base_address(support::random_base()).https_port(Some(443))).await {
        Ok(s) => Some(s),
        Err(e) if !support::in_ci() => {
            eprintln!("SKIP: cannot bind port 443 ({e})");
            None
        }
        Err(e) => panic!("cannot bind port 443: {e}"),
    }
}

fn get_venv() -> Option<PathBuf> {
    match venv() {
        Ok(v) => Some(v),
        Err(e) if !support::in_ci() => {
            eprintln!("SKIP: python-scciclient {VERSION} unavailable: {e}");
            None
        }
        Err(e) => panic!("python-scciclient {VERSION} unavailable in CI: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scciclient_basic_auth_full_sequence() {
    let Some(venv) = get_venv() else { return };
    let Some(sim) = start_443(SimBuilder::new().credentials("admin", "p4ss")).await else {
        return;
    };
    let node = sim.node(0).clone();
    let host = sim.addresses()[0].ip.to_string();
    assert_eq!(
        sim.addresses()[0].https_url().unwrap(),
        format!("https://{host}")
    );
    let mut py = Py::start(&venv, &host, "basic").await;

    // Eject on a fresh iRMC: the client reads the settings dump, sees empty items and
    // skips the POST.
    let r = py.ok("unmount_cd").await;
    assert_eq!(r["posted"], false);
    let s = node.state();
    assert_eq!(s.counters.settings, 1);
    assert_eq!(s.counters.config_posts, 0);

    let r = py.ok("report").await;
    assert_eq!(r["name"], "iRMC S4");
    assert_eq!(r["firmware"], "7.65F");
    assert_eq!(r["memory_mb"], 8192);
    assert_eq!(r["cpus"], 16);
    assert_eq!(r["virtual_fd"], true);
    assert_eq!(node.state().counters.report, 1);

    py.ok("power_on").await;
    let s = node.state();
    assert_eq!(s.power, PowerState::On);
    assert_eq!(s.boots, 1);
    assert_eq!(s.counters.scci.get("PowerOnCabinet"), Some(&1));

    // Soft power needs the ServerView agent in the OS.
    let e = py.err("soft_off").await;
    assert!(e.contains("STATUS CODE = 31"), "{e}");
    assert!(e.contains("ServerView Agent not connected"), "{e}");
    assert_eq!(node.state().power, PowerState::On);
    node.update(|s| s.serverview_agent = true);
    py.ok("soft_cycle").await;
    let s = node.state();
    assert_eq!((s.power, s.boot_generation), (PowerState::On, 2));
    node.update(|s| s.serverview_agent = true);
    py.ok("soft_off").await;
    assert_eq!(node.state().power, PowerState::Off);

    py.ok("power_on").await;
    py.ok("power_reset").await;
    py.ok("nmi").await;
    let s = node.state();
    assert_eq!((s.power, s.boot_generation), (PowerState::On, 4));
    py.ok("power_cycle").await;
    assert_eq!(node.state().boot_generation, 5);
    py.ok("power_off").await;
    assert_eq!(node.state().power, PowerState::Off);

    // Virtual CD: settings, connect, eject.
    py.ok("cd_set").await;
    let s = node.state();
    assert_eq!(s.cd.server, "127.0.0.1");
    assert_eq!(s.cd.share_name, "share");
    assert_eq!(s.cd.image_name, "deploy.iso");
    assert_eq!(s.cd.share_type, ShareType::Cifs);
    assert_eq!(s.cd.user, "ironic");
    assert_eq!(s.cd.password.expose(), "s3cret");
    assert!(!s.cd.connected);
    assert_eq!(s.counters.scci.get("ConfigSpace"), Some(&9));
    py.ok("mount_cd").await;
    assert!(node.state().cd.connected);
    let before = node.state().counters.settings;
    let r = py.ok("unmount_cd").await;
    assert_eq!(r["posted"], true);
    let s = node.state();
    assert!(!s.cd.connected);
    assert_eq!(s.counters.settings, before + 1);
    assert_eq!(s.counters.scci.get("ConnectRemoteCdImage"), Some(&2));

    // Virtual floppy (S4 7.65F has one).
    py.ok("fd_set").await;
    py.ok("mount_fd").await;
    let s = node.state();
    assert!(s.fd.connected);
    assert_eq!(s.fd.image_name, "image-node.img");
    assert_eq!(s.fd.share_type, ShareType::Nfs);
    py.ok("unmount_fd").await;
    assert!(!node.state().media(MediaKind::Fd).connected);

    let e = py.err("wrong_password").await;
    assert!(e.contains("STATUS CODE = 401"), "{e}");
    assert!(node.state().counters.unauthorized >= 1);

    py.quit().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scciclient_digest_auth_s6_without_floppy() {
    let Some(venv) = get_venv() else { return };
    let b = SimBuilder::new()
        .credentials("admin", "p4ss")
        .auth(Auth::Digest)
        .model(Model::S6);
    let Some(sim) = start_443(b).await else {
        return;
    };
    let node = sim.node(0).clone();
    let host = sim.addresses()[0].ip.to_string();
    let mut py = Py::start(&venv, &host, "digest").await;

    let r = py.ok("report").await;
    assert_eq!(r["name"], "iRMC S6");
    assert_eq!(r["firmware"], "2.50P");
    assert_eq!(r["virtual_fd"], false);

    py.ok("power_on").await;
    assert_eq!(node.state().power, PowerState::On);
    // Digest: every request costs a 401 round trip first (requests does not reuse nonces
    // across separate calls).
    assert!(node.state().counters.unauthorized >= 2);

    let e = py.err("fd_set").await;
    assert!(e.contains("SCCI PROTOCOL ERROR"), "{e}");
    assert!(e.contains("floppy"), "{e}");
    py.ok("cd_set").await;
    py.ok("mount_cd").await;
    assert!(node.state().cd.connected);

    let e = py.err("wrong_password").await;
    assert!(e.contains("STATUS CODE = 401"), "{e}");
    py.quit().await;
    sim.shutdown().await;
}
