//! The world a 2PC scenario runs in: coordinator drivers, the participants
//! (`participants.rs`), the messages in flight, and the log.

#[path = "participants.rs"]
mod participants;

use super::Command;
use consensus::raft::NodeId;
use consensus::twopc::participant::{self, Prepared, Resolution};
use consensus::twopc::{
    AckDriver, CoordinatorAction, CoordinatorDriver, CoordinatorInput, CoordinatorOptions,
    Decision, DecisionProposal, ParticipantOptions, TransactionReport, TwoPcReply, TwoPcRequest,
    Vote, VoteDriver, VotePolicy, VoteRequest,
};
use participants::Participant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Votes missing after this long count as aborts (acks: as long).
const VOTE_TIMEOUT: u64 = 100;

/// A transaction prepared this long ago without a decision is recovered;
/// a Decide waits as long for the decision to be applied.
const DECISION_TIMEOUT: u64 = 400;

/// How the participants wait.
const PARTICIPANT: ParticipantOptions = ParticipantOptions {
    vote_timeout_ms: VOTE_TIMEOUT,
    decision_timeout_ms: DECISION_TIMEOUT,
};

/// What a scenario's transactions lock: a name at a version (the protocol
/// knows nothing of owners).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    name: String,
    version: u64,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A message in flight.
enum Message {
    Request(TwoPcRequest<Item>),
    Reply { tx: String, reply: TwoPcReply },
}

struct Envelope {
    from: NodeId,
    to: NodeId,
    message: Message,
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: ", self.from, self.to)?;
        match &self.message {
            Message::Request(TwoPcRequest::Vote {
                request,
                read_index,
            }) => write!(
                f,
                "Vote {} {} read_index={read_index}",
                request.tx, request.resource
            ),
            Message::Request(TwoPcRequest::Decide { tx, decision }) => {
                write!(f, "Decide {tx} {decision}")
            }
            Message::Request(TwoPcRequest::Resolve { tx, .. }) => write!(f, "Resolve {tx}"),
            Message::Reply { tx, reply } => write!(f, "{} {tx}", reply_text(reply)),
        }
    }
}

fn reply_text(reply: &TwoPcReply) -> String {
    match reply {
        TwoPcReply::Voted(vote) => format!("Voted {}", vote_text(vote)),
        TwoPcReply::Acked { decision } => format!("Acked {decision}"),
        TwoPcReply::Resolved { decision } => format!("Resolved {decision}"),
        TwoPcReply::Failed(reason) => format!("Failed ({reason})"),
    }
}

fn vote_text(vote: &Vote) -> String {
    match vote {
        Vote::Commit => "commit".into(),
        Vote::Abort(reason) => format!("abort ({reason})"),
    }
}

/// One decision entry in the log.
struct Entry {
    proposal: DecisionProposal<Item>,
}

/// Everything a scenario acts on.
#[derive(Default)]
pub(super) struct World {
    now: u64,
    members: Vec<NodeId>,
    participants: BTreeMap<NodeId, Participant>,
    /// Transaction → its coordinator's node and driver.
    coordinators: BTreeMap<String, (NodeId, CoordinatorDriver<Item>)>,
    in_flight: Vec<Envelope>,
    proposed: Vec<DecisionProposal<Item>>,
    log: Vec<Entry>,
    crashed: BTreeSet<NodeId>,
}

impl World {
    /// Runs one command and returns its output lines.
    pub(super) fn run(&mut self, command: &Command) -> Vec<String> {
        let mut out = Vec::new();
        let id = NodeId(command.number(0));
        match command.name.as_str() {
            "members" => self.set_members(command),
            "put" => {
                let participant = self.participants.entry(id).or_default();
                for (name, version) in &command.options {
                    participant
                        .versions
                        .insert(name.clone(), version.parse().unwrap_or(0));
                }
            }
            "policy" => {
                let abort = command
                    .positional
                    .get(1)
                    .is_some_and(|word| word == "abort");
                let policy = if abort {
                    VotePolicy::Abort
                } else {
                    VotePolicy::Commit
                };
                self.participants.entry(id).or_default().policy = policy;
            }
            "start" => self.start(command, &mut out),
            "deliver" => self.deliver(command, &mut out),
            "commit" => self.commit(&mut out),
            "time" => self.advance(command.number(0), &mut out),
            "crash" => self.crash(id, &mut out),
            "restart" => {
                self.crashed.remove(&id);
                self.apply_log(&mut out);
            }
            "recover" => self.recover(id, &mut out),
            "state" => self.state(&mut out),
            other => out.push(format!("error: unknown command {other:?}")),
        }
        if out.is_empty() {
            out.push("ok".into());
        }
        out
    }

