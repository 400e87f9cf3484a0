//! The crate's one error type.
//!
//! Every variant that comes from talking to a BMC carries a [`Ctx`]: the BMC
//! address, the node (when known) and the operation, named as Ironic named it
//! ("Inserting virtual cdrom", "set_power_state", ...), so an operator sees
//! `iRMC Inserting virtual cdrom failed on 10.0.0.5 (node n1). Reason: ...`.
//! No variant ever holds a password or a reply body (an iRMC may echo the
//! request, password included, in its reply).

use std::fmt;
use std::time::Duration;

/// Who and what failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// BMC address as configured (`irmc_address`).
    pub bmc: String,
    /// Node UUID or name, when the caller gave one.
    pub node: Option<String>,
    /// The operation, in Ironic's words.
    pub operation: &'static str,
}

impl fmt::Display for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed on {}", self.operation, self.bmc)?;
        if let Some(node) = &self.node {
            write!(f, " (node {node})")?;
        }
        Ok(())
    }
}

/// Errors of the iRMC client.
#[derive(Debug, thiserror::Error)]
pub enum IrmcError {
    /// A configuration value is invalid; `field` is the `driver_info` key.
    #[error("invalid iRMC driver_info field {field}: {reason}")]
    InvalidConfig {
        /// The offending key, e.g. `irmc_port`.
        field: &'static str,
        /// What is wrong with it (never the value of a secret).
        reason: String,
    },
    /// TCP/TLS connection could not be established; the request was not sent.
    #[error("iRMC {ctx}. Reason: cannot connect: {reason}")]
    Connect {
        /// Context.
        ctx: Ctx,
        /// Transport detail.
        reason: String,
    },
    /// The TLS handshake failed (untrusted or invalid certificate, protocol
    /// mismatch). Not transient: retrying cannot fix it.
    #[error(
        "iRMC {ctx}. Reason: TLS handshake failed: {reason} (set irmc_verify_ca to the BMC's CA file, or false to opt out)"
    )]
    Tls {
        /// Context.
        ctx: Ctx,
        /// rustls' reason.
        reason: String,
    },
    /// No complete answer within `irmc_client_timeout`.
    #[error("iRMC {ctx}. Reason: no answer within {}s (irmc_client_timeout)", after.as_secs_f64())]
    Timeout {
        /// Context.
        ctx: Ctx,
        /// The timeout that expired.
        after: Duration,
    },
    /// Another transport failure after the request may have been sent
    /// (connection reset, truncated body).
    #[error("iRMC {ctx}. Reason: transport error: {reason}")]
    Transport {
        /// Context.
        ctx: Ctx,
        /// Transport detail.
        reason: String,
    },
    /// Credentials rejected (HTTP 401 after authenticating).
    #[error("iRMC {ctx}. Reason: authentication failed (HTTP 401) for user {user}")]
    Unauthorized {
        /// Context.
        ctx: Ctx,
        /// The user name that was rejected.
        user: String,
    },
    /// The BMC answered with a redirect; redirects are never followed.
    #[error("iRMC {ctx}. Reason: unexpected redirect HTTP {status} to {location:?}")]
    Redirect {
        /// Context.
        ctx: Ctx,
        /// 3xx status.
        status: u16,
        /// `Location` header, if any.
        location: Option<String>,
    },
    /// Any other HTTP status outside 200/201/204.
    #[error("iRMC {ctx}. Reason: HTTP PROTOCOL ERROR, STATUS CODE = {status}")]
    Http {
        /// Context.
        ctx: Ctx,
        /// The status code.
        status: u16,
    },
    /// The SCCI reply carried a non-zero `Value`.
    #[error(
        "iRMC {ctx}. Reason: SCCI PROTOCOL ERROR, STATUS CODE = {value}, ERROR = {error}, MESSAGE = {message}"
    )]
    Scci {
        /// Context.
        ctx: Ctx,
        /// `<Value>`.
        value: i64,
        /// `<Severity>` (may be empty).
        severity: String,
        /// `<Message>` (may be empty).
        message: String,
        /// `<Error>` text (may be empty).
        error: String,
    },
    /// The reply could not be understood (not XML, truncated, missing element,
    /// bad JSON). The body itself is never included.
    #[error("iRMC {ctx}. Reason: malformed reply: {reason}")]
    Malformed {
        /// Context.
        ctx: Ctx,
        /// What was wrong.
        reason: String,
    },
    /// `/report.xml` has no `System/ManagementControllers/iRMC` section.
    #[error(
        "iRMC {ctx}. Reason: report.xml has no System/ManagementControllers/iRMC section, and neither Root@OS/Root@Version nor Summary/Created/OS names an iRMC generation and firmware (not an iRMC, or firmware too old)"
    )]
    NoManagementController {
        /// Context.
        ctx: Ctx,
    },
    /// An IPMI-over-LAN exchange failed: no reply after the retries, a completion code,
    /// an RMCP+ status or an undecodable reply. `transient` for missing replies.
    #[error("iRMC {ctx}. Reason: IPMI (UDP port {port}): {reason}")]
    Ipmi {
        /// Context.
        ctx: Ctx,
        /// The BMC's IPMI port.
        port: u16,
        /// What went wrong, and at which step.
        reason: String,
        /// Worth retrying later (nothing answered).
        transient: bool,
    },
    /// The IPMI session could not be authenticated (unknown user or wrong password).
    #[error(
        "iRMC {ctx}. Reason: IPMI (UDP port {port}): authentication failed for user {user}: {detail}"
    )]
    IpmiAuth {
        /// Context.
        ctx: Ctx,
        /// The BMC's IPMI port.
        port: u16,
        /// The user name that was rejected.
        user: String,
        /// Which step refused it.
        detail: String,
    },
    /// The BMC kept answering "busy" (SCCI status 5, Input/Output error) until the busy
    /// budget ([`crate::BusyPolicy`]) was spent.
    #[error(
        "iRMC {ctx}. Reason: the BMC stayed busy for {}s ({attempts} attempts, last SCCI status {value}: {message})",
        waited.as_secs()
    )]
    Busy {
        /// Context.
        ctx: Ctx,
        /// The last `<Value>`.
        value: i64,
        /// The last `<Message>`/`<Error>` text (scrubbed).
        message: String,
        /// Commands sent, the first included.
        attempts: u32,
        /// Time spent waiting.
        waited: Duration,
    },
    /// The BMC refused virtual media for licence reasons (no licence key installed, or
    /// a connect refused with a licence text).
    #[error("iRMC {ctx}. Reason: virtual media needs a valid iRMC licence: {detail}")]
    Licence {
        /// Context.
        ctx: Ctx,
        /// What the BMC said, or what was found missing.
        detail: String,
    },
    /// The BMC's generation or firmware cannot do what was asked (see `capability`).
    #[error("iRMC {ctx}. Reason: {reason}")]
    Unsupported {
        /// Context.
        ctx: Ctx,
        /// Which generation/firmware and what it lacks.
        reason: String,
    },
    /// The BMC did not reach the wanted state within the limit.
    #[error("iRMC {ctx}. Reason: power state still {last} after {}s (wanted {want})", limit.as_secs_f64())]
    PollTimeout {
        /// Context.
        ctx: Ctx,
        /// The wanted state.
        want: String,
        /// The last observed state.
        last: String,
        /// How long we polled.
        limit: Duration,
    },
}

