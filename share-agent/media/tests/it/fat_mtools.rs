//! Parameter images read back by real mtools and dosfstools.

use crate::common;

use std::process::Command;

use boot_media::{
    ImageForm, Parameters, parameter_image, parameter_image_sparse, write_atomic,
    write_atomic_sparse,
};

fn sample() -> Parameters {
    Parameters::from_pairs([
        ("ipa-api-url", "http://127.0.0.1:6385"),
        ("ipa-agent-token", "tok-123"),
        ("BOOTIF", "01-52-54-00-12-34-56"),
        ("boot_method", "vmedia"),
        (
            "ipa-global-request-id",
            "req-1f2e3d4c-0000-4000-8000-000000000001",
        ),
        ("note", "value with spaces and = sign"),
    ])
    .unwrap()
}

fn check_form(form: ImageForm) {
    if !(common::have_tool("mdir") && common::have_tool("fsck.fat")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("node.img");
    let params = sample();
    let bytes = parameter_image(&params, form).unwrap();
    let stats = write_atomic(&img, &bytes, true).unwrap();
    assert_eq!(stats.bytes_written, form.size_bytes());
    assert!(
        stats.bytes_allocated <= 32 * 1024,
        "sparse image allocates {} bytes",
        stats.bytes_allocated
    );
    let img_s = img.to_str().unwrap();

    // mtools must not complain about geometry; MTOOLS_SKIP_CHECK stays unset on purpose.
    let listing = common::stdout(Command::new("mdir").args(["-i", img_s, "::"]));
    assert!(listing.contains("parameters.txt"), "{listing}");
    assert!(listing.contains("ir-vfd-dev"), "{listing}");

    let text = common::stdout(Command::new("mtype").args(["-i", img_s, "::parameters.txt"]));
    assert_eq!(text, params.to_text());

    let label = common::stdout(Command::new("mlabel").args(["-s", "-i", img_s, "::"]));
    assert_eq!(label.trim(), "Volume label is ir-vfd-dev", "{label:?}");

    let fsck = common::run(Command::new("fsck.fat").args(["-n", img_s]));
    let out = String::from_utf8_lossy(&fsck.stdout);
    assert!(out.contains("2 files") || out.contains("1 files"), "{out}");

    // Same parameters, same bytes on disk.
    let again = dir.path().join("again.img");
    write_atomic(&again, &parameter_image(&params, form).unwrap(), true).unwrap();
    assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&again).unwrap());

    // The sparse path (what the share agent uses) writes the same bytes, full length,
    // a few blocks allocated, and mtools reads it.
    let sparse = dir.path().join("sparse.img");
    let image = parameter_image_sparse(&params, form).unwrap();
    let s = write_atomic_sparse(&sparse, &image).unwrap();
    let meta = std::fs::metadata(&sparse).unwrap();
    assert_eq!(meta.len(), form.size_bytes());
    assert_eq!(s.bytes_written, form.size_bytes());
    {
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 <= 16 * 1024,
            "{} bytes",
            meta.blocks() * 512
        );
        assert_eq!(s.bytes_allocated, meta.blocks() * 512);
    }
    assert_eq!(
        std::fs::read(&sparse).unwrap(),
        std::fs::read(&img).unwrap()
    );
    let sparse_s = sparse.to_str().unwrap();
    let text = common::stdout(Command::new("mtype").args(["-i", sparse_s, "::parameters.txt"]));
    assert_eq!(text, params.to_text());
}

#[test]
fn floppy_reads_back_in_mtools() {
    check_form(ImageForm::Floppy);
}

#[test]
fn hard_disk_reads_back_in_mtools() {
    check_form(ImageForm::HardDisk);
}

#[test]
fn hard_disk_form_is_a_superfloppy() {
    // No MBR partition table: IPA rejects a partition, so the FAT must start at sector 0.
    let bytes = parameter_image(&sample(), ImageForm::HardDisk).unwrap();
    assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
    assert_eq!(
        u16::from_le_bytes([bytes[11], bytes[12]]),
        512,
        "BPB bytes/sector at offset 11"
    );
    assert_eq!(bytes[21], 0xF8, "media byte of a fixed disk");
    assert_eq!(&bytes[43..54], b"ir-vfd-dev ");
    let floppy = parameter_image(&sample(), ImageForm::Floppy).unwrap();
    assert_eq!(floppy[21], 0xF0);
    assert_eq!(u16::from_le_bytes([floppy[19], floppy[20]]), 2880);
}
