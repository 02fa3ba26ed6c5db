//! Wait-die (SPEC §6, concurrent deletes of one resource): exact outputs of
//! the pure decision, and an exhaustive check of every interleaving of a few
//! concurrent transactions over a few participants.

use super::participant::{vote_wait_die, wait_or_die, LockConflict, LockTable, VoteAttempt};
use super::*;
use crate::raft::NodeId;
use std::collections::BTreeSet;

const OLD: &str = "node2-1000-0000000a";
const YOUNG: &str = "node1-1001-00000001";

fn age(tx: &str) -> Option<TransactionAge> {
    TransactionAge::parse(tx)
}

#[test]
fn a_transaction_id_parses_into_its_age_and_prints_back() {
    let parsed = age("node2-1700000000123-0a1b2c3d");
    assert_eq!(
        parsed,
        Some(TransactionAge {
            started_ms: 1_700_000_000_123,
            coordinator: NodeId(2),
            nonce: 0x0a1b_2c3d,
        })
    );
    assert_eq!(
        parsed.map(|age| age.to_string()).as_deref(),
        Some("node2-1700000000123-0a1b2c3d")
    );
}

#[test]
fn ages_order_by_start_time_then_coordinator_then_nonce() {
    let ordered = [
        "node9-100-ffffffff",
        "node1-101-00000000",
        "node2-101-00000000",
        "node10-101-00000000",
        "node10-101-00000001",
        "node10-101-0000000a",
    ];
    for pair in ordered.windows(2) {
        assert!(
            age(pair[0]) < age(pair[1]),
            "{} before {}",
            pair[0],
            pair[1]
        );
        assert_eq!(wait_or_die(pair[1], pair[0]), LockConflict::Wait);
        assert_eq!(wait_or_die(pair[0], pair[1]), LockConflict::Die);
    }
}

#[test]
fn anything_but_a_canonical_id_has_no_age() {
    for tx in [
        "",
        "tx",
        "a",
        "node1-100",
        "node1-100-0a1b2c3",
        "node1-100-0a1b2c3d0",
        "node1-100-0a1b2c3g",
        "node1-100-0A1B2C3D",
        "node1--0a1b2c3d",
        "node1-+100-0a1b2c3d",
        "node1-0100-0a1b2c3d",
        "node1-99999999999999999999999-0a1b2c3d",
        "node1-१००-0a1b2c3d",
        "node0-100-0a1b2c3d",
        "7-100-0a1b2c3d",
        "x-node1-100-0a1b2c3d",
        "node1-100-+a1b2c3d",
    ] {
        assert_eq!(age(tx), None, "{tx:?}");
    }
}

#[test]
fn an_older_requester_waits_and_a_younger_one_dies() {
    assert_eq!(wait_or_die(YOUNG, OLD), LockConflict::Wait);
    assert_eq!(wait_or_die(OLD, YOUNG), LockConflict::Die);
}

#[test]
fn an_id_without_an_age_on_either_side_dies() {
    assert_eq!(wait_or_die("garbage", OLD), LockConflict::Die);
    assert_eq!(wait_or_die(OLD, "garbage"), LockConflict::Die);
    assert_eq!(wait_or_die("garbage", "rubbish"), LockConflict::Die);
    assert_eq!(wait_or_die("", ""), LockConflict::Die);
}

/// One participant's copy of one resource: a version (`None` once deleted)
/// and the transaction locking it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Replica {
    version: Option<u64>,
    lock: Option<String>,
    prepares: u32,
}

impl Replica {
    fn new() -> Self {
        Replica {
            version: Some(1),
            lock: None,
            prepares: 0,
        }
    }

    /// Applying the logged decision: a commit deletes, either releases.
    fn apply(&mut self, tx: &str, decision: Decision) {
        if self.lock.as_deref() == Some(tx) {
            self.lock = None;
            if decision == Decision::Commit {
                self.version = None;
            }
        }
    }
}

/// The one resource of these tests is identified by the version asked for.
impl ResourceManager for Replica {
    type Resource = u64;
    type Error = std::convert::Infallible;

