//! A hostile deploy ramdisk (or whoever answers at its call-back URL): an endless reply
//! is cut off, and an error that echoes the request does not carry the agent token,
//! control characters or an unbounded text into the node's error.

use std::time::Duration;

use secret::Secret;
use share_agent::ramdisk::{MAX_REPLY_BYTES, RamdiskClient};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Answers one request per connection with `status` and `body(request head)`.
async fn ramdisk(
    status: u16,
    body: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&seen).to_string();
                let b = body(&head);
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = s.write_all(&b).await;
            });
        }
    });
    addr
}

fn client(addr: std::net::SocketAddr, token: &str) -> RamdiskClient {
    RamdiskClient::new(
        reqwest::Client::new(),
        &format!("http://{addr}"),
        Secret::new(token.to_string()),
        "node-1",
        "10.0.0.1",
    )
    .unwrap()
}

#[tokio::test]
async fn an_endless_reply_is_cut_off() {
    let addr = ramdisk(200, |_| {
        let mut b = b"{\"command_status\": \"SUCCEEDED\", \"pad\": \"".to_vec();
        b.extend(std::iter::repeat_n(b'x', MAX_REPLY_BYTES + 1));
        b.extend_from_slice(b"\"}");
        b
    })
    .await;
    let err = client(addr, "tok")
        .command(
            "deploy.get_deploy_steps",
            serde_json::json!({}),
            true,
            Duration::from_secs(30),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than"), "{err}");
    assert!(err.contains("node-1") && err.contains("10.0.0.1"), "{err}");
}

#[tokio::test]
async fn an_echoed_token_stays_out_of_the_error() {
    let token = "T0KEN-abcdef0123456789";
    // The ramdisk fails the command and quotes the whole request line back, with a
    // forged log line and far too much text.
    let addr = ramdisk(200, |head| {
        let line = head.lines().next().unwrap_or_default().to_string();
        serde_json::to_vec(&serde_json::json!({
            "command_status": "FAILED",
            "command_error": {"details": format!("bad request {line}\nERROR forged line {}", "y".repeat(5000))},
        }))
        .unwrap()
    })
    .await;
    let err = client(addr, token)
        .command(
            "deploy.execute_deploy_step",
            serde_json::json!({}),
            true,
            Duration::from_secs(30),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains(token), "the token leaked: {err}");
    assert!(err.contains("******"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(err.len() < 1024, "{} bytes", err.len());
}
