//! `vmedia bmc` against a stand-in iRMC on loopback: flags, output, and the exact requests.

//! Runs the commands against a tiny scripted HTTP server on 127.0.0.1:0.
use super::*;
use clap::Parser;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct TestCli {
    #[command(subcommand)]
    cmd: BmcCommand,
}

type Seen = Arc<Mutex<Vec<String>>>;

/// Serves `routes` (path prefix -> (status, body)); records request heads+bodies.
async fn serve(routes: Vec<(&'static str, u16, String)>) -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                loop {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(text);
                let (status, body) = routes
                    .iter()
                    .find(|(p, _, _)| path.starts_with(p))
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((404, String::new()));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn parse<S: AsRef<str>>(args: &[S]) -> BmcCommand {
    let mut v = vec!["t".to_owned()];
    v.extend(args.iter().map(|a| a.as_ref().to_owned()));
    TestCli::try_parse_from(v).unwrap().cmd
}

const OK: &str =
    "<Status><Value>0</Value><Severity>Information</Severity><Message>No Error</Message></Status>";

fn report(model: &str, fw: &str) -> String {
    irmc::wire::build_report(&irmc::Report {
        model: model.into(),
        firmware: fw.into(),
        memory_mb: 8192,
        cpu_cores: 16,
        has_virtual_fd: false,
    })
}

#[tokio::test]
async fn info_json_and_text() {
    let (port, _) = serve(vec![
        ("/report.xml", 200, report("iRMC S4", "7.65F")),
        (
            "/redfish/v1/Systems/0",
            200,
            r#"{"PowerState":"On"}"#.into(),
        ),
    ])
    .await;
    let port_s = port.to_string();
    let conn = [
        "--address",
        "127.0.0.1",
        "--username",
        "admin",
        "--password",
        "pw",
        "--port",
        &port_s,
        "--http",
    ];
    let mut args = vec!["info", "--json"];
    args.extend_from_slice(&conn);
    let mut out = Vec::new();
    let code = run_to(parse(&args), &mut out).await.unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "iRMC S4");
    assert_eq!(v["firmware"], "7.65F");
    assert_eq!(v["virtual_floppy"], true);
    assert_eq!(v["power_state"], "On");

    let mut args = vec!["info"];
    args.extend_from_slice(&conn);
    let mut out = Vec::new();
    run_to(parse(&args), &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("virtual floppy:  yes"), "{text}");
    assert!(!text.contains("pw"));
}

#[tokio::test]
async fn info_without_management_controllers_is_one_line_error() {
    let (port, _) = serve(vec![(
        "/report.xml",
        200,
        "<?xml version=\"1.0\"?><Root><System><Memory><Installed>1</Installed></Memory></System></Root>".into(),
    )])
    .await;
    let port_s = port.to_string();
    let cmd = parse(&[
        "info",
        "--address",
        "127.0.0.1",
        "--username",
        "u",
        "--password",
        "sekret",
        "--port",
        &port_s,
        "--http",
    ]);
    let err = run_to(cmd, &mut Vec::new()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("ManagementControllers"), "{msg}");
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(!msg.contains("sekret"));
}

#[tokio::test]
async fn power_media_boot_send_the_right_requests() {
    let dump = "<CMDSEQ><CMD OE=\"1A60\"><DATA>10.0.0.1</DATA></CMD><CMD OE=\"1A65\"><DATA>s</DATA></CMD><CMD OE=\"1A66\"><DATA>i.iso</DATA></CMD></CMDSEQ>";
    let (port, seen) = serve(vec![
        ("/config", 200, OK.into()),
        ("/iRMC_Settings.pre", 200, dump.into()),
        (
            "/redfish/v1/Systems/0",
            200,
            r#"{"PowerState":"Off"}"#.into(),
        ),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "file-pw\n").unwrap();
    let sharepw = dir.path().join("spw");
    std::fs::write(&sharepw, "sh<are&pw\n").unwrap();
    let port_s = port.to_string();
    let pw = pwfile.to_str().unwrap();
    let conn = vec![
        "--address",
        "127.0.0.1",
        "--username",
        "admin",
        "--password-file",
        pw,
        "--port",
        &port_s,
        "--http",
    ];
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .chain(conn.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let mut out = Vec::new();
    run_to(parse(&with(&["power", "cycle"])), &mut out)
        .await
        .unwrap();
    run_to(parse(&with(&["power", "status"])), &mut out)
        .await
        .unwrap();
    let spw = sharepw.to_str().unwrap();
    run_to(
        parse(&with(&[
            "media",
            "attach-cd",
            "--server",
            "10.0.0.1",
            "--share-type",
            "nfs",
            "--share-name",
            "/export",
            "--image",
            "d.iso",
            "--share-user",
            "su",
            "--share-password-file",
            spw,
        ])),
        &mut out,
    )
    .await
    .unwrap();
    run_to(parse(&with(&["media", "detach-cd"])), &mut out)
        .await
        .unwrap();
    run_to(parse(&with(&["media", "detach-fd"])), &mut out)
        .await
        .unwrap();
    run_to(
        parse(&with(&["boot", "cd", "--legacy", "--persistent"])),
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Off\n"), "{text}");

    let seen = seen.lock().unwrap().clone();
    let all = seen.join("\n----\n");
    assert!(seen[0].contains("OC=\"PowerOffOnCabinet\""), "{all}");
    // Basic auth with the password from the file (admin:file-pw).
    assert!(seen[0].contains("Basic YWRtaW46ZmlsZS1wdw=="), "{all}");
    assert!(
        seen[2].contains("<DATA Type=\"xsd::string\" Encrypted=\"0\">sh&lt;are&amp;pw</DATA>"),
        "{all}"
    );
    assert!(
        seen[2].contains(
            "OE=\"1A64\" OI=\"0\" Type=\"SET\">\n    <DATA Type=\"xsd::integer\">0</DATA>"
        ),
        "{all}"
    );
    assert!(seen[3].contains("OC=\"ConnectRemoteCdImage\""), "{all}");
    // detach-cd: dump then disconnect; detach-fd: dump only (FD not configured).
    assert!(
        seen[4].starts_with("GET /iRMC_Settings.pre?P45=1&SAVE_DATA=1"),
        "{all}"
    );
    assert!(
        seen[5].contains("<DATA Type=\"xsd::integer\">0</DATA>"),
        "{all}"
    );
    assert!(seen[6].starts_with("GET /iRMC_Settings.pre"), "{all}");
    assert!(seen[7].starts_with("PATCH /redfish/v1/Systems/0"), "{all}");
    assert!(seen[7].contains(r#""BootSourceOverrideEnabled":"Continuous","BootSourceOverrideMode":"Legacy","BootSourceOverrideTarget":"Cd""#), "{all}");
    assert_eq!(seen.len(), 8, "{all}");
}

#[test]
fn transport_flags() {
    let conn = ["--address", "a", "--username", "u", "--password", "p"];
    let BmcCommand::Power { via, conn: c, .. } = parse(
        &[
            &[
                "power",
                "status",
                "--transport",
                "ipmi",
                "--ipmi-port",
                "6230",
            ][..],
            &conn,
        ]
        .concat(),
    ) else {
        panic!("not power");
    };
    let mut cfg = c.to_config().unwrap();
    via.apply(&mut cfg);
    assert_eq!((cfg.transport, cfg.ipmi.port), (Transport::Ipmi, 6230));
    let BmcCommand::Boot { via, .. } = parse(&[&["boot", "cd"][..], &conn].concat()) else {
        panic!("not boot");
    };
    assert_eq!((via.transport, via.ipmi_port), (TransportArg::Auto, 623));
    let mut bad = vec!["t", "power", "on", "--transport", "snmp"];
    bad.extend(conn);
    assert!(TestCli::try_parse_from(bad).is_err());
}

#[test]
fn flags_validate() {
    // Password or password file is required; --ca and --insecure conflict.
    assert!(TestCli::try_parse_from(["t", "info", "--address", "a", "--username", "u"]).is_err());
    assert!(
        TestCli::try_parse_from([
            "t",
            "info",
            "--address",
            "a",
            "--username",
            "u",
            "--password",
            "p",
            "--ca",
            "x",
            "--insecure"
        ])
        .is_err()
    );
    let BmcCommand::Info { conn, .. } = parse(&[
        "info",
        "--address",
        "a",
        "--username",
        "u",
        "--password",
        "p",
        "--auth",
        "digest",
        "--insecure",
        "--port",
        "80",
    ]) else {
        panic!()
    };
    let cfg = conn.to_config().unwrap();
    assert_eq!(cfg.auth, AuthMethod::Digest);
    assert_eq!(cfg.verify, TlsVerify::Insecure);
    assert_eq!(cfg.scheme, Scheme::Http);
    assert_eq!(format!("{cfg:?}").matches("******").count(), 1);
    assert!(!format!("{cfg:?}").contains("\"p\""));
}
