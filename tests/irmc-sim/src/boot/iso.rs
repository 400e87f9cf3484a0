//! A small, read-only ISO 9660 reader: just enough for a firmware to decide whether a CD
//! image is bootable and for the simulated boot loader to find its configuration file.
//!
//! What it understands:
//! - the volume descriptor set from sector 16 (primary, supplementary/Joliet, boot record,
//!   terminator); only the primary tree is walked, Joliet is ignored;
//! - the El Torito boot record and boot catalog (validation entry with its checksum, the
//!   default entry, section headers and section entries; extension entries are skipped);
//! - directory records, including Rock Ridge `NM` names in the system use area, so files
//!   are found by their real name as well as by their ISO 9660 level-1 name (`ISOLINUX.CFG;1`).
//!
//! Every offset and length read from the image is bounds-checked; a damaged or hostile image
//! yields an [`IsoError`], never a panic, and reads are capped so a bogus size field
//! cannot make the reader allocate gigabytes.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// ISO 9660 logical sector size (the only one real media use).
pub const SECTOR: u64 = 2048;

/// Largest file this reader returns (boot configuration files are a few KiB).
const MAX_FILE: u64 = 1 << 20;
/// Volume descriptors examined before giving up on finding a terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Directory levels walked (protects against loops in a corrupt tree).
const MAX_DEPTH: usize = 16;

/// Why an image is not a usable bootable ISO.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IsoError {
    #[error("read error at byte {offset}: {reason}")]
    Io { offset: u64, reason: String },
    #[error("not an ISO 9660 image: {0}")]
    NotIso(String),
    #[error("no El Torito boot record")]
    NoBootRecord,
    #[error("invalid El Torito boot catalog: {0}")]
    BadCatalog(String),
    #[error("corrupt directory tree: {0}")]
    BadDirectory(String),
}

/// Random access to the bytes of an image.
pub trait ReadAt {
    /// Fill `buf` from `offset`; short images are an error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IsoError>;
}

impl ReadAt for File {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IsoError> {
        FileExt::read_exact_at(self, buf, offset).map_err(|e| IsoError::Io {
            offset,
            reason: e.to_string(),
        })
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IsoError> {
        let start = usize::try_from(offset).ok();
        let end = start.and_then(|s| s.checked_add(buf.len()));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.len() => {
                buf.copy_from_slice(&self[s..e]);
                Ok(())
            }
            _ => Err(IsoError::Io {
                offset,
                reason: "past the end of the image".into(),
            }),
        }
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IsoError> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// El Torito platform of a boot entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// 0x00: 80x86 BIOS.
    Bios,
    /// 0xEF: UEFI.
    Efi,
    /// Anything else (PowerPC 0x01, Mac 0x02, ...).
    Other(u8),
}

impl Platform {
    fn from_id(id: u8) -> Self {
        match id {
            0x00 => Platform::Bios,
            0xEF => Platform::Efi,
            other => Platform::Other(other),
        }
    }
}

/// One initial/default or section entry of the boot catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub platform: Platform,
    /// Boot indicator 0x88.
    pub bootable: bool,
    /// 0 = no emulation, 1-3 = floppy emulation, 4 = hard disk emulation.
    pub media_type: u8,
    /// Virtual (512-byte) sectors loaded by the BIOS.
    pub sector_count: u16,
    /// Start of the boot image, in ISO sectors.
    pub load_rba: u32,
}

/// A directory record of the primary tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The ISO 9660 identifier without the `;1` version and trailing dot.
    pub iso_name: String,
    /// The Rock Ridge name when present.
    pub rr_name: Option<String>,
    pub is_dir: bool,
    pub extent: u32,
    pub size: u32,
}

impl DirEntry {
    /// True when `name` matches the Rock Ridge name exactly or the ISO name ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        self.rr_name.as_deref() == Some(name) || self.iso_name.eq_ignore_ascii_case(name)
    }
}

