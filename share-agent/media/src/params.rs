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
//!
//! Construction: the empty formatted volume of each form is built once per process (the
//! same for every node but its volume id) and kept as a [`SparseImage`]; an image is a
//! copy-on-write clone of it with the volume id patched in and `parameters.txt` added by
//! `fatfs`. Only the few blocks that hold data exist, so neither building nor writing an
//! image touches its full 1.4 or 4 MiB. The unit tests check the bytes against the
//! original construction (format a zeroed buffer of the full size).

use std::fmt;
use std::io::{Read, Seek, Write};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::MediaError;
use crate::sparse::SparseImage;

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

/// Offset of the 32-bit volume id in a FAT12/16 boot sector (BPB at 11, 25 bytes long,
/// then drive number, reserved byte, extended boot signature 0x29, volume id).
const FAT12_VOLUME_ID_OFFSET: u64 = 39;

/// The volume id the templates are formatted with. Each image overwrites it; building a
/// template checks it landed at [`FAT12_VOLUME_ID_OFFSET`], so a change in `fatfs`'s
/// layout fails loudly instead of producing wrong images.
const TEMPLATE_VOLUME_ID: u32 = 0x5A5A_A5A5;

/// The text of `parameters.txt`, checked against [`MAX_TEXT_BYTES`].
fn checked_text(params: &Parameters) -> Result<String, MediaError> {
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
    Ok(text)
}

/// The volume id of an image: the first 4 bytes of SHA-256(form tag, text).
fn volume_id(form: ImageForm, text: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(match form {
        ImageForm::Floppy => b"floppy\0".as_slice(),
        ImageForm::HardDisk => b"harddisk\0".as_slice(),
    });
    h.update(text.as_bytes());
    let digest = h.finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Format options of a form; everything but the volume id is fixed per form.
fn format_options(form: ImageForm, volume_id: u32) -> fatfs::FormatVolumeOptions {
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat12)
        .bytes_per_sector(512)
        .total_sectors((form.size_bytes() / 512) as u32)
        .fats(2)
        .volume_id(volume_id)
        .volume_label(label_bytes());
    match form {
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
    }
}

fn fs_options() -> fatfs::FsOptions {
    fatfs::FsOptions::new()
        .time_provider(&EPOCH_CLOCK)
        .update_accessed_date(false)
}

/// Mounts `disk`, writes `parameters.txt` holding `text` and unmounts.
fn add_params_file<D: Read + Write + Seek>(disk: D, text: &str) -> Result<(), MediaError> {
    let fs = fatfs::FileSystem::new(disk, fs_options()).map_err(|source| MediaError::Fat {
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
    })
}

/// The empty formatted volume of `form`, as sparse blocks (zero blocks dropped).
fn build_template(form: ImageForm) -> Result<SparseImage, MediaError> {
    let mut img = SparseImage::new(form.size_bytes());
    fatfs::format_volume(img.cursor(), format_options(form, TEMPLATE_VOLUME_ID)).map_err(
        |source| MediaError::Fat {
            what: "format",
            source,
        },
    )?;
    img.prune_zero_blocks();
    let mut id = [0u8; 4];
    img.read_at(FAT12_VOLUME_ID_OFFSET, &mut id);
    if u32::from_le_bytes(id) != TEMPLATE_VOLUME_ID {
        return Err(MediaError::Fat {
            what: "format",
            source: std::io::Error::other(format!(
                "the volume id of a formatted {form:?} volume is not at byte {FAT12_VOLUME_ID_OFFSET}"
            )),
        });
    }
    Ok(img)
}

/// The formatted empty volume of `form`, built once per process.
///
/// Formatting is the same for every node but the volume id, so it is done once and each
/// image starts from a copy-on-write clone of these few blocks.
fn template(form: ImageForm) -> Result<&'static SparseImage, MediaError> {
    static FLOPPY: OnceLock<SparseImage> = OnceLock::new();
    static HARD_DISK: OnceLock<SparseImage> = OnceLock::new();
    let cell = match form {
        ImageForm::Floppy => &FLOPPY,
        ImageForm::HardDisk => &HARD_DISK,
    };
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    // Two threads may both build it on first use; the bytes are the same, one wins.
    let built = build_template(form)?;
    Ok(cell.get_or_init(|| built))
}

/// Build the parameter image as sparse blocks. Deterministic: same input, same bytes.
///
/// Cost: a clone of the formatted template of `form` (a few shared blocks), a SHA-256 of
/// the text, and `fatfs` writing the file: a few microseconds and a few KiB of memory,
/// independent of the image size. Write it with [`crate::write_atomic_sparse`].
pub fn parameter_image_sparse(
    params: &Parameters,
    form: ImageForm,
) -> Result<SparseImage, MediaError> {
    let text = checked_text(params)?;
    let mut img = template(form)?.clone();
    img.write_at(
        FAT12_VOLUME_ID_OFFSET,
        &volume_id(form, &text).to_le_bytes(),
    )
    .map_err(|source| MediaError::Fat {
        what: "set volume id",
        source,
    })?;
    add_params_file(img.cursor(), &text)?;
    img.prune_zero_blocks();
    Ok(img)
}

