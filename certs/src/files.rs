//! PEM files on disk: private keys are created with mode 0600 from the start.

use crate::CertsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File mode of private keys: readable and writable by the owner only.
pub(crate) const KEY_FILE_MODE: u32 = 0o600;

/// File mode of certificates, which are public.
pub(crate) const CERTIFICATE_FILE_MODE: u32 = 0o644;

/// Writes `contents` to a new file created with `mode`.
///
/// The mode is given to `open(2)` so that a key is never readable by others,
/// not even between creation and a later `chmod`. An existing file is
/// refused rather than overwritten: replacing a key by accident would lock
/// the node or client out of the cluster.
pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let io_error = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.write_all(contents).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// Reads every certificate of a PEM file, in order (end-entity first for a
/// chain). A file without any certificate is an error.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertsError> {
    let pem_error = |reason: String| CertsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| pem_error(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(error.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error("no CERTIFICATE block".to_string()));
    }
    Ok(certificates)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
///
/// The error never includes the file's contents, only its path.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| CertsError::Pem {
        path: path.to_path_buf(),
        reason: redacted_pem_error(&error),
    })
}

/// Describes a PEM error without echoing any of the bytes it read.
fn redacted_pem_error(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match error {
        Error::NoItemsFound => "no private key block".to_string(),
        Error::Io(io) => io.to_string(),
        _ => "malformed PEM".to_string(),
    }
}
