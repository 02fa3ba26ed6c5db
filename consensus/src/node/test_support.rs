//! What the runtime's tests share: a network for a one-node cluster and
//! the options of a fast test node.

use super::{NodeError, NodeOptions, NodeRequest, PeerNetwork, RpcFuture};
use crate::raft::{Message, NodeId};
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
        request_timeout: Duration::from_secs(5),
        max_pending_requests: super::DEFAULT_MAX_PENDING_REQUESTS,
        seed: 7,
        min_free_bytes: 0,
        metrics: Default::default(),
    }
}
