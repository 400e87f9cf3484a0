//! The coordinator link over mutual TLS: the agent verifies the coordinator
//! against the configured CA and presents its client certificate.

use std::time::Duration;

use crate::common::*;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_dials_the_coordinator_over_mtls() {
    let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let client = rcgen::generate_simple_self_signed(vec!["share-agent".to_string()]).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            server.cert.pem(),
            server.signing_key.serialize_pem(),
        ))
        .client_ca_root(Certificate::from_pem(client.cert.pem()));
    let stub = FakeCoordinator::start_with(Some(tls)).await;

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("coordinator-ca.pem");
    let cert = dir.path().join("agent.pem");
    let key = dir.path().join("agent.key");
    std::fs::write(&ca, server.cert.pem()).unwrap();
    std::fs::write(&cert, client.cert.pem()).unwrap();
    std::fs::write(&key, client.signing_key.serialize_pem()).unwrap();
    let agent = start_agent(
        &stub,
        AgentOpts {
            https: true,
            extra_agent: format!(
                "coordinator_ca_file = \"{}\"\ncoordinator_cert_file = \"{}\"\ncoordinator_key_file = \"{}\"",
                ca.display(),
                cert.display(),
                key.display()
            ),
            ..Default::default()
        },
    )
    .await;
    let hello = tokio::time::timeout(Duration::from_secs(30), stub.hello(0))
        .await
        .unwrap();
    assert_eq!(hello.agent_id, "agent-under-test");
    let _ = stub.heartbeat().await;
    drop(agent);
}
