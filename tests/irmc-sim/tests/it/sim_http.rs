//! The simulator over real sockets: SCCI golden replies, opcodes by name and hex,
//! tolerant parsing, settings dump, report, Redfish, auth (Basic and Digest), 404/405,
//! fault injection, the boot hook seam and the control API.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use irmc_sim::fault::parse_spec;
use irmc_sim::scci::{OK_REPLY, OPCODES};
use irmc_sim::{
    Auth, BootEnabled, BootHook, BootSnapshot, BootTarget, MediaKind, Model, NodeHandle,
    PowerState, Sim, SimBuilder,
};
use md5::{Digest as _, Md5};
use reqwest::StatusCode;

const USER: &str = "admin";
const PASS: &str = "pw<&>\"'";

async fn sim(b: SimBuilder) -> Sim {
    Sim::start(
        b.base_address(support::random_base())
            .credentials(USER, PASS),
    )
    .await
    .unwrap()
}

fn url(sim: &Sim, i: usize, path: &str) -> String {
    format!("{}{path}", sim.addresses()[i].url())
}

async fn post_config(c: &reqwest::Client, sim: &Sim, body: &str) -> String {
    let r = c
        .post(url(sim, 0, "/config"))
        .basic_auth(USER, Some(PASS))
        .header("Content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

fn cmd(oc: &str, oe: &str, data: Option<(&str, &str)>) -> String {
    let d = data.map_or(String::new(), |(t, v)| {
        format!("<DATA Type=\"xsd::{t}\">{v}</DATA>")
    });
    format!("<CMD Context=\"SCCI\" OC=\"{oc}\" OE=\"{oe}\" OI=\"0\" Type=\"SET\">{d}</CMD>")
}

fn seq(cmds: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n<CMDSEQ>\n{}\n</CMDSEQ>\n",
        cmds.join("\n")
    )
}

fn cd_settings(prefix: u16) -> Vec<String> {
    let oe = |off: u16| format!("{:04X}", prefix + off);
    vec![
        cmd("ConfigSpace", "1A80", Some(("integer", "1"))),
        cmd("ConfigSpace", &oe(0), Some(("string", "127.0.0.1"))),
        cmd("ConfigSpace", &oe(3), Some(("string", ""))),
        cmd("ConfigSpace", &oe(4), Some(("integer", "1"))),
        cmd("ConfigSpace", &oe(5), Some(("string", "share"))),
        cmd(
            "ConfigSpace",
            &oe(6),
            Some(("string", "deploy &amp; co.iso")),
        ),
        cmd("ConfigSpace", &oe(1), Some(("string", "ironic"))),
        cmd("ConfigSpace", &oe(2), Some(("string", "p&lt;w"))),
    ]
}

#[tokio::test]
async fn scci_success_reply_is_byte_exact_and_power_follows() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    let r = post_config(&c, &sim, &seq(&[cmd("PowerOnCabinet", "0", None)])).await;
    assert_eq!(
        r,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>"
    );
    assert_eq!(r, OK_REPLY);
    assert_eq!(sim.node(0).state().power, PowerState::On);
    sim.shutdown().await;
}

