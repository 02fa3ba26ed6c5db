//! What travels on request streams between clients and nodes, and between
//! nodes: one enum for the transport, so one endpoint serves both.

use crate::protocol::{ClientRequest, Reply};
use consensus::node::{NodeReply, NodeRequest};
use serde::{Deserialize, Serialize};

/// A request on a vault node's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRequest {
    /// From a client (or forwarded by a node for a client).
    Client(ClientRequest),
    /// From another node; refused unless the caller's certificate is a node's.
    Node(NodeRequest),
}

/// The answer to a [`WireRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireResponse {
    /// The answer to a client request.
    Client(Reply),
    /// The answer to a node request.
    Node(NodeReply),
}
