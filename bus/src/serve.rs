//! Serving what arrives on the transport: Raft messages to the driver,
//! requests to the node or the application, each request on its own task.

use crate::application::{Application, BusTransport, WireRequestOf, WireResponseOf};
use crate::context::{ClientResponder, Context};
use crate::members::Addresses;
use crate::wire::{WireRequest, WireResponse};
use consensus::node::{Node, NodeError, NodeReply, NodeRequest};
use consensus::raft::{Message, NodeId};
use consensus::transport::InboundRequest;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Hands every inbound Raft message to the driver. The transport verified
/// the sender's certificate; a message whose `from` disagrees with it is a
/// forgery attempt and is dropped.
pub(crate) async fn pump_peer_messages(
    node: Node,
    mut messages: mpsc::Receiver<(NodeId, Message)>,
) {
    while let Some((sender, message)) = messages.recv().await {
        if message.from != sender || message.to != node.id() {
            tracing::warn!(
                "dropping a Raft message from {sender} that claims to be from {} to {}",
                message.from,
                message.to
            );
            continue;
        }
        node.deliver(message);
    }
}

/// What every request task shares.
pub(crate) struct Shared<A: Application> {
    pub(crate) node: Node,
    pub(crate) transport: Arc<BusTransport<A>>,
    pub(crate) application: Arc<A>,
    pub(crate) addresses: Addresses,
}

/// Serves every request on its own task until the transport closes.
pub(crate) async fn serve_requests<A: Application>(
    shared: Arc<Shared<A>>,
    mut requests: mpsc::Receiver<InboundRequest<WireRequestOf<A>, WireResponseOf<A>>>,
) {
    while let Some(inbound) = requests.recv().await {
        tokio::spawn(serve_one(shared.clone(), inbound));
    }
}

async fn serve_one<A: Application>(
    shared: Arc<Shared<A>>,
    inbound: InboundRequest<WireRequestOf<A>, WireResponseOf<A>>,
) {
    let InboundRequest {
        origin,
        request,
        responder,
    } = inbound;
    let application = &shared.application;
    let response = match request {
        WireRequest::Node(request) => WireResponse::Node(match origin.node() {
            Some(from) => node_request(&shared, from, request).await,
            None => NodeReply::Failed(NodeError::Refused(
                "node requests are accepted only from node certificates".into(),
            )),
        }),
        WireRequest::Peer(request) => WireResponse::Peer(match origin.node() {
            Some(from) => application.serve_peer(from, request).await,
            None => A::refuse_peer(
                "node-to-node messages are accepted only from node certificates".into(),
            ),
        }),
        WireRequest::Client(request) => {
            let context = Context {
                node: shared.node.clone(),
                transport: shared.transport.clone(),
                origin,
                addresses: shared.addresses.clone(),
            };
            if application.streams(&request) {
                let responder = ClientResponder { responder };
                return application
                    .serve_client_stream(&context, request, responder)
                    .await;
            }
            WireResponse::Client(application.serve_client(&context, request).await)
        }
    };
    responder.respond(response);
}

/// A runtime request from another node. A forwarded proposal passes the
/// application's check first ([`Application::check_forwarded_proposal`]).
async fn node_request<A: Application>(
    shared: &Shared<A>,
    from: NodeId,
    request: NodeRequest,
) -> NodeReply {
    if let NodeRequest::Propose(command) = &request {
        if let Err(refusal) = shared.application.check_forwarded_proposal(command).await {
            return NodeReply::Failed(NodeError::Refused(refusal));
        }
    }
    shared.node.handle_peer_request(from, request).await
}
