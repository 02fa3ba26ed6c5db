//! The backup format: round trip, and every kind of damage refused with
//! its own error (SPEC §14: "a truncated or corrupt file is refused").

use super::*;
use crate::protocol::{encode as encode_message, Operation, SealedSecret, VaultCommand};
use crate::store::VaultStateMachine;
use consensus::state_machine::{CommittedCommand, StateMachine};
use proptest::prelude::*;

/// A state machine snapshot holding `secrets` secrets of two owners,
/// taken at the index of the last one.
fn state_with(secrets: u64) -> (u64, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = VaultStateMachine::open(&dir.path().join("vault.db")).unwrap();
    let commands: Vec<Vec<u8>> = (0..secrets)
        .map(|number| {
            encode_message(&VaultCommand::V1 {
                session: None,
                owner: if number % 2 == 0 {
                    "client:alice"
                } else {
                    "client:bob"
                }
                .into(),
                proposed_at_ms: 1_000 + number,
                op: Operation::Put {
                    name: format!("secret-{number}"),
                    sealed: SealedSecret(vec![number as u8; 48]),
                    update: false,
                    version: 1,
                },
            })
        })
        .collect();
    let committed: Vec<CommittedCommand<'_>> = commands
        .iter()
        .enumerate()
        .map(|(offset, command)| CommittedCommand {
            index: offset as u64 + 1,
            term: 3,
            command,
        })
        .collect();
    machine.apply(&committed).unwrap();
    (secrets, machine.snapshot().unwrap())
}

fn sample() -> Backup {
    let (index, state) = state_with(5);
    Backup::from_state(index, 3, state).unwrap()
}

#[test]
fn a_backup_round_trips_with_its_index_term_and_secret_count() {
    let backup = sample();
    assert_eq!((backup.index, backup.term, backup.secrets), (5, 3, 5));
    let bytes = encode(&backup);
    assert_eq!(bytes.len() as u64, backup.file_len());
    assert!(bytes.starts_with(MAGIC));
    assert_eq!(decode(&bytes).unwrap(), backup);
}

#[test]
fn a_state_that_is_not_a_snapshot_at_the_index_is_never_wrapped() {
    let (index, state) = state_with(2);
    let wrong_index = Backup::from_state(index + 1, 3, state).unwrap_err();
    assert!(
        matches!(wrong_index, BackupError::BadState(_)),
        "{wrong_index}"
    );
    let garbage = Backup::from_state(0, 1, b"not a snapshot".to_vec()).unwrap_err();
    assert!(matches!(garbage, BackupError::BadState(_)), "{garbage}");
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let bytes = encode(&sample());
    for length in 0..bytes.len() {
        match decode(&bytes[..length]) {
            Err(BackupError::Truncated { found, .. }) => assert_eq!(found, length as u64),
            other => panic!("a file cut to {length} bytes: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode(&sample());
    bytes.push(0);
    let error = decode(&bytes).unwrap_err();
    assert!(
        matches!(error, BackupError::TrailingBytes { expected, found } if found == expected + 1),
        "{error}"
    );
}

#[test]
fn a_wrong_marker_version_or_flags_is_refused() {
    let bytes = encode(&sample());
    let mut marker = bytes.clone();
    marker[0] ^= 0x20;
    assert!(matches!(decode(&marker), Err(BackupError::NotABackup)));
    assert!(matches!(
        decode(b"PK\x03\x04 a zip file"),
        Err(BackupError::NotABackup)
    ));
    let mut version = bytes.clone();
    version[8] = 2;
    assert!(matches!(
        decode(&version),
        Err(BackupError::UnsupportedVersion(2))
    ));
    let mut flags = bytes;
    flags[10] = 1;
    assert!(matches!(decode(&flags), Err(BackupError::UnknownFlags(1))));
}

#[test]
fn a_wrong_secret_count_with_a_matching_checksum_is_refused() {
    let mut backup = sample();
    backup.secrets = 4;
    let error = decode(&encode(&backup)).unwrap_err();
    assert!(
        matches!(
            error,
            BackupError::SecretCount {
                header: 4,
                state: 5
            }
        ),
        "{error}"
    );
}

#[test]
fn a_huge_announced_length_is_truncation_not_an_overflow() {
    let mut bytes = encode(&sample());
    bytes[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(decode(&bytes), Err(BackupError::Truncated { .. })));
}

proptest! {
    /// Any single flipped bit past the marker is caught (by the checksum,
    /// or earlier by the header checks); none decodes.
    #[test]
    fn every_flipped_bit_is_refused(position in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = encode(&sample());
        let mut damaged = bytes.clone();
        let at = position.index(bytes.len());
        damaged[at] ^= 1 << bit;
        prop_assert!(decode(&damaged).is_err(), "bit {} of byte {} flipped", bit, at);
    }

    /// Arbitrary bytes never panic the decoder, with or without the marker.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256), marked in any::<bool>()) {
        if marked {
            let mut prefixed = MAGIC.to_vec();
            prefixed.append(&mut bytes);
            bytes = prefixed;
        }
        prop_assert!(decode(&bytes).is_err());
    }
}
