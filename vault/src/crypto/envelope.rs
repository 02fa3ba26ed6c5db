//! The byte formats the client produces: the sealed secret (fields encrypted
//! under a data key, data key wrapped under the master key) and the share
//! (data key wrapped for another identity's X25519 key).
//!
//! Both are versioned postcard enums; every AEAD call binds its purpose and
//! the owner and name (and grantee) as associated data.

use super::{derive_key, CryptoError, Key, SecretFields};
use crate::protocol::{SealedSecret, SecretRecord, WrappedKey};
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

/// A data key wrapped for a grantee.
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

/// Who a share is for.
pub(crate) struct Recipient<'a> {
    pub(crate) identity: &'a str,
    pub(crate) public: PublicKey,
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

/// Encrypts `fields` under `data_key` and wraps `data_key` under `master`.
pub(crate) fn seal(
    master: &Key,
    data_key: &Key,
    owner: &str,
    name: &str,
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
            &associated_data("data-key", &[owner, name]),
        )?,
        nonce,
        ciphertext: encrypt(
            data_key,
            &nonce,
            &plaintext,
            &associated_data("fields", &[owner, name]),
        )?,
    };
    Ok(SealedSecret(crate::protocol::encode(&envelope)))
}

/// Unwraps the data key of the owner's own secret.
pub(crate) fn own_data_key(
    master: &Key,
    owner: &str,
    name: &str,
    sealed: &SealedSecret,
) -> Result<Key, CryptoError> {
    let SealedEnvelope::V1 {
        key_nonce,
        wrapped_data_key,
        ..
    } = parse_sealed(sealed)?;
    let aad = associated_data("data-key", &[owner, name]);
    into_key(decrypt(master, &key_nonce, &wrapped_data_key, &aad)?)
}

/// Decrypts the fields with an already unwrapped data key.
pub(crate) fn open_fields(
    data_key: &Key,
    owner: &str,
    name: &str,
    sealed: &SealedSecret,
) -> Result<SecretFields, CryptoError> {
    let SealedEnvelope::V1 {
        nonce, ciphertext, ..
    } = parse_sealed(sealed)?;
    let plaintext = decrypt(
        data_key,
        &nonce,
        &ciphertext,
        &associated_data("fields", &[owner, name]),
    )?;
    crate::protocol::decode(&plaintext).map_err(|_| CryptoError::Malformed)
}

/// The key both sides of a share agree on: KDF over the X25519 point and
/// both public keys (binding the key to this exact exchange).
fn share_key(
    point: &x25519_dalek::SharedSecret,
    ephemeral: &PublicKey,
    recipient: &PublicKey,
) -> Key {
    derive_key(
        point.as_bytes(),
        &[b"share", ephemeral.as_bytes(), recipient.as_bytes()],
    )
}

/// Wraps `data_key` of `owner`'s secret `name` for `recipient`.
pub(crate) fn wrap_share(
    data_key: &Key,
    owner: &str,
    name: &str,
    recipient: &Recipient<'_>,
) -> Result<WrappedKey, CryptoError> {
    let ephemeral = EphemeralSecret::random_from_rng(OsRng);
    let ephemeral_public = PublicKey::from(&ephemeral);
    let point = ephemeral.diffie_hellman(&recipient.public);
    if !point.was_contributory() {
        return Err(CryptoError::BadPublicKey(recipient.identity.to_string()));
    }
    let key = share_key(&point, &ephemeral_public, &recipient.public);
    let nonce = random_nonce();
    let aad = associated_data("share", &[owner, name, recipient.identity]);
    let envelope = ShareEnvelope::V1 {
        ephemeral_public: *ephemeral_public.as_bytes(),
        nonce,
        wrapped_data_key: encrypt(&key, &nonce, data_key.as_ref(), &aad)?,
    };
    Ok(WrappedKey(crate::protocol::encode(&envelope)))
}

/// Unwraps the data key of a secret shared with `me`.
pub(crate) fn unwrap_share(
    exchange: &StaticSecret,
    public: &PublicKey,
    record: &SecretRecord,
    me: &str,
    wrapped: &WrappedKey,
) -> Result<Key, CryptoError> {
    let ShareEnvelope::V1 {
        ephemeral_public,
        nonce,
        wrapped_data_key,
    } = crate::protocol::decode(&wrapped.0).map_err(|_| CryptoError::Malformed)?;
    let ephemeral_public = PublicKey::from(ephemeral_public);
    let point = exchange.diffie_hellman(&ephemeral_public);
    if !point.was_contributory() {
        return Err(CryptoError::Decrypt);
    }
    let key = share_key(&point, &ephemeral_public, public);
    let aad = associated_data("share", &[&record.owner, &record.name, me]);
    into_key(decrypt(&key, &nonce, &wrapped_data_key, &aad)?)
}
