//! The gRPC port's limits, seen from a client: a bounded number of concurrent streams per
//! connection (read from the server's HTTP/2 SETTINGS with the `h2` crate, not tonic), and
//! AgentLink messages far smaller than the 64 MiB node requests may be.

use std::time::Duration;

use vmedia_proto::v1 as pb;
use vmedia_proto::v1::agent_link_client::AgentLinkClient;

use crate::common::Coordinator;

#[tokio::test]
async fn a_connection_gets_at_most_128_concurrent_streams() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), &[]);
    let addr = c.addr.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    // The server's SETTINGS frame arrives right after the preface; wait for it.
    let mut limit = send.current_max_send_streams();
    for _ in 0..100 {
        if limit != usize::MAX {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        send = send.ready().await.unwrap();
        limit = send.current_max_send_streams();
    }
    assert_eq!(
        limit, 128,
        "the coordinator advertises {limit} concurrent streams"
    );
}

#[tokio::test]
async fn an_oversized_agent_message_is_refused_and_the_coordinator_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path(), &[]);
    let mut link = AgentLinkClient::new(c.channel().await)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    let mut labels = std::collections::HashMap::new();
    labels.insert("padding".to_string(), "x".repeat(9 << 20));
    let hello = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::AgentHello {
            agent_id: "big".into(),
            labels,
            ..Default::default()
        })),
    };
    let outcome = match link.session(tokio_stream::iter(vec![hello])).await {
        Err(status) => status,
        Ok(resp) => {
            let mut stream = resp.into_inner();
            match stream.message().await {
                Err(status) => status,
                Ok(m) => panic!("a 9 MiB hello was accepted: {m:?}"),
            }
        }
    };
    assert!(
        matches!(
            outcome.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "unexpected refusal {outcome:?}"
    );
    // The coordinator still answers.
    let shares = c
        .shares()
        .await
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(shares.shares.is_empty());
}
