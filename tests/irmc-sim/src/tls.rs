//! TLS material: one CA generated at start, and a leaf certificate per simulated iRMC
//! (IP SAN = the node's address) made lazily on its first TLS connection.
//!
//! Why not one certificate whose SANs list every address: with 10,000 nodes that
//! certificate is ~60 KB and would be sent on every handshake. A CA plus small leaves
//! keeps handshakes cheap and lets clients verify against one PEM (`--cert-out`).
//!
//! Memory per node is kept to the leaf certificate (~0.5 KB): all leaves share one key
//! pair, and every node's `ServerConfig` is a clone of one base configuration (clones
//! share the session cache, ticketer and key through `Arc`s) with its own certificate
//! resolver. IP connections carry no SNI, so the resolver is fixed per listener.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use tokio_rustls::TlsAcceptor;

use crate::SimError;

pub(crate) struct TlsMaterial {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    signing_key: Arc<dyn SigningKey>,
    base: rustls::ServerConfig,
}

fn tls_err(e: impl std::fmt::Display) -> SimError {
    SimError::Tls(e.to_string())
}

/// Always presents the same certificate (the listener's node).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl TlsMaterial {
    pub(crate) fn generate() -> Result<Self, SimError> {
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "irmc-sim CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "irmc-sim");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).map_err(tls_err)?;
        let issuer = Issuer::new(params, ca_key);
        let leaf_key = KeyPair::generate().map_err(tls_err)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = provider
            .key_provider
            .load_private_key(der)
            .map_err(tls_err)?;
        // Placeholder resolver; each node's clone replaces it.
        let placeholder = Arc::new(CertifiedKey::new(
            vec![ca_cert.der().clone()],
            signing_key.clone(),
        ));
        let base = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(placeholder)));
        Ok(TlsMaterial {
            ca_pem: ca_cert.pem(),
            issuer,
            leaf_key,
            signing_key,
            base,
        })
    }

    /// PEM of the CA that signs every node certificate.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A TLS acceptor presenting a certificate for `ip`.
    pub(crate) fn acceptor_for(&self, ip: Ipv4Addr) -> Result<TlsAcceptor, SimError> {
        let mut params = CertificateParams::new(vec![ip.to_string()]).map_err(tls_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, ip.to_string());
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(tls_err)?;
        let key = Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            self.signing_key.clone(),
        ));
        let mut cfg = self.base.clone();
        cfg.cert_resolver = Arc::new(Fixed(key));
        Ok(TlsAcceptor::from(Arc::new(cfg)))
    }
}
