//! Row encoding shared by the backends: what goes into each column.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use coordinator_core::{AgentId, MASK, Node, NodeSpec, NodeStatus, Secret, is_secret_key};
use uuid::Uuid;

use crate::{SecretKeys, StoreError, decode_spec};

/// How a read treats the secrets it finds.
#[derive(Clone, Copy)]
pub(crate) enum Secrets<'a> {
    /// Open sealed values (a sealed value and no keys is an error): for callers that act
    /// on the node (jobs carry the BMC password and the agent token).
    Open(Option<&'a SecretKeys>),
    /// Read-only views: every secret value reads as [`MASK`] without being opened, and
    /// the agent token is not read at all. Listing thousands of nodes then costs no
    /// decryption.
    Mask,
}

/// The status as stored: JSON without the token, plus the derived filter columns.
pub(crate) struct EncodedStatus {
    pub json: String,
    pub state: &'static str,
    /// Column `share`: the id of the agent the node is placed on.
    pub share: Option<String>,
    pub has_error: bool,
    pub in_flight: bool,
    /// Column `power_state`: the last known power state (`None` while unknown).
    pub power: Option<&'static str>,
    pub token: Option<String>,
}

/// Field name the agent token is bound to when sealed.
const TOKEN_FIELD: &str = "status.agent_token";

/// The sealed form of each node's current agent token. A token is drawn once per deploy
/// and then rides along, unchanged, with every later status write of that deploy: those
/// writes re-use the sealed text instead of sealing the same token again. Entries go when
/// the node's token does (the deploy settles) or the node is deleted, so the memo holds
/// one entry per deploy under way.
#[derive(Default)]
pub(crate) struct SealedTokens(Mutex<HashMap<Uuid, (Secret, String)>>);

impl std::fmt::Debug for SealedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedTokens")
            .field("nodes", &self.map().len())
            .finish()
    }
}

impl SealedTokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Secret, String)>> {
        // A panic elsewhere while holding the lock leaves a map that is still valid.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sealed(&self, uuid: Uuid, token: &Secret, keys: &SecretKeys) -> Result<String, StoreError> {
        if let Some((clear, sealed)) = self.map().get(&uuid)
            && clear.ct_eq(token.expose())
        {
            return Ok(sealed.clone());
        }
        let sealed = keys.seal(&format!("{uuid}/{TOKEN_FIELD}"), token.expose())?;
        self.map().insert(uuid, (token.clone(), sealed.clone()));
        Ok(sealed)
    }

    pub(crate) fn forget(&self, uuid: Uuid) {
        self.map().remove(&uuid);
    }
}

pub(crate) fn encode_status(
    uuid: Uuid,
    s: &NodeStatus,
    keys: Option<&SecretKeys>,
    tokens: &SealedTokens,
) -> Result<EncodedStatus, StoreError> {
    let json = serde_json::to_string(s).map_err(|e| StoreError::Corrupt {
        node: uuid.to_string(),
        what: "status",
        detail: e.to_string(),
    })?;
    Ok(EncodedStatus {
        json,
        state: s.provision_state.as_str(),
        share: s.agent.as_ref().map(|a| a.as_str().to_owned()),
        has_error: s.last_error.is_some(),
        in_flight: s.in_flight(),
        power: s.power_state.map(|p| p.as_str()),
        token: match (&s.agent_token, keys) {
            (None, _) => {
                tokens.forget(uuid);
                None
            }
            (Some(t), None) => Some(t.expose().to_string()),
            (Some(t), Some(k)) => Some(tokens.sealed(uuid, t, k)?),
        },
    })
}

/// A spec for a read-only view: parsed, with every secret value (and anything sealed)
/// replaced by [`MASK`], nothing opened.
fn decode_spec_masked(node: &str, text: &str) -> Result<NodeSpec, StoreError> {
    let mut spec: NodeSpec = serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        node: node.to_string(),
        what: "spec",
        detail: e.to_string(),
    })?;
    for map in [&mut spec.driver_info, &mut spec.instance_info] {
        for (k, v) in map.iter_mut() {
            if is_secret_key(k) || v.starts_with(crate::secrets::SEALED_PREFIX) {
                MASK.clone_into(v);
            }
        }
    }
    Ok(spec)
}

