//! Runs the state-machine conformance suite
//! (`consensus::state_machine::conformance`) against the vault, and fuzzes
//! the vault's apply with arbitrary command bytes.

use consensus::state_machine::conformance::{run_all, Subject};
use consensus::state_machine::{CommittedCommand, StateMachine};
use proptest::prelude::*;
use std::path::Path;
use vault::protocol::{
    encode, ClientSession, Decision, IdentityRecord, Operation, SealedSecret, VaultCommand,
    VaultQuery, WrappedKey,
};
use vault::store::{StoreError, VaultStateMachine};

const OWNERS: [&str; 3] = ["client:alice", "client:bob", "admin:ops"];
const NAMES: [&str; 4] = ["mail", "bank", "wifi", "é/ü"];

struct Vault;

impl Vault {
    /// The `i`-th command of a workload that touches every operation and
    /// every outcome: inserts, conflicts, updates, shares, retries with the
    /// same sequence number, stale retries, key publication, 2PC decisions
    /// and garbage.
    fn command(i: usize) -> Vec<u8> {
        let owner = OWNERS[i % OWNERS.len()];
        let name = NAMES[(i / 3) % NAMES.len()];
        let op = match i % 9 {
            0 | 1 => Operation::Put {
                name: name.into(),
                sealed: SealedSecret(vec![i as u8; 8]),
                update: false,
                version: 1,
            },
            2 | 3 => Operation::Put {
                name: name.into(),
                sealed: SealedSecret(vec![i as u8; 5]),
                update: true,
                version: (i % 4) as u64 + 1,
            },
            4 => Operation::Share {
                name: name.into(),
                grantee: OWNERS[(i + 1) % OWNERS.len()].into(),
                wrapped_key: WrappedKey(vec![i as u8; 3]),
            },
            5 => Operation::Unshare {
                name: name.into(),
                grantee: OWNERS[(i + 1) % OWNERS.len()].into(),
                sealed: SealedSecret(vec![i as u8; 6]),
                version: (i % 3) as u64 + 2,
                grants: Vec::new(),
            },
            6 => Operation::PublishKey {
                record: IdentityRecord {
                    public_key: [i as u8; 32],
                    salt: [i as u8; 16],
                    kdf: vault::crypto::KdfParams::MINIMUM,
                    key_check: [i as u8; 32],
                },
                replace: i % 4 == 2,
            },
            7 => Operation::Decide {
                tx: format!("tx{}", i % 4),
                name: name.into(),
                version: 1,
                decision: if i & 1 == 0 {
                    Decision::Commit
                } else {
                    Decision::Abort
                },
                participants: Vec::new(),
            },
            _ => return vec![0xff, i as u8, 0x80],
        };
        // Sequence numbers repeat (retries) and go back (stale retries).
        let seq = [1, 2, 2, 3, 1, 4][i % 6];
        let session = (i & 1 == 0).then_some(ClientSession {
            client_id: (i % 4) as u64,
            seq,
        });
        encode(&VaultCommand::V1 {
            session,
            owner: owner.into(),
            proposed_at_ms: 1_000 + i as u64,
            op,
        })
    }
}

impl Subject for Vault {
    type Machine = VaultStateMachine;

    fn open(&self, dir: &Path) -> Result<VaultStateMachine, StoreError> {
        VaultStateMachine::open(&dir.join("vault.db"))
    }

    fn commands(&self, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(Vault::command).collect()
    }

    fn probes(&self) -> Vec<Vec<u8>> {
        let mut probes = Vec::new();
        for caller in OWNERS {
            probes.push(encode(&VaultQuery::List {
                caller: caller.into(),
            }));
            probes.push(encode(&VaultQuery::PublicKey {
                identity: caller.into(),
            }));
            for owner in OWNERS {
                for name in NAMES {
                    probes.push(encode(&VaultQuery::Secret {
                        caller: caller.into(),
                        owner: Some(owner.into()),
                        name: name.into(),
                    }));
                }
            }
        }
        probes
    }
}

#[test]
fn the_vault_conforms() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    if let Err(failure) = run_all(&Vault, scratch.path()) {
        panic!("{failure}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever bytes reach the log, apply answers every entry with a reply
    /// that decodes and moves the applied index: it never fails or panics.
    #[test]
    fn arbitrary_log_entries_are_answered(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..16)) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut machine = VaultStateMachine::open(&dir.path().join("vault.db")).expect("open");
        let commands: Vec<CommittedCommand<'_>> = entries.iter().enumerate()
            .map(|(i, bytes)| CommittedCommand { index: i as u64 + 1, term: 1, command: bytes })
            .collect();
        let responses = machine.apply(&commands).expect("apply never fails on bad bytes");
        prop_assert_eq!(machine.applied_index(), entries.len() as u64);
        for response in responses {
            prop_assert!(vault::protocol::decode::<vault::protocol::Reply>(&response).is_ok());
        }
    }

    /// Arbitrary snapshot bytes are refused, never a panic.
    #[test]
    fn arbitrary_snapshots_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut machine = VaultStateMachine::open(&dir.path().join("vault.db")).expect("open");
        prop_assert!(machine.restore(0, &bytes).is_err());
    }

    /// Arbitrary queries get a reply, never a panic.
    #[test]
    fn arbitrary_queries_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let machine = VaultStateMachine::open(&dir.path().join("vault.db")).expect("open");
        let reply = machine.query(&bytes).expect("query");
        prop_assert!(vault::protocol::decode::<vault::protocol::Reply>(&reply).is_ok());
    }
}
