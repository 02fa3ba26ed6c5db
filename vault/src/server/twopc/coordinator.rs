//! The coordinator's runtime: carries out what the sans-IO
//! [`CoordinatorDriver`] asks for with real time, the network and the Raft
//! log. The protocol, the membership-change guard and the deadlines are the
//! driver's (the simulation runs the same one); this file only does I/O.

use super::{millis, wall_clock_ms, TwoPc};
use crate::protocol::{
    decision_command, decode, encode, ClientSession, Decision, Reply, Response, SecretVersion,
    VaultError, VaultQuery, Vote,
};
use crate::server::wire::{TwoPcReply, TwoPcRequest, WireRequest, WireResponse};
use consensus::node::ReadConsistency;
use consensus::raft::NodeId;
use consensus::twopc::{
    CoordinatorAction, CoordinatorDriver, CoordinatorInput, CoordinatorOptions, DecisionProposal,
    TransactionAge, TransactionReport, VoteRequest, NO_VOTE_IN_TIME,
};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the tasks talking to participants report back: the driver's input.
type Event = CoordinatorInput;

impl TwoPc {
    /// Deletes `owner`'s secret `name` by two-phase commit with this node as
    /// coordinator, and reports the transaction to the client.
    ///
    /// Exactly once per client request: the decision entry carries the
    /// client's `session`, and the state machine keeps it as the request's
    /// answer. A retry (after "unavailable", on this node or another) first
    /// looks that answer up and, if there is one, reports that transaction
    /// again instead of starting a new one; a retry that races the first
    /// attempt runs its own transaction, whose decision the state machine
    /// applies as an abort if the first attempt's decision answered the
    /// request first, and the retry then reports the first attempt's
    /// outcome. So a delete that committed is never answered "not found" or
    /// "aborted".
    pub(crate) async fn delete(
        self: &Arc<Self>,
        owner: &str,
        name: &str,
        session: Option<ClientSession>,
    ) -> Reply {
        if let Some(answer) = self.answered(owner, session).await? {
            return self.report_answer(owner, name, answer).await;
        }
        let version = match self.version_to_delete(owner, name).await {
            // Gone: perhaps deleted by this request's first attempt, whose
            // decision was applied after the lookup above.
            Err(VaultError::NotFound(message)) => {
                return match self.answered(owner, session).await? {
                    Some(answer) => self.report_answer(owner, name, answer).await,
                    None => Err(VaultError::NotFound(message)),
                };
            }
            outcome => outcome?,
        };
        // Participants apply through this index before they vote, so that
        // they judge the version this node just read. The applied index
        // read after the read covers every entry the read saw, and it is
        // committed, so every participant can reach it; a second ReadIndex
        // round would only cost another heartbeat trip.
        let read_index = self.node.applied_index();
        let me = self.node.id();
        // The id carries the transaction's age, which wait-die orders
        // concurrent deletes of one secret by.
        let tx = TransactionAge {
            started_ms: wall_clock_ms(),
            coordinator: me,
            nonce: rand::random::<u32>(),
        }
        .to_string();
        let request = VoteRequest {
            tx: tx.clone(),
            resource: SecretVersion {
                owner: owner.to_string(),
                name: name.to_string(),
                version,
            },
        };
        tracing::info!("Node {me} coordinates tx {tx}: delete {name:?} at version {version}");
        self.coordinate(request, read_index, session).await
    }

