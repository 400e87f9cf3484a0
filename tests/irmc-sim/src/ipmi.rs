//! IPMI v2.0 over LAN (RMCP+) as a simulated iRMC answers it on UDP 623.
//!
//! Written from the IPMI v2.0 specification and from what `ipmitool -I lanplus` sends
//! (observed with `-v -v -v`), independently of the product's client.
//!
//! # What it answers
//! - RMCP/ASF Presence Ping (pong says "IPMI supported").
//! - Outside a session (IPMI 1.5 framing or RMCP+ session 0): Get Channel
//!   Authentication Capabilities (App 38h), Get Channel Cipher Suites (App 54h;
//!   ipmitool asks for them when no `-C` is given).
//! - RMCP+ Open Session, RAKP 1-4 with cipher suites 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96,
//!   AES-CBC-128) and 17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128); the user and
//!   password are the simulator's (the SCCI ones).
//! - In a session: Get Device ID, Set Session Privilege Level, Close Session, Get
//!   Chassis Status, Chassis Control (0 down, 1 up, 2 cycle, 3 hard reset, 4 NMI,
//!   5 soft off), Set/Get System Boot Options parameters 0, 3, 4 and 5. Boot flags
//!   device 0101b (CD/DVD) and the iRMC's 1000b (remotely connected CD/DVD, data 2 =
//!   0x20) both select the virtual CD; Get reports the selector that was set.
//!
//! Power goes through [`NodeHandle`] exactly as SCCI and Redfish power does, so an IPMI
//! power-on boots the simulated server. Every datagram is counted
//! ([`RequestCounters::ipmi_packets`]) and every command by name
//! ([`RequestCounters::ipmi`]); failed RAKP 3 checks count in `ipmi_unauthorized`.
//!
//! # Rules kept
//! - Garbage is dropped (counted as `ipmi_dropped`), never answered with a panic.
//! - A retransmitted request (same session sequence number) is answered from the
//!   session's reply cache and not executed again.
//! - At most [`MAX_SESSIONS`] sessions per node; a session idle for [`SESSION_IDLE`]
//!   is forgotten.
//!
//! [`RequestCounters::ipmi_packets`]: crate::RequestCounters::ipmi_packets
//! [`RequestCounters::ipmi`]: crate::RequestCounters::ipmi

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::Secret;
use crate::node::{BootEnabled, BootMode, BootTarget, NodeHandle};

/// Sessions one node keeps at most (a real iRMC allows a handful).
pub const MAX_SESSIONS: usize = 32;
/// Idle time after which a session is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(60);

/// Fujitsu's IANA enterprise number (10368), as Get Device ID reports it.
const FUJITSU_IANA: [u8; 3] = [0x80, 0x28, 0x00];

/// Credentials every simulated BMC accepts.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// Binds UDP `port` on the node's address.
pub(crate) async fn bind(node: &NodeHandle, port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::from((node.address(), port))).await
}

/// Serves one node until shutdown. The node's injected faults apply per datagram as they
/// do per HTTP request: latency delays the reply (and, the loop being serial, the node's
/// next datagrams), `hang` and injected errors drop the datagram (a BMC that does not
/// answer), `malformed` is ignored.
pub(crate) async fn serve(
    node: NodeHandle,
    sock: UdpSocket,
    creds: Credentials,
    seed: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut bmc = Bmc::new(node.clone(), creds);
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "IPMI recv failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let decision = node.faults().decide(seed, node.index(), node.next_seq());
        if let Some(d) = decision.delay {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            node.update(|s| s.counters.delay_ms = s.counters.delay_ms.saturating_add(ms));
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(d) => {}
            }
        }
        if decision.hang || decision.error.is_some() {
            node.update(|s| s.counters.ipmi_packets += 1);
            continue;
        }
        if let Some(reply) = bmc.datagram(&buf[..n]) {
            let _ = sock.send_to(&reply, peer).await;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Suite {
    /// 3: SHA-1 everywhere, 12-byte integrity code.
    S3,
    /// 17: SHA-256 everywhere, 16-byte integrity code.
    S17,
}

impl Suite {
    fn from_algorithms(auth: u8, integ: u8, conf: u8) -> Option<Suite> {
        match (auth, integ, conf) {
            (1, 1, 1) => Some(Suite::S3),
            (3, 4, 1) => Some(Suite::S17),
            _ => None,
        }
    }
    fn algorithms(self) -> (u8, u8, u8) {
        match self {
            Suite::S3 => (1, 1, 1),
            Suite::S17 => (3, 4, 1),
        }
    }
    fn mac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
            match <M as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    for d in data {
                        m.update(d);
                    }
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            Suite::S3 => run::<Hmac<sha1::Sha1>>(key, data),
            Suite::S17 => run::<Hmac<sha2::Sha256>>(key, data),
        }
    }
    fn icv_len(self) -> usize {
        match self {
            Suite::S3 => 12,
            Suite::S17 => 16,
        }
    }
}

