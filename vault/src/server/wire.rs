//! What travels on request streams between clients and nodes, and between
//! nodes: one enum for the transport, so one endpoint serves both.
//!
//! Variants are only ever appended: postcard numbers them by position, so a
//! node of an older build still decodes the ones it knows.

use crate::protocol::{ClientRequest, Reply, SecretVersion};
use consensus::node::{NodeReply, NodeRequest};
pub use consensus::twopc::{TwoPcReply, TwoPcRequest};
use serde::{Deserialize, Serialize};

/// A request on a vault node's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRequest {
    /// From a client (or forwarded by a node for a client).
    Client(ClientRequest),
    /// From another node; refused unless the caller's certificate is a node's.
    Node(NodeRequest),
    /// A two-phase-commit message from another node, about a secret at a
    /// version; refused unless the caller's certificate is a node's.
    TwoPc(TwoPcRequest<SecretVersion>),
}

/// The answer to a [`WireRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireResponse {
    /// The answer to a client request.
    Client(Reply),
    /// The answer to a node request.
    Node(NodeReply),
    /// The answer to a two-phase-commit message.
    TwoPc(TwoPcReply),
}
