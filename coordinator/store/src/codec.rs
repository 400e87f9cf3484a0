//! Row encoding shared by the backends: what goes into each column.

use std::collections::BTreeMap;

use coordinator_core::{Node, NodeStatus, Secret};
use uuid::Uuid;

use crate::{SecretKeys, StoreError, decode_spec};

/// The status as stored: JSON without the token, plus the derived filter columns.
pub(crate) struct EncodedStatus {
    pub json: String,
    pub state: &'static str,
    pub share: Option<String>,
    pub has_error: bool,
    pub in_flight: bool,
    pub token: Option<String>,
}

/// Field name the agent token is bound to when sealed.
const TOKEN_FIELD: &str = "status.agent_token";

pub(crate) fn encode_status(
    uuid: Uuid,
    s: &NodeStatus,
    keys: Option<&SecretKeys>,
) -> Result<EncodedStatus, StoreError> {
    let json = serde_json::to_string(s).map_err(|e| StoreError::Corrupt {
        node: uuid.to_string(),
        what: "status",
        detail: e.to_string(),
    })?;
    Ok(EncodedStatus {
        json,
        state: s.provision_state.as_str(),
        share: s.share.clone(),
        has_error: s.last_error.is_some(),
        in_flight: s.in_flight(),
        token: match (&s.agent_token, keys) {
            (None, _) => None,
            (Some(t), None) => Some(t.expose().to_string()),
            (Some(t), Some(k)) => Some(k.seal(&format!("{uuid}/{TOKEN_FIELD}"), t.expose())?),
        },
    })
}

/// A node from its stored columns.
pub(crate) fn decode_node(
    raw_uuid: Vec<u8>,
    version: i64,
    spec: &str,
    status: &str,
    token: Option<String>,
    keys: Option<&SecretKeys>,
) -> Result<Node, StoreError> {
    let uuid = Uuid::from_slice(&raw_uuid).map_err(|e| StoreError::Corrupt {
        node: format!("{raw_uuid:02x?}"),
        what: "uuid",
        detail: e.to_string(),
    })?;
    let node = uuid.to_string();
    let spec = decode_spec(&node, spec, keys)?;
    let mut status: NodeStatus = serde_json::from_str(status).map_err(|e| StoreError::Corrupt {
        node: node.clone(),
        what: "status",
        detail: e.to_string(),
    })?;
    status.agent_token = match token {
        Some(t) if t.starts_with(crate::secrets::SEALED_PREFIX) => {
            let keys = keys.ok_or_else(|| StoreError::Sealed {
                node: node.clone(),
                field: TOKEN_FIELD.to_string(),
                detail: "it is encrypted and no secret key was given".to_string(),
            })?;
            let clear = keys
                .open(&format!("{uuid}/{TOKEN_FIELD}"), &t)
                .map_err(|detail| StoreError::Sealed {
                    node: node.clone(),
                    field: TOKEN_FIELD.to_string(),
                    detail,
                })?;
            Some(Secret::new(clear))
        }
        other => other.map(Secret::new),
    };
    Ok(Node {
        spec,
        status,
        version: u64::try_from(version).unwrap_or(0),
    })
}

/// Versions are u64 in the API and BIGINT/INTEGER in SQL.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `(uuid bytes, share)` rows as stored by either backend, decoded.
pub(crate) fn decode_placements(
    rows: Vec<(Vec<u8>, String)>,
) -> Result<Vec<(Uuid, String)>, StoreError> {
    rows.into_iter()
        .map(|(raw, share)| {
            Uuid::from_slice(&raw)
                .map(|u| (u, share))
                .map_err(|e| StoreError::Corrupt {
                    node: format!("{raw:02x?}"),
                    what: "uuid",
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// `(provision_state, COUNT(*))` rows as a map; a negative count cannot happen and reads 0.
pub(crate) fn state_counts(rows: Vec<(String, i64)>) -> BTreeMap<String, u64> {
    rows.into_iter()
        .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
        .collect()
}
