//! Start-up checks on the share root. Hard failures refuse to start with one
//! line naming the option; export mismatches only warn (the share server may
//! be configured elsewhere, e.g. a NAS head with its own config).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{ShareConfig, ShareType};
use crate::error::AgentError;

const ROOT: &str = "remote_image_share_root";

/// Runs the refusing checks: the share root exists, is a directory, is
/// writable and, when `share_is_mount`, is a mount point. Returns the
/// canonical share root.
pub fn check_share_root(share: &ShareConfig) -> Result<PathBuf, AgentError> {
    let root = &share.remote_image_share_root;
    let meta = std::fs::metadata(root).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AgentError::startup(ROOT, format!("'{}' does not exist", root.display()))
        } else {
            AgentError::startup(ROOT, format!("cannot stat '{}': {e}", root.display()))
        }
    })?;
    if !meta.is_dir() {
        return Err(AgentError::startup(
            ROOT,
            format!("'{}' is not a directory", root.display()),
        ));
    }
    let canonical = root.canonicalize().map_err(|e| {
        AgentError::startup(ROOT, format!("cannot resolve '{}': {e}", root.display()))
    })?;
    if share.share_is_mount {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            AgentError::startup(ROOT, format!("cannot read /proc/self/mountinfo: {e}"))
        })?;
        if !is_mount_point(&mountinfo, &canonical) {
            // Ironic's wording, so operators find it in their runbooks.
            return Err(AgentError::startup(
                ROOT,
                format!(
                    "shared file system '{}' is not mounted (share_is_mount = true)",
                    root.display()
                ),
            ));
        }
    }
    // Permission bits are not enough (root ignores them; read-only mounts
    // do not): actually create and remove a probe file.
    let probe = canonical.join(format!(".share-agent-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            AgentError::startup(ROOT, format!("'{}' is not writable: {e}", root.display()))
        })?;
    Ok(canonical)
}

/// True when `path` is a mount point in a `/proc/self/mountinfo` text.
pub fn is_mount_point(mountinfo: &str, path: &Path) -> bool {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mp| Path::new(&unescape_mountinfo(mp)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that the local Samba or NFS configuration exports the share root
/// under the configured name. Returns warnings (never refuses).
pub fn export_warnings(share: &ShareConfig, canonical_root: &Path) -> Vec<String> {
    match share.remote_image_share_type {
        ShareType::Cifs => cifs_warnings(share, canonical_root),
        ShareType::Nfs => nfs_warnings(share, canonical_root),
    }
}

fn same_dir(a: &str, root: &Path) -> bool {
    let p = Path::new(a.trim());
    p == root || p.canonicalize().is_ok_and(|c| c == root)
}

fn cifs_warnings(share: &ShareConfig, root: &Path) -> Vec<String> {
    let conf = &share.smb_conf;
    // testparm expands includes and defaults; fall back to reading the file.
    let text = Command::new("testparm")
        .args(["-s", "--suppress-prompt"])
        .arg(conf)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .or_else(|| std::fs::read_to_string(conf).ok());
    let Some(text) = text else {
        return vec![format!(
            "remote_image_share_name: cannot read Samba config '{}'; not checking that CIFS share '{}' exports '{}'",
            conf.display(),
            share.remote_image_share_name,
            root.display()
        )];
    };
    let shares = parse_smb_conf(&text);
    let name = &share.remote_image_share_name;
    match shares.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        None => vec![format!(
            "remote_image_share_name: Samba config '{}' has no share [{name}]",
            conf.display()
        )],
        Some((_, Some(path))) if same_dir(path, root) => vec![],
        Some((_, path)) => vec![format!(
            "remote_image_share_name: Samba share [{name}] in '{}' exports '{}', not the share root '{}'",
            conf.display(),
            path.as_deref().unwrap_or("<no path>"),
            root.display()
        )],
    }
}

/// (section name, path) for every section of an smb.conf text.
pub fn parse_smb_conf(text: &str) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.trim().to_string(), None));
        } else if let Some((k, v)) = line.split_once('=')
            && k.trim().eq_ignore_ascii_case("path")
            && let Some(last) = out.last_mut()
        {
            last.1 = Some(v.trim().to_string());
        }
    }
    out
}

fn nfs_warnings(share: &ShareConfig, root: &Path) -> Vec<String> {
    let file = &share.nfs_exports;
    let Ok(text) = std::fs::read_to_string(file) else {
        return vec![format!(
            "remote_image_share_name: cannot read NFS exports '{}'; not checking that '{}' is exported",
            file.display(),
            root.display()
        )];
    };
    if parse_exports(&text).iter().any(|p| same_dir(p, root)) {
        vec![]
    } else {
        vec![format!(
            "remote_image_share_root: '{}' is not exported in '{}'",
            root.display(),
            file.display()
        )]
    }
}

/// Exported paths of an /etc/exports text (quoted paths and continuations handled).
pub fn parse_exports(text: &str) -> Vec<String> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix('"') {
                rest.split_once('"').map(|(p, _)| p.to_string())
            } else {
                l.split_whitespace().next().map(str::to_string)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
        90 27 0:50 / /srv/remote\\040share rw - cifs //nas/share rw\n";

    #[test]
    fn mountinfo() {
        assert!(is_mount_point(MOUNTINFO, Path::new("/proc")));
        assert!(is_mount_point(MOUNTINFO, Path::new("/srv/remote share")));
        assert!(!is_mount_point(MOUNTINFO, Path::new("/srv")));
    }

    #[test]
    fn smb_conf() {
        let s = parse_smb_conf(
            "[global]\n  workgroup = X\n# [commented]\n[share]\n\tpath = /srv/share\n  read only = no\n[other]\n",
        );
        assert_eq!(
            s,
            vec![
                ("global".into(), None),
                ("share".into(), Some("/srv/share".into())),
                ("other".into(), None)
            ]
        );
    }

    #[test]
    fn exports() {
        let e = parse_exports(
            "# c\n/srv/share 10.0.0.0/8(ro,no_root_squash)\n\"/srv/with space\" *(ro)\n/a \\\n  host(rw)\n",
        );
        assert_eq!(e, vec!["/srv/share", "/srv/with space", "/a"]);
    }

    /// The shipped NFS export and Samba share name the root the shipped
    /// config (`deploy/share-agent.toml`, checked in `config`) uses.
    #[test]
    fn shipped_share_files_parse() {
        let exports = parse_exports(include_str!("../../../deploy/exports"));
        assert_eq!(exports, vec!["/remote_image_share_root"]);
        let smb = parse_smb_conf(include_str!("../../../deploy/smb.conf.share"));
        assert_eq!(
            smb,
            vec![("share".into(), Some("/remote_image_share_root".into()))]
        );
    }
}
