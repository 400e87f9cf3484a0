//! Attacks on the running system, each played against real processes, each asserting
//! the defended outcome. One scenario per attack; the attacker is the test.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A hostile BMC on loopback: answers every HTTP request with `body` as XML, then closes.
async fn hostile_bmc(body: Vec<u8>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                // Read the request head; the body (if any) does not matter.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// Runs `vmedia` under GNU time and returns (output, peak RSS in KiB).
async fn vmedia_peak_rss(args: &[&str]) -> anyhow::Result<(std::process::Output, u64)> {
    let bin = testkit::default_bin_dir()?.join("vmedia");
    let dir = tempfile::tempdir()?;
    let rss_file = dir.path().join("rss");
    let out = tokio::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(&bin)
        .args(args)
        .output()
        .await?;
    let rss: u64 = std::fs::read_to_string(&rss_file)?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()?;
    Ok((out, rss))
}

/// Whether `tool` runs; without it the test says so loudly, and fails under CI.
fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing; scripts/setup.sh installs it"
        );
        eprintln!("SKIPPED: {tool} is not installed; run scripts/setup.sh");
    }
    found
}

fn require_gnu_time() -> bool {
    if std::path::Path::new("/usr/bin/time").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "GNU time (/usr/bin/time, Debian package `time`) is missing; scripts/setup.sh installs it"
    );
    eprintln!("SKIPPED: GNU time (/usr/bin/time) is not installed; run scripts/setup.sh");
    false
}

/// A BMC answering report.xml with 8 MiB of empty elements: the CLI refuses it with a
/// one-line error naming the BMC and the operation, and its peak memory stays under
/// 32 MiB (it once reached 287 MB building two million elements).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xml_element_bomb_stays_under_32_mib() -> anyhow::Result<()> {
    if !require_gnu_time() {
        return Ok(());
    }
    let mut bomb = b"<?xml version=\"1.0\"?><Root>".to_vec();
    bomb.extend(std::iter::repeat_n(b"<a/>".as_slice(), 2 << 20).flatten());
    bomb.extend_from_slice(b"</Root>");
    let addr = hostile_bmc(bomb).await?;
    let port = addr.port().to_string();
    let (out, rss_kib) = tokio::time::timeout(
        Duration::from_secs(60),
        vmedia_peak_rss(&[
            "bmc",
            "info",
            "--address",
            "127.0.0.1",
            "--port",
            &port,
            "--http",
            "--username",
            "admin",
            "--password",
            "pw",
            "--timeout",
            "20",
        ]),
    )
    .await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("element bomb: peak RSS {rss_kib} KiB; stderr: {stderr}");
    assert!(!out.status.success(), "the bomb was accepted: {stderr}");
    assert!(
        stderr.contains("127.0.0.1") && stderr.contains("larger than"),
        "the error names neither the BMC nor the reason: {stderr}"
    );
    assert!(
        rss_kib < 32 * 1024,
        "peak RSS {rss_kib} KiB is over 32 MiB for a hostile 8 MiB reply"
    );
    Ok(())
}

