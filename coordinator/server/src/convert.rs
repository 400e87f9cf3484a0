//! Conversion between wire types (`vmedia_proto::v1`) and domain types (`coordinator_core`
//! and the server's own, `domain.rs`).
//!
//! Every conversion lives here; the gRPC edges (`api.rs`, `link.rs`) call it, and the
//! engine never sees a wire type. Reads always mask secrets (`core::mask`); only
//! `RevealSecrets` and the job sent to an agent carry clear text.

use std::collections::{BTreeMap, HashMap};

use coordinator_core as core;
use coordinator_core::{
    AgentId, BmcTarget, CoreError, InterfaceCheck, JobIntent, JobOutputs, JobResult, JobSpec, Node,
    NodeSpec, Placement, ProvisionState, TlsVerify,
};
use coordinator_store::NodeFilter;
use uuid::Uuid;
use vmedia_proto::v1 as pb;

use crate::domain::{
    AgentHeartbeat, AgentHello, AgentJob, BulkOutcome, Explanation, JobState, JobUpdate, NodeEvent,
    NodeView, PowerReport, RamdiskHeartbeat, RamdiskLookup, RamdiskNode, ShareIdentity, ShareView,
    ToAgent,
};
use crate::error::ServerError;

impl From<CoreError> for ServerError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { .. } => ServerError::InvalidArgument {
                what: e.to_string(),
            },
            // A verb refused in this state or in maintenance, an event out of place:
            // the request is fine but the node's state does not allow it.
            _ => ServerError::NotAllowed {
                what: e.to_string(),
            },
        }
    }
}

