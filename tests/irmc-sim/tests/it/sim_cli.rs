//! The `irmc-sim` binary as a parent process sees it: ready output (text and JSON),
//! `--cert-out`, `--control`, `--fault`, `--state-file`, clean exit on SIGTERM, and a
//! 10,000-node start-up smoke test (start-up time and RSS are printed for the record).

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_irmc-sim");

struct Proc {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Proc {
    fn spawn(args: &[String]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("IRMC_SIM_PASSWORD")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proc { child, lines }
    }

    fn line(&mut self) -> String {
        self.lines.next().expect("irmc-sim exited early").unwrap()
    }

    /// SIGTERM and wait; returns the exit status success.
    fn stop(mut self) -> bool {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.success();
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_ready_control_faults_cert_and_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.pem");
    let state = dir.path().join("state.json");
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "s3cr3t-bmc\n").unwrap();
    let base = support::random_base();
    let mut p = Proc::spawn(&[
        s("--count"),
        s("3"),
        s("--base-address"),
        base.to_string(),
        s("--https-port"),
        s("0"),
        s("--http-port"),
        s("0"),
        s("--username"),
        s("admin"),
        s("--password-file"),
        pwfile.display().to_string(),
        s("--model"),
        s("S5"),
        s("--json"),
        s("--control"),
        s("127.0.0.1:0"),
        s("--cert-out"),
        cert.display().to_string(),
        s("--fault"),
        s("node=1,error-rate=1"),
        s("--share-map"),
        format!("127.0.0.1/share={}", dir.path().display()),
        s("--state-file"),
        state.display().to_string(),
    ]);
    let ready: serde_json::Value = serde_json::from_str(&p.line()).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["firmware"], "1.25P");
    let nodes = ready["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["address"], base.to_string());
    let https0 = nodes[0]["https"].as_str().unwrap().to_string();
    let https1 = nodes[1]["https"].as_str().unwrap().to_string();
    let http0 = nodes[0]["http"].as_str().unwrap().to_string();
    assert!(https0.starts_with(&format!("https://{base}:")), "{https0}");
    let ctl = format!("http://{}", ready["control"].as_str().unwrap());

    // TLS verifies against the CA written by --cert-out.
    let pem = std::fs::read_to_string(&cert).unwrap();
    let c = support::client_with_ca(&pem);
    let r = c
        .get(format!("{https0}/report.xml"))
        .basic_auth("admin", Some("s3cr3t-bmc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("OS=\"iRMC S5\""));
    let r = c
        .get(format!("{https1}/report.xml"))
        .basic_auth("admin", Some("s3cr3t-bmc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    // Plain HTTP too; write CD settings with a share password.
    let body = "<CMDSEQ><CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A62\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\" Encrypted=\"0\">share-pw-XYZ</DATA></CMD><CMD Context=\"SCCI\" OC=\"PowerOnCabinet\" OE=\"0\" OI=\"0\" Type=\"SET\"/></CMDSEQ>";
    let r = reqwest::Client::new()
        .post(format!("{http0}/config"))
        .basic_auth("admin", Some("s3cr3t-bmc"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("<Value>0</Value>"));

    let cc = reqwest::Client::new();
    let n0: serde_json::Value = cc
        .get(format!("{ctl}/nodes/0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(n0["state"]["power"], "On");
    assert_eq!(n0["state"]["cd"]["password"], "******");
    assert_eq!(n0["state"]["counters"]["scci"]["PowerOnCabinet"], 1);
    let n1: serde_json::Value = cc
        .get(format!("{ctl}/nodes/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(n1["faults"]["error_rate"], 1.0);

    assert!(p.stop(), "irmc-sim should exit 0 on SIGTERM");
    let st = std::fs::read_to_string(&state).unwrap();
    assert!(st.contains("\"power\": \"On\""), "{st}");
    assert!(!st.contains("share-pw-XYZ") && !st.contains("s3cr3t-bmc"));

    // A restart with the same state file resumes power and media state (no passwords,
    // fresh counters).
    let mut p = Proc::spawn(&[
        s("--count"),
        s("3"),
        s("--base-address"),
        base.to_string(),
        s("--https-port"),
        s("0"),
        s("--json"),
        s("--control"),
        s("127.0.0.1:0"),
        s("--state-file"),
        state.display().to_string(),
    ]);
    let ready: serde_json::Value = serde_json::from_str(&p.line()).unwrap();
    let ctl = format!("http://{}", ready["control"].as_str().unwrap());
    let n0: serde_json::Value = cc
        .get(format!("{ctl}/nodes/0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(n0["state"]["power"], "On");
    assert_eq!(n0["state"]["boot_generation"], 1);
    assert_eq!(n0["state"]["cd"]["password"], "");
    assert_eq!(n0["state"]["counters"]["total"], 0);
    assert!(p.stop());
}

#[test]
fn text_ready_lines_and_bad_flags() {
    let base = support::random_base();
    let mut p = Proc::spawn(&[
        s("--count"),
        s("2"),
        s("--base-address"),
        base.to_string(),
        s("--https-port"),
        s("0"),
    ]);
    let l0 = p.line();
    let l1 = p.line();
    let ready = p.line();
    assert!(
        l0.starts_with(&format!("node 0 {base} https=https://{base}:")),
        "{l0}"
    );
    let ip1 = Ipv4Addr::from(u32::from(base) + 1);
    assert!(l1.starts_with(&format!("node 1 {ip1} https=")), "{l1}");
    assert!(ready.starts_with("ready nodes=2 "), "{ready}");
    assert!(p.stop());

    // The boot simulation flags are accepted and start the same way.
    let dir = tempfile::tempdir().unwrap();
    let mut p = Proc::spawn(&[
        s("--base-address"),
        support::random_base().to_string(),
        s("--https-port"),
        s("0"),
        s("--boot"),
        s("--fast-ramdisk"),
        s("--boot-delay"),
        s("10ms"),
        s("--download-limit"),
        s("1000000"),
        s("--ipa-port"),
        s("0"),
        s("--disk-dir"),
        dir.path().display().to_string(),
    ]);
    p.line();
    assert!(p.line().starts_with("ready nodes=1 "));
    assert!(p.stop());

    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), "{not json").unwrap();
    for bad in [
        vec![
            s("--https-port"),
            s("0"),
            s("--state-file"),
            junk.path().display().to_string(),
        ],
        vec![s("--fault"), s("bogus")],
        vec![s("--model"), s("S9")],
        vec![s("--auth"), s("ntlm")],
        vec![
            s("--base-address"),
            s("10.0.0.1"),
            s("--https-port"),
            s("0"),
        ],
        vec![s("--share-map"), s("nothing")],
        vec![
            s("--disk-dir"),
            s("/nonexistent"),
            s("--https-port"),
            s("0"),
        ],
    ] {
        let out = Command::new(BIN).args(&bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.is_empty() && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
    }
}

/// 10,000 simulated iRMCs on one fixed high port: start-up must be quick and cheap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_nodes_start_up_smoke() {
    // 10,000 nodes span 40 /24s; keep the base clear of support::random_base's range.
    let x: u8 = rand::random_range(201..=250);
    let y: u8 = rand::random_range(0..=200);
    let base = Ipv4Addr::new(127, x, y, 1);
    let port: u16 = rand::random_range(20_000..60_000);
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.pem");
    let t = Instant::now();
    let mut p = Proc::spawn(&[
        s("--count"),
        s("10000"),
        s("--base-address"),
        base.to_string(),
        s("--https-port"),
        port.to_string(),
        // Two sockets per node (HTTPS + IPMI) would not fit this machine's hard limit of
        // 20,000 open files; the fleet runs without IPMI the same way.
        s("--no-ipmi"),
        s("--json"),
        s("--cert-out"),
        cert.display().to_string(),
        s("--control"),
        s("127.0.0.1:0"),
    ]);
    let ready: serde_json::Value = serde_json::from_str(&p.line()).unwrap();
    let wall = t.elapsed();
    let nodes = ready["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 10_000);
    let startup_ms = ready["startup_ms"].as_u64().unwrap();
    let rss = ready["rss_kib"].as_u64().unwrap();
    println!(
        "10000 nodes: startup_ms={startup_ms} (wall {} ms to ready) rss_kib={rss} nofile={}",
        wall.as_millis(),
        ready["nofile"]
    );
    assert!(startup_ms < 30_000, "start-up took {startup_ms} ms");

    // First, middle and last node answer over TLS verified with the CA.
    let pem = std::fs::read_to_string(&cert).unwrap();
    let c = support::client_with_ca(&pem);
    for i in [0usize, 4_999, 9_999] {
        let u = nodes[i]["https"].as_str().unwrap();
        let r = c.get(format!("{u}/redfish/v1/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "node {i}");
    }
    // TLS to 1,000 distinct nodes (each makes its certificate on first use), 64 at a time.
    let cert = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only([cert])
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in (0..10_000).step_by(10) {
        let u = format!("{}/redfish/v1/", nodes[i]["https"].as_str().unwrap());
        let (c, sem) = (c.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            c.get(u).send().await.unwrap().status()
        });
    }
    while let Some(st) = set.join_next().await {
        assert_eq!(st.unwrap(), 200);
    }
    let rss_after = std::fs::read_to_string(format!("/proc/{}/status", p.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap();
    println!(
        "10000 nodes: first TLS request to 1000 distinct nodes in {} ms; rss_kib after={rss_after}",
        t.elapsed().as_millis()
    );
    let last: Ipv4Addr = nodes[9_999]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(last.octets()[0], 127);
    let ctl = format!("http://{}", ready["control"].as_str().unwrap());
    let h: serde_json::Value = reqwest::get(format!("{ctl}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["nodes"], 10_000);
    let t = Instant::now();
    assert!(p.stop());
    println!("10000 nodes: shutdown {} ms", t.elapsed().as_millis());
}

/// Even at trace level, neither the BMC password nor share passwords reach the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_logged_even_at_trace() {
    let base = support::random_base();
    let mut child = Command::new(BIN)
        .args([
            "--count",
            "1",
            "--base-address",
            &base.to_string(),
            "--no-https",
            "--http-port",
            "0",
        ])
        .args(["--fault", "node=0,latency=1ms"])
        .env("RUST_LOG", "trace")
        .env("IRMC_SIM_PASSWORD", "bmc-PW-123")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let l0 = lines.next().unwrap().unwrap();
    let url = l0
        .split_whitespace()
        .find_map(|t| t.strip_prefix("http="))
        .unwrap()
        .to_string();
    let c = reqwest::Client::new();
    let body = "<CMDSEQ><CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A62\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\" Encrypted=\"0\">share-PW-456</DATA></CMD><CMD Context=\"SCCI\" OC=\"ConnectRemoteCdImage\" OE=\"0\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::integer\">1</DATA></CMD></CMDSEQ>";
    let r = c
        .post(format!("{url}/config"))
        .basic_auth("admin", Some("bmc-PW-123"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<Severity>Error</Severity>")
    );
    let r = c
        .get(format!("{url}/report.xml"))
        .basic_auth("admin", Some("wrong-PW-789"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("SCCI command failed"),
        "expected trace output: {log}"
    );
    for secret in ["bmc-PW-123", "share-PW-456", "wrong-PW-789", "YWRtaW46"] {
        assert!(!log.contains(secret), "{secret} leaked into logs");
    }
}
