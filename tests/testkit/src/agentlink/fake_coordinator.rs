//! The coordinator's side of AgentLink, faked, for the share agent's tests: a tonic
//! `AgentLink` server on a loopback port that welcomes an agent, sends it jobs and
//! cancellations, records every message it sends up, and answers relayed ramdisk lookups
//! and heartbeats (one known node, one good token).
//!
//! Its mirror image, [`super::fake_agent`], plays the agent's side against the real
//! coordinator. Both speak the generated `vmedia.v1` types over real sockets, so neither
//! can drift from the protocol without failing to compile.
//!
//! Test-harness code: a broken expectation panics with what was seen so far.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_server::{AgentLink, AgentLinkServer};

/// The token the fake coordinator accepts on relayed ramdisk heartbeats.
pub const GOOD_TOKEN: &str = "0123456789abcdef0123456789abcdef-token";

type Down = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

#[derive(Default)]
struct Shared {
    msgs: Mutex<Vec<pb::AgentMessage>>,
    heartbeats: Mutex<Vec<pb::RamdiskHeartbeatRequest>>,
    changed: Notify,
    down: Mutex<Option<Down>>,
}

struct Svc(Arc<Shared>);

#[tonic::async_trait]
impl AgentLink for Svc {
    type SessionStream = ReceiverStream<Result<pb::CoordinatorMessage, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let welcome = pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Welcome(pb::Welcome {
                coordinator_id: "fake-coordinator".into(),
                heartbeat_interval_ms: 200,
            })),
        };
        tx.send(Ok(welcome)).await.ok();
        *self.0.down.lock().unwrap() = Some(tx);
        let shared = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                shared.msgs.lock().unwrap().push(m);
                shared.changed.notify_waiters();
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ramdisk_lookup(
        &self,
        req: Request<pb::RamdiskLookupRequest>,
    ) -> Result<Response<pb::RamdiskLookupResponse>, Status> {
        let r = req.into_inner();
        if r.addresses.iter().any(|a| a == "52:54:00:12:34:56") || r.node_uuid == "known-node" {
            Ok(Response::new(pb::RamdiskLookupResponse {
                node_uuid: "known-node".into(),
                properties: [("cpus".to_string(), "8".to_string())].into(),
                instance_info: Default::default(),
                heartbeat_timeout_s: 30,
            }))
        } else {
            Err(Status::not_found("node not found"))
        }
    }

    async fn ramdisk_heartbeat(
        &self,
        req: Request<pb::RamdiskHeartbeatRequest>,
    ) -> Result<Response<pb::RamdiskHeartbeatResponse>, Status> {
        let r = req.into_inner();
        let ok = r.agent_token == GOOD_TOKEN;
        self.0.heartbeats.lock().unwrap().push(r);
        if ok {
            Ok(Response::new(pb::RamdiskHeartbeatResponse {}))
        } else {
            Err(Status::invalid_argument(
                "Invalid or missing agent token received.",
            ))
        }
    }
}

/// The fake coordinator: an AgentLink server on `127.0.0.1:0`.
pub struct FakeCoordinator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCoordinator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCoordinator {
    pub async fn start() -> FakeCoordinator {
        Self::start_with(None).await
    }

    /// One serving TLS (mTLS when the config asks for client certificates).
    pub async fn start_with(tls: Option<tonic::transport::ServerTlsConfig>) -> FakeCoordinator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let svc = AgentLinkServer::new(Svc(shared.clone()));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        let server = tokio::spawn(async move {
            builder
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .ok();
        });
        FakeCoordinator {
            addr,
            shared,
            server,
        }
    }

    async fn wait<T>(
        &self,
        limit: Duration,
        mut f: impl FnMut(&[pb::AgentMessage]) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(v) = f(&self.shared.msgs.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let msgs = self.shared.msgs.lock().unwrap();
                panic!("timed out after {limit:?}; messages so far: {:#?}", *msgs);
            }
        }
    }

    /// The n-th hello (0-based) the agent sent.
    pub async fn hello(&self, n: usize) -> pb::AgentHello {
        self.wait(Duration::from_secs(30), |msgs| {
            msgs.iter()
                .filter_map(|m| match &m.msg {
                    Some(pb::agent_message::Msg::Hello(h)) => Some(h.clone()),
                    _ => None,
                })
                .nth(n)
        })
        .await
    }

    /// Waits for the first agent heartbeat after `hello`.
    pub async fn heartbeat(&self) -> pb::AgentHeartbeat {
        self.wait(Duration::from_secs(30), |msgs| {
            msgs.iter().rev().find_map(|m| match &m.msg {
                Some(pb::agent_message::Msg::Heartbeat(h)) => Some(*h),
                _ => None,
            })
        })
        .await
    }

    /// Ends the current session from the coordinator side (as a restart would).
    pub fn kick(&self) {
        self.shared.down.lock().unwrap().take();
    }

    /// Every hello so far.
    pub fn hellos(&self) -> Vec<pb::AgentHello> {
        self.shared
            .msgs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match &m.msg {
                Some(pb::agent_message::Msg::Hello(h)) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    pub async fn cancel(&self, job_id: &str, node: &str) {
        let tx = self
            .shared
            .down
            .lock()
            .unwrap()
            .clone()
            .expect("no session");
        tx.send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Cancel(pb::CancelJob {
                job_id: job_id.into(),
                node_uuid: node.into(),
            })),
        }))
        .await
        .unwrap();
    }

    pub async fn send(&self, job: pb::Job) {
        let tx = self
            .shared
            .down
            .lock()
            .unwrap()
            .clone()
            .expect("no session");
        tx.send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Job(job)),
        }))
        .await
        .unwrap();
    }

    /// (job id, state, progress) of every update of these jobs, in arrival order.
    pub fn timeline(&self, jobs: &[&str]) -> Vec<(String, i32, String)> {
        self.shared
            .msgs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match &m.msg {
                Some(pb::agent_message::Msg::JobUpdate(u)) if jobs.contains(&u.job_id.as_str()) => {
                    Some((u.job_id.clone(), u.state, u.progress.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Every update of a job so far.
    pub fn updates(&self, job_id: &str) -> Vec<pb::JobUpdate> {
        self.shared
            .msgs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| match &m.msg {
                Some(pb::agent_message::Msg::JobUpdate(u)) if u.job_id == job_id => Some(u.clone()),
                _ => None,
            })
            .collect()
    }

    /// The `n`-th final (SUCCEEDED/FAILED) update of a job.
    pub async fn final_update_n(&self, job_id: &str, n: usize, limit: Duration) -> pb::JobUpdate {
        self.wait(limit, |msgs| {
            msgs.iter()
                .filter_map(|m| match &m.msg {
                    Some(pb::agent_message::Msg::JobUpdate(u))
                        if u.job_id == job_id && u.state != pb::JobState::Running as i32 =>
                    {
                        Some(u.clone())
                    }
                    _ => None,
                })
                .nth(n)
        })
        .await
    }

    pub async fn final_update(&self, job_id: &str, limit: Duration) -> pb::JobUpdate {
        self.final_update_n(job_id, 0, limit).await
    }

    pub fn ramdisk_heartbeats(&self) -> Vec<pb::RamdiskHeartbeatRequest> {
        self.shared.heartbeats.lock().unwrap().clone()
    }
}