/// 300 clients that open a connection to a share agent's image and call-back port and
/// send half a request head, then nothing: each is cut off once `http_header_timeout`
/// passes, and the fleet's nodes deploy meanwhile (they hold file descriptors the agent's
/// BMC sockets and share writes need).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_slow_clients_are_cut_off_while_a_deploy_completes() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(4, 1)?;
    spec.agent_args = vec!["--http-header-timeout".into(), "2s".into()];
    let f = e2e::start(spec).await?;
    let result = async {
        let http = *f
            .agent_http
            .first()
            .ok_or_else(|| anyhow::anyhow!("no share agent"))?;
        let mut slow = Vec::new();
        for _ in 0..300 {
            let mut s = tokio::net::TcpStream::connect(http).await?;
            s.write_all(b"GET /v1 HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
                .await?;
            slow.push(s);
        }
        let opened = std::time::Instant::now();
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        // Every slow connection is closed by the agent: a read ends (EOF or reset).
        let mut cut = 0usize;
        for s in &mut slow {
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(_) => cut += 1,
                Err(_) => break,
            }
        }
        let cut_after = opened.elapsed();
        anyhow::ensure!(
            cut == slow.len(),
            "only {cut} of {} slow clients were cut off",
            slow.len()
        );
        eprintln!("300 slow clients cut off within {cut_after:?}");
        let nodes = testkit::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || testkit::is_failed(n),
            |_| {},
        )
        .await?;
        for n in &nodes {
            anyhow::ensure!(
                n.provision_state == "active",
                "node {} ended {} ({})",
                n.uuid,
                n.provision_state,
                n.last_error
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}

/// A plain coordinator process on loopback (no TLS: the agent ids are then taken on
/// trust, which is the most an agent with one valid certificate gets anyway).
struct BareCoordinator {
    child: tokio::process::Child,
    url: String,
    dir: tempfile::TempDir,
}

impl BareCoordinator {
    async fn start() -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt as _;
        let dir = tempfile::tempdir()?;
        let mut child =
            tokio::process::Command::new(testkit::default_bin_dir()?.join("coordinator"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--callback-timeout",
                    "10m",
                    "--data-dir",
                ])
                .arg(dir.path())
                .env("COORDINATOR_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .unwrap_or_default();
        let addr = first
            .trim()
            .strip_prefix("coordinator listening on ")
            .ok_or_else(|| anyhow::anyhow!("unexpected first line {first:?}"))?
            .to_string();
        Ok(Self {
            child,
            url: format!("http://{addr}"),
            dir,
        })
    }

    async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(tonic::transport::Channel::from_shared(self.url.clone())?
            .connect()
            .await?)
    }
}

