//! [`QuicNetwork`]: the node runtime's [`PeerNetwork`] over the QUIC transport.

use crate::application::{Application, BusTransport};
use crate::wire::{WireRequest, WireResponse};
use consensus::node::{NodeError, NodeReply, NodeRequest, PeerNetwork, RpcFuture};
use consensus::raft::{Membership, Message, NodeId};
use consensus::transport::PeerAddress;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;

/// Sends Raft messages on per-peer streams and node requests on their own
/// request streams, and keeps the transport's peers and trusted nodes equal
/// to the members of the configuration in force.
pub struct QuicNetwork<A: Application> {
    transport: Arc<BusTransport<A>>,
    /// The latest membership the driver adopted, for [`follow_membership`]:
    /// applying a change may resolve host names (blocking), so it runs
    /// there, never on the driver's task; a watch keeps only the latest.
    membership: watch::Sender<Option<(Membership, Membership)>>,
}

impl<A: Application> QuicNetwork<A> {
    /// Wraps a bound transport whose peers are the ones of the node's
    /// configuration file (`configured`, this node excluded). Must be
    /// called within the tokio runtime: it starts the task that follows
    /// membership changes.
    pub fn new(transport: Arc<BusTransport<A>>, configured: BTreeMap<NodeId, PeerAddress>) -> Self {
        let (membership, changes) = watch::channel(None);
        // Until the driver names the members, trust the configured peers
        // only, from the first packet on.
        transport.set_trusted_nodes(Some(configured.keys().copied().collect()));
        tokio::spawn(follow_membership::<A>(
            transport.clone(),
            configured,
            changes,
        ));
        QuicNetwork {
            transport,
            membership,
        }
    }
}

impl<A: Application> PeerNetwork for QuicNetwork<A> {
    fn send(&self, message: Message) {
        let to = message.to;
        if let Err(error) = self.transport.send(to, message) {
            tracing::trace!("message to {to} dropped: {error}");
        }
    }

    fn call(&self, to: NodeId, request: NodeRequest) -> RpcFuture<'_> {
        Box::pin(async move {
            match self
                .transport
                .request(to, &WireRequest::Node(request))
                .await
            {
                Ok(WireResponse::Node(reply)) => Ok(reply),
                Ok(WireResponse::Client(_) | WireResponse::Peer(_)) => Ok(NodeReply::Failed(
                    NodeError::Refused(format!("{to} answered a node request with a client reply")),
                )),
                Err(error) => {
                    tracing::debug!("request to {to} failed: {error}");
                    Err(NodeError::Unavailable)
                }
            }
        })
    }

    fn members_changed(&self, latest: &Membership, committed: &Membership) {
        let _ = self
            .membership
            .send(Some((latest.clone(), committed.clone())));
    }
}

/// Applies each membership the driver adopts to the transport until the
/// network is dropped: dial exactly the other members (of the latest and
/// the committed membership), at the address the membership records for
/// them or else the configured one, and trust only them (SPEC §13). Before the node knows any membership (a joiner
/// that has not heard from a leader yet) it keeps its configured peers and
/// trusts exactly them, so no stranger can feed it a log.
async fn follow_membership<A: Application>(
    transport: Arc<BusTransport<A>>,
    configured: BTreeMap<NodeId, PeerAddress>,
    mut changes: watch::Receiver<Option<(Membership, Membership)>>,
) {
    let me = transport.node_id();
    while changes.changed().await.is_ok() {
        let Some((latest, committed)) = changes.borrow_and_update().clone() else {
            continue;
        };
        let members: BTreeSet<NodeId> = [&latest, &committed]
            .into_iter()
            .flat_map(|membership| membership.voters.iter().chain(&membership.learners))
            .copied()
            .collect();
        if members.is_empty() {
            continue;
        }
        // Trust first, so a removed node is cut off before anything else.
        transport.set_trusted_nodes(Some(members.clone()));
        for id in transport.peer_ids() {
            if !members.contains(&id) {
                tracing::info!("Node {me} forgets {id}: no longer a member");
                transport.remove_peer(id);
            }
        }
        for id in members.iter().filter(|id| **id != me) {
            let recorded = latest
                .addresses
                .get(id)
                .or_else(|| committed.addresses.get(id));
            let address = match recorded {
                Some(recorded) => resolve(recorded)
                    .await
                    .or_else(|| configured.get(id).cloned()),
                None => configured.get(id).cloned(),
            };
            let Some(address) = address else {
                tracing::warn!(
                    "Node {me} knows no address for member {id}: not in its configuration \
                     file and none recorded when it was added"
                );
                continue;
            };
            if transport.peer_address(*id).as_ref() != Some(&address) {
                tracing::info!(
                    "Node {me} reaches member {id} at {}:{}",
                    address.server_name,
                    address.address.port()
                );
                transport.add_peer(*id, address);
            }
        }
    }
}

/// Resolves a recorded `host:port` off the async threads (a host name may
/// need the system resolver).
async fn resolve(endpoint: &str) -> Option<PeerAddress> {
    let owned = endpoint.to_string();
    match tokio::task::spawn_blocking(move || PeerAddress::resolve(&owned)).await {
        Ok(Ok(address)) => Some(address),
        Ok(Err(error)) => {
            tracing::warn!("cannot resolve member address {endpoint:?}: {error}");
            None
        }
        Err(_) => None,
    }
}
