//! End-to-end encryption on the client (SPEC §4, §5): nodes only ever see
//! the output of this module.
//!
//! Keys, from the passphrase down:
//!
//! 1. `root = Argon2id(passphrase, salt)`, with `salt = BLAKE2b-128("vault/1
//!    argon2id salt" ‖ identity)`. The salt depends only on the identity, so
//!    the same passphrase yields the same keys on any machine. Slow on
//!    purpose: derive a [`Keyring`] once per process.
//! 2. `master = KDF(root, "master")` wraps each secret's data key;
//!    `exchange = KDF(root, "x25519")` is the identity's X25519 secret key,
//!    whose public half is published so that others can share with it.
//!    `KDF(key, parts…)` is BLAKE2b-256 over the key and length-prefixed parts.
//! 3. Each secret has a random 256-bit data key. The fields are encrypted
//!    with XChaCha20-Poly1305 under it, with a random 24-byte nonce and the
//!    owner and name as associated data, so a ciphertext moved to another
//!    name or owner fails to decrypt.
//! 4. Sharing wraps the data key for the grantee: an ephemeral X25519 key
//!    agreement with the grantee's public key, a KDF over the shared point
//!    and both public keys, and XChaCha20-Poly1305 with owner, name and
//!    grantee as associated data.
//!
//! `docs/vault.md` gives the byte layout of both envelopes.

mod envelope;
mod fields;

pub use fields::{Passphrase, SecretFields};

use crate::protocol::{SealedSecret, SecretRecord, WrappedKey};
use blake2::digest::{consts::U32, Digest};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A 256-bit symmetric key that is wiped when dropped.
pub(crate) type Key = Zeroizing<[u8; 32]>;

/// Why the client could not seal, open or share a secret. Messages never
/// include key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong passphrase, altered ciphertext, or a
    /// ciphertext moved to another name or owner.
    #[error("the secret could not be decrypted: wrong passphrase, or the stored data was altered")]
    Decrypt,
    /// The bytes are not a sealed secret or wrapped key of a known format.
    #[error("the stored secret is not in a format this client understands")]
    Malformed,
    /// The Argon2 parameters are out of range.
    #[error("invalid key derivation parameters: {0}")]
    Parameters(String),
    /// Reading another owner's secret requires a key wrapped for us.
    #[error("the secret of {0} was returned without a key for you")]
    NotShared(String),
    /// The grantee's public key is a low-order point: no shared key exists.
    #[error("the public key of {0} is invalid")]
    BadPublicKey(String),
}

/// Argon2id cost parameters. Every client of a deployment must use the same
/// values, or the same passphrase yields different keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended setting (64 MiB, 3 passes), with one
    /// lane because `vault-cli` derives on one thread.
    pub const RECOMMENDED: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
}

/// One identity's keys, derived from its passphrase: seals, opens and shares
/// secrets. `Debug` shows the identity and public key only; the secret keys
/// are wiped on drop.
pub struct Keyring {
    identity: String,
    master: Key,
    exchange: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("identity", &self.identity)
            .field("public_key", &self.public.as_bytes())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Derives the keys of `identity` (`client:alice`) from `passphrase`.
    /// Takes as long as `params` make it (about a second with
    /// [`KdfParams::RECOMMENDED`]).
    pub fn derive(
        identity: &str,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Keyring, CryptoError> {
        let argon_params = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|error| CryptoError::Parameters(error.to_string()))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut root = Key::default();
        argon
            .hash_password_into(passphrase.as_bytes(), &salt(identity), root.as_mut())
            .map_err(|error| CryptoError::Parameters(error.to_string()))?;
        let master = derive_key(&root, &[b"master"]);
        let exchange = StaticSecret::from(*derive_key(&root, &[b"x25519"]));
        let public = PublicKey::from(&exchange);
        Ok(Keyring {
            identity: identity.to_string(),
            master,
            exchange,
            public,
        })
    }

    /// The identity these keys belong to.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The X25519 public key to publish so that others can share with us.
    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// Encrypts `fields` as our secret `name` under a fresh data key.
    pub fn seal(&self, name: &str, fields: &SecretFields) -> Result<SealedSecret, CryptoError> {
        let data_key = envelope::random_key();
        envelope::seal(&self.master, &data_key, &self.identity, name, fields)
    }

    /// Encrypts new `fields` for our existing secret `name`, keeping the data
    /// key of `previous` so that the grants already made stay valid.
    pub fn reseal(
        &self,
        name: &str,
        previous: &SealedSecret,
        fields: &SecretFields,
    ) -> Result<SealedSecret, CryptoError> {
        let data_key = envelope::own_data_key(&self.master, &self.identity, name, previous)?;
        envelope::seal(&self.master, &data_key, &self.identity, name, fields)
    }

    /// Decrypts a secret as returned by a node: ours, or one shared with us
    /// (then `record.wrapped_key` holds the data key wrapped for us).
    pub fn open(&self, record: &SecretRecord) -> Result<SecretFields, CryptoError> {
        let data_key = if record.owner == self.identity {
            envelope::own_data_key(&self.master, &self.identity, &record.name, &record.sealed)?
        } else {
            let wrapped = record
                .wrapped_key
                .as_ref()
                .ok_or_else(|| CryptoError::NotShared(record.owner.clone()))?;
            envelope::unwrap_share(
                &self.exchange,
                &self.public,
                record,
                &self.identity,
                wrapped,
            )?
        };
        envelope::open_fields(&data_key, &record.owner, &record.name, &record.sealed)
    }

    /// Wraps the data key of our secret `name` (sealed as `sealed`) for
    /// `grantee`, whose published public key is `grantee_public`.
    pub fn share(
        &self,
        name: &str,
        sealed: &SealedSecret,
        grantee: &str,
        grantee_public: [u8; 32],
    ) -> Result<WrappedKey, CryptoError> {
        let data_key = envelope::own_data_key(&self.master, &self.identity, name, sealed)?;
        let recipient = envelope::Recipient {
            identity: grantee,
            public: PublicKey::from(grantee_public),
        };
        envelope::wrap_share(&data_key, &self.identity, name, &recipient)
    }
}

/// The Argon2 salt of `identity`: 16 bytes, the same on every machine.
fn salt(identity: &str) -> [u8; 16] {
    let mut hasher = blake2::Blake2b::<blake2::digest::consts::U16>::new();
    Digest::update(&mut hasher, b"vault/1 argon2id salt");
    Digest::update(&mut hasher, identity.as_bytes());
    hasher.finalize().into()
}

/// `KDF(key, parts…)`: BLAKE2b-256 over a label, the key and the
/// length-prefixed parts. BLAKE2 resists length extension, so a secret
/// prefix makes it a PRF (its specification notes that prefix-MAC is
/// secure), and the length prefixes keep different part lists apart.
pub(crate) fn derive_key(key: &[u8; 32], parts: &[&[u8]]) -> Key {
    let mut hasher = blake2::Blake2b::<U32>::new();
    Digest::update(&mut hasher, b"vault/1 kdf");
    Digest::update(&mut hasher, key);
    for part in parts {
        Digest::update(&mut hasher, (part.len() as u64).to_le_bytes());
        Digest::update(&mut hasher, part);
    }
    Zeroizing::new(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
