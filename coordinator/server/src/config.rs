//! The coordinator's configuration: one documented struct.
//!
//! Sources, lowest to highest precedence: built-in defaults, a TOML file (`--config FILE`),
//! environment variables (`COORDINATOR_*`), command-line flags. Durations are human-readable
//! ("30m", "1800s", "2h 5m") in all three.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// Command line of the `coordinator` binary. Every setting is optional here so that a value
/// given in the TOML file is only overridden by an explicit flag or environment variable.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "coordinator",
    version,
    about = "Coordinator of the iRMC virtual-media fleet"
)]
pub struct Cli {
    /// TOML file with any of the settings below (flags and environment win over it)
    #[arg(long, env = "COORDINATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (Nodes, Shares, AgentLink, reflection, health); port 0 picks a free port
    #[arg(long, env = "COORDINATOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store (created when missing)
    #[arg(long, env = "COORDINATOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:pass@host/db); the embedded SQLite store when unset
    #[arg(long, env = "COORDINATOR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Key file sealing secrets at rest (default DATA_DIR/secret.key, created on first start)
    #[arg(long, env = "COORDINATOR_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Key file of retired keys, still used to open values sealed with them (key rotation)
    #[arg(long, env = "COORDINATOR_OLD_SECRET_KEY_FILE")]
    pub old_secret_key_file: Option<PathBuf>,
    /// How long a deploy waits for the ramdisk's first heartbeat, e.g. "30m"
    #[arg(long, env = "COORDINATOR_CALLBACK_TIMEOUT", value_parser = humantime::parse_duration)]
    pub callback_timeout: Option<Duration>,
    /// How long one job on a share agent may run before the node fails, e.g. "1h"
    #[arg(long, env = "COORDINATOR_JOB_TIMEOUT", value_parser = humantime::parse_duration)]
    pub job_timeout: Option<Duration>,
    /// Global cap on concurrent virtual-media operations (0 = only per-agent capacity)
    #[arg(long, env = "COORDINATOR_MAX_CONCURRENT")]
    pub max_concurrent: Option<u32>,
    /// Heartbeat interval asked of share agents, e.g. "5s"
    #[arg(long, env = "COORDINATOR_AGENT_HEARTBEAT", value_parser = humantime::parse_duration)]
    pub agent_heartbeat: Option<Duration>,
    /// Missed heartbeats after which an agent is lost
    #[arg(long, env = "COORDINATOR_AGENT_MISSED_HEARTBEATS")]
    pub agent_missed_heartbeats: Option<u32>,
    /// Run the provision flow's automated cleaning on `provide`
    #[arg(long, env = "COORDINATOR_AUTOMATED_CLEAN")]
    pub automated_clean: Option<bool>,
    /// Events a watcher may fall behind before it gets a "lagged" notice
    #[arg(long, env = "COORDINATOR_WATCH_BUFFER")]
    pub watch_buffer: Option<usize>,
    /// Log filter (tracing env-filter syntax)
    #[arg(long, env = "COORDINATOR_LOG")]
    pub log: Option<String>,
}

/// Effective settings. Field docs are the reference for the TOML file's keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address. Default 127.0.0.1:50051.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite store. Default "./coordinator-data".
    pub data_dir: PathBuf,
    /// PostgreSQL URL; unset = embedded SQLite in `data_dir`. Its password is redacted when
    /// the configuration is printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Key file sealing secrets at rest. Unset = `data_dir/secret.key`, created (mode 0600)
    /// on first start; a file named explicitly must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,
    /// Retired keys (rotation): values sealed with them can still be opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_secret_key_file: Option<PathBuf>,
    /// Deploy call-back timeout (Ironic's `[conductor]deploy_callback_timeout`). Default 30m.
    #[serde(with = "humantime_serde")]
    pub callback_timeout: Duration,
    /// Per-job operation timeout (a whole image write must fit). Default 1h.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Global admission cap (0 = no global cap, only each agent's capacity). Default 0.
    pub max_concurrent: u32,
    /// Heartbeat interval asked of agents. Default 5s.
    #[serde(with = "humantime_serde")]
    pub agent_heartbeat: Duration,
    /// Missed heartbeats before an agent is lost. Default 3.
    pub agent_missed_heartbeats: u32,
    /// Clean on `provide` (manageable -> cleaning -> available). Default false.
    pub automated_clean: bool,
    /// Per-watcher event buffer. Default 4096.
    pub watch_buffer: usize,
    /// Log filter. Default "info".
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("coordinator-data"),
            database_url: None,
            secret_key_file: None,
            old_secret_key_file: None,
            callback_timeout: Duration::from_secs(1800),
            job_timeout: Duration::from_secs(3600),
            max_concurrent: 0,
            agent_heartbeat: Duration::from_secs(5),
            agent_missed_heartbeats: 3,
            automated_clean: false,
            watch_buffer: 4096,
            log: "info".to_owned(),
        }
    }
}

