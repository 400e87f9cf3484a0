//! The public gRPC services `Nodes` and `Shares`.
//!
//! Reads go straight to the store (plus the shared queue for `queue_position`); anything that
//! changes a node's status goes through the engine. Spec writes (create, update, delete) go to
//! the store and then tell the engine so its cache stays current.

use std::pin::Pin;
use std::sync::Arc;

use coordinator_core::{self as core, Node, NodeId, NodeStatus, PowerAction, ProvisionState, Verb};
use coordinator_store::{NodeFilter, Store, StoreError};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::nodes_server::Nodes;
use vmedia_proto::v1::shares_server::Shares;

use crate::convert::{self, node_into_proto, node_to_proto};
use crate::domain::NodeEvent;
use crate::engine::{Cmd, EngineHandle, now_ms, queue_position, queue_positions};
use crate::error::ServerError;

/// Default and maximum page sizes of ListNodes.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Clone)]
pub struct Api {
    pub store: Arc<dyn Store>,
    pub engine: EngineHandle,
}

type R<T> = Result<Response<T>, Status>;

fn node_id(field: &str, s: &str) -> Result<NodeId, ServerError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(ServerError::invalid(format!(
            "{field}: a node uuid or name is required"
        )));
    }
    // FromStr for NodeId is infallible.
    Ok(s.parse()
        .unwrap_or_else(|e: std::convert::Infallible| match e {}))
}

fn verb(target: &str) -> Result<Verb, ServerError> {
    Ok(target.trim().parse::<Verb>()?)
}

impl Api {
    async fn load(&self, id: &NodeId) -> Result<Node, ServerError> {
        self.store
            .get_node(id)
            .await
            .map_err(|e| ServerError::store("read node", id, e))?
            .ok_or_else(|| ServerError::NodeNotFound {
                node: id.to_string(),
            })
    }

    fn to_proto(&self, n: &Node) -> pb::Node {
        node_to_proto(n, queue_position(&self.engine.queue, &n.uuid()))
    }

