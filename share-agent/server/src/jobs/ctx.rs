//! The per-job context jobs run in: who the job is for, its BMC client
//! (counted per job), progress reporting, and errors that name the node, the
//! BMC and the operation.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boot_media::MediaError;
use irmc::{BmcConfig, IrmcClient, IrmcError};
use tokio::time::Instant;
use vmedia_proto::v1 as pb;

use crate::error::AgentError;
use crate::state::{Agent, BmcCaps};

/// A node uuid is used as a directory name: allow only what uuids and
/// Ironic node names contain, so no job can reach outside `nodes/`.
pub fn check_node_name(node: &str) -> Result<(), AgentError> {
    let ok = !node.is_empty()
        && node.len() <= 128
        && node != "."
        && node != ".."
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::InvalidJob {
            node: node.escape_default().to_string(),
            field: "node_uuid".to_string(),
            reason: "must be a uuid or name made of letters, digits, '-', '_', '.', '~'"
                .to_string(),
        })
    }
}

/// Builds the iRMC client config from the job's BMC target (Ironic driver_info meaning).
pub fn bmc_config(node: &str, t: &pb::BmcTarget) -> Result<BmcConfig, AgentError> {
    let invalid = |field: &str, reason: String| AgentError::InvalidJob {
        node: node.to_string(),
        field: format!("bmc.{field}"),
        reason,
    };
    if t.address.trim().is_empty() {
        return Err(invalid("address", "irmc_address is required".into()));
    }
    let port = match t.port {
        0 => 443,
        p => u16::try_from(p).map_err(|_| invalid("port", format!("{p} is not a TCP port")))?,
    };
    let mut cfg = BmcConfig::new(
        t.address.trim(),
        t.username.clone(),
        irmc::Secret::new(t.password.clone()),
    );
    cfg.port = port;
    cfg.scheme = irmc::Scheme::for_port(port);
    cfg.auth = match t.auth_method.trim() {
        "" => irmc::AuthMethod::Basic,
        other => other
            .parse()
            .map_err(|r: String| invalid("auth_method", r))?,
    };
    if t.client_timeout_s > 0 {
        cfg.timeout = Duration::from_secs(u64::from(t.client_timeout_s));
    }
    cfg.transport = match t.transport.trim() {
        "" => irmc::Transport::Auto,
        other => other.parse().map_err(|r: String| invalid("transport", r))?,
    };
    let v = t.verify_ca.trim();
    cfg.verify = match v.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "on" => irmc::TlsVerify::System,
        "false" | "0" | "no" | "off" => irmc::TlsVerify::Insecure,
        _ => irmc::TlsVerify::CaFile(PathBuf::from(v)),
    };
    Ok(cfg.with_node(node))
}

/// Everything one job needs: the agent, who it is for, a BMC client and
/// the counters that end up in `JobOutput`.
pub struct JobCtx {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Job id.
    pub job_id: String,
    /// Node uuid.
    pub node: String,
    /// BMC address (for error context).
    pub bmc: String,
    target: pb::BmcTarget,
    client: Option<(IrmcClient, u64)>,
    /// Accumulated output.
    pub out: pb::JobOutput,
    progress: Arc<Mutex<ProgressGate>>,
}

/// Progress lines of one job reach the coordinator at most once per
/// [`PROGRESS_EVERY`]. A step shorter than that is only logged (at debug level); a
/// longer one is reported once it has lasted that long, by a timer armed when a
/// line is held back. Without the gate every step was one message on the session
/// and one event the coordinator built and broadcast: about 24 per deploy, most of
/// them for steps of a millisecond that no one can watch anyway.
#[derive(Default)]
struct ProgressGate {
    last_sent: Option<Instant>,
    held: Option<pb::JobUpdate>,
    armed: bool,
}

/// See [`ProgressGate`].
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

impl JobCtx {
    /// A context for `job`.
    pub fn new(agent: Arc<Agent>, job: &pb::Job) -> Self {
        let target = job.bmc.clone().unwrap_or_default();
        Self {
            agent,
            job_id: job.job_id.clone(),
            node: job.node_uuid.clone(),
            bmc: target.address.clone(),
            target,
            client: None,
            out: pb::JobOutput::default(),
            progress: Arc::new(Mutex::new(ProgressGate {
                // The job's start counts as a report: the coordinator knows it sent it.
                last_sent: Some(Instant::now()),
                ..ProgressGate::default()
            })),
        }
    }

