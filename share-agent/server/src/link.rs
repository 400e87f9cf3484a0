//! The coordinator link: the agent dials the coordinator's `AgentLink.Session`
//! stream, says `hello` (identity, capacity, known jobs), gets `welcome`,
//! then heartbeats and runs the jobs that come down. When the stream drops it
//! reconnects with capped exponential backoff and jitter; running jobs keep
//! running, and their latest state rides in the next `hello.known_jobs`.
//!
//! Several coordinator replicas (`coordinator = "https://a:50051,https://b:50051"`):
//! [`Coordinators`] holds the channel to the one believed to lead. A follower answers
//! "not the leader; leader is URL": the link switches there when URL is one of the
//! configured replicas (never to another address, never from https to http); an unreachable one makes
//! it try the next in the list. The ramdisk relays (`http.rs`) always use the current one.

use std::sync::Arc;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vmedia_proto::v1 as pb;

use crate::config::CoordinatorTls;
use crate::error::AgentError;
use crate::jobs;
use crate::state::Agent;

/// The gRPC channel to the coordinator (lazy: connects on first use and
/// reconnects by itself; the unary ramdisk relays share it). An https
/// endpoint uses TLS: the configured CA or the system roots, and a client
/// certificate when one is configured (mTLS).
pub fn channel(endpoint: &str, tls: &CoordinatorTls) -> Result<Channel, AgentError> {
    let mut ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| AgentError::config("coordinator", format!("{endpoint:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if endpoint.starts_with("https://") {
        let read = |option: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                AgentError::config(option, format!("cannot read '{}': {e}", path.display()))
            })
        };
        let mut cfg = ClientTlsConfig::new();
        cfg = match &tls.ca_file {
            Some(ca) => cfg.ca_certificate(Certificate::from_pem(read("coordinator_ca_file", ca)?)),
            None => cfg.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            cfg = cfg.identity(Identity::from_pem(
                read("coordinator_cert_file", cert)?,
                read("coordinator_key_file", key)?,
            ));
        }
        ep = ep.tls_config(cfg).map_err(|e| {
            AgentError::config("coordinator_ca_file", format!("TLS set-up failed: {e}"))
        })?;
    }
    Ok(ep.connect_lazy())
}

/// The configured coordinators and the channel to the one in use.
#[derive(Clone)]
pub struct Coordinators {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    tls: CoordinatorTls,
    current: std::sync::RwLock<(String, Channel)>,
}