/// Where a session stands.
enum Stage {
    /// Open Session answered; waiting for RAKP 1.
    Opened,
    /// RAKP 2 sent; waiting for RAKP 3.
    Challenged {
        rm: [u8; 16],
        rc: [u8; 16],
        role: u8,
        user: Vec<u8>,
    },
    /// RAKP 4 sent: integrity key K1 and AES key.
    Active {
        k1: Vec<u8>,
        aes: [u8; 16],
        out_seq: u32,
        /// Highest inbound session sequence number accepted.
        in_seq: u32,
        /// Recent (inbound sequence, reply) pairs, for retransmissions.
        replies: VecDeque<(u32, Vec<u8>)>,
    },
}

struct Session {
    console_sid: u32,
    suite: Suite,
    max_privilege: u8,
    privilege: u8,
    stage: Stage,
    last: Instant,
}

struct Bmc {
    node: NodeHandle,
    creds: Credentials,
    guid: [u8; 16],
    sessions: HashMap<u32, Session>,
    /// Boot option parameters 0, 3, 4 as last written.
    params: HashMap<u8, Vec<u8>>,
    /// Keys of the session a Close Session just ended, to sign its reply.
    closing: Option<(Suite, Vec<u8>, [u8; 16], u32)>,
}

fn sum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

impl Bmc {
    fn new(node: NodeHandle, creds: Credentials) -> Self {
        let ip = node.address().octets();
        let mut guid = [0u8; 16];
        guid[..4].copy_from_slice(&ip);
        guid[4..12].copy_from_slice(b"iRMC-sim");
        guid[12..].copy_from_slice(&(node.index() as u32).to_be_bytes());
        Bmc {
            node,
            creds,
            guid,
            sessions: HashMap::new(),
            params: HashMap::new(),
            closing: None,
        }
    }

    fn count(&self, what: &str) {
        self.node.update(|s| {
            *s.counters.ipmi.entry(what.to_string()).or_default() += 1;
        });
    }

    fn dropped(&self, why: &str) -> Option<Vec<u8>> {
        tracing::debug!(node = self.node.index(), why, "IPMI datagram dropped");
        self.node.update(|s| s.counters.ipmi_dropped += 1);
        None
    }

    /// One datagram in, at most one out.
    fn datagram(&mut self, d: &[u8]) -> Option<Vec<u8>> {
        self.node.update(|s| s.counters.ipmi_packets += 1);
        if d.len() < 5 || d[0] != 0x06 {
            return self.dropped("not RMCP");
        }
        match d[3] {
            0x06 => self.asf(&d[4..]),
            0x07 => match d[4] {
                0x00 => self.v15(&d[4..]),
                0x06 => self.v20(d),
                _ => self.dropped("IPMI 1.5 authenticated sessions are not offered"),
            },
            _ => self.dropped("unknown RMCP class"),
        }
    }

