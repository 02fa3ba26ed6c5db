//! Scenario tests of the Raft core, in the style of etcd's `datadriven`
//! tests, through the public API only.
//!
//! A scenario file (`consensus/testdata/scenarios/*.txt`) is a list of
//! commands, each followed by `----` and the output it must produce, and a
//! blank line. Lines starting with `#` are comments. Run with `REWRITE=1`
//! to regenerate the expected output after an intended behaviour change,
//! then review the diff.
//!
//! Commands (node ids are numbers):
//!
//! - `add-nodes N [pre-vote=false] [check-quorum=false]`: a fresh cluster.
//! - `add-empty-node ID`: a node that will join (no state at all).
//! - `campaign ID`, `tick ID [times=N]`, `tick-all [times=N]`.
//! - `deliver-msgs [drop=(2,3)]`: one round of delivery.
//! - `run ticks=N`: N times (tick every node, then stabilize); prints only
//!   what nodes did (role changes, applies, reads), not the messages.
//! - `stabilize`: deliver until no message is left.
//! - `partition 1 | 2 3`, `heal`, `crash ID`, `restart ID`, `wipe ID [join]`.
//! - `propose ID CMD...`, `read-index ID REQUEST`, `transfer-leader ID TO`.
//! - `add-learner ID NODE`, `promote ID NODE`, `remove-node ID NODE`.
//! - `snapshot ID`: the node's state machine takes a snapshot.
//! - `raft-log ID`, `status ID`, `applied ID`.
//! - `chaos seeds=N steps=M [nodes=K]`: seeded random faults with safety
//!   and convergence checks (see `scenarios/chaos.rs`).

#[path = "scenarios/chaos.rs"]
mod chaos;
#[path = "scenarios/cluster.rs"]
mod cluster;
#[path = "datadriven/mod.rs"]
mod datadriven;
#[path = "scenarios/format.rs"]
mod format;

use cluster::Cluster;
use consensus::raft::{MembershipChange, NodeId};
use datadriven::Command;
use std::collections::BTreeSet;

