//! What the envelope must guarantee, each shown failing where it must.

use super::*;

/// Tiny Argon2 costs keep the tests fast; the costs do not change any
/// property checked here.
const FAST: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// A fixed salt per test identity, so that "the same passphrase" below
/// means the same keys.
fn keyring(identity: &str, passphrase: &str) -> Keyring {
    Keyring::derive(identity, &Passphrase::new(passphrase.into()), [7; 16], FAST).expect("derive")
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

fn own(keyring: &Keyring, name: &str) -> SecretRecord {
    let sealed = keyring.seal(name, 1, &fields()).expect("seal");
    record(keyring.identity(), name, sealed, None)
}

#[test]
fn sealed_secrets_round_trip_and_hide_the_plaintext() {
    let alice = keyring("client:alice", "correct horse");
    let secret = own(&alice, "mail");
    for text in ["hunter2", "alice@example.com", "example.com"] {
        let found = secret
            .sealed
            .0
            .windows(text.len())
            .any(|window| window == text.as_bytes());
        assert!(!found, "the ciphertext contains {text:?} in clear");
    }
    assert_eq!(alice.open(&secret, None).expect("open"), fields());
}

#[test]
fn the_same_passphrase_and_salt_give_the_same_keys_anywhere() {
    let here = keyring("client:alice", "correct horse");
    let there = keyring("client:alice", "correct horse");
    assert_eq!(here.public_key(), there.public_key());
    assert!(there.open(&own(&here, "mail"), None).is_ok());
}

#[test]
fn a_new_identity_draws_a_random_salt() {
    let passphrase = Passphrase::new("correct horse".into());
    let first = Keyring::create("client:alice", &passphrase, FAST).expect("create");
    let second = Keyring::create("client:alice", &passphrase, FAST).expect("create");
    assert_ne!(first.record().salt, second.record().salt);
    assert_ne!(first.public_key(), second.public_key());
    // The salt is not a function of the identity name (as it once was).
    assert_ne!(first.record().salt, [0; 16]);
}

#[test]
fn unlock_accepts_the_right_passphrase_and_reports_a_wrong_one() {
    let right = Passphrase::new("correct horse".into());
    let created = Keyring::create("client:bob", &right, FAST).expect("create");
    let published = created.record();
    let unlocked = Keyring::unlock("client:bob", &right, &published, FAST).expect("unlock");
    assert_eq!(unlocked.public_key(), created.public_key());
    let typo = Passphrase::new("correct horsf".into());
    assert_eq!(
        Keyring::unlock("client:bob", &typo, &published, FAST).map(|_| ()),
        Err(CryptoError::WrongPassphrase)
    );
    assert_eq!(CryptoError::WrongPassphrase.to_string(), "wrong passphrase");
}

#[test]
fn unlock_refuses_an_altered_public_key_or_a_weak_cost() {
    let right = Passphrase::new("correct horse".into());
    let created = Keyring::create("client:bob", &right, FAST).expect("create");
    let mut altered = created.record();
    altered.public_key = keyring("client:mallory", "m").public_key();
    assert_eq!(
        Keyring::unlock("client:bob", &right, &altered, FAST).map(|_| ()),
        Err(CryptoError::InconsistentIdentity("client:bob".into()))
    );
    // A node lowering the published cost below the floor is refused before
    // any derivation, whatever else the record says.
    let mut weak = created.record();
    weak.kdf.memory_kib = 8;
    assert!(matches!(
        Keyring::unlock("client:bob", &right, &weak, FAST),
        Err(CryptoError::Parameters(_))
    ));
    let published = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };
    assert!(published.check(KdfParams::MINIMUM).is_err());
    assert!(KdfParams::RECOMMENDED.check(KdfParams::MINIMUM).is_ok());
    let huge = KdfParams {
        memory_kib: u32::MAX,
        ..KdfParams::RECOMMENDED
    };
    assert!(huge.check(KdfParams::MINIMUM).is_err());
}

#[test]
fn a_wrong_passphrase_fails_to_open() {
    let alice = keyring("client:alice", "correct horse");
    let secret = own(&alice, "mail");
    let impostor = keyring("client:alice", "correct horsf");
    assert_eq!(impostor.open(&secret, None), Err(CryptoError::Decrypt));
}

#[test]
fn any_tampered_byte_fails() {
    let alice = keyring("client:alice", "pw");
    let secret = own(&alice, "mail");
    for position in 0..secret.sealed.0.len() {
        let mut tampered = secret.clone();
        tampered.sealed.0[position] ^= 0x01;
        let result = alice.open(&tampered, None);
        assert!(result.is_err(), "flipping byte {position} went unnoticed");
    }
    let mut truncated = secret.clone();
    truncated.sealed.0.pop();
    assert!(alice.open(&truncated, None).is_err());
}

