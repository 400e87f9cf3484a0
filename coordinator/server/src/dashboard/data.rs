//! What the dashboard shows, read from the store and the engine. Nodes leave here only as
//! the API's masked view ([`convert::node_into_proto`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator_core::{Node, NodeId, ProvisionState};
use coordinator_store::{NodeFilter, StateChange};
use uuid::Uuid;
use vmedia_proto::v1 as pb;

use super::{App, DEFAULT_PAGE, Fail, MAX_PAGE};
use crate::convert;
use crate::domain::ShareView;
use crate::engine::{Cmd, queue_positions};

/// Failed nodes read, at most, to group failures by reason.
pub const FAILURES_EXAMINED: u32 = 5000;
/// How long a failure grouping is re-used.
const FAILURES_FRESH: Duration = Duration::from_secs(1);
/// Longest search text.
pub const MAX_SEARCH: usize = 128;

/// Nodes that failed for the same reason in the same state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub state: String,
    /// `last_error` with node-specific parts (uuids, addresses, numbers) replaced.
    pub reason: String,
    pub count: u64,
    /// One node of the group (uuid, name).
    pub example: (String, String),
}

#[derive(Debug, Clone, Default)]
pub struct Failures {
    pub groups: Vec<FailureGroup>,
    pub examined: u64,
    /// More failed nodes exist than were examined.
    pub capped: bool,
}

#[derive(Default)]
pub struct FailureCache(Mutex<Option<(Instant, Arc<Failures>)>>);

/// Counts by state and failures: the top of the page.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counts: BTreeMap<String, u64>,
    pub total: u64,
    pub failures: Arc<Failures>,
}

/// The node table's query, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeQuery {
    pub q: String,
    pub state: Option<ProvisionState>,
    pub marker: Option<Uuid>,
    pub limit: u32,
    /// 1-based page number, for display only (marker paging has no random access).
    pub page: u32,
}

/// The raw query string of the node table.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListParams {
    pub q: Option<String>,
    pub state: Option<String>,
    pub marker: Option<String>,
    pub limit: Option<u32>,
    pub page: Option<u32>,
}

impl ListParams {
    pub fn validate(&self) -> Result<NodeQuery, Fail> {
        let q = self.q.as_deref().unwrap_or("").trim().to_owned();
        if q.chars().count() > MAX_SEARCH {
            return Err(Fail::BadRequest(format!(
                "q: the search text is longer than {MAX_SEARCH} characters"
            )));
        }
        let state = match self.state.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<ProvisionState>()
                    .map_err(|e| Fail::BadRequest(format!("state: {e}")))?,
            ),
        };
        let marker = match self.marker.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m) => Some(
                Uuid::parse_str(m)
                    .map_err(|_| Fail::BadRequest("marker: not a node uuid".to_owned()))?,
            ),
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        Ok(NodeQuery {
            q,
            state,
            marker,
            limit,
            page: self.page.unwrap_or(1).clamp(1, u32::MAX / 2),
        })
    }
}

/// One page of the node table.
pub struct NodePage {
    pub nodes: Vec<pb::Node>,
    /// The marker of the next page, when there may be one.
    pub next: Option<Uuid>,
}

impl App {
    pub(super) async fn summary(&self) -> Result<Summary, Fail> {
        let counts = self
            .0
            .store
            .count_by_state()
            .await
            .map_err(|e| Fail::store("count nodes", e))?;
        let total = counts.values().sum();
        let failures = self.failures().await?;
        Ok(Summary {
            counts,
            total,
            failures,
        })
    }

    async fn failures(&self) -> Result<Arc<Failures>, Fail> {
        {
            let cache = self
                .0
                .failures
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, f)) = cache.as_ref()
                && at.elapsed() < FAILURES_FRESH
            {
                return Ok(f.clone());
            }
        }
        let filter = NodeFilter {
            with_last_error: true,
            ..NodeFilter::default()
        };
        let nodes = self
            .0
            .store
            .list_node_views(&filter, FAILURES_EXAMINED + 1, None)
            .await
            .map_err(|e| Fail::store("list failed nodes", e))?;
        let capped = nodes.len() > FAILURES_EXAMINED as usize;
        let f = Arc::new(group_failures(
            nodes.iter().take(FAILURES_EXAMINED as usize),
            capped,
        ));
        *self
            .0
            .failures
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), f.clone()));
        Ok(f)
    }

    /// The share agents, or `None` on a replica that does not lead (only the leader's
    /// engine knows the agents).
    pub(super) async fn shares(&self) -> Option<Vec<ShareView>> {
        if self.0.policy.leadership.get() != crate::security::Leadership::Leader {
            return None;
        }
        let engine = self.0.engine.get()?;
        match engine
            .call("list shares", |reply| Cmd::ListShares { reply })
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "dashboard: list shares");
                None
            }
        }
    }

    pub(super) async fn node_page(&self, q: &NodeQuery) -> Result<NodePage, Fail> {
        let filter = NodeFilter {
            provision_state: q.state,
            search: (!q.q.is_empty()).then(|| q.q.clone()),
            ..NodeFilter::default()
        };
        let nodes = self
            .0
            .store
            .list_node_views(&filter, q.limit, q.marker)
            .await
            .map_err(|e| Fail::store("list nodes", e))?;
        let next = (nodes.len() == q.limit as usize)
            .then(|| nodes.last().map(Node::uuid))
            .flatten();
        let uuids: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();
        let positions = match self.0.engine.get() {
            Some(e) => queue_positions(&e.queue, &uuids),
            None => vec![0; uuids.len()],
        };
        Ok(NodePage {
            nodes: nodes
                .into_iter()
                .zip(positions)
                .map(|(n, pos)| convert::node_into_proto(n, pos))
                .collect(),
            next,
        })
    }

    /// One node (by uuid or name) as the API's GetNode shows it, and its history.
    pub(super) async fn node(&self, id: &str) -> Result<(pb::Node, Vec<StateChange>), Fail> {
        let id = id.trim();
        if id.is_empty() || id.len() > 255 {
            return Err(Fail::BadRequest("node: give a node uuid or name".into()));
        }
        let id: NodeId = id
            .parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {});
        let node = self
            .0
            .store
            .get_node(&id)
            .await
            .map_err(|e| Fail::store("read node", e))?
            .ok_or_else(|| Fail::NotFound(format!("node {id} not found")))?;
        let uuid = node.uuid();
        let history = self
            .0
            .store
            .node_history(uuid)
            .await
            .map_err(|e| Fail::store("read node history", e))?;
        let pos = match self.0.engine.get() {
            Some(e) => queue_positions(&e.queue, &[uuid])
                .first()
                .copied()
                .unwrap_or(0),
            None => 0,
        };
        Ok((convert::node_into_proto(node, pos), history))
    }
}