fn id_set(text: &str) -> BTreeSet<u64> {
    text.trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

impl Cluster {
    /// Runs one command line and returns its output lines.
    fn run(&mut self, command: &Command) -> Vec<String> {
        let mut out = Vec::new();
        let known = self.run_time(command, &mut out)
            || self.run_fault(command, &mut out)
            || self.run_client(command, &mut out)
            || self.run_inspection(command, &mut out);
        if !known {
            out.push(format!("error: unknown command {:?}", command.name));
        }
        if out.is_empty() {
            out.push("ok".into());
        }
        out
    }

    /// Commands that make time pass or messages move.
    fn run_time(&mut self, command: &Command, out: &mut Vec<String>) -> bool {
        match command.name.as_str() {
            "campaign" => {
                if let Some(core) = self.core(command.number(0)) {
                    core.campaign();
                }
                self.process(command.number(0), out);
            }
            "tick" => self.tick(&[command.number(0)], command.option("times", 1), out),
            "tick-all" => {
                let ids: Vec<u64> = self.nodes.keys().copied().collect();
                self.tick(&ids, command.option("times", 1), out);
            }
            "run" => {
                let mut trace = Vec::new();
                for _ in 0..command.option("ticks", 1) {
                    let ids: Vec<u64> = self.nodes.keys().copied().collect();
                    self.tick(&ids, 1, &mut trace);
                    self.stabilize(&mut trace);
                }
                // Only what nodes did, not every heartbeat.
                let events = trace
                    .into_iter()
                    .filter(|line| line.starts_with("node") || line.starts_with("error"));
                out.extend(events);
            }
            "deliver-msgs" => {
                let drop = command
                    .options
                    .get("drop")
                    .map(|text| id_set(text))
                    .unwrap_or_default();
                self.deliver_round(&drop, out);
            }
            "stabilize" => self.stabilize(out),
            "chaos" => {
                let seeds = command.option("seeds", 1);
                let (steps, nodes) = (command.option("steps", 1000), command.option("nodes", 3));
                let mut failures = 0;
                for seed in 0..seeds {
                    if let Err(error) = chaos::run(seed, steps, nodes, &command.options) {
                        failures += 1;
                        out.push(error);
                    }
                }
                out.push(format!("{} of {seeds} seeds passed", seeds - failures));
            }
            _ => return false,
        }
        true
    }

    /// Commands that add nodes or inject faults.
    fn run_fault(&mut self, command: &Command, out: &mut Vec<String>) -> bool {
        let id = command.number(0);
        match command.name.as_str() {
            "add-nodes" => self.bootstrap(id, &command.options, out),
            "add-empty-node" => self.add_empty(id, &command.options, out),
            "partition" => {
                let groups = command.line["partition".len()..].split('|').map(|group| {
                    group
                        .split_whitespace()
                        .filter_map(|id| id.parse().ok())
                        .collect()
                });
                self.partition = Some(groups.collect());
            }
            "heal" => self.partition = None,
            "crash" => self.crash(id),
            "restart" => self.restart(id, out),
            "wipe" => {
                let as_joiner = command.line.split_whitespace().any(|word| word == "join");
                self.wipe(id, as_joiner, out)
            }
            _ => return false,
        }
        true
    }

    /// Requests a client or operator makes.
    fn run_client(&mut self, command: &Command, out: &mut Vec<String>) -> bool {
        let (id, argument) = (command.number(0), command.number(1));
        let result = match command.name.as_str() {
            "propose" => {
                self.propose(id, &command.positional[1..], out);
                return true;
            }
            "snapshot" => {
                self.snapshot(id, out);
                return true;
            }
            "read-index" => self.core(id).map(|core| {
                core.read_index(argument)
                    .map(|()| None)
                    .map_err(|error| error.to_string())
            }),
            "transfer-leader" => self.core(id).map(|core| {
                core.transfer_leader(NodeId(argument))
                    .map(|()| None)
                    .map_err(|error| error.to_string())
            }),
            "add-learner" | "promote" | "remove-node" => {
                let node = NodeId(argument);
                let change = match command.name.as_str() {
                    "add-learner" => MembershipChange::AddLearner {
                        node,
                        address: String::new(),
                    },
                    "promote" => MembershipChange::PromoteLearner(node),
                    _ => MembershipChange::RemoveNode(node),
                };
                self.core(id).map(|core| {
                    core.change_membership(change)
                        .map(Some)
                        .map_err(|error| error.to_string())
                })
            }
            _ => return false,
        };
        match result {
            Some(Ok(Some(index))) => out.push(format!("index {index}")),
            Some(Ok(None)) => {}
            Some(Err(error)) => out.push(format!("error: {error}")),
            None => out.push("error: node is down".into()),
        }
        self.process(id, out);
        true
    }

    /// Commands that only look.
    fn run_inspection(&mut self, command: &Command, out: &mut Vec<String>) -> bool {
        let id = command.number(0);
        match command.name.as_str() {
            "raft-log" => self.raft_log(id, out),
            "status" => self.status(id, out),
            "applied" => {
                if let Some(node) = self.nodes.get(&id) {
                    out.push(format!("[{}]", node.storage.applied.join(", ")));
                }
            }
            _ => return false,
        }
        true
    }

    fn tick(&mut self, ids: &[u64], times: u64, out: &mut Vec<String>) {
        for _ in 0..times {
            for id in ids {
                if let Some(core) = self.core(*id) {
                    core.tick();
                }
                self.process(*id, out);
            }
        }
    }

    fn propose(&mut self, id: u64, commands: &[String], out: &mut Vec<String>) {
        let commands = commands
            .iter()
            .map(|command| command.as_bytes().to_vec())
            .collect();
        match self.core(id).map(|core| core.propose(commands)) {
            Some(Ok(range)) => out.push(format!("indices {}..={}", range.start(), range.end())),
            Some(Err(error)) => out.push(format!("error: {error}")),
            None => out.push("error: node is down".into()),
        }
        self.process(id, out);
    }

    fn snapshot(&mut self, id: u64, out: &mut Vec<String>) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let index = node.storage.applied_index;
        let Some(meta) = core.snapshot_meta(index) else {
            out.push(format!("error: no entry {index} in the log"));
            return;
        };
        let data = bytes::Bytes::from(node.storage.applied.join(",").into_bytes());
        let snapshot = consensus::raft::Snapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        match core.snapshot_taken(meta, data) {
            Ok(()) => {
                node.storage.entries.retain(|entry| entry.index > index);
                node.storage.snapshot = Some(snapshot);
                out.push(format!("snapshot at {index}"));
            }
            Err(error) => out.push(format!("error: {error}")),
        }
    }

    fn raft_log(&mut self, id: u64, out: &mut Vec<String>) {
        let Some(node) = self.nodes.get(&id) else {
            return;
        };
        if let Some(snapshot) = &node.storage.snapshot {
            out.push(format!(
                "snapshot {}@{} {}",
                snapshot.meta.last_index,
                snapshot.meta.last_term,
                format::membership(&snapshot.meta.membership)
            ));
        }
        for entry in &node.storage.entries {
            out.push(format::entry(entry));
        }
        if out.is_empty() {
            out.push("(empty)".into());
        }
    }

    fn status(&mut self, id: u64, out: &mut Vec<String>) {
        let Some(core) = self.core(id) else {
            out.push("down".into());
            return;
        };
        let status = core.status();
        let leader = status
            .leader
            .map_or("none".to_string(), |leader| leader.0.to_string());
        out.push(format!(
            "{} term={} leader={} commit={} applied={} last={} {}",
            status.role,
            status.term,
            leader,
            status.commit_index,
            status.applied_index,
            status.last_log_index,
            format::membership(&status.membership)
        ));
        for (follower, progress) in status.followers {
            out.push(format!(
                "  {}: match={} next={} {:?}",
                follower.0, progress.match_index, progress.next_index, progress.state
            ));
        }
    }
}

#[test]
fn raft_scenarios() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/scenarios");
    datadriven::run_directory(&directory, Cluster::default, Cluster::run);
}
