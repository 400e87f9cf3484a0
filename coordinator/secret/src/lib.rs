//! A string that must never be printed: BMC and share passwords, ramdisk agent tokens, API
//! tokens, Glance tokens. Every product crate uses this one type, so the rules hold
//! everywhere at once:
//!
//! - `Debug` and `Display` print [`MASK`];
//! - serialising writes [`MASK`] (an unset secret stays visibly empty), so a config or a
//!   view printed by mistake shows no secret; deserialising reads the plain string (a
//!   configuration file);
//! - the clear text is reachable only through [`Secret::expose`], so every use of it is
//!   greppable.
//!
//! Persistence layers store secrets explicitly (the coordinator's store seals them with
//! its at-rest key): nothing here writes a secret anywhere.
//!
//! It lives beside the coordinator's crates because the coordinator owns secrets at rest,
//! but it depends on nothing but serde, and the share agent's crates use it too.
//! (`irmc-sim` keeps its own copy so that the simulator stays independent of the product.)

use std::fmt;

/// What every masked value looks like in Debug, Display, logs and read-only views.
pub const MASK: &str = "******";

/// A secret value. See the crate documentation for what it never does.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear text. Call only to put the value on the wire or into storage.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with a presented value (e.g. an agent token from a
    /// ramdisk heartbeat): the time taken depends only on the lengths, never on where
    /// the first differing byte is. An empty secret matches nothing.
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

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Read from configuration files as the plain string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Written redacted: a serialised configuration or view must not show secrets (an unset
/// secret stays visibly empty).
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { MASK })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"******\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        assert_eq!(s.expose(), "hunter2");
        let back: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back, s);
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
}
