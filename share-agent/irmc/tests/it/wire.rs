//! Golden tests for every document the wire module builds or parses.

use irmc::wire::{self, WireError};
use irmc::{
    BootMode, BootPersistence, BootTarget, MediaKind, MediaLocation, Opcode, PowerAction,
    PowerState, ResetType, ScciCommand, Secret, Settings, ShareType,
};

const REPORT_S4: &str = include_str!("../fixtures/report-s4-7.65F-rx300s8.xml");

#[test]
fn power_on_cmdseq_exact_bytes() {
    let doc = wire::build_cmdseq(&[ScciCommand::new(Opcode::PowerOnCabinet)]);
    assert_eq!(
        doc,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
<CMDSEQ>\n  <CMD Context=\"SCCI\" OC=\"PowerOnCabinet\" OE=\"0\" OI=\"0\" Type=\"SET\">\n  </CMD>\n</CMDSEQ>\n"
    );
}

#[test]
fn every_power_action_by_name() {
    let expect = [
        (PowerAction::On, "PowerOnCabinet"),
        (PowerAction::Off, "PowerOffCabinet"),
        (PowerAction::Cycle, "PowerOffOnCabinet"),
        (PowerAction::Reset, "ResetServer"),
        (PowerAction::SoftOff, "RequestShutdownAndOff"),
        (PowerAction::SoftReboot, "RequestShutdownAndReset"),
        (PowerAction::Nmi, "RaiseNMI"),
    ];
    for (action, name) in expect {
        let doc = wire::build_cmdseq(&[ScciCommand::new(action.opcode())]);
        assert!(doc.contains(&format!("OC=\"{name}\" OE=\"0\"")), "{doc}");
    }
}

#[test]
fn opcode_table_names_codes_and_parse() {
    let table: [(Opcode, &str, u16); 14] = [
        (Opcode::ConfigSpaceGet, "ConfigSpace", 0xE001),
        (Opcode::ConfigSpaceSet, "ConfigSpace", 0xE002),
        (Opcode::PowerOnCabinet, "PowerOnCabinet", 0x0111),
        (Opcode::PowerOffCabinet, "PowerOffCabinet", 0x0112),
        (Opcode::PowerOffOnCabinet, "PowerOffOnCabinet", 0x0113),
        (Opcode::ResetFirmware, "ResetFirmware", 0x0203),
        (Opcode::ResetServer, "ResetServer", 0x0204),
        (
            Opcode::RequestShutdownAndOff,
            "RequestShutdownAndOff",
            0x0205,
        ),
        (
            Opcode::RequestShutdownAndReset,
            "RequestShutdownAndReset",
            0x0206,
        ),
        (
            Opcode::ShutdownRequestCancelled,
            "ShutdownRequestCancelled",
            0x0209,
        ),
        (Opcode::RaiseNmi, "RaiseNMI", 0x020C),
        (Opcode::ConnectRemoteFdImage, "ConnectRemoteFdImage", 0x0251),
        (Opcode::ConnectRemoteCdImage, "ConnectRemoteCdImage", 0x0252),
        (Opcode::ConnectRemoteHdImage, "ConnectRemoteHdImage", 0x0253),
    ];
    for (op, name, code) in table {
        assert_eq!(op.name(), name);
        assert_eq!(op.code(), code);
        assert_eq!(Opcode::parse(name, op.cmd_type()), Some(op));
        assert_eq!(
            Opcode::parse(&format!("{code:04X}"), op.cmd_type()),
            Some(op)
        );
        // Every opcode can be sent.
        let doc = wire::build_cmdseq(&[ScciCommand {
            opcode: op,
            oe: 0x1A60,
            oi: 0,
            data: irmc::ScciData::None,
        }]);
        let parsed = wire::parse_cmdseq(&doc).unwrap();
        assert_eq!(parsed[0].opcode, Some(op));
    }
    assert_eq!(Opcode::parse("E001", "GET"), Some(Opcode::ConfigSpaceGet));
    assert_eq!(Opcode::parse("0x020c", "SET"), Some(Opcode::RaiseNmi));
    assert_eq!(Opcode::parse("NoSuchThing", "SET"), None);
    assert!(!Opcode::PowerOffOnCabinet.is_idempotent());
    assert!(!Opcode::RaiseNmi.is_idempotent());
    assert!(Opcode::ConfigSpaceSet.is_idempotent());
}

