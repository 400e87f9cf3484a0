//! RMCP+ cryptography: the authentication, integrity and confidentiality algorithms of
//! cipher suites 3 and 17, and the session keys derived in the RAKP exchange.

use super::*;
use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

// ---------------------------------------------------------------------------
// Cipher suites and their algorithms
// ---------------------------------------------------------------------------

/// The hash behind an RMCP+ authentication or integrity algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1 (20-byte HMAC).
    Sha1,
    /// SHA-256 (32-byte HMAC).
    Sha256,
}

impl Hash {
    /// Length of a full HMAC.
    pub fn len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Always false (a hash has a length); for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// HMAC of the concatenation of `parts` under `key`.
pub fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty
    // result (never matching anything) stands in for the impossible error.
    match hash {
        Hash::Sha1 => match <Hmac<Sha1> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        Hash::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    }
}

/// An RMCP+ cipher suite this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

impl CipherSuite {
    /// The suite ID (3 or 17).
    pub fn id(self) -> u8 {
        match self {
            Self::Suite3 => 3,
            Self::Suite17 => 17,
        }
    }

    /// From a suite ID.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(Self::Suite3),
            17 => Some(Self::Suite17),
            _ => None,
        }
    }

    /// Authentication algorithm number (RAKP-HMAC-SHA1 = 1, RAKP-HMAC-SHA256 = 3).
    pub fn auth_alg(self) -> u8 {
        match self {
            Self::Suite3 => 0x01,
            Self::Suite17 => 0x03,
        }
    }

    /// Integrity algorithm number (HMAC-SHA1-96 = 1, HMAC-SHA256-128 = 4).
    pub fn integrity_alg(self) -> u8 {
        match self {
            Self::Suite3 => 0x01,
            Self::Suite17 => 0x04,
        }
    }

    /// Confidentiality algorithm number (AES-CBC-128 = 1).
    pub fn confidentiality_alg(self) -> u8 {
        0x01
    }

    /// The hash of both the authentication and the integrity algorithm.
    pub fn hash(self) -> Hash {
        match self {
            Self::Suite3 => Hash::Sha1,
            Self::Suite17 => Hash::Sha256,
        }
    }

    /// Length of the integrity auth code on every session packet (12 or 16).
    pub fn integrity_len(self) -> usize {
        match self {
            Self::Suite3 => 12,
            Self::Suite17 => 16,
        }
    }

    /// Length of the RAKP 4 integrity check value (12 or 16).
    pub fn rakp4_icv_len(self) -> usize {
        self.integrity_len()
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cipher suite {}", self.id())
    }
}

// ---------------------------------------------------------------------------
// Session keys, integrity and confidentiality
// ---------------------------------------------------------------------------

/// Keys of an established session: K1 for integrity, the first 16 bytes of K2 for AES.
#[derive(Clone)]
pub struct SessionKeys {
    /// The suite negotiated.
    pub suite: CipherSuite,
    k1: Vec<u8>,
    aes: [u8; 16],
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are derived from the password: never printed.
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// K1 = HMAC_SIK(0x01 * 20), K2 = HMAC_SIK(0x02 * 20): the constants are 20 bytes
    /// whatever the hash (so with SHA-256 too).
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> Self {
        let k1 = hmac(suite.hash(), sik, &[&[0x01; 20]]);
        let k2 = hmac(suite.hash(), sik, &[&[0x02; 20]]);
        let mut aes = [0u8; 16];
        if k2.len() >= 16 {
            aes.copy_from_slice(&k2[..16]);
        }
        Self { suite, k1, aes }
    }

    /// The integrity auth code over `covered` (auth type .. next header).
    pub fn auth_code(&self, covered: &[u8]) -> Vec<u8> {
        let mut mac = hmac(self.suite.hash(), &self.k1, &[covered]);
        mac.truncate(self.suite.integrity_len());
        mac
    }

    /// `IV | AES-CBC-128(data | 01 02 .. n | n)` with the given IV.
    pub fn encrypt_with_iv(&self, data: &[u8], iv: [u8; 16]) -> Vec<u8> {
        let pad = (16 - (data.len() + 1) % 16) % 16;
        let mut buf = Vec::with_capacity(16 + data.len() + pad + 1);
        buf.extend_from_slice(data);
        buf.extend((1..=pad).map(|i| i as u8));
        buf.push(pad as u8);
        let len = buf.len();
        let mut out = iv.to_vec();
        // `buf` is whole blocks by construction, so NoPadding cannot fail.
        if let Ok(enc) = cbc::Encryptor::<Aes128>::new(&self.aes.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        {
            out.extend_from_slice(enc);
        }
        out
    }

    /// [`SessionKeys::encrypt_with_iv`] with a random IV.
    pub fn encrypt(&self, data: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; 16];
        rand::fill(&mut iv);
        self.encrypt_with_iv(data, iv)
    }

    /// Inverse of [`SessionKeys::encrypt`]; checks the confidentiality trailer.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if payload.len() < 32 || !payload.len().is_multiple_of(16) {
            return bad(format!(
                "encrypted payload of {} bytes is not IV + whole AES blocks",
                payload.len()
            ));
        }
        let (iv, body) = payload.split_at(16);
        let mut iv16 = [0u8; 16];
        iv16.copy_from_slice(iv);
        let mut buf = body.to_vec();
        let plain = cbc::Decryptor::<Aes128>::new(&self.aes.into(), &iv16.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| DecodeError("AES-CBC decryption failed".into()))?;
        let Some((&pad, rest)) = plain.split_last() else {
            return bad("empty decrypted payload");
        };
        let pad = usize::from(pad);
        if pad > 15 || pad > rest.len() {
            return bad("bad confidentiality pad length (wrong key?)");
        }
        let (data, padding) = rest.split_at(rest.len() - pad);
        if padding.iter().enumerate().any(|(i, &b)| b != (i + 1) as u8) {
            return bad("bad confidentiality padding (wrong key?)");
        }
        Ok(data.to_vec())
    }
}