/// Build the parameter image as dense bytes (the full 1.4 or 4 MiB, mostly zeros).
///
/// Prefer [`parameter_image_sparse`] with [`crate::write_atomic_sparse`]; this is the same
/// image expanded, for callers that need a slice.
pub fn parameter_image(params: &Parameters, form: ImageForm) -> Result<Vec<u8>, MediaError> {
    Ok(parameter_image_sparse(params, form)?.to_vec())
}

/// The dense construction: format a zeroed buffer of the full size, then add the file.
/// It shares the format options, volume id and file writing with the sparse path but not
/// its template, block store or volume-id patch, which is what the tests compare it
/// against, byte for byte. Costs the full 1.4/4 MiB; for tests and benchmarks.
#[doc(hidden)]
pub fn parameter_image_dense(params: &Parameters, form: ImageForm) -> Result<Vec<u8>, MediaError> {
    use std::io::Cursor;

    let text = checked_text(params)?;
    let mut buf = vec![0u8; form.size_bytes() as usize];
    fatfs::format_volume(
        Cursor::new(buf.as_mut_slice()),
        format_options(form, volume_id(form, &text)),
    )
    .map_err(|source| MediaError::Fat {
        what: "format",
        source,
    })?;
    add_params_file(Cursor::new(buf.as_mut_slice()), &text)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn long_params(total: usize) -> Parameters {
        let mut p = Parameters::new();
        let mut i = 0;
        while p.to_text().len() < total {
            p.push(
                format!("key-{i:04}"),
                format!("value-{i}-{}", "x".repeat(i % 97)),
            )
            .unwrap();
            i += 1;
        }
        p
    }

    #[test]
    fn sparse_matches_the_dense_oracle() {
        let sets = [
            Parameters::new(),
            Parameters::from_pairs([("a", "1")]).unwrap(),
            Parameters::from_pairs([
                ("ipa-api-url", "http://10.0.0.1:6385"),
                ("ipa-agent-token", "token-00000042-0123456789abcdef"),
                ("BOOTIF", "01-52-54-00-00-00-2a"),
                ("boot_method", "vmedia"),
            ])
            .unwrap(),
            // Several clusters of either form, crossing 4 KiB blocks.
            long_params(5_000),
            long_params(9_000),
            // Close to the limit: many clusters, spanning many blocks.
            long_params(MAX_TEXT_BYTES - 200),
        ];
        for form in [ImageForm::Floppy, ImageForm::HardDisk] {
            for p in &sets {
                let sparse = parameter_image_sparse(p, form).unwrap();
                let dense = parameter_image_dense(p, form).unwrap();
                let text_len = p.to_text().len();
                assert_eq!(sparse.len(), form.size_bytes());
                assert!(
                    sparse.to_vec() == dense,
                    "{form:?} with {text_len} bytes of text differs from the dense oracle"
                );
                assert_eq!(parameter_image(p, form).unwrap(), dense);
                // Only the non-zero blocks are stored.
                assert_eq!(
                    sparse.allocated_bytes(),
                    SparseImage::from_bytes(&dense).allocated_bytes(),
                    "{form:?} {text_len}"
                );
                assert!(sparse.allocated_bytes() <= 4096 * 6 + text_len as u64 * 2);
            }
        }
        let too_long = long_params(MAX_TEXT_BYTES + 1);
        assert!(parameter_image_sparse(&too_long, ImageForm::Floppy).is_err());
        assert!(parameter_image_dense(&too_long, ImageForm::Floppy).is_err());
    }

    #[test]
    fn images_do_not_share_writes_through_the_template() {
        let a = Parameters::from_pairs([("a", "1")]).unwrap();
        let b = Parameters::from_pairs([("b", "2")]).unwrap();
        let first = parameter_image_sparse(&a, ImageForm::Floppy)
            .unwrap()
            .to_vec();
        let _ = parameter_image_sparse(&b, ImageForm::Floppy).unwrap();
        assert_eq!(
            parameter_image_sparse(&a, ImageForm::Floppy)
                .unwrap()
                .to_vec(),
            first
        );
        // The template itself is still an empty volume.
        let t = template(ImageForm::Floppy).unwrap().to_vec();
        let fs = fatfs::FileSystem::new(Cursor::new(t), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.root_dir().iter().filter(|e| e.is_ok()).count(), 0);
    }

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
