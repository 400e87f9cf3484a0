//! IPMI v2.0 over LAN: every wire structure and its codec, in one place.
//!
//! Pure functions over byte slices; nothing here does IO. Golden tests on real bytes
//! (captured from `ipmitool -I lanplus`) are in `tests/it/ipmi.rs`.
//!
//! # Framing (IPMI v2.0 section 13)
//! ```text
//! RMCP header   06 00 ff CLASS          class 06 = ASF, 07 = IPMI
//! IPMI 1.5      00 | seq(4) | sid(4) | len(1) | message          (session-less only)
//! IPMI 2.0/RMCP+ 06 | ptype(1) | sid(4 LE) | seq(4 LE) | len(2 LE) | payload
//!               [ pad ff.. | pad len | 07 | auth code ]          (authenticated)
//! ptype         bit 7 encrypted, bit 6 authenticated, bits 5:0 payload type
//! ```
//! An encrypted payload (AES-CBC-128) is `IV(16) | AES(data | 01 02 .. n | n)`.
//! The integrity auth code is HMAC(K1) over everything from the auth-type byte to the
//! next-header byte, truncated to 12 (HMAC-SHA1-96) or 16 (HMAC-SHA256-128) bytes.
//!
//! # IPMI message (LAN format)
//! Request `rsSA(20) | netFn<<2|rsLUN | chk1 | rqSA(81) | rqSeq<<2|rqLUN | cmd | data | chk2`;
//! the response swaps the addresses and puts the completion code before the data.
//! Checksums are two's complement sums.

use std::fmt;

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// Why bytes could not be decoded. Never holds the bytes themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(why.into()))
}

/// UDP port of IPMI over LAN (RMCP).
pub const IPMI_PORT: u16 = 623;
/// RMCP version 1.0.
pub const RMCP_VERSION: u8 = 0x06;
/// RMCP sequence number meaning "no RMCP ACK wanted".
pub const RMCP_NO_ACK: u8 = 0xff;
/// RMCP message class: ASF.
pub const CLASS_ASF: u8 = 0x06;
/// RMCP message class: IPMI.
pub const CLASS_IPMI: u8 = 0x07;
/// The ASF IANA enterprise number 4542, big-endian.
pub const ASF_IANA: [u8; 4] = [0x00, 0x00, 0x11, 0xbe];
/// Responder address of the BMC.
pub const BMC_SA: u8 = 0x20;
/// Requester software ID of a remote console.
pub const CONSOLE_SWID: u8 = 0x81;
/// Session header auth type: RMCP+.
pub const AUTH_RMCP_PLUS: u8 = 0x06;

/// Network functions used here (request values; responses add 1).
pub mod netfn {
    /// Chassis.
    pub const CHASSIS: u8 = 0x00;
    /// Application.
    pub const APP: u8 = 0x06;
}

/// Commands used here.
pub mod cmd {
    /// Chassis: Get Chassis Status.
    pub const GET_CHASSIS_STATUS: u8 = 0x01;
    /// Chassis: Chassis Control.
    pub const CHASSIS_CONTROL: u8 = 0x02;
    /// Chassis: Set System Boot Options.
    pub const SET_BOOT_OPTIONS: u8 = 0x08;
    /// Chassis: Get System Boot Options.
    pub const GET_BOOT_OPTIONS: u8 = 0x09;
    /// App: Get Device ID.
    pub const GET_DEVICE_ID: u8 = 0x01;
    /// App: Get Channel Authentication Capabilities.
    pub const GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
    /// App: Set Session Privilege Level.
    pub const SET_SESSION_PRIVILEGE: u8 = 0x3b;
    /// App: Close Session.
    pub const CLOSE_SESSION: u8 = 0x3c;
}

/// Payload types (bits 5:0 of the payload-type byte).
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
    /// Payload-type bit: encrypted.
    pub const ENCRYPTED: u8 = 0x80;
    /// Payload-type bit: authenticated.
    pub const AUTHENTICATED: u8 = 0x40;
}

