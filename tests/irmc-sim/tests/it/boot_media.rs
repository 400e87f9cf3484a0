//! The firmware's media readers against images made by the real tools: ISO 9660 + El Torito
//! from xorriso, FAT12/16/32 from mkfs.vfat + mcopy (superfloppy and MBR-partitioned).

use crate::boot_support;

use std::fs::File;

use boot_support::*;
use irmc_sim::BootMode;
use irmc_sim::boot::fat::{self, FatType};
use irmc_sim::boot::iso::{Iso, Platform};
use irmc_sim::boot::{inspect_iso, read_params};

#[test]
fn xorriso_iso_with_bios_and_efi_entries() {
    if !have_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for rock_ridge in [true, false] {
        let iso_path = dir.path().join(format!("deploy-{rock_ridge}.iso"));
        build_iso(
            dir.path(),
            &iso_path,
            &IsoSpec {
                rock_ridge,
                ..Default::default()
            },
        );
        let iso = Iso::open(Box::new(File::open(&iso_path).unwrap())).unwrap();
        assert_eq!(iso.volume_id, "VMEDIA_BOOT_ISO");
        let entries = iso.boot_entries().unwrap();
        let platforms: Vec<Platform> = entries.iter().map(|e| e.platform).collect();
        assert_eq!(
            platforms,
            vec![Platform::Bios, Platform::Efi],
            "rock_ridge={rock_ridge}"
        );
        assert!(entries.iter().all(|e| e.bootable && e.media_type == 0));
        // The BIOS entry points at isolinux.bin: its extent holds our placeholder bytes.
        let bin = iso.lookup("/isolinux/isolinux.bin").unwrap().unwrap();
        assert_eq!(entries[0].load_rba, bin.extent);
        assert_eq!(
            iso.read_file("/isolinux/isolinux.cfg").unwrap().unwrap(),
            ISOLINUX_CFG.as_bytes()
        );
        assert_eq!(
            iso.read_file("/boot/grub/grub.cfg").unwrap().unwrap(),
            GRUB_CFG.as_bytes()
        );
        assert_eq!(iso.read_file("/nope.cfg").unwrap(), None);
        assert_eq!(iso.read_file("/vmlinuz/x").unwrap(), None);
        if rock_ridge {
            let e = iso.lookup("/boot/grub/grub.cfg").unwrap().unwrap();
            assert_eq!(e.rr_name.as_deref(), Some("grub.cfg"));
        }

        // Per boot mode: UEFI reads grub.cfg, BIOS reads isolinux.cfg.
        let (uefi, path) = inspect_iso(File::open(&iso_path).unwrap(), BootMode::Uefi).unwrap();
        assert_eq!(uefi, "boot_method=vmedia uefi_marker=1 --");
        assert_eq!(path, "/boot/grub/grub.cfg");
        let (bios, path) = inspect_iso(File::open(&iso_path).unwrap(), BootMode::Legacy).unwrap();
        assert_eq!(bios, "initrd=/initrd boot_method=vmedia bios_marker=1 --");
        assert_eq!(path, "/isolinux/isolinux.cfg");
    }
}

#[test]
fn boot_mode_fallbacks_and_refusals() {
    if !have_tool("xorriso") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Only isolinux.cfg, both entries: UEFI falls back to isolinux.cfg.
    let p = dir.path().join("bios-cfg-only.iso");
    build_iso(
        dir.path(),
        &p,
        &IsoSpec {
            grub: None,
            ..Default::default()
        },
    );
    let (line, path) = inspect_iso(File::open(&p).unwrap(), BootMode::Uefi).unwrap();
    assert_eq!(path, "/isolinux/isolinux.cfg");
    assert!(line.contains("bios_marker=1"));

    // BIOS-only El Torito: a UEFI firmware refuses it.
    let p = dir.path().join("bios-only.iso");
    build_iso(
        dir.path(),
        &p,
        &IsoSpec {
            efi_entry: false,
            ..Default::default()
        },
    );
    let err = inspect_iso(File::open(&p).unwrap(), BootMode::Uefi).unwrap_err();
    assert!(
        err.contains("no bootable El Torito entry for UEFI"),
        "{err}"
    );
    assert!(inspect_iso(File::open(&p).unwrap(), BootMode::Legacy).is_ok());

    // EFI-only.
    let p = dir.path().join("efi-only.iso");
    build_iso(
        dir.path(),
        &p,
        &IsoSpec {
            bios_entry: false,
            ..Default::default()
        },
    );
    let iso = Iso::open(Box::new(File::open(&p).unwrap())).unwrap();
    let e = iso.boot_entries().unwrap();
    assert_eq!(e[0].platform, Platform::Efi);
    assert!(inspect_iso(File::open(&p).unwrap(), BootMode::Legacy).is_err());

    // No boot loader configuration at all.
    let p = dir.path().join("no-cfg.iso");
    build_iso(
        dir.path(),
        &p,
        &IsoSpec {
            grub: None,
            isolinux: None,
            ..Default::default()
        },
    );
    let err = inspect_iso(File::open(&p).unwrap(), BootMode::Uefi).unwrap_err();
    assert!(err.contains("no boot loader configuration"), "{err}");

    // Not bootable at all / not an ISO.
    let p = dir.path().join("plain.iso");
    build_iso(
        dir.path(),
        &p,
        &IsoSpec {
            bios_entry: false,
            efi_entry: false,
            ..Default::default()
        },
    );
    let err = inspect_iso(File::open(&p).unwrap(), BootMode::Uefi).unwrap_err();
    assert!(err.contains("El Torito"), "{err}");
    let junk = dir.path().join("junk.iso");
    std::fs::write(&junk, vec![0x42u8; 100_000]).unwrap();
    let err = inspect_iso(File::open(&junk).unwrap(), BootMode::Uefi).unwrap_err();
    assert!(err.contains("not an ISO 9660 image"), "{err}");
}

