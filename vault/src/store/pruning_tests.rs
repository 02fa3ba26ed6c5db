//! Pruning of two-phase-commit state (`store/pruning.rs`): decided
//! transactions at or below the horizon go, with this node's settled rows;
//! undecided and newer ones stay; the horizon refuses stale votes.

use super::tests::{Fixture, ALICE};
use super::*;
use crate::protocol::{Decision, Operation, Response};

fn decide(tx: &str, name: &str, decision: Decision) -> Operation {
    Operation::Decide {
        tx: tx.into(),
        name: name.into(),
        version: 1,
        decision,
        participants: Vec::new(),
    }
}

fn row_count(machine: &VaultStateMachine, table: &str) -> i64 {
    machine
        .connection
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
}

#[test]
fn a_prune_forgets_decisions_and_settled_rows_through_its_index_only() {
    let mut fixture = Fixture::new();
    for name in ["a", "b", "c", "d"] {
        fixture.put(ALICE, name, 1, false).expect("added");
    }
    for (tx, name) in [("t1", "a"), ("t2", "b"), ("t3", "c"), ("t4", "d")] {
        let outcome = fixture
            .machine
            .prepare(tx, ALICE, name, 1, 0)
            .expect("prepare");
        assert_eq!(outcome, PrepareOutcome::Prepared);
    }
    fixture
        .run(ALICE, None, decide("t1", "a", Decision::Commit))
        .expect("decided");
    fixture
        .run(ALICE, None, decide("t2", "b", Decision::Abort))
        .expect("decided");
    let through = fixture.next_index - 1;
    fixture
        .run(ALICE, None, decide("t3", "c", Decision::Abort))
        .expect("decided");
    // t4 stays prepared: undecided, it is still in doubt here.
    let pruned = fixture.run("", None, Operation::Prune { through });
    assert_eq!(
        pruned,
        Ok(Response::Pruned {
            through,
            decisions: 2
        })
    );
    let machine = &fixture.machine;
    assert_eq!(machine.decision("t1").expect("decision"), None);
    assert_eq!(machine.decision("t2").expect("decision"), None);
    assert_eq!(
        machine.decision("t3").expect("decision"),
        Some(Decision::Abort)
    );
    assert_eq!(machine.participant_state("t1").expect("state"), None);
    assert_eq!(machine.participant_state("t2").expect("state"), None);
    assert_eq!(
        machine.participant_state("t3").expect("state"),
        Some(ParticipantState::Aborted)
    );
    assert_eq!(
        machine.participant_state("t4").expect("state"),
        Some(ParticipantState::Prepared)
    );
    assert_eq!(row_count(machine, "twopc_decisions"), 1);
    assert_eq!(row_count(machine, "twopc_participant"), 2);
    assert_eq!(machine.pruned_through().expect("horizon"), through);
    assert_eq!(
        machine.oldest_decision().expect("oldest"),
        Some(through + 1)
    );
    // A prune through a lower index never lowers the horizon.
    let lower = fixture.run("", None, Operation::Prune { through: 1 });
    assert_eq!(
        lower,
        Ok(Response::Pruned {
            through,
            decisions: 0
        })
    );
}

#[test]
fn every_replica_prunes_alike_and_a_snapshot_restore_raises_the_horizon() {
    let mut leader = Fixture::new();
    let mut follower = Fixture::new();
    for fixture in [&mut leader, &mut follower] {
        fixture.put(ALICE, "a", 1, false).expect("added");
        fixture.put(ALICE, "b", 1, false).expect("added");
    }
    // The follower prepared t1 and t2, then missed everything after.
    for (tx, name) in [("t1", "a"), ("t2", "b")] {
        let outcome = follower
            .machine
            .prepare(tx, ALICE, name, 1, 0)
            .expect("prepare");
        assert_eq!(outcome, PrepareOutcome::Prepared);
    }
    follower
        .run(ALICE, None, decide("t1", "a", Decision::Commit))
        .expect("decided");
    leader
        .run(ALICE, None, decide("t1", "a", Decision::Commit))
        .expect("decided");
    leader
        .run(ALICE, None, decide("t2", "b", Decision::Abort))
        .expect("decided");
    leader
        .run("", None, Operation::Prune { through: 3 })
        .expect("pruned");
    let index = leader.next_index - 1;
    let snapshot = leader.machine.snapshot().expect("snapshot");
    follower.machine.restore(index, &snapshot).expect("restore");
    let machine = &follower.machine;
    // t1's settled row has no decision in the snapshot: forgotten; t2 is
    // settled by the snapshot's decision.
    assert_eq!(machine.participant_state("t1").expect("state"), None);
    assert_eq!(
        machine.participant_state("t2").expect("state"),
        Some(ParticipantState::Aborted)
    );
    assert_eq!(machine.pruned_through().expect("horizon"), index);
    assert_eq!(
        follower.machine.snapshot().expect("snapshot"),
        snapshot,
        "the replicated state is identical"
    );
}