impl Config {
    /// Builds the effective configuration from the command line (and the file it names).
    pub fn load(cli: &Cli) -> Result<Self, ServerError> {
        let mut cfg = match &cli.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(cli);
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads a TOML file; unknown keys are an error so typos do not go unnoticed.
    pub fn from_file(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            what: format!("cannot read config file {}: {e}", path.display()),
        })?;
        toml::from_str(&text).map_err(|e| ServerError::Config {
            what: format!("config file {}: {e}", path.display()),
        })
    }

    fn apply(&mut self, cli: &Cli) {
        if let Some(v) = cli.listen {
            self.listen = v;
        }
        if let Some(v) = &cli.data_dir {
            self.data_dir.clone_from(v);
        }
        if let Some(v) = &cli.database_url {
            self.database_url = Some(v.clone());
        }
        if let Some(v) = &cli.secret_key_file {
            self.secret_key_file = Some(v.clone());
        }
        if let Some(v) = &cli.old_secret_key_file {
            self.old_secret_key_file = Some(v.clone());
        }
        if let Some(v) = cli.callback_timeout {
            self.callback_timeout = v;
        }
        if let Some(v) = cli.job_timeout {
            self.job_timeout = v;
        }
        if let Some(v) = cli.max_concurrent {
            self.max_concurrent = v;
        }
        if let Some(v) = cli.agent_heartbeat {
            self.agent_heartbeat = v;
        }
        if let Some(v) = cli.agent_missed_heartbeats {
            self.agent_missed_heartbeats = v;
        }
        if let Some(v) = cli.automated_clean {
            self.automated_clean = v;
        }
        if let Some(v) = cli.watch_buffer {
            self.watch_buffer = v;
        }
        if let Some(v) = &cli.log {
            self.log.clone_from(v);
        }
    }

    fn check(&self) -> Result<(), ServerError> {
        let bad = |what: &str| {
            Err(ServerError::Config {
                what: what.to_owned(),
            })
        };
        if self.callback_timeout.is_zero() {
            return bad("callback_timeout must be more than 0");
        }
        if self.job_timeout.is_zero() {
            return bad("job_timeout must be more than 0");
        }
        if self.agent_heartbeat.is_zero() {
            return bad("agent_heartbeat must be more than 0");
        }
        if self.agent_missed_heartbeats == 0 {
            return bad("agent_missed_heartbeats must be at least 1");
        }
        if self.watch_buffer == 0 {
            return bad("watch_buffer must be at least 1");
        }
        Ok(())
    }

    /// How long an agent may stay silent (or disconnected) before it is lost.
    pub fn agent_lost_after(&self) -> Duration {
        self.agent_heartbeat
            .saturating_mul(self.agent_missed_heartbeats)
    }

    /// The settings as printed at start-up. There are no secrets in this struct today; when
    /// one is added (a TLS key password, a Glance token) it must be a `Secret` so this stays safe.
    pub fn describe(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = shown.database_url.as_deref().map(redact_url);
        toml::to_string(&shown).unwrap_or_else(|e| format!("<config not printable: {e}>"))
    }
}

/// `scheme://user:secret@host/...` -> `scheme://user:******@host/...`; also hides a
/// `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find('/')
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, "******");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let from = i + "password=".len();
        let to = out[from..].find('&').map_or(out.len(), |j| from + j);
        out.replace_range(from..to, "******");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_durations_are_human() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "callback_timeout = \"30m\"\njob_timeout = \"2m 30s\"\nmax_concurrent = 7\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            max_concurrent: Some(9),
            ..Cli::default()
        };
        let cfg = Config::load(&cli).unwrap();
        assert_eq!(cfg.callback_timeout, Duration::from_secs(1800));
        assert_eq!(cfg.job_timeout, Duration::from_secs(150));
        assert_eq!(cfg.max_concurrent, 9);
        assert!(cfg.describe().contains("callback_timeout = \"30m\""));
    }

    #[test]
    fn unknown_key_is_refused_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "callbak_timeout = \"30m\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("callbak_timeout"), "{err}");
    }

    #[test]
    fn database_password_is_redacted() {
        assert_eq!(
            redact_url("postgres://vm:hunter2@127.0.0.1:5432/db?sslmode=disable"),
            "postgres://vm:******@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/db?user=a&password=x&b=c"),
            "postgres://127.0.0.1/db?user=a&password=******&b=c"
        );
        let cfg = Config {
            database_url: Some("postgres://vm:hunter2@h/db".into()),
            ..Config::default()
        };
        assert!(!cfg.describe().contains("hunter2"));
    }

    #[test]
    fn cli_parses_durations() {
        let cli = Cli::try_parse_from([
            "coordinator",
            "--callback-timeout",
            "30m",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(cli.callback_timeout, Some(Duration::from_secs(1800)));
    }
}