#[test]
fn a_ciphertext_moved_to_another_name_owner_or_version_fails() {
    let alice = keyring("client:alice", "pw");
    let mail = own(&alice, "mail");
    let moved = SecretRecord {
        name: "bank".into(),
        ..mail.clone()
    };
    assert_eq!(alice.open(&moved, None), Err(CryptoError::Decrypt));
    // Version 1 served as if it were version 2: the version is bound too.
    let relabelled = SecretRecord {
        version: 2,
        ..mail.clone()
    };
    assert_eq!(alice.open(&relabelled, None), Err(CryptoError::Decrypt));
    // Reusing alice's data key under another owner name also fails: the
    // fields are bound to the owner even when the data key is known.
    let place = envelope::Place::new("client:alice", "mail", 1);
    let data_key = envelope::own_data_key(&alice.master, &place, &mail.sealed).expect("key");
    assert!(envelope::open_fields(&data_key, &place, &mail.sealed).is_ok());
    let elsewhere = envelope::Place::new("client:mallory", "mail", 1);
    assert_eq!(
        envelope::open_fields(&data_key, &elsewhere, &mail.sealed),
        Err(CryptoError::Decrypt)
    );
    let older = envelope::Place::new("client:alice", "mail", 2);
    assert_eq!(
        envelope::open_fields(&data_key, &older, &mail.sealed),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn an_old_version_under_the_same_key_does_not_open_as_the_current_one() {
    let alice = keyring("client:alice", "pw");
    let first = own(&alice, "mail");
    let mut changed = fields();
    changed.password = Some("new password".into());
    let second = SecretRecord {
        version: 2,
        sealed: alice.reseal(&first, &changed).expect("reseal"),
        ..first.clone()
    };
    assert_eq!(alice.open(&second, None).expect("open"), changed);
    // A node answering "version 2" with version 1's ciphertext (same data
    // key: an update keeps it) is caught.
    let rolled_back = SecretRecord {
        version: 2,
        ..first
    };
    assert_eq!(alice.open(&rolled_back, None), Err(CryptoError::Decrypt));
}

#[test]
fn shares_open_for_the_grantee_only() {
    let alice = keyring("client:alice", "a-pass");
    let bob = keyring("client:bob", "b-pass");
    let carol = keyring("client:carol", "c-pass");
    let secret = own(&alice, "wifi");
    let wrapped = alice
        .share(&secret, "client:bob", bob.public_key())
        .expect("share");
    let shared = SecretRecord {
        wrapped_key: Some(wrapped.clone()),
        ..secret.clone()
    };
    let alice_key = Some(alice.public_key());
    assert_eq!(bob.open(&shared, alice_key).expect("bob opens"), fields());
    // Carol presenting bob's wrapped key gets nothing.
    assert_eq!(carol.open(&shared, alice_key), Err(CryptoError::Decrypt));
    // Without a wrapped key another owner's secret cannot be opened.
    assert_eq!(
        bob.open(&secret, alice_key),
        Err(CryptoError::NotShared("client:alice".into()))
    );
    // A wrapped key moved to another secret of alice fails.
    let bank = SecretRecord {
        wrapped_key: Some(wrapped),
        ..own(&alice, "bank")
    };
    assert!(bob.open(&bank, alice_key).is_err());
}

#[test]
fn a_share_not_made_by_the_owner_is_refused() {
    let alice = keyring("client:alice", "a-pass");
    let bob = keyring("client:bob", "b-pass");
    // Mallory (a node, say) knows alice's and bob's public keys and makes a
    // secret of her own look like alice's: sealed as "client:alice", its
    // data key wrapped for bob naming alice's public key as the owner's.
    // She cannot do the static exchange as alice.
    let mallory = keyring("client:alice", "not alice's passphrase");
    let forged = own(&mallory, "wifi");
    let data_key = mallory.own_data_key(&forged).expect("her own data key");
    let parties = envelope::Parties {
        owner: "client:alice",
        owner_public: alice.public,
        grantee: "client:bob",
        grantee_public: bob.public,
    };
    let wrapped =
        envelope::wrap_share(&data_key, &mallory.exchange, &parties, "wifi").expect("wrap");
    let served = SecretRecord {
        wrapped_key: Some(wrapped),
        ..forged
    };
    assert_eq!(
        bob.open(&served, Some(alice.public_key())),
        Err(CryptoError::Decrypt)
    );
    // The real owner's share of the same kind opens.
    let real = own(&alice, "wifi");
    let shared = SecretRecord {
        wrapped_key: Some(
            alice
                .share(&real, "client:bob", bob.public_key())
                .expect("share"),
        ),
        ..real
    };
    assert!(bob.open(&shared, Some(alice.public_key())).is_ok());
}

#[test]
fn resealing_keeps_grants_valid_and_rekeying_drops_them() {
    let alice = keyring("client:alice", "a-pass");
    let bob = keyring("client:bob", "b-pass");
    let first = own(&alice, "wifi");
    let wrapped = alice
        .share(&first, "client:bob", bob.public_key())
        .expect("share");
    let mut changed = fields();
    changed.password = Some("new password".into());
    let second = SecretRecord {
        version: 2,
        sealed: alice.reseal(&first, &changed).expect("reseal"),
        wrapped_key: Some(wrapped.clone()),
        ..first.clone()
    };
    let alice_key = Some(alice.public_key());
    assert_eq!(bob.open(&second, alice_key).expect("open"), changed);
    // Unshare re-keys: version 3 under a new data key. Bob's old wrapped
    // key no longer opens it, even if a node keeps serving it to him.
    let mut own_second = second.clone();
    own_second.wrapped_key = None;
    let third = SecretRecord {
        version: 3,
        sealed: alice.rekey(&own_second).expect("rekey"),
        wrapped_key: None,
        ..first
    };
    assert_eq!(alice.open(&third, None).expect("owner opens"), changed);
    let kept_old_key = SecretRecord {
        wrapped_key: Some(wrapped),
        ..third.clone()
    };
    assert_eq!(
        bob.open(&kept_old_key, alice_key),
        Err(CryptoError::Decrypt)
    );
    // A grantee re-wrapped for the new key reads it.
    let rewrapped = SecretRecord {
        wrapped_key: Some(
            alice
                .share(&third, "client:bob", bob.public_key())
                .expect("share"),
        ),
        ..third
    };
    assert_eq!(bob.open(&rewrapped, alice_key).expect("open"), changed);
}

#[test]
fn low_order_public_keys_are_refused() {
    let alice = keyring("client:alice", "a-pass");
    let result = alice.share(&own(&alice, "wifi"), "client:bob", [0u8; 32]);
    assert_eq!(result, Err(CryptoError::BadPublicKey("client:bob".into())));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let alice = keyring("client:alice", "pw");
    for bytes in [vec![], vec![0], vec![0xff; 100], vec![1; 7]] {
        let sealed = record("client:alice", "x", SealedSecret(bytes.clone()), None);
        assert!(alice.open(&sealed, None).is_err());
        let shared = record(
            "client:bob",
            "x",
            SealedSecret(vec![]),
            Some(WrappedKey(bytes)),
        );
        assert!(alice.open(&shared, Some([9; 32])).is_err());
    }
}

#[test]
fn fingerprints_are_stable_and_compared_loosely() {
    let key = keyring("client:bob", "b").public_key();
    let shown = fingerprint(&key);
    assert_eq!(shown.len(), 39, "{shown}");
    assert_eq!(shown, fingerprint(&key));
    assert_ne!(shown, fingerprint(&keyring("client:bob", "c").public_key()));
    assert!(same_fingerprint(
        &shown,
        &shown.to_uppercase().replace('-', "")
    ));
    assert!(!same_fingerprint(&shown, ""));
    assert!(!same_fingerprint("", ""));
}

#[test]
fn debug_output_contains_no_secret() {
    let passphrase = Passphrase::new("correct horse battery".into());
    let alice = Keyring::create("client:alice", &passphrase, FAST).expect("derive");
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
    let error = alice.open(
        &record("client:alice", "x", SealedSecret(vec![1]), None),
        None,
    );
    assert!(!format!("{error:?}").contains("correct"));
}

#[test]
fn invalid_parameters_are_an_error() {
    let params = KdfParams {
        memory_kib: 1,
        iterations: 0,
        parallelism: 1,
    };
    let result = Keyring::create("client:alice", &Passphrase::new("x".into()), params);
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
            prop_assert!(alice.open(&own, None).is_err());
            let sealed = alice.seal("x", 1, &fields()).expect("seal");
            let shared = record("client:bob", "x", sealed, Some(WrappedKey(bytes)));
            prop_assert!(alice.open(&shared, Some([9; 32])).is_err());
        }
    }
}

mod replies;
