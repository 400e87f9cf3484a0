//! Redfish virtual media (DMTF `VirtualMedia`): the links that lead from the service
//! root to the drives, a drive's state and actions, and the `InsertMedia` body.
//!
//! Where the drives live differs between services: sushy-tools puts them under
//! `Systems/<id>/VirtualMedia`, the iRMC's DMTF resources are under
//! `Managers/iRMC/VirtualMedia` (Fujitsu's terraform provider), so a client follows the
//! links from `/redfish/v1` instead of assuming either path.

use super::{WireError, malformed};

fn json(body: &str) -> Result<serde_json::Value, WireError> {
    serde_json::from_str(body).map_err(|e| malformed(format!("not JSON: {e}")))
}

fn odata_id(v: &serde_json::Value) -> Option<String> {
    v.get("@odata.id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// `{"<key>": {"@odata.id": "..."}}` of a resource, if present.
pub fn link(body: &str, key: &str) -> Result<Option<String>, WireError> {
    Ok(json(body)?.get(key).and_then(odata_id))
}

/// The member paths of a collection (`Members[].@odata.id`).
pub fn members(body: &str) -> Result<Vec<String>, WireError> {
    let v = json(body)?;
    let m = v
        .get("Members")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| malformed("collection without Members"))?;
    Ok(m.iter().filter_map(odata_id).collect())
}

/// A system's managers (`Links.ManagedBy[].@odata.id`).
pub fn managed_by(body: &str) -> Result<Vec<String>, WireError> {
    let v = json(body)?;
    Ok(v.pointer("/Links/ManagedBy")
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(odata_id).collect())
        .unwrap_or_default())
}

/// One virtual drive as the service describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualDrive {
    /// Its resource path.
    pub path: String,
    /// `MediaTypes`, e.g. `["CD", "DVD"]` or `["Floppy", "USBStick"]`.
    pub media_types: Vec<String>,
    /// `Inserted`.
    pub inserted: bool,
    /// `Image` (empty when none).
    pub image: String,
    /// `#VirtualMedia.InsertMedia` target.
    pub insert_target: Option<String>,
    /// `#VirtualMedia.EjectMedia` target.
    pub eject_target: Option<String>,
}

impl VirtualDrive {
    /// Takes CD/DVD images.
    pub fn is_cd(&self) -> bool {
        self.media_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("CD") || t.eq_ignore_ascii_case("DVD"))
    }
}

/// Parses a `VirtualMedia` resource.
pub fn parse_virtual_drive(path: &str, body: &str) -> Result<VirtualDrive, WireError> {
    let v = json(body)?;
    let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
    let target = |action: &str| {
        v.pointer(&format!("/Actions/#VirtualMedia.{action}/target"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Ok(VirtualDrive {
        path: path.to_owned(),
        media_types: v
            .get("MediaTypes")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        inserted: v
            .get("Inserted")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        image: s("Image").to_owned(),
        insert_target: target("InsertMedia"),
        eject_target: target("EjectMedia"),
    })
}

/// The `InsertMedia` body: the image URL, inserted, write-protected.
pub fn insert_media_body(image_url: &str) -> String {
    serde_json::json!({
        "Image": image_url,
        "Inserted": true,
        "WriteProtected": true,
    })
    .to_string()
}

/// Fujitsu's OEM virtual-media settings resource (the iRMC's; `irmc_setvm`).
pub const FTS_VM_PATH: &str = "/redfish/v1/Systems/0/Oem/ts_fujitsu/VirtualMedia";

/// The section of the OEM settings for a drive: `CDImage` or `HDImage`.
pub fn fts_section(kind: super::MediaKind) -> Option<&'static str> {
    match kind {
        super::MediaKind::Cd => Some("CDImage"),
        super::MediaKind::Hd => Some("HDImage"),
        super::MediaKind::Fd => None,
    }
}

/// What the OEM settings say about one drive: remote mount enabled, configured devices,
/// and the resource's ETag (`@odata.etag`) for `If-Match`.
pub fn parse_fts_vm(body: &str, section: &str) -> Result<(bool, u64, Option<String>), WireError> {
    let v = json(body)?;
    Ok((
        v.get("RemoteMountEnabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        v.pointer(&format!("/{section}/MaximumNumberOfDevices"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        v.get("@odata.etag")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    ))
}

/// The PATCH body pointing a drive at `loc` (share type `NFS` or `SMB`), enabling
/// remote mount, and setting one device when none is configured.
pub fn fts_vm_body(section: &str, loc: &super::MediaLocation, set_devices: bool) -> String {
    let mut img = serde_json::json!({
        "Server": loc.server,
        "ShareName": loc.share_name,
        "ImageName": loc.image_name,
        "ShareType": match loc.share_type {
            super::ShareType::Nfs => "NFS",
            super::ShareType::Cifs => "SMB",
        },
        "UserDomain": loc.domain,
        "UserName": loc.user_name,
        "Password": loc.password.expose(),
    });
    if set_devices {
        img["MaximumNumberOfDevices"] = 1.into();
    }
    let mut body = serde_json::Map::new();
    body.insert(section.to_owned(), img);
    body.insert("RemoteMountEnabled".to_owned(), true.into());
    serde_json::Value::Object(body).to_string()
}

/// The OEM connect action of a system resource: its target, the body key
/// (`VirtualMediaAction` on S4, `FTSVirtualMediaAction` later: whichever lists its
/// allowable values) and the values allowed now.
pub fn fts_vm_action(system: &str) -> Result<Option<(String, String, Vec<String>)>, WireError> {
    let v = json(system)?;
    let Some(a) = v
        .pointer("/Actions/Oem/#FTSComputerSystem.VirtualMedia")
        .and_then(serde_json::Value::as_object)
    else {
        return Ok(None);
    };
    let Some(target) = a.get("target").and_then(serde_json::Value::as_str) else {
        return Ok(None);
    };
    for key in ["VirtualMediaAction", "FTSVirtualMediaAction"] {
        if let Some(vals) = a
            .get(&format!("{key}@Redfish.AllowableValues"))
            .and_then(serde_json::Value::as_array)
        {
            let allowed = vals
                .iter()
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect();
            return Ok(Some((target.to_owned(), key.to_owned(), allowed)));
        }
    }
    Ok(None)
}

/// The message of a Redfish error reply (`error.message`, else the first
/// `@Message.ExtendedInfo` message), if the body is one.
pub fn redfish_error_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("error")?;
    e.get("message")
        .and_then(serde_json::Value::as_str)
        .or_else(|| {
            e.pointer("/@Message.ExtendedInfo/0/Message")
                .and_then(serde_json::Value::as_str)
        })
        .map(str::to_owned)
}
