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
