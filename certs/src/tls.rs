//! Mutual-TLS configurations for rustls: TLS 1.3 only, ALPN `vault/1`, the
//! cluster CA as the only trust root on both sides.

use crate::files::{read_certificates, read_private_key};
use crate::{CertsError, Identity, ALPN_PROTOCOL};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What a node or client needs to speak mutual TLS in the cluster: the
/// cluster CA, its own certificate chain and private key, and the identity
/// its certificate carries.
///
/// Loading checks that the certificate names exactly one identity; the
/// configs built from it trust only the cluster CA.
pub struct Credentials {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    identity: Identity,
}

impl Credentials {
    /// Loads the CA certificate, the own certificate (chain) and private key
    /// from PEM files.
    pub fn load(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, CertsError> {
        let mut authorities = read_certificates(ca_path)?;
        let chain = read_certificates(cert_path)?;
        let key = read_private_key(key_path)?;
        // `read_certificates` refuses a file without certificates, so there
        // is at least one; the first is the CA to trust.
        let ca = authorities.swap_remove(0);
        Self::new(ca, chain, key)
    }

    /// Builds credentials from PEM text held in memory (tests, `cluster
    /// init` right after issuing).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertsError> {
        let pem_error = |what: &str| CertsError::Pem {
            path: what.into(),
            reason: "malformed PEM".to_string(),
        };
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|_| pem_error("<ca certificate>"))?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| pem_error("<certificate>"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|_| pem_error("<private key>"))?;
        Self::new(ca, chain, key)
    }

    fn new(
        ca: CertificateDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CertsError> {
        let leaf = chain.first().ok_or(CertsError::EmptyChain)?;
        let identity = Identity::from_certificate(leaf)?;
        Ok(Credentials {
            ca,
            chain,
            key,
            identity,
        })
    }

    /// The identity of the own certificate.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A server config that requires every client to present a certificate
    /// chained to the cluster CA (no anonymous clients), offers only TLS 1.3
    /// and only ALPN `vault/1`.
    pub fn server_config(&self) -> Result<ServerConfig, CertsError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|error| CertsError::Tls(error.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        Ok(config)
    }

    /// A client config that verifies the server's chain against the cluster
    /// CA and its DNS/IP SANs against the name dialled, presents the own
    /// certificate, offers only TLS 1.3 and only ALPN `vault/1`.
    ///
    /// The server's *identity* (which node it is) is not checked here: the
    /// caller compares [`Identity::from_certificate`] of the peer's
    /// certificate with the node it meant to reach.
    pub fn client_config(&self) -> Result<ClientConfig, CertsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        Ok(config)
    }

    /// A secret HMAC-SHA256 key derived from the own private key and
    /// `label`: the same every time this node starts, unknown to anyone
    /// without its private key, and different for every label.
    ///
    /// The transport uses it as the QUIC stateless-reset key. A node that
    /// restarts after a crash can then send valid resets for connections
    /// it has forgotten, so peers notice at once instead of after their
    /// idle timeout.
    pub fn derive_hmac_key(&self, label: &[u8]) -> ring::hmac::Key {
        let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let derived = ring::hmac::sign(&master, label);
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, CertsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }
}

impl fmt::Debug for Credentials {
    /// Shows the identity only, never the key.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// rustls' `ring` provider, built explicitly so that the configs never
/// depend on a process-wide default being installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
