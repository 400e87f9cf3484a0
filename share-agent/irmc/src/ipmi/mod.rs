//! IPMI v2.0 over LAN (RMCP+): the iRMC's other management interface.
//!
//! Ironic's iRMC driver read and set power with ipmitool and forced a virtual-media
//! boot with the raw IPMI request `0x00 0x08 0x05 0xa0 0x20 0x00 0x00 0x00`: Set System
//! Boot Options, parameter 5 (boot flags), valid + EFI, device selector 1000b, the
//! "remotely connected CD/DVD" that an iRMC maps to its virtual CD. [`IpmiClient`]
//! does the same natively.
//!
//! # Layout
//! - [`wire`]: every packet and message format and the RMCP+ cryptography (RAKP
//!   HMACs, key derivation, HMAC-SHA1-96 / HMAC-SHA256-128, AES-CBC-128). Pure.
//! - `session` (private): the UDP conversation: one session per operation
//!   (Get Channel Authentication Capabilities, Open Session, RAKP 1-4, Set Session
//!   Privilege Level, the command(s), Close Session).
//!
//! # Cost per operation (datagrams each way, no loss)
//! 7 request/reply pairs: auth capabilities, open session, RAKP 1/2, RAKP 3/4, set
//! privilege, the command, close session. ipmitool sends the same (plus Get Device ID,
//! and Get Channel Cipher Suites when no `-C` is given). A second command in the same
//! session adds one pair ([`IpmiClient::session`]).
//!
//! # Deadlines and retries
//! Every request waits [`IpmiSettings::reply_timeout`] for its reply and is then
//! retransmitted unchanged (same session sequence number and rqSeq, so a BMC that did
//! act on the first copy can recognise the duplicate), at most
//! [`IpmiSettings::attempts`] times; the whole operation is bounded by
//! `irmc_client_timeout`. Datagrams that do not decode, fail the integrity check or
//! answer something else are dropped and the wait goes on: nothing panics on network
//! input. Errors name the BMC address and port, the operation and the step; the
//! password and the keys derived from it are never printed.

mod session;
pub mod wire;

use std::time::Duration;

pub use session::{IpmiClient, IpmiSession, IpmiStats};
pub use wire::{BootDevice, BootFlags, ChassisControl, ChassisStatus, CipherSuite};

/// Which RMCP+ cipher suite to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CipherChoice {
    /// Suite 17 first; suite 3 when the BMC refuses 17, answers with suite 3's
    /// algorithms (pyghmi), or ignores the proposal (OpenIPMI's ipmi_sim: two sends).
    /// The suite that worked is remembered per client.
    #[default]
    Auto,
    /// Only this suite.
    Only(CipherSuite),
}

impl std::str::FromStr for CipherChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" | "" => Ok(Self::Auto),
            "3" => Ok(Self::Only(CipherSuite::Suite3)),
            "17" => Ok(Self::Only(CipherSuite::Suite17)),
            other => Err(format!("must be 3, 17 or auto, got {other:?}")),
        }
    }
}

/// IPMI-over-LAN settings of one BMC (the address, user and password are the iRMC's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpmiSettings {
    /// UDP port (623 on a real iRMC).
    pub port: u16,
    /// Cipher suite wanted.
    pub cipher: CipherChoice,
    /// How long one request waits for its reply before it is retransmitted.
    pub reply_timeout: Duration,
    /// Sends per request, including the first.
    pub attempts: u32,
}

impl Default for IpmiSettings {
    fn default() -> Self {
        Self {
            port: wire::IPMI_PORT,
            cipher: CipherChoice::Auto,
            reply_timeout: Duration::from_secs(1),
            attempts: 4,
        }
    }
}
