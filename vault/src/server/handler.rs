//! The vault on the bus: [`VaultApplication`] serves client requests
//! (authorization and planning in [`crate::protocol::plan`]), the 2PC
//! messages of other nodes, and checks forwarded proposals against the
//! locks of pending deletes.

use super::twopc::TwoPc;
use super::wire::{TwoPcReply, TwoPcRequest};
use crate::protocol::SecretVersion;
use crate::protocol::{
    decode, plan, ClientRequest, NodeStatus, Plan, Reply, Request, Response, StatusReport,
    VaultError,
};
use crate::store::VaultStateMachine;
use bus::{Application, ClientResponder, Context};
use certs::Identity;
use consensus::node::{NodeError, ReadConsistency};
use consensus::raft::NodeId;
use std::sync::Arc;

/// The vault plug-in as the bus serves it.
pub struct VaultApplication {
    /// The two-phase-commit service: deletes, votes, acknowledgements,
    /// recovery questions, and the locks that refuse updates.
    twopc: Arc<TwoPc>,
}

impl VaultApplication {
    pub(crate) fn new(twopc: Arc<TwoPc>) -> Self {
        VaultApplication { twopc }
    }
}

impl Application for VaultApplication {
    type StateMachine = VaultStateMachine;
    type Request = ClientRequest;
    type Reply = Reply;
    type PeerRequest = TwoPcRequest<SecretVersion>;
    type PeerReply = TwoPcReply;

    async fn serve_client(&self, context: &Context<Self>, request: ClientRequest) -> Reply {
        client_request(context, &self.twopc, request).await
    }

    async fn serve_peer(&self, from: NodeId, request: TwoPcRequest<SecretVersion>) -> TwoPcReply {
        self.twopc.serve(from, request).await
    }

    fn refuse_peer(_reason: String) -> TwoPcReply {
        TwoPcReply::Failed(
            "two-phase-commit messages are accepted only from node certificates".into(),
        )
    }

    /// The one request answered with a stream of frames: `snapshot save`.
    fn streams(&self, request: &ClientRequest) -> bool {
        request.request == Request::SnapshotSave
    }

    async fn serve_client_stream(
        &self,
        context: &Context<Self>,
        request: ClientRequest,
        responder: ClientResponder<Self>,
    ) {
        super::backup::serve(context, request, responder).await
    }

    /// A forwarded `add-secret --update` of a secret this node (often the
    /// leader) holds locked for a delete is refused here, before it is
    /// proposed.
    async fn check_forwarded_proposal(&self, command: &[u8]) -> Result<(), String> {
        self.twopc
            .refuse_locked_update(command)
            .await
            .map_err(|refusal| refusal.to_string())
    }
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
    context: &Context<VaultApplication>,
    twopc: &Arc<TwoPc>,
    request: ClientRequest,
) -> Reply {
    let owner = owner_of(context.caller())?;
    tracing::info!(
        "Node {} runs client RPC {} called by {owner}",
        context.node().id(),
        request_name(&request.request)
    );
    match plan(&owner, request.clone(), now_ms())? {
        Plan::Propose(command) => {
            twopc.refuse_locked_update(&command).await?;
            decode_reply(context.propose(command).await)
        }
        Plan::Read { query, stale } => {
            let consistency = if stale {
                ReadConsistency::Stale
            } else {
                ReadConsistency::Linearizable
            };
            decode_reply(context.read(query, consistency).await)
        }
        Plan::Runtime(Request::Status) => Ok(Response::Status(StatusReport {
            nodes: vec![local_status(context)],
        })),
        Plan::Runtime(Request::TransferLeader { to }) => match context.transfer_leader(to).await {
            Ok(leader) => Ok(Response::LeaderTransferred { leader }),
            Err(error) => on_leader(context, error, request).await,
        },
        Plan::Runtime(Request::Delete { name }) => {
            twopc.delete(&owner, &name, request.session).await
        }
        Plan::Runtime(Request::MemberList) => match context.members() {
            Ok(members) => Ok(Response::Members(members)),
            Err(error) => on_leader(context, error, request).await,
        },
        Plan::Runtime(Request::MemberAdd { id, addr }) => {
            match context.add_member(id, addr).await {
                Ok(member) => Ok(Response::MemberAdded(member)),
                Err(error) => on_leader(context, error, request).await,
            }
        }
        Plan::Runtime(Request::MemberRemove { id }) => match context.remove_member(id).await {
            Ok(()) => Ok(Response::MemberRemoved { id }),
            Err(error) => on_leader(context, error, request).await,
        },
        Plan::Runtime(other) => Err(VaultError::Invalid(format!(
            "{} is not served by this node",
            request_name(&other)
        ))),
    }
}

/// After a leader-only request failed with `error`: forwards it to the
/// leader if the bus says to (a follower asked by the client itself),
/// otherwise reports the error.
async fn on_leader(
    context: &Context<VaultApplication>,
    error: NodeError,
    request: ClientRequest,
) -> Reply {
    match context.leader_to_forward_to(&error) {
        Some(leader) => context
            .forward(leader, request)
            .await
            .map_err(|error| match error {
                bus::ForwardError::Unreachable { .. } => VaultError::Unavailable(error.to_string()),
                bus::ForwardError::WrongReply(_) => VaultError::Internal(error.to_string()),
            })?,
        None => Err(node_error(error)),
    }
}

fn local_status(context: &Context<VaultApplication>) -> NodeStatus {
    let status = context.status();
    NodeStatus {
        id: status.id,
        addr: status.addr,
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
