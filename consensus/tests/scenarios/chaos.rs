//! `chaos`: a seeded random walk over faults (reordering, loss,
//! duplication, partitions, crashes, restarts, compaction) that checks
//! election safety and state-machine safety after every step, then heals
//! everything and checks that the cluster converges. Deterministic: the
//! same seed gives the same run.

use super::cluster::Cluster;
use consensus::raft::{MembershipChange, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// What the invariants remember across steps.
#[derive(Default)]
struct Observed {
    leaders: BTreeMap<u64, u64>,
    applied: BTreeMap<u64, String>,
    /// ReadIndex requests: id -> highest index applied anywhere when the
    /// read was issued. A linearizable read must see at least that.
    reads: BTreeMap<u64, u64>,
}

impl Observed {
    /// Checks the lines a step printed. Returns the first violation.
    fn check(&mut self, lines: &[String]) -> Result<(), String> {
        for line in lines {
            let Some((node, event)) = line
                .strip_prefix("node")
                .and_then(|rest| rest.split_once(": "))
            else {
                continue;
            };
            let node: u64 = node.parse().map_err(|_| format!("bad line {line}"))?;
            if let Some(rest) = event.strip_prefix("leader term=") {
                let term: u64 = rest
                    .split(' ')
                    .next()
                    .and_then(|term| term.parse().ok())
                    .unwrap_or(0);
                if let Some(other) = self.leaders.insert(term, node) {
                    if other != node {
                        return Err(format!(
                            "election safety: node{other} and node{node} lead term {term}"
                        ));
                    }
                }
            }
            if let Some(read) = event.strip_prefix("read ") {
                let words: Vec<&str> = read.split(' ').collect();
                if let ["ready", "at", "index", index] = words[1..] {
                    let id: u64 = words[0].parse().unwrap_or(0);
                    let index: u64 = index.parse().unwrap_or(0);
                    let floor = self.reads.get(&id).copied().unwrap_or(0);
                    if index < floor {
                        return Err(format!(
                            "linearizability: read {id} released at {index} by node{node}, but {floor} was committed before it was issued"
                        ));
                    }
                }
            }
            if let Some(entry) = event.strip_prefix("apply ") {
                let index: u64 = entry
                    .split('@')
                    .next()
                    .and_then(|index| index.parse().ok())
                    .unwrap_or(0);
                if let Some(previous) = self.applied.insert(index, entry.to_string()) {
                    if previous != entry {
                        return Err(format!(
                            "state machine safety at {index}: {previous} vs {entry} (node{node})"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn run(
    seed: u64,
    steps: u64,
    nodes: u64,
    options: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = Cluster::default();
    let mut observed = Observed::default();
    let mut out = Vec::new();
    // With `spare=K`, K more nodes start empty and may be added, promoted
    // and removed at random.
    let spare: u64 = options
        .get("spare")
        .and_then(|spare| spare.parse().ok())
        .unwrap_or(0);
    cluster.bootstrap(nodes, options, &mut out);
    for id in nodes + 1..=nodes + spare {
        cluster.add_empty(id, options, &mut out);
    }
    let nodes = nodes + spare;
    let mut proposals = 0u64;
    for _ in 0..steps {
        out.clear();
        if rng.gen_range(0..100) < 3 {
            read_somewhere(&mut cluster, &mut rng, nodes, &mut observed, &mut out);
        }
        step(&mut cluster, &mut rng, nodes, &mut proposals, &mut out);
        observed
            .check(&out)
            .map_err(|error| format!("seed {seed}: {error}"))?;
    }
    converge(&mut cluster, nodes, &mut observed)
        .map_err(|error| format!("seed {seed}: {error}"))?;
    Ok(format!("{} entries applied", observed.applied.len()))
}

/// Issues a read on any node that believes it leads, stale ones included:
/// those are the ones that must not answer.
fn read_somewhere(
    cluster: &mut Cluster,
    rng: &mut ChaCha8Rng,
    nodes: u64,
    observed: &mut Observed,
    out: &mut Vec<String>,
) {
    let request_id = observed.reads.len() as u64 + 1;
    let floor = observed.applied.keys().next_back().copied().unwrap_or(0);
    observed.reads.insert(request_id, floor);
    let leaders: Vec<u64> = (1..=nodes)
        .filter(|id| {
            cluster
                .core(*id)
                .is_some_and(|core| core.leader_handle().is_ok())
        })
        .collect();
    if leaders.is_empty() {
        return;
    }
    let id = leaders[rng.gen_range(0..leaders.len())];
    if let Some(core) = cluster.core(id) {
        let _refused_if_deposed = core.read_index(request_id);
    }
    cluster.process(id, out);
}

/// Heals everything, restarts every node, and lets time pass with a
/// reliable network until every member applied the same entries, ending
/// with a fresh command.
fn converge(cluster: &mut Cluster, nodes: u64, observed: &mut Observed) -> Result<(), String> {
    let mut out = Vec::new();
    cluster.partition = None;
    for id in 1..=nodes {
        if cluster.core(id).is_none() {
            cluster.restart(id, &mut out);
        }
    }
    for round in 0..400 {
        out.clear();
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in &ids {
            if let Some(core) = cluster.core(*id) {
                core.tick();
            }
            cluster.process(*id, &mut out);
        }
        cluster.stabilize(&mut out);
        let final_applied = cluster.nodes.values().any(|node| {
            node.storage
                .applied
                .iter()
                .any(|command| command == "final")
        });
        if round >= 100 && round % 20 == 0 && !final_applied {
            propose_on_leader(cluster, "final", &mut out);
        }
        observed.check(&out)?;
        if round > 100 && converged(cluster) {
            return Ok(());
        }
    }
    Err(format!(
        "cluster did not converge after healing: {}",
        describe(cluster, nodes)
    ))
}

/// Every member (per the leader) applied the same index, ending in "final".
fn converged(cluster: &mut Cluster) -> bool {
    let members = current_members(cluster);
    let member_nodes = || {
        cluster
            .nodes
            .iter()
            .filter(|(id, _)| members.contains(id))
            .map(|(_, node)| node)
    };
    let applied: BTreeSet<u64> = member_nodes()
        .map(|node| node.storage.applied_index)
        .collect();
    let has_final = member_nodes().all(|node| {
        node.storage
            .applied
            .last()
            .is_some_and(|last| last == "final")
    });
    applied.len() == 1 && has_final
}

fn describe(cluster: &mut Cluster, nodes: u64) -> String {
    let mut states = Vec::new();
    for id in 1..=nodes {
        if let Some(core) = cluster.core(id) {
            let status = core.status();
            states.push(format!(
                "node{id} {} term={} commit={} last={} voters={:?} learners={:?} leader={:?} followers={:?}",
                status.role,
                status.term,
                status.commit_index,
                status.last_log_index,
                status.membership.voters,
                status.membership.learners,
                status.leader,
                status.followers
            ));
        }
    }
    states.join("; ")
}

/// The members according to the current leader (empty without one).
fn current_members(cluster: &mut Cluster) -> BTreeSet<u64> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in ids {
        if let Some(core) = cluster.core(id) {
            if core.leader_handle().is_ok() {
                let membership = core.membership();
                return membership
                    .voters
                    .iter()
                    .chain(membership.learners.iter())
                    .map(|id| id.0)
                    .collect();
            }
        }
    }
    BTreeSet::new()
}

/// Runs `act` on the current leader, if there is one.
fn on_leader(
    cluster: &mut Cluster,
    out: &mut Vec<String>,
    act: impl FnOnce(&mut consensus::raft::RaftCore),
) {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in ids {
        if let Some(core) = cluster.core(id) {
            if core.leader_handle().is_ok() {
                act(core);
                cluster.process(id, out);
                return;
            }
        }
    }
}

fn change_membership(
    cluster: &mut Cluster,
    rng: &mut ChaCha8Rng,
    nodes: u64,
    out: &mut Vec<String>,
) {
    let target = NodeId(rng.gen_range(1..=nodes));
    let change = match rng.gen_range(0..3) {
        0 => MembershipChange::AddLearner {
            node: target,
            address: String::new(),
        },
        1 => MembershipChange::PromoteLearner(target),
        _ => MembershipChange::RemoveNode(target),
    };
    // Refusals (change in progress, learner behind, last voter, ...) are
    // expected.
    on_leader(cluster, out, |core| {
        let _ = core.change_membership(change);
    });
}

fn transfer(cluster: &mut Cluster, rng: &mut ChaCha8Rng, nodes: u64, out: &mut Vec<String>) {
    let target = NodeId(rng.gen_range(1..=nodes));
    on_leader(cluster, out, |core| {
        let _ = core.transfer_leader(target);
    });
}

fn propose_on_leader(cluster: &mut Cluster, command: &str, out: &mut Vec<String>) {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in ids {
        if let Some(core) = cluster.core(id) {
            if core.propose(vec![command.as_bytes().to_vec()]).is_ok() {
                cluster.process(id, out);
                return;
            }
        }
    }
}

fn step(
    cluster: &mut Cluster,
    rng: &mut ChaCha8Rng,
    nodes: u64,
    proposals: &mut u64,
    out: &mut Vec<String>,
) {
    let id = rng.gen_range(1..=nodes);
    // Per mille: faults last long enough (a partition heals after ~300
    // steps on average) for elections to happen on both sides.
    match rng.gen_range(0..1000) {
        0..=399 | 950..=999 => {
            if let Some(core) = cluster.core(id) {
                core.tick();
            }
            cluster.process(id, out);
        }
        400..=699 => deliver_one(cluster, rng, out),
        700..=739 => {
            if !cluster.network.is_empty() {
                let at = rng.gen_range(0..cluster.network.len());
                cluster.network.remove(at);
            }
        }
        740..=759 => {
            if !cluster.network.is_empty() {
                let at = rng.gen_range(0..cluster.network.len());
                let copy = cluster.network[at].clone();
                cluster.network.push(copy);
            }
        }
        760..=859 => {
            *proposals += 1;
            let command = format!("c{proposals}");
            propose_on_leader(cluster, &command, out);
        }
        860..=874 => {
            if cluster.core(id).is_some() {
                cluster.crash(id);
            } else {
                cluster.restart(id, out);
            }
        }
        875..=879 => {
            let cut: BTreeSet<u64> = (1..=nodes).filter(|_| rng.gen_bool(0.4)).collect();
            let rest: BTreeSet<u64> = (1..=nodes).filter(|node| !cut.contains(node)).collect();
            cluster.partition = Some(vec![cut, rest]);
        }
        880..=882 => cluster.partition = None,
        883..=909 => take_snapshot(cluster, id),
        910..=919 => transfer(cluster, rng, nodes, out),
        920..=934 => change_membership(cluster, rng, nodes, out),
        _ => {
            if cluster.core(id).is_none() {
                cluster.restart(id, out);
            }
        }
    }
}

fn deliver_one(cluster: &mut Cluster, rng: &mut ChaCha8Rng, out: &mut Vec<String>) {
    if cluster.network.is_empty() {
        return;
    }
    let at = rng.gen_range(0..cluster.network.len());
    let message = cluster.network.remove(at);
    cluster.deliver(message, out);
}

fn take_snapshot(cluster: &mut Cluster, id: u64) {
    let Some(node) = cluster.nodes.get_mut(&id) else {
        return;
    };
    let Some(core) = node.core.as_mut() else {
        return;
    };
    let index = node.storage.applied_index;
    let Some(meta) = core.snapshot_meta(index) else {
        return;
    };
    let data = bytes::Bytes::from(node.storage.applied.join(",").into_bytes());
    if core.snapshot_taken(meta.clone(), data.clone()).is_ok() {
        node.storage.entries.retain(|entry| entry.index > index);
        node.storage.snapshot = Some(consensus::raft::Snapshot { meta, data });
    }
}
