//! The 2PC participant's side of the store (SPEC §6): prepare, locks,
//! decisions applied from the log, and wait-die through the store.

use super::tests::{Fixture, ALICE, BOB};
use super::*;
use crate::protocol::{Decision, Operation, Response, SecretVersion, WrappedKey};
use consensus::twopc::participant::vote_wait_die;
use consensus::twopc::{Vote, VoteAttempt, VotePolicy, VoteRequest};

fn decide(tx: &str, version: u64, decision: Decision) -> Operation {
    Operation::Decide {
        tx: tx.into(),
        name: "a".into(),
        version,
        decision,
        participants: Vec::new(),
    }
}

#[test]
fn prepare_locks_and_the_decision_releases() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    let machine = &mut fixture.machine;
    assert_eq!(
        machine.prepare("t1", ALICE, "a", 1, 5).expect("prepare"),
        PrepareOutcome::Prepared
    );
    assert_eq!(
        machine.prepare("t1", ALICE, "a", 1, 6).expect("prepare"),
        PrepareOutcome::Prepared
    );
    assert!(matches!(
        machine.prepare("t2", ALICE, "a", 1, 7),
        Ok(PrepareOutcome::Refused(_))
    ));
    assert!(matches!(
        machine.prepare("t3", ALICE, "a", 9, 7),
        Ok(PrepareOutcome::Refused(_))
    ));
    assert!(matches!(
        machine.prepare("t4", ALICE, "zz", 1, 7),
        Ok(PrepareOutcome::Refused(_))
    ));
    assert_eq!(
        machine.lock_holder(ALICE, "a").expect("lock"),
        Some("t1".into())
    );
    let pending = machine.prepared_transactions().expect("list");
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].tx.as_str(), pending[0].created_ms), ("t1", 5));

    let decided = fixture.run(ALICE, None, decide("t1", 1, Decision::Abort));
    assert_eq!(
        decided,
        Ok(Response::Decided {
            tx: "t1".into(),
            decision: Decision::Abort,
            deleted: false
        })
    );
    let machine = &mut fixture.machine;
    assert_eq!(
        machine.participant_state("t1").expect("state"),
        Some(ParticipantState::Aborted)
    );
    assert_eq!(machine.lock_holder(ALICE, "a").expect("lock"), None);
    assert!(matches!(
        machine.prepare("t1", ALICE, "a", 1, 8),
        Ok(PrepareOutcome::Refused(_))
    ));
    assert_eq!(fixture.version(ALICE, "a"), Some(1));
}

#[test]
fn the_first_decision_in_the_log_wins() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    let share = Operation::Share {
        name: "a".into(),
        grantee: BOB.into(),
        wrapped_key: WrappedKey(vec![1]),
    };
    fixture.run(ALICE, None, share).expect("shared");
    fixture
        .machine
        .prepare("t1", ALICE, "a", 1, 0)
        .expect("prepare");
    let commit = fixture.run(ALICE, None, decide("t1", 1, Decision::Commit));
    assert_eq!(
        commit,
        Ok(Response::Decided {
            tx: "t1".into(),
            decision: Decision::Commit,
            deleted: true
        })
    );
    assert_eq!(fixture.version(ALICE, "a"), None);
    assert!(fixture.read(BOB, Some(ALICE), "a").is_err());
    assert_eq!(
        fixture.machine.participant_state("t1").expect("state"),
        Some(ParticipantState::Committed)
    );
    let late_abort = fixture.run(ALICE, None, decide("t1", 1, Decision::Abort));
    let expected = Response::Decided {
        tx: "t1".into(),
        decision: Decision::Commit,
        deleted: false,
    };
    assert_eq!(late_abort, Ok(expected));
}

#[test]
fn a_commit_for_a_moved_version_deletes_nothing() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "a", 2, true).expect("updated");
    let decided = fixture.run(ALICE, None, decide("t1", 1, Decision::Commit));
    assert!(matches!(
        decided,
        Ok(Response::Decided { deleted: false, .. })
    ));
    assert_eq!(fixture.version(ALICE, "a"), Some(2));
}

const OLD: &str = "node2-1000-0000000a";
const YOUNG: &str = "node1-1001-00000001";

fn vote_request(tx: &str) -> VoteRequest<SecretVersion> {
    VoteRequest {
        tx: tx.into(),
        resource: SecretVersion {
            owner: ALICE.into(),
            name: "a".into(),
            version: 1,
        },
    }
}

