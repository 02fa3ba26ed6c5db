//! End-to-end encryption on the client (SPEC §4, §5): nodes only ever see
//! the output of this module, and nothing a node answers is believed
//! without a check here.
//!
//! Keys, from the passphrase down:
//!
//! 1. `root = Argon2id(passphrase, salt)`. The salt is 16 random bytes drawn
//!    when the identity is first used ([`Keyring::create`]) and published
//!    with the identity's [`IdentityRecord`], together with the Argon2id
//!    cost and a key-check value. Slow on purpose: unlock a [`Keyring`]
//!    once per process.
//! 2. `master = KDF(root, "master")` wraps each secret's data key;
//!    `exchange = KDF(root, "x25519")` is the identity's X25519 secret key,
//!    whose public half is published so that others can share with it;
//!    `key_check = KDF(root, "key-check")` is published so that a wrong
//!    passphrase is recognised ([`Keyring::unlock`]) before anything is
//!    sealed or published. `KDF(key, parts…)` is BLAKE2b-256 over the key
//!    and length-prefixed parts.
//! 3. Each secret has a random 256-bit data key. The fields are encrypted
//!    with XChaCha20-Poly1305 under it, with a random 24-byte nonce and the
//!    owner, name and version as associated data, so a ciphertext moved to
//!    another name, owner or version fails to decrypt.
//! 4. Sharing wraps the data key for the grantee with an authenticated key
//!    agreement: an ephemeral X25519 exchange with the grantee's key *and*
//!    a static one between the owner's and the grantee's keys, so only the
//!    owner (or the grantee) can make a share the grantee accepts as the
//!    owner's. Owner, name and grantee are the associated data.
//!
//! [`check_reply`] refuses a record for another owner, name or version
//! than the one asked for. `docs/vault.md` gives the byte layout of both
//! envelopes.

mod envelope;
mod fields;
mod identity;
mod reply;

pub use fields::{Passphrase, SecretFields};
pub use identity::{fingerprint, same_fingerprint};
pub use reply::{check_reply, Asked};

use crate::protocol::{IdentityRecord, SealedSecret, SecretRecord, WrappedKey};
use blake2::digest::{consts::U32, Digest};
use serde::{Deserialize, Serialize};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A 256-bit symmetric key that is wiped when dropped.
pub(crate) type Key = Zeroizing<[u8; 32]>;

/// Why the client could not seal, open or share a secret, or refused what a
/// node answered. Messages never include key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: altered ciphertext, a ciphertext moved to
    /// another name, owner or version, or a share not made by the owner.
    #[error("the secret could not be decrypted: the stored data was altered or is not the secret asked for")]
    Decrypt,
    /// The passphrase does not match the identity's key-check value.
    #[error("wrong passphrase")]
    WrongPassphrase,
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
    /// A node answered with something other than what was asked for.
    #[error("a node returned {0}; refusing it")]
    WrongReply(String),
    /// The published identity record does not match the keys derived from
    /// it with the right passphrase: it was altered.
    #[error("the published identity record of {0} is inconsistent (altered by a node?)")]
    InconsistentIdentity(String),
}

/// Argon2id cost parameters, published in each identity's
/// [`IdentityRecord`] so that every machine derives the same keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    /// The cheapest cost `vault-cli` accepts, from its configuration or
    /// from a node: 8 MiB and one pass. It is a floor against a node that
    /// publishes a trivial cost to make brute force cheap, not a
    /// recommendation.
    pub const MINIMUM: KdfParams = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };

    /// The dearest cost accepted (4 GiB, 64 passes, 16 lanes): a node must
    /// not make a client allocate without bound either.
    pub const MAXIMUM: KdfParams = KdfParams {
        memory_kib: 4 * 1024 * 1024,
        iterations: 64,
        parallelism: 16,
    };

    /// Refuses a cost below `floor` or above [`KdfParams::MAXIMUM`].
    pub fn check(&self, floor: KdfParams) -> Result<(), CryptoError> {
        let ceiling = KdfParams::MAXIMUM;
        if self.memory_kib < floor.memory_kib || self.iterations < floor.iterations {
            return Err(CryptoError::Parameters(format!(
                "an Argon2id cost of {} KiB and {} passes is below the minimum of {} KiB and {} passes",
                self.memory_kib, self.iterations, floor.memory_kib, floor.iterations
            )));
        }
        if self.parallelism == 0
            || self.memory_kib > ceiling.memory_kib
            || self.iterations > ceiling.iterations
            || self.parallelism > ceiling.parallelism
        {
            return Err(CryptoError::Parameters(format!(
                "an Argon2id cost of {} KiB, {} passes and {} lanes is out of range",
                self.memory_kib, self.iterations, self.parallelism
            )));
        }
        Ok(())
    }
}

/// One identity's keys, unlocked with its passphrase: seals, opens and
/// shares secrets. `Debug` shows the identity and public key only; the
/// secret keys are wiped on drop.
pub struct Keyring {
    identity: String,
    master: Key,
    exchange: StaticSecret,
    public: PublicKey,
    salt: [u8; 16],
    kdf: KdfParams,
    key_check: [u8; 32],
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
    /// Derives the keys of `identity` (`client:alice`) from `passphrase`
    /// with `salt`. Takes as long as `params` make it (about a second with
    /// [`KdfParams::RECOMMENDED`]). Checks nothing: use [`Keyring::create`]
    /// for a new identity and [`Keyring::unlock`] for a published one.
    pub fn derive(
        identity: &str,
        passphrase: &Passphrase,
        salt: [u8; 16],
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
            .hash_password_into(passphrase.as_bytes(), &salt, root.as_mut())
            .map_err(|error| CryptoError::Parameters(error.to_string()))?;
        let master = derive_key(&root, &[b"master"]);
        let exchange = StaticSecret::from(*derive_key(&root, &[b"x25519"]));
        let public = PublicKey::from(&exchange);
        let key_check = *derive_key(&root, &[b"key-check"]);
        Ok(Keyring {
            identity: identity.to_string(),
            master,
            exchange,
            public,
            salt,
            kdf: params,
            key_check,
        })
    }

