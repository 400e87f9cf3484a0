//! The PostgreSQL backend against the same conformance suite, on a throwaway
//! cluster started by the test (initdb + pg_ctl on a loopback port, fsync off).
//! Skips only when PostgreSQL is not installed AND `CI` is unset.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use coordinator_store::{PgStore, conformance};
use testkit::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    if Postgres::bin_dir().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is required in CI (install the postgresql package)"
        );
        eprintln!("skipping: PostgreSQL not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = Postgres::start(dir.path()).unwrap();
    let admin = sqlx::PgPool::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let created = Arc::new(Mutex::new(HashSet::new()));
    // With secrets sealed at rest, as the coordinator runs it.
    let keys = coordinator_store::SecretKeys::generate();
    conformance::run_all(|k| {
        let keys = keys.clone();
        let admin = admin.clone();
        let created = Arc::clone(&created);
        let url = cluster.url(&format!("conf{k}"));
        async move {
            let fresh = created.lock().unwrap().insert(k);
            if fresh {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE conf{k}")))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
            PgStore::connect_with(&url, Some(keys)).await.unwrap()
        }
    })
    .await;

    leader_election(&cluster, &admin).await;
    admin.close().await;
}

/// Three replicas campaign on one database: exactly one leads; when its session dies
/// (as when the process is SIGKILLed: the connection closes) another takes over within
/// about one poll interval, and the recorded address follows.
async fn leader_election(cluster: &Postgres, admin: &sqlx::PgPool) {
    use std::time::{Duration, Instant};
    sqlx::raw_sql("CREATE DATABASE leader_test")
        .execute(admin)
        .await
        .unwrap();
    let url = cluster.url("leader_test");
    let poll = Duration::from_millis(100);
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(PgStore::connect(&url).await.unwrap());
        let _ = i;
    }
    assert_eq!(replicas[0].leader().await.unwrap(), None);
    let first = replicas[0]
        .campaign("http://127.0.0.1:1001", "c1", poll)
        .await
        .unwrap();
    assert_eq!(
        replicas[1].leader().await.unwrap(),
        Some(("http://127.0.0.1:1001".to_string(), "c1".to_string()))
    );
    // The two others wait.
    let r2 = replicas[1].clone();
    let r3 = replicas[2].clone();
    let mut c2 =
        tokio::spawn(async move { r2.campaign("http://127.0.0.1:1002", "c2", poll).await });
    let mut c3 =
        tokio::spawn(async move { r3.campaign("http://127.0.0.1:1003", "c3", poll).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !c2.is_finished() && !c3.is_finished(),
        "only one replica may lead"
    );
    let mut first = first;
    first.check(Duration::from_secs(2)).await.unwrap();

    // The leader's session dies: drop the lease (its connection closes, as on SIGKILL).
    let t = Instant::now();
    drop(first);
    let (winner, loser) = tokio::select! {
        r = &mut c2 => (r.unwrap().unwrap(), c3),
        r = &mut c3 => (r.unwrap().unwrap(), c2),
    };
    let took = t.elapsed();
    println!("leader take-over after the leader's session died: {took:?}");
    assert!(took < Duration::from_secs(3), "take-over took {took:?}");
    let (addr, _) = replicas[0].leader().await.unwrap().unwrap();
    assert!(
        addr == "http://127.0.0.1:1002" || addr == "http://127.0.0.1:1003",
        "{addr}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!loser.is_finished(), "still only one leader");

    // A leader whose backend is terminated by the server notices on its next check.
    let mut winner = winner;
    winner.check(Duration::from_secs(2)).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid <> pg_backend_pid()",
    )
    .execute(admin)
    .await
    .unwrap();
    assert!(winner.check(Duration::from_secs(2)).await.is_err());
    // ... and the last replica takes over.
    let last = tokio::time::timeout(Duration::from_secs(5), loser)
        .await
        .expect("the third replica takes over")
        .unwrap()
        .unwrap();
    last.release().await;
    for r in replicas {
        r.close().await;
    }
}
