//! The checks that decide whether a node can deploy at all: generation and firmware
//! from `/report.xml` through the capability table, and the iRMC licence.
//!
//! The licence key is ConfigSpace item 1980 (`ConfBMCLicenseKey`, the item Fujitsu's
//! `irmc_license` Ansible module reads and writes); an iRMC without a key has no
//! remote storage (virtual media), so the check can be made before any connect. Should
//! a connect still be refused for licence reasons, `execute` reports
//! [`IrmcError::Licence`] from the BMC's own text.

use bytes::Bytes;
use http::Method;

use super::{IrmcClient, Req, SCCI_CONTENT_TYPE};
use crate::capability::Capabilities;
use crate::error::IrmcError;
use crate::wire::{self, Opcode, ScciCommand, ScciData};

/// ConfigSpace item holding the iRMC licence key.
pub const OE_LICENCE_KEY: u16 = 0x1980;

impl IrmcClient {
    /// Reads `/report.xml` and applies the capability table.
    pub async fn capabilities(&self) -> Result<Capabilities, IrmcError> {
        let r = self.report().await?;
        Ok(Capabilities::of(&r.model, &r.firmware))
    }

    /// Whether a licence key is installed (one SCCI POST reading item 1980). The key
    /// itself is never logged or returned.
    pub async fn has_licence(&self) -> Result<bool, IrmcError> {
        const OP: &str = "checking the iRMC licence";
        let cmd = ScciCommand {
            opcode: Opcode::ConfigSpaceGet,
            oe: OE_LICENCE_KEY,
            oi: 0,
            data: ScciData::None,
        };
        let req = Req {
            method: Method::POST,
            path: "/config".into(),
            content_type: Some(SCCI_CONTENT_TYPE),
            body: Bytes::from(wire::build_cmdseq(&[cmd])),
            if_match: None,
            idempotent: true,
        };
        let reply = self.send(OP, req).await?;
        self.expect_success(OP, &reply, &[200, 201])?;
        let text = reply.text();
        let status = wire::parse_status(&text).map_err(|e| self.wire_err(OP, e))?;
        if status.value != 0 {
            let scrub =
                |t: &str| crate::error::scrub_bmc_text(t, &[self.config().password.expose()]);
            return Err(IrmcError::Scci {
                ctx: self.ctx(OP),
                value: status.value,
                severity: scrub(&status.severity),
                message: scrub(&status.message),
                error: scrub(&status.error),
            });
        }
        let key = wire::parse_config_value(&text, OE_LICENCE_KEY)
            .map_err(|e| self.wire_err(OP, e))?
            .ok_or_else(|| IrmcError::Malformed {
                ctx: self.ctx(OP),
                reason: "the licence key read (ConfigSpace 1980) returned no DATA".into(),
            })?;
        Ok(!key.trim().is_empty())
    }

    /// The validation a node passes before it may deploy: the generation (S4 or
    /// later), the firmware's capabilities, and the licence. Three requests at most
    /// (report, licence). Each refusal is one sentence naming node, BMC and operation.
    pub async fn validate(&self) -> Result<Capabilities, IrmcError> {
        const OP: &str = "validating the iRMC";
        let caps = self.capabilities().await?;
        caps.check_supported()
            .map_err(|reason| IrmcError::Unsupported {
                ctx: self.ctx(OP),
                reason,
            })?;
        if !self.has_licence().await? {
            return Err(IrmcError::Licence {
                ctx: self.ctx(OP),
                detail: format!(
                    "{} {} has no licence key installed (ConfigSpace 1980 is empty), so it offers no remote storage; install the iRMC advanced licence",
                    caps.model, caps.firmware
                ),
            });
        }
        Ok(caps)
    }
}
