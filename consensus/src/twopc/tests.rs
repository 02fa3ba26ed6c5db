//! Exact-output tests of the coordinator and participant logic, one per step
//! and fault. Reference: SPEC §6 (voting, decision, recovery).

use super::participant::{
    ack, overdue, resolve, vote, AckOutcome, Prepared, Resolution, POLICY_ABORT_REASON,
};
use super::*;
use crate::raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

fn start() -> Coordinator {
    let (coordinator, outputs) = Coordinator::start("tx", [N3, N1, N2], 1_000, 100);
    assert_eq!(
        outputs,
        vec![
            CoordinatorOutput::SendVote { to: N1 },
            CoordinatorOutput::SendVote { to: N2 },
            CoordinatorOutput::SendVote { to: N3 },
        ]
    );
    coordinator
}

fn decides(decision: Decision) -> Vec<CoordinatorOutput> {
    [N1, N2, N3]
        .into_iter()
        .map(|to| CoordinatorOutput::SendDecide { to, decision })
        .collect()
}

fn votes(entries: &[(NodeId, Vote)]) -> BTreeMap<NodeId, Vote> {
    entries.iter().cloned().collect()
}

#[test]
fn all_commit_votes_decide_commit_and_finish_on_the_last_ack() {
    let mut coordinator = start();
    assert_eq!(coordinator.next_deadline_ms(), Some(1_100));
    assert_eq!(coordinator.on_vote(N1, Vote::Commit, 1_010), vec![]);
    assert_eq!(coordinator.on_vote(N2, Vote::Commit, 1_020), vec![]);
    assert_eq!(
        coordinator.on_vote(N3, Vote::Commit, 1_030),
        vec![CoordinatorOutput::ProposeDecision(Decision::Commit)]
    );
    assert_eq!(coordinator.phase(), Phase::Deciding(Decision::Commit));
    assert_eq!(coordinator.next_deadline_ms(), None);
    assert_eq!(coordinator.report(), None);
    assert_eq!(
        coordinator.on_decision_logged(Decision::Commit, 1_040),
        decides(Decision::Commit)
    );
    assert_eq!(coordinator.next_deadline_ms(), Some(1_140));
    assert_eq!(coordinator.on_ack(N2), vec![]);
    assert_eq!(coordinator.on_ack(N1), vec![]);
    assert_eq!(
        coordinator.on_ack(N3),
        vec![CoordinatorOutput::Finished(TransactionReport {
            tx: "tx".into(),
            decision: Decision::Commit,
            votes: votes(&[(N1, Vote::Commit), (N2, Vote::Commit), (N3, Vote::Commit)]),
            acked: vec![N1, N2, N3],
        })]
    );
    assert_eq!(coordinator.phase(), Phase::Finished(Decision::Commit));
}

#[test]
fn one_abort_vote_decides_abort() {
    let mut coordinator = start();
    coordinator.on_vote(N1, Vote::Commit, 1_010);
    coordinator.on_vote(N2, Vote::Abort("vote policy is abort".into()), 1_010);
    assert_eq!(
        coordinator.on_vote(N3, Vote::Commit, 1_010),
        vec![CoordinatorOutput::ProposeDecision(Decision::Abort)]
    );
}

#[test]
fn a_missing_vote_at_the_deadline_counts_as_abort() {
    let mut coordinator = start();
    coordinator.on_vote(N1, Vote::Commit, 1_010);
    coordinator.on_vote(N2, Vote::Commit, 1_010);
    assert_eq!(coordinator.on_tick(1_099), vec![]);
    assert_eq!(
        coordinator.on_tick(1_100),
        vec![CoordinatorOutput::ProposeDecision(Decision::Abort)]
    );
    coordinator.on_decision_logged(Decision::Abort, 1_100);
    let report = coordinator.report().expect("decided");
    assert_eq!(
        report.votes,
        votes(&[
            (N1, Vote::Commit),
            (N2, Vote::Commit),
            (N3, Vote::Abort(NO_VOTE_IN_TIME.into())),
        ])
    );
}