    /// Watch's first events: the current state of the selected nodes (`want`: one node, or
    /// all). With `since_ms` (a resuming watcher), only the nodes whose status changed at or
    /// after it, each stamped with its `updated_at_ms` so the client can drop what it has
    /// already seen; without, every node, stamped now (`initial`, as before).
    async fn snapshot(
        &self,
        want: Option<uuid::Uuid>,
        since_ms: Option<i64>,
    ) -> Result<Snapshot, ServerError> {
        let now = now_ms();
        let keep = |n: &Node| since_ms.is_none_or(|t| n.status.updated_at_ms >= t);
        let stamp = |n: &Node| {
            if since_ms.is_some() {
                n.status.updated_at_ms
            } else {
                now
            }
        };
        let mut out = Snapshot::default();
        match want {
            Some(u) => {
                let n = self.load(&NodeId::Uuid(u)).await?;
                if keep(&n) {
                    out.shown
                        .insert(u, (n.status.updated_at_ms, n.status.provision_state));
                    out.events.push(convert::node_event(
                        &n,
                        queue_position(&self.engine.queue, &n.uuid()),
                        stamp(&n),
                    ));
                }
            }
            None => {
                // Paged through the read-only views; a resume filters on the status time
                // kept in each node's status (no index: resumes are rare, a leader change
                // or a lost connection).
                let mut marker = None;
                loop {
                    let page = self
                        .store
                        .list_node_views(&NodeFilter::default(), MAX_LIMIT, marker)
                        .await
                        .map_err(|e| ServerError::store_about("watch", "all nodes", e))?;
                    let full = page.len() == MAX_LIMIT as usize;
                    marker = page.last().map(Node::uuid);
                    let page: Vec<_> = page.into_iter().filter(|n| keep(n)).collect();
                    let uuids: Vec<_> = page.iter().map(Node::uuid).collect();
                    let positions = queue_positions(&self.engine.queue, &uuids);
                    out.shown.extend(
                        page.iter().map(|n| {
                            (n.uuid(), (n.status.updated_at_ms, n.status.provision_state))
                        }),
                    );
                    out.events.extend(
                        page.iter()
                            .zip(positions)
                            .map(|(n, pos)| convert::node_event(n, pos, stamp(n))),
                    );
                    if !full {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, req: pb::CreateNodeRequest) -> Result<pb::Node, ServerError> {
        let mut spec = convert::spec_from_create(req)?;
        core::normalize_spec(&mut spec);
        core::validate_create(&spec)?;
        let node = Node {
            spec,
            status: NodeStatus::new(now_ms()),
            version: 0,
        };
        self.store.create_node(&node).await.map_err(|e| match e {
            StoreError::Conflict { what } => ServerError::Conflict {
                what: format!("A node with {what} already exists."),
            },
            e => ServerError::store("create node", node.uuid(), e),
        })?;
        let _ = self
            .engine
            .events
            .send(NodeEvent::of(&node, 0, node.status.created_at_ms));
        Ok(node_to_proto(&node, 0))
    }

    async fn update(&self, req: pb::UpdateNodeRequest) -> Result<pb::Node, ServerError> {
        let id = node_id("node", &req.node)?;
        let node = self.load(&id).await?;
        let mut spec = convert::apply_update(&node.spec, req);
        core::normalize_spec(&mut spec);
        core::validate_create(&spec)?;
        self.store
            .update_spec(node.uuid(), &spec)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { what } => ServerError::Conflict {
                    what: format!("A node with {what} already exists."),
                },
                e => ServerError::store("update node", node.uuid(), e),
            })?;
        let updated = Node { spec, ..node };
        self.engine
            .tell(
                "update node",
                Cmd::SpecChanged {
                    node: Box::new(updated.clone()),
                },
            )
            .await?;
        Ok(self.to_proto(&updated))
    }

    async fn delete(&self, req: pb::DeleteNodeRequest) -> Result<(), ServerError> {
        let id = node_id("node", &req.node)?;
        let node = self.load(&id).await?;
        let state = node.status.provision_state;
        let busy =
            node.status.in_flight() || (state == ProvisionState::Active && !node.spec.maintenance);
        if busy {
            return Err(ServerError::NotAllowed {
                what: format!(
                    "Can not delete node \"{}\" while it is in provision state \"{state}\".",
                    node.uuid()
                ),
            });
        }
        let uuid = node.uuid();
        self.engine
            .call("delete node", |reply| Cmd::Delete { uuid, reply })
            .await
    }

    /// The nodes a bulk call names: its uuids/names, or else its selector's nodes.
    async fn bulk_targets(
        &self,
        nodes: &[String],
        selector: Option<&pb::NodeSelector>,
    ) -> Result<Vec<NodeId>, ServerError> {
        if !nodes.is_empty() {
            return nodes.iter().map(|n| node_id("nodes", n)).collect();
        }
        match selector {
            Some(sel) => self.select(sel).await,
            None => Err(ServerError::invalid(
                "nodes: give node uuids/names or a selector",
            )),
        }
    }

    /// Resolves a selector to node uuids, page by page.
    async fn select(&self, sel: &pb::NodeSelector) -> Result<Vec<NodeId>, ServerError> {
        let narrowed =
            !sel.provision_state.is_empty() || !sel.share.is_empty() || !sel.name_prefix.is_empty();
        if !sel.all && !narrowed {
            return Err(ServerError::invalid(
                "selector: set `all` to select every node, or narrow it by provision_state, share or name_prefix",
            ));
        }
        let filter =
            convert::node_filter(&sel.provision_state, &sel.share, &sel.name_prefix, false)?;
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .store
                .list_node_views(&filter, MAX_LIMIT, marker)
                .await
                .map_err(|e| ServerError::store_about("select nodes", "all nodes", e))?;
            let full = page.len() == MAX_LIMIT as usize;
            marker = page.last().map(Node::uuid);
            out.extend(page.iter().map(|n| NodeId::Uuid(n.uuid())));
            if !full {
                break;
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl Nodes for Api {
    async fn create_node(&self, req: Request<pb::CreateNodeRequest>) -> R<pb::Node> {
        Ok(Response::new(self.create(req.into_inner()).await?))
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> R<pb::Node> {
        let id = node_id("node", &req.into_inner().node)?;
        let n = self.load(&id).await?;
        Ok(Response::new(self.to_proto(&n)))
    }

    async fn list_nodes(&self, req: Request<pb::ListNodesRequest>) -> R<pb::ListNodesResponse> {
        let req = req.into_inner();
        let filter = convert::node_filter(
            &req.provision_state,
            &req.share,
            &req.name_prefix,
            req.with_last_error,
        )?;
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            l => l.min(MAX_LIMIT),
        };
        let marker = if req.marker.is_empty() {
            None
        } else {
            Some(convert::parse_uuid("marker", &req.marker)?)
        };
        // Views: secrets come back masked without being decrypted, which is all a read shows.
        let nodes = self
            .store
            .list_node_views(&filter, limit, marker)
            .await
            .map_err(|e| ServerError::store_about("list nodes", "all nodes", e))?;
        let next_marker = if nodes.len() == limit as usize {
            nodes
                .last()
                .map(|n| n.uuid().to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let uuids: Vec<_> = nodes.iter().map(Node::uuid).collect();
        let positions = queue_positions(&self.engine.queue, &uuids);
        Ok(Response::new(pb::ListNodesResponse {
            nodes: nodes
                .into_iter()
                .zip(positions)
                .map(|(n, pos)| node_into_proto(n, pos))
                .collect(),
            next_marker,
        }))
    }

    async fn update_node(&self, req: Request<pb::UpdateNodeRequest>) -> R<pb::Node> {
        Ok(Response::new(self.update(req.into_inner()).await?))
    }

    async fn delete_node(&self, req: Request<pb::DeleteNodeRequest>) -> R<pb::DeleteNodeResponse> {
        self.delete(req.into_inner()).await?;
        Ok(Response::new(pb::DeleteNodeResponse {}))
    }

    async fn validate_node(
        &self,
        req: Request<pb::ValidateNodeRequest>,
    ) -> R<pb::ValidateNodeResponse> {
        let id = node_id("node", &req.into_inner().node)?;
        let n = self.load(&id).await?;
        Ok(Response::new(convert::checks_to_proto(core::validate(&n))))
    }

    async fn set_provision_state(&self, req: Request<pb::SetProvisionStateRequest>) -> R<pb::Node> {
        let req = req.into_inner();
        let node = node_id("node", &req.node)?;
        let verb = verb(&req.target)?;
        let n = self
            .engine
            .call("set provision state", |reply| Cmd::Verb {
                node,
                verb,
                reply,
            })
            .await?;
        Ok(Response::new(convert::node_view_to_proto(n)))
    }

    async fn bulk_set_provision_state(
        &self,
        req: Request<pb::BulkSetProvisionStateRequest>,
    ) -> R<pb::BulkSetProvisionStateResponse> {
        let req = req.into_inner();
        let verb = verb(&req.target)?;
        let nodes = self.bulk_targets(&req.nodes, req.selector.as_ref()).await?;
        let r = self
            .engine
            .call("bulk set provision state", |reply| Cmd::Bulk {
                nodes,
                verb,
                reply,
            })
            .await?;
        Ok(Response::new(convert::bulk_to_proto(r)))
    }

    async fn set_power_state(&self, req: Request<pb::SetPowerStateRequest>) -> R<pb::Node> {
        let req = req.into_inner();
        let node = node_id("node", &req.node)?;
        let action = PowerAction::parse_verb(&req.target).map_err(ServerError::from)?;
        let n = self
            .engine
            .call("set power state", |reply| Cmd::Power {
                node,
                action,
                reply,
            })
            .await?;
        Ok(Response::new(convert::node_view_to_proto(n)))
    }

    async fn bulk_set_power_state(
        &self,
        req: Request<pb::BulkSetPowerStateRequest>,
    ) -> R<pb::BulkSetProvisionStateResponse> {
        let req = req.into_inner();
        let action = PowerAction::parse_verb(&req.target).map_err(ServerError::from)?;
        let nodes = self.bulk_targets(&req.nodes, req.selector.as_ref()).await?;
        let r = self
            .engine
            .call("bulk set power state", |reply| Cmd::BulkPower {
                nodes,
                action,
                reply,
            })
            .await?;
        Ok(Response::new(convert::bulk_to_proto(r)))
    }

    async fn explain_placement(
        &self,
        req: Request<pb::ExplainPlacementRequest>,
    ) -> R<pb::PlacementExplanation> {
        let id = node_id("node", &req.into_inner().node)?;
        let node = Box::new(self.load(&id).await?);
        let e = self
            .engine
            .call("explain placement", |reply| Cmd::Explain { node, reply })
            .await?;
        Ok(Response::new(convert::explanation_to_proto(e)))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::NodeEvent, Status>> + Send + 'static>>;

    /// Streams events. A watcher that falls more than `watch_buffer` events behind gets ONE
    /// notice event (empty `node_uuid`, `last_error` "watch lagged: N events dropped ...") and
    /// continues from the newest events: the engine never waits for a slow watcher.
    async fn watch(&self, req: Request<pb::WatchRequest>) -> R<Self::WatchStream> {
        let req = req.into_inner();
        // Subscribe first, so nothing between the initial snapshot and the stream is missed.
        let mut rx = self.engine.events.subscribe();
        // A name is resolved once; events carry uuids.
        let want_uuid = if req.node.trim().is_empty() {
            None
        } else {
            let n = self.load(&node_id("node", &req.node)?).await?;
            Some(n.uuid())
        };
        let Snapshot { events, mut shown } = if req.initial {
            self.snapshot(want_uuid, None).await?
        } else if req.since_ms > 0 {
            self.snapshot(want_uuid, Some(req.since_ms)).await?
        } else {
            Snapshot::default()
        };
        let stream = async_stream(events, move |out| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if want_uuid.is_some_and(|u| u != ev.node) {
                            continue;
                        }
                        // Events queued while the snapshot was read: drop those the snapshot
                        // already shows or that are older than it, so a node's last event
                        // is always its latest state.
                        if let Some(&(at, state)) = shown.get(&ev.node) {
                            if ev.at_ms < at || (ev.at_ms == at && ev.provision_state == state) {
                                continue;
                            }
                            shown.remove(&ev.node);
                        }
                        if out.send(Ok(convert::event_to_proto(ev))).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let notice = pb::NodeEvent {
                            last_error: format!(
                                "watch lagged: {n} events dropped; re-read the nodes with ListNodes to resync"
                            ),
                            at_ms: now_ms(),
                            ..Default::default()
                        };
                        if out.send(Ok(notice)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn reveal_secrets(
        &self,
        req: Request<pb::GetNodeRequest>,
    ) -> R<pb::RevealSecretsResponse> {
        let id = node_id("node", &req.into_inner().node)?;
        let n = self.load(&id).await?;
        Ok(Response::new(convert::secrets_to_proto(n.spec)))
    }
}

/// Watch's first events, and the (status time, state) each shows per node.
#[derive(Default)]
struct Snapshot {
    events: Vec<pb::NodeEvent>,
    shown: std::collections::HashMap<uuid::Uuid, (i64, ProvisionState)>,
}

/// A stream that first yields `initial`, then whatever `pump` sends. The pump runs in its own
/// task with a small bounded channel: when the client stops reading, the pump blocks on
/// `send` (its broadcast receiver then lags, which the engine never waits for).
fn async_stream<F, Fut>(
    initial: Vec<pb::NodeEvent>,
    pump: F,
) -> Pin<Box<dyn Stream<Item = Result<pb::NodeEvent, Status>> + Send>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::NodeEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let fut = pump(tx.clone());
    tokio::spawn(async move {
        for ev in initial {
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
        drop(tx);
        fut.await;
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Shares for Api {
    async fn list_shares(&self, _req: Request<pb::ListSharesRequest>) -> R<pb::ListSharesResponse> {
        let shares = self
            .engine
            .call("list shares", |reply| Cmd::ListShares { reply })
            .await?;
        Ok(Response::new(pb::ListSharesResponse {
            shares: shares.into_iter().map(convert::share_to_proto).collect(),
        }))
    }

    async fn drain_share(&self, req: Request<pb::DrainShareRequest>) -> R<pb::Share> {
        let share = req.into_inner().share;
        let s = self
            .engine
            .call("drain share", |reply| Cmd::Drain {
                agent: share.into(),
                drained: true,
                reply,
            })
            .await?;
        Ok(Response::new(convert::share_to_proto(s)))
    }

    async fn undrain_share(&self, req: Request<pb::DrainShareRequest>) -> R<pb::Share> {
        let share = req.into_inner().share;
        let s = self
            .engine
            .call("undrain share", |reply| Cmd::Drain {
                agent: share.into(),
                drained: false,
                reply,
            })
            .await?;
        Ok(Response::new(convert::share_to_proto(s)))
    }
}
