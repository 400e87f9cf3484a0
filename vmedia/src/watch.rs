//! `vmedia watch [NODE]`: streams node events until interrupted, across lost connections
//! and leader changes.
//!
//! Only the leader serves Watch (followers answer "not the leader; leader is URL"), so the
//! stream ends when the leader dies or steps down. The watch then reconnects with backoff
//! through the replica list (`coordinator_client::conn::connect` follows the redirects)
//! and resumes with `since_ms`: the coordinator first re-sends the latest state of every
//! node whose status changed since then, then live events. `since_ms` is the `at_ms` of
//! the last event printed minus [`OVERLAP_MS`] (clock skew between replicas, events
//! stamped out of order within a commit); what the overlap re-sends is dropped here by
//! (node, `at_ms`, state). So no node's latest state is lost across a gap, although
//! intermediate states a node went through during the gap are coalesced into its latest.
//! A lag notice from the coordinator (this watcher fell behind) resumes the same way.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{Target, connect, status_err};
use crate::output::{OutputArgs, print_item};
use vmedia_proto::v1::{NodeEvent, WatchRequest};

/// How far before the last event printed a resume starts.
pub const OVERLAP_MS: i64 = 5_000;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Node uuid or name; all nodes when omitted
    pub node: Option<String>,
    /// Start with the current state of the selected nodes
    #[arg(long)]
    pub initial: bool,
    /// table: one line per event; json: one JSON object per line; yaml: one document each
    #[command(flatten)]
    pub out: OutputArgs,
    /// Stop after this many events (0 = never)
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

