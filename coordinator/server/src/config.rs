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
    /// Power-state sync period (Ironic's `sync_power_state_interval`), e.g. "60s"; 0 = off
    #[arg(long, env = "COORDINATOR_SYNC_POWER_STATE_INTERVAL", value_parser = humantime::parse_duration)]
    pub sync_power_state_interval: Option<Duration>,
    /// Power-state sync budget: BMC requests per second per share agent
    #[arg(long, env = "COORDINATOR_POWER_SYNC_BUDGET")]
    pub power_sync_budget: Option<u32>,
    /// Power a node found in another state back to the recorded one (default: report only)
    #[arg(long, env = "COORDINATOR_FORCE_POWER_STATE_DURING_SYNC")]
    pub force_power_state_during_sync: Option<bool>,
    /// Events a watcher may fall behind before it gets a "lagged" notice
    #[arg(long, env = "COORDINATOR_WATCH_BUFFER")]
    pub watch_buffer: Option<usize>,
    /// Log filter (tracing env-filter syntax)
    #[arg(long, env = "COORDINATOR_LOG")]
    pub log: Option<String>,
    /// PEM certificate (chain) of the gRPC listener; with --tls-key-file turns TLS on
    #[arg(long, env = "COORDINATOR_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the gRPC listener
    #[arg(long, env = "COORDINATOR_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA whose client certificates share agents must present (mutual TLS)
    #[arg(long, env = "COORDINATOR_AGENT_CA_FILE")]
    pub agent_ca_file: Option<PathBuf>,
    /// API token file: `<role> <token> [name]` per line, roles admin and reader
    #[arg(long, env = "COORDINATOR_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Key file sealing BMC passwords and agent tokens at rest (default: DATA_DIR/secret.key, created when missing)
    #[arg(long, env = "COORDINATOR_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Old key file(s) still opening values sealed before a rotation
    #[arg(long, env = "COORDINATOR_OLD_SECRET_KEY_FILE", value_delimiter = ',')]
    pub old_secret_key_file: Option<Vec<PathBuf>>,
    /// PostgreSQL URL (instead of SQLite in the data dir): several replicas, one leader
    #[arg(long, env = "COORDINATOR_DATABASE_URL", hide_env_values = true, value_parser = DatabaseUrl::parse)]
    pub database_url: Option<DatabaseUrl>,
    /// URL followers give clients for this replica when it leads (default: from --listen)
    #[arg(long, env = "COORDINATOR_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// How often a follower tries to take the lead, e.g. "500ms"
    #[arg(long, env = "COORDINATOR_LEADER_POLL", value_parser = humantime::parse_duration)]
    pub leader_poll: Option<Duration>,
    /// Prometheus metrics listener (GET /metrics), e.g. 127.0.0.1:9464; off when unset.
    /// Open on loopback; elsewhere scrapes need a reader or admin token (tokens_file)
    #[arg(long, env = "COORDINATOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Listen address of the browser dashboard (HTTP, or HTTPS with the gRPC certificate); off when unset
    #[arg(long, env = "COORDINATOR_DASHBOARD_LISTEN")]
    pub dashboard_listen: Option<SocketAddr>,
}

