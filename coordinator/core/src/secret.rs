//! A string that must never be printed: BMC passwords and ramdisk agent tokens.

use std::fmt;

/// What every masked value looks like in Debug, Display, logs and read-only views.
pub const MASK: &str = "******";

/// A secret value. `Debug` and `Display` print [`MASK`]; the clear text is only
/// reachable through [`Secret::expose`], so every use of it is greppable.
///
/// It deliberately implements neither `Serialize` nor `Deserialize`: persistence
/// layers store it explicitly (one column, one place to add encryption).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear text. Call only to put the value on the wire or into storage.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with a presented value (e.g. an agent token from a
    /// ramdisk heartbeat): the time taken depends only on the lengths, never on where
    /// the first differing byte is.
    pub fn ct_eq(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        let mut diff = (a.len() ^ b.len()) as u64;
        // Walk the longer of the two so a short guess costs as much as a long one.
        let n = a.len().max(b.len());
        for i in 0..n {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= u64::from(x ^ y);
        }
        diff == 0 && !a.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A fresh ramdisk agent token from 32 caller-supplied random bytes (this crate does
/// no IO, so the caller draws them from the OS RNG). Encoded as 64 lowercase hex
/// characters, which is safe in `parameters.txt` and in HTTP headers.
pub fn new_agent_token(random: [u8; 32]) -> Secret {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in random {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Secret(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn ct_eq_matches_only_equal() {
        let s = Secret::new("abc");
        assert!(s.ct_eq("abc"));
        assert!(!s.ct_eq("abd"));
        assert!(!s.ct_eq("ab"));
        assert!(!s.ct_eq("abcd"));
        assert!(!s.ct_eq(""));
        assert!(!Secret::new("").ct_eq(""), "an empty token never matches");
    }

    #[test]
    fn token_is_hex() {
        let t = new_agent_token([0xab; 32]);
        assert_eq!(t.expose().len(), 64);
        assert!(t.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_agent_token([1; 32]), new_agent_token([2; 32]));
    }
}