    fn set_members(&mut self, command: &Command) {
        self.members = (0..command.positional.len())
            .map(|at| NodeId(command.number(at)))
            .collect();
        for member in &self.members {
            let participant = self.participants.entry(*member).or_default();
            if participant.versions.is_empty() && participant.applied.is_empty() {
                participant.versions.insert("mail".into(), 1);
            }
        }
    }

    fn start(&mut self, command: &Command, out: &mut Vec<String>) {
        let tx = command.positional.first().cloned().unwrap_or_default();
        let coordinator = command
            .options
            .get("coordinator")
            .and_then(|id| id.parse().ok())
            .map_or(NodeId(1), NodeId);
        let Some((name, version)) = command
            .options
            .iter()
            .find(|(key, _)| *key != "coordinator")
        else {
            out.push("error: start needs NAME=VERSION".into());
            return;
        };
        let request = VoteRequest {
            tx: tx.clone(),
            resource: Item {
                name: name.clone(),
                version: version.parse().unwrap_or(0),
            },
        };
        let options = CoordinatorOptions {
            vote_timeout_ms: VOTE_TIMEOUT,
            proposal_retry: None,
        };
        let (driver, actions) =
            CoordinatorDriver::start(request, 0, self.members.clone(), self.now, options);
        self.coordinators.insert(tx.clone(), (coordinator, driver));
        self.carry(&tx, actions, out);
    }

    /// Feeds `input` to `tx`'s coordinator, if it is alive, and carries out
    /// what it asks.
    fn step(&mut self, tx: &str, input: CoordinatorInput, out: &mut Vec<String>) {
        let now = self.now;
        let Some((_, driver)) = self.coordinators.get_mut(tx) else {
            return;
        };
        let actions = driver.step(input, now);
        self.carry(tx, actions, out);
    }