/// Effective settings. Field docs are the reference for the TOML file's keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address. Default 127.0.0.1:50051.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite store. Default "./coordinator-data".
    pub data_dir: PathBuf,
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
    /// Power-state sync period (Ironic's `[conductor]sync_power_state_interval`): every
    /// placed node's power state is read once per period, spread evenly over it. 0 turns
    /// the sync off. Default 60s.
    #[serde(with = "humantime_serde")]
    pub sync_power_state_interval: Duration,
    /// The sync's budget: BMC requests per second per share agent. When an agent has more
    /// nodes than `budget x period`, its period stretches instead. Default 50.
    pub power_sync_budget: u32,
    /// Ironic's `[conductor]force_power_state_during_sync`: power a node the sync finds in
    /// another state back to the recorded one. Default false (record what was found).
    pub force_power_state_during_sync: bool,
    /// Per-watcher event buffer. Default 4096.
    pub watch_buffer: usize,
    /// Log filter. Default "info".
    pub log: String,
    /// TLS certificate of the gRPC listener (PEM). Unset: plain text (development only).
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key of the gRPC listener (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// CA of the share agents' client certificates. Set: AgentLink needs one (mTLS).
    pub agent_ca_file: Option<PathBuf>,
    /// API tokens (`<role> <token> [name]` lines). Unset: no authentication (development).
    pub tokens_file: Option<PathBuf>,
    /// At-rest key file (current key first). Unset: `<data_dir>/secret.key`, created on
    /// first start. Set but missing or unreadable: start-up fails.
    pub secret_key_file: Option<PathBuf>,
    /// Old key files, only for opening values sealed before a key rotation.
    pub old_secret_key_file: Vec<PathBuf>,
    /// PostgreSQL URL; unset means SQLite in `data_dir`. Never printed with its password.
    pub database_url: Option<DatabaseUrl>,
    /// What followers tell clients to use for this replica. Default: https:// or http://
    /// plus the bound listen address.
    pub advertise_url: Option<String>,
    /// Follower's leadership poll interval. Default 500ms.
    #[serde(with = "humantime_serde")]
    pub leader_poll: Duration,
    /// Prometheus metrics listener (`GET /metrics`). Unset (default): no listener. On a
    /// loopback address it is open; on any other, scrapes need `Authorization: Bearer`
    /// with a reader or admin token from `tokens_file` (required then).
    pub metrics_listen: Option<SocketAddr>,
    /// The browser dashboard's listen address. Unset (the default): no dashboard. It
    /// serves HTTPS with `tls_cert_file` when TLS is on, and takes the API tokens.
    pub dashboard_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: PathBuf::from("coordinator-data"),
            callback_timeout: Duration::from_secs(1800),
            job_timeout: Duration::from_secs(3600),
            max_concurrent: 0,
            agent_heartbeat: Duration::from_secs(5),
            agent_missed_heartbeats: 3,
            automated_clean: false,
            sync_power_state_interval: Duration::from_secs(60),
            power_sync_budget: 50,
            force_power_state_during_sync: false,
            watch_buffer: 4096,
            log: "info".to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
            agent_ca_file: None,
            tokens_file: None,
            secret_key_file: None,
            old_secret_key_file: Vec::new(),
            database_url: None,
            advertise_url: None,
            leader_poll: Duration::from_millis(500),
            metrics_listen: None,
            dashboard_listen: None,
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
        if let Some(v) = cli.sync_power_state_interval {
            self.sync_power_state_interval = v;
        }
        if let Some(v) = cli.power_sync_budget {
            self.power_sync_budget = v;
        }
        if let Some(v) = cli.force_power_state_during_sync {
            self.force_power_state_during_sync = v;
        }
        if let Some(v) = &cli.log {
            self.log.clone_from(v);
        }
        let path = |dst: &mut Option<PathBuf>, src: &Option<PathBuf>| {
            if let Some(v) = src {
                *dst = Some(v.clone());
            }
        };
        path(&mut self.tls_cert_file, &cli.tls_cert_file);
        path(&mut self.tls_key_file, &cli.tls_key_file);
        path(&mut self.agent_ca_file, &cli.agent_ca_file);
        path(&mut self.tokens_file, &cli.tokens_file);
        path(&mut self.secret_key_file, &cli.secret_key_file);
        if let Some(v) = &cli.old_secret_key_file {
            self.old_secret_key_file.clone_from(v);
        }
        if let Some(v) = &cli.database_url {
            self.database_url = Some(v.clone());
        }
        if let Some(v) = &cli.advertise_url {
            self.advertise_url = Some(v.clone());
        }
        if let Some(v) = cli.leader_poll {
            self.leader_poll = v;
        }
        if let Some(v) = cli.metrics_listen {
            self.metrics_listen = Some(v);
        }
        if let Some(v) = cli.dashboard_listen {
            self.dashboard_listen = Some(v);
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
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad("tls_cert_file and tls_key_file go together");
        }
        if self.agent_ca_file.is_some() && self.tls_cert_file.is_none() {
            return bad("agent_ca_file needs TLS (tls_cert_file and tls_key_file)");
        }
        if self.leader_poll.is_zero() {
            return bad("leader_poll must be more than 0");
        }
        if let Some(listen) = self.metrics_listen
            && self.tokens_file.is_none()
            && let Err(what) = metrics_endpoint::gate_for(listen, None, "tokens_file")
        {
            return Err(ServerError::Config { what });
        }
        if let Some(u) = &self.database_url
            && !(u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://"))
        {
            return bad("database_url must be a postgres:// URL");
        }
        Ok(())
    }

    /// How long an agent may stay silent (or disconnected) before it is lost.
    pub fn agent_lost_after(&self) -> Duration {
        self.agent_heartbeat
            .saturating_mul(self.agent_missed_heartbeats)
    }

    /// The settings as printed at start-up. The only secret in this struct is a password
    /// inside `database_url`, which is masked here; key and token files are paths.
    pub fn describe(&self) -> String {
        // `DatabaseUrl` serialises masked.
        toml::to_string(self).unwrap_or_else(|e| format!("<config not printable: {e}>"))
    }

    /// Where the at-rest key file is.
    pub fn secret_key_path(&self) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret.key"))
    }
}

