//! Row encoding shared by the backends: what goes into each column.

use coordinator_core::{Node, NodeStatus, Secret};
use uuid::Uuid;

use crate::{StoreError, decode_spec};

/// The status as stored: JSON without the token, plus the derived filter columns.
pub(crate) struct EncodedStatus {
    pub json: String,
    pub state: &'static str,
    pub share: Option<String>,
    pub has_error: bool,
    pub in_flight: bool,
    pub token: Option<String>,
}

pub(crate) fn encode_status(uuid: Uuid, s: &NodeStatus) -> Result<EncodedStatus, StoreError> {
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
        token: s.agent_token.as_ref().map(|t| t.expose().to_string()),
    })
}

/// A node from its stored columns.
pub(crate) fn decode_node(
    raw_uuid: Vec<u8>,
    version: i64,
    spec: &str,
    status: &str,
    token: Option<String>,
) -> Result<Node, StoreError> {
    let uuid = Uuid::from_slice(&raw_uuid).map_err(|e| StoreError::Corrupt {
        node: format!("{raw_uuid:02x?}"),
        what: "uuid",
        detail: e.to_string(),
    })?;
    let node = uuid.to_string();
    let spec = decode_spec(&node, spec)?;
    let mut status: NodeStatus = serde_json::from_str(status).map_err(|e| StoreError::Corrupt {
        node,
        what: "status",
        detail: e.to_string(),
    })?;
    status.agent_token = token.map(Secret::new);
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
