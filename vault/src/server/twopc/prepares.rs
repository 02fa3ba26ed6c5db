//! Group commit of the participant's prepares.
//!
//! Every prepare must be on disk before its vote leaves, and one fsync
//! costs far more than the SQL around it. Vote attempts are therefore
//! queued to one thread, which takes every attempt waiting, runs them in
//! one SQLite transaction ([`VaultStateMachine::begin_prepares`]) and
//! answers them all after the one commit. While it syncs, new attempts
//! queue up and form the next batch, so a lone delete waits for nothing
//! and concurrent deletes share fsyncs.

use crate::protocol::{SecretVersion, VaultError};
use crate::store::VaultStateMachine;
use consensus::raft::NodeId;
use consensus::twopc::participant;
use consensus::twopc::{Vote, VoteAttempt, VotePolicy, VoteRequest};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Most attempts in one batch: bounds how long the thread holds SQLite's
/// write lock, which apply needs too.
const MOST_PER_BATCH: usize = 256;

/// One queued vote attempt and where its outcome goes.
struct Job {
    request: VoteRequest<SecretVersion>,
    /// The coordinator's read index: a vote read below this node's pruning
    /// horizon is refused (`store/pruning.rs`).
    read_index: u64,
    may_wait: bool,
    outcome: oneshot::Sender<Result<VoteAttempt, String>>,
}

/// The queue in front of the prepare thread. The thread ends when the
/// queue is dropped.
pub(super) struct PrepareQueue {
    jobs: mpsc::Sender<Job>,
}

impl PrepareQueue {
    /// Starts node `node`'s prepare thread on the participant's store.
    pub(super) fn start(
        node: NodeId,
        store: Arc<Mutex<VaultStateMachine>>,
        policy: VotePolicy,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("prepare-{node}"))
            .spawn(move || run(&store, policy, &queue))?;
        Ok(PrepareQueue { jobs })
    }

    /// One vote attempt under wait-die ([`participant::vote_wait_die`]);
    /// a `VOTE_COMMIT` is returned only once its prepare is durable.
    pub(super) async fn attempt(
        &self,
        request: VoteRequest<SecretVersion>,
        read_index: u64,
        may_wait: bool,
    ) -> Result<VoteAttempt, VaultError> {
        let (outcome, answer) = oneshot::channel();
        let job = Job {
            request,
            read_index,
            may_wait,
            outcome,
        };
        if self.jobs.send(job).is_err() {
            return Err(VaultError::Internal(
                "the prepare thread has stopped".into(),
            ));
        }
        match answer.await {
            Ok(Ok(attempt)) => Ok(attempt),
            Ok(Err(error)) => Err(VaultError::Internal(format!(
                "two-phase-commit store: {error}"
            ))),
            Err(_) => Err(VaultError::Internal(
                "the prepare thread has stopped".into(),
            )),
        }
    }
}

fn run(store: &Mutex<VaultStateMachine>, policy: VotePolicy, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter().take(MOST_PER_BATCH - 1));
        let outcomes = {
            let mut store = store
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            attempt_all(&mut store, policy, &jobs, super::wall_clock_ms())
        };
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            // The voter may have given up (vote timeout); nothing to do.
            let _ = job.outcome.send(outcome);
        }
    }
}