impl Coordinators {
    /// `list`: one endpoint or several, comma separated. Channels are lazy: nothing
    /// connects until the first call.
    pub fn new(list: &str, tls: &CoordinatorTls) -> Result<Self, AgentError> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let Some(first) = endpoints.first().cloned() else {
            return Err(AgentError::config(
                "coordinator",
                "no coordinator endpoint given",
            ));
        };
        // Validate every entry now, so a typo fails at start-up, not at fail-over.
        for e in &endpoints {
            channel(e, tls)?;
        }
        let ch = channel(&first, tls)?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                tls: tls.clone(),
                current: std::sync::RwLock::new((first, ch)),
            }),
        })
    }

    /// The endpoint in use.
    pub fn current(&self) -> String {
        match self.inner.current.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    /// A client on the endpoint in use.
    pub fn client(&self) -> pb::agent_link_client::AgentLinkClient<Channel> {
        let ch = match self.inner.current.read() {
            Ok(g) => g.1.clone(),
            Err(p) => p.into_inner().1.clone(),
        };
        pb::agent_link_client::AgentLinkClient::new(ch)
    }

    /// After a failure on the current endpoint: go where a follower's redirect points
    /// ("... leader is URL"), or else to the next configured endpoint.
    pub fn follow(&self, failure: &str) {
        let current = self.current();
        let hinted = failure
            .split("leader is ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|u| u.trim_end_matches([',', ';', ')']).to_owned())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .filter(|u| *u != current)
            // Only a configured replica, and never from https down to http: a follower
            // (or whoever answers in its place) must not steer the agent, and the BMC
            // passwords its jobs carry, anywhere else.
            .filter(|u| self.inner.endpoints.iter().any(|e| e == u))
            .filter(|u| !(current.starts_with("https://") && u.starts_with("http://")));
        let next = hinted.unwrap_or_else(|| {
            let eps = &self.inner.endpoints;
            let i = eps.iter().position(|e| *e == current).map_or(0, |i| i + 1);
            eps[i % eps.len()].clone()
        });
        if next == current {
            return;
        }
        match channel(&next, &self.inner.tls) {
            Ok(ch) => {
                tracing::info!(from = %current, to = %next, "switching coordinator");
                match self.inner.current.write() {
                    Ok(mut g) => *g = (next, ch),
                    Err(p) => *p.into_inner() = (next, ch),
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %next, error = %e, "cannot use the coordinator endpoint")
            }
        }
    }
}

fn hello(agent: &Agent) -> pb::AgentHello {
    let cfg = &agent.cfg;
    let s = &cfg.share;
    pb::AgentHello {
        agent_id: cfg.agent_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        share: Some(pb::ShareIdentity {
            server: s.remote_image_server.clone(),
            share_type: s.remote_image_share_type.as_str().to_string(),
            share_name: s.remote_image_share_name.clone(),
            user_name: s.remote_image_user_name.clone(),
            user_domain: s.remote_image_user_domain.clone(),
            root: agent.share_root.display().to_string(),
        }),
        capacity: cfg.capacity,
        bmc_networks: cfg.bmc_networks.iter().map(ToString::to_string).collect(),
        labels: cfg.labels.clone().into_iter().collect(),
        http_url: cfg.ipa_api_url.clone(),
        free_bytes: agent.free_bytes(),
        known_jobs: agent.jobs.snapshot(),
    }
}

/// Runs the link until `shutdown`.
pub async fn run(agent: Arc<Agent>, coordinators: Coordinators, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    let max = agent.cfg.reconnect_max.max(Duration::from_millis(200));
    loop {
        let endpoint = coordinators.current();
        match session(&agent, &endpoint, coordinators.client(), &shutdown).await {
            Ok(true) => {
                // A session that got as far as welcome resets the backoff.
                backoff = Duration::from_millis(200);
                tracing::warn!(coordinator = %endpoint, "coordinator session ended; reconnecting");
                coordinators.follow("");
            }
            Ok(false) => {}
            Err(e) => {
                let text = e.to_string();
                if text.contains("not the leader") {
                    // A follower: go to the leader at once, no backoff growth.
                    tracing::info!(coordinator = %endpoint, reason = %text, "coordinator is a follower; following the redirect");
                    coordinators.follow(&text);
                    backoff = Duration::from_millis(200);
                } else {
                    tracing::warn!(error = %e, "coordinator session failed; reconnecting");
                    coordinators.follow(&text);
                }
            }
        }
        agent.sink.disconnect();
        if shutdown.is_cancelled() {
            return;
        }
        // Full jitter in [backoff/2, backoff] so a fleet of agents does not
        // reconnect in lockstep after a coordinator restart.
        let ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(max);
    }
}

/// One session. Ok(true) when it was welcomed and later ended cleanly.
async fn session(
    agent: &Arc<Agent>,
    endpoint: &str,
    mut client: pb::agent_link_client::AgentLinkClient<Channel>,
    shutdown: &CancellationToken,
) -> Result<bool, AgentError> {
    let endpoint = endpoint.to_owned();
    let err = |op: &str, reason: String| AgentError::Coordinator {
        endpoint: endpoint.clone(),
        operation: op.to_string(),
        reason,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AgentMessage>(4096);
    let mut known = 0;
    let queued = agent.sink.connect_with(tx.clone(), || {
        let hello = hello(agent);
        known = hello.known_jobs.len();
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Hello(hello)),
        }
    });
    if !queued {
        return Err(err("hello", "cannot queue the hello".into()));
    }
    let mut inbound = tokio::select! {
        () = shutdown.cancelled() => return Ok(false),
        r = client.session(ReceiverStream::new(rx)) => r.map_err(|s| err("open session", format!("{}: {}", s.code(), s.message())))?.into_inner(),
    };
    let first = tokio::select! {
        () = shutdown.cancelled() => return Ok(false),
        m = inbound.message() => m.map_err(|s| err("hello", format!("refused: {}: {}", s.code(), s.message())))?,
    };
    let welcome = match first.and_then(|m| m.msg) {
        Some(pb::coordinator_message::Msg::Welcome(w)) => w,
        Some(_) => return Err(err("hello", "first message was not welcome".into())),
        None => return Err(err("hello", "stream closed before welcome".into())),
    };
    let interval = if welcome.heartbeat_interval_ms == 0 {
        agent.cfg.heartbeat_interval
    } else {
        Duration::from_millis(u64::from(welcome.heartbeat_interval_ms))
    }
    .max(Duration::from_millis(50));
    tracing::info!(coordinator = %endpoint, coordinator_id = %welcome.coordinator_id,
        heartbeat = ?interval, known_jobs = known, "connected to the coordinator");

    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            _ = ticker.tick() => {
                let hb = pb::AgentMessage { msg: Some(pb::agent_message::Msg::Heartbeat(agent.heartbeat())) };
                if tx.send(hb).await.is_err() {
                    return Ok(true);
                }
            }
            m = inbound.message() => match m {
                Ok(Some(msg)) => match msg.msg {
                    Some(pb::coordinator_message::Msg::Job(job)) => jobs::submit(agent, job),
                    Some(pb::coordinator_message::Msg::Cancel(c)) => jobs::cancel(agent, &c.job_id).await,
                    Some(pb::coordinator_message::Msg::PowerQuery(q)) => jobs::power_query(agent, q),
                    Some(pb::coordinator_message::Msg::Welcome(_)) | None => {}
                },
                Ok(None) => return Ok(true),
                Err(s) => return Err(err("session", format!("{}: {}", s.code(), s.message()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_redirects_and_rotates_past_dead_replicas() {
        let tls = CoordinatorTls::default();
        let c = Coordinators::new(
            "http://127.0.0.1:1, http://127.0.0.1:2,http://127.0.0.1:3",
            &tls,
        )
        .unwrap();
        assert_eq!(c.current(), "http://127.0.0.1:1");
        // A follower names the leader.
        c.follow("open session: Unavailable: /vmedia.v1.AgentLink/Session: not the leader; leader is http://127.0.0.1:3");
        assert_eq!(c.current(), "http://127.0.0.1:3");
        // Unreachable (or a stale hint naming the replica that just failed): next in the list.
        c.follow("open session: transport error");
        assert_eq!(c.current(), "http://127.0.0.1:1");
        c.follow("not the leader; leader is http://127.0.0.1:1");
        assert_eq!(c.current(), "http://127.0.0.1:2");
        // No leader yet: rotate.
        c.follow("not the leader; no leader is elected yet, retry shortly");
        assert_eq!(c.current(), "http://127.0.0.1:3");
        // A hint naming an address outside the configured list is not followed: rotate.
        c.follow("not the leader; leader is http://127.0.0.1:9");
        assert_eq!(c.current(), "http://127.0.0.1:1");
        assert!(Coordinators::new(" , ", &tls).is_err());
        assert!(Coordinators::new("http://ok:1,not a url", &tls).is_err());
    }
}
