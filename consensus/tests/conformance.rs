//! The state-machine conformance suite checked against a small plug-in of
//! its own (a key-value map in one file, `conformance/kv_file.rs`), and the
//! suite's teeth: machines that break one rule each are caught. Every
//! application runs the suite against its own machine in its own tests
//! (the vault's in `vault/tests/conformance.rs`, the key-value store's in
//! `kv/tests/conformance.rs`).

#[path = "conformance/kv_file.rs"]
mod kv_file;

use consensus::state_machine::conformance::{run_all, Failure, Subject};
use consensus::state_machine::{CommittedCommand, StateMachine};
use kv_file::{KvCommand, KvError, KvFile};
use std::path::Path;

struct KeyValue;

impl Subject for KeyValue {
    type Machine = KvFile;

    fn open(&self, dir: &Path) -> Result<KvFile, KvError> {
        KvFile::open(dir)
    }

    fn commands(&self, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let key = format!("k{}", i % 5);
                let command = match i % 4 {
                    3 => KvCommand::Remove(key),
                    _ => KvCommand::Set(key, vec![i as u8; i % 7]),
                };
                if i % 11 == 10 {
                    vec![0xff; 3]
                } else {
                    postcard::to_stdvec(&command).expect("encoding a test command")
                }
            })
            .collect()
    }

    fn probes(&self) -> Vec<Vec<u8>> {
        (0..5).map(|i| format!("k{i}").into_bytes()).collect()
    }
}

#[test]
fn a_key_value_file_conforms() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    if let Err(failure) = run_all(&KeyValue, scratch.path()) {
        panic!("{failure}");
    }
}

/// The suite must be able to fail: a machine that forgets the applied index
/// on reopen is caught.
#[test]
fn the_suite_catches_a_machine_that_reapplies() {
    struct Forgetful;
    impl Subject for Forgetful {
        type Machine = KvFile;
        fn open(&self, dir: &Path) -> Result<KvFile, KvError> {
            // A fresh directory each time: nothing survives a reopen.
            static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let count = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fresh = dir.join(count.to_string());
            std::fs::create_dir_all(&fresh)?;
            KvFile::open(&fresh)
        }
        fn commands(&self, count: usize) -> Vec<Vec<u8>> {
            KeyValue.commands(count)
        }
        fn probes(&self) -> Vec<Vec<u8>> {
            KeyValue.probes()
        }
    }
    let scratch = tempfile::tempdir().expect("temporary directory");
    assert!(run_all(&Forgetful, scratch.path()).is_err());
}

/// A key-value file whose background snapshot reads the file when the job
/// runs rather than when it was begun: correct in every other respect.
struct Unpinned {
    machine: KvFile,
    dir: std::path::PathBuf,
}

impl StateMachine for Unpinned {
    type Error = KvError;
    fn applied_index(&self) -> u64 {
        self.machine.applied_index()
    }
    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, KvError> {
        self.machine.apply(commands)
    }
    fn skip_to(&mut self, index: u64) -> Result<(), KvError> {
        self.machine.skip_to(index)
    }
    fn query(&self, query: &[u8]) -> Result<Vec<u8>, KvError> {
        self.machine.query(query)
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, KvError> {
        self.machine.snapshot()
    }
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), KvError> {
        self.machine.restore(index, data)
    }
    fn begin_snapshot(
        &mut self,
    ) -> Result<consensus::state_machine::SnapshotJob<KvError>, KvError> {
        let dir = self.dir.clone();
        Ok(Box::new(move |sink| {
            let data = KvFile::open(&dir)?.snapshot()?;
            let _ = std::io::Write::write_all(sink, &data);
            Ok(())
        }))
    }
}

/// The suite must be able to fail: a background snapshot that sees entries
/// applied after it began is caught.
#[test]
fn the_suite_catches_a_background_snapshot_that_is_not_pinned() {
    struct Late;
    impl Subject for Late {
        type Machine = Unpinned;
        fn open(&self, dir: &Path) -> Result<Unpinned, KvError> {
            Ok(Unpinned {
                machine: KvFile::open(dir)?,
                dir: dir.to_path_buf(),
            })
        }
        fn commands(&self, count: usize) -> Vec<Vec<u8>> {
            KeyValue.commands(count)
        }
        fn probes(&self) -> Vec<Vec<u8>> {
            KeyValue.probes()
        }
    }
    let scratch = tempfile::tempdir().expect("temporary directory");
    match run_all(&Late, scratch.path()) {
        Err(Failure::Violated { scenario, .. }) => {
            assert_eq!(scenario, "background snapshot")
        }
        other => panic!("expected the background snapshot scenario to fail, got {other:?}"),
    }
}
