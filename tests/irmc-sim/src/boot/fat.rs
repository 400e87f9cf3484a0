//! A minimal read-only FAT12/16/32 reader for the parameter image: find the volume whose
//! label is `ir-vfd-dev` (on a superfloppy or inside an MBR partition) and read one file
//! from its root directory, by long (LFN) or 8.3 name.
//!
//! It reads the BPB, the root directory, the volume label entry and the cluster chain, and
//! nothing else (no subdirectories, no writes). All reads are bounds-checked and loops in a
//! corrupt FAT are cut off, so a hostile image gives a [`FatError`], never a panic.

use super::iso::{IsoError, ReadAt};

/// Largest file returned (`parameters.txt` is a few hundred bytes).
const MAX_FILE: u32 = 1 << 20;

/// Why a parameter image could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FatError {
    #[error("read error at byte {offset}: {reason}")]
    Io { offset: u64, reason: String },
    #[error("no FAT file system found (neither a superfloppy nor an MBR with a FAT partition)")]
    NoFat,
    #[error("no FAT volume labelled {0:?}")]
    NoLabel(String),
    #[error("corrupt FAT volume: {0}")]
    Corrupt(String),
}

impl From<IsoError> for FatError {
    fn from(e: IsoError) -> Self {
        match e {
            IsoError::Io { offset, reason } => FatError::Io { offset, reason },
            other => FatError::Corrupt(other.to_string()),
        }
    }
}

/// FAT width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// One FAT volume located in an image.
#[derive(Clone, Debug)]
pub struct FatVolume {
    /// Byte offset of the volume's boot sector in the image.
    pub offset: u64,
    pub fat_type: FatType,
    /// Label from the root directory's volume label entry, else from the BPB.
    pub label: String,
    bytes_per_sector: u32,
    sectors_per_cluster: u32,
    fat_start: u64,
    root_start: u64,
    root_entries: u32,
    data_start: u64,
    root_cluster: u32,
    cluster_count: u32,
}

/// A root directory entry with its assembled long name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatEntry {
    /// 8.3 name as "NAME.EXT" (lower-cased parts applied when the NT case flags say so).
    pub short_name: String,
    pub long_name: Option<String>,
    pub attr: u8,
    pub first_cluster: u32,
    pub size: u32,
}

impl FatEntry {
    /// Case-insensitive match on the long name or the 8.3 name, as Linux vfat does.
    pub fn matches(&self, name: &str) -> bool {
        self.long_name
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(name))
            || self.short_name.eq_ignore_ascii_case(name)
    }
}

