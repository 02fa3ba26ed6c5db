//! Serving what arrives on the transport: Raft messages to the driver,
//! requests to the node, each request on its own task.

use super::members::{self, Addresses};
use super::twopc::TwoPc;
use super::wire::TwoPcReply;
use super::{VaultTransport, WireRequest, WireResponse};
use crate::protocol::{
    decode, plan, ClientRequest, NodeStatus, Plan, Reply, Request, Response, StatusReport,
    VaultError,
};
use certs::Identity;
use consensus::node::{Node, NodeError, NodeReply, NodeRequest, ReadConsistency};
use consensus::raft::{Message, NodeId};
use consensus::transport::{InboundRequest, RequestOrigin};
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

/// Serves every request on its own task until the transport closes.
pub(crate) async fn serve_requests(
    node: Node,
    transport: Arc<VaultTransport>,
    twopc: Arc<TwoPc>,
    addresses: Addresses,
    mut requests: mpsc::Receiver<InboundRequest<WireRequest, WireResponse>>,
) {
    while let Some(inbound) = requests.recv().await {
        let node = node.clone();
        let transport = transport.clone();
        let twopc = twopc.clone();
        let addresses = addresses.clone();
        tokio::spawn(async move {
            let InboundRequest {
                origin,
                request,
                responder,
            } = inbound;
            // The one request answered with a stream of frames.
            if let WireRequest::Client(client) = &request {
                if client.request == Request::SnapshotSave {
                    super::backup::serve(&node, &origin, client.clone(), responder).await;
                    return;
                }
            }
            let response = match request {
                WireRequest::Node(request) => WireResponse::Node(match origin.node() {
                    Some(from) => peer_request(&node, &twopc, from, request).await,
                    None => NodeReply::Failed(NodeError::Refused(
                        "node requests are accepted only from node certificates".into(),
                    )),
                }),
                WireRequest::TwoPc(request) => WireResponse::TwoPc(match origin.node() {
                    Some(from) => twopc.serve(from, request).await,
                    None => TwoPcReply::Failed(
                        "two-phase-commit messages are accepted only from node certificates".into(),
                    ),
                }),
                WireRequest::Client(request) => WireResponse::Client(
                    client_request(&node, &transport, &twopc, &addresses, &origin, request).await,
                ),
            };
            responder.respond(response);
        });
    }
}

/// A request from another node. A forwarded `add-secret --update` of a
/// secret this node (often the leader) holds locked for a delete is refused
/// here, before it is proposed.
async fn peer_request(node: &Node, twopc: &TwoPc, from: NodeId, request: NodeRequest) -> NodeReply {
    if let NodeRequest::Propose(command) = &request {
        if let Err(refusal) = twopc.refuse_locked_update(command).await {
            return NodeReply::Failed(NodeError::Refused(refusal.to_string()));
        }
    }
    node.handle_peer_request(from, request).await
}

/// The owner string of an identity (`client:alice`, `admin:ops`); nodes
/// never own secrets.
pub(crate) fn owner_of(identity: &Identity) -> Result<String, VaultError> {
    match identity {
        Identity::Client(name) => Ok(format!("client:{name}")),
        Identity::Admin(name) => Ok(format!("admin:{name}")),
        Identity::Node(_) => Err(VaultError::PermissionDenied(
            "a node certificate cannot act as a client".into(),
        )),
    }
}

async fn client_request(
    node: &Node,
    transport: &VaultTransport,
    twopc: &Arc<TwoPc>,
    addresses: &Addresses,
    origin: &RequestOrigin,
    request: ClientRequest,
) -> Reply {
    let owner = owner_of(origin.acting_for())?;
    tracing::info!(
        "Node {} runs client RPC {} called by {owner}",
        node.id(),
        request_name(&request.request)
    );
    match plan(&owner, request.clone(), now_ms())? {
        Plan::Propose(command) => {
            twopc.refuse_locked_update(&command).await?;
            decode_reply(node.propose(command).await)
        }
        Plan::Read { query, stale } => {
            let consistency = if stale {
                ReadConsistency::Stale
            } else {
                ReadConsistency::Linearizable
            };
            decode_reply(node.read(query, consistency).await)
        }
        Plan::Runtime(Request::Status) => Ok(Response::Status(StatusReport {
            nodes: vec![local_status(node, transport)],
        })),
        Plan::Runtime(Request::TransferLeader { to }) => match node.transfer_leader(to).await {
            Ok(leader) => Ok(Response::LeaderTransferred { leader }),
            Err(NodeError::NotLeader {
                leader: Some(leader),
            }) if origin.node().is_none() && !matches!(origin, RequestOrigin::Forwarded { .. }) => {
                forward(transport, leader, origin.acting_for(), request).await
            }
            Err(error) => Err(node_error(error)),
        },
        Plan::Runtime(Request::Delete { name }) => {
            twopc.delete(&owner, &name, request.session).await
        }
        Plan::Runtime(
            member_request @ (Request::MemberList
            | Request::MemberAdd { .. }
            | Request::MemberRemove { .. }),
        ) => match members::serve(node, transport, addresses, member_request).await {
            Err(NodeError::NotLeader {
                leader: Some(leader),
            }) if leader != node.id()
                && origin.node().is_none()
                && !matches!(origin, RequestOrigin::Forwarded { .. }) =>
            {
                forward(transport, leader, origin.acting_for(), request).await
            }
            outcome => outcome.map_err(node_error),
        },
        Plan::Runtime(other) => Err(VaultError::Invalid(format!(
            "{} is not served by this node",
            request_name(&other)
        ))),
    }
}

