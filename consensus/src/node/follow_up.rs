//! The follow-up task: sends what had to wait for a batch of the Raft log
//! to be durable, and tells the driver, in submission order.

use super::network::PeerNetwork;
use super::Fatal;
use super::LogOperation;
use crate::raft::{LogIndex, Message, Term};
use crate::storage::Durable;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A persisted batch's follow-up: what to send and acknowledge once durable.
pub(super) struct PersistFollowUp {
    pub(super) durable: Durable,
    pub(super) messages: Vec<Message>,
    pub(super) acknowledge: Option<(LogIndex, Term)>,
}

/// What the follow-up task reports once a batch is durable (or failed,
/// which is fatal).
pub(super) type PersistReport = Result<Option<(LogIndex, Term)>, Fatal>;

/// Waits for each persisted batch in submission order, then sends what had
/// to wait for it and tells the driver. One task keeps the order: the log
/// writer completes batches in order, so awaiting them in order never holds
/// a durable batch behind a later one.
pub(super) fn spawn_follow_up_task<N: PeerNetwork>(
    network: Arc<N>,
    persisted: mpsc::UnboundedSender<PersistReport>,
) -> mpsc::UnboundedSender<PersistFollowUp> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<PersistFollowUp>();
    tokio::spawn(async move {
        while let Some(follow_up) = receiver.recv().await {
            match follow_up.durable.await {
                Ok(()) => {
                    for message in follow_up.messages {
                        tracing::debug!(
                            "Node {} sends RPC {} to Node {}",
                            message.from,
                            message.rpc_name(),
                            message.to
                        );
                        network.send(message);
                    }
                    let _ = persisted.send(Ok(follow_up.acknowledge));
                }
                Err(error) => {
                    // Nothing that depended on this batch may be sent, and
                    // the node must stop: its durable state is in doubt.
                    let _ = persisted.send(Err(Fatal::Storage {
                        operation: LogOperation::Write,
                        message: error.to_string(),
                    }));
                    return;
                }
            }
        }
    });
    sender
}
