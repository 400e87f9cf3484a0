//! The UDP conversation with one BMC: session set-up, commands, close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::wire::{
    self, BootFlags, ChannelAuthCaps, ChassisControl, ChassisStatus, CipherSuite, Packet, Rakp,
    Response, SessionKeys, cmd, netfn, payload, privilege,
};
use super::{CipherChoice, IpmiSettings};
use crate::config::{BmcConfig, Secret};
use crate::error::{Ctx, IrmcError};

/// Largest datagram read (session packets here are < 100 bytes).
const MAX_DATAGRAM: usize = 1024;

/// RMCP+ status codes after which suite 3 is tried when suite 17 was refused.
const SUITE_REFUSED: [u8; 7] = [0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11];

/// Datagram and session counts of one client (and its clones).
#[derive(Debug, Default)]
pub struct IpmiStats {
    /// Datagrams sent, retransmissions included.
    pub sent: AtomicU64,
    /// Datagrams received, dropped ones included.
    pub received: AtomicU64,
    /// Sessions activated.
    pub sessions: AtomicU64,
}

/// IPMI-over-LAN client for one BMC; cheap to clone.
#[derive(Clone)]
pub struct IpmiClient {
    inner: Arc<Inner>,
}

struct Inner {
    address: String,
    node: Option<String>,
    username: String,
    password: Secret,
    deadline: Duration,
    settings: IpmiSettings,
    /// Suite that worked last (auto mode).
    suite: Mutex<Option<CipherSuite>>,
    stats: IpmiStats,
}

impl std::fmt::Debug for IpmiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiClient")
            .field("address", &self.inner.address)
            .field("port", &self.inner.settings.port)
            .field("username", &self.inner.username)
            .field("password", &self.inner.password)
            .finish()
    }
}

