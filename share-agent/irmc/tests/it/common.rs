//! A scriptable in-test BMC: an axum server on 127.0.0.1:0 (plain or TLS)
//! that records every request and answers with whatever the test's handler
//! returns.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use irmc::{AuthMethod, BmcConfig, PollPolicy, RetryPolicy, Scheme, Secret, TlsVerify};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// What to answer.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Sleep this long before answering (simulates a hanging BMC).
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            ..Self::default()
        }
    }
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
}

pub const SCCI_OK: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>";

pub type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct St {
    handler: Handler,
    log: Arc<Mutex<Vec<Seen>>>,
}

pub struct TestBmc {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestBmc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestBmc {
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// A config for this server: plain http on its port, basic auth, fast
    /// retries, short timeout.
    pub fn config(&self) -> BmcConfig {
        let mut cfg = BmcConfig::new("127.0.0.1", "admin", Secret::new("s3cr&t<pw"));
        cfg.port = self.addr.port();
        cfg.scheme = Scheme::Http;
        cfg.auth = AuthMethod::Basic;
        cfg.timeout = Duration::from_secs(5);
        cfg.verify = TlsVerify::System;
        cfg.node = Some("node-1".into());
        cfg.retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        };
        cfg.poll = PollPolicy {
            interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
        };
        cfg
    }
}

async fn handle(State(st): State<St>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let idx = {
        let mut log = st.log.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = (st.handler)(&seen, idx);
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut b = Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(reply.body)).unwrap()
}

fn router(handler: Handler) -> (axum::Router, Arc<Mutex<Vec<Seen>>>) {
    let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let st = St {
        handler,
        log: log.clone(),
    };
    (axum::Router::new().fallback(handle).with_state(st), log)
}

/// Plain HTTP server.
pub async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> TestBmc {
    let (app, log) = router(Arc::new(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestBmc { addr, log, task }
}

/// HTTPS server with a fresh self-signed certificate for 127.0.0.1;
/// returns the server and the certificate PEM.
pub async fn start_tls(
    handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (TestBmc, String) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let (app, log) = router(Arc::new(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (TestBmc { addr, log, task }, pem)
}

/// A loopback port with nothing listening.
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}
