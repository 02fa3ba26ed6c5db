//! One simulated node: a Raft core, its disk, its replicated state machine
//! (the key-value register of the Raft simulation, or the vault model of
//! the 2PC simulation: anything that implements [`SimMachine`]), and the
//! runtime loop that carries out each [`Ready`] exactly as its ordering
//! contract says, with fsyncs that complete when the simulation decides (so
//! a crash can land between a write and its fsync).

use super::abstract_log::{payload_digest, AbstractLog, Digest};
use super::disk::Disk;
use super::invariants::{Applied, LogMatching};
use super::register::KvStateMachine;
use consensus::raft::{
    Config, Entry, EntryPayload, LogIndex, Membership, Message, NodeId, RaftCore, Ready, RequestId,
    RestoreError, Snapshot, SoftState,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

/// A node takes a snapshot of its state machine every this many applied
/// entries, so that log compaction and InstallSnapshot get exercised.
const SNAPSHOT_EVERY: LogIndex = 40;

/// A replicated state machine the simulated nodes apply committed commands
/// to. Apply must be deterministic: every node applies the same commands in
/// the same order and must reach the same state, which the checkers compare.
pub(crate) trait SimMachine: Default + Debug + Sized {
    /// A decoded log command.
    type Command: Debug;
    /// What applying a command returns (the client's answer).
    type Output: Debug;

    /// Parses committed bytes; `None` for bytes no simulated client
    /// proposed (which would itself be a safety bug).
    fn decode(bytes: &[u8]) -> Option<Self::Command>;
    /// Applies the committed command at `index`.
    fn apply(&mut self, index: LogIndex, command: &Self::Command) -> Self::Output;
    /// Moves the applied index past a non-command entry.
    fn skip_to(&mut self, index: LogIndex);
    /// The index of the last applied entry.
    fn applied_index(&self) -> LogIndex;
    /// The whole state as bytes (for snapshots).
    fn snapshot(&self) -> Vec<u8>;
    /// Rebuilds the state from [`SimMachine::snapshot`] bytes; `None` if
    /// corrupt.
    fn restore(bytes: &[u8]) -> Option<Self>;
    /// The membership in force changed at log index `index`, as the
    /// runtime's `StateMachine::membership_changed` says: the node calls it
    /// where the runtime does (in log order between the commands around a
    /// membership entry, after a snapshot restore with the snapshot's
    /// membership, and at every start with the membership in force at the
    /// applied index). The default ignores it.
    fn membership_changed(&mut self, index: LogIndex, membership: &Membership) {
        let _ = (index, membership);
    }
}

/// What a node did that the rest of the simulation must see.
#[derive(Debug)]
pub(crate) struct Effects<M: SimMachine = KvStateMachine> {
    /// Messages to hand to the network.
    pub(crate) messages: Vec<Message>,
    /// Entries applied to state machines.
    pub(crate) applied: Vec<Applied>,
    /// Client commands applied.
    pub(crate) commands: Vec<AppliedCommand<M>>,
    /// Reads now safe to serve (node, request); the node's state machine
    /// has applied far enough.
    pub(crate) reads_served: Vec<(NodeId, RequestId)>,
    /// Reads the node will never serve.
    pub(crate) reads_aborted: Vec<(NodeId, RequestId)>,
    /// Role changes, for the trace.
    pub(crate) role_changes: Vec<(NodeId, SoftState)>,
    /// Nodes whose state machine was replaced by a snapshot from the leader.
    pub(crate) restored: Vec<NodeId>,
}

impl<M: SimMachine> Default for Effects<M> {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            applied: Vec::new(),
            commands: Vec::new(),
            reads_served: Vec::new(),
            reads_aborted: Vec::new(),
            role_changes: Vec::new(),
            restored: Vec::new(),
        }
    }
}