/// One vote attempt through a prepare batch of its own, as the
/// participant's prepare thread makes it.
fn attempt(fixture: &mut Fixture, tx: &str, may_wait: bool) -> VoteAttempt {
    let request = vote_request(tx);
    let mut batch = fixture.machine.begin_prepares().expect("batch");
    let attempt =
        vote_wait_die(VotePolicy::Commit, &mut batch, &request, 5, may_wait).expect("store works");
    batch.commit().expect("commit");
    attempt
}

#[test]
fn an_older_vote_waits_for_a_younger_lock_and_then_finds_the_secret_deleted() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    assert_eq!(
        attempt(&mut fixture, YOUNG, true),
        VoteAttempt::Voted(Vote::Commit)
    );
    assert_eq!(
        attempt(&mut fixture, OLD, true),
        VoteAttempt::Wait {
            holder: YOUNG.into()
        }
    );
    assert_eq!(
        attempt(&mut fixture, OLD, false),
        VoteAttempt::Voted(Vote::Abort(format!(
            "still locked by transaction {YOUNG} after waiting for its decision"
        )))
    );
    fixture
        .run(ALICE, None, decide(YOUNG, 1, Decision::Commit))
        .expect("decided");
    assert_eq!(
        attempt(&mut fixture, OLD, true),
        VoteAttempt::Voted(Vote::Abort("this node holds no secret \"a\"".into()))
    );
    assert_eq!(fixture.machine.lock_holder(ALICE, "a").expect("lock"), None);
}

#[test]
fn an_older_vote_prepares_once_the_younger_lock_is_aborted() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    attempt(&mut fixture, YOUNG, true);
    fixture
        .run(ALICE, None, decide(YOUNG, 1, Decision::Abort))
        .expect("decided");
    assert_eq!(
        attempt(&mut fixture, OLD, true),
        VoteAttempt::Voted(Vote::Commit)
    );
    assert_eq!(
        fixture.machine.lock_holder(ALICE, "a").expect("lock"),
        Some(OLD.into())
    );
}

#[test]
fn a_younger_vote_dies_on_an_older_lock() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    attempt(&mut fixture, OLD, true);
    assert_eq!(
        attempt(&mut fixture, YOUNG, true),
        VoteAttempt::Voted(Vote::Abort(format!(
            "locked by transaction {OLD}, which is older (wait-die)"
        )))
    );
    assert_eq!(
        fixture.machine.lock_holder(ALICE, "a").expect("lock"),
        Some(OLD.into())
    );
}

/// Apply holds SQLite's write lock from its first statement, so a prepare
/// committing on the participant's connection waits for it instead of
/// invalidating the batch's read snapshot (SQLITE_BUSY_SNAPSHOT, which no
/// busy timeout retries and which stopped the node's apply for good).
#[test]
fn an_apply_transaction_holds_the_write_lock_from_its_first_statement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("vault.db");
    let mut applying = VaultStateMachine::open(&path).expect("open");
    let participant = rusqlite::Connection::open(&path).expect("second connection");
    participant
        .busy_timeout(std::time::Duration::ZERO)
        .expect("busy timeout");
    let write = |connection: &rusqlite::Connection| {
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('probe', 1)
             ON CONFLICT (key) DO UPDATE SET value = value + 1",
            [],
        )
    };
    let transaction = write_transaction(&mut applying.connection).expect("begin");
    let refused = write(&participant);
    assert!(
        matches!(
            refused,
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code: rusqlite::ErrorCode::DatabaseBusy,
                    ..
                },
                _
            ))
        ),
        "another connection wrote while an apply transaction was open: {refused:?}"
    );
    transaction.commit().expect("commit");
    write(&participant).expect("the lock is released with the transaction");
}

#[test]
fn applied_decisions_are_published_once_each() {
    let mut fixture = Fixture::new();
    let published = AppliedDecisions::new();
    fixture.machine.publish_decisions_to(published.clone());
    fixture.put(ALICE, "a", 1, false).expect("added");
    assert_eq!(published.get("t1"), None);
    fixture
        .run(ALICE, None, decide("t1", 1, Decision::Abort))
        .expect("decided");
    assert_eq!(published.get("t1"), Some(Decision::Abort));
    // A later, contradicting decision is not the log's decision.
    fixture
        .run(ALICE, None, decide("t1", 1, Decision::Commit))
        .expect("decided");
    assert_eq!(published.get("t1"), Some(Decision::Abort));
}

