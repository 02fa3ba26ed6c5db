//! A whole cluster of cores with an in-memory network and storage, driven
//! one command at a time by the scenario interpreter. Every node follows
//! the [`Ready`] contract exactly: install snapshot, persist, acknowledge,
//! send the after-persist messages, apply.

use super::format;
use consensus::raft::{
    Config, Entry, EntryPayload, HardState, Message, RaftCore, Ready, RestoredState, Snapshot,
    SoftState,
};
use consensus::raft::{LogIndex, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// What a node keeps on "disk": survives crash and restart.
#[derive(Clone, Debug, Default)]
pub(crate) struct Storage {
    pub(crate) hard_state: HardState,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) entries: Vec<Entry>,
    /// The model state machine: the commands applied, in order, and the
    /// index applied through (durable together, like the vault's SQLite).
    pub(crate) applied: Vec<String>,
    pub(crate) applied_index: LogIndex,
}

pub(crate) struct Node {
    pub(crate) core: Option<RaftCore>,
    pub(crate) storage: Storage,
    pub(crate) config: Config,
    /// Started as a joiner (`join = true`): with an empty disk it joins
    /// again as a new life; any other node with an empty disk refuses to
    /// start (SPEC §13), as `node run` does.
    pub(crate) joiner: bool,
}

/// The cluster under test.
#[derive(Default)]
pub(crate) struct Cluster {
    pub(crate) nodes: BTreeMap<u64, Node>,
    pub(crate) network: Vec<Message>,
    /// Groups of a partition: messages between different groups are lost.
    pub(crate) partition: Option<Vec<BTreeSet<u64>>>,
    /// Incarnations handed to joiners so far (each gets a fresh one).
    pub(crate) lives: u64,
}

impl Cluster {
    pub(crate) fn config(id: u64, options: &BTreeMap<String, String>) -> Config {
        let mut config = Config::new(NodeId(id), 42);
        config.election_ticks_min = 10;
        config.election_ticks_max = 20;
        config.heartbeat_ticks = 2;
        config.snapshot_chunk_bytes = 16;
        config.max_entries_per_message = 4;
        for (key, value) in options {
            match (key.as_str(), value.as_str()) {
                ("pre-vote", value) => config.pre_vote = value == "true",
                ("check-quorum", value) => config.check_quorum = value == "true",
                ("inflight", value) => config.max_inflight_appends = value.parse().unwrap_or(16),
                _ => {}
            }
        }
        config
    }

    /// Adds `count` nodes of a brand-new cluster whose voters are all of them.
    pub(crate) fn bootstrap(
        &mut self,
        count: u64,
        options: &BTreeMap<String, String>,
        out: &mut Vec<String>,
    ) {
        let voters: BTreeSet<NodeId> = (1..=count).map(NodeId).collect();
        for id in 1..=count {
            let config = Cluster::config(id, options);
            let core = RaftCore::bootstrap(config.clone(), voters.clone());
            match core {
                Ok(core) => {
                    self.nodes.insert(
                        id,
                        Node {
                            core: Some(core),
                            storage: Storage::default(),
                            config,
                            joiner: false,
                        },
                    );
                    self.process(id, out);
                }
                Err(error) => out.push(format!("error: {error}")),
            }
        }
    }

    /// Adds an empty node that will join through a membership change.
    pub(crate) fn add_empty(
        &mut self,
        id: u64,
        options: &BTreeMap<String, String>,
        out: &mut Vec<String>,
    ) {
        let config = Cluster::config(id, options);
        match RaftCore::join(config.clone(), self.fresh_life(id)) {
            Ok(core) => {
                let node = Node {
                    core: Some(core),
                    storage: Storage::default(),
                    config,
                    joiner: true,
                };
                self.nodes.insert(id, node);
            }
            Err(error) => out.push(format!("error: {error}")),
        }
    }

    pub(crate) fn core(&mut self, id: u64) -> Option<&mut RaftCore> {
        self.nodes.get_mut(&id).and_then(|node| node.core.as_mut())
    }

