//! Prometheus metrics of the share agent, served on their own listener
//! (`[agent] metrics_listen`, off unless set) by `metrics-endpoint`.
//!
//! - BMC operations by operation and outcome, their latency, and the HTTP requests they
//!   sent: counted in [`crate::jobs::JobCtx::bmc`], where every BMC call goes through.
//! - Image cache hits and misses: counted by `boot-media`'s cache, read per scrape.
//! - Levels per scrape: capacity, boots in flight (nodes with media attached), running
//!   jobs, free bytes on the share (one `statvfs`).
//!
//! Labels are fixed sets: the operation is one of [`OPERATIONS`], never a node or BMC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::AgentError;
use crate::state::Agent;

/// The operation label values.
pub const OPERATIONS: [&str; 7] = [
    "read_report",
    "eject_media",
    "insert_media",
    "set_boot_device",
    "get_power_state",
    "set_power_state",
    "other",
];

/// The label of a BMC operation named `op` at its call site (Ironic's operation names).
pub fn operation_label(op: &str) -> &'static str {
    match op {
        // Validation reads report.xml (and the licence item) before anything else.
        "reading report.xml" | "validating the iRMC" => "read_report",
        "set_boot_device" => "set_boot_device",
        "get_power_state" => "get_power_state",
        "set_power_state" => "set_power_state",
        o if o.starts_with("Ejecting ") => "eject_media",
        o if o.starts_with("Inserting ") => "insert_media",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpOutcome {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    operation: &'static str,
}

/// Every metric of one agent process.
pub struct AgentMetrics {
    registry: Registry,
    bmc_operations: Family<OpOutcome, Counter>,
    bmc_duration: Family<Op, Histogram>,
    bmc_http_requests: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    capacity: Gauge,
    boots_in_flight: Gauge,
    jobs_running: Gauge,
    free_bytes: Gauge,
    scrape: tokio::sync::Mutex<()>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            registry: Registry::default(),
            bmc_operations: Family::default(),
            bmc_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            bmc_http_requests: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            capacity: Gauge::default(),
            boots_in_flight: Gauge::default(),
            jobs_running: Gauge::default(),
            free_bytes: Gauge::default(),
            scrape: tokio::sync::Mutex::new(()),
        };
        for operation in OPERATIONS {
            for outcome in ["ok", "error"] {
                let _ = m
                    .bmc_operations
                    .get_or_create_owned(&OpOutcome { operation, outcome });
            }
        }
        r.register(
            "vmedia_agent_bmc_operations",
            "BMC operations by operation and outcome (one operation may send several requests)",
            m.bmc_operations.clone(),
        );
        r.register(
            "vmedia_agent_bmc_operation_duration_seconds",
            "Latency of one BMC operation, retries and waiting for a BMC slot included",
            m.bmc_duration.clone(),
        );
        r.register(
            "vmedia_agent_bmc_http_requests",
            "HTTP requests sent to BMCs (SCCI, report.xml, settings dump, Redfish; digest challenges included)",
            m.bmc_http_requests.clone(),
        );
        r.register(
            "vmedia_agent_image_cache_hits",
            "Fetches of a URL or Glance image served from the share's cache",
            m.cache_hits.clone(),
        );
        r.register(
            "vmedia_agent_image_cache_misses",
            "Fetches of a URL or Glance image that downloaded it",
            m.cache_misses.clone(),
        );
        r.register(
            "vmedia_agent_capacity_boots",
            "Concurrent virtual-media boots this share can feed (configured)",
            m.capacity.clone(),
        );
        r.register(
            "vmedia_agent_boots_in_flight",
            "Nodes with virtual media attached by this agent now",
            m.boots_in_flight.clone(),
        );
        r.register(
            "vmedia_agent_jobs_running",
            "Jobs running on this agent now",
            m.jobs_running.clone(),
        );
        r.register(
            "vmedia_agent_share_free_bytes",
            "Free bytes on the share",
            m.free_bytes.clone(),
        );
        Self { registry: r, ..m }
    }

    /// One BMC operation ended.
    pub fn bmc_operation(&self, op: &str, ok: bool, took: Duration, http_requests: u64) {
        let operation = operation_label(op);
        let outcome = if ok { "ok" } else { "error" };
        self.bmc_operations
            .get_or_create(&OpOutcome { operation, outcome })
            .inc();
        self.bmc_duration
            .get_or_create(&Op { operation })
            .observe(took.as_secs_f64());
        self.bmc_http_requests.inc_by(http_requests);
    }

    /// Reads the levels of `agent` and encodes every metric.
    pub async fn render(&self, agent: &Agent) -> String {
        let _one = self.scrape.lock().await;
        let stats = agent.cache.stats();
        // The cache counts; bring the counters up to its figures (both only grow).
        self.cache_hits
            .inc_by(stats.hits.saturating_sub(self.cache_hits.get()));
        self.cache_misses
            .inc_by(stats.misses.saturating_sub(self.cache_misses.get()));
        self.capacity.set(i64::from(agent.cfg.capacity));
        self.boots_in_flight.set(i64::from(agent.active_boots()));
        self.jobs_running.set(i64::from(agent.jobs.running()));
        let root = agent.share_root.clone();
        let free = tokio::task::spawn_blocking(move || boot_media::free_bytes(&root).unwrap_or(0))
            .await
            .unwrap_or(0);
        self.free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
        metrics_endpoint::encode(&self.registry)
    }
}

