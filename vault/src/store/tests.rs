//! The apply rules of SPEC §5, one behaviour per test.

use super::*;
use crate::protocol::{
    decode, encode, ClientSession, Operation, Reply, Response, SealedSecret, SecretSummary,
    VaultCommand, VaultError, VaultQuery, WrappedKey,
};

/// A fresh store in a temporary directory, applying commands at
/// consecutive log indexes.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) machine: VaultStateMachine,
    pub(super) next_index: u64,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let machine = VaultStateMachine::open(&dir.path().join("vault.db")).expect("open");
        Fixture {
            _dir: dir,
            machine,
            next_index: 1,
        }
    }

    fn apply_bytes(&mut self, bytes: &[u8]) -> Reply {
        let index = self.next_index;
        self.next_index += 1;
        let command = CommittedCommand {
            index,
            term: 1,
            command: bytes,
        };
        let responses = self.machine.apply(&[command]).expect("apply");
        decode(&responses[0]).expect("reply decodes")
    }

    pub(super) fn run(&mut self, owner: &str, session: Option<(u64, u64)>, op: Operation) -> Reply {
        let command = VaultCommand::V1 {
            session: session.map(|(client_id, seq)| ClientSession { client_id, seq }),
            owner: owner.into(),
            proposed_at_ms: 1000 + self.next_index,
            op,
        };
        self.apply_bytes(&encode(&command))
    }

    /// Puts as the client does: sealed as the version the put makes.
    pub(super) fn put(&mut self, owner: &str, name: &str, byte: u8, update: bool) -> Reply {
        let version = match (update, self.version(owner, name)) {
            (true, Some(current)) => current + 1,
            _ => 1,
        };
        let op = Operation::Put {
            name: name.into(),
            sealed: SealedSecret(vec![byte; 4]),
            update,
            version,
        };
        self.run(owner, None, op)
    }

    pub(super) fn ask(&self, query: VaultQuery) -> Reply {
        let bytes = self.machine.query(&encode(&query)).expect("query");
        decode(&bytes).expect("reply decodes")
    }

    pub(super) fn read(&self, caller: &str, owner: Option<&str>, name: &str) -> Reply {
        self.ask(VaultQuery::Secret {
            caller: caller.into(),
            owner: owner.map(str::to_string),
            name: name.into(),
        })
    }

    pub(super) fn version(&self, caller: &str, name: &str) -> Option<u64> {
        match self.read(caller, None, name) {
            Ok(Response::Secret(record)) => Some(record.version),
            _ => None,
        }
    }
}

pub(super) const ALICE: &str = "client:alice";
pub(super) const BOB: &str = "client:bob";
pub(super) const CAROL: &str = "client:carol";