impl IpmiClient {
    /// A client for the BMC of `cfg`: its address, user, password and
    /// `irmc_client_timeout` (the per-operation deadline), with `cfg.ipmi`.
    pub fn new(cfg: &BmcConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                address: cfg.address.clone(),
                node: cfg.node.clone(),
                username: cfg.username.clone(),
                password: cfg.password.clone(),
                deadline: cfg.timeout,
                settings: cfg.ipmi,
                suite: Mutex::new(None),
                stats: IpmiStats::default(),
            }),
        }
    }

    /// Datagram and session counters.
    pub fn stats(&self) -> &IpmiStats {
        &self.inner.stats
    }

    fn ctx(&self, operation: &'static str) -> Ctx {
        Ctx {
            bmc: self.inner.address.clone(),
            node: self.inner.node.clone(),
            operation,
        }
    }

    fn err(&self, op: &'static str, reason: String, transient: bool) -> IrmcError {
        IrmcError::Ipmi {
            ctx: self.ctx(op),
            port: self.inner.settings.port,
            reason,
            transient,
        }
    }

    /// Runs `f` inside one session, bounded by the per-operation deadline. The session
    /// is closed afterwards (best effort) whatever `f` returned.
    pub async fn session<T, F>(&self, op: &'static str, f: F) -> Result<T, IrmcError>
    where
        F: AsyncFnOnce(&mut IpmiSession<'_>) -> Result<T, IrmcError>,
    {
        let work = async {
            let mut s = self.open(op).await?;
            let r = f(&mut s).await;
            s.close().await;
            r
        };
        match tokio::time::timeout(self.inner.deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(self.err(
                op,
                format!(
                    "no complete answer within {}s (irmc_client_timeout)",
                    self.inner.deadline.as_secs_f64()
                ),
                true,
            )),
        }
    }

    /// Get Chassis Status: is the system powered on?
    pub async fn power_on(&self) -> Result<bool, IrmcError> {
        Ok(self.chassis_status().await?.power_on)
    }

    /// Get Chassis Status.
    pub async fn chassis_status(&self) -> Result<ChassisStatus, IrmcError> {
        const OP: &str = "get_power_state";
        self.session(OP, async |s| s.chassis_status().await).await
    }

    /// Chassis Control (power on/off/cycle, hard reset, NMI, soft off).
    pub async fn chassis_control(&self, action: ChassisControl) -> Result<(), IrmcError> {
        const OP: &str = "set_power_state";
        self.session(OP, async |s| s.chassis_control(action).await)
            .await
    }

    /// Set System Boot Options, boot flags (`set_boot_device`).
    pub async fn set_boot_flags(&self, flags: BootFlags) -> Result<(), IrmcError> {
        const OP: &str = "set_boot_device";
        self.session(OP, async |s| s.set_boot_flags(flags).await)
            .await
    }

    /// Get System Boot Options, boot flags (`get_boot_device`).
    pub async fn boot_flags(&self) -> Result<BootFlags, IrmcError> {
        const OP: &str = "get_boot_device";
        self.session(OP, async |s| s.boot_flags().await).await
    }

    /// Get Channel Authentication Capabilities only (no session): does the BMC speak
    /// IPMI 2.0 on this address? One request, bounded by the deadline.
    pub async fn probe(&self) -> Result<ChannelAuthCaps, IrmcError> {
        const OP: &str = "ipmi_probe";
        let work = async {
            let sock = self.socket(OP).await?;
            self.auth_caps(OP, &sock).await
        };
        tokio::time::timeout(self.inner.deadline, work)
            .await
            .unwrap_or_else(|_| Err(self.err(OP, "no answer within the deadline".into(), true)))
    }

    /// RMCP/ASF Presence Ping; true when the pong says IPMI is supported.
    pub async fn ping(&self) -> Result<bool, IrmcError> {
        const OP: &str = "ipmi_ping";
        let sock = self.socket(OP).await?;
        let tag = rand::random::<u8>() & 0xfe;
        self.roundtrip(OP, "ASF presence ping", &sock, &wire::asf_ping(tag), |b| {
            match wire::parse_packet(b, None) {
                Ok(Packet::Pong { tag: t, ipmi }) if t == tag => Some(Ok(ipmi)),
                _ => None,
            }
        })
        .await
    }

    async fn socket(&self, op: &'static str) -> Result<UdpSocket, IrmcError> {
        let peer = tokio::net::lookup_host((self.inner.address.as_str(), self.inner.settings.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| self.err(op, "cannot resolve the BMC address".into(), false))?;
        let local: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|e| self.err(op, format!("cannot open a UDP socket: {e}"), true))?;
        sock.connect(peer)
            .await
            .map_err(|e| self.err(op, format!("cannot reach {peer}: {e}"), true))?;
        Ok(sock)
    }

    /// Sends `pkt` and waits for a datagram `accept` takes; retransmits `pkt` unchanged
    /// after each reply timeout, at most `attempts` sends.
    async fn roundtrip<T>(
        &self,
        op: &'static str,
        step: &str,
        sock: &UdpSocket,
        pkt: &[u8],
        accept: impl FnMut(&[u8]) -> Option<Result<T, IrmcError>>,
    ) -> Result<T, IrmcError> {
        self.roundtrip_n(op, step, sock, pkt, self.inner.settings.attempts, accept)
            .await
    }

    /// [`IpmiClient::roundtrip`] with its own number of sends.
    async fn roundtrip_n<T>(
        &self,
        op: &'static str,
        step: &str,
        sock: &UdpSocket,
        pkt: &[u8],
        attempts: u32,
        mut accept: impl FnMut(&[u8]) -> Option<Result<T, IrmcError>>,
    ) -> Result<T, IrmcError> {
        let s = &self.inner.settings;
        let attempts = attempts.max(1);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut last_io = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tracing::debug!(bmc = %self.inner.address, operation = op, step, attempt, "IPMI retransmit");
            }
            self.inner.stats.sent.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = sock.send(pkt).await {
                last_io = Some(e.to_string());
            }
            let until = Instant::now() + s.reply_timeout;
            loop {
                match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => {
                        // ICMP port unreachable and the like: nothing listens (yet); wait
                        // out the interval and try again.
                        last_io = Some(e.to_string());
                        tokio::time::sleep_until(until).await;
                        break;
                    }
                    Ok(Ok(n)) => {
                        self.inner.stats.received.fetch_add(1, Ordering::Relaxed);
                        match accept(&buf[..n]) {
                            Some(r) => return r,
                            None => {
                                tracing::debug!(bmc = %self.inner.address, operation = op, step, bytes = n, "IPMI datagram dropped");
                            }
                        }
                    }
                }
            }
        }
        let port = s.port;
        let mut reason = format!(
            "no reply to {step} from {}:{port} after {attempts} tries, {}s apart",
            self.inner.address,
            s.reply_timeout.as_secs_f64()
        );
        if let Some(e) = last_io {
            reason.push_str(&format!(" (last socket error: {e})"));
        }
        Err(self.err(op, reason, true))
    }

    async fn auth_caps(
        &self,
        op: &'static str,
        sock: &UdpSocket,
    ) -> Result<ChannelAuthCaps, IrmcError> {
        let msg = wire::encode_request(
            netfn::APP,
            cmd::GET_CHANNEL_AUTH_CAPS,
            0,
            &wire::channel_auth_caps_request(privilege::ADMINISTRATOR),
        );
        let pkt = wire::v15_packet(&msg);
        let resp = self
            .roundtrip(
                op,
                "Get Channel Authentication Capabilities",
                sock,
                &pkt,
                |b| {
                    let Ok(Packet::V15 { msg }) = wire::parse_packet(b, None) else {
                        return None;
                    };
                    match wire::decode_response(&msg) {
                        Ok(r) if r.cmd == cmd::GET_CHANNEL_AUTH_CAPS => Some(Ok(r)),
                        _ => None,
                    }
                },
            )
            .await?;
        if resp.cc != 0 {
            return Err(self.err(
                op,
                format!(
                    "Get Channel Authentication Capabilities: completion code {:#04x} ({})",
                    resp.cc,
                    wire::completion_text(resp.cc)
                ),
                false,
            ));
        }
        let caps = wire::parse_channel_auth_caps(&resp.data).map_err(|e| {
            self.err(
                op,
                format!("Get Channel Authentication Capabilities: {e}"),
                false,
            )
        })?;
        if !caps.ipmi20 {
            return Err(self.err(
                op,
                "the BMC does not offer IPMI v2.0 (RMCP+) on this channel".into(),
                false,
            ));
        }
        Ok(caps)
    }

    fn suites(&self) -> Vec<CipherSuite> {
        match self.inner.settings.cipher {
            CipherChoice::Only(s) => vec![s],
            CipherChoice::Auto => {
                let known = *self.inner.suite.lock().unwrap_or_else(|e| e.into_inner());
                match known {
                    Some(s) => vec![s],
                    None => vec![CipherSuite::Suite17, CipherSuite::Suite3],
                }
            }
        }
    }

    async fn open(&self, op: &'static str) -> Result<IpmiSession<'_>, IrmcError> {
        let user = self.inner.username.as_bytes();
        if user.len() > 16 {
            return Err(IrmcError::InvalidConfig {
                field: "irmc_username",
                reason: "IPMI user names are at most 16 bytes".into(),
            });
        }
        let kuid = self.inner.password.expose().as_bytes();
        if kuid.len() > 20 {
            return Err(IrmcError::InvalidConfig {
                field: "irmc_password",
                reason: "IPMI passwords are at most 20 bytes".into(),
            });
        }
        let sock = self.socket(op).await?;
        self.auth_caps(op, &sock).await?;

        let suites = self.suites();
        let mut tag: u8 = 0;
        let mut refused = Vec::new();
        for (i, suite) in suites.iter().copied().enumerate() {
            let last = i + 1 == suites.len();
            let console_sid = loop {
                let v = rand::random::<u32>();
                if v != 0 {
                    break v;
                }
            };
            tag = tag.wrapping_add(1);
            let req = wire::open_session_request(tag, privilege::ADMINISTRATOR, console_sid, suite);
            let pkt = wire::v20_packet(payload::OPEN_SESSION_REQUEST, 0, 0, &req, None);
            let t = tag;
            // Some BMCs (OpenIPMI's ipmi_sim) ignore a proposal they do not support
            // instead of refusing it. The BMC did answer the capabilities request, so
            // silence to a suite-17 proposal is taken as a refusal after two sends (the
            // choice is then remembered): a few hundred milliseconds once per client.
            let attempts = if last {
                self.inner.settings.attempts
            } else {
                self.inner.settings.attempts.min(2)
            };
            let resp = self
                .roundtrip_n(
                    op,
                    "RMCP+ Open Session Request",
                    &sock,
                    &pkt,
                    attempts,
                    |b| match wire::parse_packet(b, None) {
                        Ok(Packet::V20 {
                            ptype, payload: p, ..
                        }) if ptype == payload::OPEN_SESSION_RESPONSE => {
                            match wire::parse_open_session_response(&p) {
                                Ok(r) if r.tag == t && r.console_sid == console_sid => Some(Ok(r)),
                                Ok(r) if r.tag == t && r.status != 0 => Some(Ok(r)),
                                _ => None,
                            }
                        }
                        _ => None,
                    },
                )
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) if !last && e.is_transient() => {
                    refused.push(format!("{suite}: no answer"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if resp.status != 0 {
                if !last && SUITE_REFUSED.contains(&resp.status) {
                    refused.push(format!("{suite}: {}", wire::rmcp_status_text(resp.status)));
                    continue;
                }
                return Err(self.err(
                    op,
                    format!(
                        "Open Session with {suite} refused: status {:#04x} ({}){}",
                        resp.status,
                        wire::rmcp_status_text(resp.status),
                        if refused.is_empty() {
                            String::new()
                        } else {
                            format!("; before that {}", refused.join("; "))
                        }
                    ),
                    false,
                ));
            }
            // A BMC must pick among the algorithms proposed; some (pyghmi) always answer
            // with suite 3's. In auto mode any suite spoken here is accepted.
            let chosen = [CipherSuite::Suite3, CipherSuite::Suite17]
                .into_iter()
                .find(|s| {
                    resp.algorithms == [s.auth_alg(), s.integrity_alg(), s.confidentiality_alg()]
                });
            let suite = match chosen {
                Some(c) if c == suite || self.inner.settings.cipher == CipherChoice::Auto => c,
                _ => {
                    return Err(self.err(
                        op,
                        format!(
                            "Open Session: the BMC chose algorithms {:?} (authentication, integrity, confidentiality) instead of {suite}",
                            resp.algorithms
                        ),
                        false,
                    ));
                }
            };
            let session = self
                .rakp(op, sock, suite, console_sid, resp.bmc_sid, &mut tag)
                .await?;
            if self.inner.settings.cipher == CipherChoice::Auto {
                *self.inner.suite.lock().unwrap_or_else(|e| e.into_inner()) = Some(suite);
            }
            return Ok(session);
        }
        Err(self.err(op, "no cipher suite to try".into(), false))
    }

    /// Sends RAKP message `sent` and waits for the BMC's answer (message `sent + 1`):
    /// a session-less RMCP+ packet of payload type `want` that `parse` accepts (it checks
    /// the message tag and gives the RMCP+ status). A non-zero status is an
    /// authentication failure naming it.
    #[allow(clippy::too_many_arguments)]
    async fn rakp_exchange<T>(
        &self,
        op: &'static str,
        step: &str,
        sent: u8,
        sock: &UdpSocket,
        pkt: &[u8],
        want: u8,
        parse: impl Fn(&[u8]) -> Option<(u8, T)>,
    ) -> Result<T, IrmcError> {
        let (status, reply) = self
            .roundtrip(
                op,
                &format!("{step} {sent}"),
                sock,
                pkt,
                |b| match wire::parse_packet(b, None) {
                    Ok(Packet::V20 {
                        ptype, payload: p, ..
                    }) if ptype == want => parse(&p).map(Ok),
                    _ => None,
                },
            )
            .await?;
        if status != 0 {
            return Err(self.auth_failed(
                op,
                format!(
                    "{step} {} status {status:#04x} ({})",
                    sent + 1,
                    wire::rmcp_status_text(status)
                ),
            ));
        }
        Ok(reply)
    }

    async fn rakp(
        &self,
        op: &'static str,
        sock: UdpSocket,
        suite: CipherSuite,
        console_sid: u32,
        bmc_sid: u32,
        tag: &mut u8,
    ) -> Result<IpmiSession<'_>, IrmcError> {
        let user = self.inner.username.as_bytes();
        let kuid = self.inner.password.expose().as_bytes();
        let mut rm = [0u8; 16];
        rand::fill(&mut rm);
        let role = privilege::ADMINISTRATOR | privilege::NAME_ONLY_LOOKUP;
        *tag = tag.wrapping_add(1);
        let t = *tag;
        let pkt = wire::v20_packet(
            payload::RAKP1,
            0,
            0,
            &wire::rakp1(t, bmc_sid, &rm, role, user),
            None,
        );
        let r2 = self
            .rakp_exchange(op, "RAKP message", 1, &sock, &pkt, payload::RAKP2, |p| {
                wire::parse_rakp2(p)
                    .ok()
                    .filter(|r| r.tag == t)
                    .map(|r| (r.status, r))
            })
            .await?;
        let rakp = Rakp {
            suite,
            console_sid,
            bmc_sid,
            rm,
            rc: r2.rc,
            guid: r2.guid,
            role,
            user,
        };
        if !wire::constant_time_eq(&rakp.rakp2_code(kuid), &r2.auth_code) {
            return Err(self.auth_failed(
                op,
                "the BMC's RAKP message 2 does not match this password".into(),
            ));
        }
        *tag = tag.wrapping_add(1);
        let t = *tag;
        let pkt = wire::v20_packet(
            payload::RAKP3,
            0,
            0,
            &wire::rakp3(t, 0, bmc_sid, &rakp.rakp3_code(kuid)),
            None,
        );
        let r4 = self
            .rakp_exchange(op, "RAKP message", 3, &sock, &pkt, payload::RAKP4, |p| {
                wire::parse_rakp4(p)
                    .ok()
                    .filter(|r| r.tag == t)
                    .map(|r| (r.status, r))
            })
            .await?;
        let sik = rakp.sik(kuid);
        if !wire::constant_time_eq(&rakp.rakp4_icv(&sik), &r4.icv) {
            return Err(self.err(
                op,
                "RAKP message 4 integrity check value does not match".into(),
                false,
            ));
        }
        let keys = SessionKeys::derive(suite, &sik);
        self.inner.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let mut s = IpmiSession {
            client: self,
            op,
            sock,
            keys,
            console_sid,
            bmc_sid,
            seq: 0,
            rq_seq: 0,
        };
        let r = s
            .command(
                netfn::APP,
                cmd::SET_SESSION_PRIVILEGE,
                &[privilege::ADMINISTRATOR],
                "Set Session Privilege Level",
            )
            .await?;
        s.expect_ok(&r, "Set Session Privilege Level")?;
        Ok(s)
    }

    fn auth_failed(&self, op: &'static str, detail: String) -> IrmcError {
        IrmcError::IpmiAuth {
            ctx: self.ctx(op),
            port: self.inner.settings.port,
            user: self.inner.username.clone(),
            detail,
        }
    }
}

/// An active session (see [`IpmiClient::session`]).
pub struct IpmiSession<'a> {
    client: &'a IpmiClient,
    op: &'static str,
    sock: UdpSocket,
    keys: SessionKeys,
    console_sid: u32,
    bmc_sid: u32,
    seq: u32,
    rq_seq: u8,
}

