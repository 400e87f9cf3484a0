//! Unit tests of validation.

use uuid::Uuid;

use super::*;

fn good() -> NodeSpec {
    let mut s = NodeSpec::new(Uuid::from_u128(1));
    s.name = Some("node-1".into());
    for (k, v) in [
        ("irmc_address", "10.0.0.5"),
        ("irmc_username", "admin"),
        ("irmc_password", "pw"),
        ("deploy_iso", "images/deploy.iso"),
    ] {
        s.driver_info.insert(k.into(), v.into());
    }
    s.instance_info
        .insert("image_source".into(), "https://img.example/u.qcow2".into());
    s.instance_info
        .insert("image_checksum".into(), "a".repeat(64));
    s.macs.push("52:54:00:AA:bb:01".into());
    s
}

fn msg(spec: &NodeSpec) -> String {
    validate_create(spec).unwrap_err().to_string()
}

#[test]
fn good_spec_passes_everything() {
    let s = good();
    validate_create(&s).unwrap();
    let node = Node {
        status: crate::NodeStatus::new(0),
        spec: s,
        version: 1,
    };
    for c in validate(&node) {
        assert!(c.result, "{c:?}");
    }
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            "driver_info",
            "irmc_port",
            "8443",
            "driver_info.irmc_port: must be 443 or 80, got \"8443\"",
        ),
        (
            "driver_info",
            "irmc_auth_method",
            "ntlm",
            "driver_info.irmc_auth_method: must be basic or digest, got \"ntlm\"",
        ),
        (
            "driver_info",
            "irmc_transport",
            "snmp",
            "driver_info.irmc_transport: must be redfish, ipmi or auto",
        ),
        (
            "driver_info",
            "irmc_client_timeout",
            "0",
            "driver_info.irmc_client_timeout: must be a positive integer",
        ),
        (
            "driver_info",
            "irmc_client_timeout",
            "x",
            "driver_info.irmc_client_timeout:",
        ),
        (
            "driver_info",
            "irmc_verify_ca",
            "maybe",
            "driver_info.irmc_verify_ca:",
        ),
        (
            "driver_info",
            "irmc_address",
            "bad host!",
            "driver_info.irmc_address: not an IP",
        ),
        (
            "driver_info",
            "deploy_iso",
            "../etc/passwd",
            "driver_info.deploy_iso: must not contain \"..\"",
        ),
        (
            "driver_info",
            "deploy_iso",
            "/abs.iso",
            "driver_info.deploy_iso: must be relative",
        ),
        (
            "driver_info",
            "deploy_iso",
            "ftp://x/y.iso",
            "driver_info.deploy_iso: unsupported scheme",
        ),
        (
            "driver_info",
            "irmc_deploy_iso",
            "other.iso",
            "driver_info.deploy_iso: conflicts with its alias",
        ),
        (
            "instance_info",
            "image_checksum",
            "abc",
            "instance_info.image_checksum: must be an md5",
        ),
        (
            "instance_info",
            "os_hash_algo",
            "sha1",
            "instance_info.os_hash_value: required with os_hash_algo",
        ),
        (
            "instance_info",
            "image_disk_format",
            "floppy",
            "instance_info.image_disk_format: unknown disk format",
        ),
        (
            "instance_info",
            "boot_iso",
            "a/../../b",
            "instance_info.boot_iso: must not contain",
        ),
    ];
    for (section, k, v, want) in cases {
        let mut s = good();
        let map = if section == "driver_info" {
            &mut s.driver_info
        } else {
            &mut s.instance_info
        };
        map.insert(k.into(), v.into());
        let got = msg(&s);
        assert!(
            got.starts_with(want),
            "{k}={v}: got {got:?}, want prefix {want:?}"
        );
    }
}

#[test]
fn required_bmc_fields() {
    for k in ["irmc_address", "irmc_username", "irmc_password"] {
        let mut s = good();
        s.driver_info.remove(k);
        assert_eq!(msg(&s), format!("driver_info.{k}: required"));
    }
}

