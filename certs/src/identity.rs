//! Who a certificate speaks for: the `urn:vault:*` URI SAN.

use std::fmt;
use x509_parser::extensions::GeneralName;

/// The URI prefix every cluster identity starts with.
const URN_PREFIX: &str = "urn:vault:";

/// The longest node id, client or admin name we accept.
const MAX_NAME_LENGTH: usize = 64;

/// The identity a certificate speaks for, read from its single
/// `urn:vault:<kind>:<name>` URI SAN.
///
/// The transport authorizes on this value alone: a [`Identity::Node`] may
/// carry Raft and 2PC traffic, [`Identity::Client`] and [`Identity::Admin`]
/// may only send requests. Names are 1 to 64 characters of ASCII letters,
/// digits, `.`, `_`, `-` and `@`, so they are safe to print in log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A cluster member, e.g. `node3` from `urn:vault:node:node3`.
    Node(String),
    /// A vault user, from `urn:vault:client:<name>`.
    Client(String),
    /// An operator allowed to run cluster administration commands, from
    /// `urn:vault:admin:<name>`.
    Admin(String),
}

/// Why a URI or certificate does not name exactly one valid identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate is not valid DER X.509.
    #[error("the certificate cannot be parsed: {0}")]
    Malformed(String),
    /// The certificate has no `urn:vault:` URI SAN.
    #[error("the certificate carries no urn:vault: identity")]
    Missing,
    /// The certificate has more than one `urn:vault:` URI SAN, so it is
    /// ambiguous whom it speaks for.
    #[error("the certificate carries {0} urn:vault: identities; exactly one is required")]
    Ambiguous(usize),
    /// The URI is not `urn:vault:node|client|admin:<name>` with a valid name.
    #[error("invalid identity URI {0:?}: expected urn:vault:node|client|admin:<name>")]
    InvalidUri(String),
    /// The name is empty, too long or has characters outside the allowed set.
    #[error("invalid identity name {0:?}: 1 to 64 of A-Z a-z 0-9 . _ - @")]
    InvalidName(String),
}

impl Identity {
    /// A node identity; the id must be a valid name (see [`Identity`]).
    pub fn node(id: &str) -> Result<Self, IdentityError> {
        validate_name(id).map(|()| Identity::Node(id.to_string()))
    }

    /// A client identity; the name must be a valid name (see [`Identity`]).
    pub fn client(name: &str) -> Result<Self, IdentityError> {
        validate_name(name).map(|()| Identity::Client(name.to_string()))
    }

    /// An admin identity; the name must be a valid name (see [`Identity`]).
    pub fn admin(name: &str) -> Result<Self, IdentityError> {
        validate_name(name).map(|()| Identity::Admin(name.to_string()))
    }

    /// The node id, client or admin name without its kind.
    pub fn name(&self) -> &str {
        match self {
            Identity::Node(name) | Identity::Client(name) | Identity::Admin(name) => name,
        }
    }

    /// The node id if this is a node identity.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Identity::Node(id) => Some(id),
            Identity::Client(_) | Identity::Admin(_) => None,
        }
    }

    /// The URI SAN that carries this identity in a certificate.
    pub fn uri(&self) -> String {
        let kind = match self {
            Identity::Node(_) => "node",
            Identity::Client(_) => "client",
            Identity::Admin(_) => "admin",
        };
        format!("{URN_PREFIX}{kind}:{}", self.name())
    }

    /// Parses `urn:vault:<kind>:<name>`. The scheme and kind are matched
    /// exactly (lower case), so there is one spelling per identity.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let invalid = || IdentityError::InvalidUri(uri.to_string());
        let rest = uri.strip_prefix(URN_PREFIX).ok_or_else(invalid)?;
        let (kind, name) = rest.split_once(':').ok_or_else(invalid)?;
        validate_name(name).map_err(|_| invalid())?;
        match kind {
            "node" => Ok(Identity::Node(name.to_string())),
            "client" => Ok(Identity::Client(name.to_string())),
            "admin" => Ok(Identity::Admin(name.to_string())),
            _ => Err(invalid()),
        }
    }

    /// Reads the identity of a DER certificate: exactly one URI SAN must
    /// start with `urn:vault:` and parse; URIs of other schemes are ignored.
    ///
    /// This does not verify the certificate: call it on a certificate rustls
    /// has already verified against the cluster CA (a peer's end-entity
    /// certificate after the handshake) or on one of our own.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| IdentityError::Malformed(error.to_string()))?;
        let names = certificate
            .subject_alternative_name()
            .map_err(|error| IdentityError::Malformed(error.to_string()))?;
        let vault_uris: Vec<&str> = names
            .map(|extension| extension.value.general_names.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) if uri.starts_with(URN_PREFIX) => Some(*uri),
                _ => None,
            })
            .collect();
        match vault_uris.as_slice() {
            [] => Err(IdentityError::Missing),
            [uri] => Identity::from_uri(uri),
            many => Err(IdentityError::Ambiguous(many.len())),
        }
    }
}

impl fmt::Display for Identity {
    /// Shows the identity as its URI, the form operators see in certificates.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.uri())
    }
}

fn validate_name(name: &str) -> Result<(), IdentityError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > MAX_NAME_LENGTH || !name.chars().all(allowed) {
        return Err(IdentityError::InvalidName(name.to_string()));
    }
    Ok(())
}