/// Runs every job's attempt in one batch and commits it. If the commit
/// fails, no prepare of the batch is durable, so every attempt fails.
fn attempt_all(
    store: &mut VaultStateMachine,
    policy: VotePolicy,
    jobs: &[Job],
    now_ms: u64,
) -> Vec<Result<VoteAttempt, String>> {
    let mut batch = match store.begin_prepares() {
        Ok(batch) => batch,
        Err(error) => return jobs.iter().map(|_| Err(error.to_string())).collect(),
    };
    let attempts: Vec<Result<VoteAttempt, String>> = jobs
        .iter()
        .map(|job| {
            let horizon = batch.pruned_through().map_err(|error| error.to_string())?;
            if job.read_index < horizon {
                return Ok(VoteAttempt::Voted(Vote::Abort(format!(
                    "the vote read the log at index {}, below index {horizon} through which \
                     this node pruned decided transactions",
                    job.read_index
                ))));
            }
            participant::vote_wait_die(policy, &mut batch, &job.request, now_ms, job.may_wait)
                .map_err(|error| error.to_string())
        })
        .collect();
    match batch.commit() {
        Ok(()) => attempts,
        Err(error) => jobs.iter().map(|_| Err(error.to_string())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Operation, SealedSecret, VaultCommand};
    use consensus::state_machine::{CommittedCommand, StateMachine};

    const ALICE: &str = "client:alice";

    fn request(tx: &str, name: &str) -> VoteRequest<SecretVersion> {
        VoteRequest {
            tx: tx.into(),
            resource: SecretVersion {
                owner: ALICE.into(),
                name: name.into(),
                version: 1,
            },
        }
    }

    fn job(
        request: VoteRequest<SecretVersion>,
    ) -> (Job, oneshot::Receiver<Result<VoteAttempt, String>>) {
        let (outcome, answer) = oneshot::channel();
        let job = Job {
            request,
            read_index: 0,
            may_wait: false,
            outcome,
        };
        (job, answer)
    }

    /// A participant store holding ALICE's secrets `names`, each at
    /// version 1.
    fn store_with(dir: &std::path::Path, names: &[&str]) -> VaultStateMachine {
        let path = dir.join("vault.db");
        let mut machine = VaultStateMachine::open(&path).expect("open");
        let commands: Vec<Vec<u8>> = names
            .iter()
            .map(|name| {
                encode(&VaultCommand::V1 {
                    session: None,
                    owner: ALICE.into(),
                    proposed_at_ms: 1,
                    op: Operation::Put {
                        name: name.to_string(),
                        sealed: SealedSecret(vec![7; 16]),
                        update: false,
                        version: 1,
                    },
                })
            })
            .collect();
        let committed: Vec<CommittedCommand<'_>> = commands
            .iter()
            .enumerate()
            .map(|(at, command)| CommittedCommand {
                index: at as u64 + 1,
                term: 1,
                command,
            })
            .collect();
        machine.apply(&committed).expect("apply");
        VaultStateMachine::open_participant(&path).expect("participant")
    }

    #[test]
    fn a_batch_commits_every_prepare_and_sees_its_own_locks() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut store = store_with(dir.path(), &["a", "b"]);
        let jobs = [
            request("t1", "a"),
            request("t2", "b"),
            // Another transaction on a secret t1 locked earlier in the same
            // batch: refused (wait-die cannot order these ids, so it dies).
            request("t3", "a"),
        ]
        .map(|request| job(request).0);
        let outcomes = attempt_all(&mut store, VotePolicy::Commit, &jobs, 5);
        assert_eq!(outcomes[0], Ok(VoteAttempt::Voted(Vote::Commit)));
        assert_eq!(outcomes[1], Ok(VoteAttempt::Voted(Vote::Commit)));
        assert!(
            matches!(&outcomes[2], Ok(VoteAttempt::Voted(Vote::Abort(reason))) if reason.contains("t1")),
            "{:?}",
            outcomes[2]
        );
        // Committed: a fresh connection sees both locks.
        let reopened = VaultStateMachine::open(&dir.path().join("vault.db")).expect("reopen");
        assert_eq!(
            reopened.lock_holder(ALICE, "a").expect("lock"),
            Some("t1".into())
        );
        assert_eq!(
            reopened.lock_holder(ALICE, "b").expect("lock"),
            Some("t2".into())
        );
    }

    #[test]
    fn a_vote_read_below_the_pruning_horizon_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("vault.db");
        drop(store_with(dir.path(), &["a"]));
        let mut machine = VaultStateMachine::open(&path).expect("open");
        let prune = crate::protocol::prune_command(1, 5);
        let committed = CommittedCommand {
            index: 2,
            term: 1,
            command: &prune,
        };
        machine.apply(&[committed]).expect("apply");
        let mut store = VaultStateMachine::open_participant(&path).expect("participant");
        let mut stale = job(request("t1", "a")).0;
        stale.read_index = 0;
        let mut fresh = job(request("t2", "a")).0;
        fresh.read_index = 1;
        let outcomes = attempt_all(&mut store, VotePolicy::Commit, &[stale, fresh], 5);
        assert!(
            matches!(&outcomes[0], Ok(VoteAttempt::Voted(Vote::Abort(reason))) if reason.contains("pruned")),
            "{:?}",
            outcomes[0]
        );
        assert_eq!(outcomes[1], Ok(VoteAttempt::Voted(Vote::Commit)));
    }

    #[tokio::test]
    async fn the_queue_answers_every_attempt() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(Mutex::new(store_with(dir.path(), &["a", "b", "c"])));
        let queue = PrepareQueue::start(NodeId(1), store, VotePolicy::Commit).expect("thread");
        let attempts = tokio::join!(
            queue.attempt(request("tx-a", "a"), 0, false),
            queue.attempt(request("tx-b", "b"), 0, false),
            queue.attempt(request("tx-c", "c"), 0, false),
        );
        for attempt in [attempts.0, attempts.1, attempts.2] {
            assert_eq!(attempt, Ok(VoteAttempt::Voted(Vote::Commit)));
        }
        let refused = queue.attempt(request("tx-d", "missing"), 0, false).await;
        assert!(
            matches!(refused, Ok(VoteAttempt::Voted(Vote::Abort(_)))),
            "{refused:?}"
        );
    }
}
