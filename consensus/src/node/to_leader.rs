//! The requests only the leader can serve, proposals and ReadIndex: run
//! here when this node leads, forwarded to the leader otherwise, retried
//! (while the request timeout lasts) when there is no leader yet or the
//! leader changes under them.

use super::driver::Event;
use super::handle::Node;
use super::{ApplyResult, NodeError, NodeReply, NodeRequest};
use crate::raft::{LogIndex, NodeId};
use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Pause before retrying a request that found no leader.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl Node {
    /// Replicates `command` and returns the state machine's response once it
    /// is applied here or on the leader. A follower forwards to the leader;
    /// without a leader it retries until the request timeout.
    pub async fn propose(&self, command: Vec<u8>) -> ApplyResult {
        let _pending = self.admit()?;
        let deadline = Instant::now() + self.timeout;
        let command = &command;
        until_answered(deadline, move || async move {
            match self.propose_here(command.clone(), deadline).await {
                Err(NodeError::NotLeader {
                    leader: Some(leader),
                }) if leader != self.id => self.forward_propose(leader, command, deadline).await,
                other => other,
            }
        })
        .await
    }

    /// Proposes `command` on this node only (no forwarding): what a leader
    /// does for a follower's forwarded proposal.
    /// Refused with [`NodeError::Busy`] when the node has too many requests
    /// in progress, and [`NodeError::Unavailable`] when the entry is not
    /// applied within the request timeout.
    pub async fn propose_local(&self, command: Vec<u8>) -> ApplyResult {
        let _pending = self.admit()?;
        self.propose_here(command, Instant::now() + self.timeout)
            .await
    }

    async fn propose_here(&self, command: Vec<u8>, deadline: Instant) -> ApplyResult {
        let (reply, response) = oneshot::channel();
        let sent =
            tokio::time::timeout_at(deadline, self.send_event(Event::Propose { command, reply }));
        sent.await.map_err(|_| NodeError::Unavailable)??;
        match tokio::time::timeout_at(deadline, response).await {
            Ok(outcome) => outcome.unwrap_or_else(|_| Err(self.fatal.gone())),
            // Not applied in time (no quorum, or the state machine is far
            // behind): the caller may retry; its session dedups.
            Err(_) => Err(NodeError::Unavailable),
        }
    }

    async fn forward_propose(
        &self,
        leader: NodeId,
        command: &[u8],
        deadline: Instant,
    ) -> ApplyResult {
        let request = NodeRequest::Propose(command.to_vec());
        match self.call_leader(leader, request, deadline).await? {
            NodeReply::Applied(response) => Ok(response),
            NodeReply::Failed(error) => Err(error),
            NodeReply::ReadIndex(_) => Err(NodeError::Unavailable),
        }
    }

    /// Sends `request` to `leader` and waits for its reply until `deadline`,
    /// or until this node learns of another leader, whichever is first
    /// (then [`NodeError::Unavailable`], which the caller retries with the
    /// new leader). A leader that was killed never answers and its QUIC
    /// connection is not known to be dead for many seconds: without this a
    /// forwarded request waited out the whole request timeout although a
    /// new leader was elected within an election timeout. Retrying a
    /// proposal whose first attempt may still commit is what a lost answer
    /// already meant: the application's client sessions make it once-only.
    async fn call_leader(
        &self,
        leader: NodeId,
        request: NodeRequest,
        deadline: Instant,
    ) -> Result<NodeReply, NodeError> {
        let mut status = self.status.clone();
        let call = self.network.call(leader, request);
        let moved_on = async {
            let driver_gone = status
                .wait_for(|status| status.leader.is_some_and(|now| now != leader))
                .await
                .is_err();
            if driver_gone {
                // The driver is gone; the call fails or the deadline ends it.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            outcome = call => outcome,
            () = moved_on => Err(NodeError::Unavailable),
            () = tokio::time::sleep_until(deadline) => Err(NodeError::Unavailable),
        }
    }

    /// The index a linearizable read must wait for, confirmed by a quorum
    /// (asking the leader when this node is a follower).
    /// Refused with [`NodeError::Busy`] when the node has too many requests
    /// in progress.
    pub async fn read_index(&self) -> Result<LogIndex, NodeError> {
        let _pending = self.admit()?;
        self.read_index_within(Instant::now() + self.timeout).await
    }

    pub(super) async fn read_index_within(&self, deadline: Instant) -> Result<LogIndex, NodeError> {
        until_answered(deadline, move || async move {
            match self.read_index_here(deadline).await {
                Err(NodeError::NotLeader {
                    leader: Some(leader),
                }) if leader != self.id => {
                    match self
                        .call_leader(leader, NodeRequest::ReadIndex, deadline)
                        .await?
                    {
                        NodeReply::ReadIndex(index) => Ok(index),
                        NodeReply::Failed(error) => Err(error),
                        NodeReply::Applied(_) => Err(NodeError::Unavailable),
                    }
                }
                other => other,
            }
        })
        .await
    }

    /// Runs a ReadIndex round on this node only (leader only).
    /// Busy and timed out like [`Node::read_index`].
    pub async fn read_index_local(&self) -> Result<LogIndex, NodeError> {
        let _pending = self.admit()?;
        self.read_index_here(Instant::now() + self.timeout).await
    }

    async fn read_index_here(&self, deadline: Instant) -> Result<LogIndex, NodeError> {
        let (reply, response) = oneshot::channel();
        let sent = tokio::time::timeout_at(deadline, self.send_event(Event::ReadIndex { reply }));
        sent.await.map_err(|_| NodeError::Unavailable)??;
        // The driver forgets a read whose caller has gone (see its tick), so
        // giving up here leaves nothing behind.
        match tokio::time::timeout_at(deadline, response).await {
            Ok(outcome) => outcome.unwrap_or_else(|_| Err(self.fatal.gone())),
            Err(_) => Err(NodeError::Unavailable),
        }
    }

    /// Serves a request from another node (already authenticated as a node
    /// by the transport).
    pub async fn handle_peer_request(&self, from: NodeId, request: NodeRequest) -> NodeReply {
        tracing::debug!(
            "Node {} serves a forwarded request from Node {from}",
            self.id
        );
        let outcome = match request {
            NodeRequest::Propose(command) => {
                self.propose_local(command).await.map(NodeReply::Applied)
            }
            NodeRequest::ReadIndex => self.read_index_local().await.map(NodeReply::ReadIndex),
        };
        outcome.unwrap_or_else(NodeReply::Failed)
    }
}

/// Runs `attempt` until its outcome is not worth retrying (an answer, or a
/// failure another try would not mend), pausing between tries. A retryable
/// failure (no leader yet, the leader changed) left at `deadline` becomes
/// [`NodeError::Unavailable`].
async fn until_answered<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, NodeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, NodeError>>,
{
    loop {
        match attempt().await {
            Err(error) if error.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(error) if error.is_retryable() => return Err(NodeError::Unavailable),
            other => return other,
        }
    }
}
