//! El Torito boot ISOs, built in-process with `hadris-iso`.
//!
//! Layout of every ISO (ISO 9660 level 1 names plus Rock Ridge):
//! ```text
//! /boot/vmlinuz            kernel
//! /boot/initrd             initramfs
//! /boot/grub/grub.cfg      UEFI menu: serial console, one entry with the cmdline
//! /isolinux/isolinux.bin   BIOS El Torito entry (no emulation, 4 sectors, boot info table)
//! /isolinux/ldlinux.c32
//! /isolinux/isolinux.cfg   BIOS menu: serial console, one entry with the cmdline
//! /isolinux/efiboot.img    UEFI El Torito entry: FAT image with EFI/BOOT/BOOTX64.EFI
//! ```
//! `BOOTX64.EFI` is a standalone GRUB whose embedded config only finds the ISO (by
//! `/boot/vmlinuz`) and loads that file, so one GRUB build serves every ISO:
//! it is built once with `grub-mkstandalone` (a build-time tool) or taken prebuilt.
//!
//! Kernel and initramfs are streamed from their files into the ISO, never held in memory.
//! [`boot_iso_key`] hashes every input (file contents, cmdline, loaders, flags) so two
//! requests for the same boot media share one file on the share.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::num::NonZeroU16;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::MediaError;
use crate::fsio::{ensure_space, parent_dir, sync_dir, temp_path_for};
use crate::params::Parameters;

/// GRUB modules in the standalone `BOOTX64.EFI`.
pub const GRUB_MODULES: &str = "part_gpt part_msdos iso9660 fat search search_fs_file linux serial terminal normal configfile echo test";

/// Config embedded in `BOOTX64.EFI`: find the ISO and chain to its `grub.cfg`.
/// The search keys on `/boot/vmlinuz`, not on `grub.cfg`: the memdisk inside
/// `BOOTX64.EFI` holds a `/boot/grub/grub.cfg` itself (this text), and finding that one
/// would make `configfile` recurse forever.
pub const GRUB_EMBED_CFG: &str = "\
search --no-floppy --set=root --file /boot/vmlinuz
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
";

/// Boot loader files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Loaders {
    /// isolinux.bin (BIOS El Torito image).
    pub isolinux_bin: PathBuf,
    /// ldlinux.c32 (isolinux's core module).
    pub ldlinux_c32: PathBuf,
    /// A prebuilt `BOOTX64.EFI` (standalone GRUB that chains to `/boot/grub/grub.cfg`,
    /// e.g. one made by [`build_grub_efi`]). `None`: build one with `grub_mkstandalone`.
    pub grub_efi: Option<PathBuf>,
    /// The `grub-mkstandalone` program (looked up in `PATH` if relative).
    pub grub_mkstandalone: PathBuf,
}

impl Default for Loaders {
    /// Debian's locations (packages isolinux, syslinux-common, grub-efi-amd64-bin).
    fn default() -> Self {
        Loaders {
            isolinux_bin: PathBuf::from("/usr/lib/ISOLINUX/isolinux.bin"),
            ldlinux_c32: PathBuf::from("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
            grub_efi: None,
            grub_mkstandalone: PathBuf::from("grub-mkstandalone"),
        }
    }
}

/// What to put in a boot ISO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootIsoSpec {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Kernel command line (one line; it goes verbatim into isolinux.cfg and grub.cfg).
    pub cmdline: String,
    /// Add a BIOS (isolinux) El Torito entry.
    pub bios: bool,
    /// Add a UEFI (GRUB in an EFI system partition image) El Torito entry.
    pub uefi: bool,
    pub loaders: Loaders,
    /// ISO volume id (d-characters, at most 32).
    pub volume_id: String,
}

