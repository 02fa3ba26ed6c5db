//! Exactly-once deletes: a decision entry carries the session of the
//! `delete` request that started its transaction, and the session answers
//! a retry (SPEC §3, §6).

use super::tests::{Fixture, ALICE, BOB};
use crate::protocol::{Decision, Operation, Response, SessionRecord, VaultError, VaultQuery};

const CLIENT: u64 = 7;

fn decide(tx: &str, decision: Decision) -> Operation {
    Operation::Decide {
        tx: tx.into(),
        name: "a".into(),
        version: 1,
        decision,
        participants: Vec::new(),
    }
}

fn committed(tx: &str, deleted: bool) -> crate::protocol::Reply {
    Ok(Response::Decided {
        tx: tx.into(),
        decision: Decision::Commit,
        deleted,
    })
}

#[test]
fn a_delete_decision_is_kept_as_the_answer_of_its_request() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    let first = fixture.run(ALICE, Some((CLIENT, 1)), decide("t1", Decision::Commit));
    assert_eq!(first, committed("t1", true));
    let session = fixture.ask(VaultQuery::Session {
        caller: ALICE.into(),
        client_id: CLIENT,
    });
    assert_eq!(
        session,
        Ok(Response::Session(Some(SessionRecord {
            seq: 1,
            reply: Box::new(committed("t1", true)),
        })))
    );
    // Sessions are keyed by owner: another identity sees nothing of it.
    let stranger = fixture.ask(VaultQuery::Session {
        caller: BOB.into(),
        client_id: CLIENT,
    });
    assert_eq!(stranger, Ok(Response::Session(None)));
    // The same transaction's decision again: the first answer, unchanged.
    let again = fixture.run(ALICE, Some((CLIENT, 1)), decide("t1", Decision::Commit));
    assert_eq!(again, committed("t1", true));
}

#[test]
fn a_second_transaction_for_an_answered_delete_is_applied_as_an_abort() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    let first = fixture.run(ALICE, Some((CLIENT, 1)), decide("t1", Decision::Commit));
    assert_eq!(first, committed("t1", true));
    // The secret is added again, then a retry of the same delete request
    // (another node, another transaction) logs a commit: it must not
    // delete the new secret, and its participants must get a decision.
    fixture.put(ALICE, "a", 2, false).expect("added again");
    fixture
        .machine
        .prepare("t2", ALICE, "a", 1, 0)
        .expect("prepare");
    let retry = fixture.run(ALICE, Some((CLIENT, 1)), decide("t2", Decision::Commit));
    assert_eq!(retry, committed("t1", true), "the request's first answer");
    assert_eq!(fixture.version(ALICE, "a"), Some(1), "nothing deleted");
    assert_eq!(
        fixture.machine.decision("t2").expect("decision"),
        Some(Decision::Abort)
    );
    assert_eq!(fixture.machine.lock_holder(ALICE, "a").expect("lock"), None);
}

#[test]
fn the_decision_of_a_superseded_request_still_applies() {
    let mut fixture = Fixture::new();
    fixture.put(ALICE, "a", 1, false).expect("added");
    fixture
        .run(
            ALICE,
            Some((CLIENT, 2)),
            Operation::PublishKey {
                record: crate::protocol::IdentityRecord {
                    public_key: [9; 32],
                    salt: [9; 16],
                    kdf: crate::crypto::KdfParams::MINIMUM,
                    key_check: [9; 32],
                },
                replace: false,
            },
        )
        .expect("published");
    // Request 1's decision reaches the log after request 2: its
    // participants voted and wait for it, so it applies, and the session
    // keeps request 2's answer.
    let late = fixture.run(ALICE, Some((CLIENT, 1)), decide("t1", Decision::Commit));
    assert_eq!(late, committed("t1", true));
    assert_eq!(fixture.version(ALICE, "a"), None);
    let session = fixture.ask(VaultQuery::Session {
        caller: ALICE.into(),
        client_id: CLIENT,
    });
    assert_eq!(
        session,
        Ok(Response::Session(Some(SessionRecord {
            seq: 2,
            reply: Box::new(Ok(Response::KeyPublished)),
        })))
    );
    // An ordinary write still refuses a superseded sequence number.
    let put = Operation::Put {
        name: "b".into(),
        sealed: crate::protocol::SealedSecret(vec![1; 4]),
        update: false,
        version: 1,
    };
    let stale = fixture.run(ALICE, Some((CLIENT, 1)), put);
    assert!(matches!(stale, Err(VaultError::Conflict(_))), "{stale:?}");
}
