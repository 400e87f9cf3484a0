//! The proof: stock ironic-python-agent (IPA) 13.0.0, installed from PyPI, drives our share
//! agent as a node's deploy ramdisk.
//!
//! The whole system runs as in every scenario (coordinator, share agent, `irmc-sim` for the
//! BMC side), except that the simulator runs no deploy ramdisk of its own
//! (`--external-ramdisk`): it checks the node booted the deploy ISO with its parameter
//! image and serves the parameters it read; the test hands them to the real
//! `ironic-python-agent` process as its kernel command line. IPA runs on this host inside
//! its own PID and mount namespaces (`peers/ipa/run-ipa.sh`):
//!
//! - its install disk is a loop device backed by the simulated node's disk file, presented
//!   (with a fake NIC carrying the node's enrolled MAC) by a small hardware manager
//!   (`peers/ipa/hwm/`, IPA's documented extension point);
//! - its shutdown and clock commands (`poweroff`, `reboot`, `hwclock`, `ntpdate`,
//!   `chronyd`) are shims that record their calls; `/proc/sysrq-trigger` is masked. The
//!   `poweroff` shim powers the simulated server off through the simulator's control API,
//!   as a real poweroff turns the machine off.
//!
//! Needs root (loop devices, namespaces), `unshare`, `losetup`, python3 with venv, curl,
//! qemu-img and parted (`scripts/setup.sh`). Where the host lacks one the test is skipped
//! with a loud reason, and fails when `CI` is set.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use sha2::Digest as _;
use testkit::files::{FileServer, demo_image};
use testkit::observe::http_get_json;
use testkit::{Fleet, spawn_logged};
use vmedia_proto::v1 as pb;

/// The IPA release the proof runs (pinned in `tests/peers/ipa-setup.sh`).
const IPA_VERSION: &str = "13.0.0";

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ipa")
}