/// Privilege level (also the role in RAKP 1, bits 3:0).
pub mod privilege {
    /// Operator.
    pub const OPERATOR: u8 = 0x03;
    /// Administrator.
    pub const ADMINISTRATOR: u8 = 0x04;
    /// RAKP 1 role bit: look the user up by name only (not by name and privilege).
    pub const NAME_ONLY_LOOKUP: u8 = 0x10;
}

// ---------------------------------------------------------------------------
// Cipher suites and their algorithms
// ---------------------------------------------------------------------------

/// The hash behind an RMCP+ authentication or integrity algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1 (20-byte HMAC).
    Sha1,
    /// SHA-256 (32-byte HMAC).
    Sha256,
}

impl Hash {
    /// Length of a full HMAC.
    pub fn len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// Always false (a hash has a length); for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// HMAC of the concatenation of `parts` under `key`.
pub fn hmac(hash: Hash, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty
    // result (never matching anything) stands in for the impossible error.
    match hash {
        Hash::Sha1 => match <Hmac<Sha1> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
        Hash::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    }
}

/// An RMCP+ cipher suite this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

impl CipherSuite {
    /// The suite ID (3 or 17).
    pub fn id(self) -> u8 {
        match self {
            Self::Suite3 => 3,
            Self::Suite17 => 17,
        }
    }

    /// From a suite ID.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            3 => Some(Self::Suite3),
            17 => Some(Self::Suite17),
            _ => None,
        }
    }

    /// Authentication algorithm number (RAKP-HMAC-SHA1 = 1, RAKP-HMAC-SHA256 = 3).
    pub fn auth_alg(self) -> u8 {
        match self {
            Self::Suite3 => 0x01,
            Self::Suite17 => 0x03,
        }
    }

    /// Integrity algorithm number (HMAC-SHA1-96 = 1, HMAC-SHA256-128 = 4).
    pub fn integrity_alg(self) -> u8 {
        match self {
            Self::Suite3 => 0x01,
            Self::Suite17 => 0x04,
        }
    }

    /// Confidentiality algorithm number (AES-CBC-128 = 1).
    pub fn confidentiality_alg(self) -> u8 {
        0x01
    }

    /// The hash of both the authentication and the integrity algorithm.
    pub fn hash(self) -> Hash {
        match self {
            Self::Suite3 => Hash::Sha1,
            Self::Suite17 => Hash::Sha256,
        }
    }

    /// Length of the integrity auth code on every session packet (12 or 16).
    pub fn integrity_len(self) -> usize {
        match self {
            Self::Suite3 => 12,
            Self::Suite17 => 16,
        }
    }

    /// Length of the RAKP 4 integrity check value (12 or 16).
    pub fn rakp4_icv_len(self) -> usize {
        self.integrity_len()
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cipher suite {}", self.id())
    }
}

// ---------------------------------------------------------------------------
// Session keys, integrity and confidentiality
// ---------------------------------------------------------------------------

/// Keys of an established session: K1 for integrity, the first 16 bytes of K2 for AES.
#[derive(Clone)]
pub struct SessionKeys {
    /// The suite negotiated.
    pub suite: CipherSuite,
    k1: Vec<u8>,
    aes: [u8; 16],
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are derived from the password: never printed.
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// K1 = HMAC_SIK(0x01 * 20), K2 = HMAC_SIK(0x02 * 20): the constants are 20 bytes
    /// whatever the hash (so with SHA-256 too).
    pub fn derive(suite: CipherSuite, sik: &[u8]) -> Self {
        let k1 = hmac(suite.hash(), sik, &[&[0x01; 20]]);
        let k2 = hmac(suite.hash(), sik, &[&[0x02; 20]]);
        let mut aes = [0u8; 16];
        if k2.len() >= 16 {
            aes.copy_from_slice(&k2[..16]);
        }
        Self { suite, k1, aes }
    }

    /// The integrity auth code over `covered` (auth type .. next header).
    pub fn auth_code(&self, covered: &[u8]) -> Vec<u8> {
        let mut mac = hmac(self.suite.hash(), &self.k1, &[covered]);
        mac.truncate(self.suite.integrity_len());
        mac
    }

