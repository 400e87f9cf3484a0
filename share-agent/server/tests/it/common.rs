//! Test harness: a minimal coordinator stub (a tonic `AgentLink` server on
//! 127.0.0.1:0 that sends jobs and collects updates), the real `share-agent`
//! process, and an in-process `irmc-sim` on a random loopback /24.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irmc_sim::{BootHook, BootSnapshot, NodeHandle, Sim, SimBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_server::{AgentLink, AgentLinkServer};

/// The token the stub accepts on ramdisk heartbeats.
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
                coordinator_id: "stub".into(),
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

/// The coordinator stub.
pub struct Stub {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Stub {
    pub async fn start() -> Stub {
        Self::start_with(None).await
    }

    /// A stub serving TLS (mTLS when the config asks for client certificates).
    pub async fn start_with(tls: Option<tonic::transport::ServerTlsConfig>) -> Stub {
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
        Stub {
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

/// A running `share-agent` process (killed on drop).
pub struct AgentProc {
    pub child: tokio::process::Child,
    /// Everything the agent wrote to stderr (its log) so far.
    pub log: Arc<Mutex<String>>,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub share: PathBuf,
}

impl AgentProc {
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }
}

/// Knobs for the agent's config file.
#[derive(Default, Clone)]
pub struct AgentOpts {
    pub min_free_bytes: u64,
    /// RUST_LOG for the agent (default "warn").
    pub log: Option<String>,
    /// Dial the coordinator over https.
    pub https: bool,
    /// Extra lines for the [agent] section.
    pub extra_agent: String,
    pub extra_irmc: String,
}

pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_share-agent")
}

pub fn write_config(
    dir: &Path,
    share: &Path,
    coordinator: SocketAddr,
    opts: &AgentOpts,
) -> PathBuf {
    let cfg = format!(
        r#"
[agent]
id = "agent-under-test"
coordinator = "{scheme}://{coordinator}"
{extra_agent}
capacity = 4
http_listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
reconnect_max = "1s"

[irmc]
remote_image_share_root = "{share}"
remote_image_server = "127.0.0.1"
remote_image_share_type = "CIFS"
remote_image_share_name = "share"
remote_image_user_name = "ironic"
remote_image_user_password = "share-secret-pw"
smb_conf = "{dir}/no-smb.conf"
min_free_bytes = {min_free}
{extra}

[bmc]
power_off_timeout = "5s"
"#,
        share = share.display(),
        dir = dir.display(),
        min_free = opts.min_free_bytes,
        scheme = if opts.https { "https" } else { "http" },
        extra_agent = opts.extra_agent,
        extra = opts.extra_irmc,
    );
    let path = dir.join("share-agent.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Starts the agent against `stub`; returns once it listens.
pub async fn start_agent(stub: &Stub, opts: AgentOpts) -> AgentProc {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let cfg = write_config(dir.path(), &share, stub.addr, &opts);
    let mut child = tokio::process::Command::new(agent_bin())
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", opts.log.as_deref().unwrap_or("warn"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[share-agent] {l}");
            let mut g = log2.lock().unwrap();
            g.push_str(&l);
            g.push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let http = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("listening on http://").nth(1) {
                return url.trim().parse::<SocketAddr>().unwrap();
            }
        }
        panic!("share-agent exited before listening");
    })
    .await
    .expect("share-agent did not start");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    AgentProc {
        child,
        log,
        http,
        dir,
        share,
    }
}

/// A random 127.X.Y.1 base so parallel tests never collide.
pub fn random_base() -> Ipv4Addr {
    let x: u8 = rand::random_range(2..=250);
    let y: u8 = rand::random_range(0..=254);
    Ipv4Addr::new(127, x, y, 1)
}

/// Records what the firmware saw at each power-on.
#[derive(Default, Clone)]
pub struct Boots(pub Arc<Mutex<Vec<BootSnapshot>>>);

impl BootHook for Boots {
    fn on_power_on(&self, _node: NodeHandle, snapshot: BootSnapshot) {
        self.0.lock().unwrap().push(snapshot);
    }
    fn on_power_off(&self, _node: NodeHandle) {}
}

pub const BMC_PASSWORD: &str = "pw<&>\"'x";

/// Starts a simulator with `count` iRMC S4 nodes mapped to `share`.
pub async fn start_sim(
    count: usize,
    share: &Path,
    boots: Boots,
    firmware: Option<&str>,
) -> (Sim, PathBuf) {
    let mut b = SimBuilder::new()
        .count(count)
        .base_address(random_base())
        .https_port(Some(0))
        .credentials("admin", BMC_PASSWORD)
        .share(irmc_sim::ShareMapEntry::new("127.0.0.1", "share", share))
        .boot_hook(boots);
    if let Some(fw) = firmware {
        b = b.firmware(fw);
    }
    let sim = Sim::start(b).await.unwrap();
    let ca = share.parent().unwrap().join("sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    (sim, ca)
}

pub fn bmc_target(sim: &Sim, i: usize, ca: &Path, timeout_s: u32) -> pb::BmcTarget {
    let a = &sim.addresses()[i];
    let https = a.https.unwrap();
    pb::BmcTarget {
        address: a.ip.to_string(),
        port: u32::from(https.port()),
        username: "admin".into(),
        password: BMC_PASSWORD.into(),
        auth_method: "basic".into(),
        client_timeout_s: timeout_s,
        verify_ca: ca.display().to_string(),
    }
}

/// True when `tool` is on PATH; panics in CI when it is not.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found && std::env::var_os("CI").is_some() {
        panic!("{tool} is required in CI");
    }
    if !found {
        eprintln!("skipping the {tool} check: {tool} not installed and CI unset");
    }
    found
}