    fn asf(&self, m: &[u8]) -> Option<Vec<u8>> {
        if m.len() < 8 || m[..4] != [0, 0, 0x11, 0xbe] || m[4] != 0x80 {
            return self.dropped("not an ASF ping");
        }
        self.count("asf_ping");
        let mut out = vec![
            0x06, 0x00, 0xff, 0x06, 0, 0, 0x11, 0xbe, 0x40, m[5], 0x00, 0x10,
        ];
        out.extend_from_slice(&[0, 0, 0x11, 0xbe, 0, 0, 0, 0, 0x81, 0x00, 0, 0, 0, 0, 0, 0]);
        Some(out)
    }

    /// IPMI 1.5 framing without a session: only the pre-session commands.
    fn v15(&mut self, s: &[u8]) -> Option<Vec<u8>> {
        // auth type(1) seq(4) id(4) len(1) msg
        if s.len() < 10 {
            return self.dropped("short IPMI 1.5 header");
        }
        let len = usize::from(s[9]);
        let Some(msg) = s.get(10..10 + len) else {
            return self.dropped("short IPMI 1.5 message");
        };
        let reply = self.presession_message(msg)?;
        let mut out = vec![0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        out.push(reply.len() as u8);
        out.extend_from_slice(&reply);
        Some(out)
    }

    /// A request message without a session; the reply message.
    fn presession_message(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let Some(req) = Request::parse(msg) else {
            return self.dropped("bad IPMI message");
        };
        let (cc, data) = match (req.netfn, req.cmd) {
            (0x06, 0x38) => {
                self.count("get_channel_auth_caps");
                // channel 1; v2.0 data present; non-null user names; IPMI 1.5 and 2.0.
                (0x00, vec![0x01, 0x80, 0x04, 0x03, 0, 0, 0, 0])
            }
            (0x06, 0x54) => {
                self.count("get_channel_cipher_suites");
                cipher_suites(&req.data)
            }
            _ => {
                self.count("presession_other");
                (0xd4, Vec::new())
            }
        };
        Some(req.reply(cc, &data))
    }

    fn v20(&mut self, d: &[u8]) -> Option<Vec<u8>> {
        if d.len() < 16 {
            return self.dropped("short RMCP+ header");
        }
        let ptype = d[5];
        let sid = u32::from_le_bytes([d[6], d[7], d[8], d[9]]);
        let seq = u32::from_le_bytes([d[10], d[11], d[12], d[13]]);
        let len = usize::from(u16::from_le_bytes([d[14], d[15]]));
        let Some(payload) = d.get(16..16 + len) else {
            return self.dropped("short RMCP+ payload");
        };
        match ptype & 0x3f {
            0x10 => self.open_session(payload),
            0x12 => self.rakp1(payload),
            0x14 => self.rakp3(payload),
            0x00 if sid == 0 => {
                if ptype & 0xc0 != 0 {
                    return self.dropped("secured packet for session 0");
                }
                let reply = self.presession_message(payload)?;
                Some(frame(0x00, 0, 0, &reply))
            }
            0x00 => self.session_packet(d, ptype, sid, seq, len),
            _ => self.dropped("unsupported payload type"),
        }
    }

    fn prune(&mut self) {
        let now = Instant::now();
        self.sessions
            .retain(|_, s| now.duration_since(s.last) < SESSION_IDLE);
    }

    fn open_session(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        self.count("open_session");
        if p.len() < 32 {
            return self.dropped("short Open Session Request");
        }
        let tag = p[0];
        let console_sid = [p[4], p[5], p[6], p[7]];
        let error = |status: u8| {
            let mut r = vec![tag, status, 0, 0];
            r.extend_from_slice(&console_sid);
            Some(frame(0x11, 0, 0, &r))
        };
        let Some(suite) = Suite::from_algorithms(p[12], p[20], p[28]) else {
            return error(0x11);
        };
        if p[8] != 0x00 || p[16] != 0x01 || p[24] != 0x02 {
            return error(0x12);
        }
        self.prune();
        if self.sessions.len() >= MAX_SESSIONS {
            return error(0x01);
        }
        let max_privilege = match p[1] & 0x0f {
            0 => 4,
            x if x <= 4 => x,
            _ => return error(0x09),
        };
        let bmc_sid = loop {
            let v: u32 = rand::random();
            if v != 0 && !self.sessions.contains_key(&v) {
                break v;
            }
        };
        self.sessions.insert(
            bmc_sid,
            Session {
                console_sid: u32::from_le_bytes(console_sid),
                suite,
                max_privilege,
                privilege: 2,
                stage: Stage::Opened,
                last: Instant::now(),
            },
        );
        let (a, i, c) = suite.algorithms();
        let mut r = vec![tag, 0x00, max_privilege, 0];
        r.extend_from_slice(&console_sid);
        r.extend_from_slice(&bmc_sid.to_le_bytes());
        r.extend_from_slice(&[0x00, 0, 0, 0x08, a, 0, 0, 0]);
        r.extend_from_slice(&[0x01, 0, 0, 0x08, i, 0, 0, 0]);
        r.extend_from_slice(&[0x02, 0, 0, 0x08, c, 0, 0, 0]);
        Some(frame(0x11, 0, 0, &r))
    }

    fn rakp1(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        self.count("rakp1");
        if p.len() < 28 {
            return self.dropped("short RAKP 1");
        }
        let tag = p[0];
        let bmc_sid = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let mut rm = [0u8; 16];
        rm.copy_from_slice(&p[8..24]);
        let role = p[24];
        let ulen = usize::from(p[27]);
        let Some(user) = p.get(28..28 + ulen) else {
            return self.dropped("short RAKP 1 user name");
        };
        let guid = self.guid;
        let name_ok = user == self.creds.user.as_bytes();
        let password = self.creds.password.expose().as_bytes().to_vec();
        let Some(s) = self.sessions.get_mut(&bmc_sid) else {
            let mut r = vec![tag, 0x02, 0, 0, 0, 0, 0, 0];
            r.truncate(8);
            return Some(frame(0x13, 0, 0, &r));
        };
        let console_sid = s.console_sid.to_le_bytes();
        let status = if !name_ok {
            0x0d
        } else if role & 0x0f > s.max_privilege || role & 0x0f == 0 && role & 0x10 == 0 {
            0x09
        } else {
            0
        };
        if status != 0 {
            self.sessions.remove(&bmc_sid);
            self.node.update(|s| s.counters.ipmi_unauthorized += 1);
            let mut r = vec![tag, status, 0, 0];
            r.extend_from_slice(&console_sid);
            return Some(frame(0x13, 0, 0, &r));
        }
        // A retransmitted RAKP 1 (same console random number, because the reply to the
        // first was late or lost) gets the same challenge: a fresh one would leave the
        // console answering the first RAKP 2 with a RAKP 3 this session no longer
        // accepts (status 0x0f), as seen under load in a 200-node fleet.
        let rc = match &s.stage {
            Stage::Challenged {
                rm: prev_rm,
                rc: prev_rc,
                role: prev_role,
                user: prev_user,
            } if *prev_rm == rm && *prev_role == role && prev_user.as_slice() == user => *prev_rc,
            _ => {
                let mut rc = [0u8; 16];
                rand::fill(&mut rc);
                rc
            }
        };
        let code = s.suite.mac(
            &password,
            &[
                &console_sid,
                &bmc_sid.to_le_bytes(),
                &rm,
                &rc,
                &guid,
                &[role, ulen as u8],
                user,
            ],
        );
        s.stage = Stage::Challenged {
            rm,
            rc,
            role,
            user: user.to_vec(),
        };
        s.last = Instant::now();
        let mut r = vec![tag, 0, 0, 0];
        r.extend_from_slice(&console_sid);
        r.extend_from_slice(&rc);
        r.extend_from_slice(&guid);
        r.extend_from_slice(&code);
        Some(frame(0x13, 0, 0, &r))
    }

    fn rakp3(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        self.count("rakp3");
        if p.len() < 8 {
            return self.dropped("short RAKP 3");
        }
        let tag = p[0];
        let bmc_sid = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
        let password = self.creds.password.expose().as_bytes().to_vec();
        let guid = self.guid;
        let Some(s) = self.sessions.get_mut(&bmc_sid) else {
            return Some(frame(0x15, 0, 0, &[tag, 0x02, 0, 0, 0, 0, 0, 0]));
        };
        let console_sid = s.console_sid.to_le_bytes();
        let Stage::Challenged { rm, rc, role, user } = &s.stage else {
            return Some(frame(0x15, 0, 0, &[tag, 0x02, 0, 0, 0, 0, 0, 0]));
        };
        let (rm, rc, role, user) = (*rm, *rc, *role, user.clone());
        let suite = s.suite;
        let lens = [role, user.len() as u8];
        let want = suite.mac(&password, &[&rc, &console_sid, &lens, &user]);
        if p[1] != 0 || !same(&want, &p[8..]) {
            self.sessions.remove(&bmc_sid);
            self.node.update(|s| s.counters.ipmi_unauthorized += 1);
            let mut r = vec![tag, 0x0f, 0, 0];
            r.extend_from_slice(&console_sid);
            return Some(frame(0x15, 0, 0, &r));
        }
        let sik = suite.mac(&password, &[&rm, &rc, &lens, &user]);
        // The key-derivation constants are 20 bytes for every authentication algorithm.
        let k1 = suite.mac(&sik, &[&[1u8; 20]]);
        let k2 = suite.mac(&sik, &[&[2u8; 20]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(k2.get(..16).unwrap_or(&[0; 16]));
        let mut icv = suite.mac(&sik, &[&rm, &bmc_sid.to_le_bytes(), &guid]);
        icv.truncate(suite.icv_len());
        s.stage = Stage::Active {
            k1,
            aes,
            out_seq: 0,
            in_seq: 0,
            replies: VecDeque::new(),
        };
        s.privilege = 2.min(s.max_privilege).max(role & 0x0f);
        s.last = Instant::now();
        let mut r = vec![tag, 0, 0, 0];
        r.extend_from_slice(&console_sid);
        r.extend_from_slice(&icv);
        Some(frame(0x15, 0, 0, &r))
    }

    fn session_packet(
        &mut self,
        d: &[u8],
        ptype: u8,
        sid: u32,
        seq: u32,
        len: usize,
    ) -> Option<Vec<u8>> {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return self.dropped("unknown session");
        };
        let suite = s.suite;
        let Stage::Active {
            k1,
            aes,
            replies,
            in_seq,
            ..
        } = &mut s.stage
        else {
            return self.dropped("session not active");
        };
        if ptype & 0xc0 != 0xc0 {
            return self.dropped("session packet not encrypted and authenticated");
        }
        // trailer: pad (ff..) | pad len | 07 | auth code
        let icv = suite.icv_len();
        if d.len() < 16 + len + 2 + icv {
            return self.dropped("short session trailer");
        }
        let code_at = d.len() - icv;
        let want = suite.mac(k1, &[&d[4..code_at]]);
        if !same(&want[..icv.min(want.len())], &d[code_at..]) {
            return self.dropped("integrity check failed");
        }
        if let Some((_, r)) = replies.iter().find(|(q, _)| *q == seq) {
            let r = r.clone();
            self.count("retransmission");
            return Some(r);
        }
        // The spec's sliding window: sequence 0 is never valid in a session, and a number
        // more than 16 below the highest one seen is a replay.
        if seq == 0 || seq.saturating_add(16) < *in_seq {
            return self.dropped("session sequence number outside the window");
        }
        *in_seq = (*in_seq).max(seq);
        let Some(msg) = decrypt(aes, &d[16..16 + len]) else {
            return self.dropped("cannot decrypt");
        };
        let Some(req) = Request::parse(&msg) else {
            return self.dropped("bad IPMI message in session");
        };
        let (cc, data) = self.command(sid, &req);
        let reply_msg = req.reply(cc, &data);
        // The session may be gone (Close Session); answer with its keys anyway.
        let s = match self.sessions.get_mut(&sid) {
            Some(s) => s,
            None => return Some(self.closed_reply(d, &reply_msg)),
        };
        s.last = Instant::now();
        let console_sid = s.console_sid;
        let Stage::Active {
            k1,
            aes,
            out_seq,
            replies,
            ..
        } = &mut s.stage
        else {
            return None;
        };
        *out_seq = out_seq.wrapping_add(1).max(1);
        let out = secured_frame(suite, k1, aes, console_sid, *out_seq, &reply_msg);
        replies.push_back((seq, out.clone()));
        if replies.len() > 8 {
            replies.pop_front();
        }
        Some(out)
    }

    /// The reply to Close Session, signed with the keys the session had.
    fn closed_reply(&mut self, _d: &[u8], reply: &[u8]) -> Vec<u8> {
        match self.closing.take() {
            Some((suite, k1, aes, console_sid)) => {
                secured_frame(suite, &k1, &aes, console_sid, 1, reply)
            }
            None => Vec::new(),
        }
    }

    fn command(&mut self, sid: u32, req: &Request) -> (u8, Vec<u8>) {
        let privilege = self.sessions.get(&sid).map_or(0, |s| s.privilege);
        let node = self.node.clone();
        match (req.netfn, req.cmd) {
            (0x06, 0x01) => {
                self.count("get_device_id");
                let mut d = vec![0x20, 0x81, 0x07, 0x65, 0x02, 0xbf];
                d.extend_from_slice(&FUJITSU_IANA);
                d.extend_from_slice(&[0x25, 0x01, 0, 0, 0, 0]);
                (0, d)
            }
            (0x06, 0x38) => {
                self.count("get_channel_auth_caps");
                (0, vec![0x01, 0x80, 0x04, 0x03, 0, 0, 0, 0])
            }
            (0x06, 0x54) => {
                self.count("get_channel_cipher_suites");
                cipher_suites(&req.data)
            }
            (0x06, 0x3b) => {
                self.count("set_session_privilege");
                let Some(&want) = req.data.first() else {
                    return (0xc7, Vec::new());
                };
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return (0xff, Vec::new());
                };
                let want = want & 0x0f;
                if want == 0 {
                    return (0, vec![s.privilege]);
                }
                if want > s.max_privilege {
                    return (0x81, Vec::new());
                }
                s.privilege = want;
                (0, vec![want])
            }
            (0x06, 0x3c) => {
                self.count("close_session");
                let Some(id) = req.data.get(..4) else {
                    return (0xc7, Vec::new());
                };
                let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                if id != sid && !self.sessions.contains_key(&id) {
                    return (0x87, Vec::new());
                }
                if let Some(s) = self.sessions.remove(&id)
                    && id == sid
                    && let Stage::Active { k1, aes, .. } = s.stage
                {
                    self.closing = Some((s.suite, k1, aes, s.console_sid));
                }
                (0, Vec::new())
            }
            (0x00, 0x01) => {
                self.count("get_chassis_status");
                let on = node.update(|s| s.power == crate::PowerState::On);
                // power state, last event, misc (identify supported), front panel
                (0, vec![u8::from(on), 0x00, 0x40, 0x00])
            }
            (0x00, 0x02) => {
                self.count("chassis_control");
                if privilege < 3 {
                    return (0xd4, Vec::new());
                }
                match req.data.first().map(|b| b & 0x0f) {
                    Some(0) => {
                        node.power_off();
                    }
                    Some(1) => {
                        node.power_on();
                    }
                    Some(2) => {
                        node.reset("power-cycle");
                    }
                    Some(3) => {
                        node.reset("reset");
                    }
                    Some(4) => {}
                    Some(5) => {
                        // ACPI soft-off: any OS here honours it (as Redfish GracefulShutdown).
                        node.power_off();
                    }
                    Some(_) => return (0xcc, Vec::new()),
                    None => return (0xc7, Vec::new()),
                }
                (0, Vec::new())
            }
            (0x00, 0x08) => {
                self.count("set_system_boot_options");
                if privilege < 3 {
                    return (0xd4, Vec::new());
                }
                self.set_boot_option(&req.data)
            }
            (0x00, 0x09) => {
                self.count("get_system_boot_options");
                self.get_boot_option(&req.data)
            }
            _ => {
                self.count("other");
                (0xc1, Vec::new())
            }
        }
    }

    fn set_boot_option(&mut self, d: &[u8]) -> (u8, Vec<u8>) {
        let Some((&sel, data)) = d.split_first() else {
            return (0xc7, Vec::new());
        };
        let param = sel & 0x7f;
        let want_len = match param {
            0 | 3 => 1,
            4 => 2,
            5 => 5,
            _ => return (0x80, Vec::new()),
        };
        if data.len() != want_len {
            return (0xc7, Vec::new());
        }
        if param != 5 {
            self.params.insert(param, data.to_vec());
            return (0, Vec::new());
        }
        let valid = data[0] & 0x80 != 0;
        let persistent = data[0] & 0x40 != 0;
        let efi = data[0] & 0x20 != 0;
        let selector = (data[1] >> 2) & 0x0f;
        let target = match selector {
            0x0 => BootTarget::None,
            0x1 => BootTarget::Pxe,
            0x2 | 0x3 => BootTarget::Hdd,
            0x5 | 0x8 => BootTarget::Cd,
            0x6 => BootTarget::BiosSetup,
            _ => return (0xcc, Vec::new()),
        };
        self.node.update(|s| {
            s.boot.mode = if efi {
                BootMode::Uefi
            } else {
                BootMode::Legacy
            };
            if valid && target != BootTarget::None {
                s.boot.target = target;
                s.boot.enabled = if persistent {
                    BootEnabled::Continuous
                } else {
                    BootEnabled::Once
                };
            } else {
                s.boot.target = BootTarget::None;
                s.boot.enabled = BootEnabled::Disabled;
            }
            s.ipmi_boot_selector = Some(selector);
        });
        tracing::debug!(
            node = self.node.index(),
            selector,
            valid,
            persistent,
            efi,
            "IPMI boot flags"
        );
        (0, Vec::new())
    }

    fn get_boot_option(&self, d: &[u8]) -> (u8, Vec<u8>) {
        let Some(&sel) = d.first() else {
            return (0xc7, Vec::new());
        };
        let param = sel & 0x7f;
        let data = match param {
            0 | 3 | 4 => self
                .params
                .get(&param)
                .cloned()
                .unwrap_or_else(|| vec![0; if param == 4 { 2 } else { 1 }]),
            5 => {
                let (boot, stored) = self.node.update(|s| (s.boot, s.ipmi_boot_selector));
                let valid = boot.enabled != BootEnabled::Disabled;
                let selector = match (boot.effective_target(), stored) {
                    (BootTarget::Cd, Some(s @ (0x5 | 0x8))) => s,
                    (BootTarget::Hdd, Some(s @ (0x2 | 0x3))) => s,
                    (BootTarget::None, _) => 0x0,
                    (BootTarget::Pxe, _) => 0x1,
                    (BootTarget::Hdd, _) => 0x2,
                    (BootTarget::Cd, _) => 0x5,
                    (BootTarget::BiosSetup, _) => 0x6,
                    (BootTarget::UefiHttp, _) => 0x1,
                };
                let d1 = (u8::from(valid) << 7)
                    | (u8::from(boot.enabled == BootEnabled::Continuous) << 6)
                    | (u8::from(boot.mode == BootMode::Uefi) << 5);
                vec![d1, selector << 2, 0, 0, 0]
            }
            _ => return (0x80, Vec::new()),
        };
        let mut out = vec![0x01, param];
        out.extend_from_slice(&data);
        (0, out)
    }
}

/// Get Channel Cipher Suites: suites 3 and 17, listed by suite ("list algorithms by
/// cipher suite" or not, the records are the same here).
fn cipher_suites(req: &[u8]) -> (u8, Vec<u8>) {
    if req.len() < 3 {
        return (0xc7, Vec::new());
    }
    if req[1] != 0x00 {
        return (0x80, Vec::new());
    }
    let records = [0xc0, 0x03, 0x01, 0x41, 0x81, 0xc0, 0x11, 0x03, 0x44, 0x81];
    let index = usize::from(req[2] & 0x3f);
    let mut out = vec![0x01];
    out.extend(records.iter().skip(index * 16).take(16));
    (0, out)
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |x, (p, q)| x | (p ^ q)) == 0
}

