//! # certs: the cluster's PKI
//!
//! One CA per cluster, a certificate per node and per client, and rustls
//! configs for mutual TLS in which the CA is the only trust root. A
//! certificate's identity is its single `urn:vault:*` URI SAN, read back as
//! an [`Identity`].
//!
//! - [`CertificateAuthority`]: create, store and load the CA; issue node
//!   and client certificates.
//! - [`Credentials`]: a node's or client's CA, certificate and key, loaded
//!   from PEM; builds the rustls [`rustls::ServerConfig`] and
//!   [`rustls::ClientConfig`] (TLS 1.3 only, ALPN [`ALPN_PROTOCOL`]).
//! - [`Identity`]: who a verified peer certificate speaks for.
//!
//! File names (all PEM): [`CA_CERT_FILE`]/[`CA_KEY_FILE`] for the CA,
//! `node.crt`/`node.key` in a node's directory and `client.crt`/`client.key`
//! for a client ([`NODE_STEM`], [`CLIENT_STEM`]). Keys are created with mode
//! 0600 and never overwritten.
//!
//! ```
//! use certs::{CertificateAuthority, Credentials, Identity};
//!
//! let ca = CertificateAuthority::generate("example CA")?;
//! let node = ca.issue_node("node1", &["127.0.0.1".to_string()])?;
//! let credentials = Credentials::from_pem(ca.certificate_pem(), &node.certificate_pem, node.key_pem())?;
//! assert_eq!(credentials.identity(), &Identity::Node("node1".to_string()));
//! let server = credentials.server_config()?;
//! assert_eq!(server.alpn_protocols, vec![b"vault/1".to_vec()]);
//! # Ok::<(), certs::CertsError>(())
//! ```
#![warn(missing_docs)]

mod authority;
mod files;
mod identity;
mod tls;

#[cfg(test)]
mod tests;

pub use authority::{CertificateAuthority, IssuedCertificate};
pub use identity::{Identity, IdentityError};
pub use tls::Credentials;

use std::path::PathBuf;

/// The ALPN protocol id every node and client speaks; a handshake without
/// it fails.
pub const ALPN_PROTOCOL: &[u8] = b"vault/1";

/// File name of the CA certificate.
pub const CA_CERT_FILE: &str = "ca.crt";

/// File name of the CA private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// File stem of a node's certificate and key: `node.crt`, `node.key`.
pub const NODE_STEM: &str = "node";

/// File stem of a client's certificate and key: `client.crt`, `client.key`.
pub const CLIENT_STEM: &str = "client";

/// Everything that can go wrong making, storing or loading the PKI.
///
/// No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// Reading or writing a file failed (an existing file is refused with
    /// `AlreadyExists` rather than overwritten).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or string is not the PEM expected.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file concerned (or a placeholder for in-memory PEM).
        path: PathBuf,
        /// What is wrong, without the file's contents.
        reason: String,
    },
    /// The certificate file has no certificate.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// The certificate does not carry exactly one valid identity, or a name
    /// is invalid.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A node id is not of the form `node<N>`.
    #[error("invalid node id {0:?}: expected node<N> with N a positive integer")]
    InvalidNodeId(String),
    /// A client certificate was requested for a node identity.
    #[error("node certificates are issued with issue_node, not issue_client")]
    NodeIdentityForClient,
    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    /// rustls refused the configuration (e.g. the key does not match).
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

impl From<rustls::Error> for CertsError {
    fn from(error: rustls::Error) -> Self {
        CertsError::Tls(error.to_string())
    }
}
