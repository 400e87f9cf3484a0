//! Client behaviour against an in-test HTTP(S) server on 127.0.0.1:0:
//! auth (Basic, Digest with nonce caching and stale nonces), retries,
//! timeouts, redirects, malformed replies, TLS verification, and the exact
//! request sequences of attach/detach/power/Redfish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Reply, SCCI_OK, Seen, TestBmc, closed_port, start, start_tls};
use irmc::{
    AuthMethod, BmcConfig, BootMode, BootPersistence, BootTarget, IrmcClient, IrmcError, MediaKind,
    MediaLocation, PowerAction, PowerState, ResetType, RetryPolicy, Scheme, Secret, ShareType,
    TlsVerify,
};
use md5::{Digest as _, Md5};

const REPORT_S4: &str = include_str!("../../fixtures/report-s4-7.65F-rx300s8.xml");
const PASSWORD: &str = "s3cr&t<pw";

fn client(bmc: &TestBmc) -> IrmcClient {
    IrmcClient::new(bmc.config()).unwrap()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    assert!(!text.contains("share-pw"), "share password leaked: {text}");
}

// ---------------------------------------------------------------------------
// Basic auth and SCCI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn power_on_basic_auth_exact_request() {
    let bmc = start(|_, _| Reply::ok(SCCI_OK)).await;
    let c = client(&bmc);
    c.power(PowerAction::On).await.unwrap();
    let seen = bmc.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/config");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // admin:s3cr&t<pw
    assert_eq!(
        r.header("authorization").as_deref(),
        Some("Basic YWRtaW46czNjciZ0PHB3")
    );
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<CMDSEQ>\n  <CMD Context=\"SCCI\" OC=\"PowerOnCabinet\" OE=\"0\" OI=\"0\" Type=\"SET\">\n  </CMD>\n</CMDSEQ>\n"
    );
    assert_eq!(c.requests_sent(), 1);
    // Non-default port appears in the URL (the request reached us at all).
    assert!(
        c.config()
            .base_url()
            .ends_with(&format!(":{}", bmc.addr.port()))
    );
}

#[tokio::test]
async fn every_power_action_sends_its_opcode() {
    let bmc = start(|_, _| Reply::ok(SCCI_OK)).await;
    let c = client(&bmc);
    let actions = [
        (PowerAction::On, "PowerOnCabinet"),
        (PowerAction::Off, "PowerOffCabinet"),
        (PowerAction::Cycle, "PowerOffOnCabinet"),
        (PowerAction::Reset, "ResetServer"),
        (PowerAction::SoftOff, "RequestShutdownAndOff"),
        (PowerAction::SoftReboot, "RequestShutdownAndReset"),
        (PowerAction::Nmi, "RaiseNMI"),
    ];
    for (a, _) in actions {
        c.power(a).await.unwrap();
    }
    let seen = bmc.seen();
    for (i, (_, oc)) in actions.iter().enumerate() {
        assert!(
            seen[i].body.contains(&format!("OC=\"{oc}\"")),
            "{}",
            seen[i].body
        );
    }
    assert_eq!(c.requests_sent(), 7);
}

