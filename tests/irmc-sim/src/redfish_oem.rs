//! Fujitsu's Redfish OEM virtual media, as Fujitsu's Ansible modules use it
//! (`irmc_setvm`, `irmc_connectvm`): the settings resource
//! `Systems/0/Oem/ts_fujitsu/VirtualMedia` (`CDImage`/`HDImage` with `Server`,
//! `ShareName`, `ImageName`, `ShareType` NFS|SMB, `UserDomain`, `UserName`, `Password`,
//! `MaximumNumberOfDevices`; `RemoteMountEnabled`), read with GET and changed with
//! PATCH, and the action `Systems/0/Actions/Oem/FTSComputerSystem.VirtualMedia` whose
//! body names `ConnectCD`/`DisconnectCD`/`ConnectHD`/`DisconnectHD` under
//! `VirtualMediaAction` on an S4 and `FTSVirtualMediaAction` on later generations. The
//! system resource lists the values allowed now (`Connect..` while disconnected,
//! `Disconnect..` while connected). Both change the same drive state SCCI does.

use serde_json::{Value, json};

use crate::node::{MediaKind, MediaSettings, NodeHandle, Secret, ShareType};
use crate::report::Model;

/// The settings resource.
pub const VM_PATH: &str = "/redfish/v1/Systems/0/Oem/ts_fujitsu/VirtualMedia";
/// The connect/disconnect action.
pub const VM_ACTION: &str = "/redfish/v1/Systems/0/Actions/Oem/FTSComputerSystem.VirtualMedia";

/// The action body's key for this generation.
pub fn action_key(model: Model) -> &'static str {
    match model {
        Model::S4 => "VirtualMediaAction",
        _ => "FTSVirtualMediaAction",
    }
}

fn section(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Cd => "CDImage",
        MediaKind::Hd => "HDImage",
        MediaKind::Fd => "FDImage",
    }
}

fn image_json(m: &MediaSettings) -> Value {
    json!({
        "Server": m.server,
        "ShareName": m.share_name,
        "ImageName": m.image_name,
        "ShareType": match m.share_type { ShareType::Nfs => "NFS", ShareType::Cifs => "SMB" },
        "UserDomain": m.domain,
        "UserName": m.user,
        "MaximumNumberOfDevices": m.drives,
    })
}

/// GET of the settings resource (passwords are never returned).
pub fn vm_json(node: &NodeHandle) -> Value {
    let s = node.state();
    json!({
        "@odata.id": VM_PATH,
        "@odata.etag": format!("W/\"{}\"", s.counters.redfish_patch),
        "RemoteMountEnabled": s.remote_media_enabled,
        "CDImage": image_json(&s.cd),
        "HDImage": image_json(&s.hd),
    })
}

/// The system resource's OEM action entry: what may be asked now.
pub fn action_json(node: &NodeHandle, model: Model) -> Value {
    let s = node.state();
    let allowed: Vec<&str> = [(MediaKind::Cd, "CD"), (MediaKind::Hd, "HD")]
        .iter()
        .map(|(k, n)| {
            if s.media(*k).connected {
                if *n == "CD" {
                    "DisconnectCD"
                } else {
                    "DisconnectHD"
                }
            } else if *n == "CD" {
                "ConnectCD"
            } else {
                "ConnectHD"
            }
        })
        .collect();
    json!({
        "target": VM_ACTION,
        format!("{}@Redfish.AllowableValues", action_key(model)): allowed,
    })
}

/// PATCH of the settings resource; `Err` is a status and a message.
pub fn patch(node: &NodeHandle, body: &[u8]) -> Result<Value, (u16, String)> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| (400, format!("body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or((400, "body is not an object".to_string()))?;
    let mut err = None;
    node.update(|s| {
        if let Some(on) = obj.get("RemoteMountEnabled").and_then(Value::as_bool) {
            s.remote_media_enabled = on;
        }
        for kind in [MediaKind::Cd, MediaKind::Hd] {
            let Some(img) = obj.get(section(kind)).and_then(Value::as_object) else {
                continue;
            };
            let m = s.media_mut(kind);
            let text = |k: &str| img.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(v) = text("Server") {
                m.server = v;
            }
            if let Some(v) = text("ShareName") {
                m.share_name = v;
            }
            if let Some(v) = text("ImageName") {
                m.image_name = v;
            }
            if let Some(v) = text("UserDomain") {
                m.domain = v;
            }
            if let Some(v) = text("UserName") {
                m.user = v;
            }
            if let Some(v) = text("Password") {
                m.password = Secret::new(v);
            }
            match text("ShareType").as_deref() {
                None => {}
                Some("NFS") => m.share_type = ShareType::Nfs,
                Some("SMB") => m.share_type = ShareType::Cifs,
                Some(other) => err = Some(format!("ShareType {other:?} is not NFS or SMB")),
            }
            if let Some(n) = img.get("MaximumNumberOfDevices").and_then(Value::as_u64) {
                m.drives = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
    });
    match err {
        Some(e) => Err((400, e)),
        None => Ok(vm_json(node)),
    }
}

/// POST of the action.
pub fn action(
    node: &NodeHandle,
    model: Model,
    licensed: bool,
    body: &[u8],
) -> Result<(), (u16, String)> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| (400, format!("body is not JSON: {e}")))?;
    let key = action_key(model);
    let Some(cmd) = v.get(key).and_then(Value::as_str) else {
        return Err((400, format!("the body must name the action under {key}")));
    };
    let (kind, want) = match cmd {
        "ConnectCD" => (MediaKind::Cd, true),
        "DisconnectCD" => (MediaKind::Cd, false),
        "ConnectHD" => (MediaKind::Hd, true),
        "DisconnectHD" => (MediaKind::Hd, false),
        other => return Err((400, format!("unknown virtual media action {other:?}"))),
    };
    node.update(|s| {
        if want && !s.licensed.unwrap_or(licensed) {
            return Err((
                400,
                "Remote storage is not available: no valid iRMC license key installed".into(),
            ));
        }
        if want && !s.remote_media_enabled {
            return Err((400, "Remote Mount of Virtual Media is not enabled".into()));
        }
        let m = s.media_mut(kind);
        if m.connected == want {
            return Err((
                400,
                format!("{cmd} cannot be used at this time (already in that state)"),
            ));
        }
        if want && (m.is_incomplete() || m.drives == 0) {
            return Err((
                400,
                "Remote image server, share name, image name or device count is not configured"
                    .into(),
            ));
        }
        m.connected = want;
        Ok(())
    })
}
