//! Fujitsu's OEM Redfish virtual media (settings in `Systems/0/Oem/ts_fujitsu/VirtualMedia`,
//! the `#FTSComputerSystem.VirtualMedia` action) against `irmc-sim`, whose side follows
//! Fujitsu's Ansible modules `irmc_setvm`/`irmc_connectvm`: CD and HD images on NFS and
//! CIFS, eject, the S4 and S5/S6 action keys, a licence refusal.

use std::time::Duration;

use irmc::{BmcConfig, IrmcClient, IrmcError, MediaKind, MediaLocation, Scheme, Secret, ShareType};
use irmc_sim::{Model, Sim, SimBuilder};

const PASSWORD: &str = "fts-pw";

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

fn client(sim: &Sim) -> IrmcClient {
    let addr = sim.addresses()[0].http.unwrap();
    let mut cfg = BmcConfig::new(addr.ip().to_string(), "admin", Secret::new(PASSWORD));
    cfg.port = addr.port();
    cfg.scheme = Scheme::Http;
    cfg.timeout = Duration::from_secs(10);
    IrmcClient::new(cfg.with_node("node-fts")).unwrap()
}

fn loc(share_type: ShareType, image: &str) -> MediaLocation {
    MediaLocation {
        server: "192.0.2.10".into(),
        share_type,
        share_name: "deploy".into(),
        image_name: image.into(),
        user_name: if share_type == ShareType::Cifs {
            "smbuser".into()
        } else {
            String::new()
        },
        password: Secret::new(if share_type == ShareType::Cifs {
            "share-pw<&"
        } else {
            ""
        }),
        domain: String::new(),
    }
}

#[tokio::test]
async fn cd_and_hd_on_nfs_and_cifs_for_s4_and_s6() {
    for (model, fw) in [
        (Model::S4, "9.62F"),
        (Model::S5, "1.60P"),
        (Model::S6, "2.50P"),
    ] {
        let sim = sim(SimBuilder::new().model(model).firmware(fw)).await;
        let c = client(&sim);
        let before = c.requests_sent();
        c.fts_attach(MediaKind::Cd, &loc(ShareType::Nfs, "deploy.iso"))
            .await
            .unwrap();
        let attach_requests = c.requests_sent() - before;
        c.fts_attach(MediaKind::Hd, &loc(ShareType::Cifs, "params.img"))
            .await
            .unwrap();
        let st = sim.node(0).state();
        assert!(st.cd.connected && st.hd.connected, "{model:?}");
        assert_eq!(st.cd.share_type, irmc_sim::ShareType::Nfs);
        assert_eq!(
            (st.cd.server.as_str(), st.cd.image_name.as_str()),
            ("192.0.2.10", "deploy.iso")
        );
        assert_eq!(st.hd.share_type, irmc_sim::ShareType::Cifs);
        assert_eq!(st.hd.user, "smbuser");
        assert_eq!(
            st.hd.password.expose(),
            "share-pw<&",
            "the password arrived intact"
        );
        // Attaching a new image to a connected drive disconnects it first.
        c.fts_attach(MediaKind::Cd, &loc(ShareType::Nfs, "other.iso"))
            .await
            .unwrap();
        assert_eq!(sim.node(0).state().cd.image_name, "other.iso");
        assert!(c.fts_eject(MediaKind::Cd).await.unwrap());
        assert!(
            !c.fts_eject(MediaKind::Cd).await.unwrap(),
            "already ejected"
        );
        assert!(c.fts_eject(MediaKind::Hd).await.unwrap());
        let st = sim.node(0).state();
        assert!(!st.cd.connected && !st.hd.connected);
        eprintln!("{model:?} {fw}: OEM attach of a CD = {attach_requests} requests");
        assert_eq!(attach_requests, 4);
    }
}

#[tokio::test]
async fn a_licence_refusal_says_licence() {
    let sim = sim(SimBuilder::new()
        .model(Model::S6)
        .firmware("2.50P")
        .licensed(false))
    .await;
    let c = client(&sim);
    let err = c
        .fts_attach(MediaKind::Cd, &loc(ShareType::Cifs, "deploy.iso"))
        .await
        .unwrap_err();
    assert!(matches!(err, IrmcError::Licence { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Inserting virtual cdrom") && text.contains("node-fts"),
        "{text}"
    );
    assert!(
        !text.contains("share-pw") && !text.contains(PASSWORD),
        "{text}"
    );
    assert!(matches!(
        c.fts_attach(MediaKind::Fd, &loc(ShareType::Nfs, "x.img"))
            .await,
        Err(IrmcError::Unsupported { .. })
    ));
}
