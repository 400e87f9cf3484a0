//! A busy iRMC: the client against `irmc-sim` with a busy window after power actions
//! and media connects. Commands refused with SCCI status 5 are sent again with bounded
//! backoff until they go through; a BMC that stays busy fails with an error naming
//! node, BMC and operation.

use std::time::{Duration, Instant};

use irmc::{
    BmcConfig, BusyPolicy, IrmcClient, IrmcError, MediaKind, MediaLocation, PowerAction, Scheme,
    Secret, ShareType,
};
use irmc_sim::{Sim, SimBuilder};

const PASSWORD: &str = "busy-pw";

async fn sim(busy: Duration) -> Sim {
    Sim::start(
        SimBuilder::new()
            .https_port(None)
            .http_port(Some(0))
            .ipmi_port(None)
            .credentials("admin", PASSWORD)
            .busy(busy),
    )
    .await
    .unwrap()
}

fn config(sim: &Sim) -> BmcConfig {
    let addr = sim.addresses()[0].http.unwrap();
    let mut cfg = BmcConfig::new(addr.ip().to_string(), "admin", Secret::new(PASSWORD));
    cfg.port = addr.port();
    cfg.scheme = Scheme::Http;
    cfg.timeout = Duration::from_secs(10);
    cfg.with_node("node-busy")
}

fn share() -> MediaLocation {
    MediaLocation {
        server: "127.0.0.1".into(),
        share_type: ShareType::Nfs,
        share_name: "/srv/share".into(),
        image_name: "deploy.iso".into(),
        user_name: String::new(),
        password: Secret::new(""),
        domain: String::new(),
    }
}

#[tokio::test]
async fn power_actions_in_a_tight_sequence_wait_out_the_busy_window() {
    let sim = sim(Duration::from_millis(300)).await;
    let c = IrmcClient::new(config(&sim)).unwrap();
    let t0 = Instant::now();
    c.power(PowerAction::On).await.unwrap();
    // The iRMC is still busy with the power-on: the off is refused, then goes through.
    c.power(PowerAction::Off).await.unwrap();
    c.attach(MediaKind::Cd, &share()).await.unwrap();
    c.attach(MediaKind::Hd, &share()).await.unwrap();
    let took = t0.elapsed();
    let st = sim.node(0).state();
    assert_eq!(st.power, irmc_sim::PowerState::Off);
    assert!(st.cd.connected && st.hd.connected);
    assert!(
        st.counters.busy_refused >= 3,
        "the simulator refused commands as busy: {:?}",
        st.counters
    );
    // Three windows of 300 ms had to pass; the backoff caps keep the overshoot small.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    eprintln!(
        "busy window 300 ms: 4 commands took {took:?}, {} refused",
        st.counters.busy_refused
    );
}

#[tokio::test]
async fn a_node_without_busy_window_is_never_refused() {
    let sim = sim(Duration::from_millis(500)).await;
    sim.node(0).update(|s| s.busy_ms = Some(0));
    let c = IrmcClient::new(config(&sim)).unwrap();
    c.power(PowerAction::On).await.unwrap();
    c.power(PowerAction::Off).await.unwrap();
    assert_eq!(sim.node(0).state().counters.busy_refused, 0);
}

#[tokio::test]
async fn a_bmc_that_stays_busy_fails_with_node_bmc_and_operation() {
    let sim = sim(Duration::from_secs(3600)).await;
    let mut cfg = config(&sim);
    cfg.busy = BusyPolicy {
        first: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        budget: Duration::from_millis(600),
    };
    let bmc = cfg.address.clone();
    let c = IrmcClient::new(cfg).unwrap();
    c.power(PowerAction::On).await.unwrap();
    let t0 = Instant::now();
    let err = c.power(PowerAction::Off).await.unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, IrmcError::Busy { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains("set_power_state"), "{text}");
    assert!(text.contains(&bmc), "{text}");
    assert!(text.contains("node-busy"), "{text}");
    assert!(text.contains("stayed busy"), "{text}");
    assert!(text.contains("Input/Output error"), "{text}");
    assert!(!text.contains(PASSWORD));
    assert!(
        took < Duration::from_secs(2),
        "bounded by the budget: {took:?}"
    );
    assert!(sim.node(0).state().counters.busy_refused >= 4);
}