/// Sends a client request on to the leader, on behalf of the client.
async fn forward(
    transport: &VaultTransport,
    leader: NodeId,
    client: &Identity,
    request: ClientRequest,
) -> Reply {
    match transport
        .forward(leader, client, &WireRequest::Client(request))
        .await
    {
        Ok(WireResponse::Client(reply)) => reply,
        Ok(WireResponse::Node(_) | WireResponse::TwoPc(_)) => Err(VaultError::Internal(format!(
            "{leader} answered with a node reply"
        ))),
        Err(error) => Err(VaultError::Unavailable(format!(
            "cannot reach the leader {leader}: {error}"
        ))),
    }
}

fn local_status(node: &Node, transport: &VaultTransport) -> NodeStatus {
    let status = node.status();
    NodeStatus {
        id: status.id,
        addr: transport
            .local_address()
            .map(|address| address.to_string())
            .unwrap_or_default(),
        role: status.role,
        term: status.term,
        leader: status.leader,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        reachable: true,
        writes_refused: status.writes_refused,
    }
}

fn decode_reply(outcome: Result<Vec<u8>, NodeError>) -> Reply {
    let bytes = outcome.map_err(node_error)?;
    decode::<Reply>(&bytes).map_err(|error| {
        VaultError::Internal(format!("undecodable state machine reply: {error}"))
    })?
}

/// The client-facing error for a runtime error.
pub(crate) fn node_error(error: NodeError) -> VaultError {
    match error {
        NodeError::NotLeader { .. } | NodeError::Unavailable => VaultError::Unavailable(
            "no leader or quorum within the timeout; the cluster is unavailable".into(),
        ),
        // Exit code 6 like "unavailable": nothing was done, and the same
        // request may succeed later or on another node (the client tries
        // the others first).
        NodeError::Busy => VaultError::Unavailable(
            "the node is busy: too many requests in progress; retry later".into(),
        ),
        NodeError::Refused(reason) => VaultError::Conflict(reason),
        disk @ NodeError::DiskFull(_) => VaultError::Unavailable(disk.to_string()),
        NodeError::NotMember(node) => {
            VaultError::NotFound(format!("{node} is not a member of the cluster"))
        }
        other => VaultError::Internal(other.to_string()),
    }
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::AddSecret { .. } => "AddSecret",
        Request::GetSecret { .. } => "GetSecret",
        Request::List { .. } => "List",
        Request::GetVersion { .. } => "GetVersion",
        Request::History { .. } => "History",
        Request::ListShared { .. } => "ListShared",
        Request::Share { .. } => "Share",
        Request::Unshare { .. } => "Unshare",
        Request::PublishKey { .. } => "PublishKey",
        Request::PublicKey { .. } => "PublicKey",
        Request::Grants { .. } => "Grants",
        Request::Delete { .. } => "Delete",
        Request::Status => "Status",
        Request::TransferLeader { .. } => "TransferLeader",
        Request::MemberList => "MemberList",
        Request::MemberAdd { .. } => "MemberAdd",
        Request::MemberRemove { .. } => "MemberRemove",
        Request::SnapshotSave => "SnapshotSave",
    }
}

/// Wall-clock milliseconds, stamped into commands by the proposing node so
/// that applying them stays deterministic on every node.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node at its limit of requests in progress says so, with the exit
    /// code of "unavailable" (SPEC §8: 6), not as an internal error.
    #[test]
    fn a_busy_node_is_reported_as_busy_with_exit_code_6() {
        let error = node_error(NodeError::Busy);
        // Unavailable is exit code 6 at the CLI.
        assert!(matches!(&error, VaultError::Unavailable(_)), "{error:?}");
        assert!(error.to_string().contains("busy"), "{error}");
    }
}
