//! `member list`, `member add`, `member remove` (SPEC §13), served by the
//! leader: a follower answers [`NodeError::NotLeader`] and the application
//! forwards the request ([`crate::Context::leader_to_forward_to`]).

use crate::application::{Application, BusTransport};
use consensus::node::{MemberStatus, Node, NodeError, NodeStatus};
use consensus::raft::{LogIndex, MembershipChange, NodeId, Role};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every member's `host:port` from this node's configuration file (this
/// node included): the addresses of founding members, which the
/// membership itself does not record.
pub(crate) type Addresses = Arc<BTreeMap<NodeId, String>>;

/// One member of the cluster as the leader sees it (what `member list`
/// shows, SPEC §8; serializable so that an application can answer it as
/// it is).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// The member.
    pub id: NodeId,
    /// Where the members reach it, `host:port`.
    pub addr: String,
    /// Whether it votes; a learner is still catching up.
    pub voter: bool,
    /// Whether it leads.
    pub leader: bool,
    /// Whether the leader heard from it within about an election timeout.
    pub reachable: bool,
    /// How far its log matches the leader's.
    pub match_index: LogIndex,
    /// While the leader streams it a snapshot: the bytes acknowledged.
    pub snapshot_bytes: Option<u64>,
}

/// Every member, on the leader.
pub(crate) fn list<A: Application>(
    node: &Node,
    transport: &BusTransport<A>,
    addresses: &Addresses,
) -> Result<Vec<Member>, NodeError> {
    let status = node.status();
    if status.role != Role::Leader.to_string() {
        return Err(NodeError::NotLeader {
            leader: status.leader,
        });
    }
    Ok(members::<A>(&status, transport, addresses))
}

/// Adds `id` at `addr` as a learner, on the leader.
pub(crate) async fn add<A: Application>(
    node: &Node,
    transport: &BusTransport<A>,
    addresses: &Addresses,
    id: NodeId,
    addr: String,
) -> Result<Member, NodeError> {
    check_address(&addr)?;
    let change = MembershipChange::AddLearner {
        node: id,
        address: addr,
    };
    let status = node.change_membership_and_wait(change).await?;
    let member = members::<A>(&status, transport, addresses)
        .into_iter()
        .find(|member| member.id == id)
        .ok_or(NodeError::Superseded)?;
    tracing::info!(
        "Node {} added {id} at {} as a learner",
        node.id(),
        member.addr
    );
    Ok(member)
}

/// Removes `id`, on the leader.
pub(crate) async fn remove(node: &Node, id: NodeId) -> Result<(), NodeError> {
    node.change_membership_and_wait(MembershipChange::RemoveNode(id))
        .await?;
    tracing::info!("Node {} removed {id} from the cluster", node.id());
    Ok(())
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

fn members<A: Application>(
    status: &NodeStatus,
    transport: &BusTransport<A>,
    addresses: &Addresses,
) -> Vec<Member> {
    status
        .members
        .iter()
        .map(|member| member_of::<A>(status, member, transport, addresses))
        .collect()
}

fn member_of<A: Application>(
    status: &NodeStatus,
    member: &MemberStatus,
    transport: &BusTransport<A>,
    addresses: &Addresses,
) -> Member {
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
    Member {
        id: member.id,
        addr,
        voter: member.voter,
        leader: status.leader == Some(member.id),
        reachable: member.reachable.unwrap_or(false),
        match_index: member.match_index.unwrap_or(0),
        snapshot_bytes: member.snapshot_offset,
    }
}
