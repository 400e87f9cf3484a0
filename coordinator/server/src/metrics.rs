//! Prometheus metrics of the coordinator, served on their own listener (`metrics_listen`,
//! off unless set) by `metrics-endpoint`.
//!
//! # Two kinds of figures
//! - Events, counted where they happen by the engine ([`EngineMetrics`], owned by its one
//!   task): deploys started / succeeded / failed by reason class, deploy duration, time in
//!   each provision state, admission waits, group-commit batch sizes and latency. Each is
//!   an atomic add; the engine keeps two small maps (deploy start and queue entry time per
//!   node with work under way) and no lock.
//! - Levels, read at scrape time ([`Metrics::render`]): nodes per provision state and per
//!   power state (two indexed `COUNT ... GROUP BY` in the store, a few ms at 100,000
//!   nodes), the admission queue length, and per share agent its capacity, boots in
//!   flight, free share bytes and health (one `ListShares` round trip to the engine; one
//!   series per agent: cardinality grows with agents, never with nodes).
//!
//! No label carries a node name, uuid, BMC or error text: failure reasons are a fixed set
//! of classes ([`FailReason`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use coordinator_core::{DeployStep, Event, JobKind, NodeStatus, PowerState, ProvisionState, Verb};
use coordinator_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use uuid::Uuid;

use crate::domain::ShareHealth;
use crate::engine::{Cmd, EngineHandle};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    provision_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PowerLabel {
    power_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

/// Why a deploy failed, as a small fixed set of classes (never the error text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The operator aborted it.
    Aborted,
    /// No ramdisk call-back within `callback_timeout`.
    CallbackTimeout,
    /// A job ran longer than `job_timeout`.
    JobTimeout,
    /// The share agent was lost or drained and the deploy could not go on.
    AgentLost,
    /// The agent reported a failed prepare-ramdisk job (media, BMC, share).
    PrepareRamdisk,
    /// The ramdisk could not write the image.
    WriteImage,
    /// Power-off, eject or boot-from-disk failed.
    PrepareInstance,
    /// Anything else.
    Other,
}