/// A node from its stored columns (`token` is not read in [`Secrets::Mask`] mode).
pub(crate) fn decode_node(
    raw_uuid: &[u8],
    version: i64,
    spec: &str,
    status: &str,
    token: Option<&str>,
    secrets: Secrets<'_>,
) -> Result<Node, StoreError> {
    let uuid = Uuid::from_slice(raw_uuid).map_err(|e| StoreError::Corrupt {
        node: format!("{raw_uuid:02x?}"),
        what: "uuid",
        detail: e.to_string(),
    })?;
    let node = uuid.to_string();
    let keys = match secrets {
        Secrets::Open(keys) => keys,
        Secrets::Mask => {
            return Ok(Node {
                spec: decode_spec_masked(&node, spec)?,
                status: decode_status(&node, status)?,
                version: u64::try_from(version).unwrap_or(0),
            });
        }
    };
    let spec = decode_spec(&node, spec, keys)?;
    let mut status = decode_status(&node, status)?;
    status.agent_token = match token {
        Some(t) if t.starts_with(crate::secrets::SEALED_PREFIX) => {
            let keys = keys.ok_or_else(|| StoreError::Sealed {
                node: node.clone(),
                field: TOKEN_FIELD.to_string(),
                detail: "it is encrypted and no secret key was given".to_string(),
            })?;
            let clear = keys
                .open(&format!("{uuid}/{TOKEN_FIELD}"), t)
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

fn decode_status(node: &str, text: &str) -> Result<NodeStatus, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        node: node.to_string(),
        what: "status",
        detail: e.to_string(),
    })
}

/// Versions are u64 in the API and BIGINT/INTEGER in SQL.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `(uuid bytes, share)` rows as stored by either backend, decoded.
pub(crate) fn decode_placements(
    rows: Vec<(Vec<u8>, String)>,
) -> Result<Vec<(Uuid, AgentId)>, StoreError> {
    rows.into_iter()
        .map(|(raw, share)| {
            Uuid::from_slice(&raw)
                .map(|u| (u, AgentId::from(share)))
                .map_err(|e| StoreError::Corrupt {
                    node: format!("{raw:02x?}"),
                    what: "uuid",
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// `(power_state, COUNT(*))` rows as a map, `NULL` (never reported) as `""`.
pub(crate) fn power_counts(rows: Vec<(Option<String>, i64)>) -> BTreeMap<String, u64> {
    state_counts(
        rows.into_iter()
            .map(|(s, n)| (s.unwrap_or_default(), n))
            .collect(),
    )
}

/// `(provision_state, COUNT(*))` rows as a map; a negative count cannot happen and reads 0.
pub(crate) fn state_counts(rows: Vec<(String, i64)>) -> BTreeMap<String, u64> {
    rows.into_iter()
        .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
        .collect()
}

/// History rows `(at_ms, from_state, to_state, last_error)`, newest first as queried, to
/// [`StateChange`](crate::StateChange)s oldest first.
pub(crate) fn decode_history(
    uuid: Uuid,
    mut rows: Vec<(i64, String, String, Option<String>)>,
) -> Result<Vec<crate::StateChange>, StoreError> {
    rows.reverse();
    let state = |s: &str| {
        s.parse::<coordinator_core::ProvisionState>()
            .map_err(|e| StoreError::Corrupt {
                node: uuid.to_string(),
                what: "history",
                detail: e.to_string(),
            })
    };
    rows.into_iter()
        .map(|(at_ms, from, to, last_error)| {
            Ok(crate::StateChange {
                at_ms,
                from: state(&from)?,
                to: state(&to)?,
                last_error,
            })
        })
        .collect()
}

/// A database error for `op`.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { op, source }
}

/// The error of a batch insert: a UNIQUE violation is a `Conflict` naming the batch by its
/// first node (the database does not say which row collided).
pub(crate) fn create_batch_error(first: Uuid, e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict {
            what: format!(
                "a node of this batch (starting with {first}): {}",
                d.message()
            ),
        },
        _ => StoreError::Database {
            op: "create node batch",
            source: e,
        },
    }
}
