//! Fault injection: added latency, error rates, hangs and malformed replies.
//!
//! A fault SPEC is a comma-separated list. An optional `node=I` or `node=I..J`
//! (inclusive, 0-based) selects nodes; without it the spec applies fleet-wide. The other
//! items are faults:
//!
//! | item | effect |
//! | --- | --- |
//! | `latency=200ms` / `latency=200ms..2s` | delay every reply by a fixed or uniformly drawn time |
//! | `error-rate=0.1` | that fraction of requests fail |
//! | `error=http` / `error=scci` | how they fail: HTTP 500 (default) or an SCCI error `<Status>` (on `/config`) |
//! | `hang` | accept the request, never answer |
//! | `malformed` / `malformed=truncated` / `malformed=unescaped` | XML replies are cut in half, or echo unescaped text |
//! | `clear` | remove all faults of the selected nodes |
//!
//! Decisions are deterministic: a request's random draw is a hash of (seed, node index,
//! per-node request sequence number), so a rerun with the same `--seed` and the same
//! request order sees the same faults.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SimError;

/// How an injected error looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// HTTP 500 with an empty body.
    #[default]
    Http,
    /// HTTP 200 with a non-zero SCCI `<Status>` (only on `/config`; other paths get 500).
    Scci,
}

/// How a malformed reply looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Malformed {
    /// The reply body is cut in the middle.
    Truncated,
    /// The reply carries unescaped text (`<`, `&`), as a real iRMC echoing input does.
    Unescaped,
}

/// The faults active on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSet {
    /// Added latency: `(min, max)`; equal bounds mean a fixed delay.
    #[serde(with = "opt_range_ms", default)]
    pub latency: Option<(Duration, Duration)>,
    /// Fraction of requests answered with an error, 0.0..=1.0.
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default)]
    pub error: ErrorKind,
    /// Accept but never answer.
    #[serde(default)]
    pub hang: bool,
    #[serde(default)]
    pub malformed: Option<Malformed>,
}

impl FaultSet {
    /// True when no fault is set (the fast path skips all fault work).
    pub fn is_clear(&self) -> bool {
        self.latency.is_none() && self.error_rate <= 0.0 && !self.hang && self.malformed.is_none()
    }

    /// Merge `other` over `self` (set items in `other` win).
    pub fn merge(&mut self, other: &FaultSet) {
        if other.latency.is_some() {
            self.latency = other.latency;
        }
        if other.error_rate > 0.0 {
            self.error_rate = other.error_rate;
            self.error = other.error;
        }
        if other.hang {
            self.hang = true;
        }
        if other.malformed.is_some() {
            self.malformed = other.malformed;
        }
    }
}

/// Durations in the JSON control API are milliseconds: `{"latency_ms":[200,2000]}`.
mod opt_range_ms {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<(Duration, Duration)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some((a, b)) => (a.as_millis() as u64, b.as_millis() as u64).serialize(s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(Duration, Duration)>, D::Error> {
        let v: Option<(u64, u64)> = Option::deserialize(d)?;
        Ok(v.map(|(a, b)| (Duration::from_millis(a), Duration::from_millis(b.max(a)))))
    }
}

/// One parsed `--fault` SPEC: which nodes and what faults.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// `None` = every node.
    pub nodes: Option<RangeInclusive<usize>>,
    pub faults: FaultSet,
    /// `clear` was given: reset before applying `faults`.
    pub clear: bool,
}

impl FaultSpec {
    /// True when the spec selects node `i`.
    pub fn applies_to(&self, i: usize) -> bool {
        self.nodes.as_ref().is_none_or(|r| r.contains(&i))
    }
}

impl std::str::FromStr for FaultSpec {
    type Err = SimError;
    fn from_str(spec: &str) -> Result<Self, SimError> {
        parse_spec(spec)
    }
}

fn bad(spec: &str, why: impl Into<String>) -> SimError {
    SimError::BadFaultSpec {
        spec: spec.to_string(),
        reason: why.into(),
    }
}