/// A client command a node applied.
#[derive(Debug)]
pub(crate) struct AppliedCommand<M: SimMachine = KvStateMachine> {
    pub(crate) node: NodeId,
    pub(crate) index: LogIndex,
    /// The entry's term (with `index`, what a proposal's waiter is bound
    /// to).
    pub(crate) term: u64,
    /// Chain hash of the node's log through `index` when the core handed
    /// the entry out.
    pub(crate) chain: Digest,
    /// The voter sets that may have committed the entry, from the node's
    /// log then: the one in force at `index` and every later one (a leader
    /// counts by the configuration in force in its log when it counts,
    /// which may be a change appended after the entry).
    pub(crate) voters: Vec<BTreeSet<NodeId>>,
    /// The members (voters and learners) of the configuration in force at
    /// `index` in the node's log when the core handed the entry out: what
    /// the 2PC oracle checks a commit against, independently of what the
    /// state machine was told.
    pub(crate) members: BTreeSet<NodeId>,
    pub(crate) command: M::Command,
    pub(crate) output: M::Output,
}

/// A drained batch waiting for its fsync, and the chain hash and voters of
/// each of its committed entries as the node's log stood when the batch
/// was drained. They must be taken then: a later batch drained before
/// this one's fsync completes may carry a snapshot, which moves the
/// log's base past these entries (seed 215020019 lost their chains that
/// way, and the durable-ack check then saw an acknowledgement of nothing).
struct Pending {
    ready: Ready,
    known: BTreeMap<LogIndex, Known>,
}

/// What a node knew of a committed entry when the core handed it out.
#[derive(Clone, Default)]
struct Known {
    /// The chain hash of the log through the entry.
    chain: Digest,
    /// The voter sets that may have committed it.
    voters: Vec<BTreeSet<NodeId>>,
    /// The members in force at its index (the Ready's own entries and
    /// snapshot included: a follower may get an entry and its commit in
    /// one batch).
    members: BTreeSet<NodeId>,
}

/// A simulated node. `core` is `None` while the node is down.
pub(crate) struct SimNode<M: SimMachine = KvStateMachine> {
    pub(crate) id: NodeId,
    pub(crate) core: Option<RaftCore>,
    /// Counts restarts.
    pub(crate) incarnation: u64,
    /// Started as a joiner (`join = true`): with an empty disk it joins
    /// afresh, where any other node refuses to start.
    pub(crate) joiner: bool,
    pub(crate) disk: Disk,
    /// The log as the core declared it (durable plus pending writes).
    pub(crate) log: AbstractLog,
    pub(crate) machine: M,
    /// Drained batches whose fsync has not completed yet, each with what
    /// the node knew of its committed entries when the core handed them
    /// out (see [`Pending`]).
    pending: VecDeque<Pending>,
    /// Each membership entry in `log`, by index.
    memberships: BTreeMap<LogIndex, Membership>,
    /// ReadIndex answers waiting for the state machine to catch up.
    reads: Vec<(RequestId, LogIndex)>,
}

impl<M: SimMachine> SimNode<M> {
    /// A node that is down and has an empty disk (not yet started).
    pub(crate) fn new(id: NodeId) -> Self {
        Self {
            id,
            core: None,
            incarnation: 0,
            joiner: false,
            disk: Disk::default(),
            log: AbstractLog::default(),
            machine: M::default(),
            pending: VecDeque::new(),
            memberships: BTreeMap::new(),
            reads: Vec::new(),
        }
    }

    /// Whether the node is running.
    pub(crate) fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Whether a drained batch awaits its fsync.
    pub(crate) fn has_pending_writes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Starts the node with `core` (fresh, bootstrapped or restored). As
    /// the runtime's `Node::start` does, the state machine hears the
    /// membership in force at its applied index before anything is
    /// applied.
    pub(crate) fn start(&mut self, core: RaftCore) {
        self.machine = self
            .disk
            .snapshot()
            .and_then(|snapshot| M::restore(&snapshot.data))
            .unwrap_or_default();
        let applied = self.machine.applied_index();
        self.machine
            .membership_changed(applied, &core.membership_at(applied));
        self.core = Some(core);
        self.incarnation += 1;
        self.log = self.disk.view.clone();
        self.memberships.clear();
        if let Some(snapshot) = self.disk.snapshot() {
            let meta = &snapshot.meta;
            self.memberships
                .insert(meta.last_index, meta.membership.clone());
        }
        for entry in self.disk.entries().to_vec() {
            self.note_membership(&entry);
        }
    }

    /// Restarts the node from its disk alone.
    pub(crate) fn restart(&mut self, config: Config) -> Result<(), String> {
        let core = self
            .restored(config)
            .map_err(|error| format!("{} cannot restart from its disk: {error}", self.id))?;
        self.start(core);
        Ok(())
    }

