//! Serving `snapshot save` (SPEC §14): a consistent copy of the replicated
//! state, streamed to an admin in chunks.
//!
//! The node runs a linearizable ReadIndex round, waits until it has applied
//! through that index, pins the state machine's view (the same consistent
//! SQLite read transaction a Raft snapshot uses) and serialises it off the
//! apply thread ([`consensus::node::Node::backup_snapshot`]). So the copy holds every write
//! acknowledged before the request, is taken at one committed index, and
//! holds only what the nodes hold: ciphertext. It then goes out as
//! [`Response::SnapshotStarted`] and 1 MiB [`Response::SnapshotChunk`]s on
//! the request's stream; the transport queues at most two frames, so a
//! slow reader holds the node's memory at the one copy of the state.

use super::handler::{node_error, owner_of, VaultApplication};
use crate::protocol::{plan, ClientRequest, Response};
use bus::{ClientResponder, Context};

/// Bytes of state per chunk frame: well inside the 16 MiB frame limit of
/// both sides, large enough that framing costs nothing.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Answers a `SnapshotSave` request: refused (one frame, an error) unless
/// the caller is an admin and the cluster confirms a read index in time;
/// otherwise the streamed state.
pub(crate) async fn serve(
    context: &Context<VaultApplication>,
    request: ClientRequest,
    responder: ClientResponder<VaultApplication>,
) {
    let node = context.node();
    let owner = match owner_of(context.caller()) {
        Ok(owner) => owner,
        Err(error) => return responder.respond(Err(error)),
    };
    tracing::info!(
        "Node {} runs client RPC SnapshotSave called by {owner}",
        node.id()
    );
    // The same authorization as every other request: admin identities only.
    if let Err(error) = plan(&owner, request, 0) {
        return responder.respond(Err(error));
    }
    let snapshot = match node.backup_snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => return responder.respond(Err(node_error(error))),
    };
    let started = Response::SnapshotStarted {
        index: snapshot.index,
        term: snapshot.term,
        bytes: snapshot.data.len() as u64,
    };
    let stream = responder.respond_stream();
    if stream.send(Ok(started)).await.is_err() {
        return;
    }
    for chunk in snapshot.data.chunks(CHUNK_BYTES) {
        let frame = Ok(Response::SnapshotChunk(chunk.to_vec()));
        if stream.send(frame).await.is_err() {
            tracing::warn!(
                "Node {}: {owner} stopped reading the backup at index {}",
                node.id(),
                snapshot.index
            );
            return;
        }
    }
    tracing::info!(
        "Node {} sent {owner} a backup at index {} ({} bytes)",
        node.id(),
        snapshot.index,
        snapshot.data.len()
    );
}
