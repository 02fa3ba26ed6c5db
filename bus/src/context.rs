//! What a client request sees of the node serving it ([`Context`]), how a
//! streamed answer is sent ([`ClientResponder`]), and the application's
//! requests to other nodes ([`Peers`]).

use crate::application::{Application, BusTransport, WireResponseOf};
use crate::members::{self, Addresses, Member};
use crate::wire::{WireRequest, WireResponse};
use certs::Identity;
use consensus::node::{Node, NodeError, ReadConsistency};
use consensus::raft::{LogIndex, NodeId, Term};
use consensus::transport::{
    RequestOrigin, Responder, StreamClosed, StreamResponder, TransportError,
};
use std::sync::Arc;

/// The node serving one client request, and who asked.
pub struct Context<A: Application> {
    pub(crate) node: Node,
    pub(crate) transport: Arc<BusTransport<A>>,
    pub(crate) origin: RequestOrigin,
    pub(crate) addresses: Addresses,
}

/// What a node reports about itself for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStatus {
    /// The node.
    pub id: NodeId,
    /// The address it listens on.
    pub addr: String,
    /// `leader`, `follower`, `learner`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Its current term.
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// Its applied index.
    pub applied_index: LogIndex,
    /// Why it refuses writes (its disk), if it does.
    pub writes_refused: Option<String>,
}

/// Why a request could not be forwarded to the leader.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The leader could not be reached.
    #[error("cannot reach the leader {leader}: {source}")]
    Unreachable {
        /// The leader.
        leader: NodeId,
        /// What went wrong.
        #[source]
        source: TransportError,
    },
    /// The leader answered with something other than a client reply.
    #[error("{0} answered with a node reply")]
    WrongReply(NodeId),
}

impl<A: Application> Context<A> {
    /// The Raft node: status, applied index and the rest of its API.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Who opened the request stream, as the transport verified it.
    pub fn origin(&self) -> &RequestOrigin {
        &self.origin
    }

    /// The identity the request acts for: the client, also when a node
    /// forwarded its request.
    pub fn caller(&self) -> &Identity {
        self.origin.acting_for()
    }

    /// Proposes `command` (forwarded to the leader by a follower) and
    /// returns the state machine's response once applied here.
    pub async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        self.node.propose(command).await
    }

    /// Answers `query` from the state machine, linearizable (ReadIndex,
    /// through the leader) or stale (this node's state as it is).
    pub async fn read(
        &self,
        query: Vec<u8>,
        consistency: ReadConsistency,
    ) -> Result<Vec<u8>, NodeError> {
        self.node.read(query, consistency).await
    }

    /// This node's status.
    pub fn status(&self) -> LocalStatus {
        let status = self.node.status();
        LocalStatus {
            id: status.id,
            addr: self
                .transport
                .local_address()
                .map(|address| address.to_string())
                .unwrap_or_default(),
            role: status.role,
            term: status.term,
            leader: status.leader,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            writes_refused: status.writes_refused,
        }
    }

    /// Hands leadership to `to` (or the most up-to-date voter); the new
    /// leader. Only the leader can: see [`Context::leader_to_forward_to`].
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        self.node.transfer_leader(to).await
    }

    /// Every member with its progress, on the leader.
    pub fn members(&self) -> Result<Vec<Member>, NodeError> {
        members::list::<A>(&self.node, &self.transport, &self.addresses)
    }

    /// Adds node `id` at `host:port` as a learner (promoted once caught
    /// up), on the leader.
    pub async fn add_member(&self, id: NodeId, address: String) -> Result<Member, NodeError> {
        members::add::<A>(&self.node, &self.transport, &self.addresses, id, address).await
    }

    /// Removes node `id`, on the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), NodeError> {
        members::remove(&self.node, id).await
    }

    /// The leader to forward this request to after `error`: the leader the
    /// error names, if it is another node and the client asked this node
    /// itself (a forwarded request is never forwarded again).
    pub fn leader_to_forward_to(&self, error: &NodeError) -> Option<NodeId> {
        match error {
            NodeError::NotLeader {
                leader: Some(leader),
            } if *leader != self.node.id()
                && self.origin.node().is_none()
                && !matches!(self.origin, RequestOrigin::Forwarded { .. }) =>
            {
                Some(*leader)
            }
            _ => None,
        }
    }

    /// Sends the client's `request` on to node `leader`, on the client's
    /// behalf, and returns its answer.
    pub async fn forward(
        &self,
        leader: NodeId,
        request: A::Request,
    ) -> Result<A::Reply, ForwardError> {
        match self
            .transport
            .forward(leader, self.caller(), &WireRequest::Client(request))
            .await
        {
            Ok(WireResponse::Client(reply)) => Ok(reply),
            Ok(WireResponse::Node(_) | WireResponse::Peer(_)) => {
                Err(ForwardError::WrongReply(leader))
            }
            Err(source) => Err(ForwardError::Unreachable { leader, source }),
        }
    }
}

/// Answers one client request that [`Application::streams`] picked: one
/// reply, or a stream of them.
pub struct ClientResponder<A: Application> {
    pub(crate) responder: Responder<WireResponseOf<A>>,
}

impl<A: Application> ClientResponder<A> {
    /// Answers with one reply.
    pub fn respond(self, reply: A::Reply) {
        self.responder.respond(WireResponse::Client(reply));
    }

    /// Answers with replies sent one by one on the returned stream; the
    /// answer ends when it is dropped.
    pub fn respond_stream(self) -> ClientStream<A> {
        ClientStream {
            stream: self.responder.respond_stream(),
        }
    }
}

/// The replies of a streamed answer ([`ClientResponder::respond_stream`]).
pub struct ClientStream<A: Application> {
    stream: StreamResponder<WireResponseOf<A>>,
}

impl<A: Application> ClientStream<A> {
    /// Sends the next reply, waiting while the reader is behind; `Err`
    /// once nobody reads any more.
    pub async fn send(&self, reply: A::Reply) -> Result<(), StreamClosed> {
        self.stream.send(WireResponse::Client(reply)).await
    }
}

/// The application's requests to other nodes
/// ([`Application::PeerRequest`]).
pub struct Peers<A: Application> {
    transport: Arc<BusTransport<A>>,
}

impl<A: Application> Clone for Peers<A> {
    fn clone(&self) -> Self {
        Peers {
            transport: self.transport.clone(),
        }
    }
}

/// Why a request to another node got no answer of the application's.
#[derive(Debug, thiserror::Error)]
pub enum PeerCallError {
    /// The node could not be reached.
    #[error("{to} is unreachable: {source}")]
    Unreachable {
        /// The node.
        to: NodeId,
        /// What went wrong.
        #[source]
        source: TransportError,
    },
    /// The node answered with another kind of reply.
    #[error("{0} answered with another kind of reply")]
    WrongReply(NodeId),
}

impl<A: Application> Peers<A> {
    pub(crate) fn new(transport: Arc<BusTransport<A>>) -> Self {
        Peers { transport }
    }

    /// Sends `request` to node `to` and waits for its answer; callers bound
    /// the wait with their own timeout. Must be safe to repeat: a request
    /// is sent once more if the connection is found dead.
    pub async fn call(
        &self,
        to: NodeId,
        request: A::PeerRequest,
    ) -> Result<A::PeerReply, PeerCallError> {
        match self
            .transport
            .request(to, &WireRequest::Peer(request))
            .await
        {
            Ok(WireResponse::Peer(reply)) => Ok(reply),
            Ok(_) => Err(PeerCallError::WrongReply(to)),
            Err(source) => Err(PeerCallError::Unreachable { to, source }),
        }
    }
}
