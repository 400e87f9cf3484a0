//! Test code shared by the boot_* and ramdisk_* tests: real-tool media builders (xorriso,
//! mkfs.vfat, mcopy), random loopback addresses, and a small fake Ironic API + image server.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// True when `tool` is on PATH. Missing tools skip the test outside CI and fail it in CI.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("required tool {tool} is missing (CI is set, so this is a failure)");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Resolve a tool that may live in an sbin directory not on PATH.
pub fn tool_path(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(tool)
}

pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A random 127.X.Y.1 base so parallel tests never share addresses.
pub fn random_base() -> Ipv4Addr {
    let x: u8 = rand::random_range(2..=254);
    let y: u8 = rand::random_range(0..=254);
    Ipv4Addr::new(127, x, y, 1)
}

pub const ISOLINUX_CFG: &str = "SERIAL 0 115200\nDEFAULT deploy\nTIMEOUT 5\nPROMPT 0\n\nLABEL deploy\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd boot_method=vmedia bios_marker=1 --\n";
pub const GRUB_CFG: &str = "set default=\"0\"\nset timeout=\"5\"\nmenuentry \"Deploy Image\" {\n  linux /vmlinuz boot_method=vmedia uefi_marker=1 --\n  initrd /initrd\n}\n";

/// What goes into a test ISO.
pub struct IsoSpec<'a> {
    pub isolinux: Option<&'a str>,
    pub grub: Option<&'a str>,
    pub bios_entry: bool,
    pub efi_entry: bool,
    /// Rock Ridge + Joliet trees as well as the primary one.
    pub rock_ridge: bool,
}

impl Default for IsoSpec<'_> {
    fn default() -> Self {
        IsoSpec {
            isolinux: Some(ISOLINUX_CFG),
            grub: Some(GRUB_CFG),
            bios_entry: true,
            efi_entry: true,
            rock_ridge: true,
        }
    }
}

/// Build an ISO with xorriso. Boot images are placeholder bytes: the firmware simulation
/// only reads the El Torito catalog, never executes them.
pub fn build_iso(work: &Path, out: &Path, spec: &IsoSpec<'_>) {
    let root = work.join(format!("isoroot-{}", rand::random::<u32>()));
    std::fs::create_dir_all(root.join("isolinux")).unwrap();
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::write(root.join("vmlinuz"), vec![0x4Bu8; 4096]).unwrap();
    std::fs::write(root.join("initrd"), vec![0x1Fu8; 8192]).unwrap();
    std::fs::write(root.join("isolinux/isolinux.bin"), vec![0u8; 2048]).unwrap();
    std::fs::write(root.join("efiboot.img"), vec![0u8; 64 * 1024]).unwrap();
    if let Some(c) = spec.isolinux {
        std::fs::write(root.join("isolinux/isolinux.cfg"), c).unwrap();
    }
    if let Some(c) = spec.grub {
        std::fs::write(root.join("boot/grub/grub.cfg"), c).unwrap();
    }
    let mut cmd = Command::new("xorriso");
    cmd.args(["-as", "mkisofs", "-quiet", "-V", "VMEDIA_BOOT_ISO", "-o"])
        .arg(out);
    if spec.rock_ridge {
        cmd.args(["-R", "-J"]);
    }
    if spec.bios_entry {
        cmd.args([
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
        ]);
    }
    if spec.efi_entry {
        if spec.bios_entry {
            cmd.arg("-eltorito-alt-boot");
        } else {
            cmd.args(["-c", "isolinux/boot.cat"]);
        }
        cmd.args(["-e", "efiboot.img", "-no-emul-boot"]);
    }
    cmd.arg(&root);
    run(&mut cmd);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A 1.44 MB floppy labelled `label` holding `parameters.txt` (mkfs.vfat + mcopy).
pub fn build_floppy(work: &Path, out: &Path, label: &str, params: &str) {
    let _ = std::fs::remove_file(out);
    run(Command::new(tool_path("mkfs.vfat"))
        .args(["-C", "-n", label])
        .arg(out)
        .arg("1440"));
    let src = work.join(format!("parameters-{}.txt", rand::random::<u32>()));
    std::fs::write(&src, params).unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(out)
        .arg(&src)
        .arg("::parameters.txt"));
    std::fs::remove_file(&src).unwrap();
}

