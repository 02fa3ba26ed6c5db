//! The cluster CA: create it, store it, load it, and issue certificates.

use crate::files::{write_new_file, CERTIFICATE_FILE_MODE, KEY_FILE_MODE};
use crate::{CertsError, Identity, CA_CERT_FILE, CA_KEY_FILE};
use rand::RngCore;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// How many years a CA certificate is valid.
const CA_VALIDITY_YEARS: i32 = 20;

/// How many years a node or client certificate is valid.
const LEAF_VALIDITY_YEARS: i32 = 5;

/// The cluster's certificate authority: a self-signed certificate allowed
/// to sign certificates, and its private key.
///
/// Every node and client trusts exactly this CA and nothing else, so
/// holding the key is holding the cluster: keep `ca.key` offline once the
/// nodes and clients have their certificates.
pub struct CertificateAuthority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued certificate and its private key, both PEM.
///
/// The key is wiped from memory when the value is dropped and never shown
/// by `Debug`.
pub struct IssuedCertificate {
    /// Who the certificate speaks for.
    pub identity: Identity,
    /// The certificate, PEM encoded.
    pub certificate_pem: String,
    key_pem: Zeroizing<String>,
}

impl CertificateAuthority {
    /// Creates a new CA with a fresh ECDSA P-256 key. `common_name` only
    /// labels the CA for humans (e.g. `vault cluster CA`).
    pub fn generate(common_name: &str) -> Result<Self, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = base_params(common_name, CA_VALIDITY_YEARS);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let certificate = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            certificate_pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.crt` and `ca.key` from `directory`.
    pub fn load(directory: &Path) -> Result<Self, CertsError> {
        let read = |name: &str| {
            let path = directory.join(name);
            std::fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|source| CertsError::Io { path, source })
        };
        let certificate_pem = read(CA_CERT_FILE)?;
        let key_pem = read(CA_KEY_FILE)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|_| CertsError::Pem {
            path: directory.join(CA_KEY_FILE),
            reason: "not a usable private key".to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, key)?;
        Ok(CertificateAuthority {
            certificate_pem: certificate_pem.to_string(),
            issuer,
        })
    }

    /// Writes `ca.crt` (mode 0644) and `ca.key` (mode 0600) into
    /// `directory`, which must exist. Existing files are not overwritten.
    pub fn write(&self, directory: &Path) -> Result<(), CertsError> {
        let key_pem = Zeroizing::new(self.issuer.key().serialize_pem());
        write_new_file(
            &directory.join(CA_KEY_FILE),
            key_pem.as_bytes(),
            KEY_FILE_MODE,
        )?;
        write_new_file(
            &directory.join(CA_CERT_FILE),
            self.certificate_pem.as_bytes(),
            CERTIFICATE_FILE_MODE,
        )
    }

    /// The CA certificate, PEM encoded, to be installed as the only trust
    /// root of every node and client.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Issues a node certificate: URI SAN `urn:vault:node:<id>`, a DNS or IP
    /// SAN for every entry of `hosts` (the names peers and clients dial it
    /// by), and both serverAuth and clientAuth, because a node accepts
    /// connections and dials its peers.
    ///
    /// `id` must be `node<N>` with N a positive integer without leading
    /// zeros, the one spelling the cluster uses for node N.
    pub fn issue_node(&self, id: &str, hosts: &[String]) -> Result<IssuedCertificate, CertsError> {
        if !is_canonical_node_id(id) {
            return Err(CertsError::InvalidNodeId(id.to_string()));
        }
        let identity = Identity::node(id)?;
        let mut names = vec![uri_name(&identity)?];
        for host in hosts {
            names.push(host_name(host)?);
        }
        self.issue(
            identity,
            names,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues a client or admin certificate with the identity's URI SAN and
    /// clientAuth only: it can dial the cluster but cannot serve as a node.
    /// Node identities are refused here; use [`Self::issue_node`].
    pub fn issue_client(&self, identity: &Identity) -> Result<IssuedCertificate, CertsError> {
        if identity.node_id().is_some() {
            return Err(CertsError::NodeIdentityForClient);
        }
        let names = vec![uri_name(identity)?];
        self.issue(
            identity.clone(),
            names,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn issue(
        &self,
        identity: Identity,
        names: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedCertificate, CertsError> {
        let key = KeyPair::generate()?;
        let mut params = base_params(&identity.uri(), LEAF_VALIDITY_YEARS);
        params.is_ca = IsCa::ExplicitNoCa;
        params.subject_alt_names = names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCertificate {
            identity,
            certificate_pem: certificate.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

impl fmt::Debug for CertificateAuthority {
    /// Shows nothing of the key.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl IssuedCertificate {
    /// Writes `<stem>.crt` (mode 0644) and `<stem>.key` (mode 0600) into
    /// `directory`, e.g. `node.crt`/`node.key` or `client.crt`/`client.key`.
    /// Existing files are not overwritten.
    pub fn write(&self, directory: &Path, stem: &str) -> Result<(), CertsError> {
        write_new_file(
            &directory.join(format!("{stem}.key")),
            self.key_pem.as_bytes(),
            KEY_FILE_MODE,
        )?;
        write_new_file(
            &directory.join(format!("{stem}.crt")),
            self.certificate_pem.as_bytes(),
            CERTIFICATE_FILE_MODE,
        )
    }

    /// The private key, PEM encoded. Handle with care: never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl fmt::Debug for IssuedCertificate {
    /// Shows the identity only, never the key.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("IssuedCertificate")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Parameters shared by every certificate we make: a random serial, a
/// common name for humans, and validity from the start of last year (so
/// that clock skew between hosts does not matter) for `years` years.
fn base_params(common_name: &str, years: i32) -> CertificateParams {
    let this_year = current_year();
    let mut params = CertificateParams::default();
    let mut serial = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut serial);
    // A positive serial of at most 20 bytes, as RFC 5280 §4.1.2.2 requires.
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name = distinguished_name;
    params.not_before = date_time_ymd(this_year - 1, 1, 1);
    params.not_after = date_time_ymd(this_year + years, 1, 1);
    params
}

/// The current UTC year, close enough for validity periods (average year
/// length; off by at most a day around New Year).
fn current_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952;
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    1970 + i32::try_from(seconds / SECONDS_PER_YEAR).unwrap_or(0)
}

/// `node<N>`, N a positive integer without leading zeros.
fn is_canonical_node_id(id: &str) -> bool {
    match id.strip_prefix("node") {
        Some(digits) => {
            !digits.is_empty()
                && !digits.starts_with('0')
                && digits.len() <= 19
                && digits.bytes().all(|byte| byte.is_ascii_digit())
        }
        None => false,
    }
}

fn uri_name(identity: &Identity) -> Result<SanType, CertsError> {
    let uri = identity.uri().try_into()?;
    Ok(SanType::URI(uri))
}

/// An IP SAN if `host` parses as an address, otherwise a DNS SAN.
fn host_name(host: &str) -> Result<SanType, CertsError> {
    match host.parse::<IpAddr>() {
        Ok(address) => Ok(SanType::IpAddress(address)),
        Err(_) => Ok(SanType::DnsName(host.try_into()?)),
    }
}