    /// `IV | AES-CBC-128(data | 01 02 .. n | n)` with the given IV.
    pub fn encrypt_with_iv(&self, data: &[u8], iv: [u8; 16]) -> Vec<u8> {
        let pad = (16 - (data.len() + 1) % 16) % 16;
        let mut buf = Vec::with_capacity(16 + data.len() + pad + 1);
        buf.extend_from_slice(data);
        buf.extend((1..=pad).map(|i| i as u8));
        buf.push(pad as u8);
        let len = buf.len();
        let mut out = iv.to_vec();
        // `buf` is whole blocks by construction, so NoPadding cannot fail.
        if let Ok(enc) = cbc::Encryptor::<Aes128>::new(&self.aes.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        {
            out.extend_from_slice(enc);
        }
        out
    }

    /// [`SessionKeys::encrypt_with_iv`] with a random IV.
    pub fn encrypt(&self, data: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; 16];
        rand::fill(&mut iv);
        self.encrypt_with_iv(data, iv)
    }

    /// Inverse of [`SessionKeys::encrypt`]; checks the confidentiality trailer.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if payload.len() < 32 || !payload.len().is_multiple_of(16) {
            return bad(format!(
                "encrypted payload of {} bytes is not IV + whole AES blocks",
                payload.len()
            ));
        }
        let (iv, body) = payload.split_at(16);
        let mut iv16 = [0u8; 16];
        iv16.copy_from_slice(iv);
        let mut buf = body.to_vec();
        let plain = cbc::Decryptor::<Aes128>::new(&self.aes.into(), &iv16.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| DecodeError("AES-CBC decryption failed".into()))?;
        let Some((&pad, rest)) = plain.split_last() else {
            return bad("empty decrypted payload");
        };
        let pad = usize::from(pad);
        if pad > 15 || pad > rest.len() {
            return bad("bad confidentiality pad length (wrong key?)");
        }
        let (data, padding) = rest.split_at(rest.len() - pad);
        if padding.iter().enumerate().any(|(i, &b)| b != (i + 1) as u8) {
            return bad("bad confidentiality padding (wrong key?)");
        }
        Ok(data.to_vec())
    }
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

/// The RMCP header for `class`.
fn rmcp(class: u8) -> [u8; 4] {
    [RMCP_VERSION, 0x00, RMCP_NO_ACK, class]
}

/// An RMCP/ASF Presence Ping with message tag `tag`.
pub fn asf_ping(tag: u8) -> Vec<u8> {
    let mut v = rmcp(CLASS_ASF).to_vec();
    v.extend_from_slice(&ASF_IANA);
    v.extend_from_slice(&[0x80, tag, 0x00, 0x00]);
    v
}

/// A session-less IPMI 1.5 packet (auth type none) carrying `msg`.
pub fn v15_packet(msg: &[u8]) -> Vec<u8> {
    let mut v = rmcp(CLASS_IPMI).to_vec();
    v.push(0x00); // auth type none
    v.extend_from_slice(&[0; 4]); // session sequence
    v.extend_from_slice(&[0; 4]); // session id
    v.push(msg.len() as u8);
    v.extend_from_slice(msg);
    v
}