#[test]
fn database_is_in_wal_mode() {
    let fixture = Fixture::new();
    let mode: String = fixture
        .machine
        .connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[test]
fn add_fails_if_present_unless_update() {
    let mut fixture = Fixture::new();
    assert_eq!(
        fixture.put(ALICE, "a", 1, false),
        Ok(Response::Added { version: 1 })
    );
    assert!(matches!(
        fixture.put(ALICE, "a", 2, false),
        Err(VaultError::AlreadyExists(_))
    ));
    assert_eq!(
        fixture.put(ALICE, "a", 3, true),
        Ok(Response::Added { version: 2 })
    );
    assert!(matches!(
        fixture.put(ALICE, "missing", 1, true),
        Err(VaultError::NotFound(_))
    ));
    let Ok(Response::Secret(record)) = fixture.read(ALICE, None, "a") else {
        panic!("alice reads her secret");
    };
    assert_eq!(record.sealed, SealedSecret(vec![3; 4]));
    // Bob has his own namespace.
    assert_eq!(
        fixture.put(BOB, "a", 1, false),
        Ok(Response::Added { version: 1 })
    );
}

#[test]
fn timestamps_come_from_the_command_not_the_clock() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    let times: (i64, i64) = fixture
        .machine
        .connection
        .query_row("SELECT created, updated FROM secrets", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .expect("row");
    assert_eq!(times, (1001, 1002));
}

#[test]
fn only_owner_and_grantees_read() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "wifi", 1, false).expect("added");
    assert!(matches!(
        fixture.read(BOB, None, "wifi"),
        Err(VaultError::NotFound(_))
    ));
    assert!(matches!(
        fixture.read(BOB, Some(ALICE), "wifi"),
        Err(VaultError::PermissionDenied(_))
    ));
    // A missing secret looks the same as an unshared one to a stranger.
    assert!(matches!(
        fixture.read(BOB, Some(ALICE), "nothing"),
        Err(VaultError::PermissionDenied(_))
    ));
    let share = Operation::Share {
        name: "wifi".into(),
        grantee: BOB.into(),
        wrapped_key: WrappedKey(vec![9; 8]),
    };
    assert_eq!(fixture.run(ALICE, None, share), Ok(Response::Shared));
    let Ok(Response::Secret(record)) = fixture.read(BOB, Some(ALICE), "wifi") else {
        panic!("bob reads the shared secret");
    };
    assert_eq!(record.wrapped_key, Some(WrappedKey(vec![9; 8])));
    assert!(matches!(
        fixture.read(CAROL, Some(ALICE), "wifi"),
        Err(VaultError::PermissionDenied(_))
    ));
    let unshare = Operation::Unshare {
        name: "wifi".into(),
        grantee: BOB.into(),
        sealed: SealedSecret(vec![2; 4]),
        version: 2,
        grants: Vec::new(),
    };
    assert_eq!(
        fixture.run(ALICE, None, unshare.clone()),
        Ok(Response::Unshared)
    );
    assert!(matches!(
        fixture.run(ALICE, None, unshare),
        Err(VaultError::NotFound(_))
    ));
    assert!(fixture.read(BOB, Some(ALICE), "wifi").is_err());
}

#[test]
fn sharing_a_missing_secret_is_not_found() {
    let mut fixture = Fixture::new();
    let share = Operation::Share {
        name: "nothing".into(),
        grantee: BOB.into(),
        wrapped_key: WrappedKey(vec![9; 8]),
    };
    assert!(matches!(
        fixture.run(ALICE, None, share),
        Err(VaultError::NotFound(_))
    ));
}

#[test]
fn list_shows_only_the_callers_secrets_in_name_order() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "b", 1, false).expect("added");
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 1, true).expect("updated");
    fixture.put(BOB, "c", 1, false).expect("added");
    let listing = fixture.ask(VaultQuery::List {
        caller: ALICE.into(),
    });
    let expected = vec![
        SecretSummary {
            name: "a".into(),
            version: 2,
        },
        SecretSummary {
            name: "b".into(),
            version: 1,
        },
    ];
    assert_eq!(listing, Ok(Response::Secrets(expected)));
}

#[test]
fn a_retried_command_applies_once() {
    let mut fixture = Fixture::new();
    let put = |byte, version| Operation::Put {
        name: "a".into(),
        sealed: SealedSecret(vec![byte; 4]),
        update: true,
        version,
    };
    fixture.put(ALICE, "a", 0, false).expect("added");
    let first = fixture.run(ALICE, Some((42, 1)), put(1, 2));
    assert_eq!(first, Ok(Response::Added { version: 2 }));
    // The retry carries the same sequence number: same answer, no new version.
    assert_eq!(fixture.run(ALICE, Some((42, 1)), put(1, 2)), first);
    assert_eq!(fixture.version(ALICE, "a"), Some(2));
    assert_eq!(
        fixture.run(ALICE, Some((42, 2)), put(2, 3)),
        Ok(Response::Added { version: 3 })
    );
    assert!(matches!(
        fixture.run(ALICE, Some((42, 1)), put(1, 2)),
        Err(VaultError::Conflict(_))
    ));
    // The same client id under another identity is another session.
    fixture.put(BOB, "a", 0, false).expect("added");
    assert_eq!(
        fixture.run(BOB, Some((42, 1)), put(1, 2)),
        Ok(Response::Added { version: 2 })
    );
    assert_eq!(fixture.version(ALICE, "a"), Some(3));
}

