//! What travels on request streams between clients and nodes, and between
//! nodes: one enum for the transport, so one endpoint serves both, generic
//! over the application's own request and reply types.
//!
//! Variants are only ever appended: postcard numbers them by position, so a
//! node of an older build still decodes the ones it knows. The vault's
//! requests were `{Client, Node, TwoPc}` before the bus existed, and
//! [`WireRequest::Peer`] is that third variant, so its encoding is unchanged.

use consensus::node::{NodeReply, NodeRequest};
use serde::{Deserialize, Serialize};

/// A request on a node's endpoint: `C` is the application's client request,
/// `P` its own node-to-node request (e.g. a two-phase-commit vote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRequest<C, P> {
    /// From a client (or forwarded by a node for a client).
    Client(C),
    /// A runtime request from another node (a forwarded proposal, a read
    /// index); refused unless the caller's certificate is a node's.
    Node(NodeRequest),
    /// The application's own request from another node; refused unless the
    /// caller's certificate is a node's.
    Peer(P),
}

/// The answer to a [`WireRequest`]: `R` answers `C`, `Q` answers `P`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireResponse<R, Q> {
    /// The answer to a client request.
    Client(R),
    /// The answer to a runtime node request.
    Node(NodeReply),
    /// The answer to the application's node-to-node request.
    Peer(Q),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// postcard numbers variants by position: Client 0, Node 1, Peer 2, as
    /// the vault's `{Client, Node, TwoPc}` were before the bus.
    #[test]
    fn variants_keep_their_wire_numbers() {
        let client = postcard::to_stdvec(&WireRequest::<u8, u8>::Client(7)).unwrap();
        let node =
            postcard::to_stdvec(&WireRequest::<u8, u8>::Node(NodeRequest::ReadIndex)).unwrap();
        let peer = postcard::to_stdvec(&WireRequest::<u8, u8>::Peer(9)).unwrap();
        assert_eq!((client[0], node[0], peer[0]), (0, 1, 2));
        let reply = postcard::to_stdvec(&WireResponse::<u8, u8>::Peer(9)).unwrap();
        assert_eq!(reply[0], 2);
    }
}