/// An IPMI 2.0 packet. Without `keys` the payload goes in clear and unsigned (the
/// session set-up messages); with keys it is encrypted and signed.
pub fn v20_packet(
    ptype: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<&SessionKeys>,
) -> Vec<u8> {
    let mut v = rmcp(CLASS_IPMI).to_vec();
    let body;
    let (ptype, payload) = match keys {
        Some(k) => {
            body = k.encrypt(payload);
            (
                ptype | payload::ENCRYPTED | payload::AUTHENTICATED,
                &body[..],
            )
        }
        None => (ptype, payload),
    };
    v.push(AUTH_RMCP_PLUS);
    v.push(ptype);
    v.extend_from_slice(&session_id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    v.extend_from_slice(payload);
    if let Some(k) = keys {
        sign(&mut v, k);
    }
    v
}

/// Appends integrity pad, pad length, next header and the auth code to a packet whose
/// RMCP header starts at 0 and whose session header starts at 4.
fn sign(v: &mut Vec<u8>, k: &SessionKeys) {
    // Pad so that (auth type .. next header) is a multiple of 4 bytes.
    let covered = v.len() - 4 + 2;
    let pad = (4 - covered % 4) % 4;
    v.extend(std::iter::repeat_n(0xff, pad));
    v.push(pad as u8);
    v.push(0x07);
    let code = k.auth_code(&v[4..]);
    v.extend_from_slice(&code);
}

/// One decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// An ASF Presence Pong (`ipmi`: the entity says it supports IPMI).
    Pong {
        /// Message tag echoed from the ping.
        tag: u8,
        /// Supported entities bit 7.
        ipmi: bool,
    },
    /// An IPMI 1.5 session-less message.
    V15 {
        /// The IPMI message.
        msg: Vec<u8>,
    },
    /// An IPMI 2.0 packet, payload decrypted when it was encrypted.
    V20 {
        /// Payload type (bits 5:0).
        ptype: u8,
        /// Whether it arrived encrypted and signed.
        secured: bool,
        /// Session ID (ours for replies to us).
        session_id: u32,
        /// Session sequence number.
        seq: u32,
        /// Clear-text payload.
        payload: Vec<u8>,
    },
}

/// Decodes a datagram. `keys` checks and strips integrity and confidentiality of
/// session packets; a secured packet without keys, or a bad auth code, is an error.
pub fn parse_packet(buf: &[u8], keys: Option<&SessionKeys>) -> Result<Packet, DecodeError> {
    if buf.len() < 4 || buf[0] != RMCP_VERSION {
        return bad("not an RMCP datagram");
    }
    let body = &buf[4..];
    match buf[3] & 0x1f {
        CLASS_ASF => {
            if body.len() < 8 || body[..4] != ASF_IANA {
                return bad("ASF message too short or not ASF");
            }
            if body[4] != 0x40 {
                return bad(format!("ASF message type {:#04x} is not a pong", body[4]));
            }
            let ipmi = body.get(16).is_some_and(|e| e & 0x80 != 0);
            Ok(Packet::Pong { tag: body[5], ipmi })
        }
        CLASS_IPMI => match body.first() {
            Some(&AUTH_RMCP_PLUS) => parse_v20(buf, keys),
            Some(&auth) => {
                let hdr = if auth == 0 { 10 } else { 26 };
                if body.len() < hdr {
                    return bad("IPMI 1.5 session header truncated");
                }
                let len = usize::from(body[hdr - 1]);
                let msg = body
                    .get(hdr..hdr + len)
                    .ok_or_else(|| DecodeError("IPMI 1.5 message truncated".into()))?;
                Ok(Packet::V15 { msg: msg.to_vec() })
            }
            None => bad("empty IPMI datagram"),
        },
        c => bad(format!("unknown RMCP class {c:#04x}")),
    }
}

fn parse_v20(buf: &[u8], keys: Option<&SessionKeys>) -> Result<Packet, DecodeError> {
    // buf[4] = auth type, [5] ptype, [6..10] sid, [10..14] seq, [14..16] len
    if buf.len() < 16 {
        return bad("IPMI 2.0 session header truncated");
    }
    let ptype_byte = buf[5];
    let ptype = ptype_byte & 0x3f;
    if ptype == 0x02 {
        return bad("OEM explicit payloads are not supported");
    }
    let session_id = u32::from_le_bytes([buf[6], buf[7], buf[8], buf[9]]);
    let seq = u32::from_le_bytes([buf[10], buf[11], buf[12], buf[13]]);
    let len = usize::from(u16::from_le_bytes([buf[14], buf[15]]));
    let payload = buf
        .get(16..16 + len)
        .ok_or_else(|| DecodeError("IPMI 2.0 payload truncated".into()))?;
    let authenticated = ptype_byte & payload::AUTHENTICATED != 0;
    let encrypted = ptype_byte & payload::ENCRYPTED != 0;
    if (authenticated || encrypted) && keys.is_none() {
        return bad("secured packet outside a session");
    }
    if let Some(k) = keys {
        if !(authenticated && encrypted) {
            return bad("session packet is not encrypted and authenticated");
        }
        let n = k.suite.integrity_len();
        let end = 16 + len;
        if buf.len() < end + 2 + n {
            return bad("session trailer truncated");
        }
        let trailer_end = buf.len() - n;
        if buf[trailer_end - 1] != 0x07 {
            return bad("bad next-header byte");
        }
        let pad = usize::from(buf[trailer_end - 2]);
        if end + pad + 2 != trailer_end {
            return bad("integrity pad length does not match the packet length");
        }
        let want = k.auth_code(&buf[4..trailer_end]);
        if !constant_time_eq(&want, &buf[trailer_end..]) {
            return bad("integrity check failed");
        }
        let payload = k.decrypt(payload)?;
        return Ok(Packet::V20 {
            ptype,
            secured: true,
            session_id,
            seq,
            payload,
        });
    }
    Ok(Packet::V20 {
        ptype,
        secured: false,
        session_id,
        seq,
        payload: payload.to_vec(),
    })
}

