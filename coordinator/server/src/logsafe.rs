//! Values that came from the network, made safe to log: control characters (newlines,
//! escape sequences) become spaces and the text is cut to a bounded length, so that a
//! peer cannot forge log lines or flood the log with one field.

use std::borrow::Cow;

/// Longest logged value, in characters.
const MAX_CHARS: usize = 256;

/// `s` without control characters and at most [`MAX_CHARS`] characters long.
pub fn clean(s: &str) -> Cow<'_, str> {
    let long = s.chars().nth(MAX_CHARS).is_some();
    if !long && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out: String = s
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if long {
        out.push_str("...");
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_characters_and_length() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\nFAKE LINE\u{1b}[31m"), "a FAKE LINE [31m");
        let long = "x".repeat(1000);
        assert_eq!(clean(&long).chars().count(), 259);
    }
}
