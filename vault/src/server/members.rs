//! `member list`, `member add`, `member remove` (SPEC §13), served by the
//! leader: a follower answers [`NodeError::NotLeader`] and the handler
//! forwards the request.

use super::VaultTransport;
use crate::protocol::{MemberInfo, Request, Response};
use consensus::node::{MemberStatus, Node, NodeError, NodeStatus};
use consensus::raft::{MembershipChange, NodeId, Role};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every member's `host:port` from this node's configuration file (this
/// node included): the addresses of founding members, which the
/// membership itself does not record.
pub(crate) type Addresses = Arc<BTreeMap<NodeId, String>>;

/// Serves one membership request on the leader.
pub(crate) async fn serve(
    node: &Node,
    transport: &VaultTransport,
    addresses: &Addresses,
    request: Request,
) -> Result<Response, NodeError> {
    match request {
        Request::MemberList => {
            let status = node.status();
            if status.role != Role::Leader.to_string() {
                return Err(NodeError::NotLeader {
                    leader: status.leader,
                });
            }
            Ok(Response::Members(member_infos(
                &status, transport, addresses,
            )))
        }
        Request::MemberAdd { id, addr } => {
            check_address(&addr)?;
            let change = MembershipChange::AddLearner {
                node: id,
                address: addr,
            };
            let status = node.change_membership_and_wait(change).await?;
            let info = member_infos(&status, transport, addresses)
                .into_iter()
                .find(|member| member.id == id)
                .ok_or(NodeError::Superseded)?;
            tracing::info!(
                "Node {} added {id} at {} as a learner",
                node.id(),
                info.addr
            );
            Ok(Response::MemberAdded(info))
        }
        Request::MemberRemove { id } => {
            node.change_membership_and_wait(MembershipChange::RemoveNode(id))
                .await?;
            tracing::info!("Node {} removed {id} from the cluster", node.id());
            Ok(Response::MemberRemoved { id })
        }
        other => Err(NodeError::Refused(format!(
            "{other:?} is not a membership request"
        ))),
    }
}

/// `host:port` with a non-empty host and a port number; resolution is left
/// to the nodes, which may see other names than the client.
fn check_address(addr: &str) -> Result<(), NodeError> {
    let valid = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(NodeError::Refused(format!(
            "invalid address {addr:?}: expected HOST:PORT"
        )))
    }
}

fn member_infos(
    status: &NodeStatus,
    transport: &VaultTransport,
    addresses: &Addresses,
) -> Vec<MemberInfo> {
    status
        .members
        .iter()
        .map(|member| member_info(status, member, transport, addresses))
        .collect()
}

fn member_info(
    status: &NodeStatus,
    member: &MemberStatus,
    transport: &VaultTransport,
    addresses: &Addresses,
) -> MemberInfo {
    let addr = member
        .address
        .clone()
        .or_else(|| addresses.get(&member.id).cloned())
        .or_else(|| {
            transport
                .peer_address(member.id)
                .map(|peer| format!("{}:{}", peer.server_name, peer.address.port()))
        })
        .unwrap_or_default();
    MemberInfo {
        id: member.id,
        addr,
        voter: member.voter,
        leader: status.leader == Some(member.id),
        reachable: member.reachable.unwrap_or(false),
        match_index: member.match_index.unwrap_or(0),
        snapshot_bytes: member.snapshot_offset,
    }
}
