//! The client's transport behaviour: digest authentication, retries and back-off, the
//! Redfish subset and bounded power-state polling.

use super::*;

// ---------------------------------------------------------------------------
// Digest
// ---------------------------------------------------------------------------

fn md5hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn params(h: &str) -> BTreeMap<String, String> {
    let rest = h.strip_prefix("Digest ").unwrap_or("");
    let mut out = BTreeMap::new();
    for part in rest.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            out.insert(k.to_owned(), v.trim_matches('"').to_owned());
        }
    }
    out
}

/// A Digest server with nonce `current_nonce`: 401 unless the Authorization
/// is right for `PASSWORD` (stale=true when only the nonce is outdated).
fn digest_handler(
    current_nonce: Arc<std::sync::Mutex<String>>,
) -> impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static {
    move |s, _| {
        let nonce = current_nonce.lock().unwrap().clone();
        let challenge = |stale: bool| {
            Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    "Digest realm=\"iRMC@RX300\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"op4que\", algorithm=MD5{}",
                    if stale { ", stale=true" } else { "" }
                ),
            )
        };
        let Some(auth) = s.header("authorization") else {
            return challenge(false);
        };
        let p = params(&auth);
        let ha1 = md5hex(&format!("{}:iRMC@RX300:{PASSWORD}", p["username"]));
        let ha2 = md5hex(&format!("{}:{}", s.method, p["uri"]));
        let expect = md5hex(&format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            p["nonce"], p["nc"], p["cnonce"]
        ));
        if p["uri"] != s.uri || p.get("opaque").map(String::as_str) != Some("op4que") {
            return Reply::status(400);
        }
        if p["response"] != expect {
            return challenge(false); // wrong credentials
        }
        if p["nonce"] != nonce {
            return challenge(true); // right credentials, expired nonce
        }
        if s.uri == "/report.xml" {
            Reply::ok(REPORT_S4)
        } else {
            Reply::ok(SCCI_OK)
        }
    }
}

#[tokio::test]
async fn digest_flow_caches_nonce_and_handles_stale() {
    let nonce = Arc::new(std::sync::Mutex::new("nonce-1".to_owned()));
    let bmc = start(digest_handler(nonce.clone())).await;
    let mut cfg = bmc.config();
    cfg.auth = AuthMethod::Digest;
    let c = IrmcClient::new(cfg).unwrap();

    c.power(PowerAction::On).await.unwrap();
    assert_eq!(
        c.requests_sent(),
        2,
        "first request pays the 401 round trip"
    );
    c.report().await.unwrap();
    assert_eq!(c.requests_sent(), 3, "cached nonce: no 401");
    let seen = bmc.seen();
    let p = params(&seen[2].header("authorization").unwrap());
    assert_eq!(p["nc"], "00000002");
    assert_eq!(p["qop"], "auth");
    assert_eq!(p["algorithm"], "MD5");

    // The BMC rotates its nonce: one stale 401, then success.
    *nonce.lock().unwrap() = "nonce-2".to_owned();
    c.power(PowerAction::Off).await.unwrap();
    assert_eq!(c.requests_sent(), 5);
    let seen = bmc.seen();
    assert_eq!(seen[3].method, "POST");
    assert_eq!(seen[4].method, "POST");
    assert_eq!(
        params(&seen[4].header("authorization").unwrap())["nonce"],
        "nonce-2"
    );
    // Clones share the cache.
    c.clone().power(PowerAction::On).await.unwrap();
    assert_eq!(c.requests_sent(), 6);
}

