//! Connection settings for one BMC, and their validation from Ironic's
//! `driver_info` keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::IrmcError;
use crate::ipmi::IpmiSettings;

/// How power state and the boot device are read and set (`irmc_transport`).
///
/// Power actions stay on SCCI whatever this says: on an iRMC they are one HTTPS POST
/// each, and SCCI's graceful variants go through the ServerView agent in the OS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Redfish (`/redfish/v1/Systems/0`): one HTTPS request per read or change.
    Redfish,
    /// IPMI over LAN (RMCP+, UDP 623): Get Chassis Status and Set System Boot Options
    /// with the iRMC's remote CD/DVD device (0x20), as Ironic's iRMC driver did.
    Ipmi,
    /// Redfish when the BMC has it, else IPMI: decided once per BMC (per client) by the
    /// first power-state or boot-device call, which tries Redfish; only when that finds
    /// no Redfish service (404/405/501) is IPMI probed. No extra request on a BMC with
    /// Redfish.
    #[default]
    Auto,
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redfish" => Ok(Self::Redfish),
            "ipmi" => Ok(Self::Ipmi),
            "auto" => Ok(Self::Auto),
            other => Err(format!("must be redfish, ipmi or auto, got {other:?}")),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redfish => "redfish",
            Self::Ipmi => "ipmi",
            Self::Auto => "auto",
        })
    }
}

/// BMC and share passwords: the product-wide secret type (`Debug`/`Display` print
/// `******`; the clear text only through `expose`).
pub use secret::Secret;

/// HTTP authentication scheme (`irmc_auth_method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// RFC 7617 Basic: the credentials travel on every request.
    #[default]
    Basic,
    /// RFC 7616 Digest (MD5 / SHA-256, `qop=auth`); the nonce is cached per client.
    Digest,
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "basic" => Ok(Self::Basic),
            "digest" => Ok(Self::Digest),
            other => Err(format!("must be basic or digest, got {other:?}")),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Basic => "basic",
            Self::Digest => "digest",
        })
    }
}

/// TLS server-certificate verification (`irmc_verify_ca`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// Verify against the system trust store (the default).
    #[default]
    System,
    /// Verify against the PEM certificates in this file only.
    CaFile(PathBuf),
    /// Do not verify (explicit opt-out: `irmc_verify_ca=false`).
    Insecure,
}

/// URL scheme used to reach the BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (port 80 on a real iRMC).
    Http,
    /// HTTPS (port 443 on a real iRMC).
    Https,
}

impl Scheme {
    /// Ironic's rule: 80 means http, anything else https.
    pub fn for_port(port: u16) -> Self {
        if port == 80 { Self::Http } else { Self::Https }
    }

    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Retries for transient faults only, with exponential backoff and full jitter.
///
/// The retry rule (see the crate docs): a connect error (the request never left
/// this host) is retried for every request; a timeout, a 5xx other than 503
/// and a dropped connection are retried only for idempotent requests; 503
/// (the BMC declined the request) is retried for every request. 401, other 4xx,
/// redirects and SCCI error values are never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = no retry).
    pub attempts: u32,
    /// Backoff before the first retry; doubles per retry.
    pub base_delay: Duration,
    /// Upper bound for one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Backoff before retry number `retry` (1-based): a random duration in
    /// `[d/2, d]` where `d = min(base * 2^(retry-1), max)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(16);
        let full = self
            .base_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay);
        let half = full / 2;
        let span = full.saturating_sub(half).as_millis() as u64;
        let jitter = if span == 0 {
            0
        } else {
            rand::random_range(0..=span)
        };
        half + Duration::from_millis(jitter)
    }
}

/// Bounded polling (replaces the reference client's fixed 3-5 s sleeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollPolicy {
    /// First poll interval; doubles after each poll.
    pub interval: Duration,
    /// Upper bound for the interval.
    pub max_interval: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(5),
        }
    }
}

/// How long a busy BMC is waited for. An iRMC answers a command that arrives while it
/// is still carrying out an earlier one (a power action, a media connect) with SCCI
/// status 5 ("Input/Output error"; the reference client slept 3 s after every power
/// command to avoid it). Such a command was refused, not performed, so it is sent again
/// after a growing pause (`first`, doubling, capped at `max_delay`) until it succeeds or
/// `budget` is spent: no fixed sleep, and a bounded total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPolicy {
    /// Pause before the first resend.
    pub first: Duration,
    /// Upper bound for one pause.
    pub max_delay: Duration,
    /// Total time spent waiting for one command; after it the command fails.
    pub budget: Duration,
}

impl Default for BusyPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            budget: Duration::from_secs(30),
        }
    }
}

impl BusyPolicy {
    /// The pause before resend number `retry` (1-based), without jitter: a busy window
    /// is a property of the BMC, not a collision among clients.
    pub fn delay(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(16);
        self.first.saturating_mul(1u32 << shift).min(self.max_delay)
    }
}

