//! "Mounting" a virtual drive's image the way the iRMC would: resolve server + share
//! through the share map, check the share credentials, and open the image file.
//!
//! Two back ends:
//! - a local directory standing for the share (`SERVER/SHARE=DIR`): credentials are
//!   checked against the entry's (CIFS only; NFS has no user authentication);
//! - a real Samba server (`smb://HOST:PORT/SHARE=DIR` entries): the image is fetched with
//!   `smbclient` using the credentials the iRMC was given, so Samba itself decides; this
//!   proves the export, the credentials and the file name from the BMC's side. The
//!   password goes through a 0600 authentication file, never the command line.

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::node::{MediaKind, MediaSettings, ShareType};
use crate::{ShareMap, ShareMapEntry};

/// Why a virtual drive could not be mounted (the iRMC's view).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MountReason {
    #[error("access denied")]
    AccessDenied,
    #[error("share not found")]
    NoShare,
    #[error("file not found")]
    NotFound,
    #[error("invalid image name {0:?}")]
    BadName(String),
    #[error("drive is not configured (server, share or image name empty)")]
    NotConfigured,
    #[error("{0}")]
    Io(String),
}

/// Human name of a drive in messages ("CD", "FD", "HD").
pub fn drive_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Cd => "CD",
        MediaKind::Fd => "FD",
        MediaKind::Hd => "HD",
    }
}

/// Where the image lives, as the BMC's log shows it: `//server/share/image` for CIFS,
/// `server:share/image` for NFS.
pub fn location(m: &MediaSettings) -> String {
    let share = m.share_name.trim_matches('/');
    let image = m.image_name.trim_start_matches('/');
    match m.share_type {
        ShareType::Cifs => format!("//{}/{share}/{image}", m.server),
        ShareType::Nfs => format!("{}:/{share}/{image}", m.server),
    }
}

