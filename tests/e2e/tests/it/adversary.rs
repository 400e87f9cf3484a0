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