/// An opened ISO image: primary volume facts plus the El Torito catalog if present.
pub struct Iso<R: ReadAt + ?Sized> {
    src: Box<R>,
    /// Volume identifier from the PVD (trimmed).
    pub volume_id: String,
    /// Volume space size in sectors.
    pub volume_sectors: u32,
    root: DirEntry,
    /// Boot catalog sector, when the image has an El Torito boot record.
    pub boot_catalog: Option<u32>,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<R: ReadAt + ?Sized> Iso<R> {
    /// Read the volume descriptor set. Fails when there is no primary volume descriptor.
    pub fn open(src: Box<R>) -> Result<Self, IsoError> {
        let mut pvd: Option<(String, u32, DirEntry)> = None;
        let mut boot_catalog = None;
        let mut sector = [0u8; SECTOR as usize];
        for i in 0..MAX_DESCRIPTORS {
            let offset = (16 + i) * SECTOR;
            src.read_exact_at(offset, &mut sector)
                .map_err(|e| match e {
                    IsoError::Io { .. } if i == 0 => {
                        IsoError::NotIso("image shorter than 17 sectors".into())
                    }
                    other => other,
                })?;
            if &sector[1..6] != b"CD001" {
                if i == 0 {
                    return Err(IsoError::NotIso("no CD001 signature at sector 16".into()));
                }
                break;
            }
            match sector[0] {
                0 => {
                    // Boot record: system identifier at 7..39, catalog pointer at 0x47.
                    let ident = &sector[7..39];
                    let text = b"EL TORITO SPECIFICATION";
                    if ident.starts_with(text) && ident[text.len()..].iter().all(|&b| b == 0) {
                        boot_catalog = Some(le_u32(&sector, 0x47));
                    }
                }
                1 if pvd.is_none() => {
                    let block = le_u16(&sector, 128);
                    if u64::from(block) != SECTOR {
                        return Err(IsoError::NotIso(format!(
                            "logical block size {block} is not 2048"
                        )));
                    }
                    let volume_id = String::from_utf8_lossy(&sector[40..72]).trim().to_string();
                    let volume_sectors = le_u32(&sector, 80);
                    let root = parse_record(&sector[156..190])
                        .ok_or_else(|| IsoError::NotIso("bad root directory record".into()))?;
                    pvd = Some((volume_id, volume_sectors, root));
                }
                255 => break,
                _ => {}
            }
        }
        let (volume_id, volume_sectors, root) =
            pvd.ok_or_else(|| IsoError::NotIso("no primary volume descriptor".into()))?;
        Ok(Iso {
            src,
            volume_id,
            volume_sectors,
            root,
            boot_catalog,
        })
    }

    /// The El Torito entries (default entry first, then section entries in order).
    pub fn boot_entries(&self) -> Result<Vec<BootEntry>, IsoError> {
        let catalog = self.boot_catalog.ok_or(IsoError::NoBootRecord)?;
        let mut buf = vec![0u8; SECTOR as usize];
        self.src
            .read_exact_at(u64::from(catalog) * SECTOR, &mut buf)?;
        let validation = &buf[0..32];
        if validation[0] != 0x01 {
            return Err(IsoError::BadCatalog(
                "validation entry header is not 1".into(),
            ));
        }
        if validation[30] != 0x55 || validation[31] != 0xAA {
            return Err(IsoError::BadCatalog(
                "validation entry key is not 55 AA".into(),
            ));
        }
        // The 16 little-endian words of the validation entry sum to zero.
        let sum = (0..16).fold(0u16, |acc, w| acc.wrapping_add(le_u16(validation, w * 2)));
        if sum != 0 {
            return Err(IsoError::BadCatalog(format!(
                "validation entry checksum does not sum to 0 (sum {sum:#06x})"
            )));
        }
        let mut entries = vec![parse_entry(&buf[32..64], Platform::from_id(validation[1]))];
        // Sections follow the default entry until a final header (0x91) has been consumed.
        let mut pos = 64;
        let mut last_header = false;
        while pos + 32 <= buf.len() && !last_header {
            let header = &buf[pos..pos + 32];
            match header[0] {
                0x90 | 0x91 => {
                    last_header = header[0] == 0x91;
                    let platform = Platform::from_id(header[1]);
                    let count = usize::from(le_u16(header, 2));
                    pos += 32;
                    let mut seen = 0;
                    while seen < count {
                        if pos + 32 > buf.len() {
                            return Err(IsoError::BadCatalog(
                                "section runs past the catalog sector".into(),
                            ));
                        }
                        let e = &buf[pos..pos + 32];
                        pos += 32;
                        if e[0] == 0x44 {
                            // Section entry extension: belongs to the previous entry.
                            continue;
                        }
                        entries.push(parse_entry(e, platform));
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        Ok(entries)
    }

    /// Entries of one directory of the primary tree.
    pub fn read_dir(&self, dir: &DirEntry) -> Result<Vec<DirEntry>, IsoError> {
        if !dir.is_dir {
            return Err(IsoError::BadDirectory(format!(
                "{} is not a directory",
                dir.iso_name
            )));
        }
        let size = u64::from(dir.size).min(MAX_FILE);
        let data = self.read_extent(dir.extent, size)?;
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let len = usize::from(data[pos]);
            if len == 0 {
                // Records never straddle sectors: zero padding up to the next sector.
                pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if len < 34 || pos + len > data.len() {
                return Err(IsoError::BadDirectory(format!(
                    "record of length {len} at {pos} in directory {}",
                    dir.iso_name
                )));
            }
            if let Some(e) = parse_record(&data[pos..pos + len]) {
                // Skip "." and ".." (identifiers 0x00 and 0x01).
                if !e.iso_name.is_empty() {
                    out.push(e);
                }
            }
            pos += len;
        }
        Ok(out)
    }

    /// Find a file or directory by absolute path ("/isolinux/isolinux.cfg").
    pub fn lookup(&self, path: &str) -> Result<Option<DirEntry>, IsoError> {
        let mut cur = self.root.clone();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Ok(None);
        }
        for (i, part) in parts.iter().enumerate() {
            if !cur.is_dir {
                return Ok(None);
            }
            let entries = self.read_dir(&cur)?;
            // Prefer an exact Rock Ridge match over a case-insensitive ISO name match.
            let found = entries
                .iter()
                .find(|e| e.rr_name.as_deref() == Some(part))
                .or_else(|| entries.iter().find(|e| e.matches(part)));
            match found {
                Some(e) => cur = e.clone(),
                None => return Ok(None),
            }
            if i + 1 < parts.len() && !cur.is_dir {
                return Ok(None);
            }
        }
        Ok(Some(cur))
    }

    /// Read a whole (small) file by absolute path; `None` when it does not exist.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, IsoError> {
        match self.lookup(path)? {
            Some(e) if !e.is_dir => {
                if u64::from(e.size) > MAX_FILE {
                    return Err(IsoError::BadDirectory(format!(
                        "{path} is {} bytes, more than a boot configuration can be",
                        e.size
                    )));
                }
                self.read_extent(e.extent, u64::from(e.size)).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn read_extent(&self, extent: u32, size: u64) -> Result<Vec<u8>, IsoError> {
        let len = usize::try_from(size)
            .map_err(|_| IsoError::BadDirectory("extent size overflows".into()))?;
        let mut buf = vec![0u8; len];
        self.src
            .read_exact_at(u64::from(extent) * SECTOR, &mut buf)?;
        Ok(buf)
    }
}

fn parse_entry(e: &[u8], platform: Platform) -> BootEntry {
    BootEntry {
        platform,
        bootable: e[0] == 0x88,
        media_type: e[1] & 0x0F,
        sector_count: le_u16(e, 6),
        load_rba: le_u32(e, 8),
    }
}

/// Parse one directory record (`rec` is exactly the record's bytes).
fn parse_record(rec: &[u8]) -> Option<DirEntry> {
    if rec.len() < 34 {
        return None;
    }
    let extent = le_u32(rec, 2);
    let size = le_u32(rec, 10);
    let flags = rec[25];
    let name_len = usize::from(rec[32]);
    if 33 + name_len > rec.len() {
        return None;
    }
    let raw = &rec[33..33 + name_len];
    let iso_name = if raw == [0] || raw == [1] {
        String::new()
    } else {
        let s = String::from_utf8_lossy(raw);
        let s = s.split(';').next().unwrap_or_default();
        s.strip_suffix('.').unwrap_or(s).to_string()
    };
    // System use area starts after the identifier and its padding byte (even length).
    let mut su = 33 + name_len;
    if name_len % 2 == 0 {
        su += 1;
    }
    let rr_name = rock_ridge_name(rec.get(su..).unwrap_or_default());
    Some(DirEntry {
        iso_name,
        rr_name,
        is_dir: flags & 0x02 != 0,
        extent,
        size,
    })
}

/// Collect the Rock Ridge alternate name (`NM` entries, possibly split with the CONTINUE
/// flag) from a record's system use area. Continuation areas (`CE`) are not followed: names
/// of boot files are short enough to sit in the record.
fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    while su.len() >= 4 {
        let len = usize::from(su[2]);
        if len < 4 || len > su.len() {
            break;
        }
        if &su[0..2] == b"NM" && len >= 5 {
            let flags = su[4];
            // Flags 0x02 (".") and 0x04 ("..") carry no name.
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[5..len]);
                found = true;
            }
        } else if &su[0..2] == b"ST" {
            break;
        }
        su = &su[len..];
    }
    if found {
        Some(String::from_utf8_lossy(&name).into_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made two-entry catalog exercises the checksum and section parsing.
    fn catalog(sections: bool) -> Vec<u8> {
        let mut c = vec![0u8; 2048];
        c[0] = 1;
        c[1] = 0;
        c[30] = 0x55;
        c[31] = 0xAA;
        let sum = (0..16).fold(0u16, |a, w| a.wrapping_add(le_u16(&c, w * 2)));
        let fix = 0u16.wrapping_sub(sum);
        c[28..30].copy_from_slice(&fix.to_le_bytes());
        c[32] = 0x88;
        c[38..40].copy_from_slice(&4u16.to_le_bytes());
        c[40..44].copy_from_slice(&33u32.to_le_bytes());
        if sections {
            c[64] = 0x91;
            c[65] = 0xEF;
            c[66..68].copy_from_slice(&1u16.to_le_bytes());
            c[96] = 0x88;
            c[102..104].copy_from_slice(&2880u16.to_le_bytes());
            c[104..108].copy_from_slice(&40u32.to_le_bytes());
        }
        c
    }

    fn image_with_catalog(cat: Vec<u8>) -> Vec<u8> {
        let mut img = vec![0u8; 2048 * 21];
        // PVD at 16.
        let p = 16 * 2048;
        img[p] = 1;
        img[p + 1..p + 6].copy_from_slice(b"CD001");
        img[p + 128..p + 130].copy_from_slice(&2048u16.to_le_bytes());
        img[p + 156] = 34;
        img[p + 156 + 2..p + 156 + 6].copy_from_slice(&19u32.to_le_bytes());
        img[p + 156 + 10..p + 156 + 14].copy_from_slice(&2048u32.to_le_bytes());
        img[p + 156 + 25] = 2;
        img[p + 156 + 32] = 1;
        // Boot record at 17.
        let b = 17 * 2048;
        img[b + 1..b + 6].copy_from_slice(b"CD001");
        img[b + 7..b + 30].copy_from_slice(b"EL TORITO SPECIFICATION");
        img[b + 0x47..b + 0x4B].copy_from_slice(&20u32.to_le_bytes());
        // Terminator at 18.
        let t = 18 * 2048;
        img[t] = 255;
        img[t + 1..t + 6].copy_from_slice(b"CD001");
        img[20 * 2048..21 * 2048].copy_from_slice(&cat);
        img
    }

    #[test]
    fn catalog_with_efi_section() {
        let iso = Iso::open(Box::new(image_with_catalog(catalog(true)))).unwrap();
        let e = iso.boot_entries().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].platform, Platform::Bios);
        assert!(e[0].bootable);
        assert_eq!(e[0].load_rba, 33);
        assert_eq!(e[1].platform, Platform::Efi);
        assert_eq!(e[1].load_rba, 40);
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut cat = catalog(false);
        cat[4] ^= 0xFF;
        let iso = Iso::open(Box::new(image_with_catalog(cat))).unwrap();
        assert!(matches!(iso.boot_entries(), Err(IsoError::BadCatalog(_))));
    }

    #[test]
    fn garbage_is_not_iso() {
        let img = vec![0xA5u8; 2048 * 20];
        assert!(matches!(Iso::open(Box::new(img)), Err(IsoError::NotIso(_))));
        let short = vec![0u8; 100];
        assert!(matches!(
            Iso::open(Box::new(short)),
            Err(IsoError::NotIso(_))
        ));
    }

    #[test]
    fn truncated_image_errors_instead_of_panicking() {
        let mut img = image_with_catalog(catalog(true));
        img.truncate(19 * 2048);
        let iso = Iso::open(Box::new(img)).unwrap();
        assert!(iso.boot_entries().is_err());
        assert!(iso.read_file("/isolinux/isolinux.cfg").is_err());
    }
}