/// Compares without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------
// IPMI messages
// ---------------------------------------------------------------------------

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI request message from the remote console to the BMC.
pub fn encode_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![BMC_SA, netfn << 2];
    v.push(checksum(&v));
    v.extend_from_slice(&[CONSOLE_SWID, (rq_seq & 0x3f) << 2, cmd]);
    v.extend_from_slice(data);
    let c = checksum(&v[3..]);
    v.push(c);
    v
}

/// A decoded IPMI response message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Network function (the response value, request + 1).
    pub netfn: u8,
    /// Command.
    pub cmd: u8,
    /// Requester sequence number echoed.
    pub rq_seq: u8,
    /// Completion code.
    pub cc: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

/// Decodes an IPMI response message, checking both checksums.
pub fn decode_response(msg: &[u8]) -> Result<Response, DecodeError> {
    if msg.len() < 8 {
        return bad(format!("IPMI response of {} bytes is too short", msg.len()));
    }
    if checksum(&msg[..2]) != msg[2] {
        return bad("IPMI response header checksum mismatch");
    }
    let last = msg.len() - 1;
    if checksum(&msg[3..last]) != msg[last] {
        return bad("IPMI response data checksum mismatch");
    }
    Ok(Response {
        netfn: msg[1] >> 2,
        cmd: msg[5],
        rq_seq: msg[4] >> 2,
        cc: msg[6],
        data: msg[7..last].to_vec(),
    })
}

/// Text for a completion code (IPMI v2.0 table 5-2).
pub fn completion_text(cc: u8) -> &'static str {
    match cc {
        0x00 => "success",
        0x80 => "parameter not supported",
        0x81 => "set-in-progress already set / attempt to set read-only parameter",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc2 => "command invalid for the given LUN",
        0xc3 => "timeout while processing the command",
        0xc4 => "out of space",
        0xc5 => "reservation cancelled or invalid",
        0xc6 => "request data truncated",
        0xc7 => "request data length invalid",
        0xc8 => "request data field length limit exceeded",
        0xc9 => "parameter out of range",
        0xcc => "invalid data field in request",
        0xcd => "command illegal for sensor or record type",
        0xce => "command response could not be provided",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0xff => "unspecified error",
        _ => "device-specific or unknown error",
    }
}

/// Text for an RMCP+ status code (IPMI v2.0 table 13-15).
pub fn rmcp_status_text(status: u8) -> &'static str {
    match status {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

// ---------------------------------------------------------------------------
// Session set-up messages
// ---------------------------------------------------------------------------

/// Get Channel Authentication Capabilities request data: this channel, IPMI v2.0
/// extended data, `privilege` wanted.
pub fn channel_auth_caps_request(privilege: u8) -> [u8; 2] {
    [0x8e, privilege & 0x0f]
}

/// What Get Channel Authentication Capabilities tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelAuthCaps {
    /// Channel number.
    pub channel: u8,
    /// The BMC speaks IPMI v2.0 (RMCP+) on this channel.
    pub ipmi20: bool,
    /// OEM IANA number (0 when none).
    pub oem_iana: u32,
}

