//! Boot ISOs checked with xorriso as the oracle, and the content-addressed ISO store.

use crate::common;

use std::path::Path;
use std::process::Command;

use boot_media::{
    BootIsoSpec, BootIsoStore, DeployIsoSpec, MediaError, Parameters, boot_iso_key, build_boot_iso,
    build_deploy_iso,
};

fn inputs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let k = dir.join("vmlinuz");
    let i = dir.join("initrd.gz");
    common::pseudo_random_file(&k, 3 << 20, 1);
    common::pseudo_random_file(&i, 5 << 20, 2);
    (k, i)
}

fn el_torito(iso: &Path) -> String {
    common::stdout(Command::new("xorriso").args([
        "-indev",
        iso.to_str().unwrap(),
        "-report_el_torito",
        "plain",
    ]))
}

fn extract(iso: &Path, inner: &str, dir: &Path) -> String {
    let out = dir.join(inner.replace('/', "_"));
    common::run(Command::new("xorriso").args([
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        inner,
        out.to_str().unwrap(),
    ]));
    std::fs::read_to_string(out).unwrap()
}

fn ready() -> bool {
    common::have_tool("xorriso") && common::have_iso_loaders()
}

#[test]
fn bios_and_uefi_entries_reported_by_xorriso() {
    if !ready() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (k, i) = inputs(d.path());
    let mut spec = BootIsoSpec::new(&k, &i, "console=ttyS0,115200 provision.node=n-1");
    spec.loaders = common::test_loaders();
    let iso = d.path().join("boot.iso");
    let stats = build_boot_iso(&spec, &iso).unwrap();
    assert_eq!(stats.bytes, std::fs::metadata(&iso).unwrap().len());
    assert!(stats.bytes > (8 << 20));

    let report = el_torito(&iso);
    let boot_lines: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img"))
        .collect();
    assert_eq!(boot_lines.len(), 2, "{report}");
    assert!(
        boot_lines[0].contains("BIOS") && boot_lines[0].contains("none"),
        "{report}"
    );
    assert!(boot_lines[1].contains("UEFI"), "{report}");
    assert!(
        report.contains("/isolinux/isolinux.bin") && report.contains("/isolinux/efiboot.img"),
        "{report}"
    );
    assert!(report.contains("boot-info-table"), "{report}");

    let iso_cfg = extract(&iso, "/isolinux/isolinux.cfg", d.path());
    assert!(
        iso_cfg.contains("APPEND initrd=/boot/initrd console=ttyS0,115200 provision.node=n-1"),
        "{iso_cfg}"
    );
    let grub_cfg = extract(&iso, "/boot/grub/grub.cfg", d.path());
    assert!(
        grub_cfg.contains("linux /boot/vmlinuz console=ttyS0,115200 provision.node=n-1"),
        "{grub_cfg}"
    );
    let kout = d.path().join("kernel-out");
    common::run(Command::new("xorriso").args([
        "-osirrox",
        "on",
        "-indev",
        iso.to_str().unwrap(),
        "-extract",
        "/boot/vmlinuz",
        kout.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&kout).unwrap(),
        std::fs::read(&k).unwrap(),
        "kernel bytes intact"
    );
}

#[test]
fn single_platform_isos() {
    if !ready() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (k, i) = inputs(d.path());
    let mut spec = BootIsoSpec::new(&k, &i, "quiet");
    spec.loaders = common::test_loaders();
    spec.uefi = false;
    let bios = d.path().join("bios.iso");
    build_boot_iso(&spec, &bios).unwrap();
    let r = el_torito(&bios);
    assert!(r.contains("BIOS") && !r.contains("UEFI"), "{r}");

    spec.uefi = true;
    spec.bios = false;
    let uefi = d.path().join("uefi.iso");
    build_boot_iso(&spec, &uefi).unwrap();
    let r = el_torito(&uefi);
    let boot_lines: Vec<&str> = r
        .lines()
        .filter(|l| l.starts_with("El Torito boot img"))
        .collect();
    assert_eq!(boot_lines.len(), 1, "{r}");
    assert!(boot_lines[0].contains("UEFI"), "{r}");
}

#[test]
fn deploy_iso_carries_vmedia_cmdline() {
    if !ready() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (k, i) = inputs(d.path());
    let spec = DeployIsoSpec {
        kernel: k,
        ramdisk: i,
        params: Parameters::from_pairs([
            ("ipa-api-url", "http://127.0.0.1:9999"),
            ("ipa-insecure", "1"),
        ])
        .unwrap(),
        extra_cmdline: "console=ttyS0,115200".into(),
        bios: true,
        uefi: true,
        loaders: common::test_loaders(),
    };
    let iso = d.path().join("deploy.iso");
    build_deploy_iso(&spec, &iso).unwrap();
    let cfg = extract(&iso, "/isolinux/isolinux.cfg", d.path());
    assert!(
        cfg.contains("boot_method=vmedia ipa-api-url=http://127.0.0.1:9999 ipa-insecure=1 console=ttyS0,115200"),
        "{cfg}"
    );
    // A value with whitespace cannot go on a kernel command line.
    let mut bad = spec.clone();
    bad.params = Parameters::from_pairs([("x", "a b")]).unwrap();
    assert!(matches!(
        build_deploy_iso(&bad, &iso),
        Err(MediaError::InvalidParameter { .. })
    ));
}

#[test]
fn key_covers_contents_not_timestamps() {
    let d = tempfile::tempdir().unwrap();
    let (k, i) = inputs(d.path());
    let mut spec = BootIsoSpec::new(&k, &i, "a=1");
    spec.uefi = false; // keep the key independent of the GRUB toolchain
    spec.loaders.isolinux_bin = k.clone();
    spec.loaders.ldlinux_c32 = i.clone();
    let k1 = boot_iso_key(&spec).unwrap();
    // Rewriting identical content keeps the key.
    let bytes = std::fs::read(&k).unwrap();
    std::fs::write(&k, &bytes).unwrap();
    assert_eq!(boot_iso_key(&spec).unwrap(), k1);
    let mut other = spec.clone();
    other.cmdline = "a=2".into();
    assert_ne!(boot_iso_key(&other).unwrap(), k1);
    let mut flags = spec.clone();
    flags.volume_id = "OTHER".into();
    assert_ne!(boot_iso_key(&flags).unwrap(), k1);
    let mut changed = bytes.clone();
    changed[100] ^= 1;
    std::fs::write(&k, &changed).unwrap();
    assert_ne!(boot_iso_key(&spec).unwrap(), k1);
}

#[test]
fn bad_specs_are_errors_naming_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let (k, i) = inputs(d.path());
    let out = d.path().join("x.iso");
    let mut spec = BootIsoSpec::new(&k, &i, "a");
    spec.bios = false;
    spec.uefi = false;
    assert!(
        build_boot_iso(&spec, &out)
            .unwrap_err()
            .to_string()
            .contains("neither BIOS nor UEFI")
    );
    let mut spec = BootIsoSpec::new(&k, &i, "a\nb");
    spec.uefi = false;
    assert!(
        build_boot_iso(&spec, &out)
            .unwrap_err()
            .to_string()
            .contains("control character")
    );
    let mut spec = BootIsoSpec::new(d.path().join("missing-kernel"), &i, "a");
    spec.uefi = false;
    let e = build_boot_iso(&spec, &out).unwrap_err().to_string();
    assert!(e.contains("missing-kernel"), "{e}");
    assert!(!out.exists());
    // Nothing left behind.
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn store_shares_one_iso_and_gc_spares_users() {
    if !ready() {
        return;
    }
    let share = tempfile::tempdir().unwrap();
    let inp = tempfile::tempdir().unwrap();
    let (k, i) = inputs(inp.path());
    let store = BootIsoStore::new(share.path(), "boot-iso").unwrap();
    // GRUB is built by the store itself here (grub_efi: None) and cached beside the ISOs.
    let spec_a = BootIsoSpec::new(&k, &i, "node=a");
    let spec_b = BootIsoSpec::new(&k, &i, "node=b");

    let a1 = store.get_or_build(&spec_a, "node-1").unwrap();
    assert!(a1.built);
    assert!(a1.share_relative.starts_with("boot-iso/") && a1.share_relative.ends_with(".iso"));
    assert_eq!(a1.path, share.path().join(&a1.share_relative));
    let mtime = std::fs::metadata(&a1.path).unwrap().modified().unwrap();
    let a2 = store.get_or_build(&spec_a, "node-2").unwrap();
    assert!(!a2.built);
    assert_eq!(a1.share_relative, a2.share_relative);
    assert_eq!(
        std::fs::metadata(&a2.path).unwrap().modified().unwrap(),
        mtime,
        "not rebuilt"
    );
    assert_eq!(store.users(&a1.share_relative), Some(2));
    let grub_files = std::fs::read_dir(share.path().join("boot-iso"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".efi")
        })
        .count();
    assert_eq!(grub_files, 1);

    let b = store.get_or_build(&spec_b, "node-3").unwrap();
    assert_ne!(b.share_relative, a1.share_relative);

    store.release(&a1.share_relative, "node-1").unwrap();
    store.release(&b.share_relative, "node-3").unwrap();
    assert!(store.release("boot-iso/nope.iso", "x").is_err());
    let gc = store.gc(u64::MAX).unwrap();
    assert_eq!(gc.removed, 1, "only the unused ISO goes");
    assert!(!b.path.exists());
    assert!(a1.path.exists(), "node-2 still uses it");
    store.release(&a1.share_relative, "node-2").unwrap();
    assert_eq!(store.gc(u64::MAX).unwrap().removed, 1);
    assert!(!a1.path.exists());

    // A failed build leaves no user and no entry behind.
    let broken = BootIsoSpec::new(&k, &i, "bad\ncmdline");
    assert!(store.get_or_build(&broken, "node-9").is_err());
    assert_eq!(store.stats().0, 0, "pinned entry removed again");

    // A store reopened on the same share adopts what is there.
    let c = store.get_or_build(&spec_a, "node-1").unwrap();
    let reopened = BootIsoStore::new(share.path(), "boot-iso").unwrap();
    assert_eq!(reopened.users(&c.share_relative), Some(0));
    assert!(!reopened.get_or_build(&spec_a, "node-1").unwrap().built);
}

#[test]
fn concurrent_requests_build_once() {
    if !ready() {
        return;
    }
    let share = tempfile::tempdir().unwrap();
    let inp = tempfile::tempdir().unwrap();
    let (k, i) = inputs(inp.path());
    let store = std::sync::Arc::new(BootIsoStore::new(share.path(), "iso").unwrap());
    let mut spec = BootIsoSpec::new(&k, &i, "same");
    spec.loaders = common::test_loaders();
    let handles: Vec<_> = (0..6)
        .map(|n| {
            let store = store.clone();
            let spec = spec.clone();
            std::thread::spawn(move || store.get_or_build(&spec, &format!("node-{n}")).unwrap())
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|h| h.built).count(), 1);
    assert!(
        results
            .iter()
            .all(|h| h.share_relative == results[0].share_relative)
    );
    assert_eq!(store.users(&results[0].share_relative), Some(6));
}
