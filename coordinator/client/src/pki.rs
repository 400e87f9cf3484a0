//! A development PKI and API tokens for one coordinator (or several replicas) and N share
//! agents, so that even a laptop setup runs encrypted and authenticated. This is the code
//! behind `vmedia certs init`.
//!
//! What [`init_dev_pki`] writes into the directory (keys and tokens mode 0600):
//! - `ca.pem`, `ca-key.pem`: the CA that signs everything below. Give `ca.pem` to the
//!   coordinator (`--agent-ca-file`: it admits only agents whose certificate it signed)
//!   and to every client (to verify the coordinator).
//! - `coordinator.pem`, `coordinator-key.pem`: the coordinator's server certificate, for
//!   `localhost`, `127.0.0.1` and every `--host` given.
//! - `agents/<id>.pem`, `agents/<id>-key.pem`: one client certificate per share agent,
//!   its id as common name and DNS name.
//! - `tokens`: the coordinator's API token file (`<role> <token>` per line), and
//!   `admin.token`, `reader.token`: one token each for clients (`VMEDIA_TOKEN_FILE`).
//! - `secret.key`: the coordinator's at-rest key (`--secret-key-file`; every replica of
//!   one database needs the same one).
//!
//! `vmedia demo` and the end-to-end tests make theirs with the same function (the
//! `testkit` crate's fleet). Production sites use their own CA: the coordinator only needs
//! PEM files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What to create.
#[derive(Debug, Clone)]
pub struct PkiSpec {
    pub dir: PathBuf,
    pub agent_ids: Vec<String>,
    /// Coordinator names besides `localhost` and `127.0.0.1`.
    pub hosts: Vec<String>,
    pub force: bool,
}

/// Paths of everything [`init_dev_pki`] wrote.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub coordinator_cert: PathBuf,
    pub coordinator_key: PathBuf,
    /// Agent id -> (certificate, key).
    pub agents: BTreeMap<String, (PathBuf, PathBuf)>,
    /// The coordinator's token file (`<role> <token>` lines).
    pub tokens: PathBuf,
    pub admin_token: PathBuf,
    pub reader_token: PathBuf,
    /// At-rest key file for the coordinator (`<key id> <base64 key>`).
    pub secret_key: PathBuf,
}

