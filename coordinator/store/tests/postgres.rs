//! The PostgreSQL backend against the same conformance suite, on a throwaway
//! cluster started by the test (initdb + pg_ctl on a loopback port, fsync off).
//! Skips only when PostgreSQL is not installed AND `CI` is unset.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use coordinator_store::{PgStore, conformance};

/// Directory holding initdb/pg_ctl: `$PG_BIN`, else Debian's versioned dir, else PATH.
fn pg_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // The effective uid from /proc (no libc dependency for one call).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (initdb and
/// the server refuse to run as root).
fn run(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).output().unwrap()
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let data = dir.path().join("data");
        let out = run(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A free loopback port; retry in case another test grabs it first.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
                dir.path().display()
            );
            let log = dir.path().join("log");
            let out = run(
                &bin,
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "start",
                ],
            );
            if out.status.success() {
                return Cluster {
                    bin,
                    data,
                    port,
                    _dir: dir,
                };
            }
        }
        panic!("could not start PostgreSQL");
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "stop",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(bin) = pg_bin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is required in CI (install the postgresql package)"
        );
        eprintln!("skipping: PostgreSQL not installed");
        return;
    };
    let cluster = Cluster::start(bin);
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
async fn leader_election(cluster: &Cluster, admin: &sqlx::PgPool) {
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
