//! The async iRMC client: one [`IrmcClient`] per BMC, cheap to clone.
//!
//! Request pipeline: `send` (retry loop, see the crate docs for the rule) ->
//! `send_authenticated` (Basic, or Digest with a cached nonce) -> `send_raw`
//! (one HTTP exchange, counted in `requests_sent`).

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
use crate::ipmi::{BootDevice, BootFlags, IpmiClient};
use crate::wire::{
    self, BootMode, BootPersistence, BootTarget, MediaKind, MediaLocation, PowerAction, PowerState,
    Report, ResetType, ScciCommand, Settings, SystemInfo, WireError,
};

/// Largest reply body accepted (the biggest real one, report.xml, is ~50 KB).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// SCCI `/config` requests carry this content type even though the body is XML.
const SCCI_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

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
}

struct DigestState {
    challenge: Challenge,
    nc: u32,
}

/// One request to send (possibly several times).
struct Req {
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Bytes,
    if_match: Option<HeaderValue>,
    /// May be resent after it possibly reached the BMC (timeouts, 5xx).
    idempotent: bool,
}

impl Req {
    fn get(path: &'static str) -> Self {
        Self {
            method: Method::GET,
            path,
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
    pub async fn execute(&self, op: &'static str, cmds: &[ScciCommand]) -> Result<(), IrmcError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let req = Req {
            method: Method::POST,
            path: "/config",
            content_type: Some(SCCI_CONTENT_TYPE),
            body: Bytes::from(wire::build_cmdseq(cmds)),
            if_match: None,
            idempotent: cmds.iter().all(|c| c.opcode.is_idempotent()),
        };
        let reply = self.send(op, req).await?;
        self.expect_success(op, &reply, &[200, 201])?;
        let status = wire::parse_status(&reply.text()).map_err(|e| self.wire_err(op, e))?;
        if status.value != 0 {
            return Err(IrmcError::Scci {
                ctx: self.ctx(op),
                value: status.value,
                severity: status.severity,
                message: status.message,
                error: status.error,
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

    async fn system_info_for(
        &self,
        op: &'static str,
    ) -> Result<(SystemInfo, Option<HeaderValue>), IrmcError> {
        let reply = self.send(op, Req::get(wire::REDFISH_SYSTEM)).await?;
        self.expect_success(op, &reply, &[200])?;
        let info = wire::parse_system(&reply.text()).map_err(|e| self.wire_err(op, e))?;
        Ok((info, reply.headers.get(ETAG).cloned()))
    }

    /// The IPMI-over-LAN client of this BMC (same address, user and password).
    pub fn ipmi(&self) -> &IpmiClient {
        &self.inner.ipmi
    }

    /// The transport power state and boot device use: `cfg.transport`, or for `auto`
    /// what the first such call found (a Redfish read of the system resource here, when
    /// nothing was called yet). A failed probe is not cached.
    pub async fn transport(&self) -> Result<Transport, IrmcError> {
        if let Some(t) = self.inner.transport.get() {
            return Ok(*t);
        }
        self.with_transport(
            "get_power_state",
            async || self.system_info_for("get_power_state").await.map(|_| ()),
            async || Ok(()),
        )
        .await?;
        Ok(self
            .inner
            .transport
            .get()
            .copied()
            .unwrap_or(Transport::Redfish))
    }

    /// Runs `redfish` or `ipmi` per the transport in effect. Resolving `auto` costs no
    /// extra request: the Redfish call is tried; when the BMC has no Redfish service
    /// (HTTP 404/405/501, or a reply that is not the resource) Get Channel
    /// Authentication Capabilities over IPMI decides, and the answer is kept for the
    /// life of this client (the share agent keeps one client per BMC).
    async fn with_transport<T>(
        &self,
        op: &'static str,
        redfish: impl AsyncFnOnce() -> Result<T, IrmcError>,
        ipmi: impl AsyncFnOnce() -> Result<T, IrmcError>,
    ) -> Result<T, IrmcError> {
        match self.inner.transport.get() {
            Some(Transport::Ipmi) => return ipmi().await,
            Some(_) => return redfish().await,
            None => {}
        }
        let set = |t: Transport| {
            let _ = self.inner.transport.set(t);
            tracing::debug!(bmc = %self.inner.cfg.address, operation = op, transport = %t, "irmc_transport auto resolved");
        };
        match redfish().await {
            Ok(v) => {
                set(Transport::Redfish);
                Ok(v)
            }
            Err(
                e @ (IrmcError::Http {
                    status: 404 | 405 | 501,
                    ..
                }
                | IrmcError::Malformed { .. }),
            ) => match self.inner.ipmi.probe().await {
                Ok(_) => {
                    set(Transport::Ipmi);
                    ipmi().await
                }
                Err(probe) => {
                    tracing::debug!(bmc = %self.inner.cfg.address, error = %probe, "no Redfish, and the IPMI probe failed");
                    Err(e)
                }
            },
            Err(e) => Err(e),
        }
    }

    /// The power state, over the transport in effect (`get_power_state`). IPMI knows
    /// only on and off.
    pub async fn power_state(&self) -> Result<PowerState, IrmcError> {
        self.power_state_for("get_power_state").await
    }

    async fn power_state_for(&self, op: &'static str) -> Result<PowerState, IrmcError> {
        self.with_transport(
            op,
            async || Ok(self.system_info_for(op).await?.0.power_state),
            async || {
                Ok(if self.inner.ipmi.power_on().await? {
                    PowerState::On
                } else {
                    PowerState::Off
                })
            },
        )
        .await
    }

    /// Sets the boot device over the transport in effect (`set_boot_device`).
    ///
    /// Redfish: a PATCH of the boot source override; one request, and when the BMC
    /// answers 412/428 (it wants `If-Match`) the ETag is fetched and the PATCH repeated
    /// once. IPMI: Set System Boot Options, boot flags; `Cd` is the iRMC's remotely
    /// connected CD/DVD (selector 1000b, data 2 = 0x20), which is its virtual CD, as in
    /// Ironic's iRMC driver; `None` clears the valid bit.
    pub async fn set_boot_override(
        &self,
        target: BootTarget,
        persistence: BootPersistence,
        mode: BootMode,
    ) -> Result<(), IrmcError> {
        const OP: &str = "set_boot_device";
        self.with_transport(
            OP,
            async || self.redfish_boot_override(target, persistence, mode).await,
            async || {
                self.inner
                    .ipmi
                    .set_boot_flags(ipmi_boot_flags(target, persistence, mode))
                    .await
            },
        )
        .await
    }

    async fn redfish_boot_override(
        &self,
        target: BootTarget,
        persistence: BootPersistence,
        mode: BootMode,
    ) -> Result<(), IrmcError> {
        const OP: &str = "set_boot_device";
        let body = Bytes::from(wire::boot_override_body(target, persistence, mode));
        let mk = |if_match: Option<HeaderValue>| Req {
            method: Method::PATCH,
            path: wire::REDFISH_SYSTEM,
            content_type: Some("application/json"),
            body: body.clone(),
            if_match,
            idempotent: true,
        };
        let reply = self.send(OP, mk(None)).await?;
        let reply = if matches!(reply.status, 412 | 428) {
            let (_, etag) = self.system_info_for(OP).await?;
            let etag = etag.unwrap_or_else(|| HeaderValue::from_static("*"));
            self.send(OP, mk(Some(etag))).await?
        } else {
            reply
        };
        self.expect_success(OP, &reply, &[200, 202, 204])
    }

    /// `POST .../Actions/ComputerSystem.Reset` (`set_power_state`). Never
    /// resent once it may have reached the BMC.
    pub async fn redfish_reset(&self, kind: ResetType) -> Result<(), IrmcError> {
        const OP: &str = "set_power_state";
        let req = Req {
            method: Method::POST,
            path: wire::REDFISH_RESET,
            content_type: Some("application/json"),
            body: Bytes::from(wire::reset_body(kind)),
            if_match: None,
            idempotent: false,
        };
        let reply = self.send(OP, req).await?;
        self.expect_success(OP, &reply, &[200, 202, 204])
    }

    /// Polls the Redfish power state until it equals `want` or `limit`
    /// passes. Intervals start at `poll.interval` and double up to
    /// `poll.max_interval`; transient errors while polling are tolerated.
    pub async fn wait_power_state(
        &self,
        want: PowerState,
        limit: Duration,
    ) -> Result<(), IrmcError> {
        const OP: &str = "wait_power_state";
        let start = tokio::time::Instant::now();
        let poll = self.inner.cfg.poll;
        let mut interval = poll.interval.max(Duration::from_millis(1));
        loop {
            let last = match self.power_state_for(OP).await {
                Ok(state) if state == want => return Ok(()),
                Ok(state) => state.to_string(),
                Err(e) if e.is_transient() => format!("unknown ({e})"),
                Err(e) => return Err(e),
            };
            let elapsed = start.elapsed();
            if elapsed >= limit {
                return Err(IrmcError::PollTimeout {
                    ctx: self.ctx(OP),
                    want: want.to_string(),
                    last,
                    limit,
                });
            }
            tokio::time::sleep(interval.min(limit - elapsed)).await;
            interval = (interval * 2).min(poll.max_interval.max(poll.interval));
        }
    }

    // -- transport ----------------------------------------------------------

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
                            IrmcError::Timeout { .. } | IrmcError::Transport { .. } => {
                                req.idempotent
                            }
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
            req.path,
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
            tracing::debug!(bmc = %cfg.address, operation = op, method = %req.method, path = req.path, error = %err, "BMC request failed");
            err
        })?;
        let status = resp.status().as_u16();
        // Never log bodies or headers: both may carry credentials.
        tracing::debug!(
            bmc = %cfg.address,
            operation = op,
            method = %req.method,
            path = req.path,
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

/// Boot flags for a Redfish-style override.
pub fn ipmi_boot_flags(
    target: BootTarget,
    persistence: BootPersistence,
    mode: BootMode,
) -> BootFlags {
    let device = match target {
        BootTarget::Cd => BootDevice::RemoteCdrom,
        BootTarget::Hdd => BootDevice::Disk,
        BootTarget::Pxe => BootDevice::Pxe,
        BootTarget::None => BootDevice::NoOverride,
    };
    BootFlags {
        valid: target != BootTarget::None,
        persistent: persistence == BootPersistence::Continuous,
        efi: mode == BootMode::Uefi,
        device,
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
