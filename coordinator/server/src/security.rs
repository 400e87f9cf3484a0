//! Who may talk to the coordinator, and over what.
//!
//! - Transport: with `tls_cert_file`/`tls_key_file` every connection is TLS (rustls). With
//!   `agent_ca_file` too, a client MAY present a certificate, which must chain to that CA;
//!   a certificate that does not is refused during the handshake, and the refusal is
//!   logged with the peer's address. Public API clients present none: they use tokens.
//! - `AgentLink` (share agents, and the ramdisk call-backs they relay) needs a verified
//!   client certificate whenever an agent CA is configured; `link.rs` also checks that the
//!   certificate names the agent id said in hello.
//! - `Nodes`/`Shares` need `authorization: Bearer <token>` whenever a token file is
//!   configured. Roles: `admin` may do everything; `reader` may list, show and watch
//!   (and ask read-only questions: validate, explain placement, list shares).
//!   `RevealSecrets` is admin-only.
//! - Health and reflection are open: they reveal nothing about nodes.
//! - On a follower replica, calls that need the engine are answered UNAVAILABLE with
//!   "not the leader; leader is URL" so clients retry there; plain store reads are served.
//!
//! All of it is one tower layer ([`GateLayer`]) in front of every service, so the rule for
//! a method is decided in exactly one place ([`access_of`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use coordinator_core::Secret;
use tonic::Status;

use crate::config::Config;
use crate::error::ServerError;

/// What a caller with a valid token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reader,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "reader" => Some(Self::Reader),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Reader => "reader",
        }
    }
}

/// The API tokens: one `<role> <token> [name]` per line, `#` comments.
pub struct Tokens {
    entries: Vec<(Role, Secret, String)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(r, _, n)| (r.as_str(), n)))
            .finish()
    }
}

impl Tokens {
    /// Parses token-file text; `source` names the file in errors (which never quote a token).
    pub fn parse(text: &str, source: &str) -> Result<Self, ServerError> {
        let bad = |line: usize, what: &str| ServerError::Config {
            what: format!("token file {source} line {line}: {what}"),
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(role), Some(token)) = (parts.next(), parts.next()) else {
                return Err(bad(i + 1, "expected `<role> <token> [name]`"));
            };
            let role =
                Role::parse(role).ok_or_else(|| bad(i + 1, "the role must be admin or reader"))?;
            if token.len() < 16 {
                return Err(bad(i + 1, "tokens must be at least 16 characters"));
            }
            let name = parts
                .next()
                .map_or_else(|| format!("{}#{}", role.as_str(), i + 1), str::to_owned);
            entries.push((role, Secret::new(token), name));
        }
        if entries.is_empty() {
            return Err(ServerError::Config {
                what: format!("token file {source}: holds no token"),
            });
        }
        Ok(Self { entries })
    }

    pub fn from_file(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Config {
            what: format!("cannot read the token file {}: {e}", path.display()),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The role and name of a presented token. Every entry is compared in constant time,
    /// so the time taken does not tell which entry came close.
    pub fn role_of(&self, presented: &str) -> Option<(Role, &str)> {
        let mut found = None;
        for (role, secret, name) in &self.entries {
            if secret.ct_eq(presented) && found.is_none() {
                found = Some((*role, name.as_str()));
            }
        }
        found
    }
}

/// What a gRPC method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, reflection.
    Open,
    /// Reads a follower serves from the store itself.
    StoreRead,
    /// Reads that need the leader's engine (watch, shares, placement).
    EngineRead,
    /// Changes, and anything unknown.
    Admin,
    /// Admin only, and never served by a follower.
    Reveal,
    /// Share agents (mTLS).
    Agent,
}

/// The one table of method -> access.
pub fn access_of(path: &str) -> Access {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Access::Admin;
    };
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Access::Open,
        ("vmedia.v1.AgentLink", _) => Access::Agent,
        ("vmedia.v1.Nodes", "GetNode" | "ListNodes" | "ValidateNode") => Access::StoreRead,
        ("vmedia.v1.Nodes", "Watch" | "ExplainPlacement") | ("vmedia.v1.Shares", "ListShares") => {
            Access::EngineRead
        }
        ("vmedia.v1.Nodes", "RevealSecrets") => Access::Reveal,
        _ => Access::Admin,
    }
}

/// Leader or follower, as the gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// Single coordinator (SQLite) or the elected leader.
    Leader,
    /// Another replica leads; `leader` is its advertised URL when known.
    Follower { leader: Option<String> },
}

/// Shared, cheaply readable leadership state.
#[derive(Debug, Clone)]
pub struct LeaderView(Arc<RwLock<Leadership>>);

