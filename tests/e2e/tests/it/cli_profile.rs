//! The real `vmedia` binary reaches a running fleet through a profile of its config file,
//! with no `VMEDIA_*` variable set: the coordinator, CA and token all come from the file
//! (paths relative to it). Flags beat the profile; an unknown profile is a one-line error
//! naming the file and the profiles it has; a token file others can read is warned about.

use std::path::Path;
use std::process::Output;

use testkit::default_bin_dir;

/// Runs `vmedia ARGS` with an empty environment except HOME and XDG_CONFIG_HOME.
fn vmedia(home: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Output> {
    let bin = default_bin_dir()?.join("vmedia");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p vmedia)",
        bin.display()
    );
    let mut cmd = std::process::Command::new(&bin);
    cmd.env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Ok(cmd.output()?)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(unix)]
fn chmod(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_selects_coordinator_and_credentials() -> anyhow::Result<()> {
    let (spec, dir) = e2e::spec(3, 1)?;
    let f = e2e::start(spec).await?;
    let result = async {
        let uuids = f.enroll_all().await?;
        let pki = f
            .pki
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the fleet runs without TLS"))?;
        // The config directory: the CA and token next to the file, named relatively.
        let home = dir.path().join("home");
        let cfg_dir = home.join("xdg/vmedia");
        std::fs::create_dir_all(cfg_dir.join("lab"))?;
        std::fs::copy(&pki.ca_cert, cfg_dir.join("lab/ca.pem"))?;
        let token = cfg_dir.join("lab/admin.token");
        std::fs::copy(&pki.admin_token, &token)?;
        #[cfg(unix)]
        chmod(&token, 0o600)?;
        let config = cfg_dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[profiles.lab]\n\
                 coordinator = \"{urls}\"\n\
                 ca_file = \"lab/ca.pem\"\n\
                 token_file = \"lab/admin.token\"\n\
                 \n\
                 [profiles.stale]\n\
                 coordinator = \"https://127.0.0.1:1\"\n\
                 ca_file = \"lab/ca.pem\"\n\
                 token_file = \"lab/admin.token\"\n",
                urls = f.coordinator_urls()
            ),
        )?;

        // The profile alone: JSON and table list every node.
        let out = vmedia(
            &home,
            &[],
            &["--profile", "lab", "node", "list", "--output", "json"],
        )?;
        anyhow::ensure!(
            out.status.success(),
            "node list failed: {}",
            text(&out.stderr)
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut got: Vec<String> = listed
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["uuid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut want = uuids.clone();
        got.sort();
        want.sort();
        anyhow::ensure!(got == want, "listed {got:?}, enrolled {want:?}");
        anyhow::ensure!(
            text(&out.stderr).is_empty(),
            "stderr: {}",
            text(&out.stderr)
        );

        let out = vmedia(&home, &[], &["--profile", "lab", "node", "list"])?;
        anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        for u in &uuids {
            anyhow::ensure!(table.contains(u.as_str()), "{u} missing from:\n{table}");
        }

        // VMEDIA_PROFILE selects too, and the flag beats the profile's coordinator.
        let out = vmedia(
            &home,
            &[("VMEDIA_PROFILE", "stale")],
            &[
                "--coordinator",
                &f.coordinator_urls(),
                "node",
                "list",
                "-o",
                "yaml",
            ],
        )?;
        anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
        let yaml = text(&out.stdout);
        anyhow::ensure!(
            uuids.iter().all(|u| yaml.contains(&format!("uuid: {u}"))),
            "{yaml}"
        );
        // ... and without the flag the stale profile's coordinator is the one tried.
        let out = vmedia(&home, &[("VMEDIA_PROFILE", "stale")], &["node", "list"])?;
        anyhow::ensure!(!out.status.success());
        anyhow::ensure!(
            text(&out.stderr).contains("127.0.0.1:1"),
            "{}",
            text(&out.stderr)
        );

        // An unknown profile: one line naming the file and the profiles it has.
        let out = vmedia(&home, &[], &["--profile", "nope", "share", "list"])?;
        anyhow::ensure!(!out.status.success());
        let err = text(&out.stderr);
        anyhow::ensure!(
            err == format!(
                "vmedia: unknown profile \"nope\" in {} (profiles: lab, stale)\n",
                config.display()
            ),
            "{err}"
        );

        // A token file others can read still works, with a warning.
        #[cfg(unix)]
        {
            chmod(&token, 0o644)?;
            let out = vmedia(&home, &[], &["--profile", "lab", "share", "list"])?;
            anyhow::ensure!(out.status.success(), "{}", text(&out.stderr));
            anyhow::ensure!(
                text(&out.stderr).contains("readable by group or others"),
                "{}",
                text(&out.stderr)
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    f.shutdown().await;
    result
}