fn btree(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// Parses a uuid given in a request field, naming the field on failure.
pub fn parse_uuid(field: &str, s: &str) -> Result<Uuid, ServerError> {
    Uuid::parse_str(s)
        .map_err(|_| ServerError::invalid(format!("{field}: not a valid UUID: {s:?}")))
}

/// A node filter from the filter fields of a request (empty = not filtered). `share` is the
/// agent id.
pub fn node_filter(
    provision_state: &str,
    share: &str,
    name_prefix: &str,
    with_last_error: bool,
) -> Result<NodeFilter, ServerError> {
    let provision_state = if provision_state.is_empty() {
        None
    } else {
        Some(provision_state.parse::<ProvisionState>()?)
    };
    let opt = |s: &str| {
        if s.is_empty() {
            None
        } else {
            Some(s.to_owned())
        }
    };
    Ok(NodeFilter {
        provision_state,
        agent: opt(share).map(AgentId::from),
        name_prefix: opt(name_prefix),
        with_last_error,
        search: None,
    })
}

/// The spec a `CreateNodeRequest` asks for (not yet validated or normalised).
pub fn spec_from_create(req: pb::CreateNodeRequest) -> Result<NodeSpec, ServerError> {
    let uuid = if req.uuid.trim().is_empty() {
        Uuid::new_v4()
    } else {
        parse_uuid("uuid", req.uuid.trim())?
    };
    let mut spec = NodeSpec::new(uuid);
    if !req.name.is_empty() {
        spec.name = Some(req.name);
    }
    if !req.driver.is_empty() {
        spec.driver = req.driver;
    }
    spec.driver_info = btree(req.driver_info);
    spec.instance_info = btree(req.instance_info);
    spec.properties = btree(req.properties);
    spec.macs = req.macs;
    spec.share_selector = btree(req.share_selector);
    Ok(spec)
}

/// Applies a merge-update to a copy of the spec.
pub fn apply_update(spec: &NodeSpec, req: pb::UpdateNodeRequest) -> NodeSpec {
    let mut s = spec.clone();
    if let Some(name) = req.name {
        s.name = if name.is_empty() { None } else { Some(name) };
    }
    merge(&mut s.driver_info, req.driver_info, &req.driver_info_remove);
    merge(
        &mut s.instance_info,
        req.instance_info,
        &req.instance_info_remove,
    );
    merge(&mut s.properties, req.properties, &req.properties_remove);
    if req.replace_macs {
        s.macs = req.macs;
    } else {
        for m in req.macs {
            if !s.macs.contains(&m) {
                s.macs.push(m);
            }
        }
    }
    if req.replace_share_selector {
        s.share_selector = btree(req.share_selector);
    } else {
        s.share_selector.extend(req.share_selector);
    }
    if let Some(m) = req.maintenance {
        s.maintenance = m;
    }
    s
}

/// Applies an update patch. A secret sent back as its mask ("******", what every read
/// shows) means "unchanged": a client that reads a node and writes it back must not
/// replace the BMC password with the mask.
fn merge(map: &mut BTreeMap<String, String>, set: HashMap<String, String>, remove: &[String]) {
    for k in remove {
        map.remove(k);
    }
    map.extend(
        set.into_iter()
            .filter(|(k, v)| !(core::is_secret_key(k) && v == core::MASK)),
    );
}

/// A node as every read shows it: secrets masked.
pub fn node_to_proto(n: &Node, queue_position: u64) -> pb::Node {
    node_into_proto(n.clone(), queue_position)
}

/// [`node_to_proto`] for a node the caller no longer needs: the masked view, built by
/// moving the strings instead of copying them (ListNodes converts thousands per call).
pub fn node_into_proto(n: Node, queue_position: u64) -> pb::Node {
    fn masked(m: BTreeMap<String, String>) -> HashMap<String, String> {
        m.into_iter()
            .map(|(k, v)| {
                let v = if core::is_secret_key(&k) {
                    core::MASK.to_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect()
    }
    let Node { spec, status, .. } = n;
    pb::Node {
        uuid: spec.uuid.to_string(),
        name: spec.name.unwrap_or_default(),
        driver: spec.driver,
        driver_info: masked(spec.driver_info),
        instance_info: masked(spec.instance_info),
        properties: spec.properties.into_iter().collect(),
        macs: spec.macs,
        share_selector: spec.share_selector.into_iter().collect(),
        provision_state: status.provision_state.as_str().to_owned(),
        target_provision_state: status
            .target_provision_state
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        last_error: status.last_error.unwrap_or_default(),
        power_state: status
            .power_state
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        share: status.agent.map(AgentId::into_string).unwrap_or_default(),
        progress: status.progress,
        queue_position,
        created_at_ms: status.created_at_ms,
        updated_at_ms: status.updated_at_ms,
        provision_updated_at_ms: status.provision_updated_at_ms,
        maintenance: spec.maintenance,
        target_power_state: status
            .target_power_state
            .map(|a| a.ironic_name().to_owned())
            .unwrap_or_default(),
        power_updated_at_ms: status.power_updated_at_ms,
    }
}

/// A node with its queue position, as every read shows it: secrets masked.
pub fn node_view_to_proto(v: NodeView) -> pb::Node {
    node_into_proto(v.node, v.queue_position)
}

/// The watch event for a node's current status.
pub fn node_event(n: &Node, queue_position: u64, at_ms: i64) -> pb::NodeEvent {
    event_to_proto(NodeEvent::of(n, queue_position, at_ms))
}

pub fn event_to_proto(e: NodeEvent) -> pb::NodeEvent {
    pb::NodeEvent {
        node_uuid: e.node.to_string(),
        node_name: e.name.unwrap_or_default(),
        provision_state: e.provision_state.as_str().to_owned(),
        target_provision_state: e
            .target_provision_state
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        last_error: e.last_error.unwrap_or_default(),
        progress: e.progress,
        share: e.agent.map(AgentId::into_string).unwrap_or_default(),
        at_ms: e.at_ms,
        queue_position: e.queue_position,
        power_state: e
            .power_state
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        target_power_state: e
            .target_power_state
            .map(|a| a.ironic_name().to_owned())
            .unwrap_or_default(),
        power_updated_at_ms: e.power_updated_at_ms,
    }
}

/// RevealSecrets: driver_info in clear.
pub fn secrets_to_proto(spec: NodeSpec) -> pb::RevealSecretsResponse {
    pb::RevealSecretsResponse {
        driver_info: spec.driver_info.into_iter().collect(),
    }
}

pub fn bulk_to_proto(b: BulkOutcome) -> pb::BulkSetProvisionStateResponse {
    pb::BulkSetProvisionStateResponse {
        accepted: b.accepted,
        failures: b
            .failures
            .into_iter()
            .map(|f| pb::BulkFailure {
                node: f.node,
                error: f.error,
            })
            .collect(),
    }
}

pub fn share_to_proto(s: ShareView) -> pb::Share {
    let share = s.share.unwrap_or_default();
    pb::Share {
        id: s.agent.into_string(),
        health: s.health.as_str().to_owned(),
        server: share.server,
        share_type: share.share_type,
        share_name: share.share_name,
        capacity: s.capacity,
        active: s.active,
        queued: s.queued,
        nodes: s.nodes,
        free_bytes: s.free_bytes,
        bmc_networks: s.bmc_networks,
        labels: s.labels.into_iter().collect(),
        version: s.version,
        last_heartbeat_ms: s.last_heartbeat_ms,
        http_url: s.http_url,
        drained: s.drained,
    }
}

pub fn explanation_to_proto(e: Explanation) -> pb::PlacementExplanation {
    placement_to_proto(e.node, e.placement)
}

pub fn checks_to_proto(checks: Vec<InterfaceCheck>) -> pb::ValidateNodeResponse {
    pb::ValidateNodeResponse {
        interfaces: checks
            .into_iter()
            .map(|c| pb::InterfaceValidation {
                interface: c.interface.to_owned(),
                result: c.result,
                reason: c.reason,
            })
            .collect(),
    }
}

pub fn placement_to_proto(node: Uuid, p: Placement) -> pb::PlacementExplanation {
    pb::PlacementExplanation {
        node_uuid: node.to_string(),
        share: p.chosen.map(AgentId::into_string).unwrap_or_default(),
        reason: p.reason,
        candidates: p
            .candidates
            .into_iter()
            .map(|c| pb::Candidate {
                share: c.id.into_string(),
                eligible: c.eligible,
                reason: c.reason,
                score: c.score,
                load: c.load,
                capacity: u64::from(c.capacity),
            })
            .collect(),
    }
}

/// The wire job for a persisted intent. Carries the BMC password and agent token in clear:
/// it goes only onto the agent's stream, never into logs.
pub fn job_to_proto(
    node: Uuid,
    intent: &JobIntent,
    spec: &JobSpec,
    bmc: Option<BmcTarget>,
) -> pb::Job {
    use pb::job::Kind;
    let kind = match spec {
        JobSpec::PrepareRamdisk {
            deploy_iso,
            deploy_kernel,
            deploy_ramdisk,
            boot_mode,
            agent_token,
            bootif,
            kernel_append_params,
        } => Kind::PrepareRamdisk(pb::PrepareRamdisk {
            deploy_iso: deploy_iso.clone(),
            deploy_kernel: deploy_kernel.clone(),
            deploy_ramdisk: deploy_ramdisk.clone(),
            boot_mode: boot_mode.clone(),
            agent_token: agent_token.expose().to_owned(),
            bootif: bootif.clone(),
            extra_params: HashMap::new(),
            kernel_append_params: kernel_append_params.clone(),
        }),
        JobSpec::WriteImage {
            callback_url,
            agent_token,
            image_source,
            image_checksum,
            os_hash_algo,
            os_hash_value,
            disk_format,
            boot_mode,
            image_type,
            timeout_s,
            configdrive,
            node_name,
            container_format,
            partition,
        } => Kind::WriteImage(pb::WriteImage {
            callback_url: callback_url.clone(),
            agent_token: agent_token.expose().to_owned(),
            image_source: image_source.clone(),
            image_checksum: image_checksum.clone(),
            os_hash_algo: os_hash_algo.clone(),
            os_hash_value: os_hash_value.clone(),
            disk_format: disk_format.clone(),
            boot_mode: boot_mode.clone(),
            image_type: image_type.clone(),
            timeout_s: *timeout_s,
            configdrive: configdrive.expose().to_owned(),
            node_name: node_name.clone(),
            container_format: container_format.clone(),
            partition: partition.as_ref().map(|p| pb::PartitionImage {
                kernel: p.kernel.clone(),
                ramdisk: p.ramdisk.clone(),
                root_gb: p.root_gb,
                swap_mb: p.swap_mb,
                ephemeral_gb: p.ephemeral_gb,
                ephemeral_format: p.ephemeral_format.clone(),
                preserve_ephemeral: p.preserve_ephemeral,
                disk_label: p.disk_label.clone(),
                boot_option: p.boot_option.clone(),
            }),
        }),
        JobSpec::PrepareInstance {
            callback_url,
            agent_token,
            boot_iso,
            boot_mode,
            power_on,
            boot_option,
            kernel,
            ramdisk,
            kernel_append_params,
        } => Kind::PrepareInstance(pb::PrepareInstance {
            callback_url: callback_url.clone(),
            agent_token: agent_token.expose().to_owned(),
            boot_iso: boot_iso.clone(),
            boot_mode: boot_mode.clone(),
            power_on: *power_on,
            boot_option: boot_option.clone(),
            kernel: kernel.clone(),
            ramdisk: ramdisk.clone(),
            kernel_append_params: kernel_append_params.clone(),
        }),
        JobSpec::CleanUp { power_off } => Kind::CleanUp(pb::CleanUp {
            power_off: *power_off,
        }),
        JobSpec::Power { action } => Kind::Power(pb::PowerAction {
            action: action.as_str().to_owned(),
        }),
        JobSpec::BmcInfo => Kind::BmcInfo(pb::BmcInfo {}),
        JobSpec::Inspect => Kind::Inspect(pb::Inspect {}),
    };
    pb::Job {
        job_id: intent.job_id.to_string(),
        node_uuid: node.to_string(),
        bmc: bmc.map(bmc_to_proto),
        kind: Some(kind),
    }
}

/// How the agent reaches the BMC, on the wire (the password in clear: agent stream only).
fn bmc_to_proto(b: BmcTarget) -> pb::BmcTarget {
    pb::BmcTarget {
        address: b.address,
        port: u32::from(b.port),
        username: b.username,
        password: b.password.expose().to_owned(),
        auth_method: b.auth_method.as_str().to_owned(),
        client_timeout_s: b.client_timeout_s,
        verify_ca: verify_ca_to_proto(b.verify_ca),
        transport: b.transport.as_str().to_string(),
    }
}

/// A power-sync answer from an agent.
pub fn power_report_from_proto(r: pb::PowerReport) -> PowerReport {
    PowerReport {
        node_uuid: r.node_uuid,
        power_state: r.power_state.parse().ok(),
        error: r.error,
        bmc_requests: r.bmc_requests,
    }
}

/// `irmc_verify_ca` as the agent reads it: "true", "false" or the CA bundle's path.
fn verify_ca_to_proto(v: TlsVerify) -> String {
    match v {
        TlsVerify::System => "true".to_owned(),
        TlsVerify::Insecure => "false".to_owned(),
        TlsVerify::CaFile(path) => path,
    }
}

/// A terminal job update as the state machine sees it.
pub fn job_result(u: &pb::JobUpdate) -> JobResult {
    let out = u.output.clone().unwrap_or_default();
    let opt = |s: &str| {
        if s.is_empty() {
            None
        } else {
            Some(s.to_owned())
        }
    };
    JobResult {
        ok: u.state == pb::JobState::Succeeded as i32,
        error: opt(&u.error),
        retryable: u.retryable,
        output: JobOutputs {
            power_state: out.power_state.parse().ok(),
            root_uuid: opt(&out.root_uuid),
            bmc_model: opt(&out.bmc_model),
            bmc_firmware: opt(&out.bmc_firmware),
            bmc_has_virtual_fd: if out.bmc_model.is_empty() {
                None
            } else {
                Some(out.bmc_has_virtual_fd)
            },
            inventory: out.inspected.then(|| core::Inventory {
                properties: out.properties.into_iter().collect(),
                macs: out.macs,
            }),
            bmc_check: opt(&out.bmc_check),
        },
    }
}

/// A share agent's hello (its id trimmed).
pub fn hello_from_proto(h: pb::AgentHello) -> AgentHello {
    AgentHello {
        agent: AgentId::from(h.agent_id.trim()),
        version: h.version,
        share: h.share.map(|s| ShareIdentity {
            server: s.server,
            share_type: s.share_type,
            share_name: s.share_name,
        }),
        capacity: h.capacity,
        bmc_networks: h.bmc_networks,
        labels: btree(h.labels),
        http_url: h.http_url,
        free_bytes: h.free_bytes,
        known_jobs: h
            .known_jobs
            .into_iter()
            .map(job_update_from_proto)
            .collect(),
    }
}

pub fn heartbeat_from_proto(h: &pb::AgentHeartbeat) -> AgentHeartbeat {
    AgentHeartbeat {
        free_bytes: h.free_bytes,
    }
}

/// A job update; its result is read as [`job_result`] reads it.
pub fn job_update_from_proto(u: pb::JobUpdate) -> JobUpdate {
    let result = job_result(&u);
    let state = match pb::JobState::try_from(u.state) {
        Ok(pb::JobState::Running) => JobState::Running,
        Ok(pb::JobState::Succeeded) => JobState::Succeeded,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Ok(pb::JobState::Unspecified) | Err(_) => JobState::Unspecified,
    };
    JobUpdate {
        job_id: u.job_id,
        node_uuid: u.node_uuid,
        state,
        progress: u.progress,
        result,
    }
}

/// What the engine sends an agent, on the wire.
pub fn to_agent_message(m: ToAgent) -> pb::CoordinatorMessage {
    use pb::coordinator_message::Msg;
    let msg = match m {
        ToAgent::Welcome {
            coordinator_id,
            heartbeat_interval_ms,
        } => Msg::Welcome(pb::Welcome {
            coordinator_id,
            heartbeat_interval_ms,
        }),
        ToAgent::Job(job) => {
            let AgentJob {
                node,
                intent,
                spec,
                bmc,
            } = *job;
            Msg::Job(job_to_proto(node, &intent, &spec, bmc))
        }
        ToAgent::Cancel { job_id, node } => Msg::Cancel(pb::CancelJob {
            job_id: job_id.to_string(),
            node_uuid: node.to_string(),
        }),
        ToAgent::PowerQuery { node, bmc } => Msg::PowerQuery(pb::PowerQuery {
            node_uuid: node.to_string(),
            bmc: Some(bmc_to_proto(*bmc)),
        }),
    };
    pb::CoordinatorMessage { msg: Some(msg) }
}

pub fn lookup_from_proto(r: pb::RamdiskLookupRequest) -> RamdiskLookup {
    RamdiskLookup {
        agent: AgentId::new(r.agent_id.trim()),
        node_uuid: r.node_uuid,
        addresses: r.addresses,
    }
}

pub fn ramdisk_node_to_proto(n: RamdiskNode) -> pb::RamdiskLookupResponse {
    pb::RamdiskLookupResponse {
        node_uuid: n.node.to_string(),
        properties: n.properties.into_iter().collect(),
        instance_info: n.instance_info.into_iter().collect(),
        heartbeat_timeout_s: n.heartbeat_timeout_s,
    }
}

pub fn ramdisk_heartbeat_from_proto(r: pb::RamdiskHeartbeatRequest) -> RamdiskHeartbeat {
    RamdiskHeartbeat {
        agent: AgentId::from(r.agent_id),
        node_uuid: r.node_uuid,
        callback_url: r.callback_url,
        agent_token: r.agent_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_secret_written_back_keeps_the_password() {
        let mut spec = NodeSpec::new(Uuid::new_v4());
        spec.driver_info
            .insert("irmc_password".into(), "real".into());
        let req = pb::UpdateNodeRequest {
            node: spec.uuid.to_string(),
            driver_info: HashMap::from([
                ("irmc_password".to_string(), core::MASK.to_string()),
                ("irmc_username".to_string(), "admin".to_string()),
            ]),
            ..Default::default()
        };
        let out = apply_update(&spec, req);
        assert_eq!(out.driver_info["irmc_password"], "real");
        assert_eq!(out.driver_info["irmc_username"], "admin");
        // A real new value does replace it.
        let req = pb::UpdateNodeRequest {
            driver_info: HashMap::from([("irmc_password".to_string(), "new".to_string())]),
            ..Default::default()
        };
        assert_eq!(apply_update(&out, req).driver_info["irmc_password"], "new");
    }

    #[test]
    fn the_moving_conversion_shows_what_the_copying_one_shows() {
        let mut spec = NodeSpec::new(Uuid::new_v4());
        spec.name = Some("n1".into());
        spec.driver_info = BTreeMap::from([
            ("irmc_password".into(), "real".into()),
            ("irmc_address".into(), "10.0.0.9".into()),
        ]);
        spec.instance_info = BTreeMap::from([("image_token".into(), "t0ken".into())]);
        spec.properties = BTreeMap::from([("cpus".into(), "8".into())]);
        spec.macs = vec!["52:54:00:00:00:01".into()];
        spec.share_selector = BTreeMap::from([("rack".into(), "r1".into())]);
        let mut status = core::NodeStatus::new(7);
        status.agent = Some("share-1".into());
        status.last_error = Some("boom".into());
        status.power_state = Some(core::PowerState::On);
        status.target_provision_state = Some(core::ProvisionState::Active);
        let node = Node {
            spec,
            status,
            version: 3,
        };
        let by_ref = node_to_proto(&node, 4);
        assert_eq!(node_into_proto(node, 4), by_ref);
        assert_eq!(by_ref.driver_info["irmc_password"], core::MASK);
        assert_eq!(by_ref.instance_info["image_token"], core::MASK);
        assert_eq!(by_ref.driver_info["irmc_address"], "10.0.0.9");
    }

    #[test]
    fn bmc_settings_and_power_actions_keep_their_wire_spelling() {
        let mut spec = NodeSpec::new(Uuid::nil());
        for (k, v) in [
            ("irmc_address", "10.0.0.9"),
            ("irmc_username", "admin"),
            ("irmc_password", "pw"),
        ] {
            spec.driver_info.insert(k.into(), v.into());
        }
        let bmc = |spec: &NodeSpec| {
            let job = job_to_proto(
                Uuid::nil(),
                &JobIntent {
                    job_id: Uuid::nil(),
                    kind: core::JobKind::Power,
                    attempt: 1,
                },
                &JobSpec::Power {
                    action: core::PowerAction::Status,
                },
                core::bmc_target(spec).ok(),
            );
            let Some(pb::job::Kind::Power(p)) = job.kind else {
                panic!("a power job");
            };
            let b = job.bmc.unwrap();
            (b.auth_method, b.verify_ca, p.action)
        };
        assert_eq!(bmc(&spec), ("basic".into(), "true".into(), "status".into()));
        for (auth, verify, want) in [
            ("digest", "False", ("digest", "false")),
            ("basic", "yes", ("basic", "true")),
            ("basic", "/etc/ssl/ca.pem", ("basic", "/etc/ssl/ca.pem")),
        ] {
            spec.driver_info
                .insert("irmc_auth_method".into(), auth.into());
            spec.driver_info
                .insert("irmc_verify_ca".into(), verify.into());
            let (a, v, _) = bmc(&spec);
            assert_eq!((a.as_str(), v.as_str()), want);
        }
        let spelled: Vec<&str> = core::PowerAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "on",
                "off",
                "reboot",
                "reset",
                "cycle",
                "soft-off",
                "soft-reboot",
                "nmi",
                "status"
            ]
        );
    }

    #[test]
    fn create_request_defaults() {
        let spec = spec_from_create(pb::CreateNodeRequest::default()).unwrap();
        assert_eq!(spec.driver, "irmc");
        assert_eq!(spec.name, None);
        let err = spec_from_create(pb::CreateNodeRequest {
            uuid: "nope".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "uuid: not a valid UUID: \"nope\"");
    }

    #[test]
    fn update_merges_and_removes() {
        let mut spec = NodeSpec::new(Uuid::nil());
        spec.driver_info.insert("a".into(), "1".into());
        spec.driver_info.insert("b".into(), "2".into());
        let s = apply_update(
            &spec,
            pb::UpdateNodeRequest {
                driver_info: [("c".to_string(), "3".to_string())].into(),
                driver_info_remove: vec!["a".into()],
                maintenance: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(s.driver_info.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert!(s.maintenance);
    }
}
