//! Simulated clients of the key-value register. Each client runs one
//! operation at a time, proposes it to the node it believes leads, follows
//! "not leader" hints, retries after a timeout with the same (client,
//! sequence) pair so the state machine's dedup makes the retry harmless, and
//! gives up after a few attempts. Every operation goes into the history.
//!
//! Puts and cas always go through the log; gets go through the log or
//! through ReadIndex, chosen at random, so both read paths are checked.
//!
//! A proposal is answered the way the runtime answers one: through the
//! node's [`Waiters`] table, bound to the `(index, term)` the leader gave
//! the entry, so the simulation checks the runtime's rule.

use super::application::{Application, PlannedCrash, World};
use super::history::{History, OperationId};
use super::invariants::Violation;
use super::node::{AppliedCommand, Effects, SimNode};
use super::register::{ClientCommand, KvStateMachine, RegisterOp, RegisterOutput};
use consensus::node::waiters::{Resolution, Waiters};
use consensus::raft::{LogIndex, NodeId, ProposeError, RaftCore, RequestId, Term};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Registers the clients use; few, so that operations contend.
const KEYS: u64 = 3;
/// Steps a client waits for an answer before retrying elsewhere.
const ATTEMPT_TIMEOUT: u64 = 120;
/// Attempts before a client gives up on an operation.
const MAX_ATTEMPTS: u32 = 5;

/// The operation a client is waiting on.
#[derive(Debug)]
struct InFlight {
    operation: OperationId,
    command: ClientCommand,
    /// Set for a get served by ReadIndex: the current request.
    read_request: Option<RequestId>,
    /// Nodes that accepted an attempt and would answer.
    waiting_at: BTreeSet<NodeId>,
    deadline: u64,
    attempts: u32,
    /// Some attempt reached a log: the outcome can no longer be "failed".
    maybe_applied: bool,
}

#[derive(Debug)]
struct Client {
    id: u64,
    sequence: u64,
    in_flight: Option<InFlight>,
    next_action: u64,
    leader_hint: Option<NodeId>,
}

/// All clients and the history they write.
pub(crate) struct Workload {
    clients: Vec<Client>,
    pub(crate) history: History,
    /// ReadIndex request -> client position.
    reads: BTreeMap<RequestId, usize>,
    next_request: RequestId,
    /// Operations invoked from this one on count for the liveness check.
    liveness_floor: OperationId,
    /// Operations invoked after the cluster was healed and then answered.
    pub(crate) answered_since_heal: u64,
    /// Per node, the proposals waiting for their entry: (client position,
    /// sequence). Volatile, like the runtime's: a crash empties it.
    waiters: BTreeMap<NodeId, Waiters<(usize, u64)>>,
    /// Planted bug: waiters resolved by index alone.
    pub(crate) answer_by_index_only: bool,
    /// A proposal answered with the output of an entry that is not its
    /// own, found while answering; reported at the next step.
    misanswered: Option<Violation>,
}

impl Workload {
    /// `count` idle clients.
    pub(crate) fn new(count: u64) -> Self {
        let clients = (1..=count)
            .map(|id| Client {
                id,
                sequence: 0,
                in_flight: None,
                next_action: 0,
                leader_hint: None,
            })
            .collect();
        Self {
            clients,
            history: History::default(),
            reads: BTreeMap::new(),
            next_request: 1,
            liveness_floor: OperationId::MAX,
            answered_since_heal: 0,
            waiters: BTreeMap::new(),
            answer_by_index_only: false,
            misanswered: None,
        }
    }

    /// From now on, count answered operations for the liveness check.
    pub(crate) fn start_liveness(&mut self) {
        self.liveness_floor = self.history.len();
        self.answered_since_heal = 0;
    }

    /// Lets every client whose turn it is act: start an operation, retry a
    /// timed-out one, or give up.
    pub(crate) fn step(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        nodes: &mut BTreeMap<NodeId, SimNode>,
    ) {
        for position in 0..self.clients.len() {
            let client = &mut self.clients[position];
            match &client.in_flight {
                None if now >= client.next_action => self.invoke(rng, position, now, nodes),
                Some(in_flight) if now >= in_flight.deadline => {
                    if in_flight.attempts >= MAX_ATTEMPTS {
                        self.give_up(rng, position, now);
                    } else {
                        self.clients[position].leader_hint = None;
                        self.attempt(rng, position, now, nodes);
                    }
                }
                _ => {}
            }
        }
    }

