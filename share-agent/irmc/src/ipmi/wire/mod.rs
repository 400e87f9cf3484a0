//! IPMI v2.0 over LAN: every wire structure and its codec, in one place.
//!
//! One file per layer: `crypto` (cipher suites, session keys), `packet` (RMCP and session
//! framing, IPMI messages), `handshake` (channel capabilities, Open Session, RAKP) and
//! `commands` (chassis and boot options); every item is re-exported here.
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

mod commands;
mod crypto;
mod handshake;
mod packet;

pub use commands::*;
pub use crypto::*;
pub use handshake::*;
pub use packet::*;
