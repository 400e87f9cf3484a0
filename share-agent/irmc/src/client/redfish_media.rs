//! Redfish virtual media (DMTF `InsertMedia`/`EjectMedia`), found by following links
//! from the service root: `/redfish/v1` -> `Systems` -> the first system -> its
//! `VirtualMedia` collection, or, when the system has none, its managers'
//! (`Links.ManagedBy`) `VirtualMedia`. Requests: 4-5 GETs to discover, one per drive to
//! read its state, one POST per insert or eject.
//!
//! Fujitsu's own path on the iRMC (S4 from 9.04, S5 from 1.25, S6; what its Ansible
//! modules `irmc_setvm`/`irmc_connectvm` do) is an OEM one: the NFS/CIFS settings of the
//! CD or HD image in `Systems/0/Oem/ts_fujitsu/VirtualMedia` (GET, PATCH with `If-Match`),
//! then the `#FTSComputerSystem.VirtualMedia` action named in the system resource
//! (`ConnectCD`, `DisconnectHD`, ...): 4 requests per attach, 2 per eject.

use bytes::Bytes;
use http::Method;

use http::HeaderValue;

use super::{IrmcClient, Req};
use crate::error::IrmcError;
use crate::wire::{self, MediaKind, MediaLocation, VirtualDrive};

const JSON: &str = "application/json";

impl IrmcClient {
    async fn redfish_get(&self, op: &'static str, path: String) -> Result<String, IrmcError> {
        let reply = self.send(op, Req::get(path)).await?;
        self.expect_success(op, &reply, &[200])?;
        Ok(reply.text().into_owned())
    }

    fn no_link(&self, op: &'static str, what: &str) -> IrmcError {
        IrmcError::Malformed {
            ctx: self.ctx(op),
            reason: format!("the Redfish service has no {what}"),
        }
    }

    /// Every virtual drive the service offers, discovered from the service root.
    pub async fn redfish_virtual_drives(&self) -> Result<Vec<VirtualDrive>, IrmcError> {
        self.virtual_drives_for("listing Redfish virtual media")
            .await
    }

    /// The first system the service root links to (`Systems` -> its first member).
    pub(crate) async fn first_system(&self, op: &'static str) -> Result<String, IrmcError> {
        let wire = |e| self.wire_err(op, e);
        let root = self.redfish_get(op, "/redfish/v1/".into()).await?;
        let systems = wire::link(&root, "Systems")
            .map_err(wire)?
            .ok_or_else(|| self.no_link(op, "Systems link in its service root"))?;
        let systems = self.redfish_get(op, systems).await?;
        wire::members(&systems)
            .map_err(wire)?
            .into_iter()
            .next()
            .ok_or_else(|| self.no_link(op, "system"))
    }

    async fn virtual_drives_for(&self, op: &'static str) -> Result<Vec<VirtualDrive>, IrmcError> {
        let wire = |e| self.wire_err(op, e);
        let system = self.first_system(op).await?;
        let sys = self.redfish_get(op, system).await?;
        let mut collections: Vec<String> = wire::link(&sys, "VirtualMedia")
            .map_err(wire)?
            .into_iter()
            .collect();
        if collections.is_empty() {
            for m in wire::managed_by(&sys).map_err(wire)? {
                let mgr = self.redfish_get(op, m).await?;
                collections.extend(wire::link(&mgr, "VirtualMedia").map_err(wire)?);
            }
        }
        let Some(coll) = collections.into_iter().next() else {
            return Err(self.no_link(
                op,
                "VirtualMedia collection under the system or its managers",
            ));
        };
        let coll = self.redfish_get(op, coll).await?;
        let mut drives = Vec::new();
        for m in wire::members(&coll).map_err(wire)? {
            let body = self.redfish_get(op, m.clone()).await?;
            drives.push(wire::parse_virtual_drive(&m, &body).map_err(wire)?);
        }
        Ok(drives)
    }