impl Drop for BareCoordinator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn node(i: u8) -> vmedia_proto::v1::CreateNodeRequest {
    vmedia_proto::v1::CreateNodeRequest {
        name: format!("victim-{i}"),
        driver_info: [
            ("irmc_address", format!("10.9.0.{i}")),
            ("irmc_username", "admin".into()),
            ("irmc_password", "bmc-secret".into()),
            ("deploy_iso", "deploy.iso".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        instance_info: [
            ("image_source", "http://127.0.0.1:1/image.raw"),
            ("image_checksum", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        macs: vec![format!("52:54:00:09:00:{i:02x}")],
        ..Default::default()
    }
}

async fn states(
    nodes: &mut vmedia_proto::v1::nodes_client::NodesClient<tonic::transport::Channel>,
    uuids: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for u in uuids {
        let n = nodes
            .get_node(vmedia_proto::v1::GetNodeRequest { node: u.clone() })
            .await?
            .into_inner();
        out.push(n.provision_state);
    }
    Ok(out)
}

async fn wait_states(
    nodes: &mut vmedia_proto::v1::nodes_client::NodesClient<tonic::transport::Channel>,
    uuids: &[String],
    want: &str,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if states(nodes, uuids).await?.iter().all(|s| s == want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("nodes not {want}: {:?}", states(nodes, uuids).await?)
}

/// A second share agent reports a deploy step of a node placed on the first as
/// succeeded, and relays a ramdisk lookup for it: the coordinator refuses both, and the
/// node stays where its own agent left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agents_forged_result_is_refused() -> anyhow::Result<()> {
    use testkit::agentlink::fake_agent::{AgentBehaviour, FakeAgent};
    use vmedia_proto::v1 as pb;

    let c = BareCoordinator::start().await?;
    // The victim's agent: its deploys hang in PrepareRamdisk, so nothing moves unless
    // someone else reports.
    let mut a = AgentBehaviour::new("agent-a", 8);
    a.stall_deploys = true;
    let victim_agent = FakeAgent::connect(c.channel().await?, a).await;
    let mut nodes = pb::nodes_client::NodesClient::new(c.channel().await?);
    let mut uuids = Vec::new();
    for i in 1..=2 {
        uuids.push(nodes.create_node(node(i)).await?.into_inner().uuid);
    }
    for (verb, state) in [
        ("manage", "manageable"),
        ("provide", "available"),
        ("deploy", "deploying"),
    ] {
        nodes
            .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
                nodes: uuids.clone(),
                selector: None,
                target: verb.into(),
            })
            .await?;
        wait_states(&mut nodes, &uuids, state).await?;
    }
    // The job ids the victim's agent holds (the attacker is assumed to know them).
    let mut jobs: Vec<(String, String)> = Vec::new();
    for _ in 0..100 {
        jobs = victim_agent
            .stats
            .lock()
            .map_err(|_| anyhow::anyhow!("stats poisoned"))?
            .jobs
            .iter()
            .filter(|(_, _, k)| *k == "prepare_ramdisk")
            .map(|(n, j, _)| (n.clone(), j.clone()))
            .collect();
        if jobs.len() == uuids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(jobs.len() == uuids.len(), "the victim agent got {jobs:?}");

    // The attacker: a second agent with a session of its own.
    let (up, up_rx) = tokio::sync::mpsc::unbounded_channel::<pb::AgentMessage>();
    up.send(pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::AgentHello {
            agent_id: "agent-rogue".into(),
            version: "test".into(),
            capacity: 1,
            http_url: "http://127.0.0.1:1".into(),
            ..Default::default()
        })),
    })?;
    let mut link = pb::agent_link_client::AgentLinkClient::new(c.channel().await?);
    let mut down = link.session(tokio_stream_from(up_rx)).await?.into_inner();
    let welcome = down.message().await?;
    anyhow::ensure!(
        matches!(
            welcome.and_then(|m| m.msg),
            Some(pb::coordinator_message::Msg::Welcome(_))
        ),
        "the rogue agent was not welcomed"
    );
    for (node_uuid, job_id) in &jobs {
        up.send(pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::JobUpdate(pb::JobUpdate {
                job_id: job_id.clone(),
                node_uuid: node_uuid.clone(),
                state: pb::JobState::Succeeded as i32,
                ..Default::default()
            })),
        })?;
    }
    // A relayed lookup for the victims by MAC finds nothing for this agent.
    let lookup = link
        .ramdisk_lookup(pb::RamdiskLookupRequest {
            agent_id: "agent-rogue".into(),
            addresses: vec!["52:54:00:09:00:01".into()],
            node_uuid: String::new(),
        })
        .await;
    anyhow::ensure!(
        lookup
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::NotFound),
        "a lookup relayed by another share's agent answered: {lookup:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = states(&mut nodes, &uuids).await?;
    anyhow::ensure!(
        now.iter().all(|s| s == "deploying"),
        "a forged result moved the victims: {now:?}"
    );
    drop(up);
    drop(victim_agent);
    Ok(())
}

fn tokio_stream_from(
    rx: tokio::sync::mpsc::UnboundedReceiver<vmedia_proto::v1::AgentMessage>,
) -> impl futures::Stream<Item = vmedia_proto::v1::AgentMessage> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