impl IrmcError {
    /// True for faults worth retrying later: connect errors, transport errors, a
    /// busy iRMC and HTTP 5xx. Never for a timeout (the BMC accepted the request and
    /// did not answer within `irmc_client_timeout`: a hung BMC, whose node fails its
    /// verb at that one deadline instead of after minutes of retries), 401/4xx,
    /// redirects, SCCI error values, malformed replies or configuration errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Transport { .. } => true,
            Self::Ipmi { transient, .. } => *transient,
            Self::Busy { .. } => true,
            Self::Http { status, .. } => (500..600).contains(status),
            _ => false,
        }
    }

    /// The context (BMC, node, operation), except for configuration errors.
    pub fn ctx(&self) -> Option<&Ctx> {
        match self {
            Self::InvalidConfig { .. } => None,
            Self::Connect { ctx, .. }
            | Self::Tls { ctx, .. }
            | Self::Timeout { ctx, .. }
            | Self::Transport { ctx, .. }
            | Self::Unauthorized { ctx, .. }
            | Self::Redirect { ctx, .. }
            | Self::Http { ctx, .. }
            | Self::Scci { ctx, .. }
            | Self::Malformed { ctx, .. }
            | Self::NoManagementController { ctx }
            | Self::Ipmi { ctx, .. }
            | Self::IpmiAuth { ctx, .. }
            | Self::Busy { ctx, .. }
            | Self::Licence { ctx, .. }
            | Self::Unsupported { ctx, .. }
            | Self::PollTimeout { ctx, .. } => Some(ctx),
        }
    }

    /// The BMC address, when the error came from a BMC.
    pub fn bmc(&self) -> Option<&str> {
        self.ctx().map(|c| c.bmc.as_str())
    }

    /// The operation that failed, when the error came from a BMC.
    pub fn operation(&self) -> Option<&'static str> {
        self.ctx().map(|c| c.operation)
    }

    /// The SCCI `Value`, when the BMC reported an SCCI error.
    pub fn scci_value(&self) -> Option<i64> {
        match self {
            Self::Scci { value, .. } => Some(*value),
            _ => None,
        }
    }
}

/// Longest BMC-supplied text kept in an error (the SCCI `<Message>`, `<Error>`,
/// `<Severity>`): real iRMC texts are one short sentence.
pub const MAX_BMC_TEXT: usize = 512;

/// Text that came back from a BMC, made safe for an error, a log line and a read-only
/// view: every secret the request carried (in clear and XML-escaped, as it was sent) is
/// replaced by `******`, control characters become spaces, and the result is cut to
/// [`MAX_BMC_TEXT`] characters. Real iRMCs echo parts of the request in their error
/// texts, share passwords included.
pub fn scrub_bmc_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let escaped = crate::wire::escape(s);
        for form in [escaped.as_str(), *s] {
            if out.contains(form) {
                out = out.replace(form, secret::MASK);
            }
        }
    }
    let mut clean: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_BMC_TEXT + 1)
        .collect();
    if clean.chars().count() > MAX_BMC_TEXT {
        clean = clean.chars().take(MAX_BMC_TEXT).collect();
        clean.push_str("...");
    }
    clean
}

#[cfg(test)]
mod scrub_tests {
    use super::*;

    #[test]
    fn secrets_controls_and_length() {
        let t = scrub_bmc_text(
            "bad <DATA>pw&lt;&amp;x</DATA> or pw<&x\n\u{1b}[31m",
            &["pw<&x", ""],
        );
        assert_eq!(t, "bad <DATA>******</DATA> or ******  [31m");
        let long = scrub_bmc_text(&"a".repeat(2000), &[]);
        assert_eq!(long.len(), MAX_BMC_TEXT + 3);
        assert!(long.ends_with("..."));
    }
}
