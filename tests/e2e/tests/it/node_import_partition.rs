//! `vmedia node import` of Ironic nodes with a partition image and a config drive: the
//! layout fields (`root_gb`, `swap_mb`, `ephemeral_gb`, `ephemeral_format`,
//! `preserve_ephemeral`) and `configdrive` arrive in the coordinator unchanged, a wrong
//! field is refused with a line naming it, and `vmedia node validate` says what a
//! partition image still lacks. Real processes: a coordinator and the `vmedia` CLI.

use std::time::Duration;

use vmedia_proto::v1 as pb;
use vmedia_proto::v1::nodes_client::NodesClient;

fn ironic_node(uuid: &str, name: &str, instance_info: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "uuid": uuid, "name": name, "driver": "irmc",
        "driver_info": {"irmc_address": "10.0.0.5", "irmc_username": "admin",
                        "irmc_password": "******", "deploy_iso": "deploy.iso"},
        "instance_info": instance_info,
        "properties": {"capabilities": "boot_mode:bios"},
        "provision_state": "active",
    })
}

async fn vmedia(addr: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let bin = testkit::default_bin_dir()?;
    Ok(tokio::process::Command::new(bin.join("vmedia"))
        .arg("--coordinator")
        .arg(format!("http://{addr}"))
        .args(args)
        .env_remove("VMEDIA_PROFILE")
        .env_remove("VMEDIA_CONFIG")
        .output()
        .await?)
}

#[tokio::test]
async fn import_keeps_partition_fields_and_configdrive() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = testkit::default_bin_dir()?;
    let (mut coord, addr) = testkit::fleet::lone_coordinator(&bin, dir.path())?;
    let result = async {
        let configdrive = serde_json::json!({
            "meta_data": {"hostname": "web-1", "public_keys": {"k": "ssh-ed25519 AAAA k@h"}},
            "user_data": "#cloud-config\n",
            "network_data": {"links": [], "networks": [], "services": []},
        });
        let image = |extra: serde_json::Value| {
            let mut ii = serde_json::json!({
                "image_source": "http://img.example/part.img",
                "image_checksum": "a".repeat(64),
                "image_disk_format": "qcow2",
                "kernel": "http://img.example/vmlinuz",
                "ramdisk": "http://img.example/initrd",
            });
            for (k, v) in extra.as_object().into_iter().flatten() {
                ii[k] = v.clone();
            }
            ii
        };
        let good_uuid = "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c21";
        let nodes = serde_json::json!([
            ironic_node(
                good_uuid,
                "part-1",
                image(serde_json::json!({
                    "root_gb": 10, "swap_mb": 512, "ephemeral_gb": 2, "ephemeral_format": "xfs",
                    "preserve_ephemeral": false, "configdrive": configdrive,
                }))
            ),
            ironic_node(
                "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c22",
                "part-2",
                image(serde_json::json!({"swap_mb": 512}))
            ),
            ironic_node(
                "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c23",
                "part-3",
                image(serde_json::json!({"root_gb": "ten"}))
            ),
            ironic_node(
                "5f6a8c2e-1b4d-4a43-9e0a-2d2b3f8a1c24",
                "part-4",
                image(serde_json::json!({"root_gb": 4, "image_disk_format": "vhd"}))
            ),
        ]);
        let file = dir.path().join("ironic-nodes.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&nodes)?)?;
        let file_arg = file.display().to_string();

        // The coordinator takes a moment to listen.
        let mut out = None;
        for _ in 0..50 {
            let o = vmedia(&addr.to_string(), &["node", "import", &file_arg]).await?;
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            if text.contains("import:") {
                out = Some((o.status, text));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (status, text) = out.ok_or_else(|| anyhow::anyhow!("vmedia node import never ran"))?;
        eprintln!("{text}");
        anyhow::ensure!(
            !status.success(),
            "three nodes are wrong, yet exit 0: {text}"
        );
        anyhow::ensure!(text.contains("import: 1 created, 3 failed"), "{text}");
        for want in [
            "part-2: instance_info.root_gb: missing: a partition image",
            "part-3: instance_info.root_gb: \"ten\" is not a non-negative integer",
            "part-4: instance_info.image_disk_format: unknown disk format \"vhd\"",
        ] {
            anyhow::ensure!(text.contains(want), "no line {want:?} in: {text}");
        }

        // What the coordinator stored for the good node: the fields as Ironic had them.
        let mut client = NodesClient::connect(format!("http://{addr}")).await?;
        let n = client
            .get_node(pb::GetNodeRequest {
                node: good_uuid.into(),
            })
            .await?
            .into_inner();
        let ii = &n.instance_info;
        for (k, v) in [
            ("root_gb", "10"),
            ("swap_mb", "512"),
            ("ephemeral_gb", "2"),
            ("ephemeral_format", "xfs"),
            ("preserve_ephemeral", "false"),
            ("image_disk_format", "qcow2"),
        ] {
            anyhow::ensure!(
                ii.get(k).map(String::as_str) == Some(v),
                "{k}: {:?}",
                ii.get(k)
            );
        }
        let cd: serde_json::Value = serde_json::from_str(
            ii.get("configdrive")
                .ok_or_else(|| anyhow::anyhow!("configdrive dropped: {ii:?}"))?,
        )?;
        anyhow::ensure!(cd == configdrive, "configdrive changed: {cd}");

        // A wrong value is refused on update too, naming the field.
        let o = vmedia(
            &addr.to_string(),
            &["node", "set", good_uuid, "--instance-info", "root_gb=0"],
        )
        .await?;
        let text = String::from_utf8_lossy(&o.stderr).to_string();
        anyhow::ensure!(
            !o.status.success() && text.contains("instance_info.root_gb: missing"),
            "root_gb=0 accepted: {text}"
        );
        // Without an image chosen the node may lack root_gb; validate says what a deploy
        // would still need.
        let o = vmedia(
            &addr.to_string(),
            &[
                "node",
                "set",
                good_uuid,
                "--unset-instance-info",
                "image_source",
                "--unset-instance-info",
                "root_gb",
            ],
        )
        .await?;
        anyhow::ensure!(
            o.status.success(),
            "unset refused: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = vmedia(&addr.to_string(), &["node", "validate", good_uuid]).await?;
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        eprintln!("{text}");
        anyhow::ensure!(
            text.contains("instance_info.root_gb: missing: a partition image"),
            "validate does not name root_gb: {text}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    coord.stop(Duration::from_secs(3)).await;
    result
}
