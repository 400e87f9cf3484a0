//! Framing: RMCP, IPMI 1.5 and 2.0 session packets (signed and encrypted), and the
//! IPMI messages inside them with their checksums and completion codes.

use super::*;

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
