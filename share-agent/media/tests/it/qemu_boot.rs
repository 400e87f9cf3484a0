//! The ISOs we build really boot: under SeaBIOS (isolinux) with the parameter floppy and
//! under OVMF (GRUB) with the hard-disk parameter image, into a busybox initramfs that
//! prints the kernel command line and `parameters.txt` on the serial console.
//!
//! Needs qemu-system-x86_64, ovmf, busybox-static, cpio and a Debian kernel; the kernel is
//! fetched once by `qemu-kernel.sh` into the target dir (`apt-get download`).

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use boot_media::{
    BootIsoSpec, ImageForm, Parameters, build_boot_iso, parameter_image, write_atomic,
};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Kernel + initramfs for the boot tests, or None to skip (outside CI only).
fn boot_inputs(work: &Path) -> Option<(PathBuf, PathBuf)> {
    for tool in ["qemu-system-x86_64", "cpio", "busybox", "xorriso"] {
        if !common::have_tool(tool) {
            return None;
        }
    }
    if !common::have_iso_loaders() {
        return None;
    }
    let kdir = common::target_cache("qemu-kernel");
    let status = Command::new("bash")
        .arg(common::scripts_dir().join("qemu-kernel.sh"))
        .arg(&kdir)
        .status()
        .expect("run qemu-kernel.sh");
    if !status.success() {
        if std::env::var_os("CI").is_some() {
            panic!("qemu-kernel.sh failed: {status}");
        }
        eprintln!("skipping: could not obtain a Debian kernel ({status})");
        return None;
    }
    let initrd = work.join("initrd.gz");
    common::run(
        Command::new("bash")
            .arg(common::scripts_dir().join("qemu-initramfs.sh"))
            .arg(&kdir)
            .arg(&initrd),
    );
    Some((kdir.join("vmlinuz"), initrd))
}

/// Run QEMU until it powers off (or `limit` passes) and return the serial output.
fn run_qemu(args: &[String], limit: Duration) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let timed_out = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(
        !timed_out,
        "QEMU did not power off within {limit:?}\nserial:\n{out}\nstderr:\n{err}"
    );
    eprintln!("QEMU finished in {:.1} s", start.elapsed().as_secs_f64());
    out
}

fn params() -> Parameters {
    Parameters::from_pairs([
        ("ipa-api-url", "http://127.0.0.1:6385"),
        ("BOOTIF", "01-52-54-00-aa-bb-cc"),
        ("boot_method", "vmedia"),
    ])
    .unwrap()
}

fn build_iso(work: &Path, kernel: &Path, initrd: &Path, tag: &str) -> PathBuf {
    let mut spec = BootIsoSpec::new(
        kernel,
        initrd,
        format!("console=ttyS0,115200 loglevel=4 provision.node={tag}"),
    );
    spec.loaders = common::test_loaders();
    let iso = work.join("boot.iso");
    build_boot_iso(&spec, &iso).unwrap();
    iso
}

fn check_serial(out: &str, device: &str, tag: &str) {
    assert!(
        out.contains("VMEDIA-RAMDISK-UP"),
        "ramdisk never started:\n{out}"
    );
    assert!(
        out.contains(&format!("provision.node={tag}")),
        "cmdline missing:\n{out}"
    );
    let begin = format!("VMEDIA-PARAMS-BEGIN {device}");
    let end = format!("VMEDIA-PARAMS-END {device}");
    let start = out
        .find(&begin)
        .unwrap_or_else(|| panic!("no parameters from {device}:\n{out}"));
    let body = &out[start + begin.len()..];
    let body = &body[..body
        .find(&end)
        .unwrap_or_else(|| panic!("unterminated:\n{out}"))];
    let got: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let want: Vec<String> = params().iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got, want, "serial:\n{out}");
    let label = out
        .lines()
        .find(|l| l.contains("VMEDIA-LABEL"))
        .unwrap_or("")
        .trim();
    assert_eq!(
        label,
        format!("VMEDIA-LABEL {device} ir-vfd-dev"),
        "serial:\n{out}"
    );
    if device.starts_with("/dev/vd") {
        // findfs LABEL=ir-vfd-dev names the whole disk, as IPA's lookup by label needs
        // (it scans /proc/partitions, which lists no floppies).
        let findfs = out
            .lines()
            .find(|l| l.contains("VMEDIA-FINDFS"))
            .unwrap_or("")
            .trim();
        assert_eq!(findfs, format!("VMEDIA-FINDFS {device}"), "serial:\n{out}");
    }
    assert!(out.contains("VMEDIA-RAMDISK-DONE"), "{out}");
}

