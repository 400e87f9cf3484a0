//! Secrets at rest in the SQLite file: sealed with the configured key, never in clear in
//! the database bytes, refused at start-up with a missing or wrong key, and re-sealed
//! under a new key on the next write after a rotation.

use std::path::Path;

use coordinator_core::{NodeId, Secret};
use coordinator_store::{SecretKeys, SqliteStore, Store, StoreError, conformance, sqlite_path};
use uuid::Uuid;

const BMC_PW: &str = "Bmc-PW-7f3a9c-unique";
const TOKEN: &str = "ramdisk-token-5d1e88-unique";

fn key_file(dir: &Path, name: &str) -> (std::path::PathBuf, SecretKeys) {
    let p = dir.join(name);
    let k = SecretKeys::create_file(&p).unwrap();
    (p, k)
}

/// Every byte of the database, its WAL and shared-memory file.
fn db_bytes(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", sqlite_path(data).display());
        if let Ok(b) = std::fs::read(p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn node_with_secrets(st: &SqliteStore, name: &str) -> Uuid {
    let uuid = Uuid::new_v4();
    let mut n = conformance::sample_node(uuid, Some(name));
    n.spec
        .driver_info
        .insert("irmc_password".into(), BMC_PW.into());
    n.spec
        .instance_info
        .insert("image_token".into(), format!("{BMC_PW}-img"));
    n.status.agent_token = Some(Secret::new(TOKEN));
    st.create_node(&n).await.unwrap();
    uuid
}

#[tokio::test]
async fn passwords_and_tokens_are_not_in_the_database_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, keys) = key_file(dir.path(), "key");
    let st = SqliteStore::open_with(&data, Some(keys.clone()))
        .await
        .unwrap();
    let mut uuids = Vec::new();
    for i in 0..20 {
        uuids.push(node_with_secrets(&st, &format!("n{i}")).await);
    }
    // Status writes carry the token too (single and batched).
    let n = st.get_node(&NodeId::Uuid(uuids[0])).await.unwrap().unwrap();
    assert_eq!(
        n.spec.driver_info["irmc_password"], BMC_PW,
        "reads see clear text"
    );
    assert_eq!(n.status.agent_token.as_ref().unwrap().expose(), TOKEN);
    let batch: Vec<_> = uuids[1..5]
        .iter()
        .map(|u| (*u, 1, n.status.clone()))
        .collect();
    st.update_statuses(&batch).await.unwrap();
    st.update_spec(uuids[0], &n.spec).await.unwrap();

    let bytes = db_bytes(&data);
    assert!(!bytes.is_empty());
    assert!(
        !contains(&bytes, BMC_PW),
        "BMC password in clear in the SQLite file"
    );
    assert!(
        !contains(&bytes, TOKEN),
        "agent token in clear in the SQLite file"
    );
    assert!(contains(&bytes, &format!("enc:v1:{}:", keys.current_id())));
    st.close().await;
    drop(st);
    // After a checkpoint too.
    let bytes = db_bytes(&data);
    assert!(!contains(&bytes, BMC_PW));
    assert!(!contains(&bytes, TOKEN));

    // Same key again: everything reads back.
    let st = SqliteStore::open_with(&data, Some(keys)).await.unwrap();
    for u in &uuids {
        let n = st.get_node(&NodeId::Uuid(*u)).await.unwrap().unwrap();
        assert_eq!(n.spec.driver_info["irmc_password"], BMC_PW);
        assert_eq!(n.spec.instance_info["image_token"], format!("{BMC_PW}-img"));
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, keys) = key_file(dir.path(), "key");
    let st = SqliteStore::open_with(&data, Some(keys.clone()))
        .await
        .unwrap();
    node_with_secrets(&st, "a").await;
    st.close().await;
    drop(st);

    // No key at all: refused, never a silent fall-back to clear text.
    let e = SqliteStore::open(&data).await.unwrap_err();
    assert!(matches!(e, StoreError::SecretKey { .. }), "{e:?}");
    assert!(e.to_string().contains("no secret key file"), "{e}");

    // A different key under the same id: "wrong key".
    let wrong = SecretKeys::parse(
        &format!(
            "{} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            keys.current_id()
        ),
        "wrong-key-file",
    )
    .unwrap();
    let e = SqliteStore::open_with(&data, Some(wrong))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("wrong key file"), "{e}");

    // A new key without the old one: the sealed values would be unreadable.
    let (_, other) = key_file(dir.path(), "other");
    let e = SqliteStore::open_with(&data, Some(other))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains(keys.current_id()), "{text}");
    assert!(text.contains("1 node(s)"), "{text}");

    // An unreadable key file names its path.
    let e = SecretKeys::from_file(&dir.path().join("absent.key")).unwrap_err();
    assert!(e.to_string().contains("absent.key"), "{e}");
    // Errors never carry the secrets.
    assert!(!format!("{e:?}").contains(BMC_PW));
}

