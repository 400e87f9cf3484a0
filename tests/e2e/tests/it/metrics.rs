//! The Prometheus metrics of the coordinator and the share agents, scraped over real HTTP
//! during and after a deploy of 12 nodes over 2 shares, checked against what the public
//! API and the simulator say happened, and linted by the real `promtool check metrics`.
//! Also: a metrics listener off loopback without tokens refuses to start.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use testkit as fleet;
use tokio::io::AsyncWriteExt as _;
use vmedia_proto::v1 as pb;

const NODES: usize = 12;
const SHARES: usize = 2;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition (0.0.4) into samples; a line that is not a sample is an
/// error, so a malformed exposition fails here too.
fn parse(text: &str) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("not a sample: {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .map_err(|_| anyhow::anyhow!("bad value in {line:?}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| anyhow::anyhow!("unclosed labels in {line:?}"))?;
                let mut labels = BTreeMap::new();
                // Our label values hold no commas or quotes.
                for kv in body.split(',').filter(|s| !s.is_empty()) {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("bad label in {line:?}"))?;
                    labels.insert(k.to_string(), v.trim_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    Ok(out)
}

/// Sum of every sample of `name` whose labels include `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn has(samples: &[Sample], name: &str) -> bool {
    samples.iter().any(|(n, _, _)| n == name)
}

async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let r = http.get(url).send().await?;
    anyhow::ensure!(r.status() == 200, "{url}: HTTP {}", r.status());
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    anyhow::ensure!(ct.starts_with("text/plain; version=0.0.4"), "{url}: {ct}");
    Ok(r.text().await?)
}

/// `promtool check metrics` on `text`: Ok(true) clean, Ok(false) when promtool is not
/// installed and `CI` is unset (skipped loudly), an error otherwise.
async fn promtool(what: &str, text: &str) -> anyhow::Result<bool> {
    let spawned = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "promtool is not installed (Debian package prometheus; scripts/setup.sh installs it)"
            );
            eprintln!(
                "SKIPPED: promtool check metrics ({what}): promtool is not installed (apt-get install prometheus)"
            );
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("promtool stdin"))?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    anyhow::ensure!(
        out.status.code() == Some(0),
        "promtool check metrics on the {what} exposition: {} (0 clean, 1 parse error, 3 lint)\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(true)
}

