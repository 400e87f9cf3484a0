//! Logs never carry secrets. The check runs in a process of its own (this
//! test binary started again, filtered to this one test): tracing caches
//! callsite interest process-wide, so tests running in parallel threads
//! without a subscriber would make it miss events. Under nextest the test is
//! already alone in its process; the extra process costs a few milliseconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::{Reply, SCCI_OK, Seen, start};
use irmc::{AuthMethod, IrmcClient, MediaKind, MediaLocation, PowerAction, Secret, ShareType};
use md5::{Digest as _, Md5};

const PASSWORD: &str = "s3cr&t<pw";

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(!text.contains("share-pw"), "share password leaked: {text}");
}

fn md5hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn params(h: &str) -> BTreeMap<String, String> {
    let rest = h.strip_prefix("Digest ").unwrap_or("");
    rest.split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// A minimal Digest BMC (fixed nonce) answering SCCI OK and a configured CD.
fn digest_bmc(s: &Seen, _: usize) -> Reply {
    let challenge = Reply::status(401).header(
        "WWW-Authenticate",
        "Digest realm=\"r\", qop=\"auth\", nonce=\"n\", algorithm=MD5",
    );
    let Some(auth) = s.header("authorization") else {
        return challenge;
    };
    let p = params(&auth);
    let ha1 = md5hex(&format!("{}:r:{PASSWORD}", p["username"]));
    let ha2 = md5hex(&format!("{}:{}", s.method, p["uri"]));
    let want = md5hex(&format!("{ha1}:n:{}:{}:auth:{ha2}", p["nc"], p["cnonce"]));
    if p["response"] != want {
        return challenge;
    }
    if s.uri.starts_with("/iRMC_Settings.pre") {
        return Reply::ok(
            "<CMDSEQ><CMD OE=\"1A60\"><DATA>s</DATA></CMD><CMD OE=\"1A65\"><DATA>s</DATA></CMD><CMD OE=\"1A66\"><DATA>i</DATA></CMD></CMDSEQ>",
        );
    }
    Reply::ok(SCCI_OK)
}

fn location() -> MediaLocation {
    MediaLocation {
        server: "10.0.0.9".into(),
        share_type: ShareType::Cifs,
        share_name: "images".into(),
        image_name: "deploy-n1.iso".into(),
        user_name: "shareuser".into(),
        password: Secret::new("share-pw<&\""),
        domain: String::new(),
    }
}

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Set in the child process that runs the check.
const ALONE: &str = "IRMC_LOGS_TEST_ALONE";

#[test]
fn logs_never_contain_secrets() {
    if std::env::var_os(ALONE).is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check_logs());
        return;
    }
    let name = "logs::logs_never_contain_secrets";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} alone: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

async fn check_logs() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bmc = start(digest_bmc).await;
    let mut cfg = bmc.config();
    cfg.auth = AuthMethod::Digest;
    let c = IrmcClient::new(cfg.clone()).unwrap();
    c.attach(MediaKind::Cd, &location()).await.unwrap();
    let _ = c.detach(MediaKind::Cd).await;
    // Failures too: wrong password, 500s with retries, basic auth.
    cfg.password = Secret::new("share-pw-wrong");
    let _ = IrmcClient::new(cfg).unwrap().power(PowerAction::On).await;
    let failing = start(|_, _| Reply::status(500)).await;
    let _ = IrmcClient::new(failing.config()).unwrap().report().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("BMC request"),
        "debug logs were captured: {text}"
    );
    assert!(text.contains("retrying transient failure"), "{text}");
    assert_no_secret(&text);
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(!text.contains("Basic "), "{text}");
}