/// Decodes Get Channel Authentication Capabilities response data (after the cc).
pub fn parse_channel_auth_caps(data: &[u8]) -> Result<ChannelAuthCaps, DecodeError> {
    if data.len() < 8 {
        return bad("channel authentication capabilities truncated");
    }
    let extended = data[1] & 0x80 != 0;
    Ok(ChannelAuthCaps {
        channel: data[0],
        ipmi20: extended && data[3] & 0x02 != 0,
        oem_iana: u32::from_le_bytes([data[4], data[5], data[6], 0]),
    })
}

/// RMCP+ Open Session Request payload.
pub fn open_session_request(
    tag: u8,
    privilege: u8,
    console_sid: u32,
    suite: CipherSuite,
) -> Vec<u8> {
    let mut v = vec![tag, privilege, 0, 0];
    v.extend_from_slice(&console_sid.to_le_bytes());
    for (kind, alg) in [
        (0x00, suite.auth_alg()),
        (0x01, suite.integrity_alg()),
        (0x02, suite.confidentiality_alg()),
    ] {
        v.extend_from_slice(&[kind, 0, 0, 0x08, alg, 0, 0, 0]);
    }
    v
}

/// RMCP+ Open Session Response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSessionResponse {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code (0 = success).
    pub status: u8,
    /// Remote console session ID echoed.
    pub console_sid: u32,
    /// The BMC's session ID (0 on error).
    pub bmc_sid: u32,
    /// Algorithms the BMC chose: authentication, integrity, confidentiality.
    pub algorithms: [u8; 3],
}

/// Decodes an Open Session Response payload.
pub fn parse_open_session_response(p: &[u8]) -> Result<OpenSessionResponse, DecodeError> {
    if p.len() < 8 {
        return bad("open session response truncated");
    }
    let status = p[1];
    let console_sid = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
    if status != 0 {
        return Ok(OpenSessionResponse {
            tag: p[0],
            status,
            console_sid,
            bmc_sid: 0,
            algorithms: [0; 3],
        });
    }
    if p.len() < 36 {
        return bad("open session response truncated");
    }
    Ok(OpenSessionResponse {
        tag: p[0],
        status,
        console_sid,
        bmc_sid: u32::from_le_bytes([p[8], p[9], p[10], p[11]]),
        algorithms: [p[16], p[24], p[32]],
    })
}

/// RAKP Message 1 payload.
pub fn rakp1(tag: u8, bmc_sid: u32, rm: &[u8; 16], role: u8, user: &[u8]) -> Vec<u8> {
    let mut v = vec![tag, 0, 0, 0];
    v.extend_from_slice(&bmc_sid.to_le_bytes());
    v.extend_from_slice(rm);
    v.extend_from_slice(&[role, 0, 0, user.len() as u8]);
    v.extend_from_slice(user);
    v
}

/// RAKP Message 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rakp2 {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Remote console session ID.
    pub console_sid: u32,
    /// The BMC's random number Rc.
    pub rc: [u8; 16],
    /// The BMC's GUID.
    pub guid: [u8; 16],
    /// Key exchange auth code (HMAC length of the suite).
    pub auth_code: Vec<u8>,
}

/// Decodes a RAKP Message 2 payload.
pub fn parse_rakp2(p: &[u8]) -> Result<Rakp2, DecodeError> {
    if p.len() < 8 {
        return bad("RAKP message 2 truncated");
    }
    let mut r = Rakp2 {
        tag: p[0],
        status: p[1],
        console_sid: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
        rc: [0; 16],
        guid: [0; 16],
        auth_code: Vec::new(),
    };
    if r.status != 0 {
        return Ok(r);
    }
    if p.len() < 40 {
        return bad("RAKP message 2 truncated");
    }
    r.rc.copy_from_slice(&p[8..24]);
    r.guid.copy_from_slice(&p[24..40]);
    r.auth_code = p[40..].to_vec();
    Ok(r)
}

/// RAKP Message 3 payload.
pub fn rakp3(tag: u8, status: u8, bmc_sid: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut v = vec![tag, status, 0, 0];
    v.extend_from_slice(&bmc_sid.to_le_bytes());
    v.extend_from_slice(auth_code);
    v
}

/// RAKP Message 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rakp4 {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Remote console session ID.
    pub console_sid: u32,
    /// Integrity check value.
    pub icv: Vec<u8>,
}

