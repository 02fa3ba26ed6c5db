//! The plaintext of a secret, which exists only on the client.

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The fields of one secret in plain text (SPEC §8 `get-secret --json`).
///
/// Wiped from memory when dropped; `Debug` says which fields are present
/// and nothing else, so a stray `{:?}` in a log line leaks nothing.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SecretFields {
    /// The account's user name.
    pub username: Option<String>,
    /// The password itself.
    pub password: Option<String>,
    /// Where the account lives.
    pub url: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |field: &Option<String>| field.as_ref().map(|_| "<redacted>");
        f.debug_struct("SecretFields")
            .field("username", &shown(&self.username))
            .field("password", &shown(&self.password))
            .field("url", &shown(&self.url))
            .field("note", &shown(&self.note))
            .finish()
    }
}

/// A passphrase as typed by the user: wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Takes ownership of the text so that it is wiped when dropped.
    pub fn new(text: String) -> Self {
        Passphrase(text)
    }

    /// The passphrase bytes, for the key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether the passphrase is empty (the CLI refuses empty passphrases).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}