#[test]
fn a_snapshot_publishes_the_decisions_it_settles_here() {
    // The leader's state: t1 and t2 decided.
    let mut leader = Fixture::new();
    leader.put(ALICE, "a", 1, false).expect("added");
    leader
        .run(ALICE, None, decide("t1", 1, Decision::Abort))
        .expect("decided");
    leader
        .run(ALICE, None, decide("t2", 1, Decision::Commit))
        .expect("decided");
    let index = leader.next_index - 1;
    let snapshot = leader.machine.snapshot().expect("snapshot");

    // A follower that prepared t2 only, then receives the snapshot.
    let mut follower = Fixture::new();
    follower.put(ALICE, "a", 1, false).expect("added");
    let published = AppliedDecisions::new();
    follower.machine.publish_decisions_to(published.clone());
    let machine = &mut follower.machine;
    assert_eq!(
        machine.prepare("t2", ALICE, "a", 1, 5).expect("prepare"),
        PrepareOutcome::Prepared
    );
    machine.restore(index, &snapshot).expect("restore");
    assert_eq!(
        machine.participant_state("t2").expect("state"),
        Some(ParticipantState::Committed)
    );
    assert_eq!(published.get("t2"), Some(Decision::Commit));
    // t1 was never prepared here: the database answers for it.
    assert_eq!(published.get("t1"), None);
    assert_eq!(
        machine.decision("t1").expect("decision"),
        Some(Decision::Abort)
    );
}

fn synchronous(machine: &VaultStateMachine) -> i64 {
    machine
        .connection
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("pragma")
}

/// SQLite's `synchronous` levels.
const NORMAL: i64 = 1;
const FULL: i64 = 2;

#[test]
fn every_prepare_is_fsynced_whatever_the_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("vault.db");
    let mut applying = VaultStateMachine::open(&path).expect("open");
    let participant = VaultStateMachine::open_participant(&path).expect("open participant");
    assert_eq!(synchronous(&applying), NORMAL);
    assert_eq!(synchronous(&participant), FULL);
    // A prepare on the applying connection switches to FULL for itself
    // only.
    assert!(matches!(
        applying.prepare("t1", ALICE, "a", 1, 5),
        Ok(PrepareOutcome::Refused(_))
    ));
    assert_eq!(synchronous(&applying), NORMAL);
    // A batch is never committed without its fsync, whatever connection.
    drop(applying.begin_prepares().expect("batch"));
    assert_eq!(synchronous(&applying), FULL);
}

/// SPEC §13: a commit is checked against the configuration in force at the
/// decision's log index. Participants that are not exactly its members (a
/// node joined while the votes were out) turn the commit into an abort, and
/// the secret stays; the same members let it delete.
#[test]
fn a_commit_whose_participants_are_not_the_members_in_force_aborts() {
    use consensus::raft::{Membership, NodeId};
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture.put(ALICE, "b", 1, false).expect("added");
    let mut members = Membership::with_voters([NodeId(1), NodeId(2)]);
    members.learners.insert(NodeId(3));
    fixture.machine.membership_changed(1, &members);
    let voted_by_two = Operation::Decide {
        tx: "t1".into(),
        name: "a".into(),
        version: 1,
        decision: Decision::Commit,
        participants: vec![NodeId(1), NodeId(2)],
    };
    assert_eq!(
        fixture.run(ALICE, None, voted_by_two),
        Ok(Response::Decided {
            tx: "t1".into(),
            decision: Decision::Abort,
            deleted: false
        })
    );
    assert_eq!(fixture.version(ALICE, "a"), Some(1));
    let voted_by_all = Operation::Decide {
        tx: "t2".into(),
        name: "b".into(),
        version: 1,
        decision: Decision::Commit,
        participants: vec![NodeId(1), NodeId(2), NodeId(3)],
    };
    assert_eq!(
        fixture.run(ALICE, None, voted_by_all),
        Ok(Response::Decided {
            tx: "t2".into(),
            decision: Decision::Commit,
            deleted: true
        })
    );
    assert_eq!(fixture.version(ALICE, "b"), None);
}