/// Decodes a RAKP Message 4 payload.
pub fn parse_rakp4(p: &[u8]) -> Result<Rakp4, DecodeError> {
    if p.len() < 8 {
        return bad("RAKP message 4 truncated");
    }
    Ok(Rakp4 {
        tag: p[0],
        status: p[1],
        console_sid: u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
        icv: p[8..].to_vec(),
    })
}

/// The values both sides feed into the RAKP HMACs.
#[derive(Clone, Debug)]
pub struct Rakp<'a> {
    /// Suite negotiated.
    pub suite: CipherSuite,
    /// Remote console session ID (SIDm).
    pub console_sid: u32,
    /// BMC session ID (SIDc).
    pub bmc_sid: u32,
    /// Console random number Rm.
    pub rm: [u8; 16],
    /// BMC random number Rc.
    pub rc: [u8; 16],
    /// BMC GUID.
    pub guid: [u8; 16],
    /// The whole role byte sent in RAKP 1 (privilege and lookup bit).
    pub role: u8,
    /// User name.
    pub user: &'a [u8],
}

impl Rakp<'_> {
    /// RAKP 2 key exchange auth code: HMAC_Kuid(SIDm SIDc Rm Rc GUIDc Role ULen UName).
    pub fn rakp2_code(&self, kuid: &[u8]) -> Vec<u8> {
        hmac(
            self.suite.hash(),
            kuid,
            &[
                &self.console_sid.to_le_bytes(),
                &self.bmc_sid.to_le_bytes(),
                &self.rm,
                &self.rc,
                &self.guid,
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// RAKP 3 key exchange auth code: HMAC_Kuid(Rc SIDm Role ULen UName).
    pub fn rakp3_code(&self, kuid: &[u8]) -> Vec<u8> {
        hmac(
            self.suite.hash(),
            kuid,
            &[
                &self.rc,
                &self.console_sid.to_le_bytes(),
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// Session integrity key: HMAC_Kg(Rm Rc Role ULen UName); Kg is Kuid when the BMC
    /// has no BMC key.
    pub fn sik(&self, kg: &[u8]) -> Vec<u8> {
        hmac(
            self.suite.hash(),
            kg,
            &[
                &self.rm,
                &self.rc,
                &[self.role, self.user.len() as u8],
                self.user,
            ],
        )
    }

    /// RAKP 4 integrity check value: HMAC_SIK(Rm SIDc GUIDc), truncated.
    pub fn rakp4_icv(&self, sik: &[u8]) -> Vec<u8> {
        let mut v = hmac(
            self.suite.hash(),
            sik,
            &[&self.rm, &self.bmc_sid.to_le_bytes(), &self.guid],
        );
        v.truncate(self.suite.rakp4_icv_len());
        v
    }
}

// ---------------------------------------------------------------------------
// Chassis commands
// ---------------------------------------------------------------------------

/// Chassis Control actions (request data byte 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChassisControl {
    /// 0: power down (hard off).
    PowerDown,
    /// 1: power up.
    PowerUp,
    /// 2: power cycle.
    PowerCycle,
    /// 3: hard reset.
    HardReset,
    /// 4: pulse diagnostic interrupt (NMI).
    PulseDiagnostic,
    /// 5: soft shutdown via ACPI.
    SoftOff,
}

impl ChassisControl {
    /// The request byte.
    pub fn code(self) -> u8 {
        match self {
            Self::PowerDown => 0,
            Self::PowerUp => 1,
            Self::PowerCycle => 2,
            Self::HardReset => 3,
            Self::PulseDiagnostic => 4,
            Self::SoftOff => 5,
        }
    }

    /// True when sending it twice does what sending it once does.
    pub fn is_idempotent(self) -> bool {
        matches!(self, Self::PowerDown | Self::PowerUp)
    }
}

/// What Get Chassis Status tells (the parts used here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChassisStatus {
    /// Current power state, bit 0: system power is on.
    pub power_on: bool,
    /// Power fault or interlock bits of byte 1 (bits 1..4).
    pub faults: u8,
}

/// Decodes Get Chassis Status response data.
pub fn parse_chassis_status(data: &[u8]) -> Result<ChassisStatus, DecodeError> {
    match data.first() {
        Some(b) if data.len() >= 3 => Ok(ChassisStatus {
            power_on: b & 0x01 != 0,
            faults: b & 0x1e,
        }),
        _ => bad("chassis status truncated"),
    }
}

/// Boot device selector (boot flags data 2, bits 5:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootDevice {
    /// 0000b: no override.
    NoOverride,
    /// 0001b: PXE.
    Pxe,
    /// 0010b: default hard disk.
    Disk,
    /// 0101b: default CD/DVD.
    Cdrom,
    /// 0110b: BIOS setup.
    BiosSetup,
    /// 1000b: remotely connected CD/DVD: on an iRMC, its virtual CD (data 2 = 0x20).
    RemoteCdrom,
    /// 1011b: remotely connected hard disk.
    RemoteDisk,
    /// Any other selector, raw 4 bits.
    Other(u8),
}

impl BootDevice {
    /// The 4-bit selector.
    pub fn selector(self) -> u8 {
        match self {
            Self::NoOverride => 0x0,
            Self::Pxe => 0x1,
            Self::Disk => 0x2,
            Self::Cdrom => 0x5,
            Self::BiosSetup => 0x6,
            Self::RemoteCdrom => 0x8,
            Self::RemoteDisk => 0xb,
            Self::Other(s) => s & 0x0f,
        }
    }

    /// From the 4-bit selector.
    pub fn from_selector(s: u8) -> Self {
        match s & 0x0f {
            0x0 => Self::NoOverride,
            0x1 => Self::Pxe,
            0x2 => Self::Disk,
            0x5 => Self::Cdrom,
            0x6 => Self::BiosSetup,
            0x8 => Self::RemoteCdrom,
            0xb => Self::RemoteDisk,
            s => Self::Other(s),
        }
    }
}

/// Boot flags (System Boot Options parameter 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootFlags {
    /// Data 1 bit 7: the flags are valid (an override is set).
    pub valid: bool,
    /// Data 1 bit 6: every boot (true) or the next boot only (false).
    pub persistent: bool,
    /// Data 1 bit 5: EFI boot (true) or legacy (false).
    pub efi: bool,
    /// Data 2 bits 5:2.
    pub device: BootDevice,
}

/// Boot options parameter: boot flags.
pub const PARAM_BOOT_FLAGS: u8 = 5;

impl BootFlags {
    /// The five data bytes.
    pub fn encode(self) -> [u8; 5] {
        let d1 = (u8::from(self.valid) << 7)
            | (u8::from(self.persistent) << 6)
            | (u8::from(self.efi) << 5);
        [d1, self.device.selector() << 2, 0, 0, 0]
    }

    /// From the five data bytes.
    pub fn decode(d: &[u8]) -> Result<Self, DecodeError> {
        if d.len() < 2 {
            return bad("boot flags truncated");
        }
        Ok(Self {
            valid: d[0] & 0x80 != 0,
            persistent: d[0] & 0x40 != 0,
            efi: d[0] & 0x20 != 0,
            device: BootDevice::from_selector(d[1] >> 2),
        })
    }
}

/// Set System Boot Options request data for boot flags.
pub fn set_boot_flags_request(flags: BootFlags) -> Vec<u8> {
    let mut v = vec![PARAM_BOOT_FLAGS];
    v.extend_from_slice(&flags.encode());
    v
}

/// Get System Boot Options request data for `param`.
pub fn get_boot_option_request(param: u8) -> [u8; 3] {
    [param & 0x7f, 0, 0]
}

/// Decodes Get System Boot Options response data for boot flags.
pub fn parse_boot_flags_response(data: &[u8]) -> Result<BootFlags, DecodeError> {
    // version, parameter selector (bit 7 = invalid/locked), data
    if data.len() < 3 {
        return bad("boot options response truncated");
    }
    if data[1] & 0x7f != PARAM_BOOT_FLAGS {
        return bad(format!(
            "boot options response for parameter {} instead of 5",
            data[1] & 0x7f
        ));
    }
    BootFlags::decode(&data[2..])
}
