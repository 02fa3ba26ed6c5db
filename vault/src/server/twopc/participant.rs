//! The participant's side on a running node: vote, acknowledge, and (on the
//! leader) resolve a transaction recovery asks about.

use super::{millis, TwoPc};
use crate::protocol::{Decision, SecretVersion, Vote};
use crate::server::wire::{TwoPcReply, TwoPcRequest};
use consensus::raft::NodeId;
use consensus::twopc::participant::{self, AckOutcome, Resolution};
use consensus::twopc::{VoteAttempt, VoteRequest};
use tokio::time::Instant;

impl TwoPc {
    /// Serves one two-phase-commit message from node `from` (possibly this
    /// node itself): a vote request, a Decide, or a recovery question.
    pub(crate) async fn serve(
        &self,
        from: NodeId,
        request: TwoPcRequest<SecretVersion>,
    ) -> TwoPcReply {
        match request {
            TwoPcRequest::Vote {
                request,
                read_index,
            } => self.vote(from, request, read_index).await,
            TwoPcRequest::Decide { tx, .. } => self.acknowledge(from, tx).await,
            TwoPcRequest::Resolve {
                tx,
                resource,
                applied_index,
            } => self.resolve(tx, resource, applied_index).await,
        }
    }

    /// Votes on `request` from `coordinator`: the policy, then (once this
    /// node applied the log through `read_index`, waiting at most the vote
    /// timeout) a durable check-and-lock in the store. A secret locked by a
    /// younger transaction is waited for (wait-die), at most half the vote
    /// timeout from the request's arrival, so the coordinator still hears an
    /// explicit vote. The vote leaves only after the prepare committed with a
    /// full fsync.
    pub(crate) async fn vote(
        &self,
        coordinator: NodeId,
        request: VoteRequest<SecretVersion>,
        read_index: u64,
    ) -> TwoPcReply {
        let wait_until = Instant::now() + self.options.vote_timeout / 2;
        self.apply_through(read_index).await;
        let tx = request.tx.clone();
        let vote = self.vote_wait_die(request, read_index, wait_until).await;
        let me = self.node.id();
        match &vote {
            Vote::Commit => {
                tracing::info!("Phase Participant-Vote of Node {me} votes VOTE_COMMIT for tx {tx}")
            }
            Vote::Abort(reason) => tracing::info!(
                "Phase Participant-Vote of Node {me} votes VOTE_ABORT for tx {tx}: {reason}"
            ),
        }
        tracing::info!(
            "Phase Participant-Vote of Node {me} sends RPC Vote to Phase Coordinator of Node {coordinator}"
        );
        TwoPcReply::Voted(vote)
    }

    /// The vote under wait-die: attempts it, and while the secret is locked
    /// by a younger transaction and `wait_until` has not passed, waits for
    /// that transaction's decision to be applied and attempts again. Each
    /// attempt is a job for the prepare thread, which shares one fsync
    /// among concurrent prepares; nothing is held across the wait, so
    /// acknowledgements, recovery and other votes go on, and apply uses its
    /// own connection.
    async fn vote_wait_die(
        &self,
        request: VoteRequest<SecretVersion>,
        read_index: u64,
        wait_until: Instant,
    ) -> Vote {
        let me = self.node.id();
        let mut waiting_for: Option<String> = None;
        loop {
            // Read before the attempt, so an apply that lands between the
            // attempt and the wait still wakes it.
            let seen = self.node.applied_index();
            let may_wait = Instant::now() < wait_until;
            let attempt = self
                .prepares
                .attempt(request.clone(), read_index, may_wait)
                .await;
            match attempt {
                Ok(VoteAttempt::Voted(vote)) => return vote,
                Ok(VoteAttempt::Wait { holder }) => {
                    if waiting_for.as_ref() != Some(&holder) {
                        tracing::info!(
                            "Phase Participant-Vote of Node {me} holds the vote on tx {} until \
                             younger tx {holder} is decided (wait-die)",
                            request.tx
                        );
                        waiting_for = Some(holder);
                    }
                    // Only applying the holder's decision releases the lock.
                    self.node.wait_applied_past(seen, wait_until).await;
                }
                Err(error) => return Vote::Abort(format!("this node cannot prepare: {error}")),
            }
        }
    }

