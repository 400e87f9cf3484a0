//! Trust on the default (encrypted) path, with real processes:
//! - a share agent whose certificate another CA signed is refused, and the coordinator
//!   logs the refusal with the peer's address; one without a certificate is refused too;
//! - an unauthenticated call is refused, a plain-text client cannot talk at all;
//! - the reader token lists, shows and watches but changes nothing and never sees a
//!   password; only the admin's RevealSecrets shows it;
//! - after a deploy, no log file of the system and no byte of the SQLite store holds the
//!   BMC or share password.

use std::time::Duration;

use coordinator_client::conn::{self, Access};
use coordinator_client::pki::{PkiSpec, init_dev_pki};
use testkit as fleet;
use tonic::Code;
use vmedia_proto::v1 as pb;

/// The text without ANSI colour sequences (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_roles_and_secrets() -> anyhow::Result<()> {
    let (mut spec, dir) = e2e::spec(3, 1)?;
    // Distinctive passwords, so a grep cannot match anything else.
    spec.bmc_password = "Bmc-4e9d1c-Grep-Me".into();
    spec.share_password = "Share-7b2a5f-Grep-Me".into();
    spec.sim_share_password = spec.share_password.clone();
    let f = e2e::start(spec).await?;
    let result = async {
        let pki = f
            .pki
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the fleet has no PKI"))?;
        let url = f.coordinator_url();
        anyhow::ensure!(
            url.starts_with("https://"),
            "the default path must be TLS: {url}"
        );

        // 1. Untrusted agents.
        let rogue = init_dev_pki(&PkiSpec {
            dir: dir.path().join("rogue-pki"),
            agent_ids: vec!["share-9".into()],
            hosts: Vec::new(),
            force: true,
        })?;
        std::fs::create_dir_all(fleet::share_dir(&f.spec.work_dir, 9))?;
        let pw = f.share_password_file();
        let mut untrusted = f.spawn_agent_as(
            9,
            "share-9",
            fleet::free_port()?,
            &pw,
            Some(rogue.agents["share-9"].clone()),
        )?;
        let mut anonymous = f.spawn_agent_as(9, "share-8", fleet::free_port()?, &pw, None)?;
        // Signed by our CA, but for another agent id.
        let mut impostor = f.spawn_agent_as(
            9,
            "share-7",
            fleet::free_port()?,
            &pw,
            Some(pki.agents["share-1"].clone()),
        )?;
        // Wait until the coordinator has refused all three (each retries with backoff).
        let log_path = f.spec.work_dir.join("logs/coordinator.log");
        let refused = |log: &str| {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("peer=127.0.0.1:")).collect();
            // Another CA: refused in the TLS handshake.
            lines.iter().any(|l| l.contains("TLS handshake refused"))
                // No certificate: refused at AgentLink.
                && lines.iter().any(|l| l.contains("share agent refused: no client certificate"))
                // Our CA, but another agent's certificate.
                && lines.iter().any(|l| l.contains("does not name this agent id") && l.contains("share-7"))
        };
        let t0 = std::time::Instant::now();
        loop {
            let log = plain(&std::fs::read_to_string(&log_path)?);
            if refused(&log) {
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "the coordinator must log each refusal with the peer address:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let shares = f
            .shares_client()
            .await?
            .list_shares(pb::ListSharesRequest {})
            .await?
            .into_inner()
            .shares;
        let ids: Vec<&str> = shares.iter().map(|s| s.id.as_str()).collect();
        anyhow::ensure!(
            ids == ["share-1"],
            "only the trusted agent may register, got {ids:?}"
        );
        for p in [&mut untrusted, &mut anonymous, &mut impostor] {
            p.kill().await;
        }

        // 2. Unauthenticated and plain-text callers.
        let anon = Access {
            ca_file: Some(pki.ca_cert.clone()),
            token: None,
        };
        let mut c = conn::clients(&url, &anon).await?;
        let e = c
            .nodes
            .list_nodes(pb::ListNodesRequest::default())
            .await
            .unwrap_err();
        anyhow::ensure!(e.code() == Code::Unauthenticated, "no token: {e:?}");
        let bad = Access {
            ca_file: Some(pki.ca_cert.clone()),
            token: Some(conn::Token::new("x".repeat(64))),
        };
        let mut c = conn::clients(&url, &bad).await?;
        let e = c
            .nodes
            .list_nodes(pb::ListNodesRequest::default())
            .await
            .unwrap_err();
        anyhow::ensure!(e.code() == Code::Unauthenticated, "wrong token: {e:?}");
        let plain = url.replacen("https://", "http://", 1);
        let plain_ok = match conn::clients(&plain, &Access::default()).await {
            Ok(mut c) => c
                .nodes
                .list_nodes(pb::ListNodesRequest::default())
                .await
                .is_ok(),
            Err(_) => false,
        };
        anyhow::ensure!(!plain_ok, "a plain-text call must not work");

        // 3. Deploy with the admin token, then look with the reader's.
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        fleet::wait_until(
            &url,
            &f.access,
            e2e::SETTLE,
            |n| n.provision_state == "active" || fleet::is_failed(n),
            |_| {},
        )
        .await?;

        let reader = Access {
            ca_file: Some(pki.ca_cert.clone()),
            token: None,
        }
        .with_token_file(&pki.reader_token)?;
        let mut r = conn::clients(&url, &reader).await?;
        let listed = r
            .nodes
            .list_nodes(pb::ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        anyhow::ensure!(listed.len() == uuids.len());
        for n in &listed {
            anyhow::ensure!(
                n.provision_state == "active",
                "{} ended {}",
                n.name,
                n.provision_state
            );
            anyhow::ensure!(
                n.driver_info.get("irmc_password").map(String::as_str) == Some("******")
            );
        }
        let shown = r
            .nodes
            .get_node(pb::GetNodeRequest {
                node: uuids[0].clone(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            shown.driver_info.get("irmc_password").map(String::as_str) == Some("******")
        );
        let mut watch = r
            .nodes
            .watch(pb::WatchRequest {
                initial: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), watch.message()).await??;
        anyhow::ensure!(first.is_some(), "the reader may watch");
        anyhow::ensure!(r.shares.list_shares(pb::ListSharesRequest {}).await.is_ok());
        let denied = |s: tonic::Status| -> anyhow::Result<()> {
            anyhow::ensure!(s.code() == Code::PermissionDenied, "{s:?}");
            Ok(())
        };
        denied(
            r.nodes
                .reveal_secrets(pb::GetNodeRequest {
                    node: uuids[0].clone(),
                })
                .await
                .unwrap_err(),
        )?;
        denied(
            r.nodes
                .set_provision_state(pb::SetProvisionStateRequest {
                    node: uuids[0].clone(),
                    target: "undeploy".into(),
                })
                .await
                .unwrap_err(),
        )?;
        denied(
            r.nodes
                .delete_node(pb::DeleteNodeRequest {
                    node: uuids[0].clone(),
                })
                .await
                .unwrap_err(),
        )?;
        denied(r.nodes.create_node(f.node_request(0)).await.unwrap_err())?;
        denied(
            r.nodes
                .update_node(pb::UpdateNodeRequest {
                    node: uuids[0].clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        )?;
        denied(
            r.shares
                .drain_share(pb::DrainShareRequest {
                    share: "share-1".into(),
                })
                .await
                .unwrap_err(),
        )?;
        // Nothing changed.
        let after = r
            .nodes
            .get_node(pb::GetNodeRequest {
                node: uuids[0].clone(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(after.provision_state == "active");
        // The admin's explicit call is the only way to the password.
        let mut admin = f.nodes_client().await?;
        let revealed = admin
            .reveal_secrets(pb::GetNodeRequest {
                node: uuids[0].clone(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            revealed
                .driver_info
                .get("irmc_password")
                .map(String::as_str)
                == Some(f.spec.bmc_password.as_str())
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let work = f.spec.work_dir.clone();
    let (bmc, share) = (f.spec.bmc_password.clone(), f.spec.share_password.clone());
    f.shutdown().await;
    result?;

    // 4. No password in any log, nor in the store's bytes.
    let mut checked = 0;
    let mut stack = vec![work.join("logs"), work.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p)?;
            for pw in [&bmc, &share] {
                anyhow::ensure!(
                    !contains(&bytes, pw),
                    "{} holds a password in clear",
                    p.display()
                );
            }
            checked += 1;
        }
    }
    anyhow::ensure!(
        checked >= 3,
        "expected logs and the store, checked {checked} files"
    );
    Ok(())
}
