//! Exact-output unit tests of the core (openraft style): put a node in a
//! known state, feed one input, assert exactly what comes out. Each test
//! names the part of the Raft paper or dissertation it checks.

mod decode;
mod election;
mod incarnation;
mod planted;
mod replication;
mod snapshot;
mod ticks;

use super::*;
use std::collections::BTreeSet;

pub(crate) fn config(id: u64) -> Config {
    let mut config = Config::new(NodeId(id), 1);
    config.pre_vote = false;
    config
}

pub(crate) fn voters(ids: &[u64]) -> BTreeSet<NodeId> {
    ids.iter().copied().map(NodeId).collect()
}

/// A node of a fresh 3-node cluster, its bootstrap state persisted.
pub(crate) fn fresh(config: Config) -> RaftCore {
    let mut core = RaftCore::bootstrap(config, voters(&[1, 2, 3])).expect("valid bootstrap");
    persist(&mut core);
    core
}

/// Drains one Ready, acknowledges its entries as durable, returns it.
pub(crate) fn persist(core: &mut RaftCore) -> Ready {
    let ready = core.ready();
    if let Some((index, term)) = ready.persist_ack() {
        core.persisted(index, term);
    }
    ready
}

pub(crate) fn message(from: u64, to: u64, term: Term, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term,
        body,
        incarnation: 0,
    }
}

pub(crate) fn vote_granted(from: u64, to: u64, term: Term) -> Message {
    message(
        from,
        to,
        term,
        MessageBody::RequestVoteResponse(RequestVoteResponse {
            granted: true,
            pre_vote: false,
        }),
    )
}

/// Node 1 as leader of term 2 in a 3-node cluster, with its blank entry
/// (index 2) replicated to node 2 and committed, all output drained.
pub(crate) fn leader() -> RaftCore {
    let mut core = fresh(config(1));
    core.campaign();
    persist(&mut core);
    core.step(vote_granted(2, 1, 2));
    persist(&mut core);
    accept(&mut core, 2, 2);
    persist(&mut core);
    assert_eq!(core.commit_index(), 2);
    core
}

pub(crate) fn accept(core: &mut RaftCore, from: u64, match_index: LogIndex) {
    let term = core.term();
    core.step(message(
        from,
        core.id().0,
        term,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index }),
    ));
}

pub(crate) fn entry(index: LogIndex, term: Term, payload: &str) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(payload.as_bytes().to_vec()),
    }
}
