//! Encryption of secrets at rest: the BMC password (and every other secret key of
//! driver_info/instance_info) and the ramdisk agent token.
//!
//! Cipher: XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`), 32-byte keys, a random
//! 192-bit nonce per value (random nonces of this size never realistically repeat, so no
//! nonce state has to survive restarts or be shared between coordinator replicas).
//!
//! A sealed value is text, so it fits in the existing JSON columns:
//! `enc:v1:<key id>:<base64(nonce || ciphertext+tag)>`. The associated data binds it to
//! its node and field (`<uuid>/<field>`): a sealed password copied onto another node or
//! another field does not decrypt.
//!
//! Keys live in a key file the coordinator reads at start-up: one key per line,
//! `<key id> <base64 of 32 bytes>`; `#` starts a comment. The FIRST key seals, every key
//! opens. Rotation: put a new key on the first line and keep the old one below it (or
//! pass the old file separately); each value is re-sealed with the new key the next time
//! its node is written, and the old key can go once nothing refers to it any more (the
//! store refuses to start while a value still needs a key it was not given).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::StoreError;

/// Prefix of every sealed value.
pub(crate) const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;
/// Associated data of the per-key check value kept in the store.
pub(crate) const KEY_CHECK_AAD: &str = "vmedia-store-key-check";
pub(crate) const KEY_CHECK_PLAIN: &str = "vmedia secret key check v1";

/// The keys that seal and open stored secrets. `Debug` shows key ids only.
#[derive(Clone)]
pub struct SecretKeys {
    current: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
    /// Material of a key generated here, kept only until it is written to a file.
    raw_for_file: Option<[u8; KEY_LEN]>,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key_error(what: impl Into<String>) -> StoreError {
    StoreError::SecretKey { what: what.into() }
}

/// Key ids are short and plain so they can be matched in SQL text without escaping.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl SecretKeys {
    /// One fresh random key with a fresh id (`k` + 12 hex digits).
    pub fn generate() -> Self {
        let bytes: [u8; KEY_LEN] = rand::random();
        let tag: [u8; 6] = rand::random();
        let id: String = std::iter::once("k".to_string())
            .chain(tag.iter().map(|b| format!("{b:02x}")))
            .collect();
        let mut keys = BTreeMap::new();
        // A 32-byte slice always makes a key; the `if let` only avoids an unwrap.
        if let Ok(k) = XChaCha20Poly1305::new_from_slice(&bytes) {
            keys.insert(id.clone(), k);
        }
        Self {
            current: id,
            keys,
            raw_for_file: Some(bytes),
        }
    }

    /// Parses key-file text (see the module docs). `source` names the file in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, StoreError> {
        let mut current = None;
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(key_error(format!(
                    "{source} line {}: expected `<key id> <base64 key>`",
                    n + 1
                )));
            };
            if !valid_id(id) {
                return Err(key_error(format!(
                    "{source} line {}: key id {id:?} must be 1-32 letters, digits, '-' or '.'",
                    n + 1
                )));
            }
            // Never echo the key material itself in an error.
            let raw = B64.decode(b64).map_err(|_| {
                key_error(format!(
                    "{source} line {}: key {id} is not valid base64",
                    n + 1
                ))
            })?;
            if raw.len() != KEY_LEN {
                return Err(key_error(format!(
                    "{source} line {}: key {id} must be {KEY_LEN} bytes, got {}",
                    n + 1,
                    raw.len()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&raw)
                .map_err(|_| key_error(format!("{source}: key {id} is unusable")))?;
            if keys.insert(id.to_string(), cipher).is_some() {
                return Err(key_error(format!(
                    "{source} line {}: key id {id} appears twice",
                    n + 1
                )));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        let current = current.ok_or_else(|| key_error(format!("{source}: holds no key")))?;
        Ok(Self {
            current,
            keys,
            raw_for_file: None,
        })
    }

    /// Reads a key file. A missing or unreadable file is an error naming the path.
    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            key_error(format!(
                "cannot read the secret key file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The current key of `current` seals; the keys of both open (rotation with a separate
    /// old-key file). An id present in both with different keys is refused.
    pub fn with_old(mut self, old: SecretKeys) -> Result<Self, StoreError> {
        for (id, k) in old.keys {
            if self.keys.contains_key(&id) {
                return Err(key_error(format!(
                    "key id {id} is both in the current and in the old key file"
                )));
            }
            self.keys.insert(id, k);
        }
        Ok(self)
    }

    /// Creates a key file holding one new random key (mode 0600, never overwriting an
    /// existing file) and returns its keys.
    pub fn create_file(path: &Path) -> Result<Self, StoreError> {
        use std::io::Write as _;
        let keys = Self::generate();
        let text = keys.file_text();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            key_error(format!(
                "cannot create the secret key file {}: {e}",
                path.display()
            ))
        })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                key_error(format!(
                    "cannot write the secret key file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(keys)
    }

    /// Key-file text for a key made by [`SecretKeys::generate`]; empty for parsed keys
    /// (their material is not kept in a printable form).
    pub fn file_text(&self) -> String {
        match &self.raw_for_file {
            Some(raw) => format!(
                "# vmedia coordinator secret key: the first key seals, every key opens. Keep it secret.\n{} {}\n",
                self.current,
                B64.encode(raw)
            ),
            None => String::new(),
        }
    }

    /// Id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Every key id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn has(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Seals `plain` under the current key, bound to `aad`.
    pub(crate) fn seal(&self, aad: &str, plain: &str) -> Result<String, StoreError> {
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| key_error("the current key is missing"))?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| key_error(format!("cannot seal {aad}")))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ct);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            self.current,
            B64.encode(blob)
        ))
    }

    /// Opens a value made by [`SecretKeys::seal`] with the same `aad`. The error never
    /// contains the value.
    pub(crate) fn open(&self, aad: &str, sealed: &str) -> Result<String, String> {
        let rest = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| "not a sealed value".to_string())?;
        let (id, b64) = rest
            .split_once(':')
            .ok_or_else(|| "sealed value without a key id".to_string())?;
        let cipher = self.keys.get(id).ok_or_else(|| {
            format!("sealed with key {id}, which no configured secret key file provides")
        })?;
        let blob = B64
            .decode(b64)
            .map_err(|_| format!("sealed value (key {id}) is not valid base64"))?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(format!("sealed value (key {id}) is truncated"));
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        let plain = cipher
            .decrypt(
                &XNonce::from(n),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                format!(
                    "key {id} does not open the sealed value: wrong key, or the data was altered"
                )
            })?;
        String::from_utf8(plain).map_err(|_| format!("sealed value (key {id}) is not UTF-8"))
    }
}

