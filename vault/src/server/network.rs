//! [`QuicNetwork`]: the node runtime's [`PeerNetwork`] over the QUIC transport.

use super::{VaultTransport, WireRequest, WireResponse};
use consensus::node::{NodeError, NodeReply, NodeRequest, PeerNetwork, RpcFuture};
use consensus::raft::{Message, NodeId};
use std::sync::Arc;

/// Sends Raft messages on per-peer streams and node requests on their own
/// request streams.
pub struct QuicNetwork {
    transport: Arc<VaultTransport>,
}

impl QuicNetwork {
    /// Wraps a bound transport.
    pub fn new(transport: Arc<VaultTransport>) -> Self {
        QuicNetwork { transport }
    }
}

impl PeerNetwork for QuicNetwork {
    fn send(&self, message: Message) {
        let to = message.to;
        if let Err(error) = self.transport.send(to, message) {
            tracing::trace!("message to {to} dropped: {error}");
        }
    }

    fn call(&self, to: NodeId, request: NodeRequest) -> RpcFuture<'_> {
        Box::pin(async move {
            match self
                .transport
                .request(to, &WireRequest::Node(request))
                .await
            {
                Ok(WireResponse::Node(reply)) => Ok(reply),
                Ok(WireResponse::Client(_) | WireResponse::TwoPc(_)) => Ok(NodeReply::Failed(
                    NodeError::Refused(format!("{to} answered a node request with a client reply")),
                )),
                Err(error) => {
                    tracing::debug!("request to {to} failed: {error}");
                    Err(NodeError::Unavailable)
                }
            }
        })
    }
}
