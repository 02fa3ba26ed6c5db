//! Throughput of the Raft core alone: committed proposals per second through
//! a 3-node cluster held in memory, with no faults, every message delivered
//! at once and fsyncs that complete immediately. Proposals that arrive while
//! the leader is busy are batched into one `propose` call, and the core
//! batches entries into AppendEntries messages.
//!
//! A proposer proposes its next command when its previous one commits; the
//! benchmark runs 1 and 64 concurrent proposers and prints the figures.
//!
//! Run: `cargo bench -p consensus --bench throughput`
//! (`RAFT_BENCH_COMMANDS=N` changes the number of commands per run).

use consensus::raft::{Config, Entry, EntryPayload, Message, NodeId, RaftCore, Role};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

/// Size of each proposed command.
const COMMAND_BYTES: usize = 128;

/// One node: its core and its in-memory "disk".
struct BenchNode {
    core: RaftCore,
    log: Vec<Entry>,
}

/// Three nodes and the messages between them.
struct BenchCluster {
    nodes: BTreeMap<NodeId, BenchNode>,
    wire: VecDeque<Message>,
    leader: NodeId,
}

impl BenchCluster {
    fn new() -> BenchCluster {
        let voters: BTreeSet<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = voters
            .iter()
            .map(|id| {
                let config = Config::new(*id, 7);
                let core = match RaftCore::bootstrap(config, voters.clone()) {
                    Ok(core) => core,
                    Err(error) => panic!("bootstrap failed: {error}"),
                };
                (
                    *id,
                    BenchNode {
                        core,
                        log: Vec::new(),
                    },
                )
            })
            .collect();
        BenchCluster {
            nodes,
            wire: VecDeque::new(),
            leader: NodeId(1),
        }
    }

    /// Elects node1 by asking it to campaign and delivering until quiet.
    fn elect(&mut self) {
        if let Some(node) = self.nodes.get_mut(&self.leader) {
            node.core.campaign();
        }
        let mut sink = Vec::new();
        self.settle(&mut sink);
        let role = self.nodes.get(&self.leader).map(|node| node.core.role());
        assert_eq!(
            role,
            Some(Role::Leader),
            "node1 must win the first election"
        );
    }

    /// Handles every Ready and delivers every message until nothing moves;
    /// collects the commands the leader committed.
    fn settle(&mut self, committed: &mut Vec<u64>) {
        loop {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.handle_ready(id, committed);
            }
            if self.wire.is_empty() {
                return;
            }
            while let Some(message) = self.wire.pop_front() {
                if let Some(node) = self.nodes.get_mut(&message.to) {
                    node.core.step(message);
                }
            }
        }
    }

    /// Carries out a node's Ready batches in contract order, with an fsync
    /// that completes at once.
    fn handle_ready(&mut self, id: NodeId, committed: &mut Vec<u64>) {
        let leader = self.leader;
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        while node.core.has_ready() {
            let mut ready = node.core.ready();
            self.wire.extend(ready.messages.drain(..));
            if let Some(first) = ready.entries.first() {
                let keep = node.log.partition_point(|entry| entry.index < first.index);
                node.log.truncate(keep);
                node.log.extend(ready.entries.iter().cloned());
            }
            if let Some((index, term)) = ready.persist_ack() {
                node.core.persisted(index, term);
            }
            self.wire.extend(ready.messages_after_persist.drain(..));
            if let Some(last) = ready.committed_entries.last() {
                node.core.applied(last.index);
            }
            if id == leader {
                for entry in &ready.committed_entries {
                    if let EntryPayload::Command(bytes) = &entry.payload {
                        committed.push(proposer_of(bytes));
                    }
                }
            }
        }
    }

    /// Proposes one command for each proposer in `proposers`, as one batch.
    fn propose(&mut self, proposers: &[u64]) {
        let commands: Vec<Vec<u8>> = proposers.iter().map(|id| command(*id)).collect();
        let Some(node) = self.nodes.get_mut(&self.leader) else {
            return;
        };
        if let Err(error) = node.core.propose(commands) {
            panic!("the leader refused a proposal: {error}");
        }
    }
}

fn command(proposer: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; COMMAND_BYTES];
    bytes[..8].copy_from_slice(&proposer.to_le_bytes());
    bytes
}

fn proposer_of(bytes: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(id)
}

/// Runs `total` commands through a fresh cluster with `proposers`
/// concurrent proposers; returns committed proposals per second.
fn run(proposers: u64, total: u64) -> f64 {
    let mut cluster = BenchCluster::new();
    cluster.elect();
    let started = Instant::now();
    let mut ready: Vec<u64> = (0..proposers).collect();
    let (mut proposed, mut done) = (0u64, 0u64);
    let mut committed = Vec::new();
    while done < total {
        let room = (total - proposed) as usize;
        ready.truncate(room);
        if !ready.is_empty() {
            proposed += ready.len() as u64;
            cluster.propose(&ready);
            ready.clear();
        }
        cluster.settle(&mut committed);
        done += committed.len() as u64;
        ready.append(&mut committed);
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let total = std::env::var("RAFT_BENCH_COMMANDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000u64);
    println!(
        "Raft core, 3 nodes in memory, {COMMAND_BYTES}-byte commands, {total} commands per run"
    );
    for proposers in [1u64, 64] {
        let rate = run(proposers, total);
        println!("{proposers:>3} concurrent proposer(s): {rate:>12.0} committed proposals/s");
    }
}