#[test]
fn a_vote_arriving_after_the_deadline_does_not_count() {
    let mut coordinator = start();
    coordinator.on_vote(N1, Vote::Commit, 1_010);
    coordinator.on_vote(N2, Vote::Commit, 1_010);
    assert_eq!(
        coordinator.on_vote(N3, Vote::Commit, 1_101),
        vec![CoordinatorOutput::ProposeDecision(Decision::Abort)]
    );
    assert_eq!(coordinator.on_vote(N3, Vote::Commit, 1_102), vec![]);
}

#[test]
fn duplicate_and_foreign_votes_change_nothing() {
    let mut coordinator = start();
    assert_eq!(coordinator.on_vote(N1, Vote::Commit, 1_010), vec![]);
    assert_eq!(
        coordinator.on_vote(N1, Vote::Abort("second".into()), 1_010),
        vec![]
    );
    assert_eq!(coordinator.on_vote(NodeId(9), Vote::Commit, 1_010), vec![]);
    assert_eq!(coordinator.on_vote(N2, Vote::Commit, 1_010), vec![]);
    assert_eq!(
        coordinator.on_vote(N3, Vote::Commit, 1_010),
        vec![CoordinatorOutput::ProposeDecision(Decision::Commit)]
    );
}

#[test]
fn the_logged_decision_is_sent_even_if_another_was_proposed_and_only_once() {
    let mut coordinator = start();
    for node in [N1, N2, N3] {
        coordinator.on_vote(node, Vote::Commit, 1_010);
    }
    // Recovery's abort reached the log first: the first decision wins.
    assert_eq!(
        coordinator.on_decision_logged(Decision::Abort, 1_020),
        decides(Decision::Abort)
    );
    assert_eq!(
        coordinator.on_decision_logged(Decision::Commit, 1_021),
        vec![]
    );
    assert_eq!(coordinator.phase(), Phase::Acknowledging(Decision::Abort));
}

#[test]
fn a_decision_before_voting_ended_is_ignored() {
    let mut coordinator = start();
    assert_eq!(
        coordinator.on_decision_logged(Decision::Commit, 1_010),
        vec![]
    );
    assert_eq!(coordinator.on_ack(N1), vec![]);
    assert_eq!(coordinator.phase(), Phase::Voting);
}

#[test]
fn missing_acks_at_the_ack_deadline_finish_with_those_received() {
    let mut coordinator = start();
    for node in [N1, N2, N3] {
        coordinator.on_vote(node, Vote::Commit, 1_010);
    }
    coordinator.on_decision_logged(Decision::Commit, 1_020);
    coordinator.on_ack(N1);
    coordinator.on_ack(N1);
    assert_eq!(coordinator.on_tick(1_119), vec![]);
    let finished = coordinator.on_tick(1_120);
    let [CoordinatorOutput::Finished(report)] = finished.as_slice() else {
        panic!("expected a finished report, got {finished:?}");
    };
    assert_eq!(report.acked, vec![N1]);
    assert_eq!(coordinator.on_ack(N2), vec![]);
}

/// An in-memory resource: a version per name and a lock table. A test
/// double of the trait, standing in for SQLite in these pure tests.
#[derive(Default)]
struct Resource {
    versions: BTreeMap<String, u64>,
    locks: BTreeMap<String, String>,
    prepared: BTreeSet<String>,
}

/// What these tests lock: a name at a version. The protocol is generic
/// over it; the vault's resource is a secret with an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    name: String,
    version: u64,
}

impl ResourceManager for Resource {
    type Resource = Item;
    type Error = std::convert::Infallible;

