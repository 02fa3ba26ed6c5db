//! Deterministic regressions of simulation failures, one per seed that
//! found something: each rebuilds the exact situation without the seed,
//! so that it survives changes that move every seed's trajectory.

use super::invariants::LogMatching;
use super::node::{Effects, SimNode};
use super::register::{ClientCommand, KvStateMachine, RegisterOp};
use consensus::raft::{
    AppendEntries, Config, Entry, EntryPayload, InstallSnapshot, Membership, Message, MessageBody,
    NodeId, RaftCore, SnapshotMeta,
};

fn command(sequence: u64) -> Vec<u8> {
    ClientCommand {
        client: 1,
        sequence,
        key: 0,
        op: RegisterOp::Put(sequence),
    }
    .encode()
}

fn from_leader(term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term,
        incarnation: 0,
        body,
    }
}

/// node2 of a founding {1, 2, 3} cluster, started from its disk.
fn follower() -> SimNode<KvStateMachine> {
    let config = Config::new(NodeId(2), 7);
    let voters = [1, 2, 3].into_iter().map(NodeId).collect();
    let mut founding = RaftCore::bootstrap(config.clone(), voters).expect("bootstrap");
    let ready = founding.ready();
    let mut node = SimNode::new(NodeId(2));
    if let Some(hard_state) = ready.hard_state {
        node.disk.write_hard_state(hard_state);
    }
    node.disk
        .write_entries(&ready.entries)
        .expect("founding entry");
    node.restart(config).expect("restart");
    node
}

/// Seed 215020019: a follower drains a batch of committed entries, then,
/// before that batch's fsync completes, a batch carrying a snapshot from
/// the leader that covers more. The entries are applied first (the Ready
/// contract), and what the checkers learn of them (chain hash, voters)
/// must be what the node's log held when the core handed them out — not
/// the log after the snapshot moved its base past them.
#[test]
fn entries_applied_before_a_later_snapshot_keep_their_chain_and_voters() {
    let chains = LogMatching::default();
    let mut node = follower();
    let mut effects = Effects::default();
    let entries = (2..=3)
        .map(|index| Entry {
            term: 2,
            index,
            payload: EntryPayload::Command(command(index)),
        })
        .collect();
    let append = AppendEntries {
        prev_log_index: 1,
        prev_log_term: 1,
        entries,
        leader_commit: 1,
    };
    let core = node.core.as_mut().expect("running");
    core.step(from_leader(2, MessageBody::AppendEntries(append)));
    node.drain(&chains, &mut effects).expect("drain");
    while node.has_pending_writes() {
        node.sync(&chains, &mut effects).expect("sync");
    }
    let chain_of_3 = node.chain_at(3).expect("entry 3 written");
    // The leader's commit index reaches 3: a batch of committed entries.
    let commit = AppendEntries {
        prev_log_index: 3,
        prev_log_term: 2,
        entries: Vec::new(),
        leader_commit: 3,
    };
    let core = node.core.as_mut().expect("running");
    core.step(from_leader(2, MessageBody::AppendEntries(commit)));
    node.drain(&chains, &mut effects).expect("drain");
    // Before its fsync: a snapshot through index 10, in one chunk.
    let snapshot = InstallSnapshot {
        meta: SnapshotMeta {
            last_index: 10,
            last_term: 2,
            membership: Membership::with_voters([1, 2, 3].into_iter().map(NodeId)),
        },
        offset: 0,
        total: KvStateMachine::default().snapshot().len() as u64,
        data: KvStateMachine::default().snapshot().into(),
    };
    let core = node.core.as_mut().expect("running");
    core.step(from_leader(2, MessageBody::InstallSnapshot(snapshot)));
    node.drain(&chains, &mut effects).expect("drain");
    let mut applied = Effects::default();
    while node.has_pending_writes() {
        node.sync(&chains, &mut applied).expect("sync");
    }
    let at_3 = applied
        .commands
        .iter()
        .find(|command| command.index == 3)
        .expect("entry 3 applied before the snapshot");
    assert_eq!(at_3.chain, chain_of_3);
    let founding: std::collections::BTreeSet<NodeId> = [1, 2, 3].into_iter().map(NodeId).collect();
    assert_eq!(at_3.voters, vec![founding]);
    assert_eq!(applied.restored, vec![NodeId(2)]);
}