    /// The first use of `identity`: draws a random salt and derives the
    /// keys. Publish [`Keyring::record`] before sealing anything.
    pub fn create(
        identity: &str,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Keyring, CryptoError> {
        Keyring::derive(identity, passphrase, identity::random_salt(), params)
    }

    /// Unlocks a published identity: refuses a cost outside `floor` and
    /// [`KdfParams::MAXIMUM`] (callers pass [`KdfParams::MINIMUM`]; tests
    /// pass less), derives with the published salt, and answers
    /// [`CryptoError::WrongPassphrase`] unless the key-check value matches.
    pub fn unlock(
        identity: &str,
        passphrase: &Passphrase,
        record: &IdentityRecord,
        floor: KdfParams,
    ) -> Result<Keyring, CryptoError> {
        identity::unlock(identity, passphrase, record, floor)
    }

    /// What this identity publishes: public key, salt, cost, key check.
    pub fn record(&self) -> IdentityRecord {
        IdentityRecord {
            public_key: *self.public.as_bytes(),
            salt: self.salt,
            kdf: self.kdf,
            key_check: self.key_check,
        }
    }

    /// The identity these keys belong to.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The X25519 public key to publish so that others can share with us.
    pub fn public_key(&self) -> [u8; 32] {
        *self.public.as_bytes()
    }

    /// Encrypts `fields` as version `version` of our secret `name` under a
    /// fresh data key (a new secret is version 1).
    pub fn seal(
        &self,
        name: &str,
        version: u64,
        fields: &SecretFields,
    ) -> Result<SealedSecret, CryptoError> {
        let data_key = envelope::random_key();
        let place = envelope::Place::new(&self.identity, name, version);
        envelope::seal(&self.master, &data_key, &place, fields)
    }

    /// Encrypts new `fields` as the version after `previous` (our secret as
    /// a node returned it, checked with [`check_reply`]), keeping its data
    /// key so that the grants already made stay valid.
    pub fn reseal(
        &self,
        previous: &SecretRecord,
        fields: &SecretFields,
    ) -> Result<SealedSecret, CryptoError> {
        let data_key = self.own_data_key(previous)?;
        let place = envelope::Place::new(&self.identity, &previous.name, next(previous)?);
        envelope::seal(&self.master, &data_key, &place, fields)
    }

    /// The version after `previous` with the same fields under a fresh data
    /// key: what `unshare` stores, so that a former grantee's wrapped key
    /// opens no later version. Grants that remain must be made again with
    /// [`Keyring::share`] on the result.
    pub fn rekey(&self, previous: &SecretRecord) -> Result<SealedSecret, CryptoError> {
        let fields = self.open(previous, None)?;
        let place = envelope::Place::new(&self.identity, &previous.name, next(previous)?);
        envelope::seal(&self.master, &envelope::random_key(), &place, &fields)
    }

    /// Decrypts a secret as returned by a node, after [`check_reply`]: ours,
    /// or one shared with us, then `owner_public` is the owner's public key
    /// (pinned by the caller) that authenticates the share.
    pub fn open(
        &self,
        record: &SecretRecord,
        owner_public: Option<[u8; 32]>,
    ) -> Result<SecretFields, CryptoError> {
        let data_key = if record.owner == self.identity {
            if record.wrapped_key.is_some() {
                return Err(CryptoError::WrongReply(
                    "a key wrapped for sharing with our own secret".into(),
                ));
            }
            self.own_data_key(record)?
        } else {
            let wrapped = record
                .wrapped_key
                .as_ref()
                .ok_or_else(|| CryptoError::NotShared(record.owner.clone()))?;
            let owner_public =
                owner_public.ok_or_else(|| CryptoError::NotShared(record.owner.clone()))?;
            let parties = envelope::Parties {
                owner: &record.owner,
                owner_public: PublicKey::from(owner_public),
                grantee: &self.identity,
                grantee_public: self.public,
            };
            envelope::unwrap_share(&self.exchange, &parties, &record.name, wrapped)?
        };
        let place = envelope::Place::new(&record.owner, &record.name, record.version);
        envelope::open_fields(&data_key, &place, &record.sealed)
    }

    /// Wraps the data key of our secret `secret` for `grantee`, whose
    /// public key (pinned by the caller) is `grantee_public`.
    pub fn share(
        &self,
        secret: &SecretRecord,
        grantee: &str,
        grantee_public: [u8; 32],
    ) -> Result<WrappedKey, CryptoError> {
        let data_key = self.own_data_key(secret)?;
        let parties = envelope::Parties {
            owner: &self.identity,
            owner_public: self.public,
            grantee,
            grantee_public: PublicKey::from(grantee_public),
        };
        envelope::wrap_share(&data_key, &self.exchange, &parties, &secret.name)
    }

    fn own_data_key(&self, record: &SecretRecord) -> Result<Key, CryptoError> {
        if record.owner != self.identity {
            return Err(CryptoError::WrongReply(format!(
                "a secret of {} where one of ours was expected",
                record.owner
            )));
        }
        let place = envelope::Place::new(&self.identity, &record.name, record.version);
        envelope::own_data_key(&self.master, &place, &record.sealed)
    }
}

fn next(previous: &SecretRecord) -> Result<u64, CryptoError> {
    previous
        .version
        .checked_add(1)
        .ok_or_else(|| CryptoError::WrongReply("a secret at the last possible version".into()))
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