impl IpmiSession<'_> {
    /// The suite in use.
    pub fn suite(&self) -> CipherSuite {
        self.keys.suite
    }

    /// Sends one IPMI request in the session and returns the response (any completion
    /// code). Retransmissions reuse the same session sequence number and rqSeq.
    pub async fn command(
        &mut self,
        netfn: u8,
        command: u8,
        data: &[u8],
        step: &str,
    ) -> Result<Response, IrmcError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let rq_seq = self.rq_seq;
        let msg = wire::encode_request(netfn, command, rq_seq, data);
        let pkt = wire::v20_packet(
            payload::IPMI,
            self.bmc_sid,
            self.seq,
            &msg,
            Some(&self.keys),
        );
        let keys = &self.keys;
        let console_sid = self.console_sid;
        self.client
            .roundtrip(
                self.op,
                step,
                &self.sock,
                &pkt,
                |b| match wire::parse_packet(b, Some(keys)) {
                    Ok(Packet::V20 {
                        ptype: payload::IPMI,
                        session_id,
                        payload: p,
                        ..
                    }) if session_id == console_sid => match wire::decode_response(&p) {
                        Ok(r) if r.rq_seq == rq_seq && r.cmd == command && r.netfn == netfn + 1 => {
                            Some(Ok(r))
                        }
                        _ => None,
                    },
                    _ => None,
                },
            )
            .await
    }

    fn expect_ok(&self, r: &Response, step: &str) -> Result<(), IrmcError> {
        if r.cc == 0 {
            return Ok(());
        }
        Err(self.client.err(
            self.op,
            format!(
                "{step}: completion code {:#04x} ({})",
                r.cc,
                wire::completion_text(r.cc)
            ),
            matches!(r.cc, 0xc0 | 0xc3),
        ))
    }

    /// Get Chassis Status.
    pub async fn chassis_status(&mut self) -> Result<ChassisStatus, IrmcError> {
        const STEP: &str = "Get Chassis Status";
        let r = self
            .command(netfn::CHASSIS, cmd::GET_CHASSIS_STATUS, &[], STEP)
            .await?;
        self.expect_ok(&r, STEP)?;
        wire::parse_chassis_status(&r.data)
            .map_err(|e| self.client.err(self.op, format!("{STEP}: {e}"), false))
    }

    /// Chassis Control.
    pub async fn chassis_control(&mut self, action: ChassisControl) -> Result<(), IrmcError> {
        const STEP: &str = "Chassis Control";
        let r = self
            .command(netfn::CHASSIS, cmd::CHASSIS_CONTROL, &[action.code()], STEP)
            .await?;
        self.expect_ok(&r, STEP)
    }

    /// Set System Boot Options, parameter 5.
    pub async fn set_boot_flags(&mut self, flags: BootFlags) -> Result<(), IrmcError> {
        const STEP: &str = "Set System Boot Options (boot flags)";
        let r = self
            .command(
                netfn::CHASSIS,
                cmd::SET_BOOT_OPTIONS,
                &wire::set_boot_flags_request(flags),
                STEP,
            )
            .await?;
        self.expect_ok(&r, STEP)
    }

    /// Get System Boot Options, parameter 5.
    pub async fn boot_flags(&mut self) -> Result<BootFlags, IrmcError> {
        const STEP: &str = "Get System Boot Options (boot flags)";
        let r = self
            .command(
                netfn::CHASSIS,
                cmd::GET_BOOT_OPTIONS,
                &wire::get_boot_option_request(wire::PARAM_BOOT_FLAGS),
                STEP,
            )
            .await?;
        self.expect_ok(&r, STEP)?;
        wire::parse_boot_flags_response(&r.data)
            .map_err(|e| self.client.err(self.op, format!("{STEP}: {e}"), false))
    }

    /// Close Session, one try: the BMC drops idle sessions anyway.
    async fn close(mut self) {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let msg = wire::encode_request(
            netfn::APP,
            cmd::CLOSE_SESSION,
            self.rq_seq,
            &self.bmc_sid.to_le_bytes(),
        );
        let pkt = wire::v20_packet(
            payload::IPMI,
            self.bmc_sid,
            self.seq,
            &msg,
            Some(&self.keys),
        );
        let stats = &self.client.inner.stats;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if self.sock.send(&pkt).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let wait = self.client.inner.settings.reply_timeout;
        if let Ok(Ok(_)) = tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
            stats.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}