pub async fn run(target: &Target, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let format = args.out.format();
    let node = args.node.clone().unwrap_or_default();
    let mut resume = Resume::new(now_ms());
    let mut printed = 0u64;
    let mut opened = false;
    let mut delay = Backoff::default();
    loop {
        let mut c = match connect(target).await {
            Ok(c) => c,
            // A wrong address or credentials at start is an error, not a retry loop.
            Err(e) if !opened => return Err(e),
            Err(e) => {
                reconnecting(&format!("{e:#}"), &mut delay).await;
                continue;
            }
        };
        let req = WatchRequest {
            node: node.clone(),
            initial: args.initial && !opened,
            since_ms: if opened { resume.since_ms() } else { 0 },
        };
        let mut stream = match c.nodes.watch(req).await {
            Ok(s) => s.into_inner(),
            Err(s) if permanent(&s) => return Err(status_err("watch", s)),
            Err(s) => {
                reconnecting(&format!("{}: {}", c.url, s.message()), &mut delay).await;
                continue;
            }
        };
        if !opened {
            opened = true;
            resume.started(now_ms());
        }
        delay = Backoff::default();
        let why = loop {
            match stream.message().await {
                Ok(Some(ev)) if ev.node_uuid.is_empty() => {
                    // A notice (this watcher lagged and the coordinator dropped events):
                    // show it, then resume to fill the gap.
                    print_item(format, &event_json(&ev), || event_line(&ev))?;
                    break format!("{}: {}", c.url, ev.last_error);
                }
                Ok(Some(ev)) => {
                    if !resume.fresh(&ev) {
                        continue;
                    }
                    print_item(format, &event_json(&ev), || event_line(&ev))?;
                    printed += 1;
                    if args.count != 0 && printed >= args.count {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Ok(None) => break format!("{}: the coordinator ended the stream", c.url),
                Err(s) if permanent(&s) => return Err(status_err("watch", s)),
                Err(s) => break format!("{}: {}", c.url, s.message()),
            }
        };
        reconnecting(&why, &mut delay).await;
    }
}

/// Errors a retry cannot fix: bad credentials, a node that does not exist, bad input.
fn permanent(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::NotFound
            | Code::InvalidArgument
            | Code::Unimplemented
    )
}

async fn reconnecting(why: &str, delay: &mut Backoff) {
    let d = delay.next_delay();
    eprintln!(
        "vmedia: watch: {}; resuming in {} ms",
        why.lines().next().unwrap_or(why),
        d.as_millis()
    );
    tokio::time::sleep(d).await;
}

/// 200 ms, doubling, capped at 5 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ms = (200u64 << self.0.min(5)).min(5_000);
        self.0 = self.0.saturating_add(1);
        Duration::from_millis(ms)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where a resumed stream starts, and what was already printed.
pub struct Resume {
    /// The newest `at_ms` printed, or when the first stream opened.
    last_ms: i64,
    /// (node, at_ms, state) of events printed since `last_ms - 2 * OVERLAP_MS`.
    seen: HashSet<(String, i64, String)>,
}

impl Resume {
    pub fn new(now_ms: i64) -> Self {
        Self {
            last_ms: now_ms,
            seen: HashSet::new(),
        }
    }

    /// The first stream is open: a gap before any event resumes from here.
    pub fn started(&mut self, now_ms: i64) {
        if self.seen.is_empty() {
            self.last_ms = now_ms;
        }
    }

    /// `since_ms` for the next stream.
    pub fn since_ms(&self) -> i64 {
        (self.last_ms - OVERLAP_MS).max(1)
    }

    /// True the first time an event is seen; remembers it.
    pub fn fresh(&mut self, ev: &NodeEvent) -> bool {
        let key = (ev.node_uuid.clone(), ev.at_ms, ev.provision_state.clone());
        if !self.seen.insert(key) {
            return false;
        }
        self.last_ms = self.last_ms.max(ev.at_ms);
        if self.seen.len() > 4096 {
            // A resume replays from `last_ms - OVERLAP_MS`: older keys can never repeat.
            let floor = self.last_ms - 2 * OVERLAP_MS;
            self.seen.retain(|(_, at, _)| *at >= floor);
        }
        true
    }
}

pub fn event_line(ev: &NodeEvent) -> String {
    if ev.node_uuid.is_empty() {
        // Server notice (e.g. this watcher lagged and lost events).
        return format!("-- {}", ev.last_error);
    }
    let name = if ev.node_name.is_empty() {
        &ev.node_uuid
    } else {
        &ev.node_name
    };
    let mut s = format!("{name}: {}", ev.provision_state);
    if !ev.target_provision_state.is_empty() {
        s.push_str(&format!(" -> {}", ev.target_provision_state));
    }
    if !ev.progress.is_empty() {
        s.push_str(&format!(" [{}]", ev.progress));
    }
    if ev.queue_position > 0 {
        s.push_str(&format!(" (queue #{})", ev.queue_position));
    }
    if !ev.power_state.is_empty() || !ev.target_power_state.is_empty() {
        let now = if ev.power_state.is_empty() {
            "power unknown"
        } else {
            &ev.power_state
        };
        s.push_str(&format!(", {now}"));
        if !ev.target_power_state.is_empty() {
            s.push_str(&format!(" -> {}", ev.target_power_state));
        }
    }
    if !ev.share.is_empty() {
        s.push_str(&format!(" on {}", ev.share));
    }
    if !ev.last_error.is_empty() {
        s.push_str(&format!(" error: {}", ev.last_error));
    }
    s
}

pub fn event_json(ev: &NodeEvent) -> serde_json::Value {
    serde_json::json!({
        "node_uuid": ev.node_uuid, "node_name": ev.node_name,
        "provision_state": ev.provision_state, "target_provision_state": ev.target_provision_state,
        "last_error": ev.last_error, "progress": ev.progress, "share": ev.share,
        "at_ms": ev.at_ms, "queue_position": ev.queue_position,
        "power_state": ev.power_state, "target_power_state": ev.target_power_state,
        "power_updated_at_ms": ev.power_updated_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: &str, at_ms: i64, state: &str) -> NodeEvent {
        NodeEvent {
            node_uuid: node.into(),
            at_ms,
            provision_state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn resume_starts_before_the_last_event_and_drops_repeats() {
        let mut r = Resume::new(1_000_000);
        r.started(1_000_100);
        assert_eq!(r.since_ms(), 1_000_100 - OVERLAP_MS);
        assert!(r.fresh(&ev("a", 1_000_200, "deploying")));
        assert!(r.fresh(&ev("a", 1_000_900, "active")));
        assert!(r.fresh(&ev("b", 1_000_300, "deploying")));
        assert_eq!(r.since_ms(), 1_000_900 - OVERLAP_MS);
        // The resumed snapshot repeats what was printed, and brings what was missed.
        assert!(!r.fresh(&ev("a", 1_000_900, "active")));
        assert!(r.fresh(&ev("b", 1_000_950, "active")));
        // The same state at another time is a new event (the node went away and back).
        assert!(r.fresh(&ev("a", 1_002_000, "active")));
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Resume::new(0);
        for i in 0..20_000 {
            assert!(r.fresh(&ev("n", i * 10, "deploying")));
        }
        assert!(r.seen.len() <= 4096 + 1, "{}", r.seen.len());
        // Everything a resume can replay is still remembered.
        assert!(!r.fresh(&ev("n", 199_990 - OVERLAP_MS, "deploying")));
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::default();
        let d: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
