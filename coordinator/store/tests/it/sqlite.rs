//! The SQLite backend against the conformance suite, plus SQLite-specific checks.

use std::path::PathBuf;

use coordinator_core::NodeId;
use coordinator_store::{SqliteStore, Store, StoreError, conformance, sqlite_path};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    conformance::run_all(|k| {
        let path = root.join(format!("store-{k}"));
        async move { SqliteStore::open(&path).await.unwrap() }
    })
    .await;
}

/// The same suite with secrets sealed at rest (what the coordinator always uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_with_secret_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    let keys = coordinator_store::SecretKeys::generate();
    conformance::run_all(|k| {
        let path = root.join(format!("store-{k}"));
        let keys = keys.clone();
        async move { SqliteStore::open_with(&path, Some(keys)).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn fresh_dir_is_migrated_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let st = SqliteStore::open(&data).await.unwrap();
    assert!(
        sqlite_path(&data).is_file(),
        "creates data_dir/coordinator.sqlite"
    );
    assert_eq!(
        st.stored_schema_version().await.unwrap(),
        SqliteStore::schema_version()
    );
    st.create_node(&conformance::sample_node(Uuid::new_v4(), Some("w")))
        .await
        .unwrap();
    // WAL mode leaves a -wal file next to the database while open.
    assert!(data.join("coordinator.sqlite-wal").exists());
    st.close().await;
    // Reopen: no migration re-run, data intact.
    let st = SqliteStore::open(&data).await.unwrap();
    assert_eq!(
        st.stored_schema_version().await.unwrap(),
        SqliteStore::schema_version()
    );
    assert!(
        st.get_node(&NodeId::Name("w".into()))
            .await
            .unwrap()
            .is_some()
    );
}

/// Node definitions (BMC addresses and users; passwords too without an at-rest key) are
/// readable by the coordinator's user only: the database file and its WAL files are 0600,
/// on a fresh store and on one a looser umask created.
#[tokio::test]
async fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let db = coordinator_store::sqlite_path(dir.path());
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let st = SqliteStore::open(dir.path()).await.unwrap();
    st.create_node(&conformance::sample_node(Uuid::new_v4(), Some("private")))
        .await
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    st.close().await;
    let fresh = tempfile::tempdir().unwrap();
    let st = SqliteStore::open(fresh.path()).await.unwrap();
    let mode = std::fs::metadata(coordinator_store::sqlite_path(fresh.path()))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    st.close().await;
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteStore::open(dir.path()).await.unwrap();
    st.close().await;
    drop(st);
    // Simulate a database written by a later release, with the real sqlite3 file
    // format: bump the recorded version through a second connection.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", sqlite_path(dir.path()).display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO schema_version (version) VALUES (999)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Migration { version, detail }) => {
            assert_eq!(version, 999);
            assert!(detail.contains("newer"), "{detail}");
        }
        other => panic!("expected a migration error, got {other:?}"),
    }
}

#[tokio::test]
async fn unusable_data_dir_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    match SqliteStore::open(&file).await {
        Err(e @ StoreError::Io { .. }) => assert!(e.to_string().contains("not-a-dir"), "{e}"),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[tokio::test]
async fn secrets_do_not_leak_through_debug() {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteStore::open(dir.path()).await.unwrap();
    let mut n = conformance::sample_node(Uuid::new_v4(), Some("s"));
    n.status.agent_token = Some(coordinator_core::Secret::new("tok-very-secret"));
    st.create_node(&n).await.unwrap();
    let got = st
        .get_node(&NodeId::Name("s".into()))
        .await
        .unwrap()
        .unwrap();
    let dbg = format!("{got:?}");
    assert!(!dbg.contains("tok-very-secret"), "{dbg}");
    assert!(!dbg.contains("s3cr"), "{dbg}");
}

/// Throughput and size figures. Run:
/// `cargo test --release -p coordinator-store --test it -- sqlite::scale_figures --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_figures() {
    use coordinator_core::{DeployStep, ProvisionState};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    // Secrets sealed, as the coordinator runs it (`SCALE_NO_KEYS=1` for the bare figures).
    let keys = std::env::var_os("SCALE_NO_KEYS")
        .is_none()
        .then(coordinator_store::SecretKeys::generate);
    let st = SqliteStore::open_with(dir.path(), keys).await.unwrap();
    const N: usize = 100_000;
    let ids: Vec<Uuid> = (0..N).map(|_| Uuid::new_v4()).collect();
    let nodes: Vec<coordinator_core::Node> = ids
        .iter()
        .enumerate()
        .map(|(i, u)| conformance::sample_node(*u, Some(&format!("node-{i:06}"))))
        .collect();
    // 2,000 one by one, the rest with create_nodes in batches of 1,000.
    let t = Instant::now();
    for n in &nodes[..2_000] {
        st.create_node(n).await.unwrap();
    }
    let single = 2_000.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in nodes[2_000..].chunks(1_000) {
        st.create_nodes(chunk).await.unwrap();
    }
    let bulk = (N - 2_000) as f64 / t.elapsed().as_secs_f64();

    let mut status = conformance::sample_node(ids[0], None).status;
    status.provision_state = ProvisionState::Deploying;
    status.step = DeployStep::Queued;
    status.agent = Some("agent-01".into());
    status.progress = "waiting for a share slot".into();

    // Batches of 1.
    let n1 = 5_000;
    let t = Instant::now();
    for u in &ids[..n1] {
        st.update_statuses(&[(*u, 1, status.clone())])
            .await
            .unwrap();
    }
    let b1 = n1 as f64 / t.elapsed().as_secs_f64();
    // Batches of 100 over the rest.
    let t = Instant::now();
    let mut done = 0;
    for chunk in ids[n1..].chunks(100) {
        let batch: Vec<(Uuid, u64, coordinator_core::NodeStatus)> =
            chunk.iter().map(|u| (*u, 1, status.clone())).collect();
        st.update_statuses(&batch).await.unwrap();
        done += chunk.len();
    }
    let b100 = done as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let in_flight = st.nodes_in_flight().await.unwrap().len();
    let scan = t.elapsed();
    let t = Instant::now();
    let placed = st.placements().await.unwrap().len();
    let index = t.elapsed();
    let t = Instant::now();
    let mut marker = None;
    let mut paged = 0;
    loop {
        let page = st
            .list_nodes(&Default::default(), 1000, marker)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        marker = Some(last.uuid());
        paged += page.len();
    }
    let full = t.elapsed();
    println!("placements() of {placed} nodes {index:?}; list_nodes paging {paged} nodes {full:?}");
    st.close().await;
    let bytes = std::fs::metadata(sqlite_path(dir.path())).unwrap().len();
    println!(
        "create_node {single:.0}/s, create_nodes(1000) {bulk:.0}/s; update_statuses batch=1: {b1:.0} statuses/s; \
         batch=100: {b100:.0} statuses/s; nodes_in_flight ({in_flight}) {scan:?}; \
         db file {bytes} bytes = {:.0} bytes/node",
        bytes as f64 / N as f64
    );
}