    fn invoke(
        &mut self,
        rng: &mut ChaCha8Rng,
        position: usize,
        now: u64,
        nodes: &mut BTreeMap<NodeId, SimNode>,
    ) {
        let key = rng.gen_range(0..KEYS);
        let op = match rng.gen_range(0..10) {
            0..=3 => RegisterOp::Put(rng.gen_range(1..100)),
            4..=6 => RegisterOp::Get,
            _ => RegisterOp::Cas {
                expected: rng.gen_range(0..100),
                new: rng.gen_range(1..100),
            },
        };
        let client = &mut self.clients[position];
        client.sequence += 1;
        let command = ClientCommand {
            client: client.id,
            sequence: client.sequence,
            key,
            op,
        };
        let operation = self.history.invoke(client.id, key, op);
        client.in_flight = Some(InFlight {
            operation,
            command,
            read_request: None,
            waiting_at: BTreeSet::new(),
            deadline: now,
            attempts: 0,
            maybe_applied: false,
        });
        self.attempt(rng, position, now, nodes);
    }

    /// Sends the in-flight operation to a node; a refusal with a leader hint
    /// is followed at once (bounded by the attempt budget).
    fn attempt(
        &mut self,
        rng: &mut ChaCha8Rng,
        position: usize,
        now: u64,
        nodes: &mut BTreeMap<NodeId, SimNode>,
    ) {
        let use_read_index = rng.gen_bool(0.5);
        loop {
            let client = &mut self.clients[position];
            let Some(in_flight) = client.in_flight.as_mut() else {
                return;
            };
            if in_flight.attempts >= MAX_ATTEMPTS {
                in_flight.deadline = now;
                return;
            }
            in_flight.attempts += 1;
            in_flight.deadline = now + ATTEMPT_TIMEOUT;
            let up: Vec<NodeId> = nodes
                .iter()
                .filter(|(_, n)| n.is_up())
                .map(|(id, _)| *id)
                .collect();
            let target = match client.leader_hint.filter(|hint| up.contains(hint)) {
                Some(hint) => hint,
                None if up.is_empty() => return,
                None => up[rng.gen_range(0..up.len())],
            };
            let Some(core) = nodes.get_mut(&target).and_then(|node| node.core.as_mut()) else {
                return;
            };
            let read = (in_flight.command.op == RegisterOp::Get && use_read_index).then(|| {
                self.next_request += 1;
                self.next_request
            });
            let refusal = match submit(in_flight, core, read) {
                Submitted::Read => {
                    if let Some(request) = read {
                        self.reads.insert(request, position);
                    }
                    None
                }
                Submitted::Proposed { index, term } => {
                    let sequence = in_flight.command.sequence;
                    let waiters = self.waiters.entry(target).or_default();
                    waiters.planted_index_only = self.answer_by_index_only;
                    let clients = &mut self.clients;
                    waiters.register(index, term, (position, sequence), |displaced, _| {
                        supersede(clients, target, displaced, now);
                    });
                    None
                }
                Submitted::Refused(hint) => Some(hint),
            };
            let client = &mut self.clients[position];
            let Some(in_flight) = client.in_flight.as_mut() else {
                return;
            };
            match refusal {
                None => {
                    in_flight.waiting_at.insert(target);
                    client.leader_hint = Some(target);
                    return;
                }
                Some(hint) if hint.is_some() && hint != Some(target) => client.leader_hint = hint,
                // No better idea: wait for the timeout, then try elsewhere.
                Some(_) => return,
            }
        }
    }

    fn give_up(&mut self, rng: &mut ChaCha8Rng, position: usize, now: u64) {
        let client = &mut self.clients[position];
        if let Some(in_flight) = client.in_flight.take() {
            if in_flight.maybe_applied {
                self.history.give_up(in_flight.operation);
            } else {
                self.history.fail(in_flight.operation);
            }
        }
        client.leader_hint = None;
        client.next_action = now + rng.gen_range(1..20);
    }

    fn finish(&mut self, rng: &mut ChaCha8Rng, position: usize, now: u64, output: RegisterOutput) {
        let client = &mut self.clients[position];
        if let Some(in_flight) = client.in_flight.take() {
            self.history.complete(in_flight.operation, output);
            if in_flight.operation >= self.liveness_floor {
                self.answered_since_heal += 1;
            }
        }
        client.next_action = now + rng.gen_range(0..10);
    }

    /// A node applied a command: answer the proposal waiting for exactly
    /// that entry at that node, if any, with the entry's output (and tell
    /// the ones it supersedes to retry). Returns whether a client was
    /// answered (an acknowledgement the invariants check).
    pub(crate) fn on_applied(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        applied: &AppliedCommand<KvStateMachine>,
    ) -> bool {
        let node = applied.node;
        let Some(waiters) = self.waiters.get_mut(&node) else {
            return false;
        };
        let mut answered = None;
        let clients = &mut self.clients;
        waiters.applied(
            applied.index,
            applied.term,
            |waiter, resolution| match resolution {
                Resolution::Applied => answered = Some(waiter),
                Resolution::Superseded => supersede(clients, node, waiter, now),
            },
        );
        let Some((position, sequence)) = answered else {
            return false;
        };
        let own = self.clients.get(position).is_some_and(|client| {
            client.id == applied.command.client && sequence == applied.command.sequence
        });
        if !own && self.misanswered.is_none() {
            self.misanswered = Some(Violation {
                invariant: "answer bound to its entry",
                section: "§8",
                detail: format!(
                    "{node} answered the proposal of client position {position} (sequence \
                     {sequence}) with the output of {:?} at index {} term {}",
                    applied.command, applied.index, applied.term
                ),
            });
        }
        let waiting = self.clients[position]
            .in_flight
            .as_ref()
            .is_some_and(|in_flight| {
                in_flight.command.sequence == sequence
                    && in_flight.read_request.is_none()
                    && in_flight.waiting_at.contains(&node)
            });
        if waiting {
            self.finish(rng, position, now, applied.output);
        }
        waiting
    }