#[tokio::test]
async fn rotation_reseals_on_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (old_file, old) = key_file(dir.path(), "old.key");
    let st = SqliteStore::open_with(&data, Some(old.clone()))
        .await
        .unwrap();
    let a = node_with_secrets(&st, "a").await;
    let b = node_with_secrets(&st, "b").await;
    st.close().await;
    drop(st);

    // New current key, old key kept for reading (a separate old-key file).
    let (new_file, new) = key_file(dir.path(), "new.key");
    let both = SecretKeys::from_file(&new_file)
        .unwrap()
        .with_old(SecretKeys::from_file(&old_file).unwrap())
        .unwrap();
    assert_eq!(both.current_id(), new.current_id());
    let st = SqliteStore::open_with(&data, Some(both.clone()))
        .await
        .unwrap();
    // Both still read.
    let na = st.get_node(&NodeId::Uuid(a)).await.unwrap().unwrap();
    assert_eq!(na.spec.driver_info["irmc_password"], BMC_PW);
    // Writing node a (spec and status) re-seals it with the new key.
    st.update_spec(a, &na.spec).await.unwrap();
    st.update_status(a, na.version, &na.status).await.unwrap();
    st.close().await;
    drop(st);
    let bytes = db_bytes(&data);
    assert!(contains(&bytes, &format!("enc:v1:{}:", new.current_id())));

    // Only the new key: node b still needs the old one, so start-up refuses, naming it.
    let e = SqliteStore::open_with(&data, Some(new.clone()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(old.current_id()), "{e}");

    // Rewrite b too; then the old key can go.
    let st = SqliteStore::open_with(&data, Some(both)).await.unwrap();
    let nb = st.get_node(&NodeId::Uuid(b)).await.unwrap().unwrap();
    st.update_spec(b, &nb.spec).await.unwrap();
    st.update_status(b, nb.version, &nb.status).await.unwrap();
    st.close().await;
    drop(st);
    let st = SqliteStore::open_with(&data, Some(new)).await.unwrap();
    for u in [a, b] {
        let n = st.get_node(&NodeId::Uuid(u)).await.unwrap().unwrap();
        assert_eq!(n.spec.driver_info["irmc_password"], BMC_PW);
        assert_eq!(n.status.agent_token.unwrap().expose(), TOKEN);
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_node_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = SecretKeys::generate();
    let st = SqliteStore::open_with(&data, Some(keys.clone()))
        .await
        .unwrap();
    let a = node_with_secrets(&st, "a").await;
    let b = node_with_secrets(&st, "b").await;
    st.close().await;
    drop(st);
    // Copy a's spec text (with its sealed password) over b's, as an attacker with write
    // access to the file could.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", sqlite_path(&data).display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let spec_a: String = sqlx::query_scalar("SELECT spec FROM nodes WHERE uuid = ?")
            .bind(a.as_bytes().to_vec())
            .fetch_one(&mut c)
            .await
            .unwrap();
        let forged = spec_a.replace(&a.to_string(), &b.to_string());
        sqlx::query("UPDATE nodes SET spec = ? WHERE uuid = ?")
            .bind(forged)
            .bind(b.as_bytes().to_vec())
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let st = SqliteStore::open_with(&data, Some(keys)).await.unwrap();
    let e = st.get_node(&NodeId::Uuid(b)).await.unwrap_err();
    assert!(matches!(e, StoreError::Sealed { .. }), "{e:?}");
    assert!(e.to_string().contains("driver_info.irmc_password"), "{e}");
    assert!(!e.to_string().contains(BMC_PW));
}