    fn prepare(
        &mut self,
        request: &VoteRequest<Item>,
        _now_ms: u64,
    ) -> Result<PrepareOutcome, Self::Error> {
        let item = &request.resource;
        if let Some(holder) = self.locks.get(&item.name) {
            if *holder != request.tx {
                return Ok(PrepareOutcome::Refused(format!("locked by {holder}")));
            }
        }
        if self.versions.get(&item.name) != Some(&item.version) {
            return Ok(PrepareOutcome::Refused("wrong version".into()));
        }
        self.locks.insert(item.name.clone(), request.tx.clone());
        self.prepared.insert(request.tx.clone());
        Ok(PrepareOutcome::Prepared)
    }
}

fn request(tx: &str, version: u64) -> VoteRequest<Item> {
    VoteRequest {
        tx: tx.into(),
        resource: Item {
            name: "mail".into(),
            version,
        },
    }
}

fn resource() -> Resource {
    let mut resource = Resource::default();
    resource.versions.insert("mail".into(), 2);
    resource
}

#[test]
fn a_participant_votes_commit_only_after_preparing() {
    let mut resource = resource();
    let outcome = vote(VotePolicy::Commit, &mut resource, &request("a", 2), 0);
    assert_eq!(outcome, Ok(Vote::Commit));
    assert!(resource.prepared.contains("a"));
    // A retried vote request is answered the same way.
    assert_eq!(
        vote(VotePolicy::Commit, &mut resource, &request("a", 2), 1),
        Ok(Vote::Commit)
    );
}

#[test]
fn a_participant_refuses_another_transaction_on_a_locked_resource() {
    let mut resource = resource();
    let _ = vote(VotePolicy::Commit, &mut resource, &request("a", 2), 0);
    assert_eq!(
        vote(VotePolicy::Commit, &mut resource, &request("b", 2), 0),
        Ok(Vote::Abort("locked by a".into()))
    );
}

#[test]
fn a_participant_refuses_a_stale_version() {
    let mut resource = resource();
    assert_eq!(
        vote(VotePolicy::Commit, &mut resource, &request("a", 1), 0),
        Ok(Vote::Abort("wrong version".into()))
    );
    assert!(resource.locks.is_empty());
}

#[test]
fn an_abort_policy_votes_abort_without_touching_the_resource() {
    let mut resource = resource();
    assert_eq!(
        vote(VotePolicy::Abort, &mut resource, &request("a", 2), 0),
        Ok(Vote::Abort(POLICY_ABORT_REASON.into()))
    );
    assert!(resource.locks.is_empty());
}

#[test]
fn a_participant_acks_only_an_applied_decision() {
    assert_eq!(ack(None), AckOutcome::Wait);
    assert_eq!(
        ack(Some(Decision::Commit)),
        AckOutcome::Ack(Decision::Commit)
    );
}

#[test]
fn coordinator_crash_before_the_decision_leads_to_an_abort_after_the_timeout() {
    let prepared = vec![
        Prepared {
            tx: "old".into(),
            prepared_at_ms: 1_000,
        },
        Prepared {
            tx: "young".into(),
            prepared_at_ms: 5_000,
        },
    ];
    assert_eq!(overdue(&prepared, 10_999, 10_000), Vec::<&str>::new());
    assert_eq!(overdue(&prepared, 11_000, 10_000), vec!["old"]);
    assert_eq!(overdue(&prepared, 15_000, 10_000), vec!["old", "young"]);
    // The leader finds no decision for it in the log.
    assert_eq!(resolve(None), Resolution::ProposeAbort);
}

#[test]
fn coordinator_crash_after_the_decision_keeps_the_logged_decision() {
    assert_eq!(
        resolve(Some(Decision::Commit)),
        Resolution::Decided(Decision::Commit)
    );
    assert_eq!(
        ack(Some(Decision::Commit)),
        AckOutcome::Ack(Decision::Commit)
    );
}

#[test]
fn decisions_print_as_in_the_spec() {
    assert_eq!(Decision::Commit.to_string(), "GLOBAL_COMMIT");
    assert_eq!(Decision::Abort.to_string(), "GLOBAL_ABORT");
}
