//! The `AgentLink` service: share-agent sessions and the ramdisk lookup/heartbeat relays.
//!
//! Kept apart from the public API so it can move to its own (mTLS) listener: it needs only
//! an [`EngineHandle`].

use std::pin::Pin;

use coordinator_core::AgentId;
use futures::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_server::AgentLink;
use vmedia_proto::v1::agent_message::Msg;

use crate::convert;
use crate::engine::{Cmd, EngineHandle};
use crate::error::ServerError;

#[derive(Clone)]
pub struct Link {
    pub engine: EngineHandle,
    /// mTLS is on: the session's client certificate must name the agent id of its hello.
    pub check_agent_identity: bool,
}

impl Link {
    /// With mTLS on: the caller's certificate must name `agent` (the id it claims).
    fn check_identity<T>(&self, req: &Request<T>, agent: &str) -> Result<(), Status> {
        if !self.check_agent_identity {
            return Ok(());
        }
        let named = req
            .peer_certs()
            .as_deref()
            .and_then(|c| c.first())
            .is_some_and(|c| crate::security::certificate_names_agent(c, agent.trim()));
        if named {
            return Ok(());
        }
        let peer = req
            .remote_addr()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        tracing::warn!(peer = %peer, agent = %agent, "share agent refused: its certificate does not name this agent id");
        Err(ServerError::AgentRefused {
            agent: agent.to_owned(),
            reason: "the client certificate does not name this agent id".to_owned(),
        }
        .into())
    }
}

#[tonic::async_trait]
impl AgentLink for Link {
    type SessionStream =
        Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send + 'static>>;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let certs = req.peer_certs();
        let peer = req
            .remote_addr()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let mut inbound = req.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("AgentLink.Session: the stream ended before hello")
        })?;
        let hello = match first.msg {
            Some(Msg::Hello(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "AgentLink.Session: the first message must be hello",
                ));
            }
        };
        let agent = AgentId::from(hello.agent_id.trim());
        if self.check_agent_identity {
            let named = certs
                .as_deref()
                .and_then(|c| c.first())
                .is_some_and(|c| crate::security::certificate_names_agent(c, agent.as_str()));
            if !named {
                tracing::warn!(peer = %peer, agent = %agent, "share agent refused: its certificate does not name this agent id");
                return Err(ServerError::AgentRefused {
                    agent: agent.into_string(),
                    reason: "the client certificate does not name this agent id".to_owned(),
                }
                .into());
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let session = self
            .engine
            .call("agent hello", |reply| Cmd::Hello {
                hello: Box::new(convert::hello_from_proto(hello)),
                tx,
                reply,
            })
            .await?;
        let engine = self.engine.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(agent = %agent, error = %e, "agent stream error");
                        break;
                    }
                };
                let cmd = match msg.msg {
                    Some(Msg::Heartbeat(heartbeat)) => Cmd::AgentHeartbeat {
                        agent: agent.clone(),
                        session,
                        heartbeat: convert::heartbeat_from_proto(&heartbeat),
                    },
                    // Progress lines only feed watchers (they are never stored): with
                    // nobody watching, the engine need not be woken for them. Results
                    // always go through.
                    Some(Msg::JobUpdate(update))
                        if update.state == pb::JobState::Running as i32
                            && engine.events.receiver_count() == 0 =>
                    {
                        continue;
                    }
                    Some(Msg::JobUpdate(update)) => Cmd::JobUpdate {
                        agent: agent.clone(),
                        session,
                        update: convert::job_update_from_proto(update),
                    },
                    Some(Msg::PowerReport(r)) => Cmd::PowerReport {
                        agent: agent.clone(),
                        report: convert::power_report_from_proto(r),
                    },
                    Some(Msg::Hello(_)) | None => {
                        tracing::warn!(agent = %agent, "unexpected message on an established session ignored");
                        continue;
                    }
                };
                if engine.tell("agent message", cmd).await.is_err() {
                    return;
                }
            }
            let _ = engine
                .tell("agent stream closed", Cmd::SessionClosed { agent, session })
                .await;
        });
        // The engine speaks domain messages; they go on the wire here.
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
                .map(|m| Ok(convert::to_agent_message(m))),
        )))
    }

    async fn ramdisk_lookup(
        &self,
        req: Request<pb::RamdiskLookupRequest>,
    ) -> Result<Response<pb::RamdiskLookupResponse>, Status> {
        self.check_identity(&req, &req.get_ref().agent_id)?;
        let req = req.into_inner();
        if req.node_uuid.is_empty() && req.addresses.iter().all(|a| a.trim().is_empty()) {
            return Err(ServerError::invalid(
                "addresses: at least one MAC address or node_uuid is required",
            )
            .into());
        }
        let req = convert::lookup_from_proto(req);
        let r = self
            .engine
            .call("ramdisk lookup", |reply| Cmd::RamdiskLookup { req, reply })
            .await?;
        Ok(Response::new(convert::ramdisk_node_to_proto(r)))
    }

    async fn ramdisk_heartbeat(
        &self,
        req: Request<pb::RamdiskHeartbeatRequest>,
    ) -> Result<Response<pb::RamdiskHeartbeatResponse>, Status> {
        self.check_identity(&req, &req.get_ref().agent_id)?;
        let req = convert::ramdisk_heartbeat_from_proto(req.into_inner());
        self.engine
            .call("ramdisk heartbeat", |reply| Cmd::RamdiskHeartbeat {
                req,
                reply,
            })
            .await?;
        Ok(Response::new(pb::RamdiskHeartbeatResponse {}))
    }
}
