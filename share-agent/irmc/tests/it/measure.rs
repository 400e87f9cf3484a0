//! Cost per operation: HTTP requests and wall time for attach, detach and
//! power, over HTTP and HTTPS, Basic and Digest. Runs against the in-test
//! server and asserts the request counts; prints the numbers with
//! `--nocapture`.
//!
//! `measure_external` (ignored by default) runs the same sequence against a
//! real or simulated BMC: set `IRMC_MEASURE_ADDR` (and optionally
//! `IRMC_MEASURE_PORT`, `IRMC_MEASURE_USER`, `IRMC_MEASURE_PASSWORD`,
//! `IRMC_MEASURE_AUTH`=basic|digest, `IRMC_MEASURE_CA`=PEM file) and run
//! `cargo test -p irmc --test it measure_external -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use crate::common::{Reply, SCCI_OK, Seen, start, start_tls};
use irmc::{
    AuthMethod, BmcConfig, BootMode, BootPersistence, BootTarget, IrmcClient, MediaKind,
    MediaLocation, PowerAction, Scheme, Secret, ShareType, TlsVerify,
};

const ROUNDS: u32 = 20;

fn loc() -> MediaLocation {
    MediaLocation {
        server: "127.0.0.1".into(),
        share_type: ShareType::Cifs,
        share_name: "share".into(),
        image_name: "deploy.iso".into(),
        user_name: "u".into(),
        password: Secret::new("p"),
        domain: String::new(),
    }
}

/// Runs `op` ROUNDS times; returns (requests per op, mean wall time per op).
async fn per_op<F, Fut>(c: &IrmcClient, mut op: F) -> (f64, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), irmc::IrmcError>>,
{
    let before = c.requests_sent();
    let t = Instant::now();
    for _ in 0..ROUNDS {
        op().await.unwrap();
    }
    let reqs = (c.requests_sent() - before) as f64 / f64::from(ROUNDS);
    (reqs, t.elapsed() / ROUNDS)
}

async fn run_suite(label: &str, c: &IrmcClient) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    let l = loc();
    for (name, res) in [
        ("attach cd", per_op(c, || c.attach(MediaKind::Cd, &l)).await),
        ("detach cd", per_op(c, || c.detach(MediaKind::Cd)).await),
        ("power on", per_op(c, || c.power(PowerAction::On)).await),
        (
            "boot override",
            per_op(c, || {
                c.set_boot_override(BootTarget::Cd, BootPersistence::Once, BootMode::Uefi)
            })
            .await,
        ),
        (
            "power state",
            per_op(c, || async { c.power_state().await.map(|_| ()) }).await,
        ),
    ] {
        println!(
            "{label:<22} {name:<14} {:>5.2} requests/op {:>9.3} ms/op",
            res.0,
            res.1.as_secs_f64() * 1000.0
        );
        out.push((name, res.0));
    }
    out
}

/// A small faithful-enough BMC: SCCI OK, a configured CD in the dump,
/// Redfish system, and Digest when asked.
fn bmc_handler(digest: bool) -> impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static {
    move |s, _| {
        if digest
            && s.header("authorization")
                .is_none_or(|a| !a.starts_with("Digest "))
        {
            return Reply::status(401).header(
                "WWW-Authenticate",
                "Digest realm=\"iRMC\", qop=\"auth\", nonce=\"fixed\", algorithm=MD5",
            );
        }
        match (s.method.as_str(), s.uri.split('?').next().unwrap_or("")) {
            ("POST", "/config") => Reply::ok(SCCI_OK),
            ("GET", "/iRMC_Settings.pre") => Reply::ok(
                "<CMDSEQ><CMD OC=\"ConfigSpace\" OE=\"1A60\"><DATA>s</DATA></CMD><CMD OC=\"ConfigSpace\" OE=\"1A65\"><DATA>sh</DATA></CMD><CMD OC=\"ConfigSpace\" OE=\"1A66\"><DATA>i</DATA></CMD></CMDSEQ>",
            ),
            ("GET", "/redfish/v1/Systems/0") => Reply::ok(r#"{"PowerState":"On"}"#),
            ("PATCH", "/redfish/v1/Systems/0") => Reply::status(204),
            _ => Reply::status(404),
        }
    }
}

#[tokio::test]
async fn measure_requests_and_time_per_operation() {
    let expected = [
        ("attach cd", 2.0),
        ("detach cd", 2.0),
        ("power on", 1.0),
        ("boot override", 1.0),
        ("power state", 1.0),
    ];
    for (label, tls, digest) in [
        ("http basic", false, false),
        ("https basic", true, false),
        ("http digest (warm)", false, true),
    ] {
        let (bmc, _pem) = if tls {
            start_tls(bmc_handler(digest)).await
        } else {
            (start(bmc_handler(digest)).await, String::new())
        };
        let mut cfg = bmc.config();
        if tls {
            cfg.scheme = Scheme::Https;
            cfg.verify = TlsVerify::Insecure;
        }
        if digest {
            cfg.auth = AuthMethod::Digest;
        }
        let c = IrmcClient::new(cfg).unwrap();
        if digest {
            // Warm the nonce cache: the only 401 round trip of the client.
            c.power(PowerAction::On).await.unwrap();
            assert_eq!(c.requests_sent(), 2);
        }
        let got = run_suite(label, &c).await;
        for ((name, reqs), (ename, ereqs)) in got.iter().zip(expected) {
            assert_eq!(*name, ename);
            assert_eq!(*reqs, ereqs, "{label} {name}");
        }
    }
}

#[tokio::test]
#[ignore = "needs IRMC_MEASURE_ADDR pointing at a BMC or irmc-sim"]
async fn measure_external() {
    let Ok(addr) = std::env::var("IRMC_MEASURE_ADDR") else {
        println!("IRMC_MEASURE_ADDR not set; nothing to measure");
        return;
    };
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let mut cfg = BmcConfig::new(
        addr,
        env("IRMC_MEASURE_USER", "admin"),
        Secret::new(env("IRMC_MEASURE_PASSWORD", "admin")),
    );
    cfg.port = env("IRMC_MEASURE_PORT", "443").parse().unwrap();
    cfg.scheme = Scheme::for_port(cfg.port);
    cfg.auth = env("IRMC_MEASURE_AUTH", "basic").parse().unwrap();
    cfg.verify = match std::env::var("IRMC_MEASURE_CA") {
        Ok(p) => TlsVerify::CaFile(p.into()),
        Err(_) => TlsVerify::Insecure,
    };
    let c = IrmcClient::new(cfg).unwrap();
    let t = Instant::now();
    let r = c.report().await.unwrap();
    println!(
        "report: {} {} fd={} ({} requests, {:.3} ms)",
        r.model,
        r.firmware,
        r.has_virtual_fd,
        c.requests_sent(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    run_suite("external", &c).await;
}