#[tokio::test]
async fn digest_wrong_password_is_unauthorized_and_not_retried() {
    let nonce = Arc::new(std::sync::Mutex::new("n".to_owned()));
    let bmc = start(digest_handler(nonce)).await;
    let mut cfg = bmc.config();
    cfg.auth = AuthMethod::Digest;
    cfg.password = Secret::new("wrong-password");
    let c = IrmcClient::new(cfg).unwrap();
    let err = c.power(PowerAction::On).await.unwrap_err();
    assert!(matches!(err, IrmcError::Unauthorized { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(bmc.seen().len(), 2);
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("admin"), "{text}");
    assert!(!text.contains("wrong-password"));
}

#[tokio::test]
async fn digest_concurrent_requests_share_one_client() {
    let nonce = Arc::new(std::sync::Mutex::new("n".to_owned()));
    let bmc = start(digest_handler(nonce)).await;
    let mut cfg = bmc.config();
    cfg.auth = AuthMethod::Digest;
    let c = IrmcClient::new(cfg).unwrap();
    c.power(PowerAction::On).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.power(PowerAction::On).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(c.requests_sent(), 18);
}

#[tokio::test]
async fn basic_401_is_unauthorized_without_retry() {
    let bmc =
        start(|_, _| Reply::status(401).header("WWW-Authenticate", "Basic realm=\"iRMC\"")).await;
    let c = client(&bmc);
    let err = c.report().await.unwrap_err();
    assert!(matches!(err, IrmcError::Unauthorized { .. }), "{err:?}");
    assert_eq!(bmc.seen().len(), 1);
    assert_no_secret(&err.to_string());
}

// ---------------------------------------------------------------------------
// Retries, timeouts, redirects
// ---------------------------------------------------------------------------

#[tokio::test]
async fn retries_503_then_succeeds() {
    let bmc = start(|_, i| {
        if i < 2 {
            Reply::status(503)
        } else {
            Reply::ok(SCCI_OK)
        }
    })
    .await;
    let c = client(&bmc);
    // Even a non-idempotent power cycle: 503 means the BMC declined it.
    c.power(PowerAction::Cycle).await.unwrap();
    assert_eq!(bmc.seen().len(), 3);
    assert_eq!(c.requests_sent(), 3);
}

#[tokio::test]
async fn retries_500_only_for_idempotent_requests() {
    let bmc = start(|_, _| Reply::status(500)).await;
    let c = client(&bmc);
    let err = c.power(PowerAction::Cycle).await.unwrap_err();
    assert!(
        matches!(err, IrmcError::Http { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(bmc.seen().len(), 1, "power cycle must not be resent");

    let err = c.report().await.unwrap_err();
    assert!(matches!(err, IrmcError::Http { status: 500, .. }));
    assert_eq!(bmc.seen().len(), 4, "GET retried up to 3 attempts");
    assert!(err.to_string().contains("STATUS CODE = 500"));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    for status in [400u16, 403, 404, 405] {
        let bmc = start(move |_, _| Reply::status(status)).await;
        let err = client(&bmc).report().await.unwrap_err();
        assert!(matches!(err, IrmcError::Http { status: s, .. } if s == status));
        assert!(!err.is_transient());
        assert_eq!(bmc.seen().len(), 1);
    }
}

#[tokio::test]
async fn redirect_is_an_error_and_not_followed() {
    let bmc = start(|_, _| Reply::status(302).header("Location", "/login.html")).await;
    let c = client(&bmc);
    let err = c.power(PowerAction::On).await.unwrap_err();
    match &err {
        IrmcError::Redirect {
            status, location, ..
        } => {
            assert_eq!(*status, 302);
            assert_eq!(location.as_deref(), Some("/login.html"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bmc.seen().len(), 1);
    assert!(!err.is_transient());
}

#[tokio::test]
async fn connect_errors_are_retried_even_for_power_cycle() {
    let port = closed_port().await;
    let mut cfg = BmcConfig::new("127.0.0.1", "admin", Secret::new(PASSWORD));
    cfg.port = port;
    cfg.scheme = Scheme::Http;
    cfg.retry = RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    let c = IrmcClient::new(cfg).unwrap();
    let err = c.power(PowerAction::Cycle).await.unwrap_err();
    assert!(matches!(err, IrmcError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(c.requests_sent(), 3);
    let text = err.to_string();
    assert!(
        text.starts_with("iRMC set_power_state failed on 127.0.0.1. Reason: cannot connect"),
        "{text}"
    );
    assert_no_secret(&text);
}

#[tokio::test]
async fn a_timeout_is_typed_final_and_never_resent() {
    let bmc = start(|_, _| Reply {
        delay: Some(Duration::from_secs(5)),
        ..Reply::ok(SCCI_OK)
    })
    .await;
    let mut cfg = bmc.config();
    cfg.timeout = Duration::from_millis(200);
    let c = IrmcClient::new(cfg).unwrap();
    let start_t = Instant::now();
    let err = c.power(PowerAction::Reset).await.unwrap_err();
    assert!(matches!(err, IrmcError::Timeout { .. }), "{err:?}");
    // A hung BMC is not worth retrying: the node fails its verb at this deadline.
    assert!(!err.is_transient());
    assert!(start_t.elapsed() < Duration::from_secs(2));
    assert_eq!(bmc.seen().len(), 1);
    assert!(err.to_string().contains("irmc_client_timeout"));

    // Not even an idempotent GET is sent again: one deadline per operation.
    let start_t = Instant::now();
    let err = c.report().await.unwrap_err();
    assert!(matches!(err, IrmcError::Timeout { .. }));
    assert_eq!(bmc.seen().len(), 2);
    assert!(start_t.elapsed() < Duration::from_secs(2));
}

#[test]
fn backoff_is_bounded_and_jittered() {
    let p = RetryPolicy {
        attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
    };
    for _ in 0..50 {
        let d1 = p.backoff(1);
        assert!(
            d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
            "{d1:?}"
        );
        let d3 = p.backoff(3);
        assert!(
            d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
            "{d3:?}"
        );
        let d10 = p.backoff(10);
        assert!(
            d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1000),
            "{d10:?}"
        );
        assert!(p.backoff(u32::MAX) <= Duration::from_millis(1000));
    }
}

// ---------------------------------------------------------------------------
// Redfish
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redfish_power_state_boot_override_and_reset() {
    let bmc = start(|s, _| match (s.method.as_str(), s.uri.as_str()) {
        ("GET", "/redfish/v1/Systems/0") => {
            Reply::ok(r#"{"PowerState":"On","Manufacturer":"FUJITSU"}"#)
        }
        ("PATCH", "/redfish/v1/Systems/0") => Reply::status(204),
        ("POST", "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset") => Reply::status(204),
        _ => Reply::status(404),
    })
    .await;
    let c = client(&bmc);
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    c.set_boot_override(BootTarget::Cd, BootPersistence::Once, BootMode::Uefi)
        .await
        .unwrap();
    c.redfish_reset(ResetType::ForceRestart).await.unwrap();
    let seen = bmc.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1].header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        seen[1].body,
        r#"{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Cd"}}"#
    );
    assert_eq!(seen[2].body, r#"{"ResetType":"ForceRestart"}"#);
}

#[tokio::test]
async fn boot_override_with_if_match() {
    let bmc = start(|s, _| match s.method.as_str() {
        "GET" => Reply::ok(r#"{"PowerState":"Off"}"#).header("ETag", "W/\"abc\""),
        "PATCH" if s.header("if-match").as_deref() == Some("W/\"abc\"") => Reply::ok("{}"),
        "PATCH" => Reply::status(428),
        _ => Reply::status(405),
    })
    .await;
    let c = client(&bmc);
    c.set_boot_override(
        BootTarget::Hdd,
        BootPersistence::Continuous,
        BootMode::Legacy,
    )
    .await
    .unwrap();
    let summary: Vec<String> = bmc.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(summary, ["PATCH", "GET", "PATCH"]);
}

#[tokio::test]
async fn redfish_reset_not_retried_on_500() {
    let bmc = start(|_, _| Reply::status(500)).await;
    let c = client(&bmc);
    assert!(c.redfish_reset(ResetType::PowerCycle).await.is_err());
    assert_eq!(bmc.seen().len(), 1);
}

#[tokio::test]
async fn wait_power_state_polls_until_reached() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let bmc = start(move |_, _| {
        let i = n2.fetch_add(1, Ordering::SeqCst);
        match i {
            0 | 1 => Reply::ok(r#"{"PowerState":"PoweringOn"}"#),
            2 => Reply::status(500),
            _ => Reply::ok(r#"{"PowerState":"On"}"#),
        }
    })
    .await;
    let mut cfg = bmc.config();
    cfg.retry = RetryPolicy::none();
    let c = IrmcClient::new(cfg).unwrap();
    c.wait_power_state(PowerState::On, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(n.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn wait_power_state_is_bounded() {
    let bmc = start(|_, _| Reply::ok(r#"{"PowerState":"Off"}"#)).await;
    let c = client(&bmc);
    let t = Instant::now();
    let err = c
        .wait_power_state(PowerState::On, Duration::from_millis(150))
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2));
    match &err {
        IrmcError::PollTimeout { want, last, .. } => {
            assert_eq!(want, "On");
            assert_eq!(last, "Off");
        }
        other => panic!("{other:?}"),
    }
    // Intervals 10, 20, 40, 40... within 150 ms: a handful of polls, not hundreds.
    let polls = bmc.seen().len();
    assert!((3..=10).contains(&polls), "{polls}");
}

#[tokio::test]
async fn redfish_garbage_is_malformed() {
    let bmc = start(|_, _| Reply::ok("<html>login</html>")).await;
    let err = client(&bmc).power_state().await.unwrap_err();
    assert!(matches!(err, IrmcError::Malformed { .. }), "{err:?}");
    assert_eq!(err.operation(), Some("get_power_state"));
    assert_eq!(err.bmc(), Some("127.0.0.1"));
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tls_verification_default_on_ca_file_and_insecure() {
    let (bmc, pem) = start_tls(|_, _| Reply::ok(SCCI_OK)).await;
    let mut cfg = bmc.config();
    cfg.scheme = Scheme::Https;

    // Default: system roots -> the self-signed certificate is rejected.
    let c = IrmcClient::new(cfg.clone()).unwrap();
    let err = c.power(PowerAction::On).await.unwrap_err();
    assert!(matches!(err, IrmcError::Tls { .. }), "{err:?}");
    assert!(!err.is_transient(), "a certificate error is not retried");
    assert!(err.to_string().contains("irmc_verify_ca"), "{err}");
    assert!(c.config().base_url().starts_with("https://127.0.0.1:"));

    // CA file with the server's certificate -> accepted.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let mut with_ca = cfg.clone();
    with_ca.verify = TlsVerify::CaFile(ca);
    IrmcClient::new(with_ca)
        .unwrap()
        .power(PowerAction::On)
        .await
        .unwrap();

    // Explicit opt-out -> accepted.
    let mut insecure = cfg.clone();
    insecure.verify = TlsVerify::Insecure;
    IrmcClient::new(insecure)
        .unwrap()
        .power(PowerAction::On)
        .await
        .unwrap();
    assert_eq!(bmc.seen().len(), 2);
    assert_eq!(c.requests_sent(), 1, "TLS failure not retried");

    // A CA file that is missing or not PEM is a config error naming the field.
    let mut missing = cfg.clone();
    missing.verify = TlsVerify::CaFile(dir.path().join("nope.pem"));
    let err = IrmcClient::new(missing).unwrap_err();
    assert!(err.to_string().contains("irmc_verify_ca"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut bad = cfg;
    bad.verify = TlsVerify::CaFile(junk);
    assert!(IrmcClient::new(bad).is_err());
}

#[tokio::test]
async fn shared_pool_across_bmcs() {
    let a = start(|_, _| Reply::ok(SCCI_OK)).await;
    let b = start(|_, _| Reply::ok(SCCI_OK)).await;
    let http = IrmcClient::http_client(&TlsVerify::System, Duration::from_secs(5)).unwrap();
    let ca = IrmcClient::with_http(a.config(), http.clone());
    let cb = IrmcClient::with_http(b.config(), http);
    ca.power(PowerAction::On).await.unwrap();
    cb.power(PowerAction::Off).await.unwrap();
    assert_eq!((a.seen().len(), b.seen().len()), (1, 1));
    assert_eq!((ca.requests_sent(), cb.requests_sent()), (1, 1));
}

// ---------------------------------------------------------------------------
// Config and secrets
// ---------------------------------------------------------------------------

fn info(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn driver_info_defaults_and_validation() {
    let base = [
        ("irmc_address", "10.1.2.3"),
        ("irmc_username", "admin"),
        ("irmc_password", PASSWORD),
    ];
    let cfg = BmcConfig::from_driver_info(&info(&base)).unwrap();
    assert_eq!(cfg.port, 443);
    assert_eq!(cfg.scheme, Scheme::Https);
    assert_eq!(cfg.auth, AuthMethod::Basic);
    assert_eq!(cfg.timeout, Duration::from_secs(60));
    assert_eq!(cfg.verify, TlsVerify::System);
    assert_eq!(cfg.base_url(), "https://10.1.2.3");
    let dbg = format!("{cfg:?}");
    assert!(dbg.contains("******"));
    assert_no_secret(&dbg);

    let mut full = base.to_vec();
    full.extend([
        ("irmc_port", "80"),
        ("irmc_auth_method", "Digest"),
        ("irmc_client_timeout", "15"),
        ("irmc_verify_ca", "/etc/ssl/irmc-ca.pem"),
    ]);
    let cfg = BmcConfig::from_driver_info(&info(&full)).unwrap();
    assert_eq!(cfg.port, 80);
    assert_eq!(cfg.scheme, Scheme::Http);
    assert_eq!(cfg.base_url(), "http://10.1.2.3");
    assert_eq!(cfg.auth, AuthMethod::Digest);
    assert_eq!(cfg.timeout, Duration::from_secs(15));
    assert_eq!(cfg.verify, TlsVerify::CaFile("/etc/ssl/irmc-ca.pem".into()));

    let mut off = base.to_vec();
    off.push(("irmc_verify_ca", "False"));
    assert_eq!(
        BmcConfig::from_driver_info(&info(&off)).unwrap().verify,
        TlsVerify::Insecure
    );

    for (bad, field) in [
        (("irmc_port", "8443"), "irmc_port"),
        (("irmc_auth_method", "ntlm"), "irmc_auth_method"),
        (("irmc_client_timeout", "0"), "irmc_client_timeout"),
        (("irmc_client_timeout", "soon"), "irmc_client_timeout"),
        (("irmc_verify_ca", ""), "irmc_verify_ca"),
    ] {
        let mut m = base.to_vec();
        m.push(bad);
        let err = BmcConfig::from_driver_info(&info(&m)).unwrap_err();
        match &err {
            IrmcError::InvalidConfig { field: f, .. } => assert_eq!(*f, field),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(field));
        assert_no_secret(&err.to_string());
    }
    for missing in ["irmc_address", "irmc_username", "irmc_password"] {
        let m: Vec<_> = base
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let err = BmcConfig::from_driver_info(&info(&m)).unwrap_err();
        assert!(err.to_string().contains(missing), "{err}");
    }
    assert_eq!(
        BmcConfig::new("fe80::1", "u", Secret::default()).base_url(),
        "https://[fe80::1]"
    );
}

#[test]
fn secrets_never_print() {
    let s = Secret::new(PASSWORD);
    assert_eq!(format!("{s}"), "******");
    assert_eq!(format!("{s:?}"), "******");
    assert_eq!(s.expose(), PASSWORD);
    let loc = location();
    assert_no_secret(&format!("{loc:?}"));
    let cmds = irmc::wire::media_settings_commands(MediaKind::Cd, &loc);
    assert_no_secret(&format!("{cmds:?}"));
    let c = IrmcClient::new(BmcConfig::new("h", "u", Secret::new(PASSWORD))).unwrap();
    assert_no_secret(&format!("{c:?}"));
}
