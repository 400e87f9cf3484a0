//! The per-node parameter image: a FAT file system labelled `ir-vfd-dev` holding one file,
//! `parameters.txt`, with one `key=value` line per parameter in the order given. The deploy
//! ramdisk (IPA) finds it with `lsblk` by label and merges it into its kernel parameters.
//!
//! Two forms:
//! - [`ImageForm::Floppy`]: a 1440 KiB FAT12 floppy (2880 sectors, 18 sectors/track,
//!   2 heads, media byte 0xF0), for firmware with a virtual floppy drive.
//! - [`ImageForm::HardDisk`]: a 4 MiB *superfloppy*: FAT12 directly on the whole device, no
//!   partition table (media byte 0xF8, BIOS drive 0x80). This is deliberate: IPA only
//!   accepts a virtual-media device that is *not a partition* (a ROM, or a USB disk under
//!   4 GiB), so the label must be on the whole disk, which a partition table would move
//!   onto `sda1`.
//!
//! Determinism: the same parameters and form give the same bytes. All timestamps are the
//! DOS epoch (1980-01-01 00:00:00) and the volume id is taken from a SHA-256 of the form
//! and the file's text, so re-building a node's image never changes the file on the share
//! unless its content changed.

use std::fmt;
use std::io::{Cursor, Write};

use sha2::{Digest, Sha256};

use crate::error::MediaError;

/// The FAT volume label IPA looks for.
pub const LABEL: &str = "ir-vfd-dev";
/// The one file in the image.
pub const PARAMS_FILE: &str = "parameters.txt";
/// Size of the floppy form: 1440 KiB.
pub const FLOPPY_BYTES: u64 = 1_474_560;
/// Size of the hard-disk (superfloppy) form: 4 MiB.
pub const HARD_DISK_BYTES: u64 = 4 * 1024 * 1024;
/// Upper bound for the text of `parameters.txt` (keeps a bad input from filling the image).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Which kind of device the parameter image is attached as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageForm {
    /// 1440 KiB FAT12 floppy, for firmware with a virtual floppy drive.
    Floppy,
    /// 4 MiB FAT12 superfloppy, attached as a remote hard disk, for firmware without a
    /// virtual floppy (iRMC S6; S5 after 1.60P; S4 after 9.62F).
    HardDisk,
}

impl ImageForm {
    /// Size of the image in bytes.
    pub fn size_bytes(self) -> u64 {
        match self {
            ImageForm::Floppy => FLOPPY_BYTES,
            ImageForm::HardDisk => HARD_DISK_BYTES,
        }
    }
}

/// Ordered, validated `key=value` parameters.
///
/// Keys are non-empty printable ASCII without `=` or whitespace; values are printable
/// (UTF-8 allowed) without line breaks or NUL. Keys are unique. Order is kept as given.
/// `Debug` prints the values of secret-looking keys (token, password, secret) as `******`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Parameters(Vec<(String, String)>);

/// True for keys whose values must never be logged.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "password", "passwd", "secret"]
        .iter()
        .any(|s| k.contains(s))
}

