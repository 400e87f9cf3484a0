//! What the gRPC services send to the engine ([`Cmd`]) and their handle on it
//! ([`EngineHandle`]).

use coordinator_core::{AgentId, Node, NodeId, PowerAction, Verb};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::queue::SharedQueue;
use crate::domain::{
    AgentHeartbeat, AgentHello, BulkOutcome, Explanation, JobUpdate, NodeEvent, NodeView,
    PowerReport, RamdiskHeartbeat, RamdiskLookup, RamdiskNode, ShareView, ToAgent,
};
use crate::error::ServerError;

/// What the engine sends down an agent's session stream (`link.rs` puts it on the wire).
pub type AgentTx = mpsc::UnboundedSender<ToAgent>;

pub type Reply<T> = oneshot::Sender<Result<T, ServerError>>;

/// Commands the API and agent sessions send to the engine.
pub enum Cmd {
    Verb {
        node: NodeId,
        verb: Verb,
        reply: Reply<NodeView>,
    },
    Bulk {
        nodes: Vec<NodeId>,
        verb: Verb,
        reply: Reply<BulkOutcome>,
    },
    /// An operator power action on one node.
    Power {
        node: NodeId,
        action: PowerAction,
        reply: Reply<NodeView>,
    },
    BulkPower {
        nodes: Vec<NodeId>,
        action: PowerAction,
        reply: Reply<BulkOutcome>,
    },
    /// An agent's answer to a power-sync query.
    PowerReport {
        agent: AgentId,
        report: PowerReport,
    },
    /// The operator changed a node's spec (already stored).
    SpecChanged {
        node: Box<Node>,
    },
    /// The operator deleted a node (already gone from the store).
    Forget {
        uuid: Uuid,
    },
    /// Delete a node the API found idle: the engine checks again against its own
    /// (authoritative) view and deletes it from the store between two commits, so that
    /// no running job or pending status write is orphaned.
    Delete {
        uuid: Uuid,
        reply: Reply<()>,
    },
    Hello {
        hello: Box<AgentHello>,
        tx: AgentTx,
        reply: Reply<u64>,
    },
    AgentHeartbeat {
        agent: AgentId,
        session: u64,
        heartbeat: AgentHeartbeat,
    },
    JobUpdate {
        agent: AgentId,
        session: u64,
        update: JobUpdate,
    },
    SessionClosed {
        agent: AgentId,
        session: u64,
    },
    RamdiskLookup {
        req: RamdiskLookup,
        reply: Reply<RamdiskNode>,
    },
    RamdiskHeartbeat {
        req: RamdiskHeartbeat,
        reply: Reply<()>,
    },
    ListShares {
        reply: Reply<Vec<ShareView>>,
    },
    Drain {
        agent: AgentId,
        drained: bool,
        reply: Reply<ShareView>,
    },
    Explain {
        node: Box<Node>,
        reply: Reply<Explanation>,
    },
}

/// The API's handle on the engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) tx: mpsc::Sender<Cmd>,
    pub events: broadcast::Sender<NodeEvent>,
    pub queue: SharedQueue,
}

impl EngineHandle {
    /// A handle with no engine behind it, for a follower replica: its services read the
    /// store directly and the gate keeps every engine call away (any that slipped through
    /// would fail with `ShuttingDown`).
    pub fn detached(watch_buffer: usize) -> Self {
        let (tx, _) = mpsc::channel(1);
        let (events, _) = broadcast::channel(watch_buffer.max(1));
        Self {
            tx,
            events,
            queue: SharedQueue::default(),
        }
    }

    /// Sends a command and waits for its reply.
    pub async fn call<T>(
        &self,
        op: &'static str,
        make: impl FnOnce(Reply<T>) -> Cmd,
    ) -> Result<T, ServerError> {
        let (tx, rx) = oneshot::channel();
        let t0 = std::time::Instant::now();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ServerError::ShuttingDown { op })?;
        let t1 = t0.elapsed();
        let r = rx.await.map_err(|_| ServerError::ShuttingDown { op })?;
        tracing::debug!(
            op,
            send_us = t1.as_micros() as u64,
            total_us = t0.elapsed().as_micros() as u64,
            "engine call"
        );
        r
    }

    /// Sends a command that has no reply.
    pub async fn tell(&self, op: &'static str, cmd: Cmd) -> Result<(), ServerError> {
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ServerError::ShuttingDown { op })
    }
}