fn le16(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Every FAT volume in the image: the whole image when it starts with a BPB (superfloppy),
/// otherwise each FAT partition of the MBR.
pub fn volumes<R: ReadAt + ?Sized>(src: &R) -> Result<Vec<FatVolume>, FatError> {
    let mut sector = [0u8; 512];
    src.read_exact_at(0, &mut sector)?;
    if let Some(v) = parse_bpb(src, &sector, 0)? {
        return Ok(vec![v]);
    }
    if sector[510] != 0x55 || sector[511] != 0xAA {
        return Err(FatError::NoFat);
    }
    let mut out = Vec::new();
    for i in 0..4 {
        let e = &sector[446 + i * 16..446 + (i + 1) * 16];
        let kind = e[4];
        let start = le32(e, 8);
        // FAT12, FAT16 (<32M), FAT16, FAT32 (CHS/LBA), FAT16 LBA, EFI system partition.
        if !matches!(kind, 0x01 | 0x04 | 0x06 | 0x0B | 0x0C | 0x0E | 0xEF) || start == 0 {
            continue;
        }
        let offset = u64::from(start) * 512;
        let mut boot = [0u8; 512];
        if src.read_exact_at(offset, &mut boot).is_err() {
            continue;
        }
        if let Some(v) = parse_bpb(src, &boot, offset)? {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(FatError::NoFat);
    }
    Ok(out)
}

/// Find the volume labelled `label` (case-insensitive, like `lsblk` matching on vfat).
pub fn find_labelled<R: ReadAt + ?Sized>(src: &R, label: &str) -> Result<FatVolume, FatError> {
    volumes(src)?
        .into_iter()
        .find(|v| v.label.eq_ignore_ascii_case(label))
        .ok_or_else(|| FatError::NoLabel(label.to_string()))
}

/// Validate a boot sector and compute the volume geometry; `None` when it is not a BPB.
fn parse_bpb<R: ReadAt + ?Sized>(
    src: &R,
    b: &[u8; 512],
    offset: u64,
) -> Result<Option<FatVolume>, FatError> {
    let bps = le16(b, 11);
    let spc = u32::from(b[13]);
    let reserved = le16(b, 14);
    let fats = u32::from(b[16]);
    let root_entries = le16(b, 17);
    let total16 = le16(b, 19);
    let media = b[21];
    let fat16_size = le16(b, 22);
    let total32 = le32(b, 32);
    let jump_ok = b[0] == 0xEB || b[0] == 0xE9;
    if !jump_ok
        || !matches!(bps, 512 | 1024 | 2048 | 4096)
        || spc == 0
        || !spc.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
        || !(media == 0xF0 || media >= 0xF8)
    {
        return Ok(None);
    }
    let total = if total16 != 0 { total16 } else { total32 };
    let fat_size = if fat16_size != 0 {
        fat16_size
    } else {
        le32(b, 36)
    };
    if total == 0 || fat_size == 0 {
        return Ok(None);
    }
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let meta =
        u64::from(reserved) + u64::from(fats) * u64::from(fat_size) + u64::from(root_sectors);
    if meta >= u64::from(total) {
        return Err(FatError::Corrupt(format!(
            "metadata ({meta} sectors) does not fit in the volume ({total} sectors)"
        )));
    }
    let cluster_count = u32::try_from((u64::from(total) - meta) / u64::from(spc))
        .map_err(|_| FatError::Corrupt("cluster count overflows".into()))?;
    // The FAT type is decided by the cluster count alone (Microsoft's rule).
    let fat_type = if cluster_count < 4085 {
        FatType::Fat12
    } else if cluster_count < 65525 {
        FatType::Fat16
    } else {
        FatType::Fat32
    };
    let bps64 = u64::from(bps);
    let fat_start = offset + u64::from(reserved) * bps64;
    let root_start = fat_start + u64::from(fats) * u64::from(fat_size) * bps64;
    let data_start = offset + meta * bps64;
    let (bpb_label, root_cluster) = match fat_type {
        FatType::Fat32 => (&b[71..82], le32(b, 44)),
        _ => (&b[43..54], 0),
    };
    let bpb_label = if b[if fat_type == FatType::Fat32 { 66 } else { 38 }] == 0x29 {
        String::from_utf8_lossy(bpb_label).trim_end().to_string()
    } else {
        String::new()
    };
    let mut v = FatVolume {
        offset,
        fat_type,
        label: String::new(),
        bytes_per_sector: bps,
        sectors_per_cluster: spc,
        fat_start,
        root_start,
        root_entries,
        data_start,
        root_cluster,
        cluster_count,
    };
    let (label, _) = v.scan_root(src)?;
    v.label = match label {
        Some(l) => l,
        // "NO NAME" is what formatters put in the BPB when there is no label.
        None if bpb_label != "NO NAME" => bpb_label,
        None => String::new(),
    };
    Ok(Some(v))
}

impl FatVolume {
    fn cluster_bytes(&self) -> u64 {
        u64::from(self.bytes_per_sector) * u64::from(self.sectors_per_cluster)
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_start + u64::from(cluster - 2) * self.cluster_bytes()
    }

    /// Next cluster in the chain, `None` at the end of the chain.
    fn next_cluster<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        cluster: u32,
    ) -> Result<Option<u32>, FatError> {
        let next = match self.fat_type {
            FatType::Fat12 => {
                let at = self.fat_start + u64::from(cluster) * 3 / 2;
                let mut b = [0u8; 2];
                src.read_exact_at(at, &mut b)?;
                let v = u32::from(u16::from_le_bytes(b));
                let v = if cluster & 1 == 1 { v >> 4 } else { v & 0x0FFF };
                if v >= 0xFF8 { None } else { Some(v) }
            }
            FatType::Fat16 => {
                let mut b = [0u8; 2];
                src.read_exact_at(self.fat_start + u64::from(cluster) * 2, &mut b)?;
                let v = u32::from(u16::from_le_bytes(b));
                if v >= 0xFFF8 { None } else { Some(v) }
            }
            FatType::Fat32 => {
                let mut b = [0u8; 4];
                src.read_exact_at(self.fat_start + u64::from(cluster) * 4, &mut b)?;
                let v = u32::from_le_bytes(b) & 0x0FFF_FFFF;
                if v >= 0x0FFF_FFF8 { None } else { Some(v) }
            }
        };
        match next {
            Some(n) if n < 2 || n > self.cluster_count + 1 => Err(FatError::Corrupt(format!(
                "cluster {cluster} links to invalid cluster {n}"
            ))),
            other => Ok(other),
        }
    }

    /// Read `max` bytes following the chain from `first`.
    fn read_chain<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        first: u32,
        max: u64,
    ) -> Result<Vec<u8>, FatError> {
        let mut out = Vec::new();
        if first < 2 || first > self.cluster_count + 1 {
            return if max == 0 {
                Ok(out)
            } else {
                Err(FatError::Corrupt(format!("invalid first cluster {first}")))
            };
        }
        let cb = self.cluster_bytes();
        let mut cluster = Some(first);
        // A cluster seen twice means the chain loops (files here are at most 1 MiB, so
        // the set stays small).
        let mut seen = std::collections::HashSet::new();
        while let Some(c) = cluster {
            if (out.len() as u64) >= max {
                break;
            }
            if !seen.insert(c) {
                return Err(FatError::Corrupt(format!(
                    "cluster chain loops at cluster {c}"
                )));
            }
            let want = (max - out.len() as u64).min(cb);
            let mut buf = vec![0u8; want as usize];
            src.read_exact_at(self.cluster_offset(c), &mut buf)?;
            out.extend_from_slice(&buf);
            cluster = self.next_cluster(src, c)?;
        }
        if (out.len() as u64) < max && max != u64::MAX {
            return Err(FatError::Corrupt(format!(
                "cluster chain ends after {} of {max} bytes",
                out.len()
            )));
        }
        Ok(out)
    }

    /// The raw root directory.
    fn root_bytes<R: ReadAt + ?Sized>(&self, src: &R) -> Result<Vec<u8>, FatError> {
        match self.fat_type {
            FatType::Fat32 => {
                // Root directory is a cluster chain; read at most 64 clusters of it.
                let cap = self.cluster_bytes() * 64;
                let mut out = Vec::new();
                let mut cluster = Some(self.root_cluster);
                let mut n = 0;
                while let Some(c) = cluster {
                    if n == 64 || (out.len() as u64) >= cap || c < 2 || c > self.cluster_count + 1 {
                        break;
                    }
                    n += 1;
                    let mut buf = vec![0u8; self.cluster_bytes() as usize];
                    src.read_exact_at(self.cluster_offset(c), &mut buf)?;
                    out.extend_from_slice(&buf);
                    cluster = self.next_cluster(src, c)?;
                }
                Ok(out)
            }
            _ => {
                let mut buf = vec![0u8; self.root_entries as usize * 32];
                src.read_exact_at(self.root_start, &mut buf)?;
                Ok(buf)
            }
        }
    }

    /// Walk the root directory: (volume label, entries).
    fn scan_root<R: ReadAt + ?Sized>(
        &self,
        src: &R,
    ) -> Result<(Option<String>, Vec<FatEntry>), FatError> {
        let root = self.root_bytes(src)?;
        let mut label = None;
        let mut entries = Vec::new();
        // LFN pieces, keyed by sequence number, plus the checksum they claim.
        let mut lfn: Vec<(u8, [u16; 13])> = Vec::new();
        let mut lfn_sum: Option<u8> = None;
        for e in root.chunks_exact(32) {
            match e[0] {
                0x00 => break,
                0xE5 => {
                    lfn.clear();
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3F == 0x0F {
                let seq = e[0] & 0x1F;
                if e[0] & 0x40 != 0 {
                    lfn.clear();
                    lfn_sum = Some(e[13]);
                }
                let mut units = [0u16; 13];
                let positions = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                for (u, &p) in units.iter_mut().zip(positions.iter()) {
                    *u = u16::from_le_bytes([e[p], e[p + 1]]);
                }
                lfn.push((seq, units));
                continue;
            }
            let mut raw = [0u8; 11];
            raw.copy_from_slice(&e[0..11]);
            if raw[0] == 0x05 {
                raw[0] = 0xE5;
            }
            if attr & 0x08 != 0 && attr & 0x10 == 0 {
                if label.is_none() {
                    label = Some(String::from_utf8_lossy(&raw).trim_end().to_string());
                }
                lfn.clear();
                continue;
            }
            let long_name = if !lfn.is_empty() && lfn_sum == Some(short_checksum(&e[0..11])) {
                lfn.sort_by_key(|(s, _)| *s);
                let mut units: Vec<u16> = lfn.iter().flat_map(|(_, u)| u.iter().copied()).collect();
                if let Some(end) = units.iter().position(|&u| u == 0) {
                    units.truncate(end);
                }
                Some(String::from_utf16_lossy(&units))
            } else {
                None
            };
            lfn.clear();
            lfn_sum = None;
            let case = e[12];
            let mut base = String::from_utf8_lossy(&raw[0..8]).trim_end().to_string();
            let mut ext = String::from_utf8_lossy(&raw[8..11]).trim_end().to_string();
            if case & 0x08 != 0 {
                base = base.to_ascii_lowercase();
            }
            if case & 0x10 != 0 {
                ext = ext.to_ascii_lowercase();
            }
            let short_name = if ext.is_empty() {
                base
            } else {
                format!("{base}.{ext}")
            };
            let hi = if self.fat_type == FatType::Fat32 {
                le16(e, 20) << 16
            } else {
                0
            };
            entries.push(FatEntry {
                short_name,
                long_name,
                attr,
                first_cluster: hi | le16(e, 26),
                size: le32(e, 28),
            });
        }
        Ok((label, entries))
    }

    /// Entries of the root directory (files and directories, no label, no deleted ones).
    pub fn root_entries<R: ReadAt + ?Sized>(&self, src: &R) -> Result<Vec<FatEntry>, FatError> {
        Ok(self.scan_root(src)?.1)
    }

    /// Read a file from the root directory by long or 8.3 name; `None` if absent.
    pub fn read_root_file<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        name: &str,
    ) -> Result<Option<Vec<u8>>, FatError> {
        let entries = self.root_entries(src)?;
        let Some(e) = entries
            .iter()
            .find(|e| e.attr & 0x10 == 0 && e.matches(name))
        else {
            return Ok(None);
        };
        if e.size > MAX_FILE {
            return Err(FatError::Corrupt(format!("{name} claims {} bytes", e.size)));
        }
        self.read_chain(src, e.first_cluster, u64::from(e.size))
            .map(Some)
    }
}

/// The checksum of an 8.3 name that LFN entries carry.
fn short_checksum(name: &[u8]) -> u8 {
    name.iter().fold(0u8, |sum, &c| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfn_checksum_known_value() {
        // "PARAME~1TXT" is what Linux/fatfs produce for parameters.txt.
        let sum = short_checksum(b"PARAME~1TXT");
        // Recomputed by hand with the same rotate-right-and-add rule.
        let mut s: u8 = 0;
        for c in b"PARAME~1TXT" {
            s = s.rotate_right(1).wrapping_add(*c);
        }
        assert_eq!(sum, s);
    }

    #[test]
    fn garbage_has_no_fat() {
        let img = vec![0u8; 4096];
        assert_eq!(volumes(img.as_slice()).unwrap_err(), FatError::NoFat);
        let short = vec![0u8; 10];
        assert!(matches!(
            volumes(short.as_slice()),
            Err(FatError::Io { .. })
        ));
    }
}