#[tokio::test]
async fn every_opcode_by_name_and_by_hex() {
    let sim = sim(SimBuilder::new().count(2)).await;
    let c = support::client_with_ca(sim.ca_pem());
    for (i, by_hex) in [(0usize, false), (1, true)] {
        let base = sim.addresses()[i].url();
        let name = |n: &str| -> String {
            if by_hex {
                let op = OPCODES.iter().rev().find(|o| o.name == n).unwrap();
                format!("{:04X}", op.code)
            } else {
                n.to_string()
            }
        };
        let post = |body: String| {
            let c = c.clone();
            let u = format!("{base}/config");
            async move {
                c.post(u)
                    .basic_auth(USER, Some(PASS))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        };
        let node = sim.node(i);
        // ConfigSpace SET (E002 by hex) for the CD, then connect.
        let mut settings = cd_settings(0x1A60);
        for s in &mut settings {
            *s = s.replace(
                "OC=\"ConfigSpace\"",
                &format!("OC=\"{}\"", name("ConfigSpace")),
            );
        }
        assert_eq!(post(seq(&settings)).await, OK_REPLY);
        let st = node.state();
        assert_eq!(st.cd.image_name, "deploy & co.iso");
        assert_eq!(st.cd.password.expose(), "p<w");
        // ConfigSpace GET (E001 by hex; by name Type="GET").
        let get = if by_hex {
            "<CMDSEQ><CMD Context=\"SCCI\" OC=\"E001\" OE=\"1A65\" OI=\"0\"/></CMDSEQ>".to_string()
        } else {
            "<CMDSEQ><CMD Context=\"SCCI\" OC=\"ConfigSpace\" OE=\"1A65\" OI=\"0\" Type=\"GET\"/></CMDSEQ>".to_string()
        };
        let r = post(get).await;
        assert!(
            r.contains("<Value>0</Value>") && r.contains(">share</DATA>"),
            "{r}"
        );

        for op in ["ConnectRemoteCdImage"] {
            assert_eq!(
                post(seq(&[cmd(&name(op), "0", Some(("integer", "1")))])).await,
                OK_REPLY
            );
        }
        assert!(node.state().cd.connected);
        assert_eq!(
            post(seq(&[cmd(
                &name("ConnectRemoteCdImage"),
                "0",
                Some(("integer", "0"))
            )]))
            .await,
            OK_REPLY
        );
        assert!(!node.state().cd.connected);
        // FD and HD connect after their settings.
        assert_eq!(post(seq(&cd_settings(0x1A50))).await, OK_REPLY);
        assert_eq!(
            post(seq(&[cmd(
                &name("ConnectRemoteFdImage"),
                "0",
                Some(("integer", "1"))
            )]))
            .await,
            OK_REPLY
        );
        assert_eq!(post(seq(&cd_settings(0x1A40))).await, OK_REPLY);
        assert_eq!(
            post(seq(&[cmd(
                &name("ConnectRemoteHdImage"),
                "0",
                Some(("integer", "1"))
            )]))
            .await,
            OK_REPLY
        );
        let st = node.state();
        assert!(st.fd.connected && st.hd.connected);
        assert_eq!(st.hd.image_name, "deploy & co.iso");

        // Power opcodes.
        for (op, want, generation) in [
            ("PowerOnCabinet", PowerState::On, 1),
            ("ResetServer", PowerState::On, 2),
            ("PowerOffOnCabinet", PowerState::On, 3),
            ("RaiseNMI", PowerState::On, 3),
            ("ShutdownRequestCancelled", PowerState::On, 3),
            ("ResetFirmware", PowerState::On, 3),
            ("PowerOffCabinet", PowerState::Off, 3),
        ] {
            assert_eq!(
                post(seq(&[cmd(&name(op), "0", None)])).await,
                OK_REPLY,
                "{op}"
            );
            let st = node.state();
            assert_eq!((st.power, st.boot_generation), (want, generation), "{op}");
        }
        node.update(|s| s.serverview_agent = true);
        post(seq(&[cmd(&name("PowerOnCabinet"), "0", None)])).await;
        node.update(|s| s.serverview_agent = true);
        assert_eq!(
            post(seq(&[cmd(&name("RequestShutdownAndReset"), "0", None)])).await,
            OK_REPLY
        );
        node.update(|s| s.serverview_agent = true);
        assert_eq!(
            post(seq(&[cmd(&name("RequestShutdownAndOff"), "0", None)])).await,
            OK_REPLY
        );
        assert_eq!(node.state().power, PowerState::Off);

        // Counters: by canonical name whatever the spelling.
        let st = node.state();
        assert_eq!(st.counters.scci.get("PowerOnCabinet"), Some(&2));
        assert_eq!(st.counters.scci.get("RequestShutdownAndOff"), Some(&1));
        assert_eq!(st.counters.scci.get("ConnectRemoteCdImage"), Some(&2));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn cmdseq_with_whitespace_comments_and_many_commands() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    let body = format!(
        "\n\n   \n<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\" ?>\n<CMDSEQ>\n  <!-- \"ConfBmcMediaOptionsRemoteMediaEnabled\" -->\n  <!-- Make sure this one is enabled -->\n{}\n<!-- between -->\n{}\n</CMDSEQ>\n",
        cd_settings(0x1A60).join("\n  <!-- x -->\n"),
        cmd("ConnectRemoteCdImage", "0", Some(("integer", "1")))
    );
    assert_eq!(post_config(&c, &sim, &body).await, OK_REPLY);
    let st = sim.node(0).state();
    assert!(st.cd.connected);
    assert_eq!(st.counters.config_posts, 1);
    assert_eq!(st.counters.scci.get("ConfigSpace"), Some(&8));
    sim.shutdown().await;
}

#[tokio::test]
async fn scci_errors_have_the_real_shape() {
    let sim = sim(SimBuilder::new().model(Model::S6)).await;
    let c = support::client_with_ca(sim.ca_pem());
    // Soft power without the agent: Value 31.
    post_config(&c, &sim, &seq(&[cmd("PowerOnCabinet", "0", None)])).await;
    let r = post_config(&c, &sim, &seq(&[cmd("RequestShutdownAndOff", "0", None)])).await;
    assert_eq!(
        r,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Status><Value>31</Value><Severity>Error</Severity><Message>Error 31 (Import of settings in WinSCU XML format failed) occurred</Message><Error Context=\"SCCI\" OC=\"RequestShutdownAndOff\" OE=\"0\" OI=\"0\">ServerView Agent not connected</Error></Status>"
    );
    assert_eq!(sim.node(0).state().power, PowerState::On);
    // Eject with empty settings.
    let r = post_config(
        &c,
        &sim,
        &seq(&[cmd("ConnectRemoteCdImage", "0", Some(("integer", "0")))]),
    )
    .await;
    assert!(
        r.contains("<Severity>Error</Severity>") && r.contains("OC=\"ConnectRemoteCdImage\""),
        "{r}"
    );
    // No virtual floppy on S6: settings and connect fail.
    let r = post_config(&c, &sim, &seq(&cd_settings(0x1A50))).await;
    assert!(r.contains("Virtual floppy is not supported"), "{r}");
    let r = post_config(&c, &sim, &seq(&[cmd("0251", "0", Some(("integer", "1")))])).await;
    assert!(
        r.contains("Virtual floppy is not supported") && r.contains("OC=\"0251\""),
        "{r}"
    );
    // Unknown opcode, garbage, bad DATA.
    let r = post_config(&c, &sim, &seq(&[cmd("FlyToTheMoon", "0", None)])).await;
    assert!(r.contains("Unknown SCCI opcode"), "{r}");
    let r = post_config(&c, &sim, "this is not xml <<<").await;
    assert!(
        r.contains("<Value>1</Value>") && r.contains("Invalid SCCI XML"),
        "{r}"
    );
    let r = post_config(
        &c,
        &sim,
        &seq(&[cmd("ConnectRemoteCdImage", "0", Some(("integer", "7")))]),
    )
    .await;
    assert!(r.contains("<Value>2</Value>"), "{r}");
    // Stops at the first failing command: the power-off after it never runs.
    let r = post_config(
        &c,
        &sim,
        &seq(&[
            cmd("FlyToTheMoon", "0", None),
            cmd("PowerOffCabinet", "0", None),
        ]),
    )
    .await;
    assert!(r.contains("<Severity>Error</Severity>"));
    assert_eq!(sim.node(0).state().power, PowerState::On);
    sim.shutdown().await;
}

#[tokio::test]
async fn settings_dump_always_has_the_six_items_with_data() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    let get = || async {
        c.get(url(&sim, 0, "/iRMC_Settings.pre?P45=1&SAVE_DATA=1"))
            .basic_auth(USER, Some(PASS))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let dump = get().await;
    let cmds = irmc_sim::scci::parse_cmdseq(&dump).unwrap();
    for oe in [
        "1A50", "1A55", "1A56", "1A60", "1A65", "1A66", "1A40", "1A45", "1A46",
    ] {
        let c = cmds
            .iter()
            .find(|c| c.oe == oe)
            .unwrap_or_else(|| panic!("{oe} missing"));
        assert_eq!(c.data.as_deref(), Some(""), "{oe}");
    }
    assert!(dump.contains("<STATUS>0</STATUS>"));
    post_config(&c, &sim, &seq(&cd_settings(0x1A60))).await;
    let dump = get().await;
    let cmds = irmc_sim::scci::parse_cmdseq(&dump).unwrap();
    let v = |oe: &str| {
        cmds.iter()
            .find(|c| c.oe == oe)
            .unwrap()
            .data
            .clone()
            .unwrap()
    };
    assert_eq!(v("1A60"), "127.0.0.1");
    assert_eq!(v("1A66"), "deploy & co.iso");
    assert!(dump.contains("deploy &amp; co.iso"));
    // Passwords are write-only.
    assert!(!dump.contains("p<w") && !dump.contains("p&lt;w"));
    assert!(cmds.iter().all(|c| c.oe != "1A62"));
    assert_eq!(sim.node(0).state().counters.settings, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn report_generated_and_from_file() {
    let sim1 = sim(SimBuilder::new().model(Model::S5).firmware("1.60P")).await;
    let c = support::client_with_ca(sim1.ca_pem());
    let r = c
        .get(url(&sim1, 0, "/report.xml"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<Root Schema=\"2\" Version=\"1.60P\" OS=\"iRMC S5\">"),
        "{body}"
    );
    assert!(
        body.contains("<iRMC Name=\"iRMC S5\">\n    <Firmware>1.60P</Firmware>"),
        "{body}"
    );
    assert!(!sim1.has_virtual_fd());
    sim1.shutdown().await;

    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/report-s4-7.65F-rx300s8.xml"
    ))
    .unwrap();
    // The served report names the iRMC: it decides the firmware rules.
    let sim2 = sim(SimBuilder::new().model(Model::S6).report(fixture.clone())).await;
    assert_eq!(sim2.firmware(), "7.65F");
    assert!(sim2.has_virtual_fd());
    let c = support::client_with_ca(sim2.ca_pem());
    let body = c
        .get(url(&sim2, 0, "/report.xml"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, fixture);
    sim2.shutdown().await;
}

#[tokio::test]
async fn redfish_power_boot_override_and_reset() {
    let sim = sim(SimBuilder::new().http_port(Some(0)).https_port(None)).await;
    let c = support::insecure_client();
    let node = sim.node(0);
    // The service root needs no auth.
    let root: serde_json::Value = c
        .get(url(&sim, 0, "/redfish/v1/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["Systems"]["@odata.id"], "/redfish/v1/Systems");
    // Systems/0 does.
    assert_eq!(
        c.get(url(&sim, 0, "/redfish/v1/Systems/0"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let get = || async {
        c.get(url(&sim, 0, "/redfish/v1/Systems/0"))
            .basic_auth(USER, Some(PASS))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let sys = get().await;
    assert_eq!(sys["Id"], "0");
    assert_eq!(sys["PowerState"], "Off");
    assert_eq!(sys["Manufacturer"], "FUJITSU");
    let allowed = sys["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]
        .as_array()
        .unwrap();
    for t in ["Cd", "Hdd", "Pxe", "None"] {
        assert!(allowed.iter().any(|v| v == t), "{t}");
    }
    let patch = |body: serde_json::Value| {
        let c = c.clone();
        let u = url(&sim, 0, "/redfish/v1/Systems/0");
        async move {
            c.patch(u)
                .basic_auth(USER, Some(PASS))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        patch(serde_json::json!({"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}})).await,
        StatusCode::NO_CONTENT
    );
    let sys = get().await;
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Cd");
    assert_eq!(sys["Boot"]["BootSourceOverrideEnabled"], "Once");
    assert_eq!(sys["Boot"]["BootSourceOverrideMode"], "UEFI");
    assert_eq!(
        patch(serde_json::json!({"Boot":{"BootSourceOverrideTarget":"Floppy"}})).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        patch(serde_json::json!({"Boot":{"BootSourceOverrideMode":"Legacy"}})).await,
        StatusCode::NO_CONTENT
    );

    let reset = |t: &str| {
        let c = c.clone();
        let u = url(
            &sim,
            0,
            "/redfish/v1/Systems/0/Actions/ComputerSystem.Reset",
        );
        let body = serde_json::json!({ "ResetType": t });
        async move {
            c.post(u)
                .basic_auth(USER, Some(PASS))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(reset("On").await, StatusCode::NO_CONTENT);
    // Power-on consumed the Once override.
    let sys = get().await;
    assert_eq!(sys["PowerState"], "On");
    assert_eq!(sys["Boot"]["BootSourceOverrideEnabled"], "Disabled");
    assert_eq!(reset("ForceRestart").await, StatusCode::NO_CONTENT);
    assert_eq!(node.state().boot_generation, 2);
    assert_eq!(reset("PowerCycle").await, StatusCode::NO_CONTENT);
    assert_eq!(reset("Nmi").await, StatusCode::NO_CONTENT);
    assert_eq!(reset("GracefulShutdown").await, StatusCode::NO_CONTENT);
    assert_eq!(get().await["PowerState"], "Off");
    assert_eq!(reset("Explode").await, StatusCode::BAD_REQUEST);

    // eLCM status.
    let e: serde_json::Value = c
        .get(url(&sim, 0, "/rest/v1/Oem/eLCM/eLCMStatus"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        e,
        serde_json::json!({"eLCMStatus":{"EnabledAndLicenced":"true","SDCardMounted":"false"}})
    );

    let st = node.state();
    assert_eq!(st.counters.redfish_patch, 3);
    assert_eq!(st.counters.redfish_post, 6);
    assert_eq!(st.counters.elcm, 1);
    assert!(st.counters.redfish_get >= 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_404_and_wrong_methods_405() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    let r = c
        .get(url(&sim, 0, "/nope"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(url(
            &sim,
            0,
            "/rest/v1/Oem/eLCM/ProfileManagement/BiosConfig",
        ))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(url(&sim, 0, "/config"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let r = c
        .delete(url(&sim, 0, "/redfish/v1/Systems/0"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(sim.node(0).state().counters.not_found, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_auth_401_paths() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    for path in [
        "/report.xml",
        "/iRMC_Settings.pre?P45=1&SAVE_DATA=1",
        "/rest/v1/Oem/eLCM/eLCMStatus",
    ] {
        for auth in [None, Some(("admin", "wrong")), Some(("root", PASS))] {
            let mut rq = c.get(url(&sim, 0, path));
            if let Some((u, p)) = auth {
                rq = rq.basic_auth(u, Some(p));
            }
            let r = rq.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} {auth:?}");
            assert_eq!(
                r.headers()["www-authenticate"],
                "Basic realm=\"iRMC RESTful\""
            );
        }
    }
    let r = c
        .post(url(&sim, 0, "/config"))
        .body(seq(&[cmd("PowerOnCabinet", "0", None)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Nothing happened.
    assert_eq!(sim.node(0).state().power, PowerState::Off);
    assert_eq!(sim.node(0).state().counters.unauthorized, 10);
    sim.shutdown().await;
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn param<'a>(h: &'a str, k: &str) -> &'a str {
    let start = h.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
    let end = h[start..].find('"').unwrap() + start;
    &h[start..end]
}

/// Build a Digest Authorization header (RFC 7616, MD5, qop=auth).
fn digest_header(challenge: &str, method: &str, uri: &str, user: &str, pass: &str) -> String {
    let realm = param(challenge, "realm");
    let nonce = param(challenge, "nonce");
    let opaque = param(challenge, "opaque");
    let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", opaque=\"{opaque}\", qop=auth, nc=00000001, cnonce=\"c0ffee\", algorithm=MD5"
    )
}

#[tokio::test]
async fn digest_auth_401_then_success() {
    let sim = sim(SimBuilder::new().auth(Auth::Digest)).await;
    let c = support::client_with_ca(sim.ca_pem());
    let body = seq(&[cmd("PowerOnCabinet", "0", None)]);
    let r = c
        .post(url(&sim, 0, "/config"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ch = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        ch.starts_with("Digest realm=\"iRMC RESTful\", qop=\"auth\", algorithm=MD5, nonce=\""),
        "{ch}"
    );
    // Basic is refused on SCCI paths in digest mode.
    let r = c
        .post(url(&sim, 0, "/config"))
        .basic_auth(USER, Some(PASS))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Wrong password.
    let r = c
        .post(url(&sim, 0, "/config"))
        .header(
            "Authorization",
            digest_header(&ch, "POST", "/config", USER, "nope"),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.node(0).state().power, PowerState::Off);
    // Right password: accepted, and the nonce can be reused.
    for _ in 0..2 {
        let r = c
            .post(url(&sim, 0, "/config"))
            .header(
                "Authorization",
                digest_header(&ch, "POST", "/config", USER, PASS),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), OK_REPLY);
    }
    // A digest computed for another URI is refused.
    let r = c
        .get(url(&sim, 0, "/report.xml"))
        .header(
            "Authorization",
            digest_header(&ch, "GET", "/config", USER, PASS),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url(&sim, 0, "/iRMC_Settings.pre?P45=1&SAVE_DATA=1"))
        .header(
            "Authorization",
            digest_header(
                &ch,
                "GET",
                "/iRMC_Settings.pre?P45=1&SAVE_DATA=1",
                USER,
                PASS,
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Redfish still takes Basic in digest mode.
    let r = c
        .get(url(&sim, 0, "/redfish/v1/Systems/0"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.node(0).state().power, PowerState::On);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_latency_errors_hang_malformed() {
    let b = SimBuilder::new()
        .count(5)
        .seed(7)
        .fault(parse_spec("node=0,latency=300ms").unwrap())
        .fault(parse_spec("node=1,error-rate=1").unwrap())
        .fault(parse_spec("node=2,error-rate=1,error=scci").unwrap())
        .fault(parse_spec("node=3,hang").unwrap())
        .fault(parse_spec("node=4,malformed").unwrap());
    let sim = sim(b).await;
    let c = support::client_with_ca(sim.ca_pem());
    let body = seq(&[cmd("PowerOnCabinet", "0", None)]);
    let post = |i: usize| {
        c.post(url(&sim, i, "/config"))
            .basic_auth(USER, Some(PASS))
            .body(body.clone())
            .timeout(Duration::from_secs(5))
            .send()
    };
    let t = Instant::now();
    assert_eq!(post(0).await.unwrap().text().await.unwrap(), OK_REPLY);
    assert!(t.elapsed() >= Duration::from_millis(300));

    assert_eq!(
        post(1).await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(sim.node(1).state().power, PowerState::Off);

    let r = post(2).await.unwrap().text().await.unwrap();
    assert!(
        r.contains("<Value>99</Value>") && r.contains("Injected fault"),
        "{r}"
    );

    let hang = c
        .get(url(&sim, 3, "/report.xml"))
        .basic_auth(USER, Some(PASS))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hang.unwrap_err().is_timeout());
    assert_eq!(sim.node(3).state().counters.total, 1);

    let r = post(4).await.unwrap().text().await.unwrap();
    assert!(
        irmc_sim::scci::parse_cmdseq(&r).is_err() || !r.ends_with("</Status>"),
        "{r}"
    );
    assert_eq!(r.len(), OK_REPLY.len() / 2);

    // Runtime change: clear node 1, then it works.
    sim.apply_fault(&parse_spec("node=1,clear").unwrap());
    assert_eq!(post(1).await.unwrap().text().await.unwrap(), OK_REPLY);
    // Unescaped replies are not well-formed XML.
    sim.apply_fault(&parse_spec("node=4,clear,malformed=unescaped").unwrap());
    let r = post(4).await.unwrap().text().await.unwrap();
    assert!(r.contains("a&b") && r.contains("<DATA"), "{r}");
    sim.shutdown().await;
}

#[tokio::test]
async fn error_rate_is_deterministic_per_seed() {
    async fn pattern(seed: u64) -> Vec<bool> {
        let sim = sim(SimBuilder::new()
            .http_port(Some(0))
            .https_port(None)
            .seed(seed)
            .fault(parse_spec("error-rate=0.5").unwrap()))
        .await;
        let c = support::insecure_client();
        let mut out = Vec::new();
        for _ in 0..40 {
            let r = c
                .get(url(&sim, 0, "/report.xml"))
                .basic_auth(USER, Some(PASS))
                .send()
                .await
                .unwrap();
            out.push(r.status() == StatusCode::INTERNAL_SERVER_ERROR);
        }
        sim.shutdown().await;
        out
    }
    let a = pattern(11).await;
    assert_eq!(a, pattern(11).await);
    assert_ne!(a, pattern(12).await);
    let n = a.iter().filter(|x| **x).count();
    assert!((8..=32).contains(&n), "{n}");
}

/// A hook that records what it is told.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    snapshots: Arc<Mutex<Vec<BootSnapshot>>>,
}

impl BootHook for Recorder {
    fn on_power_on(&self, node: NodeHandle, snapshot: BootSnapshot) {
        self.events.lock().unwrap().push(format!(
            "on:{}:{}",
            snapshot.reason,
            snapshot.target.as_str()
        ));
        // Quick state changes are fine inside the hook (the node lock is not held).
        node.record_boot(snapshot.generation, "cd", true, "ramdisk", "booted");
        node.update(|s| s.ramdisk_running = true);
        self.snapshots.lock().unwrap().push(snapshot);
    }
    fn on_power_off(&self, _node: NodeHandle) {
        self.events.lock().unwrap().push("off".into());
    }
}

#[tokio::test]
async fn boot_hook_sees_power_transitions_and_media() {
    let rec = Recorder::default();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(SimBuilder::new()
        .boot_hook(rec.clone())
        .share(irmc_sim::ShareMapEntry::new(
            "127.0.0.1",
            "share",
            dir.path(),
        )))
    .await;
    let c = support::client_with_ca(sim.ca_pem());
    let node = sim.node(0);
    post_config(&c, &sim, &seq(&cd_settings(0x1A60))).await;
    post_config(
        &c,
        &sim,
        &seq(&[cmd("ConnectRemoteCdImage", "0", Some(("integer", "1")))]),
    )
    .await;
    node.update(|s| {
        s.boot.target = BootTarget::Cd;
        s.boot.enabled = BootEnabled::Once;
    });
    post_config(&c, &sim, &seq(&[cmd("PowerOnCabinet", "0", None)])).await;
    post_config(&c, &sim, &seq(&[cmd("PowerOnCabinet", "0", None)])).await; // already on: no event
    post_config(&c, &sim, &seq(&[cmd("ResetServer", "0", None)])).await;
    post_config(&c, &sim, &seq(&[cmd("PowerOffCabinet", "0", None)])).await;
    post_config(&c, &sim, &seq(&[cmd("ResetServer", "0", None)])).await; // off: no event
    assert_eq!(
        *rec.events.lock().unwrap(),
        vec!["on:power-on:Cd", "off", "on:reset:None", "off"]
    );
    let snaps = rec.snapshots.lock().unwrap().clone();
    let s0 = &snaps[0];
    assert_eq!(s0.boot.enabled, BootEnabled::Once);
    assert!(s0.media(MediaKind::Cd).connected);
    assert_eq!(s0.cd.image_name, "deploy & co.iso");
    assert_eq!(
        s0.shares.resolve("127.0.0.1", "share").unwrap().dir,
        dir.path()
    );
    assert_eq!(s0.address, sim.addresses()[0].ip);
    let st = node.state();
    let last = st.last_boot.unwrap();
    assert_eq!(last.generation, 2);
    assert!(!node.is_current(2));
    assert!(
        !st.ramdisk_running,
        "power-off clears the running ramdisk flag"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_json() {
    let sim = sim(SimBuilder::new()).await;
    let c = support::client_with_ca(sim.ca_pem());
    post_config(&c, &sim, &seq(&cd_settings(0x1A60))).await;
    let st = sim.node(0).state();
    let dbg = format!("{st:?}");
    let json = serde_json::to_string(&st).unwrap();
    for text in [&dbg, &json] {
        assert!(!text.contains("p<w"), "{text}");
        assert!(text.contains("******"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn control_api_over_http() {
    let sim = sim(SimBuilder::new()
        .count(3)
        .control("127.0.0.1:0".parse().unwrap()))
    .await;
    let ctl = format!("http://{}", sim.control_addr().unwrap());
    let c = reqwest::Client::new();
    let h: serde_json::Value = c
        .get(format!("{ctl}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["nodes"], 3);
    let nodes: serde_json::Value = c
        .get(format!("{ctl}/nodes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    assert_eq!(nodes[1]["ip"], sim.addresses()[1].ip.to_string());
    assert_eq!(nodes[1]["state"]["power"], "Off");

    // Power on node 2 through the control API; soft-off needs the agent flag.
    let r: serde_json::Value = c
        .post(format!("{ctl}/nodes/2/power"))
        .json(&serde_json::json!({"action":"on"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["power"], "On");
    c.post(format!("{ctl}/nodes/2/agent"))
        .json(&serde_json::json!({"connected":true}))
        .send()
        .await
        .unwrap();
    assert!(sim.node(2).state().serverview_agent);

    // Faults at run time.
    let r = c
        .post(format!("{ctl}/nodes/1/faults"))
        .json(&serde_json::json!({"spec":"error-rate=1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tc = support::client_with_ca(sim.ca_pem());
    let r = tc
        .get(url(&sim, 1, "/report.xml"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let r = c
        .post(format!("{ctl}/faults"))
        .json(&serde_json::json!({"spec":"node=1,clear"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = tc
        .get(url(&sim, 1, "/report.xml"))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bad = c
        .post(format!("{ctl}/faults"))
        .json(&serde_json::json!({"spec":"bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Counters.
    let cnt: serde_json::Value = c
        .get(format!("{ctl}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cnt["nodes"]["1"]["report"], 1);
    assert_eq!(cnt["total"]["total"], 2);
    let one: serde_json::Value = c
        .get(format!("{ctl}/nodes/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["state"]["counters"]["report"], 1);
    c.post(format!("{ctl}/counters/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.total_counters().total, 0);
    assert_eq!(
        c.get(format!("{ctl}/nodes/9"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.get(format!("{ctl}/x")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}
