//! Test harness: the fake coordinator from `testkit::agentlink` (an `AgentLink`
//! server on 127.0.0.1:0 that sends jobs and collects updates), the real `share-agent`
//! process, and an in-process `irmc-sim` on a random loopback /24.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use irmc_sim::{BootHook, BootSnapshot, NodeHandle, Sim, SimBuilder};
pub use testkit::agentlink::fake_coordinator::{FakeCoordinator, GOOD_TOKEN};
use tokio::io::{AsyncBufReadExt, BufReader};
use vmedia_proto::v1 as pb;

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
pub async fn start_agent(stub: &FakeCoordinator, opts: AgentOpts) -> AgentProc {
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
        transport: String::new(),
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