impl BootIsoSpec {
    /// A BIOS + UEFI spec with Debian loaders and volume id `VMEDIA_BOOT`.
    pub fn new(
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        cmdline: impl Into<String>,
    ) -> Self {
        BootIsoSpec {
            kernel: kernel.into(),
            initrd: initrd.into(),
            cmdline: cmdline.into(),
            bios: true,
            uefi: true,
            loaders: Loaders::default(),
            volume_id: "VMEDIA_BOOT".into(),
        }
    }
}

/// A deploy ISO: the deploy kernel + ramdisk with `boot_method=vmedia` and the
/// parameters shared by all nodes on the kernel command line (per-node values such as the
/// agent token go on the parameter image instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployIsoSpec {
    pub kernel: PathBuf,
    pub ramdisk: PathBuf,
    /// Shared parameters (values may not contain whitespace: they go on the cmdline).
    pub params: Parameters,
    /// Appended verbatim (e.g. `console=ttyS0,115200`).
    pub extra_cmdline: String,
    pub bios: bool,
    pub uefi: bool,
    pub loaders: Loaders,
}

impl DeployIsoSpec {
    /// The equivalent [`BootIsoSpec`] (volume id `VMEDIA_DEPLOY`).
    pub fn to_boot_spec(&self) -> Result<BootIsoSpec, MediaError> {
        Ok(BootIsoSpec {
            kernel: self.kernel.clone(),
            initrd: self.ramdisk.clone(),
            cmdline: deploy_cmdline(&self.params, &self.extra_cmdline)?,
            bios: self.bios,
            uefi: self.uefi,
            loaders: self.loaders.clone(),
            volume_id: "VMEDIA_DEPLOY".into(),
        })
    }
}

/// `boot_method=vmedia key=value ... extra`: the deploy ramdisk's kernel command line.
pub fn deploy_cmdline(params: &Parameters, extra: &str) -> Result<String, MediaError> {
    let mut s = String::from("boot_method=vmedia");
    for (k, v) in params.iter() {
        if k == "boot_method" {
            continue;
        }
        if v.is_empty() || v.chars().any(char::is_whitespace) {
            return Err(MediaError::InvalidParameter {
                key: k.to_string(),
                reason: "a kernel command line value must be non-empty without whitespace".into(),
            });
        }
        s.push(' ');
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    let extra = extra.trim();
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    Ok(s)
}

/// What building an ISO cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoStats {
    /// Size of the ISO.
    pub bytes: u64,
    /// Bytes allocated on disk.
    pub bytes_allocated: u64,
    /// Wall time of the build (GRUB build excluded when it was cached or prebuilt).
    pub elapsed: Duration,
}

fn iso_err(out: &Path, reason: impl Into<String>) -> MediaError {
    MediaError::Iso {
        path: out.to_path_buf(),
        reason: reason.into(),
    }
}

fn validate_spec(spec: &BootIsoSpec, out: &Path) -> Result<(), MediaError> {
    if !spec.bios && !spec.uefi {
        return Err(iso_err(out, "neither BIOS nor UEFI boot requested"));
    }
    if spec.cmdline.chars().any(|c| c.is_control()) {
        return Err(iso_err(
            out,
            "kernel command line contains a control character (e.g. newline)",
        ));
    }
    if spec.cmdline.len() > 2048 {
        return Err(iso_err(out, "kernel command line longer than 2048 bytes"));
    }
    let v = &spec.volume_id;
    if v.is_empty()
        || v.len() > 32
        || !v
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(iso_err(
            out,
            format!("volume id {v:?} must be 1-32 of A-Z 0-9 _"),
        ));
    }
    Ok(())
}

/// The isolinux.cfg for a cmdline.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /boot/vmlinuz\n  APPEND initrd=/boot/initrd {cmdline}\n"
    )
}

/// The ISO's grub.cfg for a cmdline.
pub fn grub_cfg(cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\nset timeout=0\nmenuentry \"boot\" {{\n  linux /boot/vmlinuz {cmdline}\n  initrd /boot/initrd\n}}\n"
    )
}

