//! The ramdisk side: Ironic's lookup/heartbeat endpoints on the agent, and a
//! write-image job against a fake deploy ramdisk speaking ironic-python-agent's
//! command API (an in-test HTTP server on 127.0.0.1:0), which downloads the
//! image from the agent's HTTP (Range included) and heartbeats through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use vmedia_proto::v1 as pb;

const VERSION: (&str, &str) = ("X-OpenStack-Ironic-API-Version", "1.68");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ironic_ramdisk_endpoints() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(
        &stub,
        AgentOpts {
            log: Some("info".into()),
            ..Default::default()
        },
    )
    .await;
    stub.hello(0).await;
    let http = reqwest::Client::new();
    let base = agent.url();

    let root: Value = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        root["default_version"],
        json!({"id": "v1", "links": [], "status": "CURRENT", "min_version": "1.1", "version": "1.68"})
    );

    // Without the version header (= API 1.1) the ramdisk endpoints do not exist.
    let r = http
        .get(format!("{base}/v1/lookup?addresses=52:54:00:12:34:56"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    let inner: Value = serde_json::from_str(body["error_message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["faultcode"], "Client");
    assert!(inner["debuginfo"].is_null());
    let r = http
        .get(format!("{base}/v1/lookup?addresses=52:54:00:12:34:56"))
        .header(VERSION.0, "1.21")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Lookup relayed to the coordinator.
    let r = http
        .get(format!(
            "{base}/v1/lookup?addresses=52:54:00:12:34:56,52:54:00:aa:bb:cc"
        ))
        .header(VERSION.0, VERSION.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["node"]["uuid"], "known-node");
    assert_eq!(v["node"]["properties"]["cpus"], "8");
    assert_eq!(v["node"]["driver_internal_info"], json!({}));
    assert_eq!(v["config"]["heartbeat_timeout"], 30);
    assert_eq!(v["config"]["agent_token"], "******");
    assert_eq!(v["config"]["agent_token_required"], true);
    let r = http
        .get(format!("{base}/v1/lookup?addresses=52:54:00:00:00:01"))
        .header(VERSION.0, VERSION.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{base}/v1/lookup"))
        .header(VERSION.0, VERSION.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Heartbeat: 202 with the right token, 400 with a wrong or missing one.
    let hb = |token: Option<&str>| {
        let mut body = json!({"callback_url": "http://127.0.0.1:9999", "agent_version": "10.0.0"});
        if let Some(t) = token {
            body["agent_token"] = json!(t);
        }
        http.post(format!("{base}/v1/heartbeat/known-node"))
            .header(VERSION.0, VERSION.1)
            .json(&body)
            .send()
    };
    assert_eq!(
        hb(Some(GOOD_TOKEN)).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let bad = hb(Some("wrong-token-value")).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("Invalid or missing agent token received."),
        "{text}"
    );
    assert!(!text.contains("wrong-token-value"));
    assert_eq!(hb(None).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let seen = stub.ramdisk_heartbeats();
    assert_eq!(
        seen.len(),
        2,
        "a heartbeat without a token is refused by the agent itself"
    );
    assert_eq!(seen[0].callback_url, "http://127.0.0.1:9999");
    assert_eq!(seen[0].agent_id, "agent-under-test");
    let log = agent.log.lock().unwrap().clone();
    assert!(
        log.contains("heartbeat rejected"),
        "the rejection is logged"
    );
    assert!(
        !log.contains("wrong-token-value") && !log.contains(GOOD_TOKEN),
        "tokens never logged"
    );

    // Nothing is served that no job published, even when it exists on the share.
    std::fs::write(agent.share.join("secret.img"), b"x").unwrap();
    for path in [
        "/images/00000000000000000000000000000000/secret.img",
        "/secret.img",
        "/images/../secret.img",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// A fake ironic-python-agent: the command API plus the forced heartbeat.
#[derive(Clone)]
struct FakeIpa {
    commands: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
    downloaded: Arc<Mutex<Vec<u8>>>,
    range_ok: Arc<Mutex<bool>>,
    agent_url: String,
    node: String,
    /// PEM sent as agent_verify_ca (IPA auto-TLS), if serving HTTPS.
    ca_pem: Option<String>,
    /// Make write_image fail with this command_error.details.
    fail_write: Option<String>,
    /// What a URL given as write_image's configdrive served, as IPA downloads it.
    configdrive_fetched: Arc<Mutex<Option<Vec<u8>>>>,
}

#[derive(serde::Deserialize)]
struct Q {
    agent_token: Option<String>,
}

async fn list(State(f): State<FakeIpa>, Query(q): Query<Q>) -> (StatusCode, Json<Value>) {
    if q.agent_token.as_deref() != Some(GOOD_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"faultstring": "Token invalid."})),
        );
    }
    f.log.lock().unwrap().push("GET commands".into());
    (
        StatusCode::OK,
        Json(json!({"commands": *f.commands.lock().unwrap()})),
    )
}

async fn heartbeat(f: &FakeIpa) {
    let mut body = json!({"callback_url": "http://127.0.0.1:1", "agent_token": GOOD_TOKEN, "agent_version": "fake"});
    if let Some(pem) = &f.ca_pem {
        body["agent_verify_ca"] = json!(pem);
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v1/heartbeat/{}", f.agent_url, f.node))
        .header(VERSION.0, VERSION.1)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// Serves `app` over HTTPS with `ck`, a self-signed certificate for
/// 127.0.0.1 as IPA's auto-TLS makes.
async fn serve_tls(
    app: Router,
    ck: rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    (addr, task)
}

fn finish(f: &FakeIpa, idx: usize, result: Value) {
    let mut c = f.commands.lock().unwrap();
    c[idx]["command_status"] = json!("SUCCEEDED");
    c[idx]["command_result"] = result;
}

async fn run(
    State(f): State<FakeIpa>,
    Query(q): Query<Q>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if q.agent_token.as_deref() != Some(GOOD_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"faultstring": "Token invalid."})),
        );
    }
    let name = body["name"].as_str().unwrap().to_string();
    f.log.lock().unwrap().push(name.clone());
    let short = name.split('.').nth(1).unwrap().to_string();
    let mut entry = json!({"id": format!("cmd-{}", f.commands.lock().unwrap().len()), "command_name": short,
        "command_status": "RUNNING", "command_error": null, "command_result": null});
    let idx = {
        let mut c = f.commands.lock().unwrap();
        c.push(entry.clone());
        c.len() - 1
    };
    match name.as_str() {
        "deploy.get_deploy_steps" => {
            let r = json!({"deploy_steps": {"GenericHardwareManager": [
                {"step": "write_image", "priority": 0, "interface": "deploy", "reboot_requested": false}]},
                "hardware_manager_version": {"generic_hardware_manager": "1.2"}});
            finish(&f, idx, r.clone());
            entry["command_status"] = json!("SUCCEEDED");
            entry["command_result"] = r;
        }
        "deploy.execute_deploy_step" => {
            let step = body["params"]["step"].clone();
            let f2 = f.clone();
            tokio::spawn(async move {
                let info = &step["args"]["image_info"];
                let url = info["urls"][0].as_str().unwrap().to_string();
                let http = reqwest::Client::new();
                let r = http
                    .get(&url)
                    .header("Range", "bytes=0-9")
                    .send()
                    .await
                    .unwrap();
                let ok = r.status() == StatusCode::PARTIAL_CONTENT
                    && r.headers()["content-length"] == "10"
                    && r.headers()["accept-ranges"] == "bytes"
                    && r.headers()["content-range"]
                        .to_str()
                        .unwrap()
                        .starts_with("bytes 0-9/");
                *f2.range_ok.lock().unwrap() = ok && r.bytes().await.unwrap().len() == 10;
                if let Some(cd) = step["args"]["configdrive"]
                    .as_str()
                    .filter(|c| c.starts_with("http"))
                {
                    let got = http.get(cd).send().await.unwrap();
                    if got.status().is_success() {
                        *f2.configdrive_fetched.lock().unwrap() =
                            Some(got.bytes().await.unwrap().to_vec());
                    }
                }
                let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
                *f2.downloaded.lock().unwrap() = body.to_vec();
                if let Some(details) = &f2.fail_write {
                    {
                        let mut c = f2.commands.lock().unwrap();
                        c[idx]["command_status"] = json!("FAILED");
                        c[idx]["command_error"] = json!({"type": "ImageWriteError", "code": 500,
                            "message": "Error writing image", "details": details});
                    }
                    heartbeat(&f2).await;
                    return;
                }
                // Writing takes a while; then the forced heartbeat.
                tokio::time::sleep(Duration::from_millis(300)).await;
                finish(
                    &f2,
                    idx,
                    json!({"deploy_result": {"result": "prepare_image: image written"}, "deploy_step": step}),
                );
                heartbeat(&f2).await;
            });
        }
        "standby.get_partition_uuids" => {
            let r = json!({"root uuid": "0x1234abcd"});
            finish(&f, idx, r.clone());
            entry["command_status"] = json!("SUCCEEDED");
            entry["command_result"] = r;
        }
        "image.install_bootloader" => {
            assert_eq!(body["params"]["root_uuid"], "0x1234abcd");
            assert_eq!(body["params"]["target_boot_mode"], "uefi");
            let f2 = f.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                finish(&f2, idx, json!({"result": "install_bootloader: done"}));
                heartbeat(&f2).await;
            });
        }
        other => panic!("unexpected command {other}"),
    }
    (StatusCode::OK, Json(entry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_image_drives_the_ramdisk_and_serves_the_image() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(
        &stub,
        AgentOpts {
            log: Some("debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info".into()),
            ..Default::default()
        },
    )
    .await;
    stub.hello(0).await;
    let node = "3be26c0b-03f2-4d2e-ae87-c02d7f33c125";

    // The instance image lives on the share (used in place, checksum verified).
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(agent.share.join("images")).unwrap();
    std::fs::write(agent.share.join("images/disk.img"), &image).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&image))
    };

    let fake = FakeIpa {
        commands: Arc::default(),
        log: Arc::default(),
        downloaded: Arc::default(),
        range_ok: Arc::default(),
        agent_url: agent.url(),
        node: node.into(),
        ca_pem: None,
        fail_write: None,
        configdrive_fetched: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/commands/", get(list).post(run))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ipa = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    stub.send(pb::Job {
        job_id: "wi-1".into(),
        node_uuid: node.into(),
        bmc: Some(pb::BmcTarget {
            address: "127.0.0.1".into(),
            ..Default::default()
        }),
        kind: Some(pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: format!("http://{ipa}"),
            agent_token: GOOD_TOKEN.into(),
            image_source: "images/disk.img".into(),
            os_hash_algo: "sha256".into(),
            os_hash_value: sha.clone(),
            disk_format: "raw".into(),
            boot_mode: "uefi".into(),
            image_type: "whole-disk".into(),
            timeout_s: 60,
            ..Default::default()
        })),
    })
    .await;
    let done = stub.final_update("wi-1", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    let out = done.output.unwrap();
    assert_eq!(out.root_uuid, "0x1234abcd");
    assert_eq!(out.bmc_requests, 0, "write-image never talks to the BMC");

    let log = fake.log.lock().unwrap().clone();
    let posts: Vec<&String> = log.iter().filter(|l| !l.starts_with("GET")).collect();
    assert_eq!(
        posts,
        [
            "deploy.get_deploy_steps",
            "deploy.execute_deploy_step",
            "standby.get_partition_uuids",
            "image.install_bootloader"
        ]
    );
    assert_eq!(out.ramdisk_requests as usize, log.len());
    assert!(
        *fake.range_ok.lock().unwrap(),
        "Range request answered with 206 and the right headers"
    );
    assert!(
        *fake.downloaded.lock().unwrap() == image,
        "the ramdisk downloaded the exact image"
    );
    // The step sent carries Ironic's image_info.
    let cmds = fake.commands.lock().unwrap().clone();
    let step = &cmds[1]["command_result"]["deploy_step"];
    assert_eq!(step["step"], "write_image");
    let info = &step["args"]["image_info"];
    assert_eq!(info["id"], "disk.img");
    assert_eq!(info["os_hash_value"], json!(sha));
    assert_eq!(info["node_uuid"], node);
    assert_eq!(info["stream_raw_images"], true);
    // The URL is withdrawn once the job is over.
    let url = info["urls"][0].as_str().unwrap();
    assert!(url.starts_with(&agent.url()));
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Heartbeats went through the agent to the coordinator.
    assert!(
        stub.ramdisk_heartbeats()
            .iter()
            .any(|h| h.node_uuid == node)
    );

    // A failing write: the job fails with the ramdisk's error text.
    server.abort();
    stub.send(pb::Job {
        job_id: "wi-2".into(),
        node_uuid: node.into(),
        bmc: Some(pb::BmcTarget {
            address: "127.0.0.1".into(),
            ..Default::default()
        }),
        kind: Some(pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: format!("http://{ipa}"),
            agent_token: GOOD_TOKEN.into(),
            image_source: "images/disk.img".into(),
            timeout_s: 30,
            ..Default::default()
        })),
    })
    .await;
    let failed = stub.final_update("wi-2", Duration::from_secs(60)).await;
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert!(
        failed.error.contains(node) && failed.error.contains("deploy.get_deploy_steps"),
        "{}",
        failed.error
    );
    assert!(!failed.error.contains(GOOD_TOKEN), "{}", failed.error);
    let log = agent.log.lock().unwrap().clone();
    assert!(log.contains("write-image"), "the log was captured");
    assert!(
        !log.contains(GOOD_TOKEN),
        "the agent token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_image_over_ipa_auto_tls() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let node = "4be26c0b-03f2-4d2e-ae87-c02d7f33c126";
    let image = vec![42u8; 100_000];
    std::fs::write(agent.share.join("disk.img"), &image).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let fake = FakeIpa {
        commands: Arc::default(),
        log: Arc::default(),
        downloaded: Arc::default(),
        range_ok: Arc::default(),
        agent_url: agent.url(),
        node: node.into(),
        ca_pem: Some(ck.cert.pem()),
        fail_write: None,
        configdrive_fetched: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/commands/", get(list).post(run))
        .with_state(fake.clone());
    let (ipa, _server) = serve_tls(app, ck).await;
    let job = |id: &str| pb::Job {
        job_id: id.into(),
        node_uuid: node.into(),
        bmc: Some(pb::BmcTarget {
            address: "127.0.0.1".into(),
            ..Default::default()
        }),
        kind: Some(pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: format!("https://{ipa}"),
            agent_token: GOOD_TOKEN.into(),
            image_source: "disk.img".into(),
            image_checksum: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&image))
            },
            boot_mode: "bios".into(),
            timeout_s: 30,
            ..Default::default()
        })),
    };
    // Without the ramdisk's certificate the agent refuses the self-signed TLS.
    stub.send(job("tls-1")).await;
    let d = stub.final_update("tls-1", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Failed as i32);
    // The ramdisk's first heartbeat carries agent_verify_ca; from then on it verifies.
    heartbeat(&fake).await;
    stub.send(job("tls-2")).await;
    let d = stub.final_update("tls-2", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Succeeded as i32, "{}", d.error);
    assert_eq!(*fake.downloaded.lock().unwrap(), image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_fails_the_job_with_the_ramdisk_error() {
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(&stub, AgentOpts::default()).await;
    stub.hello(0).await;
    let node = "5be26c0b-03f2-4d2e-ae87-c02d7f33c127";
    std::fs::write(agent.share.join("disk.img"), vec![1u8; 10_000]).unwrap();
    let fake = FakeIpa {
        commands: Arc::default(),
        log: Arc::default(),
        downloaded: Arc::default(),
        range_ok: Arc::default(),
        agent_url: agent.url(),
        node: node.into(),
        ca_pem: None,
        fail_write: Some("disk /dev/sda is read-only".into()),
        configdrive_fetched: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/commands/", get(list).post(run))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ipa = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    stub.send(pb::Job {
        job_id: "fw-1".into(),
        node_uuid: node.into(),
        bmc: Some(pb::BmcTarget {
            address: "127.0.0.1".into(),
            ..Default::default()
        }),
        kind: Some(pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: format!("http://{ipa}/"),
            agent_token: GOOD_TOKEN.into(),
            image_source: "disk.img".into(),
            timeout_s: 30,
            ..Default::default()
        })),
    })
    .await;
    let d = stub.final_update("fw-1", Duration::from_secs(60)).await;
    assert_eq!(d.state, pb::JobState::Failed as i32);
    assert!(
        d.error.contains("disk /dev/sda is read-only"),
        "{}",
        d.error
    );
    assert!(
        d.error.contains(node) && d.error.contains("execute_deploy_step"),
        "{}",
        d.error
    );
    assert!(!d.retryable);
}

