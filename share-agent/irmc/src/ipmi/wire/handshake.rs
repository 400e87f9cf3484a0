//! Session set-up: Get Channel Authentication Capabilities, RMCP+ Open Session and
//! RAKP messages 1 to 4.

use super::*;

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