fn sha256_file(path: &Path) -> Result<String, MediaError> {
    let mut f = File::open(path).map_err(|e| MediaError::io("open", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| MediaError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Identity of a file for hash memoisation: (device, inode, size, mtime ns).
/// (device, inode, size, mtime seconds, mtime nanoseconds).
pub(crate) type FileIdentity = (u64, u64, u64, i64, i64);

pub(crate) fn file_identity(path: &Path) -> Result<FileIdentity, MediaError> {
    let m = fs::metadata(path).map_err(|e| MediaError::io("stat", path, e))?;
    Ok((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// A way to hash a file; the store passes a memoising one so a 400 MB ramdisk is hashed
/// once, not once per node.
pub(crate) trait FileHasher {
    fn hash(&self, path: &Path) -> Result<String, MediaError>;
}

pub(crate) struct PlainHasher;

impl FileHasher for PlainHasher {
    fn hash(&self, path: &Path) -> Result<String, MediaError> {
        sha256_file(path)
    }
}

/// Text identifying how a GRUB `BOOTX64.EFI` would be built here (tool version, modules,
/// embedded config): the stand-in for its content in keys.
pub fn grub_recipe(tool: &Path) -> Result<String, MediaError> {
    let out = Command::new(tool)
        .arg("--version")
        .output()
        .map_err(|e| MediaError::Tool {
            tool: tool.display().to_string(),
            reason: format!("cannot run: {e}"),
        })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(format!(
        "grub-mkstandalone {version}\nmodules {GRUB_MODULES}\n{GRUB_EMBED_CFG}"
    ))
}

pub(crate) fn boot_iso_key_with(
    spec: &BootIsoSpec,
    hasher: &dyn FileHasher,
) -> Result<String, MediaError> {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update((value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
        h.update(b"\n");
    };
    field("format", "vmedia-boot-iso-v1");
    field("kernel", &hasher.hash(&spec.kernel)?);
    field("initrd", &hasher.hash(&spec.initrd)?);
    field("cmdline", &spec.cmdline);
    field("volume_id", &spec.volume_id);
    field("bios", if spec.bios { "1" } else { "0" });
    field("uefi", if spec.uefi { "1" } else { "0" });
    if spec.bios {
        field("isolinux", &hasher.hash(&spec.loaders.isolinux_bin)?);
        field("ldlinux", &hasher.hash(&spec.loaders.ldlinux_c32)?);
    }
    if spec.uefi {
        match &spec.loaders.grub_efi {
            Some(p) => field("grub_efi", &hasher.hash(p)?),
            None => field(
                "grub_recipe",
                &grub_recipe(&spec.loaders.grub_mkstandalone)?,
            ),
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Hex SHA-256 over every input of the ISO: kernel, initrd and loader *contents*,
/// cmdline, flags, volume id (and the GRUB recipe when GRUB is built here).
pub fn boot_iso_key(spec: &BootIsoSpec) -> Result<String, MediaError> {
    boot_iso_key_with(spec, &PlainHasher)
}

/// Build a standalone GRUB `BOOTX64.EFI` (embedded config [`GRUB_EMBED_CFG`]) at `out`.
/// Takes about a second; callers cache the result (see [`crate::BootIsoStore`]).
pub fn build_grub_efi(tool: &Path, out: &Path) -> Result<(), MediaError> {
    let tool_name = tool.display().to_string();
    let dir = parent_dir(out);
    let work = tempfile_dir(dir)?;
    let cfg = work.join("grub-embed.cfg");
    fs::write(&cfg, GRUB_EMBED_CFG).map_err(|e| MediaError::io("write", &cfg, e))?;
    let tmp_out = work.join("BOOTX64.EFI");
    let res = Command::new(tool)
        .arg("-O")
        .arg("x86_64-efi")
        .arg(format!("--modules={GRUB_MODULES}"))
        .arg("--locales=")
        .arg("--themes=")
        .arg("--fonts=")
        .arg("-o")
        .arg(&tmp_out)
        .arg(format!("boot/grub/grub.cfg={}", cfg.display()))
        .output();
    let result = match res {
        Err(e) => Err(MediaError::Tool {
            tool: tool_name,
            reason: format!("cannot run: {e}"),
        }),
        Ok(o) if !o.status.success() => Err(MediaError::Tool {
            tool: tool_name,
            reason: format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        }),
        Ok(_) => fs::rename(&tmp_out, out).map_err(|e| MediaError::io("rename into place", out, e)),
    };
    let _ = fs::remove_dir_all(&work);
    result
}

fn tempfile_dir(dir: &Path) -> Result<PathBuf, MediaError> {
    let p = temp_path_for(&dir.join("grub-build"));
    fs::create_dir(&p).map_err(|e| MediaError::io("create directory", &p, e))?;
    Ok(p)
}

/// An EFI system partition image (FAT) holding `EFI/BOOT/BOOTX64.EFI`.
pub fn efi_boot_image(bootx64: &[u8]) -> Result<Vec<u8>, MediaError> {
    // Room for the loader plus FAT overhead, rounded to 64 KiB; FAT12/16 is chosen by size.
    let size = ((bootx64.len() as u64 + 256 * 1024).div_ceil(65536) * 65536).max(1024 * 1024);
    let mut buf = vec![0u8; size as usize];
    let opts = fatfs::FormatVolumeOptions::new()
        .total_sectors((size / 512) as u32)
        .volume_id(0x4546_4900)
        .volume_label(*b"EFIBOOT    ");
    fatfs::format_volume(std::io::Cursor::new(buf.as_mut_slice()), opts).map_err(|source| {
        MediaError::Fat {
            what: "format ESP",
            source,
        }
    })?;
    {
        let fs = fatfs::FileSystem::new(
            std::io::Cursor::new(buf.as_mut_slice()),
            fatfs::FsOptions::new().time_provider(&crate::params::EPOCH_CLOCK),
        )
        .map_err(|source| MediaError::Fat {
            what: "mount ESP",
            source,
        })?;
        {
            let fat = |source| MediaError::Fat {
                what: "write BOOTX64.EFI",
                source,
            };
            let root = fs.root_dir();
            let efi = root.create_dir("EFI").map_err(fat)?;
            let boot = efi.create_dir("BOOT").map_err(fat)?;
            let mut f = boot.create_file("BOOTX64.EFI").map_err(fat)?;
            std::io::Write::write_all(&mut f, bootx64).map_err(fat)?;
        }
        fs.unmount().map_err(|source| MediaError::Fat {
            what: "unmount ESP",
            source,
        })?;
    }
    Ok(buf)
}

/// Resolve the BOOTX64.EFI bytes: the prebuilt file, or a fresh build in `scratch_dir`.
pub(crate) fn grub_efi_bytes(loaders: &Loaders, scratch_dir: &Path) -> Result<Vec<u8>, MediaError> {
    match &loaders.grub_efi {
        Some(p) => fs::read(p).map_err(|e| MediaError::io("read GRUB EFI loader", p, e)),
        None => {
            let out = temp_path_for(&scratch_dir.join("BOOTX64.EFI"));
            build_grub_efi(&loaders.grub_mkstandalone, &out)?;
            let bytes = fs::read(&out).map_err(|e| MediaError::io("read", &out, e));
            let _ = fs::remove_file(&out);
            bytes
        }
    }
}

/// Build the ISO for `spec` at `out` (atomically: temp file + fsync + rename).
///
/// Without a prebuilt GRUB (`spec.loaders.grub_efi`), a UEFI ISO runs
/// `grub-mkstandalone` once; use [`crate::BootIsoStore`] to build that only once.
pub fn build_boot_iso(spec: &BootIsoSpec, out: &Path) -> Result<IsoStats, MediaError> {
    validate_spec(spec, out)?;
    let efi = if spec.uefi {
        Some(grub_efi_bytes(&spec.loaders, parent_dir(out))?)
    } else {
        None
    };
    build_boot_iso_with_efi(spec, efi.as_deref(), out)
}

/// Build a deploy ISO (see [`DeployIsoSpec`]).
pub fn build_deploy_iso(spec: &DeployIsoSpec, out: &Path) -> Result<IsoStats, MediaError> {
    build_boot_iso(&spec.to_boot_spec()?, out)
}

pub(crate) fn build_boot_iso_with_efi(
    spec: &BootIsoSpec,
    bootx64: Option<&[u8]>,
    out: &Path,
) -> Result<IsoStats, MediaError> {
    use hadris_iso::boot::EmulationType;
    use hadris_iso::boot::PlatformId;
    use hadris_iso::boot::options::{BootEntryOptions, BootOptions, BootSectionOptions};
    use hadris_iso::read::PathSeparator;
    use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
    use hadris_iso::write::{
        FileSource, InputEntry, InputEntryKind, InputMetadata, InputTree, IsoImageWriter,
    };

    validate_spec(spec, out)?;
    let start = Instant::now();

    let source = |path: &Path| -> Result<(FileSource, u64), MediaError> {
        let s = FileSource::from_path(path).map_err(|e| MediaError::io("open", path, e))?;
        let len = s.len();
        if len == 0 {
            return Err(iso_err(out, format!("{} is empty", path.display())));
        }
        Ok((s, len))
    };
    let file_entry = |name: &str, kind: InputEntryKind| InputEntry {
        name: Arc::new(name.to_string()),
        kind,
        metadata: InputMetadata::default(),
    };

    let (kernel, kernel_len) = source(&spec.kernel)?;
    let (initrd, initrd_len) = source(&spec.initrd)?;
    let mut total = kernel_len + initrd_len;

    let mut grub_dir = vec![InputEntry::file(
        "grub.cfg",
        grub_cfg(&spec.cmdline).into_bytes(),
    )];
    grub_dir.retain(|_| spec.uefi);
    let mut boot_children = vec![
        file_entry("vmlinuz", InputEntryKind::Source(kernel)),
        file_entry("initrd", InputEntryKind::Source(initrd)),
    ];
    if spec.uefi {
        boot_children.push(InputEntry::directory("grub", grub_dir));
    }

    let mut iso_dir = Vec::new();
    let mut default_entry = None;
    let mut extra_entries = Vec::new();
    if spec.bios {
        let read = |p: &Path| fs::read(p).map_err(|e| MediaError::io("read boot loader", p, e));
        let isolinux = read(&spec.loaders.isolinux_bin)?;
        let ldlinux = read(&spec.loaders.ldlinux_c32)?;
        total += (isolinux.len() + ldlinux.len()) as u64;
        iso_dir.push(InputEntry::file("isolinux.bin", isolinux));
        iso_dir.push(InputEntry::file("ldlinux.c32", ldlinux));
        iso_dir.push(InputEntry::file(
            "isolinux.cfg",
            isolinux_cfg(&spec.cmdline).into_bytes(),
        ));
        default_entry = Some(BootEntryOptions {
            load_size: NonZeroU16::new(4),
            boot_image_path: "isolinux/isolinux.bin".into(),
            boot_info_table: true,
            grub2_boot_info: false,
            emulation: EmulationType::NoEmulation,
        });
    }
    if let Some(bootx64) = bootx64.filter(|_| spec.uefi) {
        let esp = efi_boot_image(bootx64)?;
        total += esp.len() as u64;
        iso_dir.push(InputEntry::file("efiboot.img", esp));
        let entry = BootEntryOptions {
            // The whole ESP image; firmware reads it as a FAT volume.
            load_size: None,
            boot_image_path: "isolinux/efiboot.img".into(),
            boot_info_table: false,
            grub2_boot_info: false,
            emulation: EmulationType::NoEmulation,
        };
        if default_entry.is_none() {
            default_entry = Some(entry);
        } else {
            extra_entries.push((
                BootSectionOptions {
                    platform: PlatformId::UEFI,
                },
                entry,
            ));
        }
    } else if spec.uefi {
        return Err(iso_err(
            out,
            "UEFI requested but no GRUB EFI loader available",
        ));
    }
    let Some(default) = default_entry else {
        return Err(iso_err(out, "no boot entry"));
    };

    let tree = InputTree {
        path_separator: PathSeparator::ForwardSlash,
        entries: vec![
            InputEntry::directory("boot", boot_children),
            InputEntry::directory("isolinux", iso_dir),
        ],
    };
    let mut features = CreationFeatures::rock_ridge();
    features.filenames = BaseIsoLevel::Level1 {
        supports_lowercase: false,
        supports_rrip: true,
    };
    features.el_torito = Some(BootOptions {
        write_boot_catalog: false,
        default,
        entries: extra_entries,
    });
    let opts = IsoFormatOptions {
        volume_name: spec.volume_id.clone(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features,
        strict_charset: false,
    };

    // Metadata, padding and the boot catalog are well under 1 MiB for this tree.
    let needed = total + 1024 * 1024;
    ensure_space(parent_dir(out), out, needed)?;
    let tmp = temp_path_for(out);
    let result = (|| {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| MediaError::io("create", &tmp, e))?;
        let mut file =
            IsoImageWriter::create(file, tree, opts).map_err(|e| iso_err(out, e.to_string()))?;
        if !spec.bios {
            mark_catalog_uefi(&mut file)
                .map_err(|e| MediaError::io("patch boot catalog", &tmp, e))?;
        }
        file.sync_all()
            .map_err(|e| MediaError::io("fsync", &tmp, e))?;
        let meta = file
            .metadata()
            .map_err(|e| MediaError::io("stat", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, out).map_err(|e| MediaError::io("rename into place", out, e))?;
        sync_dir(parent_dir(out))?;
        Ok(IsoStats {
            bytes: meta.len(),
            bytes_allocated: meta.blocks() * 512,
            elapsed: start.elapsed(),
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Set the platform of the boot catalog's validation entry (which also describes the
/// default entry) to UEFI (0xEF) and fix its checksum. The writer always says x86 there;
/// for a UEFI-only ISO that would advertise the ESP image as a BIOS boot image.
fn mark_catalog_uefi(f: &mut File) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    // The El Torito boot record volume descriptor is at sector 17.
    let mut brvd = [0u8; 2048];
    f.seek(SeekFrom::Start(17 * 2048))?;
    f.read_exact(&mut brvd)?;
    if brvd[0] != 0 || &brvd[1..6] != b"CD001" || !brvd[7..].starts_with(b"EL TORITO SPECIFICATION")
    {
        return Err(bad("no El Torito boot record at sector 17"));
    }
    let catalog = u32::from_le_bytes([brvd[0x47], brvd[0x48], brvd[0x49], brvd[0x4A]]);
    let mut entry = [0u8; 32];
    f.seek(SeekFrom::Start(u64::from(catalog) * 2048))?;
    f.read_exact(&mut entry)?;
    if entry[0] != 1 || entry[30..32] != [0x55, 0xAA] {
        return Err(bad("boot catalog has no validation entry"));
    }
    entry[1] = 0xEF;
    entry[28] = 0;
    entry[29] = 0;
    // The 16-bit little-endian words of the entry must sum to zero.
    let sum = entry.chunks(2).fold(0u16, |acc, w| {
        acc.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    let check = 0u16.wrapping_sub(sum).to_le_bytes();
    entry[28] = check[0];
    entry[29] = check[1];
    f.seek(SeekFrom::Start(u64::from(catalog) * 2048))?;
    f.write_all(&entry)?;
    Ok(())
}
