//! `cargo bench -p share-agent --bench http_floor`: the CPU one HTTP exchange costs on
//! loopback with the stack the share agent uses (reqwest client, axum/hyper server), with
//! nothing else in the request. A deploy is mostly such exchanges (BMC requests, the
//! ramdisk conversation, the ramdisk's calls to the agent), so this is the floor under
//! the agent's CPU per deploy: exchanges per deploy x this figure.
//!
//! Prints, per exchange, the CPU of the whole process (client and server both run here,
//! on one thread, so nothing is lost to thread hand-offs), for plain HTTP keep-alive,
//! HTTPS keep-alive, and a new HTTPS connection per request (a BMC the agent has not
//! talked to yet: one TLS handshake).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::post;

fn cpu_seconds() -> f64 {
    let mut u = libc_rusage();
    u.0 += u.1;
    u.0
}

/// (user, system) seconds of this process.
fn libc_rusage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    (get(11), get(12))
}

async fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let app = Router::new().route(
        "/config",
        post(|body: axum::body::Bytes| async move {
            // A reply the size of an SCCI status document.
            let _ = body.len();
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Status>\n  <Value>0</Value>\n  <Severity>Information</Severity>\n  <Message>No Error</Message>\n</Status>\n"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match tls {
        None => {
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
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
        }
    }
    addr
}

const BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CMDSEQ>\n  <CMD Context=\"SCCI\" OC=\"ConnectRemoteCdImage\" OE=\"0\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">1</DATA>\n  </CMD>\n</CMDSEQ>\n";

async fn run(label: &str, client: impl Fn() -> reqwest::Client, url: &str, n: usize) {
    let shared = client();
    // Warm up: connection, TLS session, allocator.
    for _ in 0..50 {
        let _ = shared
            .post(url)
            .body(BODY)
            .send()
            .await
            .unwrap()
            .bytes()
            .await;
    }
    let c0 = cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..n {
        let r = shared.post(url).body(BODY).send().await.unwrap();
        let _ = r.bytes().await.unwrap();
    }
    let cpu = cpu_seconds() - c0;
    println!(
        "{label:<44} {:>8.1} us CPU per exchange ({:.1} us wall)",
        cpu * 1e6 / n as f64,
        t0.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let _ = client;
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n = 20_000;
        let plain = serve(None).await;
        run(
            "HTTP/1.1 keep-alive (client + server)",
            reqwest::Client::new,
            &format!("http://{plain}/config"),
            n,
        )
        .await;

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tls = serve(Some(Arc::new(server))).await;
        let url = format!("https://{tls}/config");
        let ca = reqwest::Certificate::from_der(&der).unwrap();
        let ca2 = ca.clone();
        run(
            "HTTPS keep-alive (client + server)",
            move || {
                reqwest::Client::builder()
                    .tls_certs_only([ca.clone()])
                    .build()
                    .unwrap()
            },
            &url,
            n,
        )
        .await;

        // A new connection per request: the first request to a BMC.
        let fresh = reqwest::Client::builder()
            .tls_certs_only([ca2])
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let m = 2_000;
        let c0 = cpu_seconds();
        for _ in 0..m {
            let r = fresh.post(&url).body(BODY).send().await.unwrap();
            let _ = r.bytes().await.unwrap();
        }
        println!(
            "{:<44} {:>8.1} us CPU per exchange",
            "HTTPS, new connection each (client + server)",
            (cpu_seconds() - c0) * 1e6 / m as f64
        );
    });
}
