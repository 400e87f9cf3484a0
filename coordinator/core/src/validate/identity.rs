//! The node's name and MACs.

use uuid::Uuid;

use super::err;
use crate::CoreError;

/// Longest name, as Ironic's `name` column.
const MAX_NAME: usize = 255;

/// Parses a MAC in `aa:bb:cc:dd:ee:ff` or `aa-bb-...` form (any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(sep) {
        if n == 6 || part.len() != 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

pub(super) fn format_mac(o: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        o[0], o[1], o[2], o[3], o[4], o[5]
    )
}

pub(super) fn check_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(err("name", format!("must be 1 to {MAX_NAME} characters")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(err(
            "name",
            format!("invalid character {c:?} in {name:?}; allowed: letters, digits, - . _ ~"),
        ));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err(err(
            "name",
            format!("{name:?} looks like a UUID; names must not"),
        ));
    }
    Ok(())
}
