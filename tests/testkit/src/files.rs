//! Files a fleet needs and leaves: the demo's deploy ISO and disk image, a loopback
//! HTTP server for them, secret files, and what a share directory holds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};

/// Writes `value` and a newline to `dir/name`, readable by its owner only.
pub fn write_secret(dir: &Path, name: &str, value: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).with_context(|| format!("writing {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}

/// Deterministic, incompressible-looking bytes for the demo disk image.
pub fn demo_image(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A deploy ISO for the simulated servers: a real El Torito ISO (isolinux + GRUB) whose
/// kernel and ramdisk are placeholders: the simulator reads the boot configuration and
/// runs its own simulated ramdisk instead of executing them.
pub fn build_demo_deploy_iso(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("deploy.iso");
    if out.is_file() {
        return Ok(out);
    }
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initrd.img");
    std::fs::write(&kernel, b"simulated deploy kernel\n")?;
    std::fs::write(&initrd, b"simulated deploy ramdisk\n")?;
    let spec = boot_media::DeployIsoSpec {
        kernel,
        ramdisk: initrd,
        params: boot_media::Parameters::default(),
        extra_cmdline: "ipa-debug=1".into(),
        bios: true,
        uefi: true,
        loaders: boot_media::Loaders::default(),
    };
    boot_media::build_deploy_iso(&spec, &out)
        .map_err(|e| anyhow!("building the demo deploy ISO: {e}"))?;
    Ok(out)
}

/// A minimal static file server on loopback for the demo's images.
pub struct FileServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub async fn start(files: Vec<(String, Vec<u8>)>) -> Result<FileServer> {
        use std::sync::Arc;
        let files: Arc<BTreeMap<String, bytes::Bytes>> = Arc::new(
            files
                .into_iter()
                .map(|(n, b)| (format!("/{n}"), bytes::Bytes::from(b)))
                .collect(),
        );
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let files = files.clone();
            async move {
                match files.get(uri.path()) {
                    Some(b) => (axum::http::StatusCode::OK, b.clone()),
                    None => (axum::http::StatusCode::NOT_FOUND, bytes::Bytes::new()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FileServer { addr, task })
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Logical and allocated bytes under a directory, and its file count.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ShareUsage {
    pub files: u64,
    pub bytes: u64,
    pub allocated: u64,
}

/// Walks `dir` (missing or unreadable parts count as empty).
pub fn dir_usage(dir: &Path) -> ShareUsage {
    use std::os::unix::fs::MetadataExt as _;
    let mut u = ShareUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                u.files += 1;
                u.bytes += md.len();
                u.allocated += md.blocks() * 512;
            }
        }
    }
    u
}