#[test]
fn cd_settings_exact_bytes_with_hostile_password() {
    let loc = MediaLocation {
        server: "192.168.0.10".into(),
        share_type: ShareType::Cifs,
        share_name: "share".into(),
        image_name: "deploy-n1.iso".into(),
        user_name: "admin".into(),
        password: Secret::new("p<&\"w'>"),
        domain: String::new(),
    };
    let doc = wire::build_cmdseq(&wire::media_settings_commands(MediaKind::Cd, &loc));
    let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>
<CMDSEQ>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A80\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::integer\">1</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A68\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::integer\">1</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A60\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\">192.168.0.10</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A63\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\"></DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A64\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::integer\">1</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A65\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\">share</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A66\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\">deploy-n1.iso</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A61\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\">admin</DATA>
  </CMD>
  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A62\" OI=\"0\" Type=\"SET\">
    <DATA Type=\"xsd::string\" Encrypted=\"0\">p&lt;&amp;&quot;w&apos;&gt;</DATA>
  </CMD>
</CMDSEQ>
";
    assert_eq!(doc, expected);
    // And the password survives a parse round trip.
    let parsed = wire::parse_cmdseq(&doc).unwrap();
    assert_eq!(parsed.len(), 9);
    assert_eq!(parsed[8].oe, 0x1A62);
    assert_eq!(parsed[8].data.as_deref(), Some("p<&\"w'>"));
}

#[test]
fn fd_and_hd_settings_use_their_oe_ranges() {
    let loc = MediaLocation {
        server: "s".into(),
        share_type: ShareType::Nfs,
        share_name: "/export".into(),
        image_name: "image-n1.img".into(),
        ..Default::default()
    };
    let fd: Vec<u16> = wire::media_settings_commands(MediaKind::Fd, &loc)
        .iter()
        .map(|c| c.oe)
        .collect();
    assert_eq!(
        fd,
        [
            0x1A80, 0x1A58, 0x1A50, 0x1A53, 0x1A54, 0x1A55, 0x1A56, 0x1A51, 0x1A52
        ]
    );
    let hd: Vec<u16> = wire::media_settings_commands(MediaKind::Hd, &loc)
        .iter()
        .map(|c| c.oe)
        .collect();
    assert_eq!(
        hd,
        [
            0x1A80, 0x1A48, 0x1A40, 0x1A43, 0x1A44, 0x1A45, 0x1A46, 0x1A41, 0x1A42
        ]
    );
    let doc = wire::build_cmdseq(&wire::media_settings_commands(MediaKind::Hd, &loc));
    assert!(
        doc.contains(
            "OE=\"1A44\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">0</DATA>"
        )
    );
}

#[test]
fn connect_and_disconnect_exact_bytes() {
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<CMDSEQ>\n";
    for (kind, oc) in [
        (MediaKind::Cd, "ConnectRemoteCdImage"),
        (MediaKind::Fd, "ConnectRemoteFdImage"),
        (MediaKind::Hd, "ConnectRemoteHdImage"),
    ] {
        for (on, v) in [(true, 1), (false, 0)] {
            let doc = wire::build_cmdseq(&[ScciCommand::connect(kind, on)]);
            assert_eq!(
                doc,
                format!(
                    "{head}  <CMD Context=\"SCCI\" OC=\"{oc}\" OE=\"0\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">{v}</DATA>\n  </CMD>\n</CMDSEQ>\n"
                )
            );
        }
    }
}

#[test]
fn config_space_get_exact_bytes() {
    let doc = wire::build_cmdseq(&[ScciCommand::get(0x1A60)]);
    assert_eq!(
        doc,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<CMDSEQ>\n  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A60\" OI=\"0\" Type=\"GET\">\n  </CMD>\n</CMDSEQ>\n"
    );
}