    async fn cd_drive(&self, op: &'static str) -> Result<VirtualDrive, IrmcError> {
        self.virtual_drives_for(op)
            .await?
            .into_iter()
            .find(VirtualDrive::is_cd)
            .ok_or_else(|| self.no_link(op, "virtual drive taking CD/DVD images"))
    }

    async fn redfish_post(
        &self,
        op: &'static str,
        path: String,
        body: String,
    ) -> Result<(), IrmcError> {
        let req = Req {
            method: Method::POST,
            path: path.into(),
            content_type: Some(JSON),
            body: Bytes::from(body),
            if_match: None,
            // Inserting the same image twice, or ejecting twice, ends the same.
            idempotent: true,
        };
        let reply = self.send(op, req).await?;
        self.expect_success(op, &reply, &[200, 202, 204])
    }

    /// Inserts the image at `image_url` (HTTP/HTTPS, NFS or CIFS URL, as the service
    /// accepts) into the CD drive with `InsertMedia`. An inserted image is ejected first.
    pub async fn redfish_insert_cd(&self, image_url: &str) -> Result<(), IrmcError> {
        const OP: &str = "Inserting virtual cdrom";
        let drive = self.cd_drive(OP).await?;
        if drive.inserted
            && let Some(eject) = &drive.eject_target
        {
            self.redfish_post(OP, eject.clone(), "{}".into()).await?;
        }
        let target = drive
            .insert_target
            .ok_or_else(|| self.no_link(OP, "InsertMedia action on its CD drive"))?;
        self.redfish_post(OP, target, wire::insert_media_body(image_url))
            .await
    }

    /// Ejects the CD drive's image with `EjectMedia`; `false` when none was inserted
    /// (nothing sent).
    pub async fn redfish_eject_cd(&self) -> Result<bool, IrmcError> {
        const OP: &str = "Ejecting virtual cdrom";
        let drive = self.cd_drive(OP).await?;
        if !drive.inserted {
            return Ok(false);
        }
        let target = drive
            .eject_target
            .ok_or_else(|| self.no_link(OP, "EjectMedia action on its CD drive"))?;
        self.redfish_post(OP, target, "{}".into()).await?;
        Ok(true)
    }

    /// The CD drive's state (inserted, image).
    pub async fn redfish_cd_status(&self) -> Result<VirtualDrive, IrmcError> {
        self.cd_drive("reading virtual cdrom status").await
    }

    /// Fujitsu's OEM path: points the CD or HD image at `loc` on NFS or CIFS and
    /// connects it (a connected drive is disconnected first). A refusal naming a
    /// licence is [`IrmcError::Licence`].
    pub async fn fts_attach(&self, kind: MediaKind, loc: &MediaLocation) -> Result<(), IrmcError> {
        let op = kind.insert_operation();
        let section = wire::fts_section(kind).ok_or_else(|| IrmcError::Unsupported {
            ctx: self.ctx(op),
            reason: "Fujitsu's Redfish virtual media has no floppy image".into(),
        })?;
        let settings = self.redfish_get(op, wire::FTS_VM_PATH.into()).await?;
        let (_, devices, etag) =
            wire::parse_fts_vm(&settings, section).map_err(|e| self.wire_err(op, e))?;
        let req = Req {
            method: Method::PATCH,
            path: wire::FTS_VM_PATH.into(),
            content_type: Some(JSON),
            body: Bytes::from(wire::fts_vm_body(section, loc, devices == 0)),
            if_match: etag.and_then(|e| HeaderValue::from_str(&e).ok()),
            idempotent: true,
        };
        let reply = self.send(op, req).await?;
        self.fts_check(op, &reply, loc)?;
        let (target, key, allowed) = self.fts_action(op).await?;
        let name = if kind == MediaKind::Cd { "CD" } else { "HD" };
        if allowed.iter().any(|a| *a == format!("Disconnect{name}")) {
            self.fts_post(op, &target, &key, &format!("Disconnect{name}"), loc)
                .await?;
        }
        self.fts_post(op, &target, &key, &format!("Connect{name}"), loc)
            .await
    }

