//! What the envelope must guarantee, each shown failing where it must.

use super::*;

/// Tiny Argon2 costs keep the tests fast; the costs do not change any
/// property checked here.
const FAST: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn keyring(identity: &str, passphrase: &str) -> Keyring {
    Keyring::derive(identity, &Passphrase::new(passphrase.into()), FAST).expect("derive")
}

fn fields() -> SecretFields {
    SecretFields {
        username: Some("alice@example.com".into()),
        password: Some("hunter2-correct-horse".into()),
        url: Some("https://example.com".into()),
        note: None,
    }
}

fn record(
    owner: &str,
    name: &str,
    sealed: SealedSecret,
    wrapped: Option<WrappedKey>,
) -> SecretRecord {
    SecretRecord {
        owner: owner.into(),
        name: name.into(),
        version: 1,
        sealed,
        wrapped_key: wrapped,
    }
}

#[test]
fn sealed_secrets_round_trip_and_hide_the_plaintext() {
    let alice = keyring("client:alice", "correct horse");
    let sealed = alice.seal("mail", &fields()).expect("seal");
    let bytes = &sealed.0;
    for secret in ["hunter2", "alice@example.com", "example.com"] {
        let found = bytes
            .windows(secret.len())
            .any(|window| window == secret.as_bytes());
        assert!(!found, "the ciphertext contains {secret:?} in clear");
    }
    let opened = alice
        .open(&record("client:alice", "mail", sealed, None))
        .expect("open");
    assert_eq!(opened, fields());
}

#[test]
fn the_same_passphrase_gives_the_same_keys_anywhere() {
    let here = keyring("client:alice", "correct horse");
    let there = keyring("client:alice", "correct horse");
    assert_eq!(here.public_key(), there.public_key());
    let sealed = here.seal("mail", &fields()).expect("seal");
    assert!(there
        .open(&record("client:alice", "mail", sealed, None))
        .is_ok());
    // The salt depends on the identity: same passphrase, other identity,
    // other keys.
    assert_ne!(
        keyring("client:bob", "correct horse").public_key(),
        here.public_key()
    );
}

#[test]
fn a_wrong_passphrase_fails() {
    let alice = keyring("client:alice", "correct horse");
    let sealed = alice.seal("mail", &fields()).expect("seal");
    let impostor = keyring("client:alice", "correct horsf");
    let result = impostor.open(&record("client:alice", "mail", sealed, None));
    assert_eq!(result, Err(CryptoError::Decrypt));
}

#[test]
fn any_tampered_byte_fails() {
    let alice = keyring("client:alice", "pw");
    let sealed = alice.seal("mail", &fields()).expect("seal");
    for position in 0..sealed.0.len() {
        let mut bytes = sealed.0.clone();
        bytes[position] ^= 0x01;
        let result = alice.open(&record("client:alice", "mail", SealedSecret(bytes), None));
        assert!(result.is_err(), "flipping byte {position} went unnoticed");
    }
    let mut truncated = sealed.0.clone();
    truncated.pop();
    assert!(alice
        .open(&record(
            "client:alice",
            "mail",
            SealedSecret(truncated),
            None
        ))
        .is_err());
}