    /// Waits until this node applied the log through `index`, or the vote
    /// timeout passed (then the store answers from what it has, and a node
    /// still behind votes abort with the reason).
    async fn apply_through(&self, index: u64) {
        let deadline = Instant::now() + self.options.vote_timeout;
        self.node.wait_applied(index, deadline).await;
    }

    /// Answers a Decide from `coordinator` once this node's state machine
    /// applied the decision for `tx` from the log (which deleted the secret
    /// or released the lock), waiting at most the decision timeout.
    pub(crate) async fn acknowledge(&self, coordinator: NodeId, tx: String) -> TwoPcReply {
        let me = self.node.id();
        let deadline = Instant::now() + self.options.decision_timeout;
        loop {
            let seen = self.node.applied_index();
            let applied = match self.applied_decisions.get(&tx) {
                Some(decision) => Some(decision),
                // Applied long ago, through a snapshot, or not yet.
                None => {
                    let tx = tx.clone();
                    match self.with_store(move |store| store.decision(&tx)).await {
                        Ok(applied) => applied,
                        Err(error) => return TwoPcReply::Failed(error.to_string()),
                    }
                }
            };
            match participant::ack(applied) {
                // The participant's "commits tx T" line was logged by the
                // store when it applied the decision.
                AckOutcome::Ack(decision) => {
                    tracing::info!(
                        "Phase Participant-Decision of Node {me} sends RPC Ack to Phase Coordinator of Node {coordinator}"
                    );
                    return TwoPcReply::Acked { decision };
                }
                AckOutcome::Wait if Instant::now() >= deadline => {
                    return TwoPcReply::Failed(format!(
                        "{me} has not applied the decision for {tx} within {} ms",
                        millis(self.options.decision_timeout)
                    ));
                }
                // The decision arrives by applying the log.
                AckOutcome::Wait => {
                    self.node.wait_applied_past(seen, deadline).await;
                }
            }
        }
    }

    /// The leader's answer to a participant left prepared: the decision the
    /// log holds, proposing GLOBAL_ABORT first if this node knows none.
    ///
    /// An asker that has not applied the log through this node's pruning
    /// horizon is told to catch up instead: its decision may be one this
    /// node already pruned, which it will find in its own log (every member
    /// held it there before it was pruned), and an abort proposed now would
    /// contradict it.
    pub(crate) async fn resolve(
        &self,
        tx: String,
        secret: SecretVersion,
        applied_index: u64,
    ) -> TwoPcReply {
        if !self.node.is_leader() {
            return TwoPcReply::Failed(format!("{} is not the leader", self.node.id()));
        }
        let logged = {
            let tx = tx.clone();
            self.with_store(move |store| Ok((store.decision(&tx)?, store.pruned_through()?)))
                .await
        };
        let (logged, pruned_through) = match logged {
            Ok(logged) => logged,
            Err(error) => return TwoPcReply::Failed(error.to_string()),
        };
        if logged.is_none() && applied_index < pruned_through {
            return TwoPcReply::Failed(format!(
                "tx {tx}: the asker applied the log through index {applied_index} only; \
                 decisions through {pruned_through} are pruned here, so it must apply its \
                 own log first"
            ));
        }
        match participant::resolve(logged) {
            Resolution::Decided(decision) => TwoPcReply::Resolved { decision },
            Resolution::ProposeAbort => {
                tracing::info!(
                    "Node {} (leader) proposes GLOBAL_ABORT for undecided tx {tx}",
                    self.node.id()
                );
                match self
                    .log_decision(None, &tx, &secret, Decision::Abort, &[])
                    .await
                {
                    Ok(logged) => TwoPcReply::Resolved {
                        decision: logged.decision,
                    },
                    Err(error) => TwoPcReply::Failed(error.to_string()),
                }
            }
        }
    }
}
