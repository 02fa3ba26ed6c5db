//! The key-value state machine passes the state-machine conformance suite
//! the vault's does (apply twice = apply once, replicas agree, a crash
//! between batches, snapshot then restore, damaged snapshots refused,
//! skip_to durable).

use consensus::state_machine::conformance::{run_all, Subject};
use kv::protocol::{encode, ClientSession, KvCommand, KvQuery, Operation};
use kv::store::{KvStateMachine, StoreError};
use std::path::Path;

struct KeyValue;

impl Subject for KeyValue {
    type Machine = KvStateMachine;

    fn open(&self, dir: &Path) -> Result<KvStateMachine, StoreError> {
        KvStateMachine::open(&dir.join("kv.db"))
    }

    /// Puts and compare-and-swaps over five keys and three clients, some of
    /// which fail (the expected value is wrong), retries of the same
    /// session (answered, not applied), stale retries, and garbage.
    fn commands(&self, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let key = (i % 5) as u64;
                let operation = match i % 4 {
                    0 | 1 => Operation::Put(i as u64),
                    2 => Operation::Cas {
                        expected: (i - 1) as u64,
                        new: i as u64 * 10,
                    },
                    _ => Operation::Cas {
                        expected: 12_345,
                        new: 1,
                    },
                };
                if i % 11 == 10 {
                    return vec![0xff, i as u8, 0x80];
                }
                let sequence = [1, 2, 2, 3, 1, 4][i % 6] + (i / 6) as u64 * 4;
                let session = ClientSession {
                    client_id: (i % 3) as u64 + 1,
                    seq: sequence,
                };
                encode(&KvCommand {
                    owner: format!("client:c{}", i % 2),
                    session,
                    key,
                    operation,
                })
            })
            .collect()
    }

    fn probes(&self) -> Vec<Vec<u8>> {
        (0..6).map(|key| encode(&KvQuery::Get(key))).collect()
    }
}

#[test]
fn the_key_value_state_machine_conforms() {
    let scratch = tempfile::tempdir().unwrap();
    run_all(&KeyValue, scratch.path()).unwrap();
}
