//! Test harness: the real `coordinator` binary on a loopback port, and the fake share
//! agent of `testkit::agentlink` that speaks AgentLink over a real socket and plays the
//! deploy ramdisk's part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use testkit::agentlink::fake_agent::{AgentBehaviour, FakeAgent};
use tonic::transport::Channel;
use vmedia_proto::v1 as pb;
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
