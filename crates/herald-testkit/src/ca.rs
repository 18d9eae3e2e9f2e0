//! A private certificate authority for TLS receivers on loopback: one CA, one certificate it
//! issued for the names asked (wildcards allowed), and the rustls server configuration that
//! presents it. Clients are given the CA alone (as `HERALD_CA_FILE` gives it to workers), never
//! the receiver's certificate.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// A CA and the receiver certificate it issued.
#[derive(Debug)]
pub struct TestCa {
    ca: CertificateDer<'static>,
    ca_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: Vec<u8>,
}

impl TestCa {
    /// A new CA, and a certificate from it for `names` (for example `localhost` and
    /// `*.hosts.test`).
    pub fn issue(names: &[&str]) -> Result<Self, rcgen::Error> {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
        let leaf_key = rcgen::KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf = rcgen::CertificateParams::new(names)?.signed_by(&leaf_key, &ca)?;
        Ok(Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
        })
    }

    /// The CA's certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// The CA's certificate, PEM: what a client trusting this CA is given.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A rustls server configuration presenting the issued certificate, on the ring provider,
    /// offering `alpn` (for example `h2` and `http/1.1`).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<ServerConfig, rustls::Error> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], key)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}