#[test]
fn parse_cmdseq_tolerates_whitespace_comments_and_hex_opcodes() {
    let doc = "  \n<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n<CMDSEQ>\n  <!-- power -->\n  <CMD Context=\"SCCI\" OC=\"0111\" OE=\"0\" OI=\"0\" Type=\"SET\"/>\n  <CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A65\" OI=\"0\" Type=\"SET\" CA=\"-1\"><DATA Type=\"xsd::string\"><![CDATA[a<b]]></DATA></CMD>\n</CMDSEQ>";
    let cmds = wire::parse_cmdseq(doc).unwrap();
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0].opcode, Some(Opcode::PowerOnCabinet));
    assert_eq!(cmds[0].data, None);
    assert_eq!(cmds[1].opcode, Some(Opcode::ConfigSpaceSet));
    assert_eq!(cmds[1].oe, 0x1A65);
    assert_eq!(cmds[1].data.as_deref(), Some("a<b"));
    assert_eq!(cmds[1].data_type.as_deref(), Some("xsd::string"));
}

#[test]
fn status_success_and_error() {
    let ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>";
    let s = wire::parse_status(ok).unwrap();
    assert_eq!(s.value, 0);
    assert_eq!(s.severity, "Information");
    assert_eq!(s.message, "No Error");
    assert_eq!(s.error, "");

    let err = "<Status><Value>31</Value><Severity>Error</Severity>\n<Message>Error 31 (Import of settings in WinSCU XML format failed) occurred</Message>\n<Error Context=\"SCCI\" OC=\"ShutdownRequestCancelled\" OE=\"0\" OI=\"0\">ServerView Agent not connected</Error></Status>";
    let s = wire::parse_status(err).unwrap();
    assert_eq!(s.value, 31);
    assert_eq!(s.error, "ServerView Agent not connected");
    assert_eq!(
        s.message,
        "Error 31 (Import of settings in WinSCU XML format failed) occurred"
    );
}

#[test]
fn status_build_round_trip_exact() {
    let st = wire::ScciStatus {
        value: 0,
        severity: "Information".into(),
        message: "No Error".into(),
        error: String::new(),
    };
    let doc = wire::build_status(&st);
    assert_eq!(
        doc,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>\n"
    );
    assert_eq!(wire::parse_status(&doc).unwrap(), st);
}

#[test]
fn malformed_status_replies_are_errors_not_panics() {
    let cases = [
        "",
        "   ",
        "not xml at all",
        "<Status><Value>0</Value>", // truncated
        "<Status><Value>0</Value><Message>a & b</Message></Status>", // unescaped echo
        "<Status><Value>0</Value><Message>x <y</Message></Status>", // unescaped echo
        "<Status><Severity>Error</Severity></Status>", // no Value
        "<Status><Value>zero</Value></Status>", // bad Value
        "<Other><Value>0</Value></Other>", // wrong root
        "<Status><Value>0</Value></Status><Status/>", // two roots
        "<Status><Value>0</Value></Wrong>", // mismatched
        "<Status><Value>&bogus;</Value></Status>", // unknown entity
        "{\"Value\": 0}",
    ];
    for case in cases {
        match wire::parse_status(case) {
            Err(WireError::Malformed(reason)) => assert!(!reason.is_empty()),
            other => panic!("{case:?} -> {other:?}"),
        }
    }
}

#[test]
fn real_report_s4() {
    let r = wire::parse_report(REPORT_S4).unwrap();
    assert_eq!(r.model, "iRMC S4");
    assert_eq!(r.firmware, "7.65F");
    assert_eq!(r.memory_mb, 8192);
    assert_eq!(r.cpu_cores, 16);
    assert!(r.has_virtual_fd);
}

