//! The plug-in boundary: what an application implements ([`Application`]
//! to serve, [`Launch`] to start) and what the bus gives it in return
//! ([`Services`] at start, a [`Context`] per client request).

use crate::context::{ClientResponder, Context};
use crate::wire::{WireRequest, WireResponse};
use consensus::raft::{Message, NodeId};
use consensus::state_machine::StateMachine;
use consensus::transport::Transport;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// What can travel in a frame: every request and reply type of an
/// application. Implemented for every type that qualifies.
pub trait Payload:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
}

impl<T> Payload for T where
    T: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
}

/// A request on the endpoint of a node running application `A`.
pub type WireRequestOf<A> =
    WireRequest<<A as Application>::Request, <A as Application>::PeerRequest>;

/// The answer to a [`WireRequestOf<A>`].
pub type WireResponseOf<A> = WireResponse<<A as Application>::Reply, <A as Application>::PeerReply>;

/// The QUIC transport of a node running application `A`: Raft messages
/// between peers, and the application's requests.
pub type BusTransport<A> = Transport<Message, WireRequestOf<A>, WireResponseOf<A>>;

/// An application served by the bus: its state machine, the requests its
/// clients send and the replies they get, and its own node-to-node
/// requests (two-phase commit, for one).
///
/// # Contract
///
/// - Every client request runs on its own task; the bus has already
///   checked the caller's certificate, and [`Context::caller`] says who it
///   is. Authorization is the application's.
/// - A command proposed through [`Context::propose`] is applied on every
///   node, in log order, by [`Application::StateMachine`]; its answer is
///   the state machine's response bytes on the node that proposed it. A
///   follower forwards the proposal to the leader by itself.
/// - Reads go through [`Context::read`]: linearizable (ReadIndex) or
///   stale, answered by [`StateMachine::query`].
/// - [`Application::serve_peer`] is called only for requests from node
///   certificates; the bus refuses the others with
///   [`Application::refuse_peer`].
pub trait Application: Send + Sync + Sized + 'static {
    /// The replicated state machine every node applies committed commands to.
    type StateMachine: StateMachine;
    /// What a client sends.
    type Request: Payload;
    /// What a client gets back.
    type Reply: Payload;
    /// What one node of the application asks another (beyond Raft).
    type PeerRequest: Payload;
    /// The answer to a [`Application::PeerRequest`].
    type PeerReply: Payload;

    /// Serves one client request.
    fn serve_client(
        &self,
        context: &Context<Self>,
        request: Self::Request,
    ) -> impl Future<Output = Self::Reply> + Send;

    /// Serves one of the application's requests from node `from`.
    fn serve_peer(
        &self,
        from: NodeId,
        request: Self::PeerRequest,
    ) -> impl Future<Output = Self::PeerReply> + Send;

    /// The answer to a node-to-node request the bus refused (it did not
    /// come from a node certificate): `reason` is one sentence.
    fn refuse_peer(reason: String) -> Self::PeerReply;

    /// Whether `request` is answered with a stream of replies (a large
    /// download) by [`Application::serve_client_stream`]. The default: none is.
    fn streams(&self, request: &Self::Request) -> bool {
        let _ = request;
        false
    }

    /// Serves a request [`Application::streams`] picked, answering through
    /// `responder` with one reply or a stream of them. The default answers
    /// with [`Application::serve_client`]'s one reply.
    fn serve_client_stream(
        &self,
        context: &Context<Self>,
        request: Self::Request,
        responder: ClientResponder<Self>,
    ) -> impl Future<Output = ()> + Send {
        async move { responder.respond(self.serve_client(context, request).await) }
    }

    /// Checks a command another node forwarded for proposing here, before
    /// it is proposed: `Err` refuses it with that sentence. The default lets
    /// every command through (the state machine has the last word anyway).
    fn check_forwarded_proposal(
        &self,
        command: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = command;
        async { Ok(()) }
    }
}

/// How a node of an application starts, in two steps around the start of
/// the Raft node: [`Launch::open`] opens the state machine once the node
/// may start (its Raft state is there, its certificates load, its port is
/// bound), [`Launch::start`] builds the application once the Raft node runs.
pub trait Launch {
    /// The application this starts.
    type Application: Application;
    /// Why the application could not open or start.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens the state machine. Nothing of the application should be
    /// written before this is called: a node refused at start leaves its
    /// data directory as it found it.
    fn open(&mut self) -> Result<<Self::Application as Application>::StateMachine, Self::Error>;

    /// Builds the application on the running node; background work goes
    /// through [`Services::spawn`] so that it stops with the node.
    fn start(
        self,
        services: &mut Services<Self::Application>,
    ) -> Result<Self::Application, Self::Error>;
}

/// What the bus hands an application at start ([`Launch::start`]).
pub struct Services<A: Application> {
    pub(crate) node: consensus::node::Node,
    pub(crate) transport: Arc<BusTransport<A>>,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<A: Application> Services<A> {
    /// The running Raft node: propose, read, status.
    pub fn node(&self) -> &consensus::node::Node {
        &self.node
    }

    /// The node's transport, for the application's node-to-node requests
    /// ([`crate::Peers`] wraps it).
    pub fn transport(&self) -> &Arc<BusTransport<A>> {
        &self.transport
    }

    /// A handle for the application's requests to other nodes.
    pub fn peers(&self) -> crate::Peers<A> {
        crate::Peers::new(self.transport.clone())
    }

    /// Runs `task` until the node shuts down (it is aborted then).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }
}
