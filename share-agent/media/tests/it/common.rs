//! Code shared by the integration tests: system tools, loader locations, commands.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True if `tool` is on PATH. If it is missing: outside CI the caller skips (returns
/// false after a note on stderr); in CI (`CI` set) the test fails.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("required tool {tool} is missing (CI is set, so this is a failure)");
        }
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// True if every file exists; same skip/fail rule as [`have_tool`].
pub fn have_files(files: &[&Path]) -> bool {
    for f in files {
        if !f.exists() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "required file {} is missing (CI is set, so this is a failure)",
                    f.display()
                );
            }
            eprintln!("skipping: {} not installed", f.display());
            return false;
        }
    }
    true
}

/// Run a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// The directory holding this crate's test scripts.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// A cache directory under the cargo target dir (survives between runs, not in the repo).
pub fn target_cache(name: &str) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(|p| p.join(name))
        .unwrap_or_else(|| tmp.join(name))
}

/// Tools and files needed to build BIOS + UEFI ISOs with the default loaders.
pub fn have_iso_loaders() -> bool {
    let l = boot_media::Loaders::default();
    have_files(&[&l.isolinux_bin, &l.ldlinux_c32]) && have_tool("grub-mkstandalone")
}

/// Write `len` bytes of deterministic pseudo-random data (incompressible, like a kernel).
pub fn pseudo_random_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    std::fs::write(path, v).unwrap();
}

/// A standalone GRUB `BOOTX64.EFI`, built once (about a second) and kept under the target
/// dir, named by a hash of how it is built.
pub fn grub_efi() -> PathBuf {
    static GRUB: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    GRUB.get_or_init(|| {
        use sha2::Digest as _;
        let tool = Path::new("grub-mkstandalone");
        let recipe = boot_media::iso::grub_recipe(tool).unwrap();
        let dir = target_cache("grub-efi");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!(
            "{}.efi",
            &hex::encode(sha2::Sha256::digest(recipe.as_bytes()))[..16]
        ));
        if !out.exists() {
            // Built in a temp dir and renamed into place: concurrent builders are harmless.
            boot_media::iso::build_grub_efi(tool, &out).unwrap();
        }
        out
    })
    .clone()
}

/// Default loaders with the prebuilt test GRUB.
pub fn test_loaders() -> boot_media::Loaders {
    boot_media::Loaders {
        grub_efi: Some(grub_efi()),
        ..boot_media::Loaders::default()
    }
}
