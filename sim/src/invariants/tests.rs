//! Each checker must fire on a hand-made cluster picture that breaks its
//! property, and stay quiet on a healthy one.

use super::*;
use consensus::raft::{Entry, EntryPayload};

fn log_of(terms: &[(Term, u8)]) -> AbstractLog {
    let mut log = AbstractLog::default();
    for (position, (term, byte)) in terms.iter().enumerate() {
        let entry = Entry {
            index: position as LogIndex + 1,
            term: *term,
            payload: EntryPayload::Command(vec![*byte]),
        };
        assert!(log.write(&entry));
    }
    log
}

struct Node {
    id: u64,
    leader: bool,
    term: Term,
    commit: LogIndex,
    log: AbstractLog,
}

fn node(id: u64, leader: bool, term: Term, commit: LogIndex, log: AbstractLog) -> Node {
    Node {
        id,
        leader,
        term,
        commit,
        log,
    }
}

fn check_all(
    invariants: &mut Invariants,
    nodes: &[Node],
    events: &StepEvents,
) -> Result<(), Violation> {
    let view = ClusterView {
        nodes: nodes
            .iter()
            .map(|n| NodeView {
                id: NodeId(n.id),
                incarnation: 0,
                is_leader: n.leader,
                term: n.term,
                commit: n.commit,
                log: &n.log,
                log_written_from: Some(1),
            })
            .collect(),
        disks: nodes.iter().map(|n| (NodeId(n.id), &n.log)).collect(),
        events,
    };
    invariants.check(&view)
}

fn violated(result: Result<(), Violation>) -> &'static str {
    result.err().map_or("none", |violation| violation.invariant)
}

#[test]
fn healthy_cluster_passes() {
    let mut invariants = Invariants::new();
    let log = log_of(&[(1, 1), (1, 2), (2, 3)]);
    let nodes = [
        node(1, true, 2, 3, log.clone()),
        node(2, false, 2, 2, log.clone()),
        node(3, false, 2, 1, log_of(&[(1, 1)])),
    ];
    assert_eq!(
        check_all(&mut invariants, &nodes, &StepEvents::default()),
        Ok(())
    );
}

#[test]
fn two_leaders_in_one_term_are_caught() {
    let mut invariants = Invariants::new();
    let nodes = [
        node(1, true, 3, 0, log_of(&[])),
        node(2, true, 3, 0, log_of(&[])),
    ];
    assert_eq!(
        violated(check_all(&mut invariants, &nodes, &StepEvents::default())),
        "election safety"
    );
    // Also across steps: node 2 leading term 3 after node 1 did.
    let mut invariants = Invariants::new();
    let first = [node(1, true, 3, 0, log_of(&[]))];
    assert!(check_all(&mut invariants, &first, &StepEvents::default()).is_ok());
    let second = [node(2, true, 3, 0, log_of(&[]))];
    assert!(check_all(&mut invariants, &second, &StepEvents::default()).is_err());
}

#[test]
fn same_index_and_term_with_different_prefixes_is_caught() {
    let mut invariants = Invariants::new();
    let nodes = [
        node(1, false, 2, 0, log_of(&[(1, 1), (2, 2)])),
        node(2, false, 2, 0, log_of(&[(1, 9), (2, 2)])),
    ];
    assert_eq!(
        violated(check_all(&mut invariants, &nodes, &StepEvents::default())),
        "log matching"
    );
}

#[test]
fn leader_missing_a_committed_entry_is_caught() {
    let mut invariants = Invariants::new();
    let committed = [node(1, true, 1, 2, log_of(&[(1, 1), (1, 2)]))];
    assert!(check_all(&mut invariants, &committed, &StepEvents::default()).is_ok());
    let new_leader = [node(2, true, 2, 0, log_of(&[(1, 1)]))];
    assert_eq!(
        violated(check_all(
            &mut invariants,
            &new_leader,
            &StepEvents::default()
        )),
        "leader completeness"
    );
}

#[test]
fn different_entries_applied_at_one_index_are_caught() {
    let mut invariants = Invariants::new();
    let applied = |node, digest| Applied {
        node: NodeId(node),
        index: 4,
        term: 2,
        digest,
    };
    let events = StepEvents {
        applied: vec![applied(1, 10), applied(2, 11)],
        acknowledged: vec![],
    };
    assert_eq!(
        violated(check_all(&mut invariants, &[], &events)),
        "state machine safety"
    );
}

#[test]
fn commit_index_going_back_is_caught() {
    let mut invariants = Invariants::new();
    let log = log_of(&[(1, 1), (1, 2)]);
    assert!(check_all(
        &mut invariants,
        &[node(1, false, 1, 2, log.clone())],
        &StepEvents::default()
    )
    .is_ok());
    let result = check_all(
        &mut invariants,
        &[node(1, false, 1, 1, log)],
        &StepEvents::default(),
    );
    assert_eq!(violated(result), "commit index monotonic");
}

#[test]
fn acknowledging_before_majority_durability_is_caught() {
    let mut invariants = Invariants::new();
    let long = log_of(&[(1, 1), (1, 2)]);
    let chain = long.slot(2).map_or(0, |slot| slot.chain);
    let nodes = [
        node(1, true, 1, 2, long.clone()),
        node(2, false, 1, 1, log_of(&[(1, 1)])),
        node(3, false, 1, 1, log_of(&[(1, 1)])),
    ];
    let voters: BTreeSet<NodeId> = [1, 2, 3].map(NodeId).into();
    let ack = Acknowledged {
        node: NodeId(1),
        index: 2,
        chain,
        voter_sets: vec![voters],
    };
    let events = StepEvents {
        applied: vec![],
        acknowledged: vec![ack.clone()],
    };
    assert_eq!(
        violated(check_all(&mut invariants, &nodes, &events)),
        "durable before acknowledged"
    );
    // With a second copy it is fine.
    let mut invariants = Invariants::new();
    let nodes = [
        nodes[0].clone_with(),
        node(2, false, 1, 1, long),
        node(3, false, 1, 1, log_of(&[])),
    ];
    let events = StepEvents {
        applied: vec![],
        acknowledged: vec![ack],
    };
    assert_eq!(check_all(&mut invariants, &nodes, &events), Ok(()));
}

impl Node {
    fn clone_with(&self) -> Node {
        node(
            self.id,
            self.leader,
            self.term,
            self.commit,
            self.log.clone(),
        )
    }
}
