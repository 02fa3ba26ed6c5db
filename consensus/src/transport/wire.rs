//! The hello frame that opens every stream and says what the stream is for.

use crate::raft::types::NodeId;
use serde::{Deserialize, Serialize};

/// Largest hello frame: a kind and at most one identity URI.
pub(crate) const HELLO_LIMIT: usize = 256;

/// The first frame of every stream. The receiver checks it against the
/// certificate identity of the connection before reading anything else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Hello {
    /// A unidirectional stream of peer messages from node `from`.
    Peer {
        /// The sending node; must be the node of the certificate.
        from: NodeId,
    },
    /// A bidirectional request stream on the caller's own behalf.
    Request,
    /// A bidirectional request stream a node opens on behalf of a client
    /// that it has authenticated itself (follower to leader forwarding).
    Forwarded {
        /// The client's identity URI (`urn:vault:client:<name>` or admin).
        client: String,
    },
}
