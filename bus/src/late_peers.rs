//! Peers whose host name did not resolve when the node started: a host
//! that is not up yet (its DNS record appears with it, as in a container
//! network) must not stop the others, so each is resolved again with
//! backoff and dialled from the moment it resolves.

use crate::application::{Application, BusTransport};
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// First pause between two resolutions of one host.
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// Longest pause between two resolutions of one host.
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// Resolves every `host:port` in `unresolved` until it resolves, then adds
/// it to `transport` unless a membership change already gave that member an
/// address. Ends once all are resolved; runs until aborted otherwise.
pub(crate) async fn resolve_later<A: Application>(
    transport: Arc<BusTransport<A>>,
    unresolved: BTreeMap<NodeId, String>,
) {
    let me = transport.node_id();
    let mut tasks = tokio::task::JoinSet::new();
    for (id, endpoint) in unresolved {
        let transport = transport.clone();
        tasks.spawn(async move {
            let address = resolve_with_backoff(me, id, &endpoint).await;
            if transport.peer_address(id).is_none() {
                tracing::info!(
                    "Node {me} resolved {endpoint} for {id} and reaches it at {}",
                    address.address
                );
                transport.add_peer(id, address);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

async fn resolve_with_backoff(me: NodeId, id: NodeId, endpoint: &str) -> PeerAddress {
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0u32;
    loop {
        let owned = endpoint.to_string();
        match tokio::task::spawn_blocking(move || PeerAddress::resolve(&owned)).await {
            Ok(Ok(address)) => return address,
            Ok(Err(error)) => {
                // Once at first, then every tenth try: the state is known.
                if attempts.is_multiple_of(10) {
                    tracing::warn!(
                        "Node {me} cannot resolve {endpoint} for {id} yet ({error}); \
                         trying again, meanwhile running without it"
                    );
                }
            }
            Err(_) => {}
        }
        attempts = attempts.saturating_add(1);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}
