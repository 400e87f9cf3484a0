//! A string that must never be printed: share passwords, Glance tokens, agent tokens.
//!
//! The agent uses the iRMC client's [`irmc::Secret`], so a secret read from the
//! configuration can go to a BMC without being copied into another type: `Debug` and
//! `Display` print `******`, serialisation (the start-up config print) is redacted, and
//! the value is reachable only through `expose`.

pub use irmc::Secret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "****** ******");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"******\"");
        assert_eq!(s.expose(), "hunter2");
        let back: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(back.expose(), "hunter2");
    }
}
