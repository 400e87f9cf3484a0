//! The deploy ramdisk's call-backs are bound to the per-deploy agent token: a heartbeat
//! with a wrong (or no) token is refused with Ironic's 400, the node does not move, and the
//! offered token appears in no log.

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_agent_token_is_rejected_and_never_logged() -> anyhow::Result<()> {
    let (mut spec, dir) = e2e::spec(1, 1)?;
    // Keep the real ramdisk from calling back while the test plays an impostor.
    spec.sim_args = vec!["--boot-delay".into(), "3600s".into()];
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        f.make_available(&uuids, e2e::SETTLE, |_, _| {}).await?;
        f.bulk(&uuids, "deploy").await?;
        let t0 = Instant::now();
        loop {
            let n = &f.list_all().await?[0];
            if n.provision_state == "wait call-back" {
                break;
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "never reached wait call-back: {n:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let forged = "forged-token-0123456789abcdefghijklmnopqrstuvwxyz";
        let http = reqwest::Client::new();
        let url = format!("http://{}/v1/heartbeat/{}", f.agent_http[0], uuids[0]);
        for body in [
            serde_json::json!({"callback_url": "http://127.0.0.1:9999", "agent_token": forged, "agent_version": "9.0.0"}),
            serde_json::json!({"callback_url": "http://127.0.0.1:9999", "agent_version": "9.0.0"}),
        ] {
            let r = http
                .post(&url)
                .header("X-OpenStack-Ironic-API-Version", "1.68")
                .json(&body)
                .send()
                .await?;
            let status = r.status();
            let text = r.text().await?;
            anyhow::ensure!(status == 400, "forged heartbeat answered {status}: {text}");
            anyhow::ensure!(text.contains("agent token"), "unexpected refusal text: {text}");
            anyhow::ensure!(!text.contains(forged), "the refusal echoes the token");
        }
        let n = &f.list_all().await?[0];
        anyhow::ensure!(n.provision_state == "wait call-back", "a forged heartbeat moved the node to {}", n.provision_state);
        // Give the logs a moment to flush, then search every one of them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for e in std::fs::read_dir(dir.path().join("logs"))? {
            let p = e?.path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            anyhow::ensure!(!text.contains(forged), "{} contains the offered token", p.display());
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}
