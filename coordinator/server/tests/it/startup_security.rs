//! Start-up of the real `coordinator` binary around trust settings: development mode still
//! starts but says so loudly; a missing or wrong at-rest key stops it with a clear error
//! (never a silent fall-back to clear text); a token file is enforced.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the coordinator until it prints its address (then kills it) or exits; returns
/// (started, stderr).
fn run(args: &[&str], data_dir: &Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("COORDINATOR_LOG")
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap_or(0);
        let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    let started =
        matches!(rx.recv_timeout(Duration::from_secs(30)), Ok(l) if l.contains("listening on"));
    if started {
        // Give the start-up warnings time to reach the log.
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (started, std::fs::read_to_string(err_path).unwrap())
}

#[test]
fn development_mode_starts_with_a_loud_warning_and_a_generated_key() {
    let data = tempfile::tempdir().unwrap();
    let (started, err) = run(&[], data.path());
    assert!(started, "{err}");
    assert!(err.contains("DEVELOPMENT MODE: gRPC WITHOUT TLS"), "{err}");
    assert!(err.contains("NO API AUTHENTICATION"), "{err}");
    assert!(
        data.path().join("secret.key").is_file(),
        "a key is generated on first start"
    );
    // The second start reuses it.
    let (started, err) = run(&[], data.path());
    assert!(started, "{err}");
    assert!(!err.contains("created a new at-rest secret key"), "{err}");
}

#[test]
fn a_missing_or_wrong_secret_key_stops_start_up() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    // Explicit key file that does not exist: refused, naming the path.
    let missing = keys.path().join("missing.key");
    let (started, err) = run(
        &["--secret-key-file", missing.to_str().unwrap()],
        data.path(),
    );
    assert!(!started, "{err}");
    assert!(err.contains("missing.key"), "{err}");

    // Key A seals this store (its check value is recorded on the first start) ...
    let a = keys.path().join("a.key");
    std::fs::write(&a, "kka QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n").unwrap();
    let (started, err) = run(&["--secret-key-file", a.to_str().unwrap()], data.path());
    assert!(started, "{err}");
    // ... so a file with the same key id but other key material is a wrong key file.
    let b = keys.path().join("b.key");
    std::fs::write(&b, "kka QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n").unwrap();
    let (started, err) = run(&["--secret-key-file", b.to_str().unwrap()], data.path());
    assert!(!started, "a wrong key must stop start-up: {err}");
    assert!(err.contains("wrong key file"), "{err}");
    assert!(
        !err.contains("QkJC"),
        "key material must never be printed: {err}"
    );
}

#[tokio::test]
async fn a_token_file_is_enforced() {
    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("tokens");
    std::fs::write(
        &tokens,
        "admin a-very-long-admin-token-0001\nreader a-very-long-reader-token-002\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("d"))
        .arg("--tokens-file")
        .arg(&tokens)
        .env("COORDINATOR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("coordinator listening on ")
        .unwrap()
        .to_owned();
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    use vmedia_proto::v1 as pb;
    let mut anon = pb::nodes_client::NodesClient::new(ch.clone());
    let e = anon
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let bearer = |t: &'static str| {
        move |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
            Ok(r)
        }
    };
    let mut reader = pb::nodes_client::NodesClient::with_interceptor(
        ch.clone(),
        bearer("a-very-long-reader-token-002"),
    );
    assert!(
        reader
            .list_nodes(pb::ListNodesRequest::default())
            .await
            .is_ok()
    );
    let e = reader
        .create_node(pb::CreateNodeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let mut admin =
        pb::nodes_client::NodesClient::with_interceptor(ch, bearer("a-very-long-admin-token-0001"));
    // Admin gets past the gate (and then fails validation on the empty request).
    let e = admin
        .create_node(pb::CreateNodeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let _ = child.kill();
    let _ = child.wait();
}
