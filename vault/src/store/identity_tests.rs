//! Identity records, version-checked puts and the re-keying unshare, as
//! the state machine applies them (SPEC §4 "The client trusts no node").

use super::tests::{Fixture, ALICE, BOB, CAROL};
use crate::crypto::KdfParams;
use crate::protocol::{
    Grant, IdentityRecord, Operation, Response, SealedSecret, VaultError, VaultQuery, WrappedKey,
};

fn identity(byte: u8) -> IdentityRecord {
    IdentityRecord {
        public_key: [byte; 32],
        salt: [byte; 16],
        kdf: KdfParams::MINIMUM,
        key_check: [byte; 32],
    }
}

fn publish(record: IdentityRecord, replace: bool) -> Operation {
    Operation::PublishKey { record, replace }
}

fn lookup(fixture: &Fixture, who: &str) -> Result<Response, VaultError> {
    fixture.ask(VaultQuery::PublicKey {
        identity: who.into(),
    })
}

#[test]
fn the_first_identity_record_wins_unless_replaced_on_purpose() {
    let mut fixture = Fixture::new();
    assert!(matches!(
        lookup(&fixture, BOB),
        Err(VaultError::NotFound(_))
    ));
    assert_eq!(
        fixture.run(BOB, None, publish(identity(5), false)),
        Ok(Response::KeyPublished)
    );
    // Publishing the same record again is harmless.
    assert_eq!(
        fixture.run(BOB, None, publish(identity(5), false)),
        Ok(Response::KeyPublished)
    );
    // A different record (a mistyped passphrase, a racing first use) is
    // refused: the keys everything was shared under stay.
    assert!(matches!(
        fixture.run(BOB, None, publish(identity(6), false)),
        Err(VaultError::AlreadyExists(_))
    ));
    assert_eq!(
        lookup(&fixture, BOB),
        Ok(Response::PublicKey {
            identity: BOB.into(),
            record: identity(5),
        })
    );
    assert_eq!(
        fixture.run(BOB, None, publish(identity(6), true)),
        Ok(Response::KeyPublished)
    );
    assert_eq!(
        lookup(&fixture, BOB),
        Ok(Response::PublicKey {
            identity: BOB.into(),
            record: identity(6),
        })
    );
}

fn put(name: &str, update: bool, version: u64) -> Operation {
    Operation::Put {
        name: name.into(),
        sealed: SealedSecret(vec![version as u8; 4]),
        update,
        version,
    }
}

#[test]
fn a_put_sealed_as_another_version_is_a_conflict() {
    let mut fixture = Fixture::new();
    assert!(matches!(
        fixture.run(ALICE, None, put("a", false, 2)),
        Err(VaultError::Conflict(_))
    ));
    assert_eq!(
        fixture.run(ALICE, None, put("a", false, 1)),
        Ok(Response::Added { version: 1 })
    );
    // Two updates sealed from version 1: the second would be stored as 3
    // while its associated data says 2, so it is refused.
    assert_eq!(
        fixture.run(ALICE, None, put("a", true, 2)),
        Ok(Response::Added { version: 2 })
    );
    assert!(matches!(
        fixture.run(ALICE, None, put("a", true, 2)),
        Err(VaultError::Conflict(_))
    ));
    assert_eq!(fixture.version(ALICE, "a"), Some(2));
}

fn share(grantee: &str, byte: u8) -> Operation {
    Operation::Share {
        name: "wifi".into(),
        grantee: grantee.into(),
        wrapped_key: WrappedKey(vec![byte; 8]),
    }
}

fn unshare(grantee: &str, version: u64, grants: Vec<Grant>) -> Operation {
    Operation::Unshare {
        name: "wifi".into(),
        grantee: grantee.into(),
        sealed: SealedSecret(vec![0xee; 4]),
        version,
        grants,
    }
}

fn grant(grantee: &str, byte: u8) -> Grant {
    Grant {
        grantee: grantee.into(),
        wrapped_key: WrappedKey(vec![byte; 8]),
    }
}

fn grantees(fixture: &Fixture) -> Result<Response, VaultError> {
    fixture.ask(VaultQuery::Grants {
        caller: ALICE.into(),
        name: "wifi".into(),
    })
}

#[test]
fn unshare_rekeys_the_secret_and_every_remaining_grant_at_once() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "wifi", 1, false).expect("added");
    fixture.run(ALICE, None, share(BOB, 1)).expect("shared");
    fixture.run(ALICE, None, share(CAROL, 1)).expect("shared");
    assert_eq!(
        grantees(&fixture),
        Ok(Response::Grants {
            name: "wifi".into(),
            grantees: vec![BOB.into(), CAROL.into()],
        })
    );
    // Carol's new key missing: refused, nothing changed.
    assert!(matches!(
        fixture.run(ALICE, None, unshare(BOB, 2, Vec::new())),
        Err(VaultError::Conflict(_))
    ));
    // Sealed as the wrong version: refused, nothing changed.
    assert!(matches!(
        fixture.run(ALICE, None, unshare(BOB, 5, vec![grant(CAROL, 2)])),
        Err(VaultError::Conflict(_))
    ));
    assert_eq!(fixture.version(ALICE, "wifi"), Some(1));
    assert!(fixture.read(BOB, Some(ALICE), "wifi").is_ok());
    assert_eq!(
        fixture.run(ALICE, None, unshare(BOB, 2, vec![grant(CAROL, 2)])),
        Ok(Response::Unshared)
    );
    assert!(matches!(
        fixture.read(BOB, Some(ALICE), "wifi"),
        Err(VaultError::PermissionDenied(_))
    ));
    let Ok(Response::Secret(record)) = fixture.read(CAROL, Some(ALICE), "wifi") else {
        panic!("carol still reads it");
    };
    assert_eq!(record.version, 2);
    assert_eq!(record.sealed, SealedSecret(vec![0xee; 4]));
    assert_eq!(record.wrapped_key, Some(WrappedKey(vec![2; 8])));
}

#[test]
fn grants_are_shown_to_the_owner_only() {
    let mut fixture = Fixture::new();
    assert!(matches!(grantees(&fixture), Err(VaultError::NotFound(_))));
    fixture.put(BOB, "wifi", 1, false).expect("bob's own wifi");
    // Alice has no "wifi": bob's grants are not hers to see.
    assert!(matches!(grantees(&fixture), Err(VaultError::NotFound(_))));
}
