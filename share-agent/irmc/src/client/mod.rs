//! The async iRMC client: one [`IrmcClient`] per BMC, cheap to clone.
//!
//! Request pipeline: `send` (retry loop, see the crate docs for the rule) ->
//! `send_authenticated` (Basic, or Digest with a cached nonce) -> `send_raw`
//! (one HTTP exchange, counted in `requests_sent`). Power state, boot override and
//! power polling over Redfish or IPMI (the BMC transport) are in `power.rs`.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method};

use crate::config::{AuthMethod, BmcConfig, TlsVerify, Transport};
use crate::digest::{self, Challenge};
use crate::error::{Ctx, IrmcError};
use crate::ipmi::IpmiClient;
use crate::wire::{
    self, BootMode, BootPersistence, BootTarget, MediaKind, MediaLocation, PowerAction, PowerState,
    Report, ResetType, ScciCommand, Settings, SystemInfo, WireError,
};

/// Largest reply body accepted (the biggest real one, report.xml, is ~50 KB): the XML
/// parser's own cap, so that a hostile reply is cut off while it streams in.
const MAX_BODY: usize = wire::MAX_DOCUMENT_BYTES;

/// SCCI `/config` requests carry this content type even though the body is XML.
const SCCI_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// SCCI status of a command refused because the iRMC is still busy with an earlier
/// one: error 5, "Input/Output error" in the reference client's words, seen on power
/// commands sent in a tight sequence.
pub const SCCI_BUSY: i64 = 5;

/// Whether an SCCI error text gives a licence as the reason.
fn mentions_licence(message: &str, error: &str) -> bool {
    [message, error].iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("licen")
    })
}

/// Settings dump path with the reference client's query.
const SETTINGS_PATH: &str = "/iRMC_Settings.pre?P45=1&SAVE_DATA=1";

/// A client for one iRMC. Clones share the connection pool, the Digest nonce
/// cache and the request counter.
#[derive(Clone)]
pub struct IrmcClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IrmcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrmcClient")
            .field("cfg", &self.inner.cfg)
            .field("requests_sent", &self.requests_sent())
            .finish()
    }
}

struct Inner {
    cfg: BmcConfig,
    base: String,
    http: reqwest::Client,
    /// Last Digest challenge and the nonce count used with it.
    digest: Mutex<Option<DigestState>>,
    sent: AtomicU64,
    /// The IPMI-over-LAN side of the same BMC.
    ipmi: IpmiClient,
    /// `Redfish` or `Ipmi` once `cfg.transport` is resolved (auto: by the first call).
    transport: tokio::sync::OnceCell<Transport>,
    /// The Redfish system's path: an iRMC's `Systems/0` until the service says
    /// otherwise (a 404 there makes the client follow the service root's links once).
    system: Mutex<Option<String>>,
}

struct DigestState {
    challenge: Challenge,
    nc: u32,
}

/// One request to send (possibly several times).
struct Req {
    method: Method,
    /// Fixed paths, or a Redfish member link the BMC returned (inspection).
    path: std::borrow::Cow<'static, str>,
    content_type: Option<&'static str>,
    body: Bytes,
    if_match: Option<HeaderValue>,
    /// May be resent after it possibly reached the BMC (timeouts, 5xx).
    idempotent: bool,
}

impl Req {
    fn get(path: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            content_type: None,
            body: Bytes::new(),
            if_match: None,
            idempotent: true,
        }
    }
}