/// Skips loudly, or fails under CI, when the host cannot run the peer.
fn skip(reason: &str) -> Result<()> {
    if std::env::var_os("CI").is_some() {
        bail!("stock ironic-python-agent cannot run on this CI machine: {reason}");
    }
    eprintln!("SKIPPED (stock ironic-python-agent {IPA_VERSION}): {reason}");
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(tool);
            f.is_file()
                && std::fs::metadata(&f)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

/// Why this host cannot run IPA as a deploy ramdisk, if it cannot.
fn host_gap() -> Option<String> {
    // /proc/self belongs to this process's effective user.
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return Some("needs root (loop devices, mount and PID namespaces)".into());
    }
    for tool in [
        "unshare", "losetup", "python3", "flock", "curl", "qemu-img", "parted", "sfdisk",
    ] {
        if !on_path(tool) {
            return Some(format!("{tool} not found (scripts/setup.sh installs it)"));
        }
    }
    let ns = StdCommand::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
            "--mount-proc",
        ])
        .arg("true")
        .output();
    match ns {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "PID and mount namespaces are not available (unshare: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// A loop device over a file, detached on drop.
struct LoopDev(String);

impl LoopDev {
    /// `Ok(Err(reason))` when the kernel gives no loop device.
    fn attach(file: &Path) -> Result<std::result::Result<LoopDev, String>> {
        let o = StdCommand::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .context("running losetup")?;
        if !o.status.success() {
            return Ok(Err(format!(
                "no loop device: losetup -f --show: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !dev.starts_with("/dev/loop") {
            bail!("losetup printed {dev:?}, not a loop device");
        }
        Ok(Ok(LoopDev(dev)))
    }

    /// sha256 of the first `len` bytes, read through the block device.
    fn sha256_prefix(&self, len: usize) -> Result<String> {
        let mut f = std::fs::File::open(&self.0).with_context(|| format!("opening {}", self.0))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)
            .with_context(|| format!("reading {len} bytes of {}", self.0))?;
        Ok(hex::encode(sha2::Sha256::digest(&buf)))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = StdCommand::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Installs (or finds) the cached IPA venv.
fn ipa_venv() -> Result<PathBuf> {
    // One venv for every test that needs IPA (the simulator's validation check too).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers/ipa-setup.sh");
    let o = StdCommand::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !o.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix("venv="))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("{} printed no venv= line", script.display()))
}

/// A whole-disk image: deterministic bytes with an MBR partition table (IPA checks that a
/// written disk has partitions; MBR, unlike GPT, has no backup table IPA would move to the
/// end of a larger disk, so the disk's first bytes must equal the image).
fn whole_disk_image(dir: &Path, len: usize) -> Result<Vec<u8>> {
    let path = dir.join("whole-disk.img");
    std::fs::write(&path, demo_image(len))?;
    let mut sfdisk = StdCommand::new("sfdisk")
        .args(["--quiet", "--wipe", "never"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running sfdisk")?;
    sfdisk
        .stdin
        .take()
        .ok_or_else(|| anyhow!("sfdisk has no stdin"))?
        .write_all(b"label: dos\nstart=2048, type=83\n")?;
    let o = sfdisk.wait_with_output()?;
    ensure!(
        o.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(std::fs::read(&path)?)
}

/// Writes `text` to a file only its owner can read (the command line carries the agent
/// token).
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// What one stock-IPA deploy needs from the test.
struct IpaRun {
    dir: PathBuf,
    /// Loopback port of IPA's agent API.
    port: u16,
}

impl IpaRun {
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.join("shim-calls")).unwrap_or_default()
    }
    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("write_image.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Waits until the simulator has booted node 0's deploy ISO and serves its parameters.
async fn ramdisk_params(f: &Fleet, limit: Duration) -> Result<BTreeMap<String, String>> {
    let control = f.sims[0]
        .control
        .clone()
        .ok_or_else(|| anyhow!("the simulator has no control API"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(v) = http_get_json(&control, "/nodes/0/ramdisk-params").await
            && let Some(p) = v.get("params").and_then(|p| p.as_object())
        {
            return Ok(p
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect());
        }
        if Instant::now() > deadline {
            let node = f.sim_node(0).await.unwrap_or_default();
            bail!(
                "node 0 did not boot the deploy ISO within {limit:?}: last boot {}",
                node.pointer("/state/last_boot")
                    .unwrap_or(&serde_json::Value::Null)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts stock IPA as node 0's deploy ramdisk with the parameters its CD boot read.
async fn start_ipa(
    f: &Fleet,
    venv: &Path,
    disk: &LoopDev,
    mac: &str,
    boot_mode: &str,
    params: &BTreeMap<String, String>,
) -> Result<(testkit::Proc, IpaRun)> {
    let dir = f.spec.work_dir.join("ipa");
    std::fs::create_dir_all(&dir)?;
    // The kernel command line the deploy ISO and its parameter image gave the node.
    let cmdline = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    write_private(&dir.join("cmdline"), &format!("{cmdline}\n"))?;
    // What a ramdisk image carries in /etc/ironic-python-agent: where to listen on this
    // shared host, no wait for disks IPA's generic manager would look for, and an NTP
    // server so the clock commands run (against their shims).
    let port = testkit::free_port()?.port();
    let conf = format!(
        "[DEFAULT]\nlisten_host = 127.0.0.1\nlisten_port = {port}\nadvertise_host = 127.0.0.1\n\
         advertise_port = {port}\ndisk_wait_attempts = 0\nntp_server = 127.0.0.1\n\
         lookup_timeout = 300\n"
    );
    std::fs::write(dir.join("ipa.conf"), conf)?;
    let control = f.sims[0]
        .control
        .clone()
        .ok_or_else(|| anyhow!("the simulator has no control API"))?;
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--propagation",
        "private",
        "--mount-proc",
    ])
    .arg(peers_dir().join("run-ipa.sh"))
    .arg(venv)
    .arg(dir.join("cmdline"))
    .arg(dir.join("ipa.conf"))
    .arg(&dir)
    .env("VMEDIA_IPA_DISK", &disk.0)
    .env("VMEDIA_IPA_MAC", mac)
    .env("VMEDIA_IPA_BOOT_MODE", boot_mode)
    .env("VMEDIA_IPA_RECORD", dir.join("write_image.jsonl"))
    .env(
        "VMEDIA_IPA_POWER_OFF_URL",
        format!("http://{control}/nodes/0/power"),
    );
    let logs = f.spec.work_dir.join("logs");
    let proc = spawn_logged(cmd, "ironic-python-agent", &logs)?;
    // IPA's request log prints the agent token: for this user's eyes only.
    std::fs::set_permissions(
        &proc.log,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    Ok((proc, IpaRun { dir, port }))
}

/// Everything one scenario sets up; torn down by [`Stage::finish`].
struct Stage {
    fleet: Fleet,
    disk: LoopDev,
    venv: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stage {
    /// `Ok(None)`: skipped (reason printed).
    async fn start(disk_bytes: u64) -> Result<Option<Stage>> {
        if let Some(gap) = host_gap() {
            skip(&gap)?;
            return Ok(None);
        }
        let venv = ipa_venv()?;
        let (mut spec, dir) = e2e::spec(1, 1)?;
        let disk_dir = spec.work_dir.join("disks");
        std::fs::create_dir_all(&disk_dir)?;
        let disk_file = disk_dir.join("node-0.img");
        std::fs::File::create(&disk_file)?.set_len(disk_bytes)?;
        let disk = match LoopDev::attach(&disk_file)? {
            Ok(d) => d,
            Err(reason) => {
                skip(&reason)?;
                return Ok(None);
            }
        };
        spec.sim_args.extend([
            "--external-ramdisk".to_string(),
            "--disk-dir".to_string(),
            disk_dir.display().to_string(),
        ]);
        let fleet = e2e::start(spec).await?;
        Ok(Some(Stage {
            fleet,
            disk,
            venv,
            _dir: dir,
        }))
    }

    async fn finish(self, ipa: Option<testkit::Proc>) {
        if let Some(mut p) = ipa {
            p.stop(Duration::from_secs(3)).await;
        }
        self.fleet.shutdown().await;
        drop(self.disk);
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("kept {}", self._dir.keep().display());
        }
    }
}

/// Enrolls node 0 with `instance_info` and boot mode, makes it available and deploys it.
async fn enroll_and_deploy(
    f: &Fleet,
    instance_info: &[(&str, String)],
    boot_mode: &str,
) -> Result<(String, String)> {
    let mut req: pb::CreateNodeRequest = f.node_request(0);
    for (k, v) in instance_info {
        req.instance_info.insert((*k).to_string(), v.clone());
    }
    req.properties
        .insert("capabilities".into(), format!("boot_mode:{boot_mode}"));
    let mac = req
        .macs
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("node request has no MAC"))?;
    let uuid = f
        .nodes_client()
        .await?
        .create_node(req)
        .await
        .map_err(|s| anyhow!("enrolling node 0: {}", s.message()))?
        .into_inner()
        .uuid;
    f.make_available(std::slice::from_ref(&uuid), e2e::SETTLE, |_, _| {})
        .await?;
    f.bulk(std::slice::from_ref(&uuid), "deploy").await?;
    Ok((uuid, mac))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_ipa_whole_disk_deploy() -> Result<()> {
    let t0 = Instant::now();
    let Some(stage) = Stage::start(16 << 20).await? else {
        return Ok(());
    };
    let setup_s = t0.elapsed().as_secs_f64();
    let mut ipa = None;
    let result = async {
        let f = &stage.fleet;
        let image = whole_disk_image(&f.spec.work_dir, 4 << 20)?;
        let image_sha256 = hex::encode(sha2::Sha256::digest(&image));
        let image_len = image.len();
        let images = FileServer::start(vec![("whole-disk.img".to_string(), image)]).await?;
        let url = format!("http://{}/whole-disk.img", images.addr);
        let (uuid, mac) = enroll_and_deploy(
            f,
            &[
                ("image_source", url),
                ("image_checksum", image_sha256.clone()),
                ("image_disk_format", "raw".to_string()),
            ],
            "bios",
        )
        .await?;
        let t_deploy = Instant::now();
        let params = ramdisk_params(f, Duration::from_secs(120)).await?;
        ensure!(
            params.get("ipa-agent-token").is_some_and(|t| t.len() >= 32)
                && params.contains_key("ipa-api-url"),
            "the parameter image gave IPA no api url or agent token: keys {:?}",
            params.keys().collect::<Vec<_>>()
        );
        let (proc, run) = start_ipa(f, &stage.venv, &stage.disk, &mac, "bios", &params).await?;
        let log = proc.log.clone();
        ipa = Some(proc);
        let nodes = f
            .wait_until(
                e2e::SETTLE,
                |n| n.provision_state == "active" || testkit::is_failed(n),
                |_| {},
            )
            .await?;
        let deploy_s = t_deploy.elapsed().as_secs_f64();
        let n = &nodes[0];
        let ipa_log = std::fs::read_to_string(&log).unwrap_or_default();
        ensure!(
            n.provision_state == "active" && n.last_error.is_empty(),
            "node ended {} ({}); IPA log {}",
            n.provision_state,
            n.last_error,
            log.display()
        );

        // IPA's side of the conversation, from its own log.
        for (what, needle) in [
            ("lookup", format!("Lookup succeeded, node UUID is {uuid}")),
            ("heartbeat", "heartbeat successful".to_string()),
            (
                "deploy steps",
                "Synchronous command get_deploy_steps completed".to_string(),
            ),
            (
                "write_image",
                "Asynchronous command execute_deploy_step completed".to_string(),
            ),
            ("image written", format!("written to device {}", stage.disk.0)),
            (
                "power-off request",
                "Asynchronous command power_off completed".to_string(),
            ),
        ] {
            ensure!(
                ipa_log.contains(&needle),
                "IPA's log shows no {what} ({needle:?}); see {}",
                log.display()
            );
        }
        // What IPA was asked to write, as its write_image step received it.
        let records = run.records();
        let info = records
            .first()
            .and_then(|r| r.get("image_info"))
            .ok_or_else(|| anyhow!("IPA's write_image step never ran"))?;
        ensure!(
            info.get("checksum").and_then(|c| c.as_str()) == Some(image_sha256.as_str()),
            "image_info carries checksum {:?}",
            info.get("checksum")
        );
        // The disk holds the image.
        let on_disk = stage.disk.sha256_prefix(image_len)?;
        ensure!(
            on_disk == image_sha256,
            "the loop device's first {image_len} bytes hash to {on_disk}, the image to {image_sha256}"
        );
        // IPA powered the node off through its shim, never the host; its clock commands
        // also ran against shims.
        let calls = run.calls();
        ensure!(
            calls.lines().any(|l| l.starts_with("poweroff")),
            "IPA never ran poweroff: shim calls {calls:?}"
        );
        ensure!(
            calls
                .lines()
                .any(|l| l.starts_with("chronyd") || l.starts_with("ntpdate")),
            "IPA never ran its clock sync: shim calls {calls:?}"
        );
        ensure!(
            calls.lines().any(|l| l.starts_with("hwclock")),
            "IPA never wrote the hardware clock (before powering off): shim calls {calls:?}"
        );
        ensure!(
            !calls.lines().any(|l| l.starts_with("reboot")),
            "IPA asked for a reboot: shim calls {calls:?}"
        );
        let agent_log =
            std::fs::read_to_string(f.spec.work_dir.join("logs/share-1.log")).unwrap_or_default();
        ensure!(
            !agent_log.contains("forcing it"),
            "the share agent had to force the power off: IPA's own power off did not land"
        );
        // Every job reached IPA at the first try (its auto-TLS certificate included).
        if let Some(l) = agent_log.lines().find(|l| l.contains(" failed job=")) {
            bail!("a share agent job failed on the way: {l}");
        }
        // The simulated server then boots the written disk (after its boot delay).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sim = f.sim_node(0).await?;
            let last = sim
                .pointer("/state/last_boot/message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            if last.contains("OS running from local disk") {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the node did not boot its disk: {last}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        images.stop();
        eprintln!(
            "stock IPA {IPA_VERSION} whole-disk deploy: setup {setup_s:.1}s, deploy (verb to active) {deploy_s:.1}s, total {:.1}s; IPA API port {}",
            t0.elapsed().as_secs_f64(),
            run.port
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    stage.finish(ipa).await;
    result
}

/// Whether partition device nodes (`/dev/loopNp1`) appear for a partitioned loop device
/// on this machine (containers often have loop devices without partition scanning).
fn partition_nodes_appear(dir: &Path) -> Result<bool> {
    let file = dir.join("partscan-probe.img");
    std::fs::File::create(&file)?.set_len(8 << 20)?;
    let mut sfdisk = StdCommand::new("sfdisk")
        .args(["--quiet"])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    sfdisk
        .stdin
        .take()
        .ok_or_else(|| anyhow!("sfdisk has no stdin"))?
        .write_all(b"label: dos\nstart=2048, type=83\n")?;
    ensure!(sfdisk.wait()?.success(), "sfdisk could not label the probe");
    let o = StdCommand::new("losetup")
        .args(["-f", "-P", "--show"])
        .arg(&file)
        .output()?;
    if !o.status.success() {
        return Ok(false);
    }
    let dev = LoopDev(String::from_utf8_lossy(&o.stdout).trim().to_string());
    let part = format!("{}p1", dev.0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if Path::new(&part).exists() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

/// The partition sizes, config drive and boot mode the node below is enrolled with.
const ROOT_GB: u64 = 1;
const SWAP_MB: u64 = 64;
const EPHEMERAL_GB: u64 = 1;
const EPHEMERAL_FORMAT: &str = "ext4";

/// A config drive as Ironic, MAAS and Tinkerbell give it: a JSON object.
fn configdrive_json() -> String {
    serde_json::json!({
        "meta_data": {
            "uuid": "4a9b6f5e-0d1c-4f7a-9a37-3d8f0c1f2b11",
            "hostname": "stock-ipa-node",
            "name": "stock-ipa-node",
            "public_keys": {"default": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvmedia stock-ipa"},
        },
        "user_data": "#cloud-config\nruncmd:\n  - echo stock-ipa\n",
        "network_data": {
            "links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
            "networks": [{"id": "net0", "link": "eth0", "type": "ipv4_dhcp"}],
            "services": [],
        },
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_ipa_accepts_partition_image_info() -> Result<()> {
    let t0 = Instant::now();
    // A sparse disk large enough for root, swap, ephemeral and the config drive.
    let Some(stage) = Stage::start(4 << 30).await? else {
        return Ok(());
    };
    let mut ipa = None;
    let result = async {
        let f = &stage.fleet;
        let real_partitions = partition_nodes_appear(&f.spec.work_dir)?;
        if real_partitions {
            // Writing a partition image needs a partitioned install disk whose partition
            // nodes appear; this scenario still checks image_info with IPA's own code.
            eprintln!("stock IPA partition scenario: partition device nodes appear on this machine; checking image_info with IPA's own code");
        } else {
            eprintln!("stock IPA partition scenario: partition device nodes (/dev/loopNpK) cannot appear on this machine; checking image_info with IPA's own validation and partition-argument code");
        }
        let image = demo_image(2 << 20);
        let image_sha256 = hex::encode(sha2::Sha256::digest(&image));
        let images = FileServer::start(vec![
            ("root.img".to_string(), image),
            ("vmlinuz".to_string(), b"instance kernel\n".to_vec()),
            ("initrd".to_string(), b"instance ramdisk\n".to_vec()),
        ])
        .await?;
        let base = format!("http://{}", images.addr);
        let (_uuid, mac) = enroll_and_deploy(
            f,
            &[
                ("image_source", format!("{base}/root.img")),
                ("image_checksum", image_sha256),
                ("image_disk_format", "raw".to_string()),
                ("kernel", format!("{base}/vmlinuz")),
                ("ramdisk", format!("{base}/initrd")),
                ("root_gb", ROOT_GB.to_string()),
                ("swap_mb", SWAP_MB.to_string()),
                ("ephemeral_gb", EPHEMERAL_GB.to_string()),
                ("ephemeral_format", EPHEMERAL_FORMAT.to_string()),
                ("preserve_ephemeral", "false".to_string()),
                ("configdrive", configdrive_json()),
            ],
            "uefi",
        )
        .await?;
        let params = ramdisk_params(f, Duration::from_secs(120)).await?;
        let (proc, run) = start_ipa(f, &stage.venv, &stage.disk, &mac, "uefi", &params).await?;
        let log = proc.log.clone();
        ipa = Some(proc);
        // Until IPA's write_image step has received its arguments.
        let deadline = Instant::now() + e2e::SETTLE;
        while run.records().is_empty() {
            let nodes = f.list_all().await?;
            if let Some(n) = nodes.iter().find(|n| testkit::is_failed(n)) {
                bail!(
                    "the deploy failed before IPA's write_image ran: {} ({}); IPA log {}",
                    n.provision_state,
                    n.last_error,
                    log.display()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "IPA's write_image step never ran; IPA log {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        images.stop();
        let record = run.dir.join("write_image.jsonl");
        let o = StdCommand::new(stage.venv.join("bin/python"))
            .arg(peers_dir().join("check_image_info.py"))
            .arg(&record)
            .env("PYTHONPATH", peers_dir().join("hwm"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("VMEDIA_IPA_DISK", &stage.disk.0)
            .output()
            .context("running check_image_info.py")?;
        ensure!(
            o.status.success(),
            "check_image_info.py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        let verdict: serde_json::Value = serde_json::from_str(
            out.lines()
                .next()
                .ok_or_else(|| anyhow!("check_image_info.py printed nothing"))?,
        )?;
        eprintln!("IPA's verdict on the partition image_info we send: {verdict}");
        let mut problems = Vec::new();
        if verdict["validation"] != "ok" {
            problems.push(format!(
                "IPA's validation refuses it: {}",
                verdict["validation"]
            ));
        }
        if let Some(m) = verdict["missing"].as_array().filter(|m| !m.is_empty()) {
            problems.push(format!(
                "IPA's partition code reads fields we do not send: {}",
                m.iter()
                    .filter_map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let w = &verdict["work_on_disk"];
        let want = [
            ("root_mb", serde_json::json!(ROOT_GB * 1024)),
            ("swap_mb", serde_json::json!(SWAP_MB)),
            ("ephemeral_mb", serde_json::json!(EPHEMERAL_GB * 1024)),
            ("ephemeral_format", serde_json::json!(EPHEMERAL_FORMAT)),
            ("preserve_ephemeral", serde_json::json!(false)),
            ("boot_mode", serde_json::json!("uefi")),
            ("disk_label", serde_json::json!("gpt")),
            ("configdrive", serde_json::json!(true)),
        ];
        for (k, v) in want {
            // Numbers may travel as numbers or numeric strings; IPA converts them.
            let got = &w[k];
            let same = got == &v
                || (got.as_str().and_then(|s| s.parse::<u64>().ok()) == v.as_u64()
                    && v.as_u64().is_some());
            if !same {
                problems.push(format!(
                    "IPA's partitioner would get {k} = {got}, the node asks for {v}"
                ));
            }
        }
        match verdict["configdrive"]["label"].as_str() {
            Some("config-2") => {}
            _ => problems.push(format!(
                "IPA cannot use the config drive we send as a config-2 ISO: {}",
                verdict["configdrive"]
            )),
        }
        // Real IPA's own verdict on the same step, when it has come to one.
        let ipa_log = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = ipa_log
            .lines()
            .find(|l| l.contains("Command failed: prepare_image"))
        {
            problems.push(format!("the running IPA says: {}", line.trim()));
        }
        ensure!(
            problems.is_empty(),
            "stock IPA {IPA_VERSION} does not accept the partition image_info we send:\n  - {}",
            problems.join("\n  - ")
        );
        eprintln!(
            "stock IPA {IPA_VERSION} partition scenario: {:.1}s",
            t0.elapsed().as_secs_f64()
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    stage.finish(ipa).await;
    result
}
