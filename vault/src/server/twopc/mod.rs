//! The two-phase-commit delete on a running node (SPEC §6): the runtime
//! around the pure protocol in [`consensus::twopc`].
//!
//! - [`coordinator`]: a `delete` request makes this node the coordinator.
//! - [`participant`]: votes (the vault store is the resource manager; a
//!   secret locked by another delete is handled by wait-die, the older
//!   delete waiting for the younger one's decision), acknowledgements once
//!   the logged decision is applied, and the leader's answer to a recovery
//!   question.
//! - [`prepares`]: the thread that makes concurrent prepares durable with
//!   one fsync (group commit).
//! - [`recovery`]: the periodic task that asks the leader about
//!   transactions left prepared past the decision timeout.
//!
//! The participant works on its own SQLite connection
//! ([`VaultStateMachine::open_participant`]) because the Raft runtime owns
//! the applying one; both see the same file, and every write is a SQLite
//! transaction, so a prepare and an apply batch are serialised.

mod coordinator;
mod participant;
mod prepares;
mod pruning;
mod recovery;

use super::VaultTransport;
use crate::protocol::{decode, Operation, VaultCommand, VaultError};
use crate::store::{AppliedDecisions, StoreError, VaultStateMachine};
use consensus::node::Node;
use consensus::raft::NodeId;
use consensus::twopc::VotePolicy;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[twopc]` of the node configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoPcOptions {
    /// This node's vote policy (`abort` forces every vote to abort).
    pub vote: VotePolicy,
    /// A participant that has not voted within this time counts as an abort
    /// vote; acks are waited for as long. A vote waits at most half of it
    /// for a younger delete's lock (wait-die), so it still answers in time.
    pub vote_timeout: Duration,
    /// A transaction prepared here and undecided for this long is resolved
    /// through the leader (which aborts it if the log holds no decision).
    pub decision_timeout: Duration,
}

impl Default for TwoPcOptions {
    fn default() -> Self {
        TwoPcOptions {
            vote: VotePolicy::Commit,
            vote_timeout: Duration::from_secs(2),
            decision_timeout: Duration::from_secs(10),
        }
    }
}

/// This node's two-phase-commit service, shared by the request handlers and
/// the recovery task.
pub(crate) struct TwoPc {
    /// Proposals (decisions) and linearizable reads go through Raft.
    node: Node,
    /// Vote, Decide and Resolve messages to other nodes.
    transport: Arc<VaultTransport>,
    /// The participant's own connection to the vault database. A std mutex:
    /// it is only locked inside `spawn_blocking` or by the prepare thread,
    /// never across an await.
    store: Arc<Mutex<VaultStateMachine>>,
    /// Vote attempts go through here, to share fsyncs.
    prepares: prepares::PrepareQueue,
    /// Decisions the applying state machine just applied: most
    /// acknowledgements are answered from here without touching SQLite.
    applied_decisions: AppliedDecisions,
    options: TwoPcOptions,
}

impl TwoPc {
    pub(crate) fn new(
        node: Node,
        transport: Arc<VaultTransport>,
        store: VaultStateMachine,
        applied_decisions: AppliedDecisions,
        options: TwoPcOptions,
    ) -> std::io::Result<Arc<Self>> {
        let store = Arc::new(Mutex::new(store));
        let prepares = prepares::PrepareQueue::start(node.id(), store.clone(), options.vote)?;
        Ok(Arc::new(TwoPc {
            node,
            transport,
            store,
            prepares,
            applied_decisions,
            options,
        }))
    }

    /// Runs `work` on the participant's connection off the async threads.
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut VaultStateMachine) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, VaultError> {
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut store = store
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut store)
        })
        .await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(VaultError::Internal(format!(
                "two-phase-commit store: {error}"
            ))),
            Err(error) => Err(VaultError::Internal(format!(
                "two-phase-commit store task failed: {error}"
            ))),
        }
    }

    /// Refuses `add-secret --update` of a secret this node holds locked for
    /// a delete, before it is proposed (SPEC §6). `command` is the encoded
    /// [`VaultCommand`] about to be proposed; anything else passes.
    ///
    /// This narrows the race with a delete but cannot close it (an update
    /// proposed before the lock and applied after the vote); atomicity holds
    /// anyway because a commit deletes only at the voted version.
    pub(crate) async fn refuse_locked_update(&self, command: &[u8]) -> Result<(), VaultError> {
        let Ok(VaultCommand::V1 {
            owner,
            op: Operation::Put {
                name, update: true, ..
            },
            ..
        }) = decode::<VaultCommand>(command)
        else {
            return Ok(());
        };
        let holder = {
            let name = name.clone();
            self.with_store(move |store| store.lock_holder(&owner, &name))
                .await?
        };
        match holder {
            Some(tx) => Err(VaultError::Conflict(format!(
                "secret {name:?} is being deleted by transaction {tx}; try again after it is decided"
            ))),
            None => Ok(()),
        }
    }

    /// Every member of the cluster as this node knows it: the participants.
    fn participants(&self) -> Vec<NodeId> {
        let status = self.node.status();
        let mut members: Vec<NodeId> = status.voters;
        members.extend(status.learners);
        if members.is_empty() {
            members.push(self.node.id());
        }
        members.sort();
        members.dedup();
        members
    }
}

/// Wall-clock milliseconds since the Unix epoch: the prepare time recorded
/// in the store and compared with the decision timeout by recovery.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u64::MAX as u128) as u64
}
