//! The workload of the 2PC simulation: clients that add and update secrets
//! and clients that delete them, over a few names so that operations
//! contend (two coordinators deleting one secret at once, an update racing a
//! delete), plus the liveness probe run after healing.
//!
//! - An add client proposes `Add` with (client, sequence) to the node it
//!   believes leads, follows "not leader" hints, retries with the same
//!   sequence after a timeout and gives up after a few attempts. A leader
//!   refuses an update of a secret it holds locked (as the vault's
//!   `refuse_locked_update` does).
//! - A delete client asks a random running node to delete a name: that node
//!   reads the version from its applied state (a stale version makes
//!   participants refuse, which is an abort) and coordinates the
//!   transaction. The client waits for the report or the coordinator's
//!   crash.

use super::app::TwoPcApp;
use super::machine::VaultCommand;
use super::machine::VaultModel;
use crate::application::World;
use crate::invariants::Violation;
use consensus::raft::{NodeId, ProposeError, Role};
use consensus::twopc::Decision;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The names clients use; few, so that operations contend.
const NAMES: [&str; 4] = ["k0", "k1", "k2", "k3"];
/// The name the liveness probe adds and deletes.
const PROBE_NAME: &str = "fresh";
/// Steps an add client waits for an answer before retrying.
const ATTEMPT_TIMEOUT: u64 = 150;
/// Attempts before an add client gives up.
const MAX_ATTEMPTS: u32 = 4;
/// Steps between two tries of the liveness probe.
const PROBE_RETRY: u64 = 150;

#[derive(Debug)]
struct AddInFlight {
    command: VaultCommand,
    sequence: u64,
    waiting_at: Option<NodeId>,
    deadline: u64,
    attempts: u32,
}

#[derive(Debug)]
struct AddClient {
    id: u64,
    sequence: u64,
    in_flight: Option<AddInFlight>,
    next_action: u64,
    leader_hint: Option<NodeId>,
}

#[derive(Debug)]
struct DeleteClient {
    /// The transaction and its coordinator.
    in_flight: Option<(String, NodeId)>,
    next_action: u64,
}

/// After healing: add a fresh secret, then delete it; some delete must
/// commit.
#[derive(Debug)]
pub(crate) struct Probe {
    tx: Option<String>,
    next_try: u64,
    /// Set once a probe delete committed.
    pub(crate) committed: bool,
}

/// Every client of a run.
#[derive(Debug)]
pub(crate) struct Clients {
    adds: Vec<AddClient>,
    deletes: Vec<DeleteClient>,
    /// Clients start operations only while set (the faulty phase).
    pub(crate) active: bool,
    /// The liveness probe, once started.
    pub(crate) probe: Option<Probe>,
}

impl Clients {
    /// 1 to 3 add clients and 2 or 3 delete clients.
    pub(crate) fn new(rng: &mut ChaCha8Rng) -> Self {
        let adds = (1..=rng.gen_range(1..=3))
            .map(|id| AddClient {
                id,
                sequence: 0,
                in_flight: None,
                next_action: 0,
                leader_hint: None,
            })
            .collect();
        let deletes = (0..rng.gen_range(2..=3))
            .map(|_| DeleteClient {
                in_flight: None,
                next_action: rng.gen_range(20..100),
            })
            .collect();
        Self {
            adds,
            deletes,
            active: true,
            probe: None,
        }
    }

    /// Starts the liveness probe.
    pub(crate) fn start_probe(&mut self, now: u64) {
        self.probe = Some(Probe {
            tx: None,
            next_try: now,
            committed: false,
        });
    }

    /// `node` applied `command`: answers the add client waiting for it there.
    pub(crate) fn on_applied(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        node: NodeId,
        command: &VaultCommand,
    ) -> bool {
        let VaultCommand::Add {
            client, sequence, ..
        } = command
        else {
            return false;
        };
        let Some(add) = self.adds.iter_mut().find(|add| add.id == *client) else {
            return false;
        };
        let waiting = add.in_flight.as_ref().is_some_and(|in_flight| {
            in_flight.sequence == *sequence && in_flight.waiting_at == Some(node)
        });
        if waiting {
            add.in_flight = None;
            add.next_action = now + rng.gen_range(0..20);
        }
        waiting
    }

    /// The coordinator of `tx` finished: its client may go on.
    pub(crate) fn on_finished(&mut self, tx: &str) {
        for delete in &mut self.deletes {
            if delete.in_flight.as_ref().is_some_and(|(id, _)| id == tx) {
                delete.in_flight = None;
            }
        }
    }

    /// `node` crashed with the coordinators on it: their clients never
    /// hear back.
    pub(crate) fn coordinator_lost(&mut self, node: NodeId) {
        for delete in &mut self.deletes {
            if delete.in_flight.as_ref().is_some_and(|(_, at)| *at == node) {
                delete.in_flight = None;
            }
        }
    }

    /// `node` crashed: adds waiting there will time out and retry.
    pub(crate) fn node_lost(&mut self, node: NodeId) {
        for add in &mut self.adds {
            if let Some(in_flight) = add.in_flight.as_mut() {
                if in_flight.waiting_at == Some(node) {
                    in_flight.waiting_at = None;
                }
            }
        }
    }
}

impl TwoPcApp {
    /// The clients' turn in a step.
    pub(crate) fn clients_act(
        &mut self,
        world: &mut World<'_, VaultModel>,
    ) -> Result<(), Violation> {
        if self.clients.probe.is_some() {
            self.probe_act(world)?;
        }
        if !self.clients.active {
            return Ok(());
        }
        for position in 0..self.clients.adds.len() {
            self.add_act(world, position);
        }
        for position in 0..self.clients.deletes.len() {
            self.delete_act(world, position)?;
        }
        Ok(())
    }

