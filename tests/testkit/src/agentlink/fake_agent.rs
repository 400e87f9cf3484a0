//! A share agent's side of AgentLink, faked, for the coordinator's tests: it dials the
//! real coordinator, says hello, heartbeats, runs every job it is sent (succeeding after
//! a set time, idempotent by job id, reporting finished jobs again after a reconnect), and
//! plays the deploy ramdisks of its nodes: after a PrepareRamdisk it relays ramdisk
//! heartbeats with the job's agent token, as a booted ironic-python-agent would.
//!
//! Its mirror image is [`super::fake_coordinator`].
//!
//! Test-harness code: a broken expectation panics.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::Channel;
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_client::AgentLinkClient;

/// How the fake agent behaves.
#[derive(Clone)]
pub struct AgentBehaviour {
    pub id: String,
    pub capacity: u32,
    /// Time each job takes.
    pub job_time: Duration,
    /// Whether the "ramdisk" heartbeats after PrepareRamdisk.
    pub ramdisk_heartbeats: bool,
    /// PrepareRamdisk jobs never finish (a share agent that hangs mid-deploy).
    pub stall_deploys: bool,
}

impl AgentBehaviour {
    pub fn new(id: &str, capacity: u32) -> Self {
        Self {
            id: id.to_owned(),
            capacity,
            job_time: Duration::from_millis(5),
            ramdisk_heartbeats: true,
            stall_deploys: false,
        }
    }
}