#[tokio::test]
async fn scci_error_value_is_typed_and_not_retried() {
    let bmc = start(|_, _| {
        Reply::ok("<Status><Value>31</Value><Severity>Error</Severity>\n<Message>Error 31 (Import of settings in WinSCU XML format failed) occurred</Message>\n<Error Context=\"SCCI\" OC=\"RequestShutdownAndOff\" OE=\"0\" OI=\"0\">ServerView Agent not connected</Error></Status>")
    })
    .await;
    let c = client(&bmc);
    let err = c.power(PowerAction::SoftOff).await.unwrap_err();
    match &err {
        IrmcError::Scci {
            value,
            error,
            message,
            ctx,
            ..
        } => {
            assert_eq!(*value, 31);
            assert_eq!(error, "ServerView Agent not connected");
            assert!(message.contains("Error 31"));
            assert_eq!(ctx.operation, "set_power_state");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(err.scci_value(), Some(31));
    let text = err.to_string();
    assert!(
        text.starts_with("iRMC set_power_state failed on 127.0.0.1 (node node-1). Reason: SCCI PROTOCOL ERROR, STATUS CODE = 31, ERROR = ServerView Agent not connected"),
        "{text}"
    );
    assert!(!text.contains('\n'));
    assert_eq!(bmc.seen().len(), 1);
}

#[tokio::test]
async fn malformed_replies_are_errors_without_the_body() {
    // Each body echoes the password the way a real iRMC may echo a request.
    let bodies = [
        format!("<Status><Value>0</Value><Message>{PASSWORD}</Message>"),
        format!("<Status><Value>5</Value><Message>bad {PASSWORD} & more</Message></Status>"),
        format!("<html><body>{PASSWORD}</body></html>"),
        String::new(),
        format!("Value=0 {PASSWORD}"),
        "\u{0}\u{1}garbage".to_owned(),
    ];
    for body in bodies {
        let b2 = body.clone();
        let bmc = start(move |_, _| Reply::ok(b2.clone())).await;
        let c = client(&bmc);
        let err = c.power(PowerAction::On).await.unwrap_err();
        assert!(
            matches!(err, IrmcError::Malformed { .. }),
            "{body:?} -> {err:?}"
        );
        assert!(!err.is_transient());
        assert_no_secret(&err.to_string());
        assert_no_secret(&format!("{err:?}"));
        assert_eq!(bmc.seen().len(), 1, "malformed replies are not retried");
    }
}

#[tokio::test]
async fn report_real_fixture_over_http() {
    let bmc = start(|s, _| {
        assert_eq!(s.uri, "/report.xml");
        assert_eq!(s.method, "GET");
        Reply::ok(REPORT_S4)
    })
    .await;
    let r = client(&bmc).report().await.unwrap();
    assert_eq!(
        (
            r.model.as_str(),
            r.firmware.as_str(),
            r.memory_mb,
            r.cpu_cores,
            r.has_virtual_fd
        ),
        ("iRMC S4", "7.65F", 8192, 16, true)
    );
}

#[tokio::test]
async fn report_without_management_controllers() {
    let bmc = start(|_, _| {
        Reply::ok("<?xml version=\"1.0\"?>\n<Root Schema=\"2\"><System><Memory><Installed>1024</Installed></Memory></System></Root>")
    })
    .await;
    let err = client(&bmc).report().await.unwrap_err();
    assert!(
        matches!(err, IrmcError::NoManagementController { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("ManagementControllers"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("node-1"), "{text}");
}

// ---------------------------------------------------------------------------
// Virtual media
// ---------------------------------------------------------------------------

fn location() -> MediaLocation {
    MediaLocation {
        server: "10.0.0.9".into(),
        share_type: ShareType::Cifs,
        share_name: "images".into(),
        image_name: "deploy-n1.iso".into(),
        user_name: "shareuser".into(),
        password: Secret::new("share-pw<&\""),
        domain: "WORKGROUP".into(),
    }
}

#[tokio::test]
async fn attach_cd_is_two_posts_with_escaped_values() {
    let bmc = start(|_, _| Reply::ok(SCCI_OK)).await;
    let c = client(&bmc);
    c.attach(MediaKind::Cd, &location()).await.unwrap();
    let seen = bmc.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body.matches("<CMD ").count(), 9);
    assert!(seen[0].body.contains(
        "OE=\"1A62\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::string\" Encrypted=\"0\">share-pw&lt;&amp;&quot;</DATA>"
    ));
    assert!(seen[0].body.contains(
        "OE=\"1A63\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::string\">WORKGROUP</DATA>"
    ));
    // The server can parse what we sent and gets the password back intact.
    let cmds = irmc::wire::parse_cmdseq(&seen[0].body).unwrap();
    assert_eq!(
        cmds.iter()
            .find(|c| c.oe == 0x1A62)
            .unwrap()
            .data
            .as_deref(),
        Some("share-pw<&\"")
    );
    assert!(seen[1].body.contains("OC=\"ConnectRemoteCdImage\" OE=\"0\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">1</DATA>"));
    assert_eq!(c.requests_sent(), 2);
}

#[tokio::test]
async fn attach_error_names_the_ironic_operation() {
    let bmc = start(|_, i| {
        if i == 0 {
            Reply::ok(SCCI_OK)
        } else {
            Reply::ok("<Status><Value>4</Value><Severity>Error</Severity><Message>Device busy</Message></Status>")
        }
    })
    .await;
    let err = client(&bmc)
        .attach(MediaKind::Fd, &location())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("iRMC Inserting virtual floppy failed on 127.0.0.1 (node node-1). Reason: SCCI PROTOCOL ERROR, STATUS CODE = 4"),
        "{text}"
    );
    assert_no_secret(&text);
    assert_no_secret(&format!("{err:?}"));
}

/// A BMC that echoes the request (and its own password) in its error texts, as real
/// iRMCs do: the error the operator sees holds neither password, no control characters,
/// and no more than a bounded length of BMC text.
#[tokio::test]
async fn an_echoing_bmc_leaks_no_secret_into_the_error() {
    let bmc = start(|seen, _| {
        // The echo starts with what a real iRMC repeats back: the user, the share
        // password it was given, then the whole request (escaped, as XML text).
        let echo = irmc::wire::escape(&format!(
            "user admin:{PASSWORD} share pw share-pw<&\"\u{7} {}",
            seen.body
        ));
        Reply::ok(format!(
            "<Status><Value>5</Value><Severity>Error</Severity><Message>request was: {echo}</Message><Error>{echo}{}</Error></Status>",
            "x".repeat(4000)
        ))
    })
    .await;
    let err = client(&bmc)
        .attach(MediaKind::Cd, &location())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_no_secret(&text);
    assert_no_secret(&format!("{err:?}"));
    assert!(text.contains("******"), "{text}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.len() < 2000, "{} bytes", text.len());
    // The echo really carried the share password: the request held it.
    assert!(bmc.seen()[0].body.contains("share-pw"));
}

fn dump(server: &str, share: &str, image: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CMDSEQ>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A60\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\">{server}</DATA><STATUS>0</STATUS></CMD>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A65\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\">{share}</DATA><STATUS>0</STATUS></CMD>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A66\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\">{image}</DATA><STATUS>0</STATUS></CMD>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A50\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\"></DATA><STATUS>0</STATUS></CMD>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A55\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\"></DATA><STATUS>0</STATUS></CMD>\n<CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A56\" OI=\"0\" Type=\"SET\"><DATA Type=\"xsd::string\"></DATA><STATUS>0</STATUS></CMD>\n</CMDSEQ>\n"
    )
}

#[tokio::test]
async fn detach_checks_settings_and_skips_unconfigured_drive() {
    let bmc = start(|s, _| {
        if s.uri.starts_with("/iRMC_Settings.pre") {
            Reply::ok(dump("10.0.0.9", "images", "deploy.iso"))
        } else {
            Reply::ok(SCCI_OK)
        }
    })
    .await;
    let c = client(&bmc);
    assert!(c.eject(MediaKind::Cd).await.unwrap());
    assert!(!c.eject(MediaKind::Fd).await.unwrap()); // FD is empty in the dump: no eject
    c.detach(MediaKind::Hd).await.unwrap(); // HD absent from the dump: no eject
    let seen = bmc.seen();
    let summary: Vec<String> = seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(
        summary,
        [
            "GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1",
            "POST /config",
            "GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1",
            "GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1",
        ]
    );
    assert!(seen[1].body.contains("OC=\"ConnectRemoteCdImage\" OE=\"0\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">0</DATA>"));
}

#[tokio::test]
async fn eject_all_reads_the_settings_once() {
    let bmc = start(|s, _| {
        if s.uri.starts_with("/iRMC_Settings.pre") {
            Reply::ok(dump("10.0.0.9", "images", "deploy.iso"))
        } else {
            Reply::ok(SCCI_OK)
        }
    })
    .await;
    let c = client(&bmc);
    let sent = c
        .eject_all(&[MediaKind::Cd, MediaKind::Fd, MediaKind::Hd])
        .await
        .unwrap();
    assert_eq!(sent, [true, false, false]);
    let summary: Vec<String> = bmc
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect();
    assert_eq!(
        summary,
        ["GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1", "POST /config"]
    );
    assert!(c.eject_all(&[]).await.unwrap().is_empty());
    assert_eq!(bmc.seen().len(), 2, "nothing to eject: no request");
}

#[tokio::test]
async fn settings_read_back() {
    let bmc = start(|_, _| Reply::ok(dump("srv", "sh", "img"))).await;
    let s = client(&bmc).settings().await.unwrap();
    assert_eq!(s.cd().server, "srv");
    assert_eq!(s.cd().image_name, "img");
    assert!(!s.fd().is_configured());
}

mod busy;
mod fts_media;
mod sushy;
/// Digest auth, retries and back-off, Redfish, power-state polling.
mod transport;
mod validate;
