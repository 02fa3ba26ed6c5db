//! The client's check of a node's answer (SPEC §4): a node returning
//! another secret's row, another version, or a wrapped key on an own read
//! is refused before anything is decrypted.

use super::*;

fn asked<'a>(owner: &'a str, name: &'a str, version: Option<u64>) -> Asked<'a> {
    Asked {
        owner,
        name,
        version,
        reader: "client:alice",
    }
}

#[test]
fn the_record_asked_for_passes() {
    let alice = keyring("client:alice", "pw");
    let mail = own(&alice, "mail");
    assert_eq!(
        check_reply(&asked("client:alice", "mail", None), &mail),
        Ok(())
    );
    assert_eq!(
        check_reply(&asked("client:alice", "mail", Some(1)), &mail),
        Ok(())
    );
}

#[test]
fn another_secrets_row_is_refused() {
    let alice = keyring("client:alice", "pw");
    let bank = own(&alice, "bank");
    let error = check_reply(&asked("client:alice", "mail", None), &bank).unwrap_err();
    assert!(matches!(error, CryptoError::WrongReply(_)), "{error}");
    assert!(error.to_string().contains("\"bank\""), "{error}");
    let bobs = own(&keyring("client:bob", "pw"), "mail");
    let error = check_reply(&asked("client:alice", "mail", None), &bobs).unwrap_err();
    assert!(error.to_string().contains("client:bob"), "{error}");
}

#[test]
fn another_version_is_refused() {
    let alice = keyring("client:alice", "pw");
    let mail = own(&alice, "mail");
    let error = check_reply(&asked("client:alice", "mail", Some(2)), &mail).unwrap_err();
    assert!(error.to_string().contains("version 1"), "{error}");
    let zero = SecretRecord { version: 0, ..mail };
    assert!(check_reply(&asked("client:alice", "mail", None), &zero).is_err());
}

#[test]
fn a_wrapped_key_on_an_own_read_is_refused() {
    let alice = keyring("client:alice", "pw");
    let bob = keyring("client:bob", "pw");
    let mail = own(&alice, "mail");
    let wrapped = alice
        .share(&mail, "client:bob", bob.public_key())
        .expect("share");
    let slipped = SecretRecord {
        wrapped_key: Some(wrapped),
        ..mail
    };
    let error = check_reply(&asked("client:alice", "mail", None), &slipped).unwrap_err();
    assert!(error.to_string().contains("wrapped"), "{error}");
    // Keyring::open refuses it too, whoever forgot to call check_reply.
    assert!(matches!(
        alice.open(&slipped, None),
        Err(CryptoError::WrongReply(_))
    ));
}

#[test]
fn a_shared_read_without_a_wrapped_key_is_refused() {
    let bob = keyring("client:bob", "pw");
    let secret = own(&bob, "wifi");
    assert_eq!(
        check_reply(&asked("client:bob", "wifi", None), &secret),
        Err(CryptoError::NotShared("client:bob".into()))
    );
}