#[test]
fn accepted_values() {
    let mut s = good();
    for (k, v) in [
        ("irmc_port", "80"),
        ("irmc_auth_method", "digest"),
        ("irmc_verify_ca", "/etc/ssl/ca.pem"),
        ("irmc_client_timeout", "30"),
        ("irmc_deploy_iso", "images/deploy.iso"),
    ] {
        s.driver_info.insert(k.into(), v.into());
    }
    for v in ["False", "true"] {
        s.driver_info.insert("irmc_verify_ca".into(), v.into());
        validate_create(&s).unwrap();
    }
    for src in [
        "glance://0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
        "0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
        "images/ubuntu.img",
        "http://10.0.0.1:8080/u.img",
    ] {
        s.instance_info.insert("image_source".into(), src.into());
        validate_create(&s).unwrap();
    }
    for c in [
        "d41d8cd98f00b204e9800998ecf8427e",
        &"f".repeat(128),
        "https://x/SHA256SUMS",
    ] {
        s.instance_info
            .insert("image_checksum".into(), c.to_string());
        validate_create(&s).unwrap();
    }
    s.instance_info.remove("image_checksum");
    s.instance_info
        .insert("os_hash_algo".into(), "sha512".into());
    s.instance_info
        .insert("os_hash_value".into(), "0".repeat(128));
    validate_create(&s).unwrap();
}

#[test]
fn macs_and_names() {
    let mut s = good();
    s.macs.push("52:54:00:aa:bb".into());
    assert_eq!(
        msg(&s),
        "macs[1]: invalid MAC address \"52:54:00:aa:bb\"; expected 6 octets like 52:54:00:12:34:56"
    );
    for bad in [
        "52:54:00:aa:bb:cc:dd",
        "zz:54:00:aa:bb:cc",
        "5254.00aa.bbcc",
        "",
    ] {
        assert!(parse_mac(bad).is_none(), "{bad}");
    }
    let mut s = good();
    s.macs = vec!["52-54-00-AA-BB-CC".into()];
    normalize_spec(&mut s);
    assert_eq!(s.macs, vec!["52:54:00:aa:bb:cc"]);

    for bad in [
        "has space",
        "sl/ash",
        "0b8d4c8e-d1b3-4b52-8b4a-1f8f7d2e9c11",
    ] {
        let mut s = good();
        s.name = Some(bad.into());
        assert!(msg(&s).starts_with("name: "), "{bad}");
    }
    let mut s = good();
    s.name = Some("rack1.node-07_a~b".into());
    validate_create(&s).unwrap();
    s.driver = "ipmi".into();
    assert_eq!(
        msg(&s),
        "driver: unsupported driver \"ipmi\"; expected \"irmc\""
    );
}

#[test]
fn deploy_needs_image_and_checksum() {
    let mut s = good();
    s.instance_info.clear();
    validate_create(&s).unwrap();
    let node = Node {
        status: crate::NodeStatus::new(0),
        spec: s.clone(),
        version: 1,
    };
    let deploy = validate(&node)
        .into_iter()
        .find(|c| c.interface == "deploy")
        .unwrap();
    assert!(!deploy.result);
    assert_eq!(
        deploy.reason,
        "instance_info.image_source: required to deploy"
    );

    s.instance_info
        .insert("image_source".into(), "http://x/img".into());
    let node = Node {
        status: crate::NodeStatus::new(0),
        spec: s.clone(),
        version: 1,
    };
    let deploy = validate(&node)
        .into_iter()
        .find(|c| c.interface == "deploy")
        .unwrap();
    assert!(
        deploy
            .reason
            .starts_with("instance_info.image_checksum: required")
    );

    s.driver_info.remove("deploy_iso");
    s.driver_info.remove("irmc_password");
    let node = Node {
        status: crate::NodeStatus::new(0),
        spec: s,
        version: 1,
    };
    let checks = validate(&node);
    assert_eq!(checks[0].reason, "driver_info.irmc_password: required");
    assert!(
        checks[2]
            .reason
            .contains("driver_info.deploy_iso: required")
    );
}

#[test]
fn secrets_are_masked() {
    for k in [
        "irmc_password",
        "ipmi_password",
        "x_secret",
        "agent_token",
        "irmc_snmp_community",
        "IRMC_Password",
        "token",
        "clé_TOKEN",
    ] {
        assert!(is_secret_key(k), "{k}");
    }
    for k in [
        "irmc_username",
        "irmc_address",
        "password_hint_len",
        "",
        "ken",
        "é",
    ] {
        assert!(!is_secret_key(k), "{k}");
    }
    let s = good();
    let m = mask(&s.driver_info);
    assert_eq!(m["irmc_password"], MASK);
    assert_eq!(m["irmc_username"], "admin");
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("\"pw\""), "{dbg}");
    assert!(dbg.contains(MASK));
}

