//! What travels on request streams between clients and vault nodes, and
//! between vault nodes: the bus's [`bus::WireRequest`] with the vault's
//! client request and its two-phase-commit messages.
//!
//! Variants are only ever appended: postcard numbers them by position, so a
//! node of an older build still decodes the ones it knows. The bus's
//! `Client`, `Node`, `Peer` are the vault's former `Client`, `Node`,
//! `TwoPc`, so the encoding is unchanged.

use crate::protocol::{ClientRequest, Reply, SecretVersion};
pub use consensus::twopc::{TwoPcReply, TwoPcRequest};

/// A request on a vault node's endpoint: from a client (or forwarded by a
/// node for a client), a runtime request from another node, or a
/// two-phase-commit message (SPEC §6) about a secret at a version from
/// another node.
pub type WireRequest = bus::WireRequest<ClientRequest, TwoPcRequest<SecretVersion>>;

/// The answer to a [`WireRequest`].
pub type WireResponse = bus::WireResponse<Reply, TwoPcReply>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Request};
    use consensus::twopc::Decision;

    /// The vault's requests keep the wire numbers they had before the bus:
    /// Client 0, Node 1, TwoPc 2.
    #[test]
    fn the_wire_encoding_is_the_one_before_the_bus() {
        let client = encode(&WireRequest::Client(ClientRequest {
            session: None,
            request: Request::Status,
        }));
        let node = encode(&WireRequest::Node(consensus::node::NodeRequest::ReadIndex));
        let twopc = encode(&WireRequest::Peer(TwoPcRequest::Decide {
            tx: "tx".into(),
            decision: Decision::Commit,
        }));
        assert_eq!((client[0], node[0], twopc[0]), (0, 1, 2));
        let reply = encode(&WireResponse::Peer(TwoPcReply::Failed("no".into())));
        assert_eq!(reply[0], 2);
    }
}