/// Groups failed nodes by (state, normalised reason), largest groups first.
pub fn group_failures<'a>(nodes: impl Iterator<Item = &'a Node>, capped: bool) -> Failures {
    let mut groups: HashMap<(String, String), FailureGroup> = HashMap::new();
    let mut examined = 0;
    for n in nodes {
        let Some(err) = n.status.last_error.as_deref() else {
            continue;
        };
        examined += 1;
        let state = n.status.provision_state.as_str().to_owned();
        let reason = normalise_reason(err);
        groups
            .entry((state.clone(), reason.clone()))
            .or_insert_with(|| FailureGroup {
                state,
                reason,
                count: 0,
                example: (
                    n.uuid().to_string(),
                    n.spec.name.clone().unwrap_or_default(),
                ),
            })
            .count += 1;
    }
    let mut groups: Vec<FailureGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.state.cmp(&b.state))
            .then_with(|| a.reason.cmp(&b.reason))
    });
    Failures {
        groups,
        examined,
        capped,
    }
}

/// A `last_error` without what differs from node to node: uuids become `<uuid>`, IPv4
/// addresses (with a port) `<address>`, other stand-alone numbers `<n>`. At most 300
/// characters.
pub fn normalise_reason(err: &str) -> String {
    let c: Vec<char> = err.chars().collect();
    let mut out = String::with_capacity(err.len());
    let mut i = 0;
    let alnum = |k: usize| c.get(k).is_some_and(|ch| ch.is_ascii_alphanumeric());
    while i < c.len() {
        let boundary = i == 0 || !alnum(i - 1);
        if boundary && is_uuid_at(&c, i) && !alnum(i + 36) {
            out.push_str("<uuid>");
            i += 36;
            continue;
        }
        if boundary && c[i].is_ascii_digit() {
            let mut j = i;
            while j < c.len() && c[j].is_ascii_digit() {
                j += 1;
            }
            let mut k = j;
            let mut dots = 0;
            while dots < 3
                && c.get(k) == Some(&'.')
                && c.get(k + 1).is_some_and(char::is_ascii_digit)
            {
                k += 1;
                while k < c.len() && c[k].is_ascii_digit() {
                    k += 1;
                }
                dots += 1;
            }
            if dots == 3 {
                if c.get(k) == Some(&':') && c.get(k + 1).is_some_and(char::is_ascii_digit) {
                    k += 1;
                    while k < c.len() && c[k].is_ascii_digit() {
                        k += 1;
                    }
                }
                out.push_str("<address>");
                i = k;
                continue;
            }
            if dots > 0 {
                // A version or a decimal: kept as it is.
                out.extend(&c[i..k]);
                i = k;
                continue;
            }
            if !alnum(j) {
                out.push_str("<n>");
                i = j;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    if out.chars().count() > 300 {
        out = out.chars().take(299).collect();
        out.push('…');
    }
    out
}

fn is_uuid_at(c: &[char], i: usize) -> bool {
    let Some(s) = c.get(i..i + 36) else {
        return false;
    };
    s.iter().enumerate().all(|(k, ch)| match k {
        8 | 13 | 18 | 23 => *ch == '-',
        _ => ch.is_ascii_hexdigit(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lose_what_differs_per_node() {
        assert_eq!(
            normalise_reason(
                "node 0a1b2c3d-0000-4000-8000-000000000001: BMC 127.2.0.7:443: eject failed after 3 tries (demo-0042)"
            ),
            "node <uuid>: BMC <address>: eject failed after <n> tries (demo-<n>)"
        );
        assert_eq!(
            normalise_reason("iRMC S4 firmware 9.21F"),
            "iRMC S4 firmware 9.21F"
        );
        assert_eq!(normalise_reason(&"x".repeat(400)).chars().count(), 300);
    }

    #[test]
    fn list_params_are_bounded() {
        let p = ListParams {
            limit: Some(100_000),
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap().limit, MAX_PAGE);
        let p = ListParams {
            state: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(Fail::BadRequest(_))));
        let p = ListParams {
            marker: Some("not-a-uuid".into()),
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(Fail::BadRequest(_))));
        let p = ListParams {
            q: Some("a".repeat(MAX_SEARCH + 1)),
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(Fail::BadRequest(_))));
    }
}
