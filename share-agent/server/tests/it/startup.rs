//! Start-up refusals: the real binary exits non-zero with ONE line naming the option.

use std::path::Path;
use std::process::Command;

use crate::common::agent_bin;

fn run(config: &str, dir: &Path) -> (i32, String, String) {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(agent_bin())
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cfg(root: &Path, extra: &str) -> String {
    format!(
        "[agent]\ncoordinator = \"http://127.0.0.1:1\"\n[irmc]\nremote_image_server = \"127.0.0.1\"\nremote_image_share_root = \"{}\"\n{extra}\n",
        root.display()
    )
}

fn refused(config: &str, dir: &Path, want: &[&str]) {
    let (code, _out, err) = run(config, dir);
    assert_ne!(code, 0, "should refuse: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {err:?}");
    for w in want {
        assert!(lines[0].contains(w), "{:?} lacks {w:?}", lines[0]);
    }
}

#[test]
fn missing_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("nope");
    refused(
        &cfg(&root, ""),
        d.path(),
        &["remote_image_share_root", "does not exist", "nope"],
    );
}

#[test]
fn root_is_a_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("file");
    std::fs::write(&root, b"x").unwrap();
    refused(
        &cfg(&root, ""),
        d.path(),
        &["remote_image_share_root", "is not a directory"],
    );
}

#[test]
fn root_not_writable() {
    // /proc refuses file creation even to root (permission bits would not stop root).
    let d = tempfile::tempdir().unwrap();
    refused(
        &cfg(Path::new("/proc"), ""),
        d.path(),
        &["remote_image_share_root", "is not writable"],
    );
}

#[test]
fn root_not_mounted() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("share");
    std::fs::create_dir(&root).unwrap();
    refused(
        &cfg(&root, "share_is_mount = true"),
        d.path(),
        &[
            "remote_image_share_root",
            &format!("shared file system '{}' is not mounted", root.display()),
        ],
    );
}

#[test]
fn mount_point_accepted() {
    // /proc is a mount point on every Linux; mountedness passes and the
    // writability check is what refuses it.
    let d = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&cfg(Path::new("/proc"), "share_is_mount = true"), d.path());
    assert_ne!(code, 0);
    assert!(
        err.contains("is not writable") && !err.contains("not mounted"),
        "{err}"
    );
}

#[test]
fn bad_config_values_name_the_option() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("share");
    std::fs::create_dir(&root).unwrap();
    refused(
        &cfg(&root, "remote_image_share_type = \"FTP\""),
        d.path(),
        &["remote_image_share_type"],
    );
    refused(
        &cfg(&root, "remote_image_sharename = \"x\""),
        d.path(),
        &["remote_image_sharename"],
    );
    refused(
        &format!("[irmc]\nremote_image_share_root = \"{}\"\n", root.display()),
        d.path(),
        &["remote_image_server", "required"],
    );
}

#[test]
fn good_config_prints_redacted_config_and_warns_about_exports() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("share");
    std::fs::create_dir(&root).unwrap();
    let smb = d.path().join("smb.conf");
    std::fs::write(&smb, "[global]\n workgroup = X\n[other]\n path = /srv\n").unwrap();
    let extra = format!(
        "remote_image_user_password = \"s3cret-pw\"\nsmb_conf = \"{}\"",
        smb.display()
    );
    let (code, out, err) = run(&cfg(&root, &extra), d.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("remote_image_share_root") && out.contains("******"),
        "{out}"
    );
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"));
    assert!(err.contains("has no share [share]"), "{err}");

    // The share exported under its name: no warning.
    std::fs::write(&smb, format!("[share]\n path = {}\n", root.display())).unwrap();
    let (code, _out, err) = run(&cfg(&root, &extra), d.path());
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("WARN"), "{err}");
}

#[test]
fn flags_and_environment_override_the_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("share");
    std::fs::create_dir(&root).unwrap();
    let path = d.path().join("agent.toml");
    std::fs::write(&path, cfg(Path::new("/nonexistent"), "")).unwrap();
    let out = Command::new(agent_bin())
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .arg("--capacity")
        .arg("7")
        .env("SHARE_AGENT_REMOTE_IMAGE_SHARE_ROOT", &root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"capacity\":7"), "{text}");
}

#[test]
fn nfs_export_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("share");
    std::fs::create_dir(&root).unwrap();
    let exports = d.path().join("exports");
    std::fs::write(&exports, "/srv/other 10.0.0.0/8(ro)\n").unwrap();
    let extra = format!(
        "remote_image_share_type = \"NFS\"\nremote_image_share_name = \"{}\"\nnfs_exports = \"{}\"",
        root.display(),
        exports.display()
    );
    let (code, _out, err) = run(&cfg(&root, &extra), d.path());
    assert_eq!(code, 0, "a missing export only warns: {err}");
    assert!(err.contains("is not exported in"), "{err}");

    std::fs::write(
        &exports,
        format!("{} 10.0.0.0/8(ro,no_subtree_check)\n", root.display()),
    )
    .unwrap();
    let (code, _out, err) = run(&cfg(&root, &extra), d.path());
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("WARN"), "{err}");
}