/// Every node's (provision state, power state) from the public API.
async fn api_states(f: &fleet::Fleet) -> anyhow::Result<Vec<(String, String)>> {
    let mut c = f.nodes_client().await?;
    let r = c
        .list_nodes(pb::ListNodesRequest {
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.nodes
        .into_iter()
        .map(|n| (n.provision_state, n.power_state))
        .collect())
}

/// Coordinator invariants that hold at any moment.
fn check_coordinator_always(s: &[Sample]) -> anyhow::Result<()> {
    let started = sum(s, "vmedia_deploys_started_total", &[]);
    let ok = sum(s, "vmedia_deploys_succeeded_total", &[]);
    let failed = sum(s, "vmedia_deploys_failed_total", &[]);
    anyhow::ensure!(
        started >= ok + failed,
        "started {started} < succeeded {ok} + failed {failed}"
    );
    let nodes = sum(s, "vmedia_nodes_by_provision_state", &[]);
    anyhow::ensure!(nodes == NODES as f64, "nodes by state sum to {nodes}");
    let power = sum(s, "vmedia_nodes_by_power_state", &[]);
    anyhow::ensure!(power == NODES as f64, "nodes by power state sum to {power}");
    for name in [
        "vmedia_admission_queue_length",
        "vmedia_engine_commit_duration_seconds_count",
        "vmedia_deploy_duration_seconds_count",
    ] {
        anyhow::ensure!(has(s, name), "{name} missing");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_what_happened_and_pass_promtool() -> anyhow::Result<()> {
    let (mut spec, _dir) = e2e::spec(NODES, SHARES)?;
    spec.metrics = true;
    let capacity = spec.agent_capacity;
    let f = e2e::start(spec).await?;
    let result = async {
        let urls = f.metrics_urls();
        anyhow::ensure!(urls.len() == 1 + SHARES, "metrics URLs: {urls:?}");
        let coordinator_url = urls[0].1.clone();
        let http = reqwest::Client::new();

        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        let before = parse(&scrape(&http, &coordinator_url).await?)?;
        check_coordinator_always(&before)?;
        anyhow::ensure!(
            sum(
                &before,
                "vmedia_nodes_by_provision_state",
                &[("provision_state", "available")]
            ) == NODES as f64,
            "available before the deploy"
        );
        f.bulk(&uuids, "deploy").await?;

        // Scrape every service while the deploy runs, until every node has settled.
        let mut during = 0usize;
        let nodes = loop {
            for (service, url) in &urls {
                let text = scrape(&http, url).await?;
                let s = parse(&text).map_err(|e| e.context(format!("{service} exposition")))?;
                if service == "coordinator" {
                    check_coordinator_always(&s)?;
                }
                during += 1;
            }
            let nodes = f.list_all().await?;
            if nodes
                .iter()
                .all(|n| n.provision_state == "active" || fleet::is_failed(n))
            {
                break nodes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let active = nodes
            .iter()
            .filter(|n| n.provision_state == "active")
            .count();
        anyhow::ensure!(active == NODES, "{active} of {NODES} nodes active");

        // After: the coordinator's counts against the API.
        let text = scrape(&http, &coordinator_url).await?;
        let c = parse(&text)?;
        check_coordinator_always(&c)?;
        let states = api_states(&f).await?;
        let mut by_state: BTreeMap<&str, f64> = BTreeMap::new();
        let mut by_power: BTreeMap<&str, f64> = BTreeMap::new();
        for (p, w) in &states {
            *by_state.entry(p.as_str()).or_default() += 1.0;
            *by_power.entry(w.as_str()).or_default() += 1.0;
        }
        for (state, n) in &by_state {
            let g = sum(
                &c,
                "vmedia_nodes_by_provision_state",
                &[("provision_state", state)],
            );
            anyhow::ensure!(g == *n, "nodes {state}: gauge {g}, API {n}");
        }
        for power in ["power on", "power off"] {
            let g = sum(&c, "vmedia_nodes_by_power_state", &[("power_state", power)]);
            let n = by_power.get(power).copied().unwrap_or(0.0);
            anyhow::ensure!(g == n, "nodes {power}: gauge {g}, API {n}");
        }
        let ok = sum(&c, "vmedia_deploys_succeeded_total", &[]);
        anyhow::ensure!(
            ok == active as f64,
            "deploys succeeded {ok}, nodes active {active}"
        );
        anyhow::ensure!(sum(&c, "vmedia_deploys_started_total", &[]) >= ok);
        anyhow::ensure!(sum(&c, "vmedia_deploys_failed_total", &[]) == 0.0);
        anyhow::ensure!(
            sum(&c, "vmedia_deploy_duration_seconds_count", &[]) == ok,
            "one deploy duration per deploy"
        );
        anyhow::ensure!(sum(&c, "vmedia_admission_wait_seconds_count", &[]) >= ok);
        anyhow::ensure!(sum(&c, "vmedia_engine_commit_batch_nodes_count", &[]) > 0.0);
        anyhow::ensure!(
            sum(
                &c,
                "vmedia_node_state_duration_seconds_count",
                &[("provision_state", "wait call-back")]
            ) == ok,
            "every deploy left wait call-back once"
        );
        anyhow::ensure!(sum(&c, "vmedia_admission_queue_length", &[]) == 0.0);
        for k in 1..=SHARES {
            let agent = fleet::share_id(k);
            let a = [("agent", agent.as_str())];
            let cap = sum(&c, "vmedia_share_capacity_boots", &a);
            anyhow::ensure!(cap == f64::from(capacity), "{agent} capacity {cap}");
            anyhow::ensure!(
                sum(&c, "vmedia_share_healthy", &a) == 1.0,
                "{agent} healthy"
            );
            anyhow::ensure!(sum(&c, "vmedia_share_boots_in_flight", &a) == 0.0);
            anyhow::ensure!(sum(&c, "vmedia_share_free_bytes", &a) > 0.0);
        }
        // No label grows with the fleet: no node name or uuid anywhere.
        for n in &nodes {
            anyhow::ensure!(!text.contains(&n.uuid) && !text.contains(&n.name));
        }
        promtool("coordinator", &text).await?;

        // The agents, against the simulator's request counters.
        let mut agent_requests = 0.0;
        for (service, url) in &urls[1..] {
            let text = scrape(&http, url).await?;
            let s = parse(&text)?;
            let placed = nodes.iter().filter(|n| &n.share == service).count() as f64;
            let ops = sum(
                &s,
                "vmedia_agent_bmc_operations_total",
                &[("outcome", "ok")],
            );
            anyhow::ensure!(
                (ops > 0.0) == (placed > 0.0),
                "{service}: {ops} BMC operations for {placed} nodes"
            );
            anyhow::ensure!(
                sum(
                    &s,
                    "vmedia_agent_bmc_operations_total",
                    &[("outcome", "error")]
                ) == 0.0,
                "{service}: failed BMC operations"
            );
            let reports = sum(
                &s,
                "vmedia_agent_bmc_operations_total",
                &[("operation", "read_report"), ("outcome", "ok")],
            );
            anyhow::ensure!(
                reports == placed,
                "{service}: report.xml read {reports} times for {placed} nodes (once per BMC)"
            );
            let requests = sum(&s, "vmedia_agent_bmc_http_requests_total", &[]);
            anyhow::ensure!(
                requests >= ops,
                "{service}: {requests} requests < {ops} operations"
            );
            agent_requests += requests;
            anyhow::ensure!(
                sum(&s, "vmedia_agent_capacity_boots", &[]) == f64::from(capacity),
                "{service}: capacity"
            );
            anyhow::ensure!(sum(&s, "vmedia_agent_boots_in_flight", &[]) == 0.0);
            anyhow::ensure!(sum(&s, "vmedia_agent_share_free_bytes", &[]) > 0.0);
            // The deploy ISO and the instance image are URLs: one download each per
            // share, then a hit for every other node.
            let misses = sum(&s, "vmedia_agent_image_cache_misses_total", &[]);
            let hits = sum(&s, "vmedia_agent_image_cache_hits_total", &[]);
            let want_misses = if placed > 0.0 { 2.0 } else { 0.0 };
            anyhow::ensure!(misses == want_misses, "{service}: {misses} cache misses");
            anyhow::ensure!(
                hits == 2.0 * placed - want_misses,
                "{service}: {hits} cache hits for {placed} nodes"
            );
            promtool(service, &text).await?;
        }
        anyhow::ensure!(agent_requests > 0.0, "no BMC requests counted by any agent");
        let sim = f.sim_counters().await?;
        let sim_total = sim["total"]["total"].as_f64().unwrap_or(0.0);
        anyhow::ensure!(
            agent_requests == sim_total,
            "agents sent {agent_requests} BMC requests, the simulator answered {sim_total}"
        );
        anyhow::ensure!(during >= urls.len(), "scraped during the deploy");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}

/// A metrics listener off loopback without tokens: both services refuse to start, with
/// one line naming the option.
#[tokio::test]
async fn a_metrics_listener_off_loopback_without_tokens_refuses_to_start() -> anyhow::Result<()> {
    let bin = fleet::default_bin_dir()?;
    let dir = tempfile::tempdir()?;
    let out = tokio::process::Command::new(bin.join("coordinator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "coordinator started: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("metrics_listen"))
        .ok_or_else(|| anyhow::anyhow!("no line names metrics_listen: {err}"))?;
    anyhow::ensure!(line.contains("tokens_file"), "{line}");

    let share = dir.path().join("share");
    std::fs::create_dir_all(&share)?;
    let out = tokio::process::Command::new(bin.join("share-agent"))
        .args([
            "--metrics-listen",
            "0.0.0.0:0",
            "--remote-image-server",
            "127.0.0.1",
        ])
        .arg("--remote-image-share-root")
        .arg(&share)
        .output()
        .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "share agent started: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("metrics_listen"))
        .ok_or_else(|| anyhow::anyhow!("no line names metrics_listen: {err}"))?;
    anyhow::ensure!(line.contains("metrics_token_file"), "{line}");
    Ok(())
}