/// A PostgreSQL URL. It may hold a password, so `Debug`, `Display` and `Serialize` (the
/// printed configuration) mask it; [`DatabaseUrl::expose`] gives the real text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Clap value parser.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// `scheme://user:password@host/db?password=...` with both passwords replaced by `******`.
pub fn redact_url(url: &str) -> String {
    let mask = coordinator_core::MASK;
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, tail) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:{mask}@{host}{tail}"),
                    None => format!("{scheme}://{userinfo}@{host}{tail}"),
                },
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={mask}"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
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
    fn database_passwords_are_never_printed() {
        assert_eq!(
            redact_url("postgres://vm:s3cret@127.0.0.1:5432/db"),
            "postgres://vm:******@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/db?user=a&password=s3cret"),
            "postgres://127.0.0.1/db?user=a&password=******"
        );
        let cfg = Config {
            database_url: Some(DatabaseUrl::parse("postgres://vm:s3cret@h/db").unwrap()),
            ..Config::default()
        };
        assert!(!cfg.describe().contains("s3cret"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let cli = Cli::try_parse_from(["coordinator", "--database-url", "postgres://a:s3cret@h/d"])
            .unwrap();
        assert!(!format!("{cli:?}").contains("s3cret"));
    }

    #[test]
    fn tls_settings_are_checked() {
        let cli = Cli {
            tls_cert_file: Some("c.pem".into()),
            ..Cli::default()
        };
        assert!(
            Config::load(&cli)
                .unwrap_err()
                .to_string()
                .contains("go together")
        );
        let cli = Cli {
            agent_ca_file: Some("ca.pem".into()),
            ..Cli::default()
        };
        assert!(
            Config::load(&cli)
                .unwrap_err()
                .to_string()
                .contains("needs TLS")
        );
    }

    #[test]
    fn a_metrics_listener_off_loopback_needs_tokens() {
        let cli = Cli {
            metrics_listen: Some("0.0.0.0:9464".parse().unwrap()),
            ..Cli::default()
        };
        let e = Config::load(&cli).unwrap_err().to_string();
        assert!(
            e.contains("metrics_listen") && e.contains("tokens_file"),
            "{e}"
        );
        let cli = Cli {
            metrics_listen: Some("127.0.0.1:9464".parse().unwrap()),
            ..Cli::default()
        };
        assert!(Config::load(&cli).is_ok());
        let cli = Cli {
            metrics_listen: Some("0.0.0.0:9464".parse().unwrap()),
            tokens_file: Some("tokens".into()),
            ..Cli::default()
        };
        assert!(Config::load(&cli).is_ok());
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