#[test]
fn report_without_management_controllers_falls_back_to_root_then_summary() {
    let start = REPORT_S4.find("<ManagementControllers").unwrap();
    let end =
        REPORT_S4.find("</ManagementControllers>").unwrap() + "</ManagementControllers>".len();
    let doc = format!("{}{}", &REPORT_S4[..start], &REPORT_S4[end..]);
    // Root@OS="iRMC S4" Version="7.65F".
    let r = wire::parse_report(&doc).unwrap();
    assert_eq!(
        (r.model.as_str(), r.firmware.as_str()),
        ("iRMC S4", "7.65F")
    );
    assert!(r.has_virtual_fd);
    let root = wire::parse_document(&doc).unwrap();
    assert_eq!(
        irmc::capability::identify(&root).unwrap().2,
        irmc::capability::IdentifiedBy::RootAttributes
    );
    // Without the Root attributes: Summary/Created/OS "iRMC S4 7.65F SDR: 3.71 ...".
    let bare = doc.replacen(" Version=\"7.65F\" OS=\"iRMC S4\"", "", 1);
    assert_ne!(bare, doc);
    let r = wire::parse_report(&bare).unwrap();
    assert_eq!(
        (r.model.as_str(), r.firmware.as_str()),
        ("iRMC S4", "7.65F")
    );
    let root = wire::parse_document(&bare).unwrap();
    assert_eq!(
        irmc::capability::identify(&root).unwrap().2,
        irmc::capability::IdentifiedBy::SummaryOs
    );
    // Nothing names the iRMC: a clear error.
    let s = bare.find("<Summary>").unwrap();
    let e = bare.find("</Summary>").unwrap() + "</Summary>".len();
    let none = format!("{}{}", &bare[..s], &bare[e..]);
    assert_eq!(
        wire::parse_report(&none),
        Err(WireError::NoManagementController)
    );
    let text = WireError::NoManagementController.to_string();
    assert!(text.contains("ManagementControllers"), "{text}");
    assert!(text.contains("Root@OS"), "{text}");
}

#[test]
fn config_value_from_cmd_child_or_status() {
    let doc = "<?xml version=\"1.0\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message><CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1980\" OI=\"0\" Type=\"GET\"><DATA Type=\"xsd::string\">AAAA-BBBB</DATA><STATUS>0</STATUS></CMD></Status>";
    assert_eq!(
        wire::parse_config_value(doc, 0x1980).unwrap().as_deref(),
        Some("AAAA-BBBB")
    );
    let flat = "<Status><Value>0</Value><DATA Type=\"xsd::string\"></DATA></Status>";
    assert_eq!(
        wire::parse_config_value(flat, 0x1980).unwrap().as_deref(),
        Some("")
    );
    assert_eq!(
        wire::parse_config_value("<Status><Value>0</Value></Status>", 0x1980).unwrap(),
        None
    );
    assert!(wire::parse_config_value("<Status><Value>0", 0x1980).is_err());
}