    /// `node` may now serve ReadIndex request `request`: answer with the
    /// value its state machine holds.
    pub(crate) fn on_read_served(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        node: &SimNode,
        request: RequestId,
    ) {
        let Some(position) = self.reads.remove(&request) else {
            return;
        };
        let current = self.clients[position].in_flight.as_ref();
        let Some(key) = current
            .filter(|f| f.read_request == Some(request))
            .map(|f| f.command.key)
        else {
            return;
        };
        let value = node.machine.value(key);
        self.finish(rng, position, now, RegisterOutput::Value(value));
    }

    /// `request` will never be served: retry at once.
    pub(crate) fn on_read_aborted(&mut self, request: RequestId, now: u64) {
        if let Some(position) = self.reads.remove(&request) {
            if let Some(in_flight) = self.clients[position].in_flight.as_mut() {
                in_flight.deadline = now;
                in_flight.read_request = None;
            }
        }
    }

    /// A node crashed: nobody will hear from it about pending requests.
    pub(crate) fn on_crash(&mut self, node: NodeId) {
        self.waiters.remove(&node);
        for client in &mut self.clients {
            if let Some(in_flight) = client.in_flight.as_mut() {
                in_flight.waiting_at.remove(&node);
            }
        }
    }
}

/// What became of an attempt.
enum Submitted {
    /// Accepted as a ReadIndex request.
    Read,
    /// Appended to the leader's log as the entry at `(index, term)`.
    Proposed { index: LogIndex, term: Term },
    /// Refused, with the leader hint.
    Refused(Option<NodeId>),
}

/// Hands the in-flight operation to `core`: as ReadIndex request `read`, or
/// proposed to the log.
fn submit(in_flight: &mut InFlight, core: &mut RaftCore, read: Option<RequestId>) -> Submitted {
    in_flight.read_request = read;
    if let Some(request) = read {
        return match core.read_index(request) {
            Ok(()) => Submitted::Read,
            Err(not_leader) => Submitted::Refused(not_leader.leader),
        };
    }
    let term = core.term();
    match core.propose(vec![in_flight.command.encode()]) {
        Ok(indices) => {
            in_flight.maybe_applied = true;
            Submitted::Proposed {
                index: *indices.start(),
                term,
            }
        }
        Err(ProposeError::NotLeader(not_leader)) => Submitted::Refused(not_leader.leader),
        Err(_) => Submitted::Refused(None),
    }
}

/// The proposal `waiter` made at `node` can no longer be answered there:
/// like a real client told "superseded", its client retries now.
fn supersede(clients: &mut [Client], node: NodeId, waiter: (usize, u64), now: u64) {
    let (position, sequence) = waiter;
    let Some(in_flight) = clients
        .get_mut(position)
        .and_then(|client| client.in_flight.as_mut())
    else {
        return;
    };
    if in_flight.command.sequence == sequence && in_flight.waiting_at.remove(&node) {
        in_flight.deadline = in_flight.deadline.min(now);
    }
}

/// The register clients as the application of the Raft simulation.
impl Application for Workload {
    type Machine = KvStateMachine;

    fn act(
        &mut self,
        world: World<'_, KvStateMachine>,
        _effects: &Effects<KvStateMachine>,
    ) -> Result<Vec<PlannedCrash>, Violation> {
        if let Some(violation) = self.misanswered.take() {
            return Err(violation);
        }
        let invoked_before = self.history.len();
        self.step(world.rng, world.now, world.nodes);
        for operation in self.history.since(invoked_before) {
            let (client, op, key) = (operation.client, operation.op, operation.key);
            world.trace.line(
                world.now,
                format_args!("Client {client} invokes {op:?} on key {key}"),
            );
        }
        Ok(Vec::new())
    }

    fn on_applied(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        applied: &AppliedCommand<KvStateMachine>,
    ) -> bool {
        Workload::on_applied(self, rng, now, applied)
    }

    fn on_read_served(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        node: &SimNode,
        request: RequestId,
    ) {
        Workload::on_read_served(self, rng, now, node, request);
    }

    fn on_read_aborted(&mut self, request: RequestId, now: u64) {
        Workload::on_read_aborted(self, request, now);
    }

    fn on_crash(&mut self, node: NodeId) {
        Workload::on_crash(self, node);
    }
}