#[test]
fn a_failed_command_is_remembered_too() {
    let mut fixture = Fixture::new();
    let update_missing = Operation::Put {
        name: "a".into(),
        sealed: SealedSecret(vec![1]),
        update: true,
        version: 2,
    };
    let first = fixture.run(ALICE, Some((7, 1)), update_missing.clone());
    assert!(matches!(first, Err(VaultError::NotFound(_))));
    fixture.put(ALICE, "a", 0, false).expect("added");
    // The retry must not now succeed as an update: it already answered.
    assert_eq!(fixture.run(ALICE, Some((7, 1)), update_missing), first);
    assert_eq!(fixture.version(ALICE, "a"), Some(1));
}

#[test]
fn garbage_and_invalid_commands_are_refused_but_applied() {
    let mut fixture = Fixture::new();
    assert!(matches!(
        fixture.apply_bytes(&[0xff, 0xff, 0x01]),
        Err(VaultError::Invalid(_))
    ));
    assert!(matches!(
        fixture.put(ALICE, "bad\nname", 1, false),
        Err(VaultError::Invalid(_))
    ));
    assert!(matches!(
        fixture.put("mallory", "a", 1, false),
        Err(VaultError::Invalid(_))
    ));
    let huge = Operation::Put {
        name: "big".into(),
        sealed: SealedSecret(vec![0; crate::validate::MAX_CIPHERTEXT_BYTES + 1]),
        update: false,
        version: 1,
    };
    assert!(matches!(
        fixture.run(ALICE, None, huge),
        Err(VaultError::Invalid(_))
    ));
    assert_eq!(fixture.machine.applied_index(), 4);
}

#[test]
fn damaged_snapshots_are_refused_and_change_nothing() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    let good = fixture.machine.snapshot().expect("snapshot");
    fixture.put(ALICE, "b", 1, false).expect("added");
    let before = fixture.machine.snapshot().expect("snapshot");

    let mut flipped = good.clone();
    flipped[12] ^= 0x40;
    let truncated = &good[..good.len() - 1];
    for (bad, index) in [
        (&flipped[..], 1),
        (truncated, 1),
        (&[][..], 1),
        (&good[..], 7),
    ] {
        assert!(fixture.machine.restore(index, bad).is_err());
    }
    assert_eq!(fixture.machine.snapshot().expect("snapshot"), before);
    assert_eq!(fixture.machine.applied_index(), 2);

    fixture.machine.restore(1, &good).expect("restore");
    assert_eq!(fixture.machine.applied_index(), 1);
    assert_eq!(fixture.version(ALICE, "b"), None);
    assert_eq!(fixture.version(ALICE, "a"), Some(1));
}

#[test]
fn idle_sessions_are_forgotten_at_sweep_points() {
    use bus::sessions::{RETENTION as SESSION_RETENTION, SWEEP_EVERY as SESSION_SWEEP_EVERY};
    let mut fixture = Fixture::new();
    let put = |name: &str| Operation::Put {
        name: name.into(),
        sealed: SealedSecret(vec![1]),
        update: false,
        version: 1,
    };
    fixture.run(ALICE, Some((1, 1)), put("old")).expect("added");
    let point = (SESSION_RETENTION / SESSION_SWEEP_EVERY + 2) * SESSION_SWEEP_EVERY;
    // A session active shortly before the sweep point survives it.
    fixture.machine.skip_to(point - 10).expect("skip");
    fixture.next_index = point - 9;
    fixture
        .run(ALICE, Some((2, 1)), put("recent"))
        .expect("added");
    fixture.machine.skip_to(point + 1).expect("skip");
    fixture.next_index = point + 2;
    // The idle session is gone: its retry is applied as a new request.
    assert!(matches!(
        fixture.run(ALICE, Some((1, 1)), put("old")),
        Err(VaultError::AlreadyExists(_))
    ));
    // The recent one still deduplicates: same answer as the first time.
    assert_eq!(
        fixture.run(ALICE, Some((2, 1)), put("recent")),
        Ok(Response::Added { version: 1 })
    );
}