impl LeaderView {
    pub fn new(l: Leadership) -> Self {
        Self(Arc::new(RwLock::new(l)))
    }

    pub fn get(&self) -> Leadership {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, l: Leadership) {
        match self.0.write() {
            Ok(mut g) => *g = l,
            Err(p) => *p.into_inner() = l,
        }
    }

    /// The follower's answer to a call it cannot serve.
    pub fn redirect(&self, method: &str) -> Option<Status> {
        match self.get() {
            Leadership::Leader => None,
            Leadership::Follower { leader: Some(url) } => Some(Status::unavailable(format!(
                "{method}: not the leader; leader is {url}"
            ))),
            Leadership::Follower { leader: None } => Some(Status::unavailable(format!(
                "{method}: not the leader; no leader is elected yet, retry shortly"
            ))),
        }
    }
}

/// The rules the gate applies.
#[derive(Debug)]
pub struct Policy {
    /// `None`: no token file (development mode): every caller is admin.
    pub tokens: Option<Tokens>,
    /// An agent CA is configured: AgentLink needs a verified client certificate.
    pub agents_need_certificates: bool,
    pub leadership: LeaderView,
}

fn remote_addr<B>(req: &http::Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

fn has_client_certificate<B>(req: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    req.extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|c| !c.is_empty())
}

impl Policy {
    /// Ok to pass the call on, or the status to answer with.
    pub fn check<B>(&self, req: &http::Request<B>) -> Result<(), Status> {
        let path = req.uri().path();
        let access = access_of(path);
        let peer = remote_addr(req)
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_string());
        match access {
            Access::Open => return Ok(()),
            Access::Agent => {
                if self.agents_need_certificates && !has_client_certificate(req) {
                    tracing::warn!(peer = %peer, method = path, "share agent refused: no client certificate signed by the agent CA");
                    return Err(Status::unauthenticated(
                        "AgentLink needs a client certificate signed by the coordinator's agent CA",
                    ));
                }
                return match self.leadership.redirect(path) {
                    Some(s) => Err(s),
                    None => Ok(()),
                };
            }
            _ => {}
        }
        if let Some(tokens) = &self.tokens {
            let presented = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            let Some(presented) = presented else {
                tracing::warn!(peer = %peer, method = path, "call refused: no bearer token");
                return Err(Status::unauthenticated(
                    "missing API token: send `authorization: Bearer <token>`",
                ));
            };
            let Some((role, name)) = tokens.role_of(presented) else {
                tracing::warn!(peer = %peer, method = path, "call refused: unknown token");
                return Err(Status::unauthenticated("invalid API token"));
            };
            let allowed = match access {
                Access::StoreRead | Access::EngineRead => true,
                Access::Admin | Access::Reveal => role == Role::Admin,
                Access::Open | Access::Agent => true,
            };
            if !allowed {
                tracing::warn!(peer = %peer, method = path, token = name, role = role.as_str(), "call refused: role lacks permission");
                return Err(Status::permission_denied(format!(
                    "{path}: the {} role may only list, show and watch; this needs admin",
                    role.as_str()
                )));
            }
        }
        if access == Access::StoreRead {
            return Ok(());
        }
        match self.leadership.redirect(path) {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }
}

/// The tower layer applying a [`Policy`] to every call.
#[derive(Clone)]
pub struct GateLayer {
    policy: Arc<Policy>,
}

