//! The byte formats the client produces: the sealed secret (fields encrypted
//! under a data key, data key wrapped under the master key) and the share
//! (data key wrapped for another identity's X25519 key).
//!
//! Both are versioned postcard enums; every AEAD call binds its purpose and
//! the owner, name and version (a share: owner, name and grantee) as
//! associated data.

use super::{derive_key, CryptoError, Key, SecretFields};
use crate::protocol::{SealedSecret, WrappedKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A sealed secret, as stored by the nodes.
#[derive(Serialize, Deserialize)]
enum SealedEnvelope {
    V1 {
        /// Nonce for wrapping the data key under the master key.
        key_nonce: [u8; 24],
        /// The data key under the master key (32 bytes + 16-byte tag).
        #[serde(with = "serde_bytes")]
        wrapped_data_key: Vec<u8>,
        /// Nonce for the fields.
        nonce: [u8; 24],
        /// The postcard-encoded fields under the data key, with tag.
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
}

/// A data key wrapped for a grantee. The wrapping key comes from two
/// X25519 agreements: the sender's one-time key with the grantee's, and the
/// owner's static key with the grantee's (authenticating the owner).
#[derive(Serialize, Deserialize)]
enum ShareEnvelope {
    V1 {
        /// The sender's one-time X25519 public key.
        ephemeral_public: [u8; 32],
        /// Nonce for the wrap.
        nonce: [u8; 24],
        /// The data key under the agreed key (32 bytes + 16-byte tag).
        #[serde(with = "serde_bytes")]
        wrapped_data_key: Vec<u8>,
    },
}

/// Where a sealed secret belongs: its owner, name and version, all bound
/// into the associated data.
pub(crate) struct Place<'a> {
    owner: &'a str,
    name: &'a str,
    version: String,
}

impl<'a> Place<'a> {
    pub(crate) fn new(owner: &'a str, name: &'a str, version: u64) -> Self {
        Place {
            owner,
            name,
            version: version.to_string(),
        }
    }

    fn associated_data(&self, purpose: &str) -> Vec<u8> {
        associated_data(purpose, &[self.owner, self.name, &self.version])
    }
}

/// Who a share is from and for, with their public keys.
pub(crate) struct Parties<'a> {
    pub(crate) owner: &'a str,
    pub(crate) owner_public: PublicKey,
    pub(crate) grantee: &'a str,
    pub(crate) grantee_public: PublicKey,
}

pub(crate) fn random_key() -> Key {
    let mut key = Key::default();
    OsRng.fill_bytes(key.as_mut());
    key
}

