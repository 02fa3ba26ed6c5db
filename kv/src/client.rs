//! [`KvClient`]: put, get and cas against a key-value cluster, on the
//! bus's [`Cluster`] (one connection per node, failover to the next node).
//!
//! Each write carries a [`ClientSession`]; a write retried on another node after
//! a leader change keeps its sequence number, so the state machine applies
//! it once and answers the retry with the first answer.

use crate::protocol::{KvError, KvReply, KvRequest, KvResponse};
use bus::client::{CallError, Cluster, ATTEMPT_TIMEOUT};
use bus::sessions::ClientSession;
use bus::WireResponse;
use certs::Credentials;
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What travels from a key-value client.
type Request = bus::WireRequest<KvRequest, crate::server::NoPeerRequests>;

/// What a key-value node answers.
type Response = WireResponse<KvReply, String>;

/// A client of a key-value cluster.
pub struct KvClient {
    cluster: Cluster,
    client: u64,
    next_sequence: AtomicU64,
    timeout: Duration,
}

impl KvClient {
    /// A client of the nodes `nodes`; each request gives up after `timeout`
    /// with [`KvError::Unavailable`].
    pub fn new(
        credentials: Credentials,
        nodes: Vec<(NodeId, PeerAddress)>,
        timeout: Duration,
    ) -> Self {
        KvClient {
            cluster: Cluster::new(credentials, nodes),
            client: rand::random::<u64>() | 1,
            next_sequence: AtomicU64::new(1),
            timeout,
        }
    }

    /// Starts with node `index` of the list instead of the first.
    pub fn prefer(&self, index: usize) {
        self.cluster.prefer(index);
    }

    fn session(&self) -> ClientSession {
        ClientSession {
            client_id: self.client,
            seq: self.next_sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: u64, value: u64) -> Result<(), KvError> {
        let request = KvRequest::Put {
            session: self.session(),
            key,
            value,
        };
        match self.call(request).await? {
            KvResponse::Written => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads `key` (linearizable unless `stale`).
    pub async fn get(&self, key: u64, stale: bool) -> Result<u64, KvError> {
        match self.call(KvRequest::Get { key, stale }).await? {
            KvResponse::Value(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets `key` to `new` if it holds `expected`: whether it swapped, and
    /// the value it held.
    pub async fn cas(&self, key: u64, expected: u64, new: u64) -> Result<(bool, u64), KvError> {
        let request = KvRequest::Cas {
            session: self.session(),
            key,
            expected,
            new,
        };
        match self.call(request).await? {
            KvResponse::Swapped { swapped, current } => Ok((swapped, current)),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `request`, on other nodes too, until the timeout.
    pub async fn call(&self, request: KvRequest) -> KvReply {
        let unavailable = |response: &Response| {
            matches!(response, WireResponse::Client(Err(KvError::Unavailable(_))))
        };
        match self
            .cluster
            .call(
                &Request::Client(request),
                self.timeout,
                ATTEMPT_TIMEOUT,
                None,
                unavailable,
            )
            .await
        {
            Ok(WireResponse::Client(reply)) => reply,
            Ok(_) => Err(KvError::Internal(
                "a node answered with a node reply".into(),
            )),
            Err(error @ CallError::NoNodes) => Err(KvError::Internal(error.to_string())),
            Err(error) => Err(KvError::Unavailable(error.to_string())),
        }
    }

    /// Sends `request` to node `id` only, once.
    pub async fn call_node(&self, id: NodeId, request: KvRequest) -> KvReply {
        let index = self
            .cluster
            .index_of(id)
            .ok_or_else(|| KvError::Internal(format!("{id} is not in the client configuration")))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        match self
            .cluster
            .request::<_, Response>(index, &Request::Client(request), deadline)
            .await
        {
            Ok(WireResponse::Client(reply)) => reply,
            Ok(_) => Err(KvError::Internal(format!(
                "{id} answered with a node reply"
            ))),
            Err(error) => Err(KvError::Unavailable(error.to_string())),
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.cluster.close().await
    }
}

fn unexpected(response: &KvResponse) -> KvError {
    KvError::Internal(format!("unexpected answer {response:?}"))
}