/// Parse a fault SPEC (see the module docs).
pub fn parse_spec(spec: &str) -> Result<FaultSpec, SimError> {
    let mut out = FaultSpec {
        nodes: None,
        faults: FaultSet::default(),
        clear: false,
    };
    let mut any = false;
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        any = true;
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (item, None),
        };
        match (key, value) {
            ("node" | "nodes", Some(v)) => {
                let range = match v.split_once("..") {
                    Some((a, b)) => {
                        let a: usize = a
                            .parse()
                            .map_err(|_| bad(spec, format!("bad node index {a:?}")))?;
                        let b: usize = b
                            .parse()
                            .map_err(|_| bad(spec, format!("bad node index {b:?}")))?;
                        if b < a {
                            return Err(bad(spec, "node range end before start"));
                        }
                        a..=b
                    }
                    None => {
                        let a: usize = v
                            .parse()
                            .map_err(|_| bad(spec, format!("bad node index {v:?}")))?;
                        a..=a
                    }
                };
                out.nodes = Some(range);
            }
            ("latency", Some(v)) => {
                let (a, b) = match v.split_once("..") {
                    Some((a, b)) => (parse_duration(a), parse_duration(b)),
                    None => (parse_duration(v), parse_duration(v)),
                };
                let (a, b) = match (a, b) {
                    (Some(a), Some(b)) if b >= a => (a, b),
                    _ => {
                        return Err(bad(
                            spec,
                            format!("bad latency {v:?} (e.g. 200ms or 200ms..2s)"),
                        ));
                    }
                };
                out.faults.latency = Some((a, b));
            }
            ("error-rate", Some(v)) => {
                let r: f64 = v
                    .parse()
                    .map_err(|_| bad(spec, format!("bad error-rate {v:?}")))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(bad(spec, "error-rate must be within 0..=1"));
                }
                out.faults.error_rate = r;
            }
            ("error", Some("http")) => out.faults.error = ErrorKind::Http,
            ("error", Some("scci")) => out.faults.error = ErrorKind::Scci,
            ("error", None) => out.faults.error_rate = 1.0,
            ("hang", None) => out.faults.hang = true,
            ("malformed", None | Some("truncated")) => {
                out.faults.malformed = Some(Malformed::Truncated)
            }
            ("malformed", Some("unescaped")) => out.faults.malformed = Some(Malformed::Unescaped),
            ("clear", None) => out.clear = true,
            _ => return Err(bad(spec, format!("unknown item {item:?}"))),
        }
    }
    if !any {
        return Err(bad(spec, "empty fault spec"));
    }
    Ok(out)
}

/// Parse `250ms`, `2s`, `1.5s`, `500us`, `1m`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit.trim() {
        "" | "ms" => n / 1000.0,
        "us" => n / 1_000_000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// A deterministic draw in `[0, 1)` for (seed, node, request sequence).
pub fn draw(seed: u64, node: usize, seq: u64, salt: u64) -> f64 {
    // splitmix64 over a mix of the inputs: cheap, well distributed, no state.
    let mut z = seed
        ^ (node as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ seq.wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ salt.wrapping_mul(0x94D0_49BB_1331_11EB);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What to do with one request, decided up front.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Decision {
    pub delay: Option<Duration>,
    pub hang: bool,
    pub error: Option<ErrorKind>,
    pub malformed: Option<Malformed>,
}

impl FaultSet {
    /// Decide the faults for one request.
    pub fn decide(&self, seed: u64, node: usize, seq: u64) -> Decision {
        if self.is_clear() {
            return Decision::default();
        }
        let delay = self.latency.map(|(a, b)| {
            if b > a {
                a + (b - a).mul_f64(draw(seed, node, seq, 1))
            } else {
                a
            }
        });
        let error = (self.error_rate > 0.0 && draw(seed, node, seq, 2) < self.error_rate)
            .then_some(self.error);
        Decision {
            delay,
            hang: self.hang,
            error,
            malformed: self.malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_examples() {
        let s = parse_spec("latency=200ms..2s").unwrap();
        assert_eq!(s.nodes, None);
        assert_eq!(
            s.faults.latency,
            Some((Duration::from_millis(200), Duration::from_secs(2)))
        );
        let s = parse_spec("node=3,hang").unwrap();
        assert_eq!(s.nodes, Some(3..=3));
        assert!(s.faults.hang);
        assert!(s.applies_to(3) && !s.applies_to(2));
        let s = parse_spec("error-rate=0.1,error=scci").unwrap();
        assert_eq!(s.faults.error_rate, 0.1);
        assert_eq!(s.faults.error, ErrorKind::Scci);
        assert_eq!(
            parse_spec("malformed").unwrap().faults.malformed,
            Some(Malformed::Truncated)
        );
        assert_eq!(
            parse_spec("nodes=2..4,malformed=unescaped").unwrap().nodes,
            Some(2..=4)
        );
    }

    #[test]
    fn rejects_bad_specs() {
        for s in [
            "",
            "latency=fast",
            "error-rate=2",
            "node=x,hang",
            "bogus",
            "node=5..2,hang",
        ] {
            assert!(parse_spec(s).is_err(), "{s}");
        }
    }

    #[test]
    fn draws_are_deterministic_and_rate_is_respected() {
        let f = FaultSet {
            error_rate: 0.1,
            ..Default::default()
        };
        let a: Vec<_> = (0..1000)
            .map(|i| f.decide(42, 1, i).error.is_some())
            .collect();
        let b: Vec<_> = (0..1000)
            .map(|i| f.decide(42, 1, i).error.is_some())
            .collect();
        assert_eq!(a, b);
        let n = a.iter().filter(|x| **x).count();
        assert!((60..=140).contains(&n), "{n} errors of 1000");
        let c: Vec<_> = (0..1000)
            .map(|i| f.decide(43, 1, i).error.is_some())
            .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("x"), None);
    }
}