/// Everything needed to talk to one iRMC. Field docs name the Ironic
/// `driver_info` key each one comes from.
#[derive(Clone, Debug)]
pub struct BmcConfig {
    /// `irmc_address`: host name or IP address of the iRMC.
    pub address: String,
    /// `irmc_port`: 443 (https) or 80 (http) on a real iRMC. The library accepts
    /// any port (tests use ephemeral ones); only [`BmcConfig::from_driver_info`]
    /// insists on 443|80. The port appears in URLs only when it is not the
    /// scheme's default.
    pub port: u16,
    /// URL scheme; [`Scheme::for_port`] gives Ironic's rule.
    pub scheme: Scheme,
    /// `irmc_username`.
    pub username: String,
    /// `irmc_password`.
    pub password: Secret,
    /// `irmc_auth_method`: basic (default) or digest.
    pub auth: AuthMethod,
    /// `irmc_client_timeout` (default 60 s): connect timeout and whole-request timeout.
    pub timeout: Duration,
    /// `irmc_verify_ca`: true (default) = system roots, a path = that CA file, false = insecure.
    pub verify: TlsVerify,
    /// Node UUID or name, used only for error context.
    pub node: Option<String>,
    /// Transient-fault retries.
    pub retry: RetryPolicy,
    /// Polling cadence for [`crate::IrmcClient::wait_power_state`].
    pub poll: PollPolicy,
    /// Waiting out a busy BMC (SCCI status 5).
    pub busy: BusyPolicy,
    /// `irmc_transport`: how power state and the boot device are done.
    pub transport: Transport,
    /// IPMI-over-LAN port, cipher suite and retransmission.
    pub ipmi: IpmiSettings,
}

/// Default `irmc_client_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl BmcConfig {
    /// A config with Ironic's defaults: port 443 (https), basic auth, 60 s,
    /// verification against the system roots.
    pub fn new(address: impl Into<String>, username: impl Into<String>, password: Secret) -> Self {
        Self {
            address: address.into(),
            port: 443,
            scheme: Scheme::Https,
            username: username.into(),
            password,
            auth: AuthMethod::Basic,
            timeout: DEFAULT_TIMEOUT,
            verify: TlsVerify::System,
            node: None,
            retry: RetryPolicy::default(),
            poll: PollPolicy::default(),
            busy: BusyPolicy::default(),
            transport: Transport::Auto,
            ipmi: IpmiSettings::default(),
        }
    }

    /// Builds and validates a config from Ironic `driver_info` keys:
    /// `irmc_address`, `irmc_username`, `irmc_password` (required),
    /// `irmc_port` (443|80, default 443), `irmc_auth_method` (basic|digest),
    /// `irmc_client_timeout` (seconds, > 0, default 60), `irmc_verify_ca`
    /// (true|false|path to a CA bundle, default true), `irmc_transport`
    /// (redfish|ipmi|auto, default auto). Errors name the field
    /// and never contain the password.
    pub fn from_driver_info(map: &BTreeMap<String, String>) -> Result<Self, IrmcError> {
        let required = |field: &'static str| -> Result<String, IrmcError> {
            match map.get(field).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => Ok(v.to_owned()),
                _ => Err(IrmcError::InvalidConfig {
                    field,
                    reason: "is required".into(),
                }),
            }
        };
        let address = required("irmc_address")?;
        let username = required("irmc_username")?;
        // The password is not trimmed: spaces may be part of it.
        let password = match map.get("irmc_password") {
            Some(p) if !p.is_empty() => Secret::new(p.clone()),
            _ => {
                return Err(IrmcError::InvalidConfig {
                    field: "irmc_password",
                    reason: "is required".into(),
                });
            }
        };
        let mut cfg = Self::new(address, username, password);
        if let Some(port) = map.get("irmc_port") {
            cfg.port = match port.trim() {
                "443" => 443,
                "80" => 80,
                other => {
                    return Err(IrmcError::InvalidConfig {
                        field: "irmc_port",
                        reason: format!("must be 443 or 80, got {other:?}"),
                    });
                }
            };
            cfg.scheme = Scheme::for_port(cfg.port);
        }
        if let Some(auth) = map.get("irmc_auth_method") {
            cfg.auth = auth.parse().map_err(|reason| IrmcError::InvalidConfig {
                field: "irmc_auth_method",
                reason,
            })?;
        }
        if let Some(t) = map.get("irmc_client_timeout") {
            let secs: u64 = t.trim().parse().map_err(|_| IrmcError::InvalidConfig {
                field: "irmc_client_timeout",
                reason: format!("must be a positive integer (seconds), got {t:?}"),
            })?;
            if secs == 0 {
                return Err(IrmcError::InvalidConfig {
                    field: "irmc_client_timeout",
                    reason: "must be greater than 0".into(),
                });
            }
            cfg.timeout = Duration::from_secs(secs);
        }
        if let Some(v) = map.get("irmc_verify_ca") {
            let v = v.trim();
            cfg.verify = match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => TlsVerify::System,
                "false" | "0" | "no" | "off" => TlsVerify::Insecure,
                "" => {
                    return Err(IrmcError::InvalidConfig {
                        field: "irmc_verify_ca",
                        reason: "must be true, false or a CA file path".into(),
                    });
                }
                _ => TlsVerify::CaFile(PathBuf::from(v)),
            };
        }
        if let Some(t) = map.get("irmc_transport") {
            cfg.transport = t.parse().map_err(|reason| IrmcError::InvalidConfig {
                field: "irmc_transport",
                reason,
            })?;
        }
        Ok(cfg)
    }

    /// Sets the node name used in error context (builder style).
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// `scheme://address[:port]` without a trailing slash. IPv6 literals get brackets.
    pub fn base_url(&self) -> String {
        let host = if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        if self.port == self.scheme.default_port() {
            format!("{}://{}", self.scheme.as_str(), host)
        } else {
            format!("{}://{}:{}", self.scheme.as_str(), host, self.port)
        }
    }
}