    fn prepare(
        &mut self,
        request: &VoteRequest<u64>,
        _now: u64,
    ) -> Result<PrepareOutcome, Self::Error> {
        self.prepares += 1;
        if let Some(holder) = self.lock.as_ref().filter(|holder| **holder != request.tx) {
            return Ok(PrepareOutcome::Refused(format!("locked by {holder}")));
        }
        if self.version != Some(request.resource) {
            return Ok(PrepareOutcome::Refused("not found".into()));
        }
        self.lock = Some(request.tx.clone());
        Ok(PrepareOutcome::Prepared)
    }
}

impl LockTable for Replica {
    fn locked_by(&mut self, _request: &VoteRequest<u64>) -> Result<Option<String>, Self::Error> {
        Ok(self.lock.clone())
    }
}

fn request(tx: &str) -> VoteRequest<u64> {
    VoteRequest {
        tx: tx.into(),
        resource: 1,
    }
}

fn attempt(replica: &mut Replica, tx: &str, may_wait: bool) -> VoteAttempt {
    let Ok(attempt) = vote_wait_die(VotePolicy::Commit, replica, &request(tx), 0, may_wait);
    attempt
}

fn locked_by(tx: &str) -> Replica {
    Replica {
        lock: Some(tx.into()),
        ..Replica::new()
    }
}

#[test]
fn a_free_resource_is_prepared_and_a_retry_votes_commit_again() {
    let mut replica = Replica::new();
    assert_eq!(
        attempt(&mut replica, OLD, true),
        VoteAttempt::Voted(Vote::Commit)
    );
    assert_eq!(replica.lock.as_deref(), Some(OLD));
    assert_eq!(
        attempt(&mut replica, OLD, false),
        VoteAttempt::Voted(Vote::Commit)
    );
}

#[test]
fn an_older_requester_is_told_to_wait_without_touching_the_resource() {
    let mut replica = locked_by(YOUNG);
    assert_eq!(
        attempt(&mut replica, OLD, true),
        VoteAttempt::Wait {
            holder: YOUNG.into()
        }
    );
    assert_eq!(replica, locked_by(YOUNG));
}

#[test]
fn an_older_requester_out_of_wait_budget_aborts_naming_the_holder() {
    let mut replica = locked_by(YOUNG);
    assert_eq!(
        attempt(&mut replica, OLD, false),
        VoteAttempt::Voted(Vote::Abort(format!(
            "still locked by transaction {YOUNG} after waiting for its decision"
        )))
    );
}

#[test]
fn a_younger_requester_dies_at_once_naming_the_holder() {
    let mut replica = locked_by(OLD);
    assert_eq!(
        attempt(&mut replica, YOUNG, true),
        VoteAttempt::Voted(Vote::Abort(format!(
            "locked by transaction {OLD}, which is older (wait-die)"
        )))
    );
    assert_eq!(replica, locked_by(OLD));
}

#[test]
fn a_holder_or_requester_without_an_age_makes_the_requester_die() {
    let mut replica = locked_by("legacy-tx");
    assert_eq!(
        attempt(&mut replica, OLD, true),
        VoteAttempt::Voted(Vote::Abort(format!(
            "locked by transaction legacy-tx, which cannot be ordered by age with {OLD} (wait-die)"
        )))
    );
    let mut replica = locked_by(YOUNG);
    assert!(matches!(
        attempt(&mut replica, "legacy-tx", true),
        VoteAttempt::Voted(Vote::Abort(_))
    ));
}

#[test]
fn after_the_holder_commits_the_waiter_finds_the_resource_gone() {
    let mut replica = locked_by(YOUNG);
    replica.apply(YOUNG, Decision::Commit);
    assert_eq!(
        attempt(&mut replica, OLD, true),
        VoteAttempt::Voted(Vote::Abort("not found".into()))
    );
}

