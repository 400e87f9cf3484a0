//! The ramdisk relay: the deploy ramdisk's lookup and heartbeat, relayed by its share agent.
//! A lookup is answered only for nodes in a deploy state; a heartbeat is accepted only with
//! the node's current agent token (compared in constant time, never logged).

use std::collections::BTreeSet;

use coordinator_core::{self as core, Event, Node, ProvisionState};
use uuid::Uuid;

use super::Engine;
use super::commit::{Batch, PendingReply};
use super::handle::Reply;
use crate::domain::{RamdiskHeartbeat, RamdiskLookup, RamdiskNode};
use crate::error::ServerError;

impl Engine {
    /// A relayed heartbeat: replied to after the commit when accepted, at once when refused.
    pub(super) fn ramdisk_heartbeat_cmd(
        &mut self,
        b: &mut Batch,
        req: &RamdiskHeartbeat,
        reply: Reply<()>,
    ) {
        match self.ramdisk_heartbeat(b, req) {
            Ok(()) => b.replies.push(PendingReply::Unit(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    pub(super) fn lookup(&self, req: &RamdiskLookup) -> Result<RamdiskNode, ServerError> {
        // Only nodes in flight on the relaying agent: another share's agent learns
        // nothing, and unknown, idle and elsewhere-placed nodes get the same answer.
        let allowed = |n: &Node| {
            matches!(
                n.status.provision_state,
                ProvisionState::Deploying | ProvisionState::WaitCallback
            ) && n.status.agent.as_ref() == Some(&req.agent)
        };
        let mut found: Option<&Node> = None;
        if !req.node_uuid.is_empty() {
            if let Ok(u) = Uuid::parse_str(&req.node_uuid) {
                found = self.cache.get(&u).filter(|n| allowed(n));
            }
        } else {
            let mut hits = BTreeSet::new();
            for a in &req.addresses {
                if let Some(u) = self.macs.get(&a.trim().to_ascii_lowercase()) {
                    hits.insert(*u);
                }
            }
            // More than one node matching is Ironic's DuplicateNodeOnLookup: not found.
            if hits.len() == 1
                && let Some(u) = hits.first()
            {
                found = self.cache.get(u).filter(|n| allowed(n));
            }
        }
        let n = found.ok_or_else(|| ServerError::LookupNotFound {
            what: if req.node_uuid.is_empty() {
                format!("addresses {}", req.addresses.join(","))
            } else {
                format!("node {}", req.node_uuid)
            },
        })?;
        Ok(RamdiskNode {
            node: n.uuid(),
            properties: n.spec.properties.clone(),
            instance_info: core::mask(&n.spec.instance_info),
            heartbeat_timeout_s: 300,
        })
    }

    fn ramdisk_heartbeat(
        &mut self,
        b: &mut Batch,
        req: &RamdiskHeartbeat,
    ) -> Result<(), ServerError> {
        let uuid = Uuid::parse_str(&req.node_uuid).map_err(|_| ServerError::NodeNotFound {
            node: req.node_uuid.clone(),
        })?;
        let Some(node) = self.cache.get(&uuid) else {
            return Err(ServerError::NodeNotFound {
                node: uuid.to_string(),
            });
        };
        if node.status.agent.as_ref() != Some(&req.agent) {
            tracing::warn!(node = %uuid, agent = %req.agent, placed = ?node.status.agent.as_ref().map(ToString::to_string),
                "ramdisk heartbeat refused: relayed by an agent the node is not placed on");
            return Err(ServerError::BadAgentToken {
                node: uuid.to_string(),
            });
        }
        let ok = node
            .status
            .agent_token
            .as_ref()
            .is_some_and(|t| t.ct_eq(&req.agent_token));
        if !ok {
            // Never log the presented token.
            tracing::warn!(node = %uuid, agent = %req.agent, bmc = node.spec.bmc_address().unwrap_or("-"),
                "ramdisk heartbeat refused: invalid or missing agent token");
            return Err(ServerError::BadAgentToken {
                node: uuid.to_string(),
            });
        }
        match self.apply(
            b,
            uuid,
            Event::Heartbeat {
                callback_url: req.callback_url.clone(),
            },
        ) {
            // A heartbeat in a record-only state is fine (IPA heartbeats periodically).
            Err(ServerError::NotAllowed { .. }) => Ok(()),
            other => other,
        }
    }
}