#[derive(Default)]
pub struct AgentStats {
    pub jobs: Vec<(String, String, &'static str)>,
    pub running: HashSet<String>,
    pub max_running_deploys: usize,
    pub deploys_running: HashSet<String>,
    pub finished: HashMap<String, pb::JobUpdate>,
    /// Booted "ramdisks": node -> agent token. Each heartbeats periodically, as IPA does,
    /// until its node's PrepareInstance or CleanUp job arrives.
    pub ramdisks: HashMap<String, String>,
}

/// A fake share agent on a real AgentLink stream. Jobs succeed after `job_time`;
/// PrepareRamdisk is followed by a RamdiskHeartbeat carrying the job's token.
pub struct FakeAgent {
    pub stats: Arc<Mutex<AgentStats>>,
    task: tokio::task::JoinHandle<()>,
    /// Ends the upward stream: the coordinator sees the session close.
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeAgent {
    /// Connects to the coordinator on `channel` and says hello as `b.id`.
    pub async fn connect(channel: Channel, b: AgentBehaviour) -> Self {
        Self::connect_with_stats(channel, b, Arc::default()).await
    }

    /// Reconnects carrying earlier stats: finished jobs are reported in hello.known_jobs,
    /// as a real agent does after a coordinator restart.
    pub async fn connect_with_stats(
        channel: Channel,
        b: AgentBehaviour,
        stats: Arc<Mutex<AgentStats>>,
    ) -> Self {
        let mut link = AgentLinkClient::new(channel.clone());
        let relay = AgentLinkClient::new(channel);
        let (up_tx, up_rx) = mpsc::unbounded_channel::<pb::AgentMessage>();
        let known: Vec<pb::JobUpdate> = stats.lock().unwrap().finished.values().cloned().collect();
        up_tx
            .send(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Hello(pb::AgentHello {
                    agent_id: b.id.clone(),
                    version: "test".into(),
                    share: Some(pb::ShareIdentity {
                        server: "127.0.0.1".into(),
                        share_type: "NFS".into(),
                        share_name: format!("/srv/{}", b.id),
                        ..Default::default()
                    }),
                    capacity: b.capacity,
                    http_url: "http://127.0.0.1:1".into(),
                    free_bytes: 1 << 30,
                    known_jobs: known,
                    ..Default::default()
                })),
            })
            .unwrap();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let up_stream = futures::StreamExt::take_until(
            tokio_stream::wrappers::UnboundedReceiverStream::new(up_rx),
            closed,
        );
        let mut down = link.session(up_stream).await.expect("session").into_inner();
        let first = down.message().await.expect("welcome").expect("welcome");
        assert!(matches!(
            first.msg,
            Some(pb::coordinator_message::Msg::Welcome(_))
        ));
        let st = stats.clone();
        let task = tokio::spawn(async move {
            let hb_tx = up_tx.clone();
            let hb = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if hb_tx
                        .send(pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::Heartbeat(pb::AgentHeartbeat {
                                free_bytes: 1 << 30,
                                ..Default::default()
                            })),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let rd_stats = st.clone();
            let rd_relay = relay.clone();
            let rd_id = b.id.clone();
            let ramdisks = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let booted: Vec<(String, String)> = rd_stats
                        .lock()
                        .unwrap()
                        .ramdisks
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (node, token) in booted {
                        let _ = rd_relay
                            .clone()
                            .ramdisk_heartbeat(pb::RamdiskHeartbeatRequest {
                                agent_id: rd_id.clone(),
                                node_uuid: node,
                                callback_url: "https://127.0.0.1:9999".into(),
                                agent_token: token,
                                agent_version: "test".into(),
                            })
                            .await;
                    }
                }
            });
            while let Ok(Some(m)) = down.message().await {
                let Some(pb::coordinator_message::Msg::Job(job)) = m.msg else {
                    continue;
                };
                let kind = match &job.kind {
                    Some(pb::job::Kind::PrepareRamdisk(_)) => "prepare_ramdisk",
                    Some(pb::job::Kind::WriteImage(_)) => "write_image",
                    Some(pb::job::Kind::PrepareInstance(_)) => "prepare_instance",
                    Some(pb::job::Kind::CleanUp(_)) => "clean_up",
                    Some(pb::job::Kind::Power(_)) => "power",
                    Some(pb::job::Kind::BmcInfo(_)) => "bmc_info",
                    Some(pb::job::Kind::Inspect(_)) => "inspect",
                    None => "none",
                };
                {
                    let mut s = st.lock().unwrap();
                    // Idempotent by job id: a repeated id is answered from memory.
                    if let Some(done) = s.finished.get(&job.job_id).cloned() {
                        let _ = up_tx.send(pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::JobUpdate(done)),
                        });
                        continue;
                    }
                    if !s.running.insert(job.job_id.clone()) {
                        continue;
                    }
                    s.jobs
                        .push((job.node_uuid.clone(), job.job_id.clone(), kind));
                    if kind == "prepare_ramdisk" {
                        s.deploys_running.insert(job.node_uuid.clone());
                        s.max_running_deploys = s.max_running_deploys.max(s.deploys_running.len());
                    }
                    if kind == "prepare_instance" || kind == "clean_up" {
                        s.deploys_running.remove(&job.node_uuid);
                        s.ramdisks.remove(&job.node_uuid);
                    }
                }
                if kind == "prepare_ramdisk" && b.stall_deploys {
                    continue;
                }
                let up = up_tx.clone();
                let st2 = st.clone();
                let mut relay = relay.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(b.job_time).await;
                    let update = pb::JobUpdate {
                        job_id: job.job_id.clone(),
                        node_uuid: job.node_uuid.clone(),
                        state: pb::JobState::Succeeded as i32,
                        output: Some(pb::JobOutput {
                            power_state: "power on".into(),
                            bmc_model: "iRMC S5".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    {
                        let mut s = st2.lock().unwrap();
                        s.running.remove(&job.job_id);
                        s.finished.insert(job.job_id.clone(), update.clone());
                        // The node boots the ramdisk whether or not the coordinator is
                        // there to hear about it.
                        if let Some(pb::job::Kind::PrepareRamdisk(p)) = &job.kind
                            && b.ramdisk_heartbeats
                        {
                            s.ramdisks
                                .insert(job.node_uuid.clone(), p.agent_token.clone());
                        }
                    }
                    if up
                        .send(pb::AgentMessage {
                            msg: Some(pb::agent_message::Msg::JobUpdate(update)),
                        })
                        .is_err()
                    {
                        return;
                    }
                    if let Some(pb::job::Kind::PrepareRamdisk(p)) = &job.kind
                        && b.ramdisk_heartbeats
                    {
                        // The "ramdisk" boots and heartbeats through the agent's relay at
                        // once, then periodically.
                        tokio::time::sleep(b.job_time).await;
                        let _ = relay
                            .ramdisk_heartbeat(pb::RamdiskHeartbeatRequest {
                                agent_id: b.id.clone(),
                                node_uuid: job.node_uuid.clone(),
                                callback_url: "https://127.0.0.1:9999".into(),
                                agent_token: p.agent_token.clone(),
                                agent_version: "test".into(),
                            })
                            .await;
                    }
                });
            }
            hb.abort();
            ramdisks.abort();
        });
        Self {
            stats,
            task,
            close: Some(close),
        }
    }

    /// Drops the connection (the agent process "dies"); jobs it had started still finish
    /// in its memory, as a real agent's would.
    pub fn disconnect(mut self) -> Arc<Mutex<AgentStats>> {
        if let Some(c) = self.close.take() {
            let _ = c.send(());
        }
        self.task.abort();
        self.stats.clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}