/// Binds the metrics listener and serves it until `shutdown`; returns the bound address.
pub async fn start(
    listen: SocketAddr,
    token_file: Option<&std::path::Path>,
    agent: Arc<Agent>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr, AgentError> {
    let authorize = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                AgentError::config(
                    "metrics_token_file",
                    format!("cannot read '{}': {e}", path.display()),
                )
            })?;
            let tokens = metrics_endpoint::parse_token_file(&text, &path.display().to_string())
                .map_err(|e| AgentError::config("metrics_token_file", e))?;
            Some(metrics_endpoint::any_of(tokens))
        }
        None => None,
    };
    let refused = |e: String| {
        AgentError::config(
            "metrics_listen",
            e.trim_start_matches("metrics_listen: ").to_string(),
        )
    };
    let gate =
        metrics_endpoint::gate_for(listen, authorize, "metrics_token_file").map_err(refused)?;
    let ep = metrics_endpoint::Endpoint::bind(listen, gate)
        .await
        .map_err(refused)?;
    let addr = ep.local_addr();
    let render: metrics_endpoint::Render = Arc::new(move || {
        let agent = agent.clone();
        Box::pin(async move { agent.metrics.render(&agent).await })
    });
    tokio::spawn(async move {
        if let Err(e) = ep.serve(render, shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_site_names_map_to_a_fixed_set() {
        for (op, want) in [
            ("reading report.xml", "read_report"),
            ("Ejecting virtual cdrom", "eject_media"),
            ("Inserting virtual floppy", "insert_media"),
            ("set_power_state", "set_power_state"),
            ("anything new", "other"),
        ] {
            assert_eq!(operation_label(op), want);
            assert!(OPERATIONS.contains(&want));
        }
    }

    #[test]
    fn operations_are_counted_with_their_requests() {
        let m = AgentMetrics::new();
        m.bmc_operation("get_power_state", true, Duration::from_millis(3), 2);
        m.bmc_operation(
            "Ejecting virtual cdrom",
            false,
            Duration::from_millis(30),
            1,
        );
        let text = metrics_endpoint::encode(&m.registry);
        for line in [
            "vmedia_agent_bmc_operations_total{operation=\"get_power_state\",outcome=\"ok\"} 1\n",
            "vmedia_agent_bmc_operations_total{operation=\"eject_media\",outcome=\"error\"} 1\n",
            "vmedia_agent_bmc_operations_total{operation=\"read_report\",outcome=\"ok\"} 0\n",
            "vmedia_agent_bmc_http_requests_total 3\n",
            "vmedia_agent_bmc_operation_duration_seconds_count{operation=\"eject_media\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