#[test]
fn after_the_holder_aborts_the_waiter_prepares() {
    let mut replica = locked_by(YOUNG);
    replica.apply(YOUNG, Decision::Abort);
    assert_eq!(
        attempt(&mut replica, OLD, true),
        VoteAttempt::Voted(Vote::Commit)
    );
}

#[test]
fn the_abort_policy_wins_over_any_lock() {
    let mut replica = locked_by(YOUNG);
    let attempt = vote_wait_die(VotePolicy::Abort, &mut replica, &request(OLD), 0, true);
    assert_eq!(
        attempt,
        Ok(VoteAttempt::Voted(Vote::Abort(
            participant::POLICY_ABORT_REASON.into()
        )))
    );
    assert_eq!(replica.prepares, 0);
}

/// Concurrent transactions deleting one resource replicated on several
/// participants: each replica, each transaction's vote per participant
/// (`Some(true)` for commit) and each transaction's decision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct World {
    replicas: Vec<Replica>,
    votes: Vec<Vec<Option<bool>>>,
    /// `Some(true)` once decided commit, `Some(false)` once decided abort.
    decided: Vec<Option<bool>>,
}

/// Visits every state reachable from `world`. A step is one transaction's
/// vote at one participant (not enabled while wait-die says wait), or a
/// transaction's decision once all its votes are in (applied on every
/// replica at once, as the log would order it). In every state where
/// nothing can move, every transaction is decided (no deadlock), exactly
/// one committed, and no lock remains.
fn explore(world: World, transactions: &[&str], seen: &mut BTreeSet<World>) {
    if !seen.insert(world.clone()) {
        return;
    }
    let mut stepped = false;
    for (t, tx) in transactions.iter().enumerate() {
        if world.decided[t].is_some() {
            continue;
        }
        let votes = &world.votes[t];
        if votes.iter().all(Option::is_some) {
            let decision = if votes.iter().all(|vote| *vote == Some(true)) {
                Decision::Commit
            } else {
                Decision::Abort
            };
            let mut next = world.clone();
            next.decided[t] = Some(decision == Decision::Commit);
            next.replicas
                .iter_mut()
                .for_each(|replica| replica.apply(tx, decision));
            explore(next, transactions, seen);
            stepped = true;
            continue;
        }
        for p in 0..world.replicas.len() {
            if world.votes[t][p].is_some() {
                continue;
            }
            let mut next = world.clone();
            match attempt(&mut next.replicas[p], tx, true) {
                VoteAttempt::Wait { .. } => continue,
                VoteAttempt::Voted(vote) => next.votes[t][p] = Some(vote.is_commit()),
            }
            explore(next, transactions, seen);
            stepped = true;
        }
    }
    if !stepped {
        // Terminal: nothing can move. A deadlock would leave a transaction
        // undecided here.
        assert!(
            world.decided.iter().all(Option::is_some),
            "stuck (deadlock): {world:?}"
        );
        let commits = world
            .decided
            .iter()
            .filter(|decided| **decided == Some(true))
            .count();
        assert_eq!(commits, 1, "exactly one commits: {world:?}");
        assert!(world.replicas.iter().all(|replica| replica.lock.is_none()));
        assert!(world
            .replicas
            .iter()
            .all(|replica| replica.version.is_none()));
    }
}

fn check_every_interleaving(transactions: &[&str], participants: usize) -> usize {
    let world = World {
        replicas: vec![Replica::new(); participants],
        votes: vec![vec![None; participants]; transactions.len()],
        decided: vec![None; transactions.len()],
    };
    let mut seen = BTreeSet::new();
    explore(world, transactions, &mut seen);
    seen.len()
}

#[test]
fn two_concurrent_transactions_never_deadlock_and_exactly_one_commits() {
    let states = check_every_interleaving(&[OLD, YOUNG], 3);
    assert!(states > 100, "explored {states} states");
}

#[test]
fn three_concurrent_transactions_never_deadlock_and_exactly_one_commits() {
    let states = check_every_interleaving(&[YOUNG, OLD, "node3-999-00000000"], 3);
    assert!(states > 1_000, "explored {states} states");
}
