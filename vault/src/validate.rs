//! Input rules of SPEC §5, checked by the client before sending, by the node
//! before proposing, and again by the state machine when applying (so a
//! command that slipped through is refused the same way on every node).

use crate::protocol::VaultError;

/// Longest secret name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest sealed secret (or wrapped key) a node accepts, in bytes.
pub const MAX_CIPHERTEXT_BYTES: usize = 64 * 1024;
/// Length of an X25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;

/// Checks a secret name: 1 to 256 bytes of UTF-8 without control characters.
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    if name.is_empty() {
        return Err(VaultError::Invalid("a secret name may not be empty".into()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(VaultError::Invalid(format!(
            "a secret name is at most {MAX_NAME_BYTES} bytes of UTF-8, this one has {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(VaultError::Invalid(
            "a secret name may not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Checks the size of a sealed secret or a wrapped key: 1 byte to 64 KiB.
pub fn validate_ciphertext(bytes: &[u8]) -> Result<(), VaultError> {
    if bytes.is_empty() {
        return Err(VaultError::Invalid("the ciphertext is empty".into()));
    }
    if bytes.len() > MAX_CIPHERTEXT_BYTES {
        return Err(VaultError::Invalid(format!(
            "the ciphertext is {} bytes, more than the limit of {MAX_CIPHERTEXT_BYTES}",
            bytes.len()
        )));
    }
    Ok(())
}

/// Checks an identity as the vault names it: `client:<name>` or
/// `admin:<name>`, the name following the rules of secret names (this is the
/// part after `urn:vault:` in a certificate's URI SAN).
pub fn validate_identity(identity: &str) -> Result<(), VaultError> {
    let name = identity
        .strip_prefix("client:")
        .or_else(|| identity.strip_prefix("admin:"))
        .ok_or_else(|| {
            VaultError::Invalid(format!(
                "identity {identity:?} must start with \"client:\" or \"admin:\""
            ))
        })?;
    validate_name(name).map_err(|_| {
        VaultError::Invalid(format!(
            "identity {identity:?} must have a name of 1 to {MAX_NAME_BYTES} bytes without control characters"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert!(validate_name("github").is_ok());
        assert!(validate_name("mail/é 😀").is_ok());
        assert!(validate_name(&"a".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
        // 128 two-byte characters are 256 bytes; one more is over.
        assert!(validate_name(&"é".repeat(128)).is_ok());
        assert!(validate_name(&"é".repeat(129)).is_err());
        for bad in ["a\nb", "tab\t", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert!(validate_name(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn ciphertexts_are_bounded() {
        assert!(validate_ciphertext(&[1]).is_ok());
        assert!(validate_ciphertext(&vec![0; MAX_CIPHERTEXT_BYTES]).is_ok());
        assert!(validate_ciphertext(&[]).is_err());
        assert!(validate_ciphertext(&vec![0; MAX_CIPHERTEXT_BYTES + 1]).is_err());
    }

    #[test]
    fn identities_name_a_kind() {
        assert!(validate_identity("client:alice").is_ok());
        assert!(validate_identity("admin:ops").is_ok());
        for bad in ["alice", "node:node1", "client:", "client:a\nb", "Client:x"] {
            assert!(validate_identity(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