fn validate_key(key: &str) -> Result<(), MediaError> {
    let bad = |reason: &str| {
        Err(MediaError::InvalidParameter {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.len() > 256 {
        return bad("key longer than 256 bytes");
    }
    if let Some(c) = key.chars().find(|c| !c.is_ascii_graphic() || *c == '=') {
        return bad(&format!(
            "key may not contain {c:?} (printable ASCII, no '=' or spaces)"
        ));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), MediaError> {
    // The value is not echoed: it may be a secret.
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(MediaError::InvalidParameter {
            key: key.to_string(),
            reason: format!("value contains control character U+{:04X}", u32::from(c)),
        });
    }
    Ok(())
}

impl Parameters {
    /// An empty parameter list.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Append `key=value`; fails on an invalid or duplicate key or an invalid value.
    pub fn push(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), MediaError> {
        let (key, value) = (key.into(), value.into());
        validate_key(&key)?;
        validate_value(&key, &value)?;
        if self.0.iter().any(|(k, _)| *k == key) {
            return Err(MediaError::InvalidParameter {
                key,
                reason: "duplicate key".into(),
            });
        }
        self.0.push((key, value));
        Ok(())
    }

    /// Build from pairs, validating each (order kept).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, MediaError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut p = Self::new();
        for (k, v) in pairs {
            p.push(k, v)?;
        }
        Ok(p)
    }

    /// Parse one `KEY=VALUE` argument (the value may contain `=`).
    pub fn parse_pair(arg: &str) -> Result<(String, String), MediaError> {
        match arg.split_once('=') {
            Some((k, v)) => {
                validate_key(k)?;
                validate_value(k, v)?;
                Ok((k.to_string(), v.to_string()))
            }
            None => Err(MediaError::InvalidParameter {
                key: arg.chars().take(64).collect(),
                reason: "expected KEY=VALUE".into(),
            }),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The exact text of `parameters.txt`: `key=value\n` per parameter.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.0.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        for (k, v) in &self.0 {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        }
        s
    }
}

impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_secret_key(k) {
                m.entry(k, &"******");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// Fixed clock for FAT timestamps: every entry is stamped 1980-01-01 00:00:00.
#[derive(Debug)]
pub(crate) struct EpochClock;

impl fatfs::TimeProvider for EpochClock {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

pub(crate) static EPOCH_CLOCK: EpochClock = EpochClock;

fn label_bytes() -> [u8; 11] {
    let mut l = [b' '; 11];
    l[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    l
}

/// Build the parameter image in memory. Deterministic: same input, same bytes.
///
/// Cost: one allocation of the image size (1.4 or 4 MiB, mostly zeros) and a few
/// microseconds of FAT bookkeeping; write it with [`crate::write_atomic`] in sparse mode so
/// the share only stores the few non-zero blocks.
pub fn parameter_image(params: &Parameters, form: ImageForm) -> Result<Vec<u8>, MediaError> {
    let text = params.to_text();
    if text.len() > MAX_TEXT_BYTES {
        return Err(MediaError::InvalidParameter {
            key: "*".into(),
            reason: format!(
                "parameters.txt would be {} bytes (max {MAX_TEXT_BYTES})",
                text.len()
            ),
        });
    }
    let mut h = Sha256::new();
    h.update(match form {
        ImageForm::Floppy => b"floppy\0".as_slice(),
        ImageForm::HardDisk => b"harddisk\0".as_slice(),
    });
    h.update(text.as_bytes());
    let digest = h.finalize();
    let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);

    let size = form.size_bytes();
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat12)
        .bytes_per_sector(512)
        .total_sectors((size / 512) as u32)
        .fats(2)
        .volume_id(volume_id)
        .volume_label(label_bytes());
    let opts = match form {
        ImageForm::Floppy => opts
            .bytes_per_cluster(512)
            .max_root_dir_entries(224)
            .media(0xF0)
            .sectors_per_track(18)
            .heads(2)
            .drive_num(0x00),
        ImageForm::HardDisk => opts
            .bytes_per_cluster(2048)
            .max_root_dir_entries(512)
            .media(0xF8)
            .sectors_per_track(32)
            .heads(64)
            .drive_num(0x80),
    };

    let mut buf = vec![0u8; size as usize];
    fatfs::format_volume(Cursor::new(buf.as_mut_slice()), opts).map_err(|source| {
        MediaError::Fat {
            what: "format",
            source,
        }
    })?;
    {
        let fs = fatfs::FileSystem::new(
            Cursor::new(buf.as_mut_slice()),
            fatfs::FsOptions::new()
                .time_provider(&EPOCH_CLOCK)
                .update_accessed_date(false),
        )
        .map_err(|source| MediaError::Fat {
            what: "mount",
            source,
        })?;
        {
            let mut file =
                fs.root_dir()
                    .create_file(PARAMS_FILE)
                    .map_err(|source| MediaError::Fat {
                        what: "create parameters.txt",
                        source,
                    })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|source| MediaError::Fat {
                    what: "write parameters.txt",
                    source,
                })?;
        }
        fs.unmount().map_err(|source| MediaError::Fat {
            what: "unmount",
            source,
        })?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let mut p = Parameters::new();
        p.push("ipa-api-url", "http://10.0.0.1:6385").unwrap();
        assert!(p.push("ipa-api-url", "x").is_err(), "duplicate");
        assert!(p.push("a=b", "x").is_err());
        assert!(p.push("a b", "x").is_err());
        assert!(p.push("", "x").is_err());
        assert!(p.push("k", "line\nbreak").is_err());
        p.push("k", "v=w with space").unwrap();
        assert_eq!(
            p.to_text(),
            "ipa-api-url=http://10.0.0.1:6385\nk=v=w with space\n"
        );
        assert_eq!(
            Parameters::parse_pair("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(Parameters::parse_pair("novalue").is_err());
    }

    #[test]
    fn debug_redacts_tokens() {
        let p = Parameters::from_pairs([("ipa-agent-token", "s3cr3t"), ("BOOTIF", "aa")]).unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("******") && d.contains("aa"));
        let e = Parameters::from_pairs([("ipa-agent-token", "bad\u{7}")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("bad"), "{e}");
    }

    #[test]
    fn deterministic_and_sized() {
        let p = Parameters::from_pairs([("a", "1"), ("b", "2")]).unwrap();
        for form in [ImageForm::Floppy, ImageForm::HardDisk] {
            let x = parameter_image(&p, form).unwrap();
            let y = parameter_image(&p, form).unwrap();
            assert_eq!(x.len() as u64, form.size_bytes());
            assert_eq!(x, y);
        }
        let q = Parameters::from_pairs([("a", "1"), ("b", "3")]).unwrap();
        assert_ne!(
            parameter_image(&p, ImageForm::Floppy).unwrap(),
            parameter_image(&q, ImageForm::Floppy).unwrap()
        );
    }

    #[test]
    fn reads_back_with_fatfs() {
        let p =
            Parameters::from_pairs([("boot_method", "vmedia"), ("BOOTIF", "01-aa-bb")]).unwrap();
        let mut img = parameter_image(&p, ImageForm::HardDisk).unwrap();
        let fs = fatfs::FileSystem::new(Cursor::new(img.as_mut_slice()), fatfs::FsOptions::new())
            .unwrap();
        assert_eq!(fs.volume_label(), LABEL);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut fs.root_dir().open_file(PARAMS_FILE).unwrap(), &mut s)
            .unwrap();
        assert_eq!(s, p.to_text());
    }
}