    /// Runs one transaction's driver to its end: sends what it asks to
    /// send, proposes what it asks to propose, and feeds it the replies,
    /// the logged decision and its deadlines.
    async fn coordinate(
        self: &Arc<Self>,
        request: VoteRequest<SecretVersion>,
        read_index: u64,
        session: Option<ClientSession>,
    ) -> Reply {
        let clock = Instant::now();
        let now = move || millis(clock.elapsed());
        let options = CoordinatorOptions {
            vote_timeout_ms: millis(self.options.vote_timeout),
            // `Node::propose` retries until the entry commits or fails.
            proposal_retry: None,
        };
        let (mut driver, actions) =
            CoordinatorDriver::start(request, read_index, self.participants(), now(), options);
        let (events, mut inbox) = mpsc::unbounded_channel();
        let mut pending = VecDeque::from(actions);
        let mut outcome = None;
        loop {
            while let Some(action) = pending.pop_front() {
                match action {
                    CoordinatorAction::Send { to, message } => {
                        self.send(to, message, events.clone());
                    }
                    CoordinatorAction::ReadMembership => {
                        let members = CoordinatorInput::Members(self.participants());
                        pending.extend(driver.step(members, now()));
                    }
                    CoordinatorAction::Propose(proposal) => {
                        let logged = self.log_proposal(session, &proposal).await?;
                        let decision = logged.decision;
                        outcome = Some(logged);
                        let input = CoordinatorInput::DecisionLogged(decision);
                        pending.extend(driver.step(input, now()));
                    }
                    // The loop below waits for `driver.deadline_ms()`.
                    CoordinatorAction::ArmDeadline { .. } => {}
                    CoordinatorAction::GaveUp => {
                        let error = VaultError::Internal("gave up proposing".into());
                        return Err(undecided(driver.tx(), error));
                    }
                    CoordinatorAction::Finished(report) => {
                        let secret = &driver.request().resource;
                        let (owner, name) = (&secret.owner, &secret.name);
                        return match outcome {
                            Some(LoggedDecision {
                                answered_before: Some(answer),
                                ..
                            }) => {
                                // This transaction was applied as an abort
                                // (its decides released the locks); the
                                // request's answer is the earlier attempt's.
                                self.report_answer(owner, name, answer).await
                            }
                            logged => {
                                let deleted = logged.is_some_and(|logged| logged.deleted);
                                self.conclude(report, owner, name, deleted).await
                            }
                        };
                    }
                }
            }
            let event = match driver.deadline_ms() {
                Some(deadline) => {
                    let deadline = clock + std::time::Duration::from_millis(deadline);
                    tokio::time::timeout_at(deadline, inbox.recv())
                        .await
                        .ok()
                        .flatten()
                }
                None => inbox.recv().await,
            };
            pending.extend(driver.step(event.unwrap_or(CoordinatorInput::Tick), now()));
        }
    }

    /// Logs the driver's decision proposal and says what the log holds.
    async fn log_proposal(
        &self,
        session: Option<ClientSession>,
        proposal: &DecisionProposal<SecretVersion>,
    ) -> Result<LoggedDecision, VaultError> {
        let tx = &proposal.tx;
        if proposal.membership_changed {
            tracing::info!(
                "Coordinator of Node {} aborts tx {tx}: the membership changed while it voted",
                self.node.id()
            );
        }
        let logged = self
            .log_decision(
                session,
                tx,
                &proposal.resource,
                proposal.decision,
                &proposal.participants,
            )
            .await
            .map_err(|error| undecided(tx, error))?;
        // Printed only now: `log_decision` returns once the entry is
        // committed and applied (by the leader, if this node forwarded it),
        // so a crash after this line cannot lose the decision.
        tracing::info!("Coordinator decision for tx {tx}: {}", logged.decision);
        self.node.metrics().twopc_decided(logged.decision);
        Ok(logged)
    }

    /// The version the votes ask about.
    ///
    /// A leader reads its own state, without a ReadIndex round: it applied
    /// every write it acknowledged before answering, so it is stale only
    /// if it was deposed without knowing or was just elected. A stale
    /// version cannot delete the wrong thing: the node that acknowledged
    /// the newer write applied it and votes abort, and a commit deletes
    /// only at the voted version. It costs at worst an abort, which the
    /// client may retry. "Not found" is confirmed linearizably, so a
    /// secret just added is never reported missing. A follower lags the
    /// leader by a commit notification, so it always reads linearizably:
    /// otherwise `add-secret --update` then `delete` through one follower
    /// would often vote on the old version and abort.
    async fn version_to_delete(&self, owner: &str, name: &str) -> Result<u64, VaultError> {
        if self.node.is_leader() {
            match self
                .current_version(owner, name, ReadConsistency::Stale)
                .await
            {
                Err(VaultError::NotFound(_)) => {}
                outcome => return outcome,
            }
        }
        self.current_version(owner, name, ReadConsistency::Linearizable)
            .await
    }

    /// The secret's current version for its owner, read at `consistency`.
    async fn current_version(
        &self,
        owner: &str,
        name: &str,
        consistency: ReadConsistency,
    ) -> Result<u64, VaultError> {
        let query = encode(&VaultQuery::Secret {
            caller: owner.to_string(),
            owner: None,
            name: name.to_string(),
        });
        let bytes = self
            .node
            .read(query, consistency)
            .await
            .map_err(super::super::handler::node_error)?;
        match decode::<Reply>(&bytes) {
            Ok(Ok(Response::Secret(record))) => Ok(record.version),
            Ok(Ok(other)) => Err(VaultError::Internal(format!(
                "unexpected answer to a secret read: {other:?}"
            ))),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(VaultError::Internal(format!(
                "undecodable state machine reply: {error}"
            ))),
        }
    }