/// Reads `openstack/latest/meta_data.json` out of a config drive ISO with xorriso.
fn meta_data_of(iso: &[u8]) -> Value {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("cd.iso");
    std::fs::write(&path, iso).unwrap();
    let out = d.path().join("md.json");
    let st = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&path)
        .args(["-extract", "/openstack/latest/meta_data.json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_image_hands_over_the_config_drive() {
    if !have_tool("xorriso") {
        return;
    }
    let stub = FakeCoordinator::start().await;
    let agent = start_agent(
        &stub,
        AgentOpts {
            log: Some("debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info".into()),
            ..Default::default()
        },
    )
    .await;
    stub.hello(0).await;
    let node = "5a0e9d4c-0b1f-4c1e-9f3a-6c2d8e7f9a10";
    std::fs::create_dir_all(agent.share.join("images")).unwrap();
    std::fs::write(agent.share.join("images/disk.img"), vec![7u8; 100_000]).unwrap();
    let fake = FakeIpa {
        commands: Arc::default(),
        log: Arc::default(),
        downloaded: Arc::default(),
        range_ok: Arc::default(),
        agent_url: agent.url(),
        node: node.into(),
        ca_pem: None,
        fail_write: None,
        configdrive_fetched: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/commands/", get(list).post(run))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ipa = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let job = |id: &str, configdrive: String| pb::Job {
        job_id: id.into(),
        node_uuid: node.into(),
        bmc: Some(pb::BmcTarget {
            address: "127.0.0.1".into(),
            ..Default::default()
        }),
        kind: Some(pb::job::Kind::WriteImage(pb::WriteImage {
            callback_url: format!("http://{ipa}"),
            agent_token: GOOD_TOKEN.into(),
            image_source: "images/disk.img".into(),
            boot_mode: "bios".into(),
            image_type: "whole-disk".into(),
            timeout_s: 60,
            configdrive,
            node_name: "rack1-node5".into(),
            ..Default::default()
        })),
    };
    let last_step = |f: &FakeIpa| {
        let cmds = f.commands.lock().unwrap().clone();
        cmds.iter()
            .rev()
            .find(|c| c["command_name"] == "execute_deploy_step")
            .map(|c| c["command_result"]["deploy_step"].clone())
            .unwrap()
    };

    // The JSON form, small: built and inlined, in both places Ironic puts it.
    let small = json!({"meta_data": {"hostname": "n5"}, "user_data": "#cloud-config\npassword: SMALL-SECRET\n"});
    stub.send(job("cd-1", small.to_string())).await;
    let done = stub.final_update("cd-1", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    let step = last_step(&fake);
    let arg = step["args"]["configdrive"].as_str().unwrap().to_string();
    assert_eq!(step["args"]["image_info"]["configdrive"], json!(arg));
    let iso = boot_media::configdrive::decode(&arg, node).unwrap();
    let md = meta_data_of(&iso);
    assert_eq!(md["hostname"], "n5");
    assert_eq!(md["uuid"], node, "Ironic's default meta_data.uuid");
    assert_eq!(md["name"], "rack1-node5", "Ironic's default meta_data.name");

    // Large (incompressible user data): served from the agent's image server.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: String = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let big = json!({"meta_data": {"hostname": "n5"}, "user_data": format!("BIG-SECRET{noise}")});
    stub.send(job("cd-2", big.to_string())).await;
    let done = stub.final_update("cd-2", Duration::from_secs(60)).await;
    assert_eq!(done.state, pb::JobState::Succeeded as i32, "{}", done.error);
    let step = last_step(&fake);
    let url = step["args"]["configdrive"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/images/", agent.url())),
        "{url}"
    );
    assert_eq!(step["args"]["image_info"]["configdrive"], json!(url));
    let fetched = fake.configdrive_fetched.lock().unwrap().clone().unwrap();
    let iso =
        boot_media::configdrive::decode(std::str::from_utf8(&fetched).unwrap(), node).unwrap();
    assert_eq!(meta_data_of(&iso)["name"], "rack1-node5");
    // Withdrawn and deleted once the job is over.
    assert_eq!(
        reqwest::get(&url).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        !agent
            .share
            .join("nodes")
            .join(node)
            .join("configdrive")
            .exists()
    );

    // Garbage: the job fails before anything is written, naming node and field.
    stub.send(job("cd-3", "not base64 at all!".into())).await;
    let failed = stub.final_update("cd-3", Duration::from_secs(60)).await;
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert!(
        failed.error.contains(node)
            && failed.error.contains("configdrive")
            && failed
                .error
                .contains("neither a JSON, nor a URL, nor a base64 string"),
        "{}",
        failed.error
    );
    // A too-large encoded drive is refused with IPA's wording.
    let huge = boot_media::configdrive::encode(&vec![0u8; 65 * 1024 * 1024]);
    stub.send(job("cd-4", huge)).await;
    let failed = stub.final_update("cd-4", Duration::from_secs(60)).await;
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert!(
        failed.error.contains("exceeds maximum limit of 64MiB"),
        "{}",
        failed.error
    );
    let log = agent.log.lock().unwrap().clone();
    assert!(!log.contains("SMALL-SECRET") && !log.contains("BIG-SECRET"));
}
