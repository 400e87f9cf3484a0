//! Validation before a deploy, against `irmc-sim`: the generation (S4 or later) and
//! firmware from `/report.xml` (with the `Root@OS` fallback), and the licence key
//! (ConfigSpace 1980). Each refusal is one sentence naming node, BMC and operation.

use std::time::Duration;

use irmc::{
    BmcConfig, IrmcClient, IrmcError, MediaKind, MediaLocation, MediaPath, Scheme, Secret,
    ShareType,
};
use irmc_sim::{Sim, SimBuilder};

const PASSWORD: &str = "val-pw";
const REPORT_S4: &str = include_str!("../../fixtures/report-s4-7.65F-rx300s8.xml");

async fn sim(b: SimBuilder) -> Sim {
    Sim::start(
        b.https_port(None)
            .http_port(Some(0))
            .ipmi_port(None)
            .credentials("admin", PASSWORD),
    )
    .await
    .unwrap()
}

fn client(sim: &Sim) -> (IrmcClient, String) {
    let addr = sim.addresses()[0].http.unwrap();
    let mut cfg = BmcConfig::new(addr.ip().to_string(), "admin", Secret::new(PASSWORD));
    cfg.port = addr.port();
    cfg.scheme = Scheme::Http;
    cfg.timeout = Duration::from_secs(10);
    let bmc = cfg.address.clone();
    (IrmcClient::new(cfg.with_node("node-val")).unwrap(), bmc)
}

fn assert_names(text: &str, bmc: &str) {
    assert!(text.contains(bmc), "{text}");
    assert!(text.contains("node-val"), "{text}");
    assert!(text.contains("validating the iRMC"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[tokio::test]
async fn current_s4_s5_s6_pass_and_name_their_media_path() {
    for (model, fw, path, redfish) in [
        (irmc_sim::Model::S4, "7.65F", MediaPath::ScciFloppy, false),
        (
            irmc_sim::Model::S4,
            "9.62F",
            MediaPath::RedfishHardDisk,
            true,
        ),
        (
            irmc_sim::Model::S5,
            "1.60P",
            MediaPath::RedfishHardDisk,
            true,
        ),
        (
            irmc_sim::Model::S6,
            "2.50P",
            MediaPath::RedfishHardDisk,
            true,
        ),
    ] {
        let sim = sim(SimBuilder::new().model(model).firmware(fw)).await;
        let (c, _) = client(&sim);
        let caps = c.validate().await.unwrap();
        assert_eq!(caps.media_path(), path, "{model:?} {fw}");
        assert_eq!(caps.redfish, redfish, "{model:?} {fw}");
        assert!(caps.summary().contains(fw), "{}", caps.summary());
    }
}

#[tokio::test]
async fn an_s3_is_refused_with_one_line() {
    let sim = sim(SimBuilder::new()).await;
    let s3 = irmc::wire::build_report(&irmc::Report {
        model: "iRMC S3".into(),
        firmware: "3.77A".into(),
        memory_mb: 4096,
        cpu_cores: 4,
        has_virtual_fd: false,
    });
    sim.node(0).update(|s| s.report = Some(s3));
    let (c, bmc) = client(&sim);
    let err = c.validate().await.unwrap_err();
    assert!(matches!(err, IrmcError::Unsupported { .. }), "{err:?}");
    let text = err.to_string();
    assert_names(&text, &bmc);
    assert!(text.contains("iRMC S3"), "{text}");
    assert!(text.contains("S4 or later"), "{text}");
}

#[tokio::test]
async fn a_report_without_the_irmc_section_is_read_from_root_os() {
    let sim = sim(SimBuilder::new()).await;
    let start = REPORT_S4.find("<ManagementControllers").unwrap();
    let end =
        REPORT_S4.find("</ManagementControllers>").unwrap() + "</ManagementControllers>".len();
    let doc = format!("{}{}", &REPORT_S4[..start], &REPORT_S4[end..]);
    sim.node(0).update(|s| s.report = Some(doc));
    let (c, _) = client(&sim);
    let caps = c.validate().await.unwrap();
    assert_eq!(
        (caps.model.as_str(), caps.firmware.as_str()),
        ("iRMC S4", "7.65F")
    );
    assert_eq!(caps.media_path(), MediaPath::ScciFloppy);

    // The same report naming an S3 in Root@OS is refused like a full S3 report.
    let s3 = REPORT_S4[..start]
        .replacen("OS=\"iRMC S4\"", "OS=\"iRMC S3\"", 1)
        .replacen("Version=\"7.65F\"", "Version=\"3.77A\"", 1)
        + &REPORT_S4[end..];
    sim.node(0).update(|s| s.report = Some(s3));
    let err = c.validate().await.unwrap_err().to_string();
    assert!(
        err.contains("iRMC S3") && err.contains("S4 or later"),
        "{err}"
    );
}

#[tokio::test]
async fn no_licence_is_found_before_any_connect_and_a_refused_connect_says_licence() {
    let sim = sim(SimBuilder::new().licensed(false)).await;
    let (c, bmc) = client(&sim);
    assert!(!c.has_licence().await.unwrap());
    let err = c.validate().await.unwrap_err();
    assert!(matches!(err, IrmcError::Licence { .. }), "{err:?}");
    let text = err.to_string();
    assert_names(&text, &bmc);
    assert!(text.contains("licence"), "{text}");

    // Had the check been skipped, the connect itself says why it failed.
    let loc = MediaLocation {
        server: "127.0.0.1".into(),
        share_type: ShareType::Nfs,
        share_name: "/srv".into(),
        image_name: "deploy.iso".into(),
        user_name: String::new(),
        password: Secret::new(""),
        domain: String::new(),
    };
    let err = c.attach(MediaKind::Cd, &loc).await.unwrap_err();
    assert!(matches!(err, IrmcError::Licence { .. }), "{err:?}");
    assert!(err.to_string().contains("Inserting virtual cdrom"), "{err}");

    // A licensed node of the same fleet passes.
    sim.node(0).update(|s| s.licensed = Some(true));
    assert!(c.has_licence().await.unwrap());
    c.validate().await.unwrap();
}