    /// Reports a progress line.
    pub async fn progress(&self, line: &str) {
        tracing::debug!(job = %self.job_id, node = %self.node, "{line}");
        let u = pb::JobUpdate {
            job_id: self.job_id.clone(),
            node_uuid: self.node.clone(),
            state: pb::JobState::Running as i32,
            progress: line.to_string(),
            output: Some(self.out_with_requests()),
            ..Default::default()
        };
        if !self.agent.jobs.record(&u) {
            return;
        }
        enum Gate {
            SendNow,
            Held,
            HeldUntil(Instant),
        }
        let now = Instant::now();
        let mut u = Some(u);
        let gate = {
            let mut g = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            let due = g.last_sent.map_or(now, |t| t + PROGRESS_EVERY);
            if now >= due {
                g.last_sent = Some(now);
                g.held = None;
                Gate::SendNow
            } else {
                g.held = u.take();
                if std::mem::replace(&mut g.armed, true) {
                    Gate::Held
                } else {
                    Gate::HeldUntil(due)
                }
            }
        };
        match gate {
            Gate::SendNow => {
                if let Some(u) = u {
                    self.agent.sink.send(u).await;
                }
            }
            Gate::Held => {}
            Gate::HeldUntil(due) => {
                let gate = self.progress.clone();
                let agent = self.agent.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(due).await;
                    let held = {
                        let mut g = gate.lock().unwrap_or_else(|e| e.into_inner());
                        g.armed = false;
                        let held = g.held.take();
                        if held.is_some() {
                            g.last_sent = Some(Instant::now());
                        }
                        held
                    };
                    // `record` refuses it once the job has finished: a result is never
                    // followed by an older progress line.
                    if let Some(u) = held
                        && agent.jobs.record(&u)
                    {
                        agent.sink.send(u).await;
                    }
                });
            }
        }
    }

    /// The output so far, with the BMC request count filled in.
    pub fn out_with_requests(&self) -> pb::JobOutput {
        let mut o = self.out.clone();
        o.bmc_requests = self.bmc_requests();
        o
    }

    fn bmc_requests(&self) -> u32 {
        self.client
            .as_ref()
            .map(|(c, base)| {
                u32::try_from(c.requests_sent().saturating_sub(*base)).unwrap_or(u32::MAX)
            })
            .unwrap_or(0)
    }

    /// The BMC client (cached per BMC across jobs; counted per job).
    pub fn client(&mut self) -> Result<IrmcClient, AgentError> {
        if let Some((c, _)) = &self.client {
            return Ok(c.clone());
        }
        let cfg = bmc_config(&self.node, &self.target)?;
        let key = format!(
            "{}|{}|{}|{}|{:?}|{:?}|{}|{}",
            self.node,
            cfg.address,
            cfg.port,
            cfg.username,
            cfg.auth,
            cfg.verify,
            cfg.timeout.as_millis(),
            self.target.password
        );
        let c = self
            .agent
            .client_for(cfg, key)
            .map_err(|e| self.irmc_err("set up the BMC client", e))?;
        let base = c.requests_sent();
        self.client = Some((c.clone(), base));
        Ok(c)
    }

    /// Runs one BMC operation under the agent-wide concurrency bound.
    pub async fn bmc<T, F>(&self, op: &str, fut: F) -> Result<T, AgentError>
    where
        F: Future<Output = Result<T, IrmcError>>,
    {
        let t0 = Instant::now();
        let _permit = self
            .agent
            .bmc_permits
            .acquire()
            .await
            .map_err(|_| self.timeout_err(op, Duration::ZERO))?;
        // One job at a time per node and one client per node: the client's counter
        // moves only for this operation meanwhile.
        let sent = || self.client.as_ref().map_or(0, |(c, _)| c.requests_sent());
        let before = sent();
        let r = fut.await;
        self.agent.metrics.bmc_operation(
            op,
            r.is_ok(),
            t0.elapsed(),
            sent().saturating_sub(before),
        );
        r.map_err(|e| self.irmc_err(op, e))
    }

    /// The BMC's capabilities (report.xml once per BMC, then cached).
    pub async fn caps(&mut self) -> Result<BmcCaps, AgentError> {
        let key = format!("{}:{}", self.target.address, self.target.port);
        if let Some(c) = self.agent.caps_of(&key) {
            self.fill_caps(&c);
            return Ok(c);
        }
        self.refresh_caps().await
    }

    /// Reads report.xml now and refreshes the cache. A generation before S4 is refused
    /// here too, so a deploy never starts on one whatever its verification said.
    pub async fn refresh_caps(&mut self) -> Result<BmcCaps, AgentError> {
        let client = self.client()?;
        let c = self
            .bmc("reading report.xml", client.capabilities())
            .await?;
        if let Err(reason) = c.check_supported() {
            return Err(self.irmc_err(
                "reading report.xml",
                irmc::IrmcError::Unsupported {
                    ctx: irmc::Ctx {
                        bmc: self.target.address.clone(),
                        node: Some(self.node.clone()),
                        operation: "reading report.xml",
                    },
                    reason,
                },
            ));
        }
        Ok(self.store_caps(&c))
    }

    /// Full validation (generation, firmware, licence key), then the cache refresh:
    /// the verifying step of `manage`. Sets the job output's one-line `bmc_check`,
    /// also when the validation fails.
    pub async fn validate_bmc(&mut self) -> Result<BmcCaps, AgentError> {
        let client = self.client()?;
        match self.bmc("validating the iRMC", client.validate()).await {
            Ok(c) => {
                self.out.bmc_check = c.summary();
                Ok(self.store_caps(&c))
            }
            Err(e) => {
                self.out.bmc_check = e.to_string();
                Err(e)
            }
        }
    }

    fn store_caps(&mut self, c: &irmc::Capabilities) -> BmcCaps {
        let key = format!("{}:{}", self.target.address, self.target.port);
        let caps = BmcCaps {
            model: c.model.clone(),
            firmware: c.firmware.clone(),
            has_virtual_fd: c.virtual_fd,
            redfish: c.redfish,
        };
        self.agent.set_caps(&key, caps.clone());
        self.fill_caps(&caps);
        caps
    }

    fn fill_caps(&mut self, c: &BmcCaps) {
        self.out.bmc_model = c.model.clone();
        self.out.bmc_firmware = c.firmware.clone();
        self.out.bmc_has_virtual_fd = c.has_virtual_fd;
    }

    /// Maps a client error.
    pub fn irmc_err(&self, op: &str, e: IrmcError) -> AgentError {
        AgentError::Bmc {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            transient: e.is_transient(),
            reason: e.to_string(),
        }
    }

    /// Maps a media error.
    pub fn media_err(&self, op: &str, e: MediaError) -> AgentError {
        AgentError::Media {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            reason: e.to_string(),
        }
    }

    /// A file error.
    pub fn io_err(&self, op: &str, path: &Path, e: std::io::Error) -> AgentError {
        AgentError::Io {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            path: path.to_path_buf(),
            source: e,
        }
    }

    /// A timeout.
    pub fn timeout_err(&self, op: &str, after: Duration) -> AgentError {
        AgentError::Timeout {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            after,
        }
    }

    /// An invalid job field.
    pub fn invalid(&self, field: &str, reason: impl Into<String>) -> AgentError {
        AgentError::InvalidJob {
            node: self.node.clone(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Fails with `ShareFull` unless `needed` bytes fit above the reserve;
    /// under pressure the caches are collected first (never an entry in use).
    pub async fn ensure_space(&self, op: &str, path: &Path, needed: u64) -> Result<(), AgentError> {
        let reserve = self.agent.cfg.share.min_free_bytes;
        let want = needed.saturating_add(reserve);
        let free =
            boot_media::free_bytes(&self.agent.share_root).map_err(|e| self.media_err(op, e))?;
        if free >= want {
            return Ok(());
        }
        let short = want - free;
        if let Err(e) = self.agent.cache.gc(short).await {
            tracing::warn!(node = %self.node, error = %e, "cache gc failed");
        }
        let store = self.agent.iso_store.clone();
        let _ = tokio::task::spawn_blocking(move || store.gc(want)).await;
        let free =
            boot_media::free_bytes(&self.agent.share_root).map_err(|e| self.media_err(op, e))?;
        if free >= want {
            return Ok(());
        }
        Err(AgentError::ShareFull {
            node: self.node.clone(),
            bmc: self.bmc.clone(),
            operation: op.to_string(),
            path: path.to_path_buf(),
            needed,
            free,
            reserve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(check_node_name("1be26c0b-03f2-4d2e-ae87-c02d7f33c123").is_ok());
        assert!(check_node_name("rack1-node_07").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a b", "x\0"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bmc_target_conversion() {
        let t = pb::BmcTarget {
            address: "127.0.0.1".into(),
            port: 8443,
            username: "admin".into(),
            password: "p<&>".into(),
            auth_method: "digest".into(),
            client_timeout_s: 5,
            verify_ca: "false".into(),
            transport: "ipmi".into(),
        };
        let c = bmc_config("n1", &t).unwrap();
        assert_eq!(c.transport, irmc::Transport::Ipmi);
        assert_eq!(c.port, 8443);
        assert_eq!(c.auth, irmc::AuthMethod::Digest);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.verify, irmc::TlsVerify::Insecure);
        assert!(!format!("{c:?}").contains("p<&>"));
        let bad = pb::BmcTarget {
            auth_method: "ntlm".into(),
            ..t.clone()
        };
        let e = bmc_config("n1", &bad).unwrap_err().to_string();
        assert!(e.contains("bmc.auth_method"), "{e}");
        let bad = pb::BmcTarget {
            transport: "snmp".into(),
            ..t
        };
        let e = bmc_config("n1", &bad).unwrap_err().to_string();
        assert!(
            e.contains("bmc.transport") && e.contains("redfish, ipmi or auto"),
            "{e}"
        );
    }
}