#[test]
fn a_ciphertext_moved_to_another_name_or_owner_fails() {
    let alice = keyring("client:alice", "pw");
    let mail = alice.seal("mail", &fields()).expect("seal");
    let moved = alice.open(&record("client:alice", "bank", mail.clone(), None));
    assert_eq!(moved, Err(CryptoError::Decrypt));
    // Reusing alice's data key under another owner name also fails: the
    // fields are bound to the owner even when the data key is known.
    let data_key =
        envelope::own_data_key(&alice.master, "client:alice", "mail", &mail).expect("key");
    assert!(envelope::open_fields(&data_key, "client:alice", "mail", &mail).is_ok());
    assert_eq!(
        envelope::open_fields(&data_key, "client:mallory", "mail", &mail),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn shares_open_for_the_grantee_only() {
    let alice = keyring("client:alice", "a-pass");
    let bob = keyring("client:bob", "b-pass");
    let carol = keyring("client:carol", "c-pass");
    let sealed = alice.seal("wifi", &fields()).expect("seal");
    let wrapped = alice
        .share("wifi", &sealed, "client:bob", bob.public_key())
        .expect("share");
    let shared = record(
        "client:alice",
        "wifi",
        sealed.clone(),
        Some(wrapped.clone()),
    );
    assert_eq!(bob.open(&shared).expect("bob opens"), fields());
    // Carol presenting bob's wrapped key gets nothing.
    assert_eq!(carol.open(&shared), Err(CryptoError::Decrypt));
    // Without a wrapped key another owner's secret cannot be opened.
    let unshared = record("client:alice", "wifi", sealed.clone(), None);
    assert_eq!(
        bob.open(&unshared),
        Err(CryptoError::NotShared("client:alice".into()))
    );
    // A wrapped key moved to another secret of alice fails.
    let other = alice.seal("bank", &fields()).expect("seal");
    assert!(bob
        .open(&record("client:alice", "bank", other, Some(wrapped)))
        .is_err());
}

#[test]
fn resealing_keeps_grants_valid() {
    let alice = keyring("client:alice", "a-pass");
    let bob = keyring("client:bob", "b-pass");
    let first = alice.seal("wifi", &fields()).expect("seal");
    let wrapped = alice
        .share("wifi", &first, "client:bob", bob.public_key())
        .expect("share");
    let mut changed = fields();
    changed.password = Some("new password".into());
    let second = alice.reseal("wifi", &first, &changed).expect("reseal");
    assert_ne!(first, second);
    let opened = bob
        .open(&record("client:alice", "wifi", second, Some(wrapped)))
        .expect("open");
    assert_eq!(opened, changed);
}

#[test]
fn low_order_public_keys_are_refused() {
    let alice = keyring("client:alice", "a-pass");
    let sealed = alice.seal("wifi", &fields()).expect("seal");
    let result = alice.share("wifi", &sealed, "client:bob", [0u8; 32]);
    assert_eq!(result, Err(CryptoError::BadPublicKey("client:bob".into())));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let alice = keyring("client:alice", "pw");
    for bytes in [vec![], vec![0], vec![0xff; 100], vec![1; 7]] {
        let sealed = record("client:alice", "x", SealedSecret(bytes.clone()), None);
        assert!(alice.open(&sealed).is_err());
        let shared = record(
            "client:bob",
            "x",
            SealedSecret(vec![]),
            Some(WrappedKey(bytes)),
        );
        assert!(alice.open(&shared).is_err());
    }
}

#[test]
fn debug_output_contains_no_secret() {
    let passphrase = Passphrase::new("correct horse battery".into());
    let alice = Keyring::derive("client:alice", &passphrase, FAST).expect("derive");
    let text = format!("{:?} {:?} {:?}", fields(), passphrase, alice);
    for secret in [
        "hunter2",
        "alice@example.com",
        "example.com",
        "correct horse",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
    assert!(text.contains("<redacted>"), "{text}");
    let error = alice.open(&record("client:alice", "x", SealedSecret(vec![1]), None));
    assert!(!format!("{error:?}").contains("correct"));
}

#[test]
fn invalid_parameters_are_an_error() {
    let params = KdfParams {
        memory_kib: 1,
        iterations: 0,
        parallelism: 1,
    };
    let result = Keyring::derive("client:alice", &Passphrase::new("x".into()), params);
    assert!(matches!(result, Err(CryptoError::Parameters(_))));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn shared_keyring() -> &'static Keyring {
        static KEYRING: OnceLock<Keyring> = OnceLock::new();
        KEYRING.get_or_init(|| keyring("client:alice", "pw"))
    }

    proptest! {
        /// Arbitrary sealed or wrapped bytes are an error, never a panic.
        #[test]
        fn arbitrary_envelopes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let alice = shared_keyring();
            let own = record("client:alice", "x", SealedSecret(bytes.clone()), None);
            prop_assert!(alice.open(&own).is_err());
            let sealed = alice.seal("x", &fields()).expect("seal");
            let shared = record("client:bob", "x", sealed, Some(WrappedKey(bytes)));
            prop_assert!(alice.open(&shared).is_err());
        }
    }
}