    fn carry(&mut self, tx: &str, actions: Vec<CoordinatorAction<Item>>, out: &mut Vec<String>) {
        let Some(node) = self.coordinators.get(tx).map(|(node, _)| *node) else {
            return;
        };
        let mut pending = VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            match action {
                CoordinatorAction::Send { to, message } => {
                    let envelope = Envelope {
                        from: node,
                        to,
                        message: Message::Request(message),
                    };
                    out.push(format!("send {envelope}"));
                    self.in_flight.push(envelope);
                }
                CoordinatorAction::ReadMembership => {
                    let members: Vec<String> =
                        self.members.iter().map(ToString::to_string).collect();
                    out.push(format!(
                        "{node} reads the membership: [{}]",
                        members.join(" ")
                    ));
                    let input = CoordinatorInput::Members(self.members.clone());
                    if let Some((_, driver)) = self.coordinators.get_mut(tx) {
                        pending.extend(driver.step(input, self.now));
                    }
                }
                CoordinatorAction::Propose(proposal) => {
                    let changed = if proposal.membership_changed {
                        " (the membership changed)"
                    } else {
                        ""
                    };
                    out.push(format!(
                        "{node} proposes {} {}{changed}",
                        proposal.tx, proposal.decision
                    ));
                    self.proposed.push(proposal);
                }
                CoordinatorAction::ArmDeadline { at_ms } => {
                    out.push(format!("{node} arms {tx} deadline at {at_ms}"));
                }
                CoordinatorAction::GaveUp => out.push(format!("{node} gives up on {tx}")),
                CoordinatorAction::Finished(report) => {
                    out.push(format!("{node} tells the client: {}", report_text(&report)));
                    self.coordinators.remove(tx);
                }
            }
        }
    }

    fn deliver(&mut self, command: &Command, out: &mut Vec<String>) {
        let dropped: BTreeSet<NodeId> = command
            .options
            .get("drop")
            .map(|text| {
                text.trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .filter_map(|id| id.trim().parse().ok())
                    .map(NodeId)
                    .collect()
            })
            .unwrap_or_default();
        for envelope in std::mem::take(&mut self.in_flight) {
            let lost = [envelope.from, envelope.to]
                .iter()
                .any(|node| dropped.contains(node) || self.crashed.contains(node));
            if lost {
                out.push(format!("drop {envelope}"));
                continue;
            }
            self.receive(envelope, out);
        }
    }

    fn receive(&mut self, envelope: Envelope, out: &mut Vec<String>) {
        let Envelope { from, to, message } = envelope;
        let now = self.now;
        match message {
            Message::Request(TwoPcRequest::Vote {
                request,
                read_index,
            }) => {
                let Some(participant) = self.participants.get(&to) else {
                    return;
                };
                let applied = participant.applied_through as u64;
                let (driver, action) =
                    VoteDriver::start(from, request, read_index, applied, now, PARTICIPANT);
                self.carry_vote(to, driver, action, out);
            }
            Message::Request(TwoPcRequest::Decide { tx, .. }) => {
                let driver = AckDriver::start(to, tx, now, PARTICIPANT);
                self.answer_decide(to, from, driver, true, out)
            }
            Message::Request(TwoPcRequest::Resolve { tx, .. }) => {
                out.push(format!("{to} ignores Resolve {tx}"));
            }
            Message::Reply { tx, reply } => {
                let input = match reply {
                    TwoPcReply::Acked { .. } => CoordinatorInput::Acked { from },
                    other => CoordinatorInput::Voted {
                        from,
                        vote: other.into_vote(),
                    },
                };
                if self.coordinators.contains_key(&tx) {
                    self.step(&tx, input, out);
                } else {
                    out.push(format!("{to} has no coordinator for {tx}"));
                }
            }
        }
    }

    fn reply(&mut self, from: NodeId, to: NodeId, tx: String, reply: TwoPcReply) {
        let message = Message::Reply { tx, reply };
        self.in_flight.push(Envelope { from, to, message });
    }

    fn commit(&mut self, out: &mut Vec<String>) {
        for proposal in std::mem::take(&mut self.proposed) {
            self.append(proposal, out);
        }
        self.apply_log(out);
        let deciding: Vec<(String, Decision)> = self
            .coordinators
            .keys()
            .filter_map(|tx| self.logged(tx).map(|decision| (tx.clone(), decision)))
            .collect();
        for (tx, decision) in deciding {
            self.step(&tx, CoordinatorInput::DecisionLogged(decision), out);
        }
    }

    /// Appends a decision entry; the first for a transaction wins.
    fn append(&mut self, proposal: DecisionProposal<Item>, out: &mut Vec<String>) {
        match self.logged(&proposal.tx) {
            Some(first) => out.push(format!(
                "log: {} {} (the log already holds {first})",
                proposal.tx, proposal.decision
            )),
            None => out.push(format!("log: {} {}", proposal.tx, proposal.decision)),
        }
        self.log.push(Entry { proposal });
    }

    /// The decision the log holds first for `tx`.
    fn logged(&self, tx: &str) -> Option<Decision> {
        self.log
            .iter()
            .find(|entry| entry.proposal.tx == tx)
            .map(|entry| entry.proposal.decision)
    }

    /// Every live participant applies the entries it has not applied: the
    /// first decision per transaction; a commit deletes only at the voted
    /// version and only if its participants are the membership in force.
    fn apply_log(&mut self, out: &mut Vec<String>) {
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            if self.crashed.contains(&id) {
                continue;
            }
            let Some(participant) = self.participants.get_mut(&id) else {
                continue;
            };
            for entry in &self.log[participant.applied_through..] {
                let proposal = &entry.proposal;
                if participant.applied.contains_key(&proposal.tx) {
                    continue;
                }
                let mut decision = proposal.decision;
                if decision == Decision::Commit && proposal.participants != self.members {
                    out.push(format!(
                        "{id} applies {} as an abort: its participants are not the members",
                        proposal.tx
                    ));
                    decision = Decision::Abort;
                }
                participant.applied.insert(proposal.tx.clone(), decision);
                let item = &proposal.resource;
                if participant.prepared.remove(&proposal.tx).is_some() {
                    participant.locks.remove(&item.name);
                }
                let holds = participant.versions.get(&item.name) == Some(&item.version);
                if decision == Decision::Commit && holds {
                    participant.versions.remove(&item.name);
                }
            }
            participant.applied_through = self.log.len();
            let waiting = std::mem::take(&mut participant.waiting_decides);
            for (coordinator, driver) in waiting {
                self.answer_decide(id, coordinator, driver, true, out);
            }
        }
        self.wake_votes(out);
    }

    fn advance(&mut self, now: u64, out: &mut Vec<String>) {
        self.now = now;
        let due: Vec<String> = self
            .coordinators
            .iter()
            .filter(|(_, (_, driver))| driver.deadline_ms().is_some_and(|at| at <= now))
            .map(|(tx, _)| tx.clone())
            .collect();
        for tx in due {
            self.step(&tx, CoordinatorInput::Tick, out);
        }
        self.wake_votes(out);
        self.time_out_decides(out);
    }

    fn crash(&mut self, id: NodeId, out: &mut Vec<String>) {
        self.crashed.insert(id);
        self.in_flight
            .retain(|envelope| envelope.from != id && envelope.to != id);
        let lost: Vec<String> = self
            .coordinators
            .iter()
            .filter(|(_, (node, _))| *node == id)
            .map(|(tx, _)| tx.clone())
            .collect();
        for tx in lost {
            out.push(format!("{id} loses the coordinator of {tx}"));
            self.coordinators.remove(&tx);
        }
        if let Some(participant) = self.participants.get_mut(&id) {
            participant.waiting_decides.clear();
            participant.waiting_votes.clear();
        }
    }

    /// Recovery: the overdue prepared transactions of `id` are resolved
    /// through the log (the leader's answer).
    fn recover(&mut self, id: NodeId, out: &mut Vec<String>) {
        let Some(participant) = self.participants.get(&id) else {
            return;
        };
        let prepared: Vec<Prepared> = participant
            .prepared
            .iter()
            .map(|(tx, (_, at))| Prepared {
                tx: tx.clone(),
                prepared_at_ms: *at,
            })
            .collect();
        let due: Vec<String> = participant::overdue(&prepared, self.now, DECISION_TIMEOUT)
            .into_iter()
            .map(str::to_string)
            .collect();
        if due.is_empty() {
            out.push(format!("{id} has nothing overdue"));
        }
        for tx in due {
            match participant::resolve(self.logged(&tx)) {
                Resolution::Decided(decision) => {
                    out.push(format!("{tx}: the log holds {decision}"))
                }
                Resolution::ProposeAbort => {
                    out.push(format!(
                        "{tx}: no decision; the leader proposes GLOBAL_ABORT"
                    ));
                    let Some((item, _)) = self
                        .participants
                        .get(&id)
                        .and_then(|participant| participant.prepared.get(&tx).cloned())
                    else {
                        continue;
                    };
                    let proposal = DecisionProposal {
                        tx,
                        resource: item,
                        decision: Decision::Abort,
                        participants: Vec::new(),
                        membership_changed: false,
                    };
                    self.append(proposal, out);
                }
            }
        }
        self.apply_log(out);
    }

    fn state(&self, out: &mut Vec<String>) {
        for (id, participant) in &self.participants {
            let items: Vec<String> = participant
                .versions
                .iter()
                .map(|(name, version)| format!("{name}@{version}"))
                .collect();
            let locks: Vec<String> = participant
                .locks
                .iter()
                .map(|(name, tx)| format!("{name}:{tx}"))
                .collect();
            let applied: Vec<String> = participant
                .applied
                .iter()
                .map(|(tx, decision)| format!("{tx}:{decision}"))
                .collect();
            let crashed = if self.crashed.contains(id) {
                " (crashed)"
            } else {
                ""
            };
            out.push(format!(
                "{id}{crashed}: items=[{}] locks=[{}] applied=[{}]",
                items.join(" "),
                locks.join(" "),
                applied.join(" ")
            ));
        }
    }
}

fn report_text(report: &TransactionReport) -> String {
    let votes: Vec<String> = report
        .votes
        .iter()
        .map(|(node, vote)| format!("{node}:{}", vote_text(vote)))
        .collect();
    let acked: Vec<String> = report.acked.iter().map(ToString::to_string).collect();
    format!(
        "{} {} votes=[{}] acked=[{}]",
        report.tx,
        report.decision,
        votes.join(" "),
        acked.join(" ")
    )
}