    fn alive_nodes(&self, world: &World<'_, VaultModel>) -> Vec<NodeId> {
        let ids = world.nodes.keys().copied();
        ids.filter(|id| self.is_alive(world, *id)).collect()
    }

    fn add_act(&mut self, world: &mut World<'_, VaultModel>, position: usize) {
        let now = world.now;
        let client = &mut self.clients.adds[position];
        match &client.in_flight {
            None if now >= client.next_action => {
                client.sequence += 1;
                let name = NAMES[world.rng.gen_range(0..NAMES.len())].to_string();
                let command = VaultCommand::Add {
                    client: client.id,
                    sequence: client.sequence,
                    name,
                    update: world.rng.gen_bool(0.5),
                };
                client.in_flight = Some(AddInFlight {
                    command,
                    sequence: client.sequence,
                    waiting_at: None,
                    deadline: now,
                    attempts: 0,
                });
                self.add_attempt(world, position);
            }
            Some(in_flight) if now >= in_flight.deadline => {
                if in_flight.attempts >= MAX_ATTEMPTS {
                    client.in_flight = None;
                    client.next_action = now + world.rng.gen_range(1..20);
                } else {
                    client.leader_hint = None;
                    self.add_attempt(world, position);
                }
            }
            _ => {}
        }
    }

    /// Sends the add to a node, following leader hints (bounded).
    fn add_attempt(&mut self, world: &mut World<'_, VaultModel>, position: usize) {
        let alive = self.alive_nodes(world);
        loop {
            let client = &mut self.clients.adds[position];
            let Some(in_flight) = client.in_flight.as_mut() else {
                return;
            };
            if in_flight.attempts >= MAX_ATTEMPTS || alive.is_empty() {
                return;
            }
            in_flight.attempts += 1;
            in_flight.deadline = world.now + ATTEMPT_TIMEOUT;
            let target = match client.leader_hint.filter(|hint| alive.contains(hint)) {
                Some(hint) => hint,
                None => alive[world.rng.gen_range(0..alive.len())],
            };
            let VaultCommand::Add { name, update, .. } = &in_flight.command else {
                return;
            };
            let locked = self
                .participants
                .get(&target)
                .and_then(|p| p.table.lock_holder(name, ""));
            let Some(core) = world.nodes.get_mut(&target).and_then(|n| n.core.as_mut()) else {
                return;
            };
            if let (true, true, Some(holder)) = (*update, core.role() == Role::Leader, locked) {
                world.trace.line(
                    world.now,
                    format_args!("Node {target} refuses to update {name}: locked by tx {holder}"),
                );
                client.in_flight = None;
                client.next_action = world.now + 10;
                return;
            }
            match core.propose(vec![in_flight.command.encode()]) {
                Ok(_) => {
                    in_flight.waiting_at = Some(target);
                    client.leader_hint = Some(target);
                    return;
                }
                Err(ProposeError::NotLeader(not_leader))
                    if not_leader.leader.is_some_and(|hint| hint != target) =>
                {
                    client.leader_hint = not_leader.leader;
                }
                Err(_) => return,
            }
        }
    }

    fn delete_act(
        &mut self,
        world: &mut World<'_, VaultModel>,
        position: usize,
    ) -> Result<(), Violation> {
        let client = &self.clients.deletes[position];
        if client.in_flight.is_some() || world.now < client.next_action {
            return Ok(());
        }
        let alive = self.alive_nodes(world);
        if alive.is_empty() {
            return Ok(());
        }
        let coordinator = alive[world.rng.gen_range(0..alive.len())];
        let name = NAMES[world.rng.gen_range(0..NAMES.len())];
        let pause = world.rng.gen_range(5..40);
        self.clients.deletes[position].next_action = world.now + pause;
        let version = world
            .nodes
            .get(&coordinator)
            .and_then(|node| node.machine.version(name));
        let Some(version) = version else {
            world.trace.line(
                world.now,
                format_args!("Node {coordinator} answers a delete of {name}: not found"),
            );
            return Ok(());
        };
        let tx = self.start_transaction(world, coordinator, name, version)?;
        self.clients.deletes[position].in_flight = tx.map(|tx| (tx, coordinator));
        Ok(())
    }

    /// The liveness probe: add the fresh secret through the leader, then
    /// delete it with the leader as coordinator, again after each abort.
    fn probe_act(&mut self, world: &mut World<'_, VaultModel>) -> Result<(), Violation> {
        let Some(probe) = self.clients.probe.as_mut() else {
            return Ok(());
        };
        if probe.committed {
            return Ok(());
        }
        if let Some(tx) = &probe.tx {
            match self.oracle.logged(tx) {
                Some(Decision::Commit) => probe.committed = true,
                Some(Decision::Abort) => probe.tx = None,
                None => {}
            }
            return Ok(());
        }
        if world.now < probe.next_try {
            return Ok(());
        }
        probe.next_try = world.now + PROBE_RETRY;
        let leader = world.nodes.iter().find(|(_, node)| {
            node.core
                .as_ref()
                .is_some_and(|core| core.role() == Role::Leader)
        });
        let Some((&leader, node)) = leader else {
            return Ok(());
        };
        match node.machine.version(PROBE_NAME) {
            Some(version) => {
                let tx = self.start_transaction(world, leader, PROBE_NAME, version)?;
                if let Some(probe) = self.clients.probe.as_mut() {
                    probe.tx = tx;
                }
            }
            None => {
                let add = VaultCommand::Add {
                    client: 0,
                    sequence: 1,
                    name: PROBE_NAME.into(),
                    update: false,
                };
                self.propose(world, leader, &add);
            }
        }
        Ok(())
    }
}