/// Agent ids become DNS names in certificates: keep them to what a DNS label allows.
fn check_agent_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        bail!("agent id {id:?}: use 1-63 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// Writes the CA, the coordinator's and each agent's certificate and key, and tokens.
/// Refuses to overwrite existing files unless `spec.force`.
pub fn init_dev_pki(spec: &PkiSpec) -> Result<DevPki> {
    for id in &spec.agent_ids {
        check_agent_id(id)?;
    }
    let dir = &spec.dir;
    std::fs::create_dir_all(dir.join("agents"))
        .with_context(|| format!("creating {}", dir.join("agents").display()))?;
    let pki = DevPki {
        dir: dir.clone(),
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        coordinator_cert: dir.join("coordinator.pem"),
        coordinator_key: dir.join("coordinator-key.pem"),
        agents: spec
            .agent_ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    (
                        dir.join("agents").join(format!("{id}.pem")),
                        dir.join("agents").join(format!("{id}-key.pem")),
                    ),
                )
            })
            .collect(),
        tokens: dir.join("tokens"),
        admin_token: dir.join("admin.token"),
        reader_token: dir.join("reader.token"),
        secret_key: dir.join("secret.key"),
    };
    if !spec.force && pki.ca_cert.exists() {
        bail!(
            "{} already exists (use --force to replace the whole set)",
            pki.ca_cert.display()
        );
    }

    // The CA.
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vmedia development CA");
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "vmedia");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    write_public(&pki.ca_cert, &ca_cert.pem())?;
    write_private(&pki.ca_key, &ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca_params, ca_key);

    // The coordinator: a server certificate.
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for h in &spec.hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut p = CertificateParams::new(names).context("coordinator host names")?;
    p.distinguished_name
        .push(DnType::CommonName, "vmedia coordinator");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = p
        .signed_by(&key, &issuer)
        .context("signing the coordinator certificate")?;
    write_public(&pki.coordinator_cert, &cert.pem())?;
    write_private(&pki.coordinator_key, &key.serialize_pem())?;

    // One client certificate per agent.
    for (id, (cert_path, key_path)) in &pki.agents {
        let mut p =
            CertificateParams::new(vec![id.clone()]).with_context(|| format!("agent id {id:?}"))?;
        p.distinguished_name.push(DnType::CommonName, id.as_str());
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = p
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing the certificate of agent {id}"))?;
        write_public(cert_path, &cert.pem())?;
        write_private(key_path, &key.serialize_pem())?;
    }

    // API tokens: 256 random bits each, hex.
    let admin = new_token();
    let reader = new_token();
    write_private(
        &pki.tokens,
        &format!(
            "# vmedia coordinator API tokens: <role> <token> [name]; roles: admin, reader\n\
             admin {admin} admin\nreader {reader} reader\n"
        ),
    )?;
    write_private(&pki.admin_token, &format!("{admin}\n"))?;
    write_private(&pki.reader_token, &format!("{reader}\n"))?;

    // The at-rest key, in the coordinator's key-file format.
    use base64::Engine as _;
    let key: [u8; 32] = rand::random();
    let id: [u8; 6] = rand::random();
    write_private(
        &pki.secret_key,
        &format!(
            "# coordinator at-rest secret key: <key id> <base64 key>; the first line seals\nk{} {}\n",
            hex::encode(id),
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
    )?;
    Ok(pki)
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn write_public(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes a file only its owner can read (created 0600, then filled).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing file keeps its old mode on open: tighten it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> PkiSpec {
        PkiSpec {
            dir: dir.to_path_buf(),
            agent_ids: vec!["share-1".into(), "share-2".into()],
            hosts: vec!["coord.example".into()],
            force: false,
        }
    }

    #[test]
    fn writes_a_complete_private_set_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let pki = init_dev_pki(&spec(dir.path())).unwrap();
        for p in [&pki.ca_cert, &pki.coordinator_cert] {
            let t = std::fs::read_to_string(p).unwrap();
            assert!(
                t.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                p.display()
            );
        }
        for p in [
            &pki.ca_key,
            &pki.coordinator_key,
            &pki.tokens,
            &pki.admin_token,
            &pki.reader_token,
            &pki.secret_key,
            &pki.agents["share-2"].1,
        ] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let tokens = std::fs::read_to_string(&pki.tokens).unwrap();
        let admin = std::fs::read_to_string(&pki.admin_token).unwrap();
        let reader = std::fs::read_to_string(&pki.reader_token).unwrap();
        assert_eq!(admin.trim().len(), 64);
        assert_ne!(admin, reader);
        assert!(tokens.contains(&format!("admin {}", admin.trim())));
        assert!(tokens.contains(&format!("reader {}", reader.trim())));
        assert!(
            init_dev_pki(&spec(dir.path())).is_err(),
            "no silent overwrite"
        );
        let again = init_dev_pki(&PkiSpec {
            force: true,
            ..spec(dir.path())
        })
        .unwrap();
        assert_ne!(std::fs::read_to_string(&again.admin_token).unwrap(), admin);
    }

    #[test]
    fn bad_agent_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.agent_ids = vec!["a b".into()];
        assert!(init_dev_pki(&s).is_err());
    }

    /// The certificates really chain: a rustls server with the coordinator's certificate
    /// that requires client certificates from the CA accepts an agent and refuses a
    /// certificate from another CA.
    #[tokio::test]
    async fn certificates_chain_in_a_real_mutual_tls_handshake() {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;

        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = init_dev_pki(&spec(&dir.path().join("good"))).unwrap();
        let rogue = init_dev_pki(&spec(&dir.path().join("rogue"))).unwrap();
        let certs = |p: &Path| -> Vec<CertificateDer<'static>> {
            CertificateDer::pem_file_iter(p)
                .unwrap()
                .map(|c| c.unwrap())
                .collect()
        };
        let key = |p: &Path| PrivateKeyDer::from_pem_file(p).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&pki.ca_cert) {
            roots.add(c).unwrap();
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
            .build()
            .unwrap();
        let server = Arc::new(
            rustls::ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs(&pki.coordinator_cert), key(&pki.coordinator_key))
                .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    // Echo one byte so a client that got through can tell.
                    if let Ok(mut tls) = acceptor.accept(s).await {
                        let mut b = [0u8; 1];
                        if tls.read_exact(&mut b).await.is_ok() {
                            let _ = tls.write_all(&b).await;
                            let _ = tls.flush().await;
                        }
                    }
                });
            }
        });
        let handshake = |cert: PathBuf, keyp: PathBuf| {
            let roots = roots.clone();
            async move {
                let client = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_client_auth_cert(certs(&cert), key(&keyp))
                    .unwrap();
                let conn = tokio_rustls::TlsConnector::from(Arc::new(client));
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut tls = conn
                    .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                    .await?;
                // TLS 1.3 reports a refused client certificate on the first read.
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                tls.write_all(b"x").await?;
                let mut b = [0u8; 1];
                match tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut b))
                    .await
                {
                    Ok(Ok(1)) if b == *b"x" => Ok(()),
                    Ok(Err(e)) => Err(e),
                    other => Err(std::io::Error::other(format!("no echo: {other:?}"))),
                }
            }
        };
        let (c, k) = pki.agents["share-1"].clone();
        handshake(c, k)
            .await
            .expect("an agent of our CA is accepted");
        let (c, k) = rogue.agents["share-1"].clone();
        assert!(
            handshake(c, k).await.is_err(),
            "a certificate of another CA is refused"
        );
    }
}