impl FailReason {
    pub const ALL: [FailReason; 8] = [
        Self::Aborted,
        Self::CallbackTimeout,
        Self::JobTimeout,
        Self::AgentLost,
        Self::PrepareRamdisk,
        Self::WriteImage,
        Self::PrepareInstance,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::CallbackTimeout => "callback_timeout",
            Self::JobTimeout => "job_timeout",
            Self::AgentLost => "agent_lost",
            Self::PrepareRamdisk => "prepare_ramdisk",
            Self::WriteImage => "write_image",
            Self::PrepareInstance => "prepare_instance",
            Self::Other => "other",
        }
    }

    /// The class of a failure `event` would cause to a node in `before`.
    pub fn of(event: &Event, before: &NodeStatus) -> Self {
        match event {
            Event::Verb(Verb::Abort) => Self::Aborted,
            Event::Timeout { .. } if before.step == DeployStep::WaitCallback => {
                Self::CallbackTimeout
            }
            Event::Timeout { .. } => Self::JobTimeout,
            Event::AgentLost { .. } | Event::AgentDrained => Self::AgentLost,
            Event::JobFinished { .. } => match before.job.map(|j| j.kind) {
                Some(JobKind::PrepareRamdisk) => Self::PrepareRamdisk,
                Some(JobKind::WriteImage) => Self::WriteImage,
                Some(JobKind::PrepareInstance) => Self::PrepareInstance,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

/// Seconds from 0.1 s to a day (state durations, deploys, admission waits).
fn long_buckets() -> impl Iterator<Item = f64> {
    [
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
        3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
    ]
    .into_iter()
}

/// The counters and histograms the engine feeds (cheap to clone: every handle is an Arc).
#[derive(Clone)]
struct EventMetrics {
    deploys_started: Counter,
    deploys_succeeded: Counter,
    deploys_failed: Family<ReasonLabel, Counter>,
    deploy_duration: Histogram,
    state_duration: Family<StateLabel, Histogram>,
    admission_wait: Histogram,
    commit_batch: Histogram,
    commit_duration: Histogram,
}

/// What the engine task owns: the handles plus the start times of work under way.
/// Only the engine task touches it, so it needs no lock.
pub struct EngineMetrics {
    m: EventMetrics,
    deploy_started: HashMap<Uuid, Instant>,
    enqueued: HashMap<Uuid, Instant>,
}

/// A node's provision state before an event, kept to compare with the one after.
#[derive(Clone, Copy)]
pub struct Before {
    state: ProvisionState,
    since_ms: i64,
    reason: FailReason,
}

impl EngineMetrics {
    /// A set not registered anywhere (tests of the engine alone).
    pub fn unregistered() -> Self {
        Metrics::new().engine_metrics()
    }

    /// Taken before an event is applied to a node.
    pub fn before(event: &Event, status: &NodeStatus) -> Before {
        Before {
            state: status.provision_state,
            since_ms: status.provision_updated_at_ms,
            reason: FailReason::of(event, status),
        }
    }

    /// A node moved from `before` to `after` (a committed-to-be status change).
    pub fn transition(&mut self, uuid: Uuid, before: Before, after: &NodeStatus, now_ms: i64) {
        use ProvisionState as P;
        let (from, to) = (before.state, after.provision_state);
        if from == to {
            return;
        }
        let spent = (now_ms - before.since_ms).max(0) as f64 / 1000.0;
        self.m
            .state_duration
            .get_or_create(&StateLabel {
                provision_state: from.as_str(),
            })
            .observe(spent);
        let deploying = |s: ProvisionState| matches!(s, P::Deploying | P::WaitCallback);
        if to == P::Deploying && !deploying(from) {
            self.m.deploys_started.inc();
            self.deploy_started.insert(uuid, Instant::now());
        } else if to == P::Active && deploying(from) {
            self.m.deploys_succeeded.inc();
            self.finish_deploy(uuid);
        } else if to == P::DeployFailed {
            self.m
                .deploys_failed
                .get_or_create(&ReasonLabel {
                    reason: before.reason.as_str(),
                })
                .inc();
            self.finish_deploy(uuid);
        } else if !deploying(to) {
            // Left the deploy some other way (undeploy of a queued node, ...).
            self.deploy_started.remove(&uuid);
        }
    }

    fn finish_deploy(&mut self, uuid: Uuid) {
        // Unknown after a restart of the coordinator: such a deploy is counted, not timed.
        if let Some(t) = self.deploy_started.remove(&uuid) {
            self.m.deploy_duration.observe(t.elapsed().as_secs_f64());
        }
    }

    /// The node entered the admission queue.
    pub fn enqueued(&mut self, uuid: Uuid) {
        self.enqueued.entry(uuid).or_insert_with(Instant::now);
    }

    /// The node was admitted.
    pub fn admitted(&mut self, uuid: Uuid) {
        if let Some(t) = self.enqueued.remove(&uuid) {
            self.m.admission_wait.observe(t.elapsed().as_secs_f64());
        }
    }

    /// The node left the queue without admission (aborted).
    pub fn dequeued(&mut self, uuid: &Uuid) {
        self.enqueued.remove(uuid);
    }

    /// The node is gone (deleted).
    pub fn forget(&mut self, uuid: &Uuid) {
        self.enqueued.remove(uuid);
        self.deploy_started.remove(uuid);
    }

    /// One group commit of `rows` statuses took `seconds`.
    pub fn committed(&self, rows: usize, seconds: f64) {
        self.m.commit_batch.observe(rows as f64);
        self.m.commit_duration.observe(seconds);
    }
}

/// Scrape-time levels.
struct Levels {
    nodes_by_state: Family<StateLabel, Gauge>,
    nodes_by_power: Family<PowerLabel, Gauge>,
    queue_length: Gauge,
    agent_capacity: Family<AgentLabel, Gauge>,
    agent_boots: Family<AgentLabel, Gauge>,
    agent_queued: Family<AgentLabel, Gauge>,
    agent_free_bytes: Family<AgentLabel, Gauge>,
    agent_healthy: Family<AgentLabel, Gauge>,
    scrape_errors: Counter,
}

/// Every metric of the coordinator and what a scrape reads.
pub struct Metrics {
    registry: Registry,
    events: EventMetrics,
    levels: Levels,
    /// The engine of this replica once it leads (followers have none).
    engine: Mutex<Option<EngineHandle>>,
    /// One scrape at a time: levels are set, then encoded.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let events = EventMetrics {
            deploys_started: Counter::default(),
            deploys_succeeded: Counter::default(),
            deploys_failed: Family::default(),
            deploy_duration: Histogram::new(long_buckets()),
            state_duration: Family::new_with_constructor(|| Histogram::new(long_buckets())),
            admission_wait: Histogram::new(long_buckets()),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        };
        r.register(
            "vmedia_deploys_started",
            "Deploys started (deploy or rebuild accepted)",
            events.deploys_started.clone(),
        );
        r.register(
            "vmedia_deploys_succeeded",
            "Deploys that reached active",
            events.deploys_succeeded.clone(),
        );
        for reason in FailReason::ALL {
            // Every class shows from the start (0), so rates need no special case.
            let _ = events.deploys_failed.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        r.register(
            "vmedia_deploys_failed",
            "Deploys that ended in deploy failed, by reason class",
            events.deploys_failed.clone(),
        );
        r.register(
            "vmedia_deploy_duration_seconds",
            "Time from deploy start to active or deploy failed",
            events.deploy_duration.clone(),
        );
        r.register(
            "vmedia_node_state_duration_seconds",
            "Time a node spent in a provision state, observed when it leaves the state",
            events.state_duration.clone(),
        );
        r.register(
            "vmedia_admission_wait_seconds",
            "Time from entering the admission queue to admission",
            events.admission_wait.clone(),
        );
        r.register(
            "vmedia_engine_commit_batch_nodes",
            "Node statuses written per group commit of the engine",
            events.commit_batch.clone(),
        );
        r.register(
            "vmedia_engine_commit_duration_seconds",
            "Latency of one group commit of the engine (one store transaction)",
            events.commit_duration.clone(),
        );
        let levels = Levels {
            nodes_by_state: Family::default(),
            nodes_by_power: Family::default(),
            queue_length: Gauge::default(),
            agent_capacity: Family::default(),
            agent_boots: Family::default(),
            agent_queued: Family::default(),
            agent_free_bytes: Family::default(),
            agent_healthy: Family::default(),
            scrape_errors: Counter::default(),
        };
        r.register(
            "vmedia_nodes_by_provision_state",
            "Nodes per provision state",
            levels.nodes_by_state.clone(),
        );
        r.register(
            "vmedia_nodes_by_power_state",
            "Nodes per last known power state (unknown: never reported)",
            levels.nodes_by_power.clone(),
        );
        r.register(
            "vmedia_admission_queue_length",
            "Nodes waiting for placement or admission",
            levels.queue_length.clone(),
        );
        r.register(
            "vmedia_share_capacity_boots",
            "Concurrent virtual-media boots a share agent can feed (from its hello)",
            levels.agent_capacity.clone(),
        );
        r.register(
            "vmedia_share_boots_in_flight",
            "Boot slots of a share agent held by deploys now",
            levels.agent_boots.clone(),
        );
        r.register(
            "vmedia_share_queued_nodes",
            "Nodes placed on a share agent and waiting for a boot slot",
            levels.agent_queued.clone(),
        );
        r.register(
            "vmedia_share_free_bytes",
            "Free bytes on a share, from its agent's last heartbeat",
            levels.agent_free_bytes.clone(),
        );
        r.register(
            "vmedia_share_healthy",
            "1 when a share agent is connected and takes work, else 0",
            levels.agent_healthy.clone(),
        );
        r.register(
            "vmedia_metrics_scrape_errors",
            "Scrapes that could not read a level (store or engine unavailable)",
            levels.scrape_errors.clone(),
        );
        Self {
            registry: r,
            events,
            levels,
            engine: Mutex::new(None),
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// The engine's own set (handles shared with this registry).
    pub fn engine_metrics(&self) -> EngineMetrics {
        EngineMetrics {
            m: self.events.clone(),
            deploy_started: HashMap::new(),
            enqueued: HashMap::new(),
        }
    }

    /// This replica's engine (it now leads).
    pub fn set_engine(&self, handle: EngineHandle) {
        *self.engine.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// Reads the levels and encodes every metric.
    pub async fn render(&self, store: &dyn Store) -> String {
        let _one = self.scrape.lock().await;
        let l = &self.levels;
        match store.count_by_state().await {
            Ok(counts) => {
                for s in ProvisionState::ALL {
                    let n = counts.get(s.as_str()).copied().unwrap_or(0);
                    l.nodes_by_state
                        .get_or_create(&StateLabel {
                            provision_state: s.as_str(),
                        })
                        .set(gauge(n));
                }
            }
            Err(e) => {
                l.scrape_errors.inc();
                tracing::warn!(error = %e, "metrics: cannot count nodes by state");
            }
        }
        match store.count_by_power_state().await {
            Ok(counts) => {
                for (name, p) in [
                    ("power on", Some(PowerState::On)),
                    ("power off", Some(PowerState::Off)),
                    ("unknown", None),
                ] {
                    let key = p.map_or("", PowerState::as_str);
                    let mut n = counts.get(key).copied().unwrap_or(0);
                    if p.is_none() {
                        // Anything not on or off (transitional values) counts as unknown.
                        n += counts
                            .iter()
                            .filter(|(k, _)| !matches!(k.as_str(), "" | "power on" | "power off"))
                            .map(|(_, v)| *v)
                            .sum::<u64>();
                    }
                    l.nodes_by_power
                        .get_or_create(&PowerLabel { power_state: name })
                        .set(gauge(n));
                }
            }
            Err(e) => {
                l.scrape_errors.inc();
                tracing::warn!(error = %e, "metrics: cannot count nodes by power state");
            }
        }
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(engine) = engine {
            let queued = engine
                .queue
                .lock()
                .map_or_else(|p| p.into_inner().len(), |q| q.len());
            l.queue_length.set(gauge(queued as u64));
            match engine
                .call("metrics", |reply| Cmd::ListShares { reply })
                .await
            {
                Ok(shares) => {
                    for s in shares {
                        let a = AgentLabel {
                            agent: s.agent.as_str().to_owned(),
                        };
                        l.agent_capacity.get_or_create(&a).set(gauge(s.capacity));
                        l.agent_boots.get_or_create(&a).set(gauge(s.active));
                        l.agent_queued.get_or_create(&a).set(gauge(s.queued));
                        l.agent_free_bytes
                            .get_or_create(&a)
                            .set(gauge(s.free_bytes));
                        l.agent_healthy
                            .get_or_create(&a)
                            .set(i64::from(s.health == ShareHealth::Healthy));
                    }
                }
                Err(e) => {
                    l.scrape_errors.inc();
                    tracing::warn!(error = %e, "metrics: cannot list shares");
                }
            }
        }
        metrics_endpoint::encode(&self.registry)
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Binds the metrics listener of `cfg` (if any) and serves it until `shutdown`. Returns
/// the bound address. Refuses a non-loopback listener without API tokens.
pub async fn start(
    listen: std::net::SocketAddr,
    tokens: Option<Arc<crate::security::Tokens>>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<std::net::SocketAddr, String> {
    let authorize = tokens.map(|t| -> metrics_endpoint::Authorize {
        // Reader and admin tokens alike may scrape.
        Arc::new(move |presented: &str| t.role_of(presented).is_some())
    });
    let gate = metrics_endpoint::gate_for(listen, authorize, "tokens_file")?;
    let ep = metrics_endpoint::Endpoint::bind(listen, gate).await?;
    let addr = ep.local_addr();
    let render: metrics_endpoint::Render = Arc::new(move || {
        let metrics = metrics.clone();
        let store = store.clone();
        Box::pin(async move { metrics.render(store.as_ref()).await })
    });
    tokio::spawn(async move {
        if let Err(e) = ep.serve(render, shutdown).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinator_core::{JobIntent, NodeStatus};

    fn status(state: ProvisionState, since_ms: i64) -> NodeStatus {
        let mut s = NodeStatus::new(0);
        s.provision_state = state;
        s.provision_updated_at_ms = since_ms;
        s
    }

    #[test]
    fn failure_classes_come_from_the_event_and_the_step() {
        let mut s = status(ProvisionState::WaitCallback, 0);
        s.step = DeployStep::WaitCallback;
        assert_eq!(
            FailReason::of(&Event::Timeout { now_ms: 1 }, &s),
            FailReason::CallbackTimeout
        );
        s.step = DeployStep::WriteImage;
        assert_eq!(
            FailReason::of(&Event::Timeout { now_ms: 1 }, &s),
            FailReason::JobTimeout
        );
        s.job = Some(JobIntent {
            job_id: Uuid::nil(),
            kind: JobKind::WriteImage,
            attempt: 1,
        });
        let failed = Event::JobFinished {
            job_id: Uuid::nil(),
            result: coordinator_core::JobResult {
                ok: false,
                error: Some("node x bmc y: anything at all".into()),
                retryable: false,
                output: Default::default(),
            },
        };
        assert_eq!(FailReason::of(&failed, &s), FailReason::WriteImage);
        assert_eq!(
            FailReason::of(&Event::Verb(Verb::Abort), &s),
            FailReason::Aborted
        );
    }

    #[test]
    fn transitions_count_deploys_and_time_states() {
        let m = Metrics::new();
        let mut e = m.engine_metrics();
        let u = Uuid::new_v4();
        let deploy = Event::Verb(Verb::Deploy);
        let avail = status(ProvisionState::Available, 1_000);
        let b = EngineMetrics::before(&deploy, &avail);
        e.transition(u, b, &status(ProvisionState::Deploying, 3_000), 3_000);
        let deploying = status(ProvisionState::Deploying, 3_000);
        let b = EngineMetrics::before(&Event::Timeout { now_ms: 0 }, &deploying);
        let mut wait = status(ProvisionState::WaitCallback, 4_000);
        wait.step = DeployStep::WaitCallback;
        e.transition(u, b, &wait, 4_000);
        let b = EngineMetrics::before(&Event::Timeout { now_ms: 0 }, &wait);
        e.transition(u, b, &status(ProvisionState::DeployFailed, 9_000), 9_000);
        let text = metrics_endpoint::encode(&m.registry);
        assert!(text.contains("vmedia_deploys_started_total 1\n"), "{text}");
        assert!(
            text.contains("vmedia_deploys_succeeded_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("vmedia_deploys_failed_total{reason=\"callback_timeout\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("vmedia_deploy_duration_seconds_count 1\n"),
            "{text}"
        );
        // 2 s in available, 1 s deploying, 5 s waiting, each observed once.
        for (state, secs) in [
            ("available", "2.0"),
            ("deploying", "1.0"),
            ("wait call-back", "5.0"),
        ] {
            let line = format!(
                "vmedia_node_state_duration_seconds_sum{{provision_state=\"{state}\"}} {secs}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains(
                "vmedia_node_state_duration_seconds_sum{provision_state=\"available\"} 2.0\n"
            ),
            "{text}"
        );
        assert!(e.deploy_started.is_empty());
    }
}