#[test]
fn boot_mode_sources() {
    let mut s = good();
    assert_eq!(boot_mode(&s), "uefi");
    s.properties
        .insert("capabilities".into(), "foo:bar, boot_mode:bios".into());
    assert_eq!(boot_mode(&s), "bios");
    s.instance_info
        .insert("deploy_boot_mode".into(), "uefi".into());
    assert_eq!(boot_mode(&s), "uefi");
    s.properties
        .insert("capabilities".into(), "boot_mode:legacy".into());
    assert!(msg(&s).starts_with("properties.capabilities: boot_mode"));
}

/// A change that breaks one limit.
type Change = Box<dyn Fn(&mut NodeSpec)>;

#[test]
fn limits_and_sealed_look_alikes_are_refused_with_the_field() {
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "too many driver_info keys",
            Box::new(|s| {
                for i in 0..MAX_KEYS {
                    s.driver_info.insert(format!("extra_{i}"), "x".into());
                }
            }),
            "driver_info: 260 keys; at most 256",
        ),
        (
            "a key too long",
            Box::new(|s| {
                s.properties
                    .insert("k".repeat(MAX_KEY_BYTES + 1), "x".into());
            }),
            "properties: a key of 256 bytes; at most 255",
        ),
        (
            "a value too long",
            Box::new(|s| {
                s.properties
                    .insert("cpus".into(), "9".repeat(MAX_VALUE_BYTES + 1));
            }),
            "properties.cpus: 65537 bytes; at most 65536",
        ),
        (
            "too many MACs",
            Box::new(|s| {
                s.macs = (0..=MAX_MACS)
                    .map(|i| format!("52:54:00:00:00:{:02x}", i % 256))
                    .collect();
            }),
            "macs: 65 MAC addresses; at most 64",
        ),
        (
            "a sealed look-alike in a non-secret field",
            Box::new(|s| {
                s.instance_info
                    .insert("image_source".into(), "enc:v1:k1:AAAA".into());
            }),
            "instance_info.image_source: must not start with \"enc:v1:\"",
        ),
        (
            "a sealed look-alike as the name",
            Box::new(|s| s.name = Some("enc:v1:x".into())),
            "name: must not start with \"enc:v1:\"",
        ),
    ];
    for (why, change, want) in cases {
        let mut s = good();
        change(&mut s);
        let got = msg(&s);
        assert!(got.contains(want), "{why}: got {got:?}, want {want:?}");
    }
    // At the limits, and a config drive larger than other values, are fine.
    let mut s = good();
    s.properties
        .insert("k".repeat(MAX_KEY_BYTES), "9".repeat(MAX_VALUE_BYTES));
    s.instance_info
        .insert("configdrive".into(), "H4sI".repeat(MAX_VALUE_BYTES));
    s.driver_info
        .insert("irmc_password".into(), "enc:v1:typed-by-hand".into());
    validate_create(&s).unwrap();
}

fn partition(extra: &[(&str, &str)]) -> NodeSpec {
    let mut s = good();
    for (k, v) in [
        ("kernel", "https://img.example/vmlinuz"),
        ("ramdisk", "https://img.example/initrd"),
    ]
    .iter()
    .chain(extra)
    {
        s.instance_info.insert((*k).into(), (*v).into());
    }
    s
}

#[test]
fn partition_images_follow_ironic() {
    // A kernel/ramdisk pair makes a partition image, which needs root_gb.
    let s = partition(&[]);
    assert_eq!(image_type(&s), "partition");
    assert!(
        msg(&s).starts_with("instance_info.root_gb: missing: a partition image"),
        "{}",
        msg(&s)
    );
    let s = partition(&[("root_gb", "10"), ("swap_mb", "512"), ("ephemeral_gb", "2")]);
    validate_create(&s).unwrap();
    let l = partition_layout(&s, true).unwrap().unwrap();
    assert_eq!(
        (l.root_gb, l.swap_mb, l.ephemeral_gb),
        (10, 512, 2),
        "{l:?}"
    );
    // Ironic's [pxe]default_ephemeral_format fills in for an ephemeral partition; UEFI
    // (the default boot mode) means a GPT partition table.
    assert_eq!(l.ephemeral_format, "ext4");
    assert_eq!(l.disk_label, "gpt");
    assert_eq!(l.boot_option, "local");
    assert!(!l.preserve_ephemeral);

    let mut bios = partition(&[("root_gb", "1")]);
    bios.properties
        .insert("capabilities".into(), "boot_mode:bios".into());
    let l = partition_layout(&bios, true).unwrap().unwrap();
    assert_eq!(
        (l.disk_label.as_str(), l.ephemeral_format.as_str()),
        ("", "")
    );

    // Explicit image_type wins over kernel/ramdisk.
    let s = partition(&[("image_type", "whole-disk")]);
    assert_eq!(image_type(&s), "whole-disk");
    assert_eq!(partition_layout(&s, true).unwrap(), None);
}