    /// Fujitsu's OEM path: disconnects the CD or HD image; `false` when it was not
    /// connected (only the system resource is read).
    pub async fn fts_eject(&self, kind: MediaKind) -> Result<bool, IrmcError> {
        let op = kind.eject_operation();
        let name = match kind {
            MediaKind::Cd => "CD",
            MediaKind::Hd => "HD",
            MediaKind::Fd => return Ok(false),
        };
        let (target, key, allowed) = self.fts_action(op).await?;
        let cmd = format!("Disconnect{name}");
        if !allowed.contains(&cmd) {
            return Ok(false);
        }
        self.fts_post(op, &target, &key, &cmd, &MediaLocation::default())
            .await?;
        Ok(true)
    }

    async fn fts_action(
        &self,
        op: &'static str,
    ) -> Result<(String, String, Vec<String>), IrmcError> {
        let sys = self.redfish_get(op, wire::REDFISH_SYSTEM.into()).await?;
        wire::fts_vm_action(&sys)
            .map_err(|e| self.wire_err(op, e))?
            .ok_or_else(|| {
                self.no_link(op, "#FTSComputerSystem.VirtualMedia action (firmware too old for Redfish virtual media)")
            })
    }

    async fn fts_post(
        &self,
        op: &'static str,
        target: &str,
        key: &str,
        cmd: &str,
        loc: &MediaLocation,
    ) -> Result<(), IrmcError> {
        let req = Req {
            method: Method::POST,
            path: target.to_owned().into(),
            content_type: Some(JSON),
            body: Bytes::from(serde_json::json!({ key: cmd }).to_string()),
            if_match: None,
            idempotent: true,
        };
        let reply = self.send(op, req).await?;
        self.fts_check(op, &reply, loc)
    }

    /// A 2xx passes; a Redfish error naming a licence is [`IrmcError::Licence`], other
    /// errors keep their (scrubbed) message.
    fn fts_check(
        &self,
        op: &'static str,
        reply: &super::Reply,
        loc: &MediaLocation,
    ) -> Result<(), IrmcError> {
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        if let Some(msg) = wire::redfish_error_message(&reply.text()) {
            let msg = crate::error::scrub_bmc_text(
                &msg,
                &[self.config().password.expose(), loc.password.expose()],
            );
            if msg.to_ascii_lowercase().contains("licen") {
                return Err(IrmcError::Licence {
                    ctx: self.ctx(op),
                    detail: msg,
                });
            }
            return Err(IrmcError::Unsupported {
                ctx: self.ctx(op),
                reason: format!("the BMC refused it (HTTP {}): {msg}", reply.status),
            });
        }
        self.expect_success(op, reply, &[200, 202, 204])
    }

    /// Attaches `kind` over Fujitsu's Redfish virtual media when `redfish` (the
    /// capability table says the firmware has it), else, or when the BMC has no such
    /// resource (Redfish switched off: 404, or no OEM action), over SCCI. Floppies are
    /// SCCI only. Returns whether Redfish was used.
    pub async fn attach_on(
        &self,
        redfish: bool,
        kind: MediaKind,
        loc: &MediaLocation,
    ) -> Result<bool, IrmcError> {
        if redfish && kind != MediaKind::Fd {
            match self.fts_attach(kind, loc).await {
                Ok(()) => return Ok(true),
                Err(
                    IrmcError::Http {
                        status: 404 | 405, ..
                    }
                    | IrmcError::Malformed { .. },
                ) => {
                    tracing::debug!(bmc = %self.config().address, "no Redfish virtual media; attaching over SCCI");
                }
                Err(e) => return Err(e),
            }
        }
        self.attach(kind, loc).await.map(|()| false)
    }
}