    /// Sends `message` to `to` (or serves it locally) on its own task and
    /// reports the answer as the driver's input: a vote (no answer before
    /// the vote timeout, or an unreachable node, is an abort), or an ack,
    /// which arrives only once `to` applied the decision.
    fn send(
        self: &Arc<Self>,
        to: NodeId,
        message: TwoPcRequest<SecretVersion>,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let me = self.node.id();
        let kind = match message {
            TwoPcRequest::Vote { .. } => "Vote to Phase Participant-Vote",
            _ => "Decide to Phase Participant-Decision",
        };
        tracing::info!("Phase Coordinator of Node {me} sends RPC {kind} of Node {to}");
        let service = self.clone();
        tokio::spawn(async move {
            let tx = message.tx().to_string();
            let asks_vote = matches!(message, TwoPcRequest::Vote { .. });
            let reply = if to == me {
                service.serve(me, message).await
            } else {
                // Unanswered within the vote timeout: for a vote it is the
                // same abort, and the same reason, as the coordinator's own
                // vote deadline gives (whichever of the two ends first).
                let late = if asks_vote {
                    NO_VOTE_IN_TIME
                } else {
                    "no acknowledgement before the vote timeout"
                };
                service
                    .call(to, message, service.options.vote_timeout, late)
                    .await
            };
            let event = if asks_vote {
                let vote = reply.into_vote();
                match &vote {
                    Vote::Commit => tracing::info!(
                        "Phase Coordinator of Node {me} receives VOTE_COMMIT from Phase \
                         Participant-Vote of Node {to} for tx {tx}"
                    ),
                    Vote::Abort(reason) => tracing::info!(
                        "Phase Coordinator of Node {me} receives VOTE_ABORT from Phase \
                         Participant-Vote of Node {to} for tx {tx}: {reason}"
                    ),
                }
                Event::Voted { from: to, vote }
            } else {
                match reply {
                    TwoPcReply::Acked { .. } => Event::Acked { from: to },
                    other => {
                        tracing::info!("Node {me}: {to} did not acknowledge: {other:?}");
                        return;
                    }
                }
            };
            let _ = events.send(event);
        });
    }