impl GateLayer {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Gate<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        match self.policy.check(&req) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

/// The rustls server configuration, when TLS is configured.
pub fn server_tls(cfg: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) else {
        return Ok(None);
    };
    let bad = |what: String| ServerError::Config { what };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(format!("tls_cert_file {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("tls_cert_file {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(bad(format!(
            "tls_cert_file {}: no certificate in it",
            cert.display()
        )));
    }
    // Never print the key or its parse details (they could echo key bytes).
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        bad(format!(
            "tls_key_file {}: cannot read a PEM private key from it",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?;
    let builder = match &cfg.agent_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad(format!("agent_ca_file {}: {e}", ca.display())))?
            {
                let c = c.map_err(|e| bad(format!("agent_ca_file {}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| bad(format!("agent_ca_file {}: {e}", ca.display())))?;
            }
            if roots.is_empty() {
                return Err(bad(format!(
                    "agent_ca_file {}: no certificate in it",
                    ca.display()
                )));
            }
            // Optional at the TLS layer (API clients have no certificate), verified when
            // presented; AgentLink then insists on one (see `Policy::check`).
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(format!("agent_ca_file {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("tls_cert_file/tls_key_file: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// Does this client certificate name `agent_id` (as a DNS name in its SAN)?
pub fn certificate_names_agent(
    cert: &rustls::pki_types::CertificateDer<'_>,
    agent_id: &str,
) -> bool {
    let Ok(name) = rustls::pki_types::ServerName::try_from(agent_id) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .and_then(|c| c.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_access() {
        assert_eq!(access_of("/vmedia.v1.Nodes/ListNodes"), Access::StoreRead);
        assert_eq!(access_of("/vmedia.v1.Nodes/GetNode"), Access::StoreRead);
        assert_eq!(access_of("/vmedia.v1.Nodes/Watch"), Access::EngineRead);
        assert_eq!(
            access_of("/vmedia.v1.Shares/ListShares"),
            Access::EngineRead
        );
        assert_eq!(access_of("/vmedia.v1.Nodes/CreateNode"), Access::Admin);
        assert_eq!(access_of("/vmedia.v1.Shares/DrainShare"), Access::Admin);
        assert_eq!(access_of("/vmedia.v1.Nodes/RevealSecrets"), Access::Reveal);
        assert_eq!(access_of("/vmedia.v1.Nodes/SomethingNew"), Access::Admin);
        assert_eq!(access_of("/vmedia.v1.AgentLink/Session"), Access::Agent);
        assert_eq!(access_of("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access_of("garbage"), Access::Admin);
    }

    fn policy(lead: Leadership) -> Policy {
        Policy {
            tokens: Some(
                Tokens::parse(
                    "admin aaaaaaaaaaaaaaaaaaaa ops\nreader rrrrrrrrrrrrrrrrrrrr dash\n",
                    "t",
                )
                .unwrap(),
            ),
            agents_need_certificates: true,
            leadership: LeaderView::new(lead),
        }
    }

    fn req(path: &str, token: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(format!("http://x{path}"));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(()).unwrap()
    }

    #[test]
    fn roles_and_tokens() {
        let p = policy(Leadership::Leader);
        let code = |path: &str, t: Option<&str>| p.check(&req(path, t)).err().map(|s| s.code());
        use tonic::Code;
        assert_eq!(
            code("/vmedia.v1.Nodes/ListNodes", None),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code("/vmedia.v1.Nodes/ListNodes", Some("nope-nope-nope-nope")),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code("/vmedia.v1.Nodes/ListNodes", Some("rrrrrrrrrrrrrrrrrrrr")),
            None
        );
        assert_eq!(
            code("/vmedia.v1.Nodes/Watch", Some("rrrrrrrrrrrrrrrrrrrr")),
            None
        );
        assert_eq!(
            code("/vmedia.v1.Nodes/CreateNode", Some("rrrrrrrrrrrrrrrrrrrr")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code(
                "/vmedia.v1.Nodes/RevealSecrets",
                Some("rrrrrrrrrrrrrrrrrrrr")
            ),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code(
                "/vmedia.v1.Nodes/RevealSecrets",
                Some("aaaaaaaaaaaaaaaaaaaa")
            ),
            None
        );
        assert_eq!(
            code("/vmedia.v1.Nodes/CreateNode", Some("aaaaaaaaaaaaaaaaaaaa")),
            None
        );
        assert_eq!(code("/grpc.health.v1.Health/Check", None), None);
        // No client certificate on AgentLink.
        assert_eq!(
            code("/vmedia.v1.AgentLink/Session", Some("aaaaaaaaaaaaaaaaaaaa")),
            Some(Code::Unauthenticated)
        );
    }

    #[test]
    fn followers_serve_store_reads_and_redirect_the_rest() {
        let p = policy(Leadership::Follower {
            leader: Some("https://127.0.0.1:7".into()),
        });
        assert!(
            p.check(&req(
                "/vmedia.v1.Nodes/GetNode",
                Some("rrrrrrrrrrrrrrrrrrrr")
            ))
            .is_ok()
        );
        let s = p
            .check(&req(
                "/vmedia.v1.Nodes/CreateNode",
                Some("aaaaaaaaaaaaaaaaaaaa"),
            ))
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(
            s.message()
                .contains("not the leader; leader is https://127.0.0.1:7"),
            "{}",
            s.message()
        );
        // Authentication comes first: an unauthenticated caller learns nothing.
        assert_eq!(
            p.check(&req("/vmedia.v1.Nodes/CreateNode", None))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn token_file_errors_never_quote_tokens() {
        for (text, want) in [
            ("", "holds no token"),
            ("admin\n", "expected"),
            ("root aaaaaaaaaaaaaaaaaaaa\n", "admin or reader"),
            ("admin short\n", "at least 16"),
        ] {
            let e = Tokens::parse(text, "f").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("aaaaaaaa"), "{e}");
        }
        let t = Tokens::parse("admin aaaaaaaaaaaaaaaaaaaa\n", "f").unwrap();
        assert!(!format!("{t:?}").contains("aaaa"));
    }
}