fn random_nonce() -> [u8; 24] {
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// `"vault/1" ‖ purpose ‖ (len ‖ part)*`: length prefixes make the encoding
/// injective, so ("ab", "c") and ("a", "bc") never collide.
fn associated_data(purpose: &str, parts: &[&str]) -> Vec<u8> {
    let mut data = b"vault/1 ".to_vec();
    for part in std::iter::once(&purpose).chain(parts) {
        data.extend_from_slice(&(part.len() as u64).to_le_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    data
}

fn encrypt(
    key: &Key,
    nonce: &[u8; 24],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    // Fails only for plaintexts beyond 256 GiB, far above any secret.
    cipher
        .encrypt(XNonce::from_slice(nonce), payload)
        .map_err(|_| CryptoError::Malformed)
}

fn decrypt(
    key: &Key,
    nonce: &[u8; 24],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let payload = Payload {
        msg: ciphertext,
        aad,
    };
    cipher
        .decrypt(XNonce::from_slice(nonce), payload)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

fn into_key(bytes: Zeroizing<Vec<u8>>) -> Result<Key, CryptoError> {
    let mut key = Key::default();
    if bytes.len() != key.len() {
        return Err(CryptoError::Malformed);
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn parse_sealed(sealed: &SealedSecret) -> Result<SealedEnvelope, CryptoError> {
    crate::protocol::decode(&sealed.0).map_err(|_| CryptoError::Malformed)
}

/// Serialises `fields` into a buffer sized up front, so no reallocation
/// leaves an unwiped copy of the plaintext behind.
fn serialize_fields(fields: &SecretFields) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let size =
        postcard::experimental::serialized_size(fields).map_err(|_| CryptoError::Malformed)?;
    let mut buffer = Zeroizing::new(vec![0u8; size]);
    let written = postcard::to_slice(fields, &mut buffer)
        .map_err(|_| CryptoError::Malformed)?
        .len();
    buffer.truncate(written);
    Ok(buffer)
}

/// Encrypts `fields` under `data_key` and wraps `data_key` under `master`,
/// both bound to `place`.
pub(crate) fn seal(
    master: &Key,
    data_key: &Key,
    place: &Place<'_>,
    fields: &SecretFields,
) -> Result<SealedSecret, CryptoError> {
    let plaintext = serialize_fields(fields)?;
    let key_nonce = random_nonce();
    let nonce = random_nonce();
    let envelope = SealedEnvelope::V1 {
        key_nonce,
        wrapped_data_key: encrypt(
            master,
            &key_nonce,
            data_key.as_ref(),
            &place.associated_data("data-key"),
        )?,
        nonce,
        ciphertext: encrypt(
            data_key,
            &nonce,
            &plaintext,
            &place.associated_data("fields"),
        )?,
    };
    Ok(SealedSecret(crate::protocol::encode(&envelope)))
}

/// Unwraps the data key of the owner's own secret at `place`.
pub(crate) fn own_data_key(
    master: &Key,
    place: &Place<'_>,
    sealed: &SealedSecret,
) -> Result<Key, CryptoError> {
    let SealedEnvelope::V1 {
        key_nonce,
        wrapped_data_key,
        ..
    } = parse_sealed(sealed)?;
    let aad = place.associated_data("data-key");
    into_key(decrypt(master, &key_nonce, &wrapped_data_key, &aad)?)
}

/// Decrypts the fields at `place` with an already unwrapped data key.
pub(crate) fn open_fields(
    data_key: &Key,
    place: &Place<'_>,
    sealed: &SealedSecret,
) -> Result<SecretFields, CryptoError> {
    let SealedEnvelope::V1 {
        nonce, ciphertext, ..
    } = parse_sealed(sealed)?;
    let plaintext = decrypt(
        data_key,
        &nonce,
        &ciphertext,
        &place.associated_data("fields"),
    )?;
    crate::protocol::decode(&plaintext).map_err(|_| CryptoError::Malformed)
}

/// The key both sides of a share agree on: KDF over the ephemeral and the
/// static X25519 points and all three public keys. Without the owner's (or
/// the grantee's) static secret key the second point is unknown, so no one
/// else can make a share that opens as the owner's.
fn share_key(
    ephemeral_point: &x25519_dalek::SharedSecret,
    static_point: &x25519_dalek::SharedSecret,
    ephemeral: &PublicKey,
    parties: &Parties<'_>,
) -> Key {
    derive_key(
        ephemeral_point.as_bytes(),
        &[
            b"share",
            static_point.as_bytes(),
            ephemeral.as_bytes(),
            parties.owner_public.as_bytes(),
            parties.grantee_public.as_bytes(),
        ],
    )
}

/// Wraps `data_key` of the owner's secret `name` for the grantee; `owner`
/// is the owner's static secret key.
pub(crate) fn wrap_share(
    data_key: &Key,
    owner: &StaticSecret,
    parties: &Parties<'_>,
    name: &str,
) -> Result<WrappedKey, CryptoError> {
    let ephemeral = EphemeralSecret::random_from_rng(OsRng);
    let ephemeral_public = PublicKey::from(&ephemeral);
    let ephemeral_point = ephemeral.diffie_hellman(&parties.grantee_public);
    let static_point = owner.diffie_hellman(&parties.grantee_public);
    if !ephemeral_point.was_contributory() || !static_point.was_contributory() {
        return Err(CryptoError::BadPublicKey(parties.grantee.to_string()));
    }
    let key = share_key(&ephemeral_point, &static_point, &ephemeral_public, parties);
    let nonce = random_nonce();
    let aad = associated_data("share", &[parties.owner, name, parties.grantee]);
    let envelope = ShareEnvelope::V1 {
        ephemeral_public: *ephemeral_public.as_bytes(),
        nonce,
        wrapped_data_key: encrypt(&key, &nonce, data_key.as_ref(), &aad)?,
    };
    Ok(WrappedKey(crate::protocol::encode(&envelope)))
}

/// Unwraps the data key of the owner's secret `name` shared with the
/// grantee; `grantee` is the grantee's static secret key.
pub(crate) fn unwrap_share(
    grantee: &StaticSecret,
    parties: &Parties<'_>,
    name: &str,
    wrapped: &WrappedKey,
) -> Result<Key, CryptoError> {
    let ShareEnvelope::V1 {
        ephemeral_public,
        nonce,
        wrapped_data_key,
    } = crate::protocol::decode(&wrapped.0).map_err(|_| CryptoError::Malformed)?;
    let ephemeral_public = PublicKey::from(ephemeral_public);
    let ephemeral_point = grantee.diffie_hellman(&ephemeral_public);
    let static_point = grantee.diffie_hellman(&parties.owner_public);
    if !ephemeral_point.was_contributory() || !static_point.was_contributory() {
        return Err(CryptoError::Decrypt);
    }
    let key = share_key(&ephemeral_point, &static_point, &ephemeral_public, parties);
    let aad = associated_data("share", &[parties.owner, name, parties.grantee]);
    into_key(decrypt(&key, &nonce, &wrapped_data_key, &aad)?)
}
