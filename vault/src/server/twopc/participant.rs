//! The participant's side on a running node: vote, acknowledge, and (on the
//! leader) resolve a transaction recovery asks about.

use super::{millis, TwoPc};
use crate::protocol::{Decision, SecretVersion, Vote};
use crate::server::wire::{TwoPcReply, TwoPcRequest};
use consensus::raft::NodeId;
use consensus::twopc::participant::{self, Resolution};
use consensus::twopc::{
    AckAction, AckDriver, ParticipantOptions, VoteAction, VoteDriver, VoteInput, VoteRequest,
};
use std::time::Duration;
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

    /// Votes on `request` from `coordinator`, running the shared
    /// [`VoteDriver`]: once this node applied the log through `read_index`
    /// (waiting at most the vote timeout), a durable check-and-lock in the
    /// store. A secret locked by a younger transaction is waited for
    /// (wait-die), at most half the vote timeout from the request's arrival,
    /// so the coordinator still hears an explicit vote. Each attempt is a
    /// job for the prepare thread, which shares one fsync among concurrent
    /// prepares, and a commit vote comes back only after that fsync. Nothing
    /// is held across a wait, so acknowledgements, recovery and other votes
    /// go on, and apply uses its own connection.
    pub(crate) async fn vote(
        &self,
        coordinator: NodeId,
        request: VoteRequest<SecretVersion>,
        read_index: u64,
    ) -> TwoPcReply {
        let clock = Instant::now();
        let now = move || millis(clock.elapsed());
        let me = self.node.id();
        let tx = request.tx.clone();
        let (mut driver, mut action) = VoteDriver::start(
            coordinator,
            request,
            read_index,
            self.node.applied_index(),
            now(),
            self.participant_options(),
        );
        let mut waiting_for: Option<String> = None;
        let vote = loop {
            let input = match action {
                VoteAction::Send(vote) => break vote,
                VoteAction::AwaitApplied {
                    index,
                    deadline_ms,
                    holder,
                } => {
                    // Logged once per holder, not once per wake-up.
                    if let Some(holder) =
                        holder.filter(|holder| waiting_for.as_ref() != Some(holder))
                    {
                        tracing::info!(
                            "Phase Participant-Vote of Node {me} holds the vote on tx {tx} until \
                             younger tx {holder} is decided (wait-die)"
                        );
                        waiting_for = Some(holder);
                    }
                    let deadline = clock + Duration::from_millis(deadline_ms);
                    self.node.wait_applied(index, deadline).await;
                    VoteInput::Applied(self.node.applied_index())
                }
                VoteAction::Attempt { may_wait } => {
                    let attempt = self
                        .prepares
                        .attempt(driver.request().clone(), read_index, may_wait)
                        .await;
                    match attempt {
                        Ok(attempt) => VoteInput::Attempted(attempt),
                        Err(error) => VoteInput::AttemptFailed(error.to_string()),
                    }
                }
            };
            match driver.step(input, now()) {
                Some(next) => action = next,
                // Unreachable while an attempt's outcome is fed after each
                // attempt; voting abort is the safe answer all the same.
                None => break Vote::Abort("the vote was interrupted".into()),
            }
        };
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

    /// Answers a Decide from `coordinator` once this node's state machine
    /// applied the decision for `tx` from the log (which deleted the secret
    /// or released the lock), waiting at most the decision timeout: the
    /// shared [`AckDriver`].
    pub(crate) async fn acknowledge(&self, coordinator: NodeId, tx: String) -> TwoPcReply {
        let me = self.node.id();
        let clock = Instant::now();
        let driver = AckDriver::start(me, tx.clone(), 0, self.participant_options());
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
            match driver.step(applied, seen, millis(clock.elapsed())) {
                AckAction::Reply(reply) => {
                    // The participant's "commits tx T" line was logged by
                    // the store when it applied the decision.
                    if matches!(reply, TwoPcReply::Acked { .. }) {
                        tracing::info!(
                            "Phase Participant-Decision of Node {me} sends RPC Ack to Phase Coordinator of Node {coordinator}"
                        );
                    }
                    return reply;
                }
                // The decision arrives by applying the log.
                AckAction::AwaitApplied { index, deadline_ms } => {
                    let deadline = clock + Duration::from_millis(deadline_ms);
                    self.node.wait_applied(index, deadline).await;
                }
            }
        }
    }

    /// How long this node's participant side waits.
    fn participant_options(&self) -> ParticipantOptions {
        ParticipantOptions {
            vote_timeout_ms: millis(self.options.vote_timeout),
            decision_timeout_ms: millis(self.options.decision_timeout),
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
