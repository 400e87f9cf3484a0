//! How a client reaches the coordinator: one address or a comma-separated list of
//! replicas, TLS for `https://` addresses (verified against a CA file or the system
//! roots), and the API token sent as `authorization: Bearer ...` on every call.
//!
//! With several replicas only the leader takes writes; a follower answers
//! UNAVAILABLE "not the leader; leader is URL". [`connect`] finds the leader (following
//! such redirects, skipping unreachable replicas), so callers just use the clients.
//!
//! The CLI takes its settings from a profile and the environment
//! ([`crate::profile::resolve`]); the local fleet passes them in directly.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use vmedia_proto::v1 as pb;
use vmedia_proto::v1::nodes_client::NodesClient;
use vmedia_proto::v1::shares_client::SharesClient;

/// An API token: the product-wide secret type, never printed.
pub use secret::Secret as Token;

/// What a client needs besides the address.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// CA that signed the coordinator's certificate; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// API token; `None`: no authorization header (a coordinator in development mode).
    pub token: Option<Token>,
}

impl Access {
    /// `VMEDIA_CA_FILE`, and `VMEDIA_TOKEN_FILE` (first line) or `VMEDIA_TOKEN`.
    pub fn from_env() -> Result<Self> {
        let ca_file = std::env::var_os("VMEDIA_CA_FILE").map(PathBuf::from);
        let token = match std::env::var_os("VMEDIA_TOKEN_FILE") {
            Some(p) => Some(read_token(&PathBuf::from(p))?),
            None => std::env::var("VMEDIA_TOKEN").ok().map(Token::new),
        };
        Ok(Self { ca_file, token })
    }

    /// With the token read from `path`.
    pub fn with_token_file(mut self, path: &std::path::Path) -> Result<Self> {
        self.token = Some(read_token(path)?);
        Ok(self)
    }
}

/// The first line of a token file.
pub fn read_token(path: &std::path::Path) -> Result<Token> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let t = text.lines().next().unwrap_or("").trim();
    if t.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(Token::new(t))
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

impl Auth {
    pub fn new(access: &Access) -> Result<Self> {
        let v =
            match &access.token {
                Some(t) => Some(format!("Bearer {}", t.expose()).parse().map_err(|_| {
                    anyhow!("the API token holds characters a header cannot carry")
                })?),
                None => None,
            };
        Ok(Self(v))
    }
}

/// A channel with the token interceptor.
pub type Conn = InterceptedService<Channel, Auth>;

/// Clients of the coordinator's public services, sharing one HTTP/2 connection.
#[derive(Clone)]
pub struct Clients {
    pub nodes: NodesClient<Conn>,
    pub shares: SharesClient<Conn>,
    /// The replica these talk to.
    pub url: String,
}

/// Normalises `host:port` to `http://host:port`; leaves a URL with a scheme as it is.
pub fn endpoint_url(addr: &str) -> String {
    let addr = addr.trim();
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The addresses of a comma-separated list, as URLs.
pub fn urls(addrs: &str) -> Vec<String> {
    addrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(endpoint_url)
        .collect()
}

/// A connected channel to one replica.
pub async fn channel(url: &str, access: &Access) -> Result<Channel> {
    let mut ep = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad coordinator address {url:?}"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &access.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("reading the CA file {}", ca.display()))?;
                tls.ca_certificate(Certificate::from_pem(pem))
            }
            None => tls.with_native_roots(),
        };
        ep = ep
            .tls_config(tls)
            .with_context(|| format!("TLS set-up for {url}"))?;
    }
    ep.connect()
        .await
        .with_context(|| format!("cannot connect to the coordinator at {url}"))
}

/// Clients on one replica (no leader check).
pub async fn clients(url: &str, access: &Access) -> Result<Clients> {
    let ch = channel(url, access).await?;
    let auth = Auth::new(access)?;
    // Bulk enrolment sends large lists; raise tonic's 4 MiB default decode limit both ways.
    let max = 64 * 1024 * 1024;
    Ok(Clients {
        nodes: NodesClient::with_interceptor(ch.clone(), auth.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        shares: SharesClient::with_interceptor(ch, auth)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        url: url.to_owned(),
    })
}

/// The URL in a follower's "not the leader; leader is URL" answer.
pub fn leader_hint(message: &str) -> Option<String> {
    message
        .split("leader is ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|u| u.trim_end_matches([',', ';', ')']).to_owned())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
}

/// Whether a follower's hint may be followed: only to a configured replica, and never from
/// https down to http (a follower, or whoever answers in its place, must not steer the
/// client and its token anywhere else).
fn follows(configured: &[String], from: &str, hint: &str) -> bool {
    configured.iter().any(|c| c == hint)
        && !(from.starts_with("https://") && hint.starts_with("http://"))
}

/// Clients on the leader among `addrs` (one address or a comma-separated list). A
/// single address is used as it is. With several, each is asked a cheap question only
/// the leader answers (ListShares); redirects are followed.
pub async fn connect(addrs: &str, access: &Access) -> Result<Clients> {
    let list = urls(addrs);
    match list.as_slice() {
        [] => bail!("no coordinator address given"),
        [one] => return clients(one, access).await,
        _ => {}
    }
    let mut tried = Vec::new();
    let mut queue: std::collections::VecDeque<String> = list.iter().cloned().collect();
    let mut last = None;
    // Bounded: each configured address plus a few redirects.
    for _ in 0..(list.len() * 3) {
        let Some(url) = queue.pop_front() else { break };
        let mut c = match clients(&url, access).await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e);
                tried.push(url);
                continue;
            }
        };
        match c.shares.list_shares(pb::ListSharesRequest {}).await {
            Ok(_) => return Ok(c),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                if let Some(hint) = leader_hint(s.message())
                    && hint != url
                    && follows(&list, &url, &hint)
                {
                    queue.push_front(hint);
                }
                last = Some(anyhow!("{url}: {}", s.message()));
            }
            Err(s) => return Err(anyhow!("{url}: {} ({:?})", s.message(), s.code())),
        }
        tried.push(url);
    }
    Err(last.unwrap_or_else(|| anyhow!("no coordinator answered")))
        .with_context(|| format!("no leader among {}", list.join(", ")))
}

/// Clients on the first replica of `addrs` that can be reached (for reads, which any
/// replica serves).
pub async fn connect_any(addrs: &str, access: &Access) -> Result<Clients> {
    let mut last = None;
    for url in urls(addrs) {
        match clients(&url, access).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no coordinator address given")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_hints() {
        assert_eq!(endpoint_url("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(endpoint_url("https://c:1"), "https://c:1");
        assert_eq!(urls("a:1, https://b:2,,"), ["http://a:1", "https://b:2"]);
        assert_eq!(
            leader_hint(
                "/vmedia.v1.Nodes/CreateNode: not the leader; leader is https://127.0.0.1:9 "
            ),
            Some("https://127.0.0.1:9".to_string())
        );
        assert_eq!(
            leader_hint("not the leader; no leader is elected yet"),
            None
        );
        assert!(!format!("{:?}", Token::new("t0ps3cret")).contains("t0ps3cret"));
        let list = urls("https://a:1,https://b:1,http://c:1");
        assert!(follows(&list, "https://a:1", "https://b:1"));
        assert!(
            !follows(&list, "https://a:1", "https://evil:1"),
            "off the list"
        );
        assert!(!follows(&list, "https://a:1", "http://c:1"), "a downgrade");
        assert!(follows(&list, "http://c:1", "https://a:1"));
    }
}
