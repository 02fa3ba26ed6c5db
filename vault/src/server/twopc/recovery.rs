//! Recovery of transactions left prepared (SPEC §6.3): a coordinator that
//! crashed before logging a decision would otherwise leave the lock held
//! forever.

use super::{millis, wall_clock_ms, TwoPc};
use crate::protocol::SecretVersion;
use crate::server::wire::{TwoPcReply, TwoPcRequest};
use consensus::twopc::participant::{overdue, Prepared};
use std::sync::Arc;
use std::time::Duration;

impl TwoPc {
    /// Every half decision timeout, asks the leader to resolve each
    /// transaction prepared here longer than the decision timeout ago. The
    /// answer itself changes nothing here: the decision reaches this node
    /// through the log, and applying it releases the lock. Runs until the
    /// task is aborted.
    pub(crate) async fn recovery_loop(self: Arc<Self>) {
        let period = (self.options.decision_timeout / 2).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(period).await;
            self.recover_once().await;
        }
    }

    async fn recover_once(&self) {
        let prepared = match self.with_store(|store| store.prepared_transactions()).await {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::warn!("2PC recovery cannot list prepared transactions: {error}");
                return;
            }
        };
        let ages: Vec<Prepared> = prepared
            .iter()
            .map(|entry| Prepared {
                tx: entry.tx.clone(),
                prepared_at_ms: entry.created_ms,
            })
            .collect();
        let due = overdue(
            &ages,
            wall_clock_ms(),
            millis(self.options.decision_timeout),
        );
        for entry in prepared
            .iter()
            .filter(|entry| due.contains(&entry.tx.as_str()))
        {
            let me = self.node.id();
            let status = self.node.status();
            let Some(leader) = status.leader else {
                tracing::info!("Node {me} cannot resolve tx {}: no known leader", entry.tx);
                continue;
            };
            tracing::info!(
                "Phase Participant-Recovery of Node {me} asks Node {leader} to resolve tx {}",
                entry.tx
            );
            let question = TwoPcRequest::Resolve {
                tx: entry.tx.clone(),
                resource: SecretVersion {
                    owner: entry.owner.clone(),
                    name: entry.name.clone(),
                    version: entry.version,
                },
                applied_index: self.node.applied_index(),
            };
            let reply = if leader == me {
                self.serve(me, question).await
            } else {
                self.call(
                    leader,
                    question,
                    self.options.decision_timeout,
                    "no answer before the decision timeout",
                )
                .await
            };
            match reply {
                TwoPcReply::Resolved { decision } => {
                    tracing::info!("Node {me}: the log decides tx {} {decision:?}", entry.tx)
                }
                other => tracing::info!("Node {me}: tx {} not resolved yet: {other:?}", entry.tx),
            }
        }
    }
}