/// An RMCP+ packet without integrity or encryption.
fn frame(ptype: u8, sid: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x06, 0x00, 0xff, 0x07, 0x06, ptype];
    v.extend_from_slice(&sid.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// An encrypted and signed RMCP+ IPMI packet.
fn secured_frame(
    suite: Suite,
    k1: &[u8],
    aes: &[u8; 16],
    sid: u32,
    seq: u32,
    msg: &[u8],
) -> Vec<u8> {
    let mut iv = [0u8; 16];
    rand::fill(&mut iv);
    let mut body = msg.to_vec();
    let pad = (16 - (body.len() + 1) % 16) % 16;
    for i in 1..=pad {
        body.push(i as u8);
    }
    body.push(pad as u8);
    let n = body.len();
    let mut enc = iv.to_vec();
    if let Ok(c) = cbc::Encryptor::<Aes128>::new(aes.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut body, n)
    {
        enc.extend_from_slice(c);
    }
    let mut v = frame(0xc0, sid, seq, &enc);
    let covered = v.len() - 4 + 2;
    let ipad = (4 - covered % 4) % 4;
    v.extend(std::iter::repeat_n(0xff, ipad));
    v.push(ipad as u8);
    v.push(0x07);
    let mut code = suite.mac(k1, &[&v[4..]]);
    code.truncate(suite.icv_len());
    v.extend_from_slice(&code);
    v
}

fn decrypt(aes: &[u8; 16], p: &[u8]) -> Option<Vec<u8>> {
    if p.len() < 32 || !p.len().is_multiple_of(16) {
        return None;
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&p[..16]);
    let mut body = p[16..].to_vec();
    let plain = cbc::Decryptor::<Aes128>::new(aes.into(), &iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut body)
        .ok()?;
    let (&pad, rest) = plain.split_last()?;
    let keep = rest.len().checked_sub(usize::from(pad))?;
    Some(rest[..keep].to_vec())
}

/// A request message as a BMC reads it.
struct Request {
    netfn: u8,
    rq_addr: u8,
    rq_seq_lun: u8,
    rs_lun: u8,
    cmd: u8,
    data: Vec<u8>,
}

impl Request {
    fn parse(m: &[u8]) -> Option<Request> {
        if m.len() < 7 || sum(&m[..2]) != m[2] || sum(&m[3..m.len() - 1]) != m[m.len() - 1] {
            return None;
        }
        Some(Request {
            netfn: m[1] >> 2,
            rs_lun: m[1] & 0x03,
            rq_addr: m[3],
            rq_seq_lun: m[4],
            cmd: m[5],
            data: m[6..m.len() - 1].to_vec(),
        })
    }

    fn reply(&self, cc: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![
            self.rq_addr,
            ((self.netfn + 1) << 2) | (self.rq_seq_lun & 0x03),
        ];
        v.push(sum(&v));
        v.extend_from_slice(&[0x20, (self.rq_seq_lun & 0xfc) | self.rs_lun, self.cmd, cc]);
        v.extend_from_slice(data);
        let c = sum(&v[3..]);
        v.push(c);
        v
    }
}