/// A mounted image: an open file, removed afterwards when it is a downloaded copy.
#[derive(Debug)]
pub struct MountedImage {
    pub file: File,
    pub path: PathBuf,
    temp: bool,
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Options for the SMB back end.
#[derive(Clone, Debug)]
pub struct SmbOptions {
    /// The `smbclient` binary.
    pub smbclient: PathBuf,
    /// Where downloaded images and the authentication file go.
    pub scratch: PathBuf,
    /// Upper bound for one `smbclient` run.
    pub timeout: Duration,
}

impl Default for SmbOptions {
    fn default() -> Self {
        SmbOptions {
            smbclient: PathBuf::from("smbclient"),
            scratch: std::env::temp_dir(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// The image path relative to the share, refusing anything that could leave it.
fn relative_image(name: &str) -> Result<PathBuf, MountReason> {
    let bad = || MountReason::BadName(name.to_string());
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
        return Err(bad());
    }
    let p = Path::new(name.trim_start_matches('/'));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Mount the image a drive with settings `m` points at.
pub async fn mount(
    m: &MediaSettings,
    shares: &ShareMap,
    smb: &SmbOptions,
) -> Result<MountedImage, MountReason> {
    if m.is_incomplete() {
        return Err(MountReason::NotConfigured);
    }
    let rel = relative_image(&m.image_name)?;
    let entry = shares
        .resolve(&m.server, &m.share_name)
        .ok_or(MountReason::NoShare)?;
    match entry.scheme.as_deref() {
        Some("smb") | Some("cifs") => {
            if m.share_type != ShareType::Cifs {
                // The server does not export this share over NFS.
                return Err(MountReason::NoShare);
            }
            fetch_smb(entry, m, &rel, smb).await
        }
        _ => open_local(entry, m, &rel),
    }
}

fn open_local(
    entry: &ShareMapEntry,
    m: &MediaSettings,
    rel: &Path,
) -> Result<MountedImage, MountReason> {
    if m.share_type == ShareType::Cifs
        && let Some(user) = &entry.user
    {
        let pw_ok = entry
            .password
            .as_ref()
            .map(|p| p.expose() == m.password.expose())
            .unwrap_or(true);
        if !user.eq_ignore_ascii_case(&m.user) || !pw_ok {
            return Err(MountReason::AccessDenied);
        }
    }
    if !entry.dir.is_dir() {
        return Err(MountReason::NoShare);
    }
    let path = entry.dir.join(rel);
    match File::open(&path) {
        Ok(file) => {
            let is_file = file.metadata().map(|md| md.is_file()).unwrap_or(false);
            if !is_file {
                return Err(MountReason::NotFound);
            }
            Ok(MountedImage {
                file,
                path,
                temp: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MountReason::NotFound),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(MountReason::AccessDenied)
        }
        Err(e) => Err(MountReason::Io(e.to_string())),
    }
}

/// Split `host[:port]`.
fn host_port(server: &str) -> (String, u16) {
    match server.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse() {
            Ok(port) => (h.to_string(), port),
            Err(_) => (server.to_string(), 445),
        },
        _ => (server.to_string(), 445),
    }
}

fn scratch_name(scratch: &Path, what: &str) -> PathBuf {
    let r: u64 = rand::random();
    scratch.join(format!("irmc-sim-{}-{r:016x}.{what}", std::process::id()))
}

/// Classify smbclient's output (NT status codes) into what an iRMC would report.
fn classify_smb(output: &str) -> MountReason {
    let o = output.to_ascii_uppercase();
    if o.contains("NT_STATUS_LOGON_FAILURE")
        || o.contains("NT_STATUS_ACCESS_DENIED")
        || o.contains("NT_STATUS_WRONG_PASSWORD")
        || o.contains("NT_STATUS_ACCOUNT_")
    {
        MountReason::AccessDenied
    } else if o.contains("NT_STATUS_BAD_NETWORK_NAME") {
        MountReason::NoShare
    } else if o.contains("NT_STATUS_OBJECT_NAME_NOT_FOUND")
        || o.contains("NT_STATUS_OBJECT_PATH_NOT_FOUND")
        || o.contains("NT_STATUS_NO_SUCH_FILE")
    {
        MountReason::NotFound
    } else {
        let line = output
            .lines()
            .find(|l| l.contains("NT_STATUS"))
            .unwrap_or(output);
        MountReason::Io(format!("SMB: {}", line.trim()))
    }
}

async fn fetch_smb(
    entry: &ShareMapEntry,
    m: &MediaSettings,
    rel: &Path,
    smb: &SmbOptions,
) -> Result<MountedImage, MountReason> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let (host, port) = host_port(&entry.server);
    let share = entry.share.trim_matches('/');
    let remote = rel.to_string_lossy().replace('/', "\\");
    let local = scratch_name(&smb.scratch, "img");
    let auth = scratch_name(&smb.scratch, "auth");
    // The authentication file keeps the password off the command line (and out of `ps`).
    let write_auth = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&auth)?;
        writeln!(f, "username = {}", m.user)?;
        writeln!(f, "password = {}", m.password.expose())?;
        if !m.domain.is_empty() {
            writeln!(f, "domain = {}", m.domain)?;
        }
        Ok(())
    };
    write_auth().map_err(|e| MountReason::Io(format!("cannot write SMB credentials file: {e}")))?;
    let mut cmd = tokio::process::Command::new(&smb.smbclient);
    cmd.arg(format!("//{host}/{share}"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-A")
        .arg(&auth)
        .arg("-c")
        .arg(format!("get \"{remote}\" \"{}\"", local.display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(smb.timeout, cmd.output()).await;
    let _ = std::fs::remove_file(&auth);
    let out = match out {
        Err(_) => {
            let _ = std::fs::remove_file(&local);
            return Err(MountReason::Io(format!(
                "SMB server {host}:{port} did not answer in time"
            )));
        }
        Ok(Err(e)) => return Err(MountReason::Io(format!("cannot run smbclient: {e}"))),
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = if out.status.success() && !text.contains("NT_STATUS_") {
        File::open(&local).ok()
    } else {
        None
    };
    match file {
        Some(file) => Ok(MountedImage {
            file,
            path: local,
            temp: true,
        }),
        None => {
            let _ = std::fs::remove_file(&local);
            Err(classify_smb(&text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_stay_inside_the_share() {
        assert_eq!(relative_image("a/b.iso").unwrap(), PathBuf::from("a/b.iso"));
        assert_eq!(relative_image("/x.iso").unwrap(), PathBuf::from("x.iso"));
        assert!(relative_image("../etc/passwd").is_err());
        assert!(relative_image("a/../../b").is_err());
        assert!(relative_image("").is_err());
        assert!(relative_image("a\"b").is_err());
    }

    #[test]
    fn smb_status_mapping() {
        assert_eq!(
            classify_smb("session setup failed: NT_STATUS_LOGON_FAILURE"),
            MountReason::AccessDenied
        );
        assert_eq!(
            classify_smb("tree connect failed: NT_STATUS_BAD_NETWORK_NAME"),
            MountReason::NoShare
        );
        assert_eq!(
            classify_smb("NT_STATUS_OBJECT_NAME_NOT_FOUND opening remote file \\x"),
            MountReason::NotFound
        );
        assert!(matches!(classify_smb("weird"), MountReason::Io(_)));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(host_port("127.0.0.1:1445"), ("127.0.0.1".into(), 1445));
        assert_eq!(host_port("127.0.0.1"), ("127.0.0.1".into(), 445));
    }
}