/// Checks that key `id` of `keys` opens the check value the store recorded for it.
pub(crate) fn verify_check(keys: &SecretKeys, id: &str, check: &str) -> Result<(), StoreError> {
    match keys.open(KEY_CHECK_AAD, check) {
        Ok(t) if t == KEY_CHECK_PLAIN => Ok(()),
        _ => Err(key_error(format!(
            "key {id} from the key file is not the key that sealed this store's secrets (wrong key file?)"
        ))),
    }
}

/// The error for stored values sealed with a key that was not given.
pub(crate) fn missing_key(id: &str, nodes: i64) -> StoreError {
    key_error(format!(
        "{nodes} node(s) hold secrets sealed with key {id}, which no given key file provides \
         (keep the old key in the key file, below the current one, until every node was rewritten)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let k = SecretKeys::generate();
        let s = k.seal("u1/irmc_password", "pa<ss>").unwrap();
        assert!(s.starts_with("enc:v1:k"), "{s}");
        assert!(!s.contains("pa<ss>"));
        assert_eq!(k.open("u1/irmc_password", &s).unwrap(), "pa<ss>");
        // Bound to node and field.
        assert!(k.open("u2/irmc_password", &s).is_err());
        // Two seals of the same text differ (random nonce).
        assert_ne!(s, k.seal("u1/irmc_password", "pa<ss>").unwrap());
        // Another key with the same id does not open it.
        let other = SecretKeys::parse(
            &format!("{} {}\n", k.current_id(), B64.encode([7u8; 32])),
            "t",
        )
        .unwrap();
        let e = other.open("u1/irmc_password", &s).unwrap_err();
        assert!(e.contains("wrong key"), "{e}");
    }

    #[test]
    fn key_file_parsing_names_the_problem_without_the_key() {
        let good = B64.encode([1u8; 32]);
        let k = SecretKeys::parse(
            &format!("# c\nnew {good}\nold {}\n", B64.encode([2u8; 32])),
            "f",
        )
        .unwrap();
        assert_eq!(k.current_id(), "new");
        assert_eq!(k.ids().collect::<Vec<_>>(), ["new", "old"]);
        for (text, want) in [
            ("", "holds no key"),
            ("a\n", "expected"),
            ("a b c\n", "expected"),
            ("a%b QUJD\n", "key id"),
            ("a !!notbase64!!\n", "not valid base64"),
            ("a QUJD\n", "must be 32 bytes"),
        ] {
            let e = SecretKeys::parse(text, "f").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = SecretKeys::parse(&format!("a {good}\na {good}\n"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        assert!(!e.contains(&good));
        assert!(!format!("{k:?}").contains(&good));
    }

    #[test]
    fn created_file_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        let k = SecretKeys::create_file(&p).unwrap();
        let back = SecretKeys::from_file(&p).unwrap();
        assert_eq!(back.current_id(), k.current_id());
        let s = k.seal("a", "b").unwrap();
        assert_eq!(back.open("a", &s).unwrap(), "b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Never overwrites.
        assert!(SecretKeys::create_file(&p).is_err());
        let missing = SecretKeys::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