#[test]
fn partition_errors_say_what_is_wrong() {
    let cases = [
        (
            vec![("root_gb", "ten")],
            "instance_info.root_gb: \"ten\" is not a non-negative integer",
        ),
        (
            vec![("root_gb", "0")],
            "instance_info.root_gb: missing: a partition image",
        ),
        (
            vec![("root_gb", "1"), ("swap_mb", "-1")],
            "instance_info.swap_mb: \"-1\" is not a non-negative integer",
        ),
        (
            vec![("root_gb", "1"), ("preserve_ephemeral", "maybe")],
            "instance_info.preserve_ephemeral: \"maybe\" is not a boolean",
        ),
        (
            vec![("root_gb", "1"), ("image_type", "lvm")],
            "instance_info.image_type: invalid image_type \"lvm\"; valid are partition, whole-disk",
        ),
        (
            vec![
                ("root_gb", "1"),
                ("capabilities", r#"{"disk_label": "bsd"}"#),
            ],
            "instance_info.capabilities: disk_label must be msdos or gpt, got \"bsd\"",
        ),
        (
            vec![
                ("root_gb", "1"),
                ("capabilities", r#"{"disk_label": "msdos"}"#),
            ],
            "instance_info.capabilities: disk_label msdos cannot boot in UEFI mode",
        ),
        (
            vec![("root_gb", "1"), ("capabilities", "{not json")],
            "instance_info.capabilities: not a flat JSON object",
        ),
        (
            vec![("root_gb", "1"), ("image_disk_format", "vmdk")],
            "instance_info.image_disk_format: unknown disk format \"vmdk\"; the deploy ramdisk writes raw, qcow2, gpt",
        ),
        (
            vec![("root_gb", "1"), ("image_container_format", "tar")],
            "instance_info.image_container_format: unknown container format \"tar\"",
        ),
        (
            vec![("root_gb", "1"), ("image_os_hash_algo", "sha256")],
            "instance_info.image_os_hash_value: required with image_os_hash_algo",
        ),
    ];
    for (extra, want) in cases {
        let s = partition(&extra);
        let got = msg(&s);
        assert!(got.starts_with(want), "{extra:?}: {got}");
    }
}

#[test]
fn netboot_needs_kernel_and_ramdisk() {
    let mut s = good();
    for (k, v) in [
        ("image_type", "partition"),
        ("root_gb", "4"),
        ("capabilities", r#"{"boot_option": "netboot"}"#),
        ("kernel", "https://img.example/vmlinuz"),
    ] {
        s.instance_info.insert(k.into(), v.into());
    }
    assert!(
        msg(&s).starts_with("instance_info.ramdisk: missing: a netboot partition image"),
        "{}",
        msg(&s)
    );
    s.instance_info
        .insert("ramdisk".into(), "https://img.example/initrd".into());
    let l = partition_layout(&s, true).unwrap().unwrap();
    assert_eq!(l.boot_option, "netboot");
}

#[test]
fn deploy_validation_reports_layout_problems() {
    // Without image_source the node can be stored; the deploy check still names root_gb.
    let mut s = partition(&[]);
    s.instance_info.remove("image_source");
    validate_create(&s).unwrap();
    let node = Node {
        status: crate::NodeStatus::new(0),
        spec: s,
        version: 1,
    };
    let deploy = validate(&node)
        .into_iter()
        .find(|c| c.interface == "deploy")
        .unwrap();
    assert!(!deploy.result);
    assert!(
        deploy.reason.contains("instance_info.root_gb: missing"),
        "{deploy:?}"
    );
}

#[test]
fn ironic_hash_names_are_read() {
    let mut s = good();
    s.instance_info.remove("image_checksum");
    s.instance_info
        .insert("image_os_hash_algo".into(), "sha512".into());
    s.instance_info
        .insert("image_os_hash_value".into(), "b".repeat(128));
    validate_create(&s).unwrap();
    assert_eq!(
        os_hash(&s.instance_info),
        Some(("sha512", "b".repeat(128).as_str()))
    );
}