    /// One 2PC message to node `to`, answered within `limit` or counted as
    /// unanswered with the reason `late` (for a vote: an abort).
    pub(super) async fn call(
        &self,
        to: NodeId,
        message: TwoPcRequest<SecretVersion>,
        limit: std::time::Duration,
        late: &str,
    ) -> TwoPcReply {
        let message = WireRequest::Peer(message);
        let request = self.transport.request(to, &message);
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(WireResponse::Peer(reply))) => reply,
            Ok(Ok(_)) => TwoPcReply::Failed(format!("{to} answered with another kind of reply")),
            Ok(Err(error)) => TwoPcReply::Failed(format!("{to} is unreachable: {error}")),
            Err(_) => TwoPcReply::Failed(late.to_string()),
        }
    }

    /// The answer the state machine holds for the client's request
    /// `session`, if it already has one: the stored reply for that sequence
    /// number, or a conflict if the client has moved past it. Read
    /// linearizably, so an answer committed before this call is seen.
    async fn answered(
        &self,
        owner: &str,
        session: Option<ClientSession>,
    ) -> Result<Option<Reply>, VaultError> {
        let Some(session) = session else {
            return Ok(None);
        };
        let query = encode(&VaultQuery::Session {
            caller: owner.to_string(),
            client_id: session.client_id,
        });
        let bytes = self
            .node
            .read(query, ReadConsistency::Linearizable)
            .await
            .map_err(super::super::handler::node_error)?;
        let record = match decode::<Reply>(&bytes) {
            Ok(Ok(Response::Session(record))) => record,
            Ok(Ok(other)) => {
                return Err(VaultError::Internal(format!(
                    "unexpected answer to a session read: {other:?}"
                )))
            }
            Ok(Err(error)) => return Err(error),
            Err(error) => {
                return Err(VaultError::Internal(format!(
                    "undecodable state machine reply: {error}"
                )))
            }
        };
        Ok(match record {
            Some(record) if record.seq == session.seq => Some(*record.reply),
            Some(record) if record.seq > session.seq => Some(Err(VaultError::Conflict(format!(
                "request {} of this client was superseded by request {} and was not applied",
                session.seq, record.seq
            )))),
            _ => None,
        })
    }

    /// The client's answer to a delete whose request was already answered
    /// by a logged decision: that transaction's report, with the
    /// participants' acknowledgements asked for again (each answers once
    /// it applied the decision). A commit means every participant voted
    /// commit; an abort's individual votes are not in the log and are left
    /// out. Any other stored answer (a client that reused a sequence
    /// number) is returned as it was.
    async fn report_answer(self: &Arc<Self>, owner: &str, name: &str, answer: Reply) -> Reply {
        let Ok(Response::Decided {
            tx,
            decision,
            deleted,
        }) = answer
        else {
            return answer;
        };
        tracing::info!(
            "Node {} answers a retried delete with the logged decision of tx {tx}",
            self.node.id()
        );
        let participants = self.participants();
        let (events, mut inbox) = mpsc::unbounded_channel();
        for to in &participants {
            let message = TwoPcRequest::Decide {
                tx: tx.clone(),
                decision,
            };
            self.send(*to, message, events.clone());
        }
        drop(events);
        let deadline = Instant::now() + self.options.vote_timeout;
        let mut acked = Vec::new();
        while acked.len() < participants.len() {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(Event::Acked { from })) => acked.push(from),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        acked.sort();
        acked.dedup();
        let votes = match decision {
            Decision::Commit => participants
                .iter()
                .map(|node| (*node, Vote::Commit))
                .collect(),
            Decision::Abort => Default::default(),
        };
        let report = TransactionReport {
            tx,
            decision,
            votes,
            acked,
        };
        self.conclude(report, owner, name, deleted).await
    }

    /// Makes `decision` durable through Raft and returns the decision the
    /// log holds for `tx` (the first one wins), whether this entry deleted
    /// the secret, and, for a delete whose request `session` another
    /// transaction already answered, that answer.
    pub(super) async fn log_decision(
        &self,
        session: Option<ClientSession>,
        tx: &str,
        secret: &SecretVersion,
        decision: Decision,
        participants: &[NodeId],
    ) -> Result<LoggedDecision, VaultError> {
        let command = decision_command(
            session,
            &secret.owner,
            tx,
            &secret.name,
            secret.version,
            decision,
            participants,
            wall_clock_ms(),
        );
        let bytes = self
            .node
            .propose(command)
            .await
            .map_err(super::super::handler::node_error)?;
        match decode::<Reply>(&bytes) {
            Ok(Ok(Response::Decided {
                tx: logged,
                decision,
                deleted,
            })) if logged == tx => Ok(LoggedDecision {
                decision,
                deleted,
                answered_before: None,
            }),
            // Another transaction answered this request first: the state
            // machine applied this one as an abort.
            Ok(answer) if session.is_some() => Ok(LoggedDecision {
                decision: Decision::Abort,
                deleted: false,
                answered_before: Some(answer),
            }),
            Ok(Ok(other)) => Err(VaultError::Internal(format!(
                "unexpected answer to a decision: {other:?}"
            ))),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(VaultError::Internal(format!(
                "undecodable state machine reply: {error}"
            ))),
        }
    }

    /// The client's answer. A commit that deleted nothing means the secret
    /// moved past the voted version (a racing update won): unless the secret
    /// is gone anyway (this decision was a retried duplicate), that is a
    /// conflict, not a success.
    async fn conclude(
        &self,
        report: TransactionReport,
        owner: &str,
        name: &str,
        deleted: bool,
    ) -> Reply {
        if report.decision == Decision::Commit && !deleted {
            if let Ok(version) = self
                .current_version(owner, name, ReadConsistency::Linearizable)
                .await
            {
                return Err(VaultError::Conflict(format!(
                    "transaction {} committed but {name:?} had changed to version {version} \
                     after the vote, so nothing was deleted",
                    report.tx
                )));
            }
        }
        Ok(Response::Deleted(report))
    }
}

/// What logging a decision came to.
pub(super) struct LoggedDecision {
    /// The decision the log holds for the transaction.
    pub(super) decision: Decision,
    /// Whether this entry deleted the secret.
    pub(super) deleted: bool,
    /// The answer another transaction gave the same client request first.
    pub(super) answered_before: Option<Reply>,
}

/// The coordinator could not log a decision: the outcome is unknown to it,
/// but recovery settles it (an abort unless the decision did reach the log).
fn undecided(tx: &str, error: VaultError) -> VaultError {
    VaultError::Unavailable(format!(
        "the decision for transaction {tx} could not be logged ({error}); \
         prepared nodes resolve it through the leader after the decision timeout"
    ))
}