/// One HTTP exchange's result.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl IrmcClient {
    /// A client with its own connection pool, TLS settings from `cfg.verify`,
    /// no redirects, and `cfg.timeout` as connect and request timeout.
    pub fn new(cfg: BmcConfig) -> Result<Self, IrmcError> {
        let http = Self::http_client(&cfg.verify, cfg.timeout)?;
        Ok(Self::with_http(cfg, http))
    }

    /// A client on a shared `reqwest::Client` (one pool for many BMCs). TLS
    /// verification, redirects and the connect timeout are properties of that
    /// client: build it with [`IrmcClient::http_client`]. `cfg.timeout` is
    /// still applied per request.
    pub fn with_http(cfg: BmcConfig, http: reqwest::Client) -> Self {
        let base = cfg.base_url();
        let ipmi = IpmiClient::new(&cfg);
        let transport = match cfg.transport {
            Transport::Auto => tokio::sync::OnceCell::new(),
            fixed => tokio::sync::OnceCell::new_with(Some(fixed)),
        };
        Self {
            inner: Arc::new(Inner {
                cfg,
                base,
                http,
                digest: Mutex::new(None),
                sent: AtomicU64::new(0),
                ipmi,
                transport,
                system: Mutex::new(None),
            }),
        }
    }

    /// Builds an HTTP client suitable for iRMCs: rustls, the given
    /// verification, redirects disabled, connect+request timeout `timeout`.
    pub fn http_client(
        verify: &TlsVerify,
        timeout: Duration,
    ) -> Result<reqwest::Client, IrmcError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            // A node's requests come in bursts (one job at a time, each awaited), so one
            // idle connection per BMC is all a burst can reuse, and it is worth keeping
            // only for the burst: an agent serves thousands of BMCs, and every idle
            // connection also holds a socket on the BMC side.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(1);
        match verify {
            TlsVerify::System => {}
            TlsVerify::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|e| IrmcError::InvalidConfig {
                    field: "irmc_verify_ca",
                    reason: format!("cannot read CA file {}: {e}", path.display()),
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    IrmcError::InvalidConfig {
                        field: "irmc_verify_ca",
                        reason: format!("CA file {} is not PEM: {e}", path.display()),
                    }
                })?;
                if certs.is_empty() {
                    return Err(IrmcError::InvalidConfig {
                        field: "irmc_verify_ca",
                        reason: format!("CA file {} holds no certificate", path.display()),
                    });
                }
                b = b.tls_certs_only(certs);
            }
            TlsVerify::Insecure => b = b.tls_danger_accept_invalid_certs(true),
        }
        b.build().map_err(|e| IrmcError::InvalidConfig {
            field: "irmc_verify_ca",
            reason: format!("cannot build the HTTPS client: {e}"),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &BmcConfig {
        &self.inner.cfg
    }

    /// Requests this client (and its clones) sent: HTTP requests, counting retries and
    /// Digest 401 round trips, plus IPMI datagrams (retransmissions included).
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
            + self.inner.ipmi.stats().sent.load(Ordering::Relaxed)
    }

    fn ctx(&self, operation: &'static str) -> Ctx {
        Ctx {
            bmc: self.inner.cfg.address.clone(),
            node: self.inner.cfg.node.clone(),
            operation,
        }
    }

    fn wire_err(&self, op: &'static str, e: WireError) -> IrmcError {
        match e {
            WireError::Malformed(reason) => IrmcError::Malformed {
                ctx: self.ctx(op),
                reason,
            },
            WireError::NoManagementController => {
                IrmcError::NoManagementController { ctx: self.ctx(op) }
            }
        }
    }

    // -- SCCI -------------------------------------------------------------

    /// `GET /report.xml`: model, firmware, memory, cores, virtual-FD support.
    pub async fn report(&self) -> Result<Report, IrmcError> {
        const OP: &str = "get_report";
        let reply = self.send(OP, Req::get("/report.xml")).await?;
        self.expect_success(OP, &reply, &[200])?;
        wire::parse_report(&reply.text()).map_err(|e| self.wire_err(OP, e))
    }

    /// `GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1`: the ConfigSpace dump.
    pub async fn settings(&self) -> Result<Settings, IrmcError> {
        self.settings_for("get_settings").await
    }

    async fn settings_for(&self, op: &'static str) -> Result<Settings, IrmcError> {
        let reply = self.send(op, Req::get(SETTINGS_PATH)).await?;
        self.expect_success(op, &reply, &[200, 201])?;
        Settings::parse(&reply.text()).map_err(|e| self.wire_err(op, e))
    }

    /// POSTs one `<CMDSEQ>` of `cmds` to `/config`; `op` names the operation
    /// in errors. Success is HTTP 200/201 with `<Value>0</Value>`.
    /// An empty `cmds` sends nothing.
    ///
    /// A busy answer (SCCI status [`SCCI_BUSY`]) is waited out under the
    /// [`crate::BusyPolicy`]: the BMC refused the commands, so they are sent again after
    /// a growing pause until they succeed or the budget is spent ([`IrmcError::Busy`]).
    pub async fn execute(&self, op: &'static str, cmds: &[ScciCommand]) -> Result<(), IrmcError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let body = Bytes::from(wire::build_cmdseq(cmds));
        let policy = self.inner.cfg.busy;
        let started = tokio::time::Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let req = Req {
                method: Method::POST,
                path: "/config".into(),
                content_type: Some(SCCI_CONTENT_TYPE),
                body: body.clone(),
                if_match: None,
                idempotent: cmds.iter().all(|c| c.opcode.is_idempotent()),
            };
            let err = match self.execute_once(op, cmds, req).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let IrmcError::Scci {
                ctx,
                value: SCCI_BUSY,
                message,
                error,
                ..
            } = err
            else {
                return Err(err);
            };
            let delay = policy.delay(attempts);
            let waited = started.elapsed();
            let text = if error.is_empty() { message } else { error };
            if waited + delay > policy.budget {
                return Err(IrmcError::Busy {
                    ctx,
                    value: SCCI_BUSY,
                    message: text,
                    attempts,
                    waited,
                });
            }
            tracing::debug!(
                bmc = %self.inner.cfg.address,
                operation = op,
                attempts,
                ?delay,
                "BMC busy; sending again"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One POST of a command sequence and the check of its `<Status>`.
    async fn execute_once(
        &self,
        op: &'static str,
        cmds: &[ScciCommand],
        req: Req,
    ) -> Result<(), IrmcError> {
        let reply = self.send(op, req).await?;
        self.expect_success(op, &reply, &[200, 201])?;
        let status = wire::parse_status(&reply.text()).map_err(|e| self.wire_err(op, e))?;
        if status.value != 0 {
            // The BMC's texts may echo the request: keep none of its secrets.
            let mut secrets = vec![self.config().password.expose()];
            secrets.extend(cmds.iter().filter_map(|c| match &c.data {
                wire::ScciData::Secret(s) => Some(s.expose()),
                _ => None,
            }));
            let scrub = |t: &str| crate::error::scrub_bmc_text(t, &secrets);
            let connect = cmds.iter().any(|c| c.opcode.is_connect());
            let (message, error) = (scrub(&status.message), scrub(&status.error));
            if connect && status.value != SCCI_BUSY && mentions_licence(&message, &error) {
                return Err(IrmcError::Licence {
                    ctx: self.ctx(op),
                    detail: if error.is_empty() { message } else { error },
                });
            }
            return Err(IrmcError::Scci {
                ctx: self.ctx(op),
                value: status.value,
                severity: scrub(&status.severity),
                message,
                error,
            });
        }
        Ok(())
    }

    /// An SCCI power action (`set_power_state`). No fixed sleep afterwards:
    /// use [`IrmcClient::wait_power_state`] to wait for the result.
    pub async fn power(&self, action: PowerAction) -> Result<(), IrmcError> {
        self.execute("set_power_state", &[ScciCommand::new(action.opcode())])
            .await
    }

    /// Points drive `kind` at `loc` (one ConfigSpace POST) and connects it
    /// (`ConnectRemote*Image` DATA 1). Two requests.
    pub async fn attach(&self, kind: MediaKind, loc: &MediaLocation) -> Result<(), IrmcError> {
        let op = kind.insert_operation();
        self.execute(op, &wire::media_settings_commands(kind, loc))
            .await?;
        self.execute(op, &[ScciCommand::connect(kind, true)]).await
    }

    /// Disconnects drive `kind` (`ConnectRemote*Image` DATA 0) after reading
    /// the settings dump; when server, share or image name is empty the eject
    /// is skipped (a real iRMC answers an error to it) and only the GET is
    /// sent.
    pub async fn detach(&self, kind: MediaKind) -> Result<(), IrmcError> {
        self.eject(kind).await.map(|_| ())
    }

    /// Like [`IrmcClient::detach`], and tells whether the disconnect command
    /// was sent (`false`: the drive was not configured, eject skipped).
    pub async fn eject(&self, kind: MediaKind) -> Result<bool, IrmcError> {
        let op = kind.eject_operation();
        let settings = self.settings_for(op).await?;
        if !settings.media(kind).is_configured() {
            tracing::debug!(bmc = %self.inner.cfg.address, ?kind, "eject skipped: drive not configured");
            return Ok(false);
        }
        self.execute(op, &[ScciCommand::connect(kind, false)])
            .await
            .map(|()| true)
    }

    /// Ejects several drives after ONE read of the settings (the pre-check
    /// [`IrmcClient::eject`] makes per drive): one request fewer per extra drive.
    /// Drives are disconnected in the order given; returns, per drive, whether a
    /// disconnect was sent.
    pub async fn eject_all(&self, kinds: &[MediaKind]) -> Result<Vec<bool>, IrmcError> {
        let Some(first) = kinds.first() else {
            return Ok(Vec::new());
        };
        let settings = self.settings_for(first.eject_operation()).await?;
        let mut sent = Vec::with_capacity(kinds.len());
        for kind in kinds {
            if settings.media(*kind).is_configured() {
                self.execute(
                    kind.eject_operation(),
                    &[ScciCommand::connect(*kind, false)],
                )
                .await?;
                sent.push(true);
            } else {
                tracing::debug!(bmc = %self.inner.cfg.address, ?kind, "eject skipped: drive not configured");
                sent.push(false);
            }
        }
        Ok(sent)
    }

    // -- Redfish ----------------------------------------------------------

    /// `GET /redfish/v1/Systems/0`, parsed.
    pub async fn system_info(&self) -> Result<SystemInfo, IrmcError> {
        self.system_info_for("get_power_state")
            .await
            .map(|(s, _)| s)
    }

    /// The Redfish system's path (see `Inner::system`).
    pub(crate) fn system_path(&self) -> String {
        self.inner
            .system
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| wire::REDFISH_SYSTEM.to_string())
    }

    /// Follows the service root to the first system and remembers it. True when that
    /// is another path than the one tried, so the caller may try again there.
    pub(crate) async fn rediscover_system(&self, op: &'static str) -> Result<bool, IrmcError> {
        let tried = self.system_path();
        let found = self.first_system(op).await?;
        let changed = found != tried;
        *self.inner.system.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
        Ok(changed)
    }

    async fn system_info_for(
        &self,
        op: &'static str,
    ) -> Result<(SystemInfo, Option<HeaderValue>), IrmcError> {
        let mut reply = self.send(op, Req::get(self.system_path())).await?;
        if reply.status == 404 && self.rediscover_system(op).await? {
            reply = self.send(op, Req::get(self.system_path())).await?;
        }
        self.expect_success(op, &reply, &[200])?;
        let info = wire::parse_system(&reply.text()).map_err(|e| self.wire_err(op, e))?;
        Ok((info, reply.headers.get(ETAG).cloned()))
    }

    /// Maps a final reply's status: `ok` statuses pass, 3xx is a redirect
    /// error, 401 an auth error, anything else an HTTP error.
    fn expect_success(&self, op: &'static str, reply: &Reply, ok: &[u16]) -> Result<(), IrmcError> {
        if ok.contains(&reply.status) {
            return Ok(());
        }
        Err(match reply.status {
            300..=399 => IrmcError::Redirect {
                ctx: self.ctx(op),
                status: reply.status,
                location: reply
                    .headers
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .map(str::to_owned),
            },
            401 => IrmcError::Unauthorized {
                ctx: self.ctx(op),
                user: self.inner.cfg.username.clone(),
            },
            status => IrmcError::Http {
                ctx: self.ctx(op),
                status,
            },
        })
    }

    /// Sends with the retry rule from the crate docs.
    async fn send(&self, op: &'static str, req: Req) -> Result<Reply, IrmcError> {
        let policy = self.inner.cfg.retry;
        let attempts = policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            let retry_reason = match self.send_authenticated(op, &req).await {
                Ok(reply) => {
                    let retry = attempt < attempts
                        && (reply.status == 503
                            || (req.idempotent && (500..600).contains(&reply.status)));
                    if !retry {
                        return Ok(reply);
                    }
                    format!("HTTP {}", reply.status)
                }
                Err(e) => {
                    let retry = attempt < attempts
                        && match &e {
                            IrmcError::Connect { .. } => true,
                            // A BMC that took the connection and did not answer within
                            // irmc_client_timeout is hung, not flaky: asking again only
                            // multiplies the wait (a hung iRMC once held its node for
                            // minutes). The operation fails at its one deadline.
                            IrmcError::Transport { .. } => req.idempotent,
                            _ => false,
                        };
                    if !retry {
                        return Err(e);
                    }
                    e.to_string()
                }
            };
            let delay = policy.backoff(attempt);
            tracing::debug!(
                bmc = %self.inner.cfg.address,
                operation = op,
                attempt,
                ?delay,
                reason = %retry_reason,
                "retrying transient failure"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One logical request including authentication round trips.
    async fn send_authenticated(&self, op: &'static str, req: &Req) -> Result<Reply, IrmcError> {
        let cfg = &self.inner.cfg;
        match cfg.auth {
            AuthMethod::Basic => {
                let value = basic_header(&cfg.username, cfg.password.expose());
                self.send_raw(op, req, Some(value)).await
            }
            AuthMethod::Digest => {
                // Round 0 uses the cached nonce (if any). A 401 then means
                // the nonce may have expired: take the new challenge and
                // resend. A 401 to a freshly challenged request means wrong
                // credentials, unless the server says the nonce is stale.
                for round in 0..3 {
                    let header = self.digest_header(req)?;
                    let reply = self.send_raw(op, req, header).await?;
                    if reply.status != 401 {
                        return Ok(reply);
                    }
                    let challenge = reply
                        .headers
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(digest::parse_challenge);
                    let Some(challenge) = challenge else {
                        return Ok(reply); // plain 401 -> Unauthorized upstream
                    };
                    let stale = challenge.stale;
                    if let Ok(mut guard) = self.inner.digest.lock() {
                        *guard = Some(DigestState { challenge, nc: 0 });
                    }
                    if round > 0 && !stale {
                        return Ok(reply);
                    }
                }
                Err(IrmcError::Unauthorized {
                    ctx: self.ctx(op),
                    user: cfg.username.clone(),
                })
            }
        }
    }

    /// The Digest `Authorization` value from the cached challenge, if any.
    fn digest_header(&self, req: &Req) -> Result<Option<HeaderValue>, IrmcError> {
        let cfg = &self.inner.cfg;
        let Ok(mut guard) = self.inner.digest.lock() else {
            return Ok(None);
        };
        let Some(state) = guard.as_mut() else {
            return Ok(None);
        };
        state.nc = state.nc.wrapping_add(1);
        let value = digest::authorization(
            &state.challenge,
            state.nc,
            &digest::new_cnonce(),
            &cfg.username,
            cfg.password.expose(),
            req.method.as_str(),
            &req.path,
        );
        let mut value = HeaderValue::from_str(&value).map_err(|_| IrmcError::InvalidConfig {
            field: "irmc_username",
            reason: "contains characters not allowed in an HTTP header".into(),
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// One HTTP exchange.
    async fn send_raw(
        &self,
        op: &'static str,
        req: &Req,
        auth: Option<HeaderValue>,
    ) -> Result<Reply, IrmcError> {
        let cfg = &self.inner.cfg;
        let url = format!("{}{}", self.inner.base, req.path);
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), &url)
            .timeout(cfg.timeout);
        if let Some(auth) = auth {
            rb = rb.header(AUTHORIZATION, auth);
        }
        if let Some(ct) = req.content_type {
            rb = rb.header(CONTENT_TYPE, ct);
        }
        if let Some(m) = &req.if_match {
            rb = rb.header(IF_MATCH, m.clone());
        }
        if !req.body.is_empty() || req.method != Method::GET {
            rb = rb.body(req.body.clone());
        }
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let mut resp = rb.send().await.map_err(|e| {
            let err = self.transport_err(op, &e);
            tracing::debug!(bmc = %cfg.address, operation = op, method = %req.method, path = %req.path, error = %err, "BMC request failed");
            err
        })?;
        let status = resp.status().as_u16();
        // Never log bodies or headers: both may carry credentials.
        tracing::debug!(
            bmc = %cfg.address,
            operation = op,
            method = %req.method,
            path = %req.path,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "BMC request"
        );
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_err(op, &e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(IrmcError::Malformed {
                    ctx: self.ctx(op),
                    reason: format!("reply larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    fn transport_err(&self, op: &'static str, e: &reqwest::Error) -> IrmcError {
        // reqwest errors carry the URL, which never holds credentials here.
        let reason = error_chain(e);
        if let Some(tls) = find_tls_error(e) {
            return IrmcError::Tls {
                ctx: self.ctx(op),
                reason: tls,
            };
        }
        if e.is_timeout() {
            IrmcError::Timeout {
                ctx: self.ctx(op),
                after: self.inner.cfg.timeout,
            }
        } else if e.is_connect() {
            IrmcError::Connect {
                ctx: self.ctx(op),
                reason,
            }
        } else {
            IrmcError::Transport {
                ctx: self.ctx(op),
                reason,
            }
        }
    }
}

/// `Basic base64(user:password)`, marked sensitive so it is never printed.
fn basic_header(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

/// The rustls error somewhere in the source chain, if any. rustls errors
/// arrive wrapped in (nested) `io::Error`s, whose `source()` skips the
/// wrapped error, so an `io::Error` is descended into with `get_ref()`.
fn find_tls_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            // io::Errors nest (Other wrapping InvalidData wrapping rustls).
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

/// The error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

mod checks;
mod inventory;
mod power;
mod redfish_media;
