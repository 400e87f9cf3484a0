//! Test harness: the real `coordinator` binary on a loopback port, and a fake share agent
//! that speaks AgentLink over a real socket and plays the deploy ramdisk's part.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::Channel;
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_client::AgentLinkClient;
use vmedia_proto::v1::nodes_client::NodesClient;
use vmedia_proto::v1::shares_client::SharesClient;

/// A running coordinator process; SIGKILLed on drop.
pub struct Coordinator {
    pub child: Child,
    pub addr: String,
}

impl Coordinator {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("COORDINATOR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn coordinator");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read bound address");
        let addr = line
            .trim()
            .strip_prefix("coordinator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            child,
            addr: format!("http://{addr}"),
        }
    }

    pub async fn channel(&self) -> Channel {
        for _ in 0..100 {
            if let Ok(c) = Channel::from_shared(self.addr.clone())
                .unwrap()
                .connect()
                .await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot connect to {}", self.addr);
    }

    pub async fn nodes(&self) -> NodesClient<Channel> {
        NodesClient::new(self.channel().await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn shares(&self) -> SharesClient<Channel> {
        SharesClient::new(self.channel().await)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A valid node create request; `i` makes name, BMC address and MAC unique.
pub fn node_req(i: u32) -> pb::CreateNodeRequest {
    let b = i.to_be_bytes();
    pb::CreateNodeRequest {
        name: format!("node-{i}"),
        driver_info: [
            (
                "irmc_address".to_owned(),
                format!("10.{}.{}.{}", b[1], b[2], b[3]),
            ),
            ("irmc_username".to_owned(), "admin".to_owned()),
            ("irmc_password".to_owned(), "s3cret-pw".to_owned()),
            ("deploy_iso".to_owned(), "deploy.iso".to_owned()),
        ]
        .into(),
        instance_info: [
            (
                "image_source".to_owned(),
                "http://127.0.0.1:1/image.raw".to_owned(),
            ),
            (
                "image_checksum".to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ]
        .into(),
        macs: vec![format!("52:54:00:{:02x}:{:02x}:{:02x}", b[1], b[2], b[3])],
        ..Default::default()
    }
}

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
    pub async fn connect(coord: &Coordinator, b: AgentBehaviour) -> Self {
        Self::connect_with_stats(coord, b, Arc::default()).await
    }

    /// Reconnects carrying earlier stats: finished jobs are reported in hello.known_jobs,
    /// as a real agent does after a coordinator restart.
    pub async fn connect_with_stats(
        coord: &Coordinator,
        b: AgentBehaviour,
        stats: Arc<Mutex<AgentStats>>,
    ) -> Self {
        let channel = coord.channel().await;
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

/// Polls until every listed node is in `state` (or panics after `timeout`).
pub async fn wait_all(
    nodes: &mut NodesClient<Channel>,
    uuids: &[String],
    state: &str,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut pending = Vec::new();
        for u in uuids {
            let n = nodes
                .get_node(pb::GetNodeRequest { node: u.clone() })
                .await
                .unwrap()
                .into_inner();
            if n.provision_state != state {
                pending.push(format!(
                    "{} {} [{}] {}",
                    n.uuid, n.provision_state, n.progress, n.last_error
                ));
            }
        }
        if pending.is_empty() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} nodes not {state}: {:#?}",
                pending.len(),
                &pending[..pending.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Enrols `n` nodes and takes them to `available` through manage + provide.
pub async fn enroll_available(coord: &Coordinator, n: u32) -> Vec<String> {
    let mut nodes = coord.nodes().await;
    let mut uuids = Vec::new();
    for i in 0..n {
        uuids.push(
            nodes
                .create_node(node_req(i))
                .await
                .unwrap()
                .into_inner()
                .uuid,
        );
    }
    bulk(&mut nodes, &uuids, "manage").await;
    wait_all(&mut nodes, &uuids, "manageable", Duration::from_secs(30)).await;
    bulk(&mut nodes, &uuids, "provide").await;
    wait_all(&mut nodes, &uuids, "available", Duration::from_secs(30)).await;
    uuids
}

pub async fn bulk(
    nodes: &mut NodesClient<Channel>,
    uuids: &[String],
    target: &str,
) -> pb::BulkSetProvisionStateResponse {
    let r = nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            nodes: uuids.to_vec(),
            selector: None,
            target: target.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.failures.is_empty(), "{target}: {:?}", r.failures);
    assert_eq!(r.accepted, uuids.len() as u64);
    r
}