    /// The core the node's disk restores, as `node run` builds it.
    pub(crate) fn restored(&self, config: Config) -> Result<RaftCore, RestoreError> {
        RaftCore::new(config, self.disk.restored())
    }

    /// Crashes the node: volatile state and unsynced writes are lost.
    pub(crate) fn crash(&mut self) {
        self.core = None;
        self.pending.clear();
        self.reads.clear();
        self.log = self.disk.view.clone();
    }

    /// Voters of the membership in force at `index` in this node's log.
    pub(crate) fn voters_at(&self, index: LogIndex) -> BTreeSet<NodeId> {
        let found = self.memberships.range(..=index).next_back();
        found
            .map(|(_, membership)| membership.voters.clone())
            .unwrap_or_default()
    }

    /// Voters of the membership in force at `index`, then of every later
    /// membership in this node's log.
    pub(crate) fn voter_sets_from(&self, index: LogIndex) -> Vec<BTreeSet<NodeId>> {
        let later = self
            .memberships
            .range(index.saturating_add(1)..)
            .map(|(_, membership)| membership.voters.clone());
        std::iter::once(self.voters_at(index))
            .chain(later)
            .collect()
    }

    /// Voters and learners of the membership in force at `index` in this
    /// node's log.
    pub(crate) fn members_at(&self, index: LogIndex) -> BTreeSet<NodeId> {
        let found = self.memberships.range(..=index).next_back();
        found
            .map(|(_, membership)| {
                membership
                    .voters
                    .union(&membership.learners)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Voters of the latest membership in this node's log.
    pub(crate) fn latest_voters(&self) -> BTreeSet<NodeId> {
        self.voters_at(LogIndex::MAX)
    }

    fn note_membership(&mut self, entry: &Entry) {
        self.memberships.split_off(&entry.index);
        if let EntryPayload::Membership(membership) = &entry.payload {
            self.memberships.insert(entry.index, membership.clone());
        }
    }

    /// Drains every Ready the core has: sends the immediate messages and
    /// queues the rest until its fsync completes.
    pub(crate) fn drain(
        &mut self,
        chains: &LogMatching,
        effects: &mut Effects<M>,
    ) -> Result<(), String> {
        loop {
            let Some(core) = self.core.as_mut() else {
                return Ok(());
            };
            if !core.has_ready() {
                return Ok(());
            }
            let mut ready = core.ready();
            let mut known: BTreeMap<LogIndex, Known> = ready
                .committed_entries
                .iter()
                .map(|entry| {
                    let chain = self.chain_at(entry.index).unwrap_or_default();
                    let voters = self.voter_sets_from(entry.index);
                    let members = BTreeSet::new();
                    (
                        entry.index,
                        Known {
                            chain,
                            voters,
                            members,
                        },
                    )
                })
                .collect();
            effects.messages.append(&mut ready.messages);
            if let Some(soft_state) = ready.soft_state {
                effects.role_changes.push((self.id, soft_state));
            }
            if let Some(snapshot) = &ready.snapshot {
                let meta = &snapshot.meta;
                let chain = base_chain(chains, meta.last_index, meta.last_term);
                self.log
                    .install_base(meta.last_index, meta.last_term, chain);
                self.memberships.clear();
                self.memberships
                    .insert(meta.last_index, meta.membership.clone());
            }
            for entry in &ready.entries {
                if !self.log.write(entry) {
                    return Err(format!(
                        "{} was asked to persist entry {} after its last index {}",
                        self.id,
                        entry.index,
                        self.log.last_index()
                    ));
                }
                self.note_membership(entry);
            }
            for (index, known) in &mut known {
                known.members = self.members_at(*index);
            }
            self.pending.push_back(Pending { ready, known });
        }
    }

    /// Completes the fsync of the oldest pending batch and carries out the
    /// rest of its contract: acknowledge to the core, send the messages that
    /// waited, apply, serve reads.
    pub(crate) fn sync(
        &mut self,
        chains: &LogMatching,
        effects: &mut Effects<M>,
    ) -> Result<(), String> {
        let Some(Pending { ready, known }) = self.pending.pop_front() else {
            return Ok(());
        };
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        if let Some(snapshot) = ready.snapshot.clone() {
            let meta = &snapshot.meta;
            let chain = base_chain(chains, meta.last_index, meta.last_term);
            self.machine = M::restore(&snapshot.data)
                .ok_or_else(|| format!("{} received a corrupt snapshot", self.id))?;
            self.machine
                .membership_changed(meta.last_index, &meta.membership);
            self.disk.install_snapshot(snapshot, chain);
            effects.restored.push(self.id);
        }
        if let Some(hard_state) = ready.hard_state {
            self.disk.write_hard_state(hard_state);
        }
        self.disk
            .write_entries(&ready.entries)
            .map_err(|error| format!("{}: {error}", self.id))?;
        if let Some((index, term)) = ready.persist_ack() {
            core.persisted(index, term);
        }
        effects.messages.extend(ready.messages_after_persist);
        self.apply(&ready.committed_entries, &known, effects)?;
        self.reads.extend(
            ready
                .read_states
                .iter()
                .map(|read| (read.request_id, read.index)),
        );
        effects
            .reads_aborted
            .extend(ready.aborted_reads.iter().map(|id| (self.id, *id)));
        self.serve_reads(effects);
        self.maybe_snapshot();
        Ok(())
    }

    fn apply(
        &mut self,
        entries: &[Entry],
        known: &BTreeMap<LogIndex, Known>,
        effects: &mut Effects<M>,
    ) -> Result<(), String> {
        for entry in entries {
            if entry.index != self.machine.applied_index() + 1 {
                return Err(format!(
                    "{} was handed entry {} to apply after applying {}",
                    self.id,
                    entry.index,
                    self.machine.applied_index()
                ));
            }
            let digest = payload_digest(entry);
            let applied = Applied {
                node: self.id,
                index: entry.index,
                term: entry.term,
                digest,
            };
            effects.applied.push(applied);
            match &entry.payload {
                EntryPayload::Command(bytes) => {
                    let command = M::decode(bytes)
                        .ok_or_else(|| format!("{} applied undecodable command", self.id))?;
                    let output = self.machine.apply(entry.index, &command);
                    let Known {
                        chain,
                        voters,
                        members,
                    } = known.get(&entry.index).cloned().unwrap_or_default();
                    effects.commands.push(AppliedCommand {
                        node: self.id,
                        index: entry.index,
                        term: entry.term,
                        chain,
                        voters,
                        members,
                        command,
                        output,
                    });
                }
                EntryPayload::Membership(membership) => {
                    // Between the commands around it, as the runtime's
                    // apply worker does.
                    self.machine.membership_changed(entry.index, membership);
                    self.machine.skip_to(entry.index);
                }
                _ => self.machine.skip_to(entry.index),
            }
        }
        if let (Some(last), Some(core)) = (entries.last(), self.core.as_mut()) {
            core.applied(last.index);
        }
        Ok(())
    }

    fn serve_reads(&mut self, effects: &mut Effects<M>) {
        let applied = self.machine.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .reads
            .drain(..)
            .partition(|(_, index)| *index <= applied);
        self.reads = waiting;
        effects
            .reads_served
            .extend(ready.into_iter().map(|(id, _)| (self.id, id)));
    }

    fn maybe_snapshot(&mut self) {
        let applied = self.machine.applied_index();
        let Some(core) = self.core.as_mut() else {
            return;
        };
        if applied < self.disk.view.base_index() + SNAPSHOT_EVERY {
            return;
        }
        let Some(meta) = core.snapshot_meta(applied) else {
            return;
        };
        let data = bytes::Bytes::from(self.machine.snapshot());
        if core.snapshot_taken(meta.clone(), data.clone()).is_ok() {
            self.disk.compact(Snapshot { meta, data });
            self.log.compact(applied);
        }
    }

    /// The chain hash of this node's log at `index`, if it holds it.
    pub(crate) fn chain_at(&self, index: LogIndex) -> Option<Digest> {
        self.log.slot(index).map(|slot| slot.chain)
    }
}

/// The chain hash of a snapshot's last entry: some node held that entry, so
/// Log Matching recorded it. A fallback keeps unknown bases distinct.
fn base_chain(chains: &LogMatching, index: LogIndex, term: u64) -> Digest {
    chains
        .chain_of(index, term)
        .unwrap_or_else(|| super::abstract_log::mix(index, term))
}
