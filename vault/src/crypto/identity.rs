//! An identity's published record: creating it on first use, unlocking the
//! keys with it later, and the fingerprint people compare.

use super::{CryptoError, KdfParams, Keyring, Passphrase};
use crate::protocol::IdentityRecord;
use blake2::digest::{consts::U32, Digest};
use rand::rngs::OsRng;
use rand::RngCore;

/// 16 bytes from the operating system: a salt no one can precompute for.
pub(super) fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    salt
}

/// See [`Keyring::unlock`]. The cost is checked before deriving (a node must
/// not choose it), the key-check value before anything else is used, and
/// the public key last: with the right passphrase a different public key
/// means the record was altered, not mistyped.
pub(super) fn unlock(
    identity: &str,
    passphrase: &Passphrase,
    record: &IdentityRecord,
    floor: KdfParams,
) -> Result<Keyring, CryptoError> {
    record.kdf.check(floor)?;
    let keyring = Keyring::derive(identity, passphrase, record.salt, record.kdf)?;
    if !equal(&keyring.key_check, &record.key_check) {
        return Err(CryptoError::WrongPassphrase);
    }
    if !equal(keyring.public.as_bytes(), &record.public_key) {
        return Err(CryptoError::InconsistentIdentity(identity.to_string()));
    }
    Ok(keyring)
}

/// Compares without an early exit. The values compared are public (a node
/// holds them), so this is tidiness rather than a defence.
fn equal(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// The fingerprint of an X25519 public key, as `share`, `whoami` and the
/// pin file show it: the first 128 bits of BLAKE2b-256 over a label and the
/// key, in eight groups of four hex digits (`3f2a-91bc-…`).
pub fn fingerprint(public_key: &[u8; 32]) -> String {
    let mut hasher = blake2::Blake2b::<U32>::new();
    Digest::update(&mut hasher, b"vault/1 fingerprint");
    Digest::update(&mut hasher, public_key);
    let digest = hasher.finalize();
    digest[..16]
        .chunks(2)
        .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether two fingerprints as a person typed them are the same: case,
/// dashes, colons and spaces do not matter.
pub fn same_fingerprint(left: &str, right: &str) -> bool {
    let normal = |text: &str| -> String {
        text.chars()
            .filter(|c| !matches!(c, '-' | ':' | ' '))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let left = normal(left);
    !left.is_empty() && left == normal(right)
}
