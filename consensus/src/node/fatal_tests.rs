//! A node that meets a fatal error (its log refuses a batch for good, its
//! state machine fails or panics while applying, its driver panics) stops:
//! the join handle of [`Node::start`] returns the typed [`Fatal`], and the
//! proposal waiting when it failed, as well as every request made after,
//! gets it as [`NodeError::Stopped`].

use super::apply::ApplyTask;
use super::error::FatalCell;
use super::test_support::{test_options, Alone, Echo};
use super::{initialize, Node, NodeError, NodeOptions};
use super::{Fatal, LogOperation, ReadConsistency, StateMachineOperation, Worker};
use crate::raft::NodeId;
use crate::state_machine::{CommittedCommand, StateMachine};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How [`faulty`] treats a command.
const FAIL: &[u8] = b"fail";
const PANIC: &[u8] = b"panic";

/// Echoes each command; a batch holding [`FAIL`] makes `apply` return an
/// error (not a full disk: the runtime does not retry it), one holding
/// [`PANIC`] makes it panic.
fn faulty() -> impl StateMachine {
    Echo::new(|commands: &[CommittedCommand<'_>]| {
        for command in commands {
            match command.command {
                FAIL => {
                    return Err(std::io::Error::other(format!(
                        "injected failure applying {}",
                        command.index
                    )))
                }
                PANIC => panic!("injected panic applying {}", command.index),
                _ => {}
            }
        }
        Ok(())
    })
}

/// The test node's options. The request timeout is far beyond anything
/// these tests wait for: with `RUST_BACKTRACE` set, the panic hook of an
/// injected panic symbolises a backtrace before the apply thread catches
/// it, which on a cold page cache took longer than the usual 5 s, and the
/// proposal then timed out (`Unavailable`) instead of being failed with
/// the fatal error the test checks.
fn options(raft_dir: &Path) -> NodeOptions {
    let mut options = test_options(1, raft_dir);
    options.request_timeout = Duration::from_secs(60);
    options
}

/// Hang guard of each wait below: beyond the request timeout.
const HANG_GUARD: Duration = Duration::from_secs(90);

type DriverTask = tokio::task::JoinHandle<Result<(), Fatal>>;

/// The leader of its own one-node cluster, after one proposal went through.
async fn leader(raft_dir: &Path) -> (Node, DriverTask) {
    initialize(raft_dir, NodeId(1), [NodeId(1)].into()).expect("initialize");
    let (node, task) = Node::start(&options(raft_dir), faulty(), Arc::new(Alone)).expect("start");
    let first = tokio::time::timeout(HANG_GUARD, node.propose(b"first".to_vec()))
        .await
        .expect("hang guard");
    assert_eq!(first, Ok(b"first".to_vec()));
    (node, task)
}

/// Proposes `command`, which is to stop the node, and returns what the
/// proposal got and what the node's join handle returned.
async fn stop_with(node: &Node, task: DriverTask, command: Vec<u8>) -> (NodeError, Fatal) {
    let answer = tokio::time::timeout(HANG_GUARD, node.propose(command))
        .await
        .expect("the proposal is answered")
        .expect_err("the proposal fails");
    let ended = tokio::time::timeout(HANG_GUARD, task)
        .await
        .expect("the node stops by itself")
        .expect("the node's task does not fail");
    (answer, ended.expect_err("the node stops on a fatal error"))
}

/// Once stopped on `fatal`, the node answers every request with it.
async fn refuses_everything_with(node: &Node, fatal: &Fatal) {
    let stopped = NodeError::Stopped(fatal.clone());
    assert_eq!(node.propose(b"later".to_vec()).await, Err(stopped.clone()));
    assert_eq!(
        node.read(Vec::new(), ReadConsistency::Linearizable).await,
        Err(stopped.clone())
    );
    assert_eq!(
        node.read(Vec::new(), ReadConsistency::Stale).await,
        Err(stopped.clone()),
        "a stale read is served from a state machine that stopped"
    );
    assert_eq!(node.read_index().await, Err(stopped));
}

/// A batch the log refuses for good (here an entry over the size limit of
/// a log record, a rejected batch the writer does not retry) stops the
/// node with [`Fatal::Storage`]: nothing that depended on the batch may be
/// acknowledged. Unlike a full disk, which is held and retried.
#[tokio::test]
async fn a_log_write_that_fails_for_good_stops_the_node_with_a_storage_fatal() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (node, task) = leader(&root.path().join("raft")).await;
    let too_large = vec![7u8; crate::storage::MAX_RECORD_PAYLOAD + 1];
    let (answer, fatal) = stop_with(&node, task, too_large).await;
    let Fatal::Storage { operation, message } = &fatal else {
        panic!("not a storage failure: {fatal:?}");
    };
    assert_eq!(*operation, LogOperation::Write);
    assert!(message.contains("exceeds the limit"), "{message}");
    assert_eq!(answer, NodeError::Stopped(fatal.clone()));
    refuses_everything_with(&node, &fatal).await;
}

/// A state machine that fails to apply a committed entry stops the node
/// with [`Fatal::StateMachine`], naming the operation and its error.
#[tokio::test]
async fn a_failed_apply_stops_the_node_with_a_state_machine_fatal() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (node, task) = leader(&root.path().join("raft")).await;
    let (answer, fatal) = stop_with(&node, task, FAIL.to_vec()).await;
    let Fatal::StateMachine(error) = &fatal else {
        panic!("not a state machine failure: {fatal:?}");
    };
    assert_eq!(error.operation, StateMachineOperation::Apply);
    assert!(
        error.message.starts_with("injected failure applying"),
        "{error}"
    );
    assert_eq!(answer, NodeError::Stopped(fatal.clone()));
    refuses_everything_with(&node, &fatal).await;
}

/// A state machine that panics while applying stops the node with
/// [`Fatal::Panicked`]: the apply thread catches it, instead of dying
/// silently and leaving the node to lead without applying anything.
#[tokio::test]
async fn a_panic_in_apply_stops_the_node_with_a_panicked_fatal() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (node, task) = leader(&root.path().join("raft")).await;
    let (answer, fatal) = stop_with(&node, task, PANIC.to_vec()).await;
    let Fatal::Panicked { worker, message } = &fatal else {
        panic!("not a panic: {fatal:?}");
    };
    assert_eq!(*worker, Worker::Apply);
    assert!(message.starts_with("injected panic applying"), "{message}");
    assert_eq!(answer, NodeError::Stopped(fatal.clone()));
    refuses_everything_with(&node, &fatal).await;
}

/// A panic of the driver task ends the node's join handle with
/// [`Fatal::Panicked`] (not a `JoinError`), records it for the handles and
/// tells the apply worker to stop.
#[tokio::test]
async fn a_panic_of_the_driver_ends_the_node_with_a_panicked_fatal() {
    let fatal = FatalCell::default();
    let (apply, mut apply_tasks) = mpsc::channel(4);
    let driver = async {
        if true {
            panic!("injected driver panic");
        }
        Ok(())
    };
    let task = super::handle::spawn_driver(NodeId(1), driver, fatal.clone(), apply);
    let ended = tokio::time::timeout(HANG_GUARD, task)
        .await
        .expect("the watcher ends")
        .expect("the watcher itself does not fail");
    let expected = Fatal::Panicked {
        worker: Worker::Driver,
        message: "injected driver panic".into(),
    };
    assert_eq!(ended, Err(expected.clone()));
    assert_eq!(fatal.get(), Some(&expected));
    assert!(matches!(apply_tasks.try_recv(), Ok(ApplyTask::NodeStopped)));
}