#[test]
fn truncated_report_is_malformed() {
    let doc = &REPORT_S4[..REPORT_S4.len() / 2];
    assert!(matches!(
        wire::parse_report(doc),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn report_build_round_trip_and_fd_rules() {
    for (model, fw, fd) in [
        ("iRMC S4", "7.65F", true),
        ("iRMC S4", "9.21F", true),
        ("iRMC S4", "9.62F", false),
        ("iRMC S5", "1.25P", true),
        ("iRMC S5", "1.60P", false),
        ("iRMC S6", "1.00P", false),
        ("iRMC S6", "2.10P", false),
        ("iRMCS4", "8.00", true),
        ("iRMC S4", "garbage", false),
    ] {
        let rep = wire::Report {
            model: model.into(),
            firmware: fw.into(),
            memory_mb: 4096,
            cpu_cores: 4,
            has_virtual_fd: fd,
        };
        let doc = wire::build_report(&rep);
        assert_eq!(wire::parse_report(&doc).unwrap(), rep, "{model} {fw}");
    }
    assert!(wire::build_report(&wire::Report {
        model: "iRMC S6".into(),
        firmware: "2.10P".into(),
        memory_mb: 1,
        cpu_cores: 1,
        has_virtual_fd: false,
    })
    .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Root Schema=\"2\" Version=\"2.10P\" OS=\"iRMC S6\">\n <System>\n"));
}

#[test]
fn settings_dump_views_and_precheck() {
    let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<CMDSEQ>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A60" OI="0" Type="SET"><DATA Type="xsd::string">10.0.0.1</DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A61" OI="0" Type="SET"><DATA Type="xsd::string">user</DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A64" OI="0" Type="SET"><DATA Type="xsd::integer">0</DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A65" OI="0" Type="SET"><DATA Type="xsd::string">/export/a&amp;b</DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A66" OI="0" Type="SET"><DATA Type="xsd::string">deploy.iso</DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A50" OI="0" Type="SET"><DATA Type="xsd::string"></DATA><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A55" OI="0" Type="SET"><DATA Type="xsd::string"/><STATUS>0</STATUS></CMD>
<CMD Context="SCCI" OC="ConfigSpace" OE="1A56" OI="0" Type="SET"><STATUS>0</STATUS></CMD>
</CMDSEQ>"#;
    let s = Settings::parse(doc).unwrap();
    assert_eq!(s.len(), 8);
    assert_eq!(s.get(0x1A60), Some("10.0.0.1"));
    let cd = s.cd();
    assert_eq!(cd.server, "10.0.0.1");
    assert_eq!(cd.user_name, "user");
    assert_eq!(cd.share_type, Some(ShareType::Nfs));
    assert_eq!(cd.share_name, "/export/a&b");
    assert_eq!(cd.image_name, "deploy.iso");
    assert!(cd.is_configured());
    assert!(!s.fd().is_configured());
    assert!(!s.hd().is_configured());
    // Debug never shows values (the dump may hold passwords).
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("10.0.0.1"), "{dbg}");
    assert!(Settings::parse("<CMDSEQ><CMD").is_err());
    assert!(Settings::parse("<Status><Value>5</Value></Status>").is_err());
}

#[test]
fn redfish_bodies_exact() {
    assert_eq!(
        wire::boot_override_body(BootTarget::Cd, BootPersistence::Once, BootMode::Uefi),
        r#"{"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Cd"}}"#
    );
    assert_eq!(
        wire::boot_override_body(
            BootTarget::Hdd,
            BootPersistence::Continuous,
            BootMode::Legacy
        ),
        r#"{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Hdd"}}"#
    );
    assert_eq!(
        wire::boot_override_body(BootTarget::None, BootPersistence::Once, BootMode::Uefi),
        r#"{"Boot":{"BootSourceOverrideEnabled":"Disabled","BootSourceOverrideTarget":"None"}}"#
    );
    assert_eq!(
        wire::reset_body(ResetType::ForceRestart),
        r#"{"ResetType":"ForceRestart"}"#
    );
    for (t, s) in [
        (ResetType::On, "On"),
        (ResetType::ForceOff, "ForceOff"),
        (ResetType::GracefulShutdown, "GracefulShutdown"),
        (ResetType::GracefulRestart, "GracefulRestart"),
        (ResetType::Nmi, "Nmi"),
        (ResetType::PowerCycle, "PowerCycle"),
    ] {
        assert_eq!(t.as_str(), s);
    }
}

#[test]
fn redfish_system_parse() {
    let body = r#"{"@odata.id":"/redfish/v1/Systems/0","PowerState":"Off","Manufacturer":"FUJITSU","Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget@Redfish.AllowableValues":["None","Pxe","Cd","Hdd"]}}"#;
    let s = wire::parse_system(body).unwrap();
    assert_eq!(s.power_state, PowerState::Off);
    assert_eq!(s.manufacturer.as_deref(), Some("FUJITSU"));
    assert_eq!(s.boot_target.as_deref(), Some("Cd"));
    assert_eq!(s.boot_enabled.as_deref(), Some("Once"));
    assert_eq!(s.boot_mode.as_deref(), Some("UEFI"));
    for bad in [
        "",
        "{",
        "[]",
        r#"{"PowerState":"Sideways"}"#,
        r#"{"PowerState":1}"#,
        "<xml/>",
    ] {
        assert!(
            matches!(wire::parse_system(bad), Err(WireError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn escape_covers_all_specials() {
    assert_eq!(
        wire::escape(r#"<a href="x">&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
    );
    assert_eq!(wire::escape("plain"), "plain");
}

#[test]
fn deep_nesting_and_bom() {
    let deep = format!("<Status>{}<Value>0</Value></Status>", "<a>".repeat(100_000));
    assert!(matches!(
        wire::parse_status(&deep),
        Err(WireError::Malformed(_))
    ));
    let ok = format!(
        "<Status>{}{}<Value>0</Value></Status>",
        "<a>".repeat(20),
        "</a>".repeat(20)
    );
    assert_eq!(wire::parse_status(&ok).unwrap().value, 0);
    let bom = "\u{feff}<?xml version=\"1.0\"?><Status><Value>0</Value></Status>";
    assert_eq!(wire::parse_status(bom).unwrap().value, 0);
}

#[test]
fn element_and_attribute_bombs_are_refused_and_real_reports_pass() {
    // 8 MiB of empty elements (the hostile reply that once grew a parse to ~280 MB).
    let bomb = format!(
        "<Status>{}<Value>0</Value></Status>",
        "<a/>".repeat(2 << 20)
    );
    let err = wire::parse_status(&bomb).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    // Under the size cap but over the node budget.
    let many = format!(
        "<Status>{}<Value>0</Value></Status>",
        "<a/>".repeat(wire::MAX_NODES + 1)
    );
    let err = wire::parse_status(&many).unwrap_err().to_string();
    assert!(err.contains("elements and attributes"), "{err}");
    // One element carrying endless attributes.
    let attrs: String = (0..1000).map(|i| format!(" a{i}=\"\"")).collect();
    let err = wire::parse_status(&format!("<Status{attrs}><Value>0</Value></Status>"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("attributes in <Status>"), "{err}");
    // Just inside the budget still parses.
    let fits = format!(
        "<Status>{}<Value>0</Value></Status>",
        "<a/>".repeat(wire::MAX_NODES - 10)
    );
    assert_eq!(wire::parse_status(&fits).unwrap().value, 0);
    // The real S4 report is far inside every cap.
    assert!(wire::parse_report(REPORT_S4).is_ok());
}

proptest::proptest! {
    /// Any printable value (ASCII or not, markup characters included) placed
    /// in a command comes back unchanged from the parser.
    #[test]
    fn values_round_trip_through_xml(value in "[ -~\u{a0}-\u{2ff}\u{4e00}-\u{4e20}]{0,48}", oe in 0x1A40u16..0x1A90) {
        let cmds = [
            ScciCommand::set_str(oe, value.clone()),
            ScciCommand::set_secret(oe, Secret::new(value.clone())),
        ];
        let doc = wire::build_cmdseq(&cmds);
        let parsed = wire::parse_cmdseq(&doc).unwrap();
        proptest::prop_assert_eq!(parsed.len(), 2);
        for p in parsed {
            proptest::prop_assert_eq!(p.oe, oe);
            proptest::prop_assert_eq!(p.data.as_deref(), Some(value.as_str()));
        }
    }

    /// The parsers never panic, whatever the bytes.
    #[test]
    fn parsers_never_panic(doc in "(<|>|/|=|\"|&|;|[a-zA-Z]|[0-9]| |\n|Status|Value|CMDSEQ|CMD|DATA|Root|System|iRMC|&amp;|<!--|-->|<!\\[CDATA\\[|\\]\\]>){0,64}") {
        let _ = wire::parse_status(&doc);
        let _ = wire::parse_cmdseq(&doc);
        let _ = wire::parse_report(&doc);
        let _ = Settings::parse(&doc);
        let _ = wire::parse_system(&doc);
    }
}
