//! Bounds on the request path (issue 10): with a state machine that stops
//! applying, requests beyond the node's limit are refused as busy at once,
//! reads time out instead of waiting forever, and the driver waits for the
//! bounded apply queue instead of growing it, then carries on.

use super::handle::APPLY_QUEUE;
use super::test_support::{test_options, Alone, Echo};
use super::{initialize, Node, NodeError, NodeOptions, ReadConsistency};
use crate::raft::NodeId;
use crate::state_machine::CommittedCommand;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Open or closed; `apply` blocks while it is closed.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn set(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = closed;
        self.opened.notify_all();
    }

    fn wait_open(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        while *closed {
            closed = self
                .opened
                .wait(closed)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

fn options(raft_dir: &Path, max_pending_requests: usize) -> NodeOptions {
    NodeOptions {
        max_pending_requests,
        ..test_options(1, raft_dir)
    }
}

/// A leader of its own one-node cluster whose state machine is behind
/// `gate`, after one proposal went through.
async fn leader(raft_dir: &Path, max_pending_requests: usize, gate: &Arc<Gate>) -> Node {
    initialize(raft_dir, NodeId(1), [NodeId(1)].into()).expect("initialize");
    // Echoes each command once the gate lets it through.
    let gate = gate.clone();
    let machine = Echo::new(move |_: &[CommittedCommand<'_>]| {
        gate.wait_open();
        Ok(())
    });
    let (node, _task) = Node::start(
        &options(raft_dir, max_pending_requests),
        machine,
        Arc::new(Alone),
    )
    .expect("start");
    let first = tokio::time::timeout(Duration::from_secs(20), node.propose(b"first".to_vec()))
        .await
        .expect("hang guard");
    assert_eq!(first, Ok(b"first".to_vec()));
    node
}

/// Proposes an entry the stopped state machine cannot apply, and returns
/// once it is committed: from then on the apply worker is held by the gate.
async fn stick(node: &Node) -> tokio::task::JoinHandle<Result<Vec<u8>, NodeError>> {
    // Settled first: the applied index may trail the commit index for a
    // moment after the last answer. The status is refreshed at most once
    // per tick and may still show an older commit index than what was
    // applied, so the applied index (current after every batch) is the
    // mark: a stale status taken as the mark let a later refresh pass for
    // the stuck entry's commit.
    until(|| node.applied_index() >= node.status().commit_index).await;
    let settled = node.applied_index().max(node.status().commit_index);
    let stuck = node.clone();
    let task = tokio::spawn(async move { stuck.propose(b"stuck".to_vec()).await });
    until(|| node.status().commit_index > settled).await;
    task
}

/// Waits (bounded) until `condition` holds.
async fn until(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("hang guard: the condition never held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limit_are_refused_as_busy_and_the_rest_complete() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let gate = Arc::new(Gate::default());
    let node = leader(&root.path().join("raft"), 4, &gate).await;
    gate.set(true);
    let mut waiting = tokio::task::JoinSet::new();
    for index in 0..4u8 {
        let node = node.clone();
        waiting.spawn(async move { node.propose(vec![index]).await });
    }
    // The four hold every permit while the state machine is stopped.
    let pending = node.pending_requests();
    until(|| pending() == 4).await;
    assert_eq!(node.propose(b"fifth".to_vec()).await, Err(NodeError::Busy));
    assert_eq!(
        node.read(Vec::new(), ReadConsistency::Linearizable).await,
        Err(NodeError::Busy)
    );
    assert_eq!(node.read_index_local().await, Err(NodeError::Busy));
    gate.set(false);
    let answers = tokio::time::timeout(Duration::from_secs(20), waiting.join_all())
        .await
        .expect("hang guard");
    let mut answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
    answers.sort();
    assert_eq!(answers, vec![vec![0], vec![1], vec![2], vec![3]]);
    assert!(node.propose(b"after".to_vec()).await.is_ok());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_state_machine_cannot_reach_times_out() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let gate = Arc::new(Gate::default());
    let node = leader(&root.path().join("raft"), 64, &gate).await;
    gate.set(true);
    // An entry the stopped state machine cannot apply puts the read index
    // out of its reach.
    let stuck = stick(&node).await;
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        node.read(Vec::new(), ReadConsistency::Linearizable),
    )
    .await
    .expect("hang guard: the read waited forever");
    assert_eq!(read, Err(NodeError::Unavailable));
    // Its permit came back (the stuck proposal holds one until it times
    // out too): the node is not left busy.
    assert!(node.pending_requests()() <= 1);
    gate.set(false);
    let stuck = tokio::time::timeout(Duration::from_secs(20), stuck)
        .await
        .expect("hang guard")
        .unwrap();
    // The proposal timed out too, or was applied once the gate opened.
    assert!(
        matches!(&stuck, Ok(_) | Err(NodeError::Unavailable)),
        "{stuck:?}"
    );
    node.shutdown().await;
}

/// Proposals of the queue test: more than the apply queue holds.
const PROPOSALS: u32 = 3 * APPLY_QUEUE as u32;

/// More entries commit than the apply queue holds while the state machine
/// is stopped: the driver waits for room (the queue is full, not larger),
/// and once the state machine moves again everything is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apply_queue_is_bounded_and_drains_when_the_state_machine_resumes() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let gate = Arc::new(Gate::default());
    let node = leader(&root.path().join("raft"), 4 * APPLY_QUEUE, &gate).await;
    gate.set(true);
    let stuck = stick(&node).await;
    let mut waiting = tokio::task::JoinSet::new();
    for index in 1..PROPOSALS {
        let node = node.clone();
        waiting.spawn(async move { node.propose(index.to_be_bytes().to_vec()).await });
    }
    let room = node.apply_queue_room();
    until(|| room() == 0).await;
    gate.set(false);
    let answers = tokio::time::timeout(Duration::from_secs(60), waiting.join_all())
        .await
        .expect("hang guard");
    let applied = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(applied, PROPOSALS as usize - 1, "every proposal is applied");
    assert!(stuck.await.unwrap().is_ok());
    node.shutdown().await;
}