/// A partitioned disk image: MBR with one FAT16 partition at 1 MiB labelled `label`.
pub fn build_partitioned_hd(work: &Path, out: &Path, label: &str, params: &str) {
    let part = work.join(format!("part-{}.img", rand::random::<u32>()));
    let part_sectors: u32 = 16 * 2048; // 16 MiB
    run(Command::new(tool_path("mkfs.vfat"))
        .args(["-C", "-F", "16", "-n", label])
        .arg(&part)
        .arg((part_sectors / 2).to_string()));
    let src = work.join(format!("parameters-{}.txt", rand::random::<u32>()));
    std::fs::write(&src, params).unwrap();
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&part)
        .arg(&src)
        .arg("::parameters.txt"));
    // A second file with a long name exercises multi-entry LFN chains.
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&part)
        .arg(&src)
        .arg("::a-rather-long-file-name-for-lfn.txt"));
    std::fs::remove_file(&src).unwrap();
    let mut img = vec![0u8; 2048 * 512];
    let e = 446;
    img[e + 4] = 0x0E; // FAT16 LBA
    img[e + 8..e + 12].copy_from_slice(&2048u32.to_le_bytes());
    img[e + 12..e + 16].copy_from_slice(&part_sectors.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img.extend_from_slice(&std::fs::read(&part).unwrap());
    std::fs::write(out, img).unwrap();
    std::fs::remove_file(&part).unwrap();
}

/// Behaviour of the fake Ironic API.
#[derive(Clone, Debug)]
pub struct IronicConfig {
    /// Lookups answered 404 before the first 200.
    pub lookup_404s: usize,
    /// `config.agent_token` in the lookup reply.
    pub lookup_token: String,
    pub heartbeat_timeout: u64,
    pub node_uuid: String,
    /// Served at `/image.raw`.
    pub image: Vec<u8>,
}

impl Default for IronicConfig {
    fn default() -> Self {
        IronicConfig {
            lookup_404s: 2,
            lookup_token: "******".into(),
            heartbeat_timeout: 300,
            node_uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
            image: Vec::new(),
        }
    }
}

/// What the fake Ironic saw.
#[derive(Debug, Default)]
pub struct IronicLog {
    pub lookups: Vec<(String, Option<String>)>,
    pub heartbeats: Vec<(Value, Option<String>)>,
    /// When each heartbeat arrived.
    pub heartbeat_times: Vec<tokio::time::Instant>,
    pub image_gets: usize,
    pub root_gets: usize,
}

/// A fake Ironic API (version root, lookup, heartbeat) plus an image server.
pub struct FakeIronic {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<IronicLog>>,
    pub heartbeat: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIronic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIronic {
    pub async fn start(cfg: IronicConfig) -> FakeIronic {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(IronicLog::default()));
        let heartbeat = Arc::new(Notify::new());
        let cfg = Arc::new(cfg);
        let (l2, h2) = (log.clone(), heartbeat.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let (log, hb, cfg) = (l2.clone(), h2.clone(), cfg.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, hb, cfg) = (log.clone(), hb.clone(), cfg.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or_default().to_string();
                            let version = req
                                .headers()
                                .get("X-OpenStack-Ironic-API-Version")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let (status, out): (u16, Bytes) = if path == "/" {
                                log.lock().unwrap().root_gets += 1;
                                (200, Bytes::from(json!({"default_version": {"id": "v1", "version": "1.99", "min_version": "1.1", "status": "CURRENT"}}).to_string()))
                            } else if path == "/v1/lookup" {
                                let n = {
                                    let mut l = log.lock().unwrap();
                                    l.lookups.push((query.clone(), version));
                                    l.lookups.len()
                                };
                                if n <= cfg.lookup_404s {
                                    (
                                        404,
                                        Bytes::from(
                                            r#"{"error_message": "{\"faultstring\": \"Node not found\"}"}"#,
                                        ),
                                    )
                                } else {
                                    (200, Bytes::from(json!({
                                        "node": {"uuid": cfg.node_uuid, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
                                        "config": {"heartbeat_timeout": cfg.heartbeat_timeout, "agent_token": cfg.lookup_token, "agent_token_required": true, "agent_md5_checksum_enable": true},
                                    }).to_string()))
                                }
                            } else if path.starts_with("/v1/heartbeat/") {
                                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let mut l = log.lock().unwrap();
                                l.heartbeats.push((v, version));
                                l.heartbeat_times.push(tokio::time::Instant::now());
                                drop(l);
                                hb.notify_one();
                                (202, Bytes::new())
                            } else if path == "/image.raw" {
                                log.lock().unwrap().image_gets += 1;
                                (200, Bytes::from(cfg.image.clone()))
                            } else {
                                (404, Bytes::new())
                            };
                            let mut r = hyper::Response::new(Full::new(out));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        FakeIronic {
            addr,
            log,
            heartbeat,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn heartbeats(&self) -> usize {
        self.log.lock().unwrap().heartbeats.len()
    }
}

/// Wait until `f` holds, polling; panics with `what` after `secs` (tokio time).
pub async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
