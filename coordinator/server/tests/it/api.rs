//! The public API over a real socket against the real `coordinator` binary.

use std::time::Duration;

use tonic::Code;
use vmedia_proto::v1 as pb;

use crate::common::{Coordinator, node_req};

#[tokio::test]
async fn crud_validation_and_masking() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    let mut nodes = coord.nodes().await;

    // Create: generated uuid, secrets masked in the reply and in every read.
    let created = nodes.create_node(node_req(1)).await.unwrap().into_inner();
    assert_eq!(created.provision_state, "enroll");
    assert_eq!(created.driver, "irmc");
    assert_eq!(created.driver_info["irmc_password"], "******");
    let by_name = nodes
        .get_node(pb::GetNodeRequest {
            node: "node-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.uuid, created.uuid);
    assert_eq!(by_name.driver_info["irmc_password"], "******");
    let revealed = nodes
        .reveal_secrets(pb::GetNodeRequest {
            node: created.uuid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revealed.driver_info["irmc_password"], "s3cret-pw");

    // Duplicate name.
    let dup = nodes.create_node(node_req(1)).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    // Bad input names the field.
    let mut r = node_req(2);
    r.driver_info.remove("irmc_address");
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("irmc_address"), "{}", e.message());

    let mut r = node_req(3);
    r.driver_info.insert("irmc_port".into(), "8443".into());
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("driver_info.irmc_port"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("8443"), "{}", e.message());

    let mut r = node_req(4);
    r.macs = vec!["52:54:00:zz:00:01".into()];
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("macs"), "{}", e.message());

    // A value that looks sealed where the store never seals one, and an oversized map.
    let mut r = node_req(6);
    r.instance_info
        .insert("image_source".into(), "enc:v1:k1:AAAA".into());
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("instance_info.image_source") && e.message().contains("enc:v1:"),
        "{}",
        e.message()
    );
    let mut r = node_req(7);
    for i in 0..300 {
        r.properties.insert(format!("p{i}"), "x".into());
    }
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("properties: 300 keys"),
        "{}",
        e.message()
    );

    let mut r = node_req(5);
    r.uuid = "not-a-uuid".into();
    let e = nodes.create_node(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "uuid: not a valid UUID: \"not-a-uuid\"");

    // Unknown node.
    let e = nodes
        .get_node(pb::GetNodeRequest {
            node: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nope"), "{}", e.message());

    // Verb not allowed in the state: Ironic's wording.
    let e = nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: created.uuid.clone(),
            target: "deploy".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        format!(
            "The requested action \"deploy\" can not be performed on node \"{}\" while it is in state \"enroll\".",
            created.uuid
        )
    );
    let e = nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: created.uuid.clone(),
            target: "explode".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("target"), "{}", e.message());

    // Update: merge, remove, maintenance; validation applies to updates too.
    let updated = nodes
        .update_node(pb::UpdateNodeRequest {
            node: "node-1".into(),
            instance_info: [(
                "kernel_append_params".to_owned(),
                "console=ttyS0".to_owned(),
            )]
            .into(),
            instance_info_remove: vec!["image_checksum".into()],
            maintenance: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.maintenance);
    assert_eq!(
        updated.instance_info["kernel_append_params"],
        "console=ttyS0"
    );
    assert!(!updated.instance_info.contains_key("image_checksum"));
    let e = nodes
        .update_node(pb::UpdateNodeRequest {
            node: "node-1".into(),
            driver_info: [("irmc_port".to_owned(), "22".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("irmc_port"), "{}", e.message());

    // Validate lists interfaces.
    let v = nodes
        .validate_node(pb::ValidateNodeRequest {
            node: "node-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = v.interfaces.iter().map(|i| i.interface.as_str()).collect();
    for want in ["power", "management", "boot", "deploy"] {
        assert!(names.contains(&want), "{names:?}");
    }

    // List with pagination and filters.
    for i in 10..25 {
        nodes.create_node(node_req(i)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let page = nodes
            .list_nodes(pb::ListNodesRequest {
                limit: 4,
                marker: marker.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.nodes.len() <= 4);
        seen.extend(page.nodes.into_iter().map(|n| n.uuid));
        if page.next_marker.is_empty() {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(seen.len(), 16);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages are ordered by uuid");
    let filtered = nodes
        .list_nodes(pb::ListNodesRequest {
            name_prefix: "node-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // node-1, node-10 .. node-19
    assert_eq!(filtered.nodes.len(), 11);
    let e = nodes
        .list_nodes(pb::ListNodesRequest {
            provision_state: "sleeping".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("provision_state"), "{}", e.message());

    // Bulk with a selector needs `all` or a narrowing field.
    let e = nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            selector: Some(pb::NodeSelector::default()),
            target: "manage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = nodes
        .bulk_set_provision_state(pb::BulkSetProvisionStateRequest {
            nodes: vec!["node-10".into(), "missing-node".into()],
            target: "provide".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 0);
    assert_eq!(r.failures.len(), 2);
    assert!(
        r.failures[0].error.contains("can not be performed"),
        "{:?}",
        r.failures
    );
    assert!(
        r.failures[1].error.contains("missing-node"),
        "{:?}",
        r.failures
    );

    // Delete.
    nodes
        .delete_node(pb::DeleteNodeRequest {
            node: "node-24".into(),
        })
        .await
        .unwrap();
    let e = nodes
        .get_node(pb::GetNodeRequest {
            node: "node-24".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Shares: none yet; draining an unknown share is NOT_FOUND.
    let mut shares = coord.shares().await;
    let list = shares
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.shares.is_empty());
    let e = shares
        .drain_share(pb::DrainShareRequest {
            share: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    let channel = coord.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "vmedia.v1.Nodes",
        "vmedia.v1.Shares",
        "vmedia.v1.AgentLink",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
}

#[tokio::test]
async fn agent_registration_lookup_and_token_check() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &["--callback-timeout", "1h"]);
    let mut b = crate::common::AgentBehaviour::new("agent-a", 4);
    b.ramdisk_heartbeats = false;
    let _agent = crate::common::FakeAgent::connect(coord.channel().await, b).await;
    let uuids = crate::common::enroll_available(&coord, 1).await;
    let mut nodes = coord.nodes().await;
    nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: uuids[0].clone(),
            target: "deploy".into(),
        })
        .await
        .unwrap();
    crate::common::wait_all(
        &mut nodes,
        &uuids,
        "wait call-back",
        Duration::from_secs(20),
    )
    .await;

    let mut shares = coord.shares().await;
    let list = shares
        .list_shares(pb::ListSharesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.shares.len(), 1);
    assert_eq!(list.shares[0].id, "agent-a");
    assert_eq!(list.shares[0].health, "healthy");
    assert_eq!(list.shares[0].capacity, 4);
    assert_eq!(list.shares[0].nodes, 1);

    let explain = nodes
        .explain_placement(pb::ExplainPlacementRequest {
            node: uuids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explain.share, "agent-a");
    assert_eq!(explain.candidates.len(), 1);

    let mut link = vmedia_proto::v1::agent_link_client::AgentLinkClient::new(coord.channel().await);
    // Lookup by MAC (any case) finds the deploying node; unknown MACs are NOT_FOUND.
    let found = link
        .ramdisk_lookup(pb::RamdiskLookupRequest {
            agent_id: "agent-a".into(),
            addresses: vec!["52:54:00:00:00:00".to_uppercase()],
            node_uuid: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.node_uuid, uuids[0]);
    assert!(found.heartbeat_timeout_s > 0);
    let e = link
        .ramdisk_lookup(pb::RamdiskLookupRequest {
            agent_id: "agent-a".into(),
            addresses: vec!["52:54:00:ff:ff:ff".into()],
            node_uuid: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = link
        .ramdisk_lookup(pb::RamdiskLookupRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Wrong token: INVALID_ARGUMENT with Ironic's text, node stays waiting.
    let e = link
        .ramdisk_heartbeat(pb::RamdiskHeartbeatRequest {
            agent_id: "agent-a".into(),
            node_uuid: uuids[0].clone(),
            callback_url: "https://127.0.0.1:9999".into(),
            agent_token: "0".repeat(64),
            agent_version: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "Invalid or missing agent token received.");
    let n = nodes
        .get_node(pb::GetNodeRequest {
            node: uuids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.provision_state, "wait call-back");

    // Abort a waiting deploy.
    let n = nodes
        .set_provision_state(pb::SetProvisionStateRequest {
            node: uuids[0].clone(),
            target: "abort".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.provision_state, "deploy failed");
}

/// The coordinator always seals secrets at rest: the BMC password is nowhere in the
/// database files, and the generated key file is private.
#[tokio::test]
async fn secrets_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(dir.path(), &[]);
    let mut nodes = coord.nodes().await;
    nodes.create_node(node_req(7)).await.unwrap();
    drop(coord);
    let mut seen_db = false;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("coordinator.sqlite") {
            seen_db = true;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(b"s3cret-pw".len()).any(|w| w == b"s3cret-pw"),
                "password in clear in {name}"
            );
        }
    }
    assert!(seen_db);
    let key = dir.path().join("secret.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
}