    /// Handles every pending [`Ready`] of node `id`, printing what happens.
    pub(crate) fn process(&mut self, id: u64, out: &mut Vec<String>) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(core) = node.core.as_mut() else {
                return;
            };
            if !core.has_ready() {
                return;
            }
            let ready = core.ready();
            let sent = handle_ready(id, node, ready, out);
            self.network.extend(sent);
        }
    }

    fn can_deliver(&self, message: &Message) -> bool {
        let (from, to) = (message.from.0, message.to.0);
        let alive = self.nodes.get(&to).is_some_and(|node| node.core.is_some());
        let connected = match &self.partition {
            None => true,
            Some(groups) => groups
                .iter()
                .any(|group| group.contains(&from) && group.contains(&to)),
        };
        alive && connected
    }

    /// Delivers every queued message once (new messages wait for the next
    /// round); messages to nodes in `drop` are lost.
    pub(crate) fn deliver_round(&mut self, drop: &BTreeSet<u64>, out: &mut Vec<String>) -> bool {
        let messages = std::mem::take(&mut self.network);
        let any = !messages.is_empty();
        for message in messages {
            if drop.contains(&message.to.0) {
                out.push(format!("{} (dropped)", format::message(&message)));
                continue;
            }
            self.deliver(message, out);
        }
        any
    }

    /// Delivers one message, unless the partition or a crash loses it.
    pub(crate) fn deliver(&mut self, message: Message, out: &mut Vec<String>) {
        let line = format::message(&message);
        if !self.can_deliver(&message) {
            out.push(format!("{line} (dropped)"));
            return;
        }
        out.push(line);
        let to = message.to.0;
        if let Some(core) = self.core(to) {
            core.step(message);
        }
        self.process(to, out);
    }

    /// Delivers until no message is left (no ticks happen meanwhile, so
    /// this ends; the bound is a hang guard).
    pub(crate) fn stabilize(&mut self, out: &mut Vec<String>) {
        for _ in 0..1000 {
            if !self.deliver_round(&BTreeSet::new(), out) {
                return;
            }
        }
        out.push("error: not stable after 1000 rounds".into());
    }

    pub(crate) fn crash(&mut self, id: u64) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.core = None;
        }
        self.network.retain(|message| message.from.0 != id);
    }

    pub(crate) fn restart(&mut self, id: u64, out: &mut Vec<String>) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let restored = RestoredState {
            hard_state: node.storage.hard_state,
            snapshot: node.storage.snapshot.clone(),
            entries: node.storage.entries.clone(),
        };
        match RaftCore::new(node.config.clone(), restored) {
            Ok(mut core) => {
                core.applied(node.storage.applied_index);
                node.core = Some(core);
                self.process(id, out);
            }
            Err(error) => out.push(format!("error: {error}")),
        }
    }

    /// A fresh incarnation for a joiner (node id and a counter: distinct
    /// from every other life in the scenario, and never 0).
    fn fresh_life(&mut self, id: u64) -> u64 {
        self.lives += 1;
        self.lives * 1000 + id
    }

    /// The node loses its disk and is started again: with its own
    /// configuration it refuses (no Raft state); `as_joiner` (an operator
    /// starting it with `join = true`, or a joiner's own config) makes it
    /// a new life of the id.
    pub(crate) fn wipe(&mut self, id: u64, as_joiner: bool, out: &mut Vec<String>) {
        self.crash(id);
        let life = self.fresh_life(id);
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.storage = Storage::default();
        node.joiner |= as_joiner;
        let core = if node.joiner {
            RaftCore::join(node.config.clone(), life)
        } else {
            RaftCore::new(node.config.clone(), RestoredState::default())
        };
        match core {
            Ok(core) => {
                node.core = Some(core);
                self.process(id, out);
            }
            Err(error) => out.push(format!("error: {error}")),
        }
    }
}

/// Does what one [`Ready`] asks, in the contract's order; returns the
/// messages to put on the network.
fn handle_ready(id: u64, node: &mut Node, ready: Ready, out: &mut Vec<String>) -> Vec<Message> {
    let Some(core) = node.core.as_mut() else {
        return Vec::new();
    };
    let storage = &mut node.storage;
    if let Some(snapshot) = ready.snapshot {
        out.push(format!(
            "node{id}: install snapshot {}@{} {}",
            snapshot.meta.last_index,
            snapshot.meta.last_term,
            format::membership(&snapshot.meta.membership)
        ));
        storage.applied = String::from_utf8_lossy(&snapshot.data)
            .split(',')
            .filter(|command| !command.is_empty())
            .map(str::to_string)
            .collect();
        storage.applied_index = snapshot.meta.last_index;
        storage.entries.clear();
        storage.snapshot = Some(snapshot);
    }
    let mut sent = ready.messages;
    if let Some(hard_state) = ready.hard_state {
        storage.hard_state = hard_state;
    }
    if let Some(first) = ready.entries.first() {
        storage.entries.retain(|entry| entry.index < first.index);
    }
    let ack = ready.entries.last().map(|entry| (entry.index, entry.term));
    storage.entries.extend(ready.entries);
    if let Some((index, term)) = ack {
        core.persisted(index, term);
    }
    sent.extend(ready.messages_after_persist);
    apply(id, storage, ready.committed_entries, out);
    core.applied(storage.applied_index);
    for read in ready.read_states {
        out.push(format!(
            "node{id}: read {} ready at index {}",
            read.request_id, read.index
        ));
    }
    for request_id in ready.aborted_reads {
        out.push(format!("node{id}: read {request_id} aborted"));
    }
    if let Some(SoftState { role, term, leader }) = ready.soft_state {
        let leader = leader.map_or("none".to_string(), |leader| leader.0.to_string());
        out.push(format!("node{id}: {role} term={term} leader={leader}"));
    }
    sent
}

/// The model state machine: applies commands in order, skipping what it
/// already applied before a restart (the plug-in contract).
fn apply(id: u64, storage: &mut Storage, entries: Vec<Entry>, out: &mut Vec<String>) {
    for entry in entries {
        if entry.index <= storage.applied_index {
            continue;
        }
        if let EntryPayload::Command(bytes) = &entry.payload {
            storage
                .applied
                .push(String::from_utf8_lossy(bytes).into_owned());
        }
        out.push(format!("node{id}: apply {}", format::entry(&entry)));
        storage.applied_index = entry.index;
    }
}