/// Someone who reads a node's agent token off the share (the parameter image) waits for
/// the real ramdisk's first heartbeat and then heartbeats with the token, naming a
/// call-back URL of their own: the heartbeat is refused, and the deploy finishes with the
/// real ramdisk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_after_the_first_heartbeat_is_refused() -> anyhow::Result<()> {
    use vmedia_proto::v1 as pb;
    if !have("mtype") {
        return Ok(());
    }
    let (mut spec, _dir) = e2e::spec(1, 1)?;
    // Slow BMC answers keep the node deploying for a while after the heartbeat.
    spec.sim_args
        .extend(["--fault".into(), "latency=400ms".into()]);
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        let uuid = uuids[0].clone();
        let mut watch = f
            .nodes_client()
            .await?
            .watch(pb::WatchRequest {
                node: uuid.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        f.bulk(&uuids, "deploy").await?;
        // The thief reads the token from the parameter image on the share.
        let params = testkit::share_dir(&f.spec.work_dir, 1)
            .join("nodes")
            .join(&uuid)
            .join("params.img");
        let mut token = None;
        for _ in 0..600 {
            if params.is_file() {
                let out = std::process::Command::new("mtype")
                    .arg("-i")
                    .arg(&params)
                    .arg("::parameters.txt")
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                token = text
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("ipa-agent-token="))
                    .map(str::to_string);
                if token.is_some() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let token = token.ok_or_else(|| anyhow::anyhow!("no token found on the share"))?;
        // Wait for the real ramdisk's first heartbeat: wait call-back, then deploying.
        let mut waited = false;
        loop {
            let ev = tokio::time::timeout(e2e::SETTLE, watch.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
            if ev.provision_state == "wait call-back" {
                waited = true;
            } else if waited && ev.provision_state == "deploying" {
                break;
            } else if ev.provision_state == "active" || ev.provision_state.ends_with("failed") {
                anyhow::bail!("the node ended {} before the theft", ev.provision_state);
            }
        }
        let agent = *f
            .agent_http
            .first()
            .ok_or_else(|| anyhow::anyhow!("no agent"))?;
        let resp = reqwest::Client::new()
            .post(format!("http://{agent}/v1/heartbeat/{uuid}"))
            .header("X-OpenStack-Ironic-API-Version", "1.68")
            .json(&serde_json::json!({
                "callback_url": "http://127.0.0.1:9/",
                "agent_token": token,
                "agent_version": "13.0.0",
            }))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        anyhow::ensure!(
            status == reqwest::StatusCode::BAD_REQUEST,
            "the thief's heartbeat got {status}: {body}"
        );
        anyhow::ensure!(!body.contains(&token), "the reply echoes the token");
        let nodes = testkit::wait_until(
            &f.coordinator_url(),
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || testkit::is_failed(n),
            |_| {},
        )
        .await?;
        anyhow::ensure!(
            nodes[0].provision_state == "active",
            "the node ended {} ({})",
            nodes[0].provision_state,
            nodes[0].last_error
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}

/// One node's row is changed behind the coordinator's back (another writer bumps its
/// version) while six deploys wait on their first job: the batch that carries all six
/// results is refused by the store for that one row, and the five other nodes still get
/// their results committed and deploy to `active`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_does_not_lose_other_nodes_results() -> anyhow::Result<()> {
    use testkit::agentlink::fake_agent::{AgentBehaviour, FakeAgent};
    use vmedia_proto::v1 as pb;
    if !have("python3") {
        return Ok(());
    }
    let c = BareCoordinator::start().await?;
    let mut a = AgentBehaviour::new("agent-a", 16);
    // Long enough to change the row while the jobs run; equal, so the results arrive
    // together and share a commit batch.
    a.job_time = Duration::from_millis(2500);
    let _agent = FakeAgent::connect(c.channel().await?, a).await;
    let mut nodes = pb::nodes_client::NodesClient::new(c.channel().await?);
    let mut uuids = Vec::new();
    for i in 1..=6 {
        uuids.push(nodes.create_node(node(i)).await?.into_inner().uuid);
    }
    for (verb, state) in [("manage", "manageable"), ("provide", "available")] {
        nodes
            .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
                nodes: uuids.clone(),
                selector: None,
                target: verb.into(),
            })
            .await?;
        wait_states(&mut nodes, &uuids, state).await?;
    }
    nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            nodes: uuids.clone(),
            selector: None,
            target: "deploy".into(),
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The other writer: bump the victim's version in the coordinator's own database.
    let victim = uuids[0].replace('-', "");
    let db = c.dir.path().join("coordinator.sqlite");
    let script = format!(
        "import sqlite3\nc = sqlite3.connect({db:?}, timeout=30)\nc.execute(\"UPDATE nodes SET version = version + 1000 WHERE uuid = x'{victim}'\")\nc.commit()\nprint(c.total_changes)",
        db = db.display().to_string()
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await?;
    anyhow::ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == "1",
        "the row was not changed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everyone else deploys.
    let others = &uuids[1..];
    wait_states(&mut nodes, others, "active").await?;
    Ok(())
}

/// One iRMC of six accepts connections and never answers. Its node fails `manage` with
/// a `last_error` naming the BMC and the timeout, within one `irmc_client_timeout` (no
/// request to a hung BMC is sent twice, and the failure is not retried); the five
/// others are verified, provided and deployed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_bmc_fails_its_node_at_one_deadline_while_the_others_deploy() -> anyhow::Result<()> {
    use vmedia_proto::v1 as pb;
    const HUNG: usize = 2;
    const TIMEOUT_S: u64 = 4;
    let (mut spec, _dir) = e2e::spec(6, 1)?;
    spec.sim_args
        .extend(["--fault".into(), format!("node={HUNG},hang")]);
    let f = e2e::start(spec).await?;
    let result = async {
        let mut nodes = f.nodes_client().await?;
        let mut uuids = Vec::new();
        for i in 0..f.spec.nodes {
            let mut req = f.node_request(i);
            req.driver_info
                .insert("irmc_client_timeout".into(), TIMEOUT_S.to_string());
            uuids.push(nodes.create_node(req).await?.into_inner().uuid);
        }
        let hung_uuid = uuids[HUNG].clone();
        let hung_bmc = f.bmc_addresses[HUNG].to_string();
        let t0 = std::time::Instant::now();
        f.bulk(&uuids, "manage").await?;
        let mut failed_after = None;
        let deadline = t0 + e2e::SETTLE;
        loop {
            let n = nodes
                .get_node(pb::GetNodeRequest {
                    node: hung_uuid.clone(),
                })
                .await?
                .into_inner();
            if !n.last_error.is_empty() {
                failed_after = Some((t0.elapsed(), n.provision_state, n.last_error));
                break;
            }
            if std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (after, state, error) =
            failed_after.ok_or_else(|| anyhow::anyhow!("the hung BMC's node never failed"))?;
        eprintln!("hung BMC: node failed after {after:?} in {state}: {error}");
        anyhow::ensure!(
            error.contains(&hung_bmc) && error.contains("irmc_client_timeout"),
            "the error names neither the BMC nor the timeout: {error}"
        );
        anyhow::ensure!(state != "manageable", "the hung node was verified");
        // One deadline plus the machinery around it, on a loaded 2-core machine: far
        // below the minutes that retrying a hung BMC costs.
        anyhow::ensure!(
            after < Duration::from_secs(TIMEOUT_S * 5),
            "the hung BMC's node took {after:?} to fail (irmc_client_timeout {TIMEOUT_S}s)"
        );
        // The others carry on.
        let others: Vec<String> = uuids.iter().filter(|u| **u != hung_uuid).cloned().collect();
        for (verb, want) in [
            ("manage", "manageable"),
            ("provide", "available"),
            ("deploy", "active"),
        ] {
            if verb != "manage" {
                f.bulk(&others, verb).await?;
            }
            let limit = std::time::Instant::now() + e2e::SETTLE;
            loop {
                let mut pending = Vec::new();
                for u in &others {
                    let n = nodes
                        .get_node(pb::GetNodeRequest { node: u.clone() })
                        .await?
                        .into_inner();
                    if n.provision_state != want {
                        pending.push(format!("{} {} {}", n.uuid, n.provision_state, n.last_error));
                    }
                }
                if pending.is_empty() {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < limit,
                    "{verb}: not {want}: {pending:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}
