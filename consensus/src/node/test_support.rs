//! What the runtime's tests share: a network for a one-node cluster, the
//! options of a fast test node, and an echoing state machine with a hook.

use super::{NodeError, NodeOptions, NodeRequest, PeerNetwork, RpcFuture};
use crate::raft::{LogIndex, Message, NodeId};
use crate::state_machine::{CommittedCommand, StateMachine};
use std::path::Path;
use std::time::Duration;

/// A one-node cluster reaches no one.
pub(super) struct Alone;

impl PeerNetwork for Alone {
    fn send(&self, _message: Message) {}

    fn call(&self, _to: NodeId, _request: NodeRequest) -> RpcFuture<'_> {
        Box::pin(async { Err(NodeError::Unavailable) })
    }
}

/// Node `id` keeping its log in `raft_dir`, with timeouts short enough for
/// tests (10 ms heartbeats, 30–60 ms elections), a fixed seed, no free-space
/// reserve and snapshots practically never.
pub(super) fn test_options(id: u64, raft_dir: &Path) -> NodeOptions {
    NodeOptions {
        id: NodeId(id),
        raft_dir: raft_dir.to_path_buf(),
        join: false,
        heartbeat: Duration::from_millis(10),
        election_min: Duration::from_millis(30),
        election_max: Duration::from_millis(60),
        snapshot_every: 1_000_000,
        snapshot_after_bytes: super::DEFAULT_SNAPSHOT_AFTER_BYTES,
        // The tests of snapshots see them installed as soon as one is taken.
        keep_log_bytes: 0,
        request_timeout: Duration::from_secs(5),
        max_pending_requests: super::DEFAULT_MAX_PENDING_REQUESTS,
        seed: 7,
        min_free_bytes: 0,
        metrics: Default::default(),
    }
}

/// A state machine that answers each command with its own bytes, after
/// `before_apply` saw the batch: a test's hook to fail it, panic in it or
/// hold it back.
pub(super) struct Echo<F> {
    applied: LogIndex,
    before_apply: F,
}

impl<F> Echo<F>
where
    F: FnMut(&[CommittedCommand<'_>]) -> std::io::Result<()> + Send + 'static,
{
    /// An empty machine calling `before_apply` on every batch.
    pub(super) fn new(before_apply: F) -> Self {
        Echo {
            applied: 0,
            before_apply,
        }
    }
}

impl<F> StateMachine for Echo<F>
where
    F: FnMut(&[CommittedCommand<'_>]) -> std::io::Result<()> + Send + 'static,
{
    type Error = std::io::Error;

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        (self.before_apply)(commands)?;
        let mut responses = Vec::new();
        for command in commands {
            self.applied = self.applied.max(command.index);
            responses.push(command.command.to_vec());
        }
        Ok(responses)
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), Self::Error> {
        self.applied = self.applied.max(index);
        Ok(())
    }

    fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.applied.to_be_bytes().to_vec())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, Self::Error> {
        Ok(Vec::new())
    }

    fn restore(&mut self, index: LogIndex, _data: &[u8]) -> Result<(), Self::Error> {
        self.applied = index;
        Ok(())
    }
}