#[test]
fn boots_under_seabios_with_parameter_floppy() {
    let work = tempfile::tempdir().unwrap();
    let Some((kernel, initrd)) = boot_inputs(work.path()) else {
        return;
    };
    let iso = build_iso(work.path(), &kernel, &initrd, "bios-node");
    let floppy = work.path().join("params.img");
    write_atomic(
        &floppy,
        &parameter_image(&params(), ImageForm::Floppy).unwrap(),
        true,
    )
    .unwrap();
    let args: Vec<String> = [
        "-machine",
        "accel=tcg",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
        "-boot",
        "d",
        "-cdrom",
        iso.to_str().unwrap(),
        "-drive",
        &format!("file={},if=floppy,format=raw,readonly=on", floppy.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_qemu(&args, Duration::from_secs(120));
    check_serial(&out, "/dev/fd0", "bios-node");
}

#[test]
fn boots_under_ovmf_with_parameter_disk() {
    let work = tempfile::tempdir().unwrap();
    if !common::have_files(&[Path::new(OVMF_CODE), Path::new(OVMF_VARS)]) {
        return;
    }
    let Some((kernel, initrd)) = boot_inputs(work.path()) else {
        return;
    };
    let iso = build_iso(work.path(), &kernel, &initrd, "uefi-node");
    let disk = work.path().join("params-hd.img");
    write_atomic(
        &disk,
        &parameter_image(&params(), ImageForm::HardDisk).unwrap(),
        true,
    )
    .unwrap();
    let vars = work.path().join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let args: Vec<String> = [
        "-machine".to_string(),
        "q35,accel=tcg".into(),
        "-m".into(),
        "512".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-drive".into(),
        format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,file={}", vars.display()),
        "-drive".into(),
        format!(
            "file={},media=cdrom,if=none,id=cd0,readonly=on",
            iso.display()
        ),
        "-device".into(),
        "ide-cd,drive=cd0,bootindex=0".into(),
        "-drive".into(),
        format!("file={},if=virtio,format=raw,readonly=on", disk.display()),
    ]
    .to_vec();
    let out = run_qemu(&args, Duration::from_secs(240));
    check_serial(&out, "/dev/vda", "uefi-node");
}

/// A netbooted partition image: its kernel and ramdisk in a boot ISO built through the
/// content-addressed store (a second node with the same image and root UUID shares the
/// file), `root=UUID=<root partition UUID>` on the command line; it boots under SeaBIOS
/// to the kernel and its initramfs, which prints the command line it was given.
#[test]
fn netboot_iso_boots_with_the_root_uuid() {
    let work = tempfile::tempdir().unwrap();
    let Some((kernel, initrd)) = boot_inputs(work.path()) else {
        return;
    };
    let root_uuid = "4f1c2e7a-93b5-4d0e-8a61-2c9e5b7d1f03";
    let spec = boot_media::NetbootSpec {
        kernel,
        ramdisk: initrd,
        root_uuid: root_uuid.into(),
        kernel_append_params: "console=ttyS0,115200 loglevel=4".into(),
        bios: true,
        uefi: false,
        loaders: common::test_loaders(),
    };
    let share = work.path().join("share");
    let store = boot_media::BootIsoStore::new(&share, "boot-iso").unwrap();
    let boot = spec.to_boot_spec().unwrap();
    let first = store.get_or_build(&boot, "node-a").unwrap();
    let second = store.get_or_build(&boot, "node-b").unwrap();
    assert!(first.built && !second.built, "one file for both nodes");
    assert_eq!(first.share_relative, second.share_relative);
    eprintln!(
        "netboot ISO: {} bytes on the share, shared by {} nodes",
        first.size,
        store.users(&first.share_relative).unwrap_or(0)
    );
    // Another root UUID is other bytes.
    let other = boot_media::NetbootSpec {
        root_uuid: "0000aaaa-0000-4000-8000-000000000000".into(),
        ..spec.clone()
    };
    assert_ne!(
        store.key(&other.to_boot_spec().unwrap()).unwrap(),
        first.key
    );

    let args: Vec<String> = [
        "-machine",
        "accel=tcg",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
        "-boot",
        "d",
        "-cdrom",
        first.path.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_qemu(&args, Duration::from_secs(120));
    assert!(
        out.contains("VMEDIA-RAMDISK-UP"),
        "kernel never reached its initramfs:\n{out}"
    );
    let cmdline = out
        .lines()
        .find(|l| l.contains("VMEDIA-CMDLINE"))
        .unwrap_or_else(|| panic!("no command line printed:\n{out}"));
    assert!(
        cmdline
            .split_whitespace()
            .any(|w| w == format!("root=UUID={root_uuid}")),
        "{cmdline}"
    );
}