const PARAMS: &str = "ipa-api-url=http://127.0.0.1:6385\nipa-agent-token=tok\nBOOTIF=01-52-54-00-12-34-56\nboot_method=vmedia\n";

#[test]
fn mkfs_vfat_floppy_superfloppy() {
    if !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fd.img");
    build_floppy(dir.path(), &img, "ir-vfd-dev", PARAMS);
    let f = File::open(&img).unwrap();
    let vols = fat::volumes(&f).unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].offset, 0);
    assert_eq!(vols[0].fat_type, FatType::Fat12);
    assert!(
        vols[0].label.eq_ignore_ascii_case("ir-vfd-dev"),
        "{}",
        vols[0].label
    );
    let entries = vols[0].root_entries(&f).unwrap();
    let e = entries
        .iter()
        .find(|e| e.matches("parameters.txt"))
        .unwrap();
    assert_eq!(e.long_name.as_deref(), Some("parameters.txt"));
    assert_eq!(e.size as usize, PARAMS.len());
    assert_eq!(read_params(&f).unwrap().as_deref(), Some(PARAMS));

    // A different label: the image is attached but is not the parameter volume.
    let other = dir.path().join("other.img");
    build_floppy(dir.path(), &other, "OTHER", PARAMS);
    assert_eq!(read_params(&File::open(&other).unwrap()).unwrap(), None);
}

#[test]
fn mkfs_vfat_partitioned_hd_and_fat32() {
    if !have_tool("mkfs.vfat") || !have_tool("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("hd.img");
    build_partitioned_hd(dir.path(), &img, "ir-vfd-dev", PARAMS);
    let f = File::open(&img).unwrap();
    let vols = fat::volumes(&f).unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].offset, 1 << 20);
    assert_eq!(vols[0].fat_type, FatType::Fat16);
    let v = fat::find_labelled(&f, "IR-VFD-DEV").unwrap();
    assert_eq!(
        v.read_root_file(&f, "PARAMETERS.TXT").unwrap().as_deref(),
        Some(PARAMS.as_bytes())
    );
    let long = v
        .read_root_file(&f, "a-rather-long-file-name-for-lfn.txt")
        .unwrap();
    assert_eq!(long.as_deref(), Some(PARAMS.as_bytes()));
    assert_eq!(read_params(&f).unwrap().as_deref(), Some(PARAMS));

    // FAT32 superfloppy (40 MiB, sparse).
    let img32 = dir.path().join("fat32.img");
    run(std::process::Command::new(tool_path("mkfs.vfat"))
        .args(["-C", "-F", "32", "-n", "ir-vfd-dev"])
        .arg(&img32)
        .arg("40960"));
    let src = dir.path().join("parameters.txt");
    std::fs::write(&src, PARAMS).unwrap();
    run(std::process::Command::new("mcopy")
        .arg("-i")
        .arg(&img32)
        .arg(&src)
        .arg("::parameters.txt"));
    let f = File::open(&img32).unwrap();
    assert_eq!(fat::volumes(&f).unwrap()[0].fat_type, FatType::Fat32);
    assert_eq!(read_params(&f).unwrap().as_deref(), Some(PARAMS));

    // Damage: a chain that links to an invalid cluster, and one that loops onto itself
    // while the size asks for more clusters, must end in an error, never a hang or a panic.
    let bytes = std::fs::read(dir.path().join("hd.img")).unwrap();
    let base = 1usize << 20;
    let reserved = usize::from(u16::from_le_bytes([bytes[base + 14], bytes[base + 15]]));
    let fat_start = base + 512 * reserved;
    let vol = fat::volumes(&bytes).unwrap().remove(0);
    let e = vol
        .root_entries(&bytes)
        .unwrap()
        .into_iter()
        .find(|e| e.matches("parameters.txt"))
        .unwrap();
    let dirent = bytes.windows(11).position(|w| w == b"PARAME~1TXT").unwrap();
    for link in [1u16, e.first_cluster as u16] {
        let mut b = bytes.clone();
        let at = fat_start + e.first_cluster as usize * 2;
        b[at..at + 2].copy_from_slice(&link.to_le_bytes());
        b[dirent + 28..dirent + 32].copy_from_slice(&100_000u32.to_le_bytes());
        let v = fat::find_labelled(&b, "ir-vfd-dev").unwrap();
        let err = v.read_root_file(&b, "parameters.txt").unwrap_err();
        assert!(matches!(err, fat::FatError::Corrupt(_)), "{err}");
    }
}
