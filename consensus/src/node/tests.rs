//! Start-up of the node runtime on real directories: what `cluster init`
//! writes, what `node run` accepts and refuses (SPEC §13).

use super::{initialize, InitializeError, Node, NodeError, NodeOptions, PeerNetwork, RpcFuture};
use super::{NodeRequest, StartError};
use crate::raft::{
    Config, Entry, EntryPayload, HardState, LogIndex, Membership, Message, NodeId, RaftCore,
    RestoredState,
};
use crate::state_machine::{CommittedCommand, StateMachine};
use crate::storage::{FileStore, FileStoreOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A state machine that remembers the commands it applied.
#[derive(Default)]
struct Recorder {
    applied: LogIndex,
    commands: Vec<Vec<u8>>,
}

impl StateMachine for Recorder {
    type Error = std::io::Error;

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        let mut responses = Vec::new();
        for command in commands {
            if command.index > self.applied {
                self.applied = command.index;
                self.commands.push(command.command.to_vec());
                responses.push(command.command.to_vec());
            } else {
                responses.push(Vec::new());
            }
        }
        Ok(responses)
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), Self::Error> {
        self.applied = self.applied.max(index);
        Ok(())
    }

    fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(self.commands.concat())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, Self::Error> {
        Ok(self.commands.concat())
    }

    fn restore(&mut self, index: LogIndex, _data: &[u8]) -> Result<(), Self::Error> {
        self.applied = index;
        Ok(())
    }
}

/// A network that reaches nobody and records what the node tried to send.
#[derive(Default)]
struct Recording {
    sent: Mutex<Vec<Message>>,
}

impl Recording {
    fn sent(&self) -> Vec<Message> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl PeerNetwork for Recording {
    fn send(&self, message: Message) {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(message);
    }

    fn call(&self, _to: NodeId, _request: NodeRequest) -> RpcFuture<'_> {
        Box::pin(async { Err(NodeError::Unavailable) })
    }
}

/// Fast timing: elections after 30 to 60 ms.
fn options(id: u64, raft_dir: &Path, join: bool) -> NodeOptions {
    NodeOptions {
        join,
        snapshot_every: 10_000,
        ..super::test_support::test_options(id, raft_dir)
    }
}

fn voters(ids: impl IntoIterator<Item = u64>) -> BTreeSet<NodeId> {
    ids.into_iter().map(NodeId).collect()
}

fn recover(raft_dir: &Path) -> RestoredState {
    FileStore::open(raft_dir, FileStoreOptions::default())
        .expect("open the store")
        .1
}

/// Every file under `dir` with its contents, to show nothing changed.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("read a file");
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

/// A started node: its handle, its driver task and what it sent.
type Started = (
    Node,
    tokio::task::JoinHandle<Result<(), super::Fatal>>,
    Arc<Recording>,
);

fn start(options: &NodeOptions, machine: Recorder) -> Result<Started, StartError> {
    let network = Arc::new(Recording::default());
    let (node, task) = Node::start(options, machine, network.clone())?;
    Ok((node, task, network))
}

async fn stop(node: Node, task: tokio::task::JoinHandle<Result<(), super::Fatal>>) {
    node.shutdown().await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the node stops")
        .expect("the driver task does not panic");
    assert_eq!(outcome, Ok(()));
}

/// What `cluster init` writes is exactly what a restart restores: entry 1
/// of term 1 holding the membership of every founding voter, term 1, and
/// incarnation 0 (a founding member).
#[test]
fn initialize_writes_a_state_that_a_restart_restores() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("data").join("raft");
    initialize(&raft_dir, NodeId(2), voters(1..=3)).expect("initialize");

    let recovered = recover(&raft_dir);
    let expected_hard_state = HardState {
        term: 1,
        vote: None,
        commit: 0,
        incarnation: 0,
    };
    assert_eq!(recovered.hard_state, expected_hard_state);
    assert_eq!(
        recovered.entries,
        vec![Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Membership(Membership::with_voters(voters(1..=3))),
        }]
    );
    assert!(recovered.snapshot.is_none());

    let restored = RestoredState {
        hard_state: recovered.hard_state,
        snapshot: None,
        entries: recovered.entries,
    };
    let core = RaftCore::new(Config::new(NodeId(2), 1), restored).expect("RaftCore::new");
    assert_eq!(core.term(), 1);
    assert_eq!(core.membership().voters, voters(1..=3));

    #[cfg(unix)]
    for dir in [raft_dir.as_path(), root.path().join("data").as_path()] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{} is mode {mode:o}", dir.display());
    }
}

/// A second `initialize` of the same directory is refused and changes
/// nothing: it would otherwise hide a live node's log behind a new one.
#[test]
fn initialize_refuses_an_initialised_directory_and_leaves_it_alone() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    initialize(&raft_dir, NodeId(1), voters(1..=3)).expect("initialize");
    let before = contents(&raft_dir);

    let again = initialize(&raft_dir, NodeId(1), voters(1..=5));
    assert!(
        matches!(&again, Err(InitializeError::AlreadyInitialized { dir }) if *dir == raft_dir),
        "{again:?}"
    );
    assert!(
        again
            .unwrap_err()
            .to_string()
            .contains("already holds Raft state"),
        "the error says why"
    );
    assert_eq!(contents(&raft_dir), before, "the directory changed");
}

/// A node outside the voters it is given is refused before anything is
/// written.
#[test]
fn initialize_refuses_a_node_that_is_not_a_founding_voter() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    let outcome = initialize(&raft_dir, NodeId(4), voters(1..=3));
    assert!(
        matches!(outcome, Err(InitializeError::NotAVoter { id: NodeId(4) })),
        "{outcome:?}"
    );
    assert!(
        !raft_dir.exists(),
        "a refused initialize created its directory"
    );
}

/// SPEC §13: a node whose data is gone (directory missing, or present and
/// empty) and that is not a joiner refuses to start, says so, and writes
/// nothing.
#[tokio::test]
async fn an_empty_raft_directory_is_refused_unless_the_node_joins() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let missing = root.path().join("missing").join("raft");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("create an empty directory");
    for raft_dir in [&missing, &empty] {
        let refused = start(&options(2, raft_dir, false), Recorder::default());
        let Err(error) = refused else {
            panic!("node started on {}", raft_dir.display());
        };
        assert!(
            matches!(&error, StartError::NoState { id: NodeId(2), raft_dir: dir } if dir == raft_dir),
            "{error:?}"
        );
        let message = error.to_string();
        for needed in [
            "holds no Raft state",
            "node2",
            &raft_dir.display().to_string(),
        ] {
            assert!(message.contains(needed), "{needed:?} missing: {message}");
        }
        assert!(
            super::preflight(&options(2, raft_dir, false)).is_err(),
            "preflight agrees"
        );
    }
    assert!(
        !root.path().join("missing").exists(),
        "a refused node created its directory"
    );
    assert!(contents(&empty).is_empty(), "a refused node wrote files");
}

/// A joiner (empty directory, `join`) starts, knows no configuration, and
/// neither campaigns nor sends anything while nobody contacts it, however
/// many election timeouts pass. Its fresh incarnation is persisted and kept
/// across restarts, which then restore it like any other state.
#[tokio::test]
async fn a_joiner_starts_empty_and_never_campaigns() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    let joiner = options(4, &raft_dir, true);
    let (node, task, network) = start(&joiner, Recorder::default()).expect("a joiner starts");
    // Twenty of its longest election timeouts.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = node.status();
    assert_eq!(status.role, "follower", "{status:?}");
    assert_eq!(status.term, 0, "{status:?}");
    assert_eq!(status.leader, None, "{status:?}");
    assert!(status.voters.is_empty(), "{status:?}");
    assert!(network.sent().is_empty(), "sent: {:?}", network.sent());
    stop(node, task).await;

    let first = recover(&raft_dir).hard_state;
    assert_ne!(first.incarnation, 0, "a joiner's incarnation is persisted");
    assert_eq!(first.term, 0);

    // Restarted (as a joiner or not), it is restored, not joined again.
    for join in [true, false] {
        let options = options(4, &raft_dir, join);
        let (node, task, network) = start(&options, Recorder::default()).expect("restart");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(node.status().term, 0);
        assert!(network.sent().is_empty(), "sent: {:?}", network.sent());
        stop(node, task).await;
        assert_eq!(recover(&raft_dir).hard_state.incarnation, first.incarnation);
    }
}

/// A joiner whose state machine already applied entries (a data directory
/// wiped only in part) is refused: the log it receives would be applied
/// on top of a state it does not describe.
#[tokio::test]
async fn a_joiner_with_a_used_state_machine_is_refused() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    let machine = Recorder {
        applied: 5,
        commands: Vec::new(),
    };
    let outcome = start(&options(4, &raft_dir, true), machine);
    assert!(
        matches!(
            outcome,
            Err(StartError::StaleStateMachine {
                id: NodeId(4),
                applied: 5
            })
        ),
        "{:?}",
        outcome.err()
    );
}

/// The whole path of a founding member: `initialize`, then `Node::start`
/// restores the state, and the node (alone in its cluster) elects itself
/// and commits.
#[tokio::test]
async fn an_initialised_node_starts_elects_itself_and_commits() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    initialize(&raft_dir, NodeId(1), voters([1])).expect("initialize");
    let (node, task, _network) =
        start(&options(1, &raft_dir, false), Recorder::default()).expect("start");
    let response = node.propose(b"hello".to_vec()).await.expect("propose");
    assert_eq!(response, b"hello");
    assert!(node.is_leader());
    stop(node, task).await;
    let recovered = recover(&raft_dir);
    assert_eq!(recovered.hard_state.incarnation, 0, "a founding member");
    assert!(recovered.entries.len() >= 2, "{:?}", recovered.entries);
}

/// A backup copy comes after a read index: it holds every command
/// acknowledged before it, at the index and term of the applied entry.
#[tokio::test]
async fn a_backup_snapshot_holds_every_acknowledged_command() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    initialize(&raft_dir, NodeId(1), voters([1])).expect("initialize");
    let (node, task, _network) =
        start(&options(1, &raft_dir, false), Recorder::default()).expect("start");
    node.propose(b"first,".to_vec()).await.expect("propose");
    node.propose(b"second".to_vec()).await.expect("propose");
    let status = node.status();
    let backup = node.backup_snapshot().await.expect("a backup");
    assert_eq!(backup.data, b"first,second");
    assert!(
        backup.index >= status.applied_index,
        "{backup:?} vs {status:?}"
    );
    assert_eq!(
        backup.term, status.term,
        "the applied entry is of this term"
    );
    stop(node, task).await;
}

/// A node seeded from a backup starts at the backup's index, elects
/// itself in a later term, and carries on the log after the snapshot.
#[tokio::test]
async fn a_node_seeded_from_a_snapshot_continues_its_log() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let raft_dir = root.path().join("raft");
    let seed = super::SeedSnapshot {
        index: 500,
        term: 9,
        data: b"state".to_vec(),
    };
    super::initialize_from_snapshot(&raft_dir, NodeId(1), voters([1]), seed).expect("seed");
    let (node, task, _network) =
        start(&options(1, &raft_dir, false), Recorder::default()).expect("start");
    node.propose(b"after".to_vec()).await.expect("propose");
    // The status is published at most once per tick: wait for the one
    // that shows the write (the bound only catches a hang).
    let mut watch = node.watch_status();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        watch.wait_for(|status| status.applied_index > 500),
    )
    .await
    .expect("the status shows the applied write")
    .expect("the node is running")
    .clone();
    assert!(status.term > 9, "{status:?}");
    assert!(status.applied_index > 500, "{status:?}");
    let backup = node.backup_snapshot().await.expect("a backup");
    assert!(backup.index > 500, "{backup:?}");
    // The recorder keeps no restored state, only commands applied since.
    assert_eq!(backup.data, b"after");
    stop(node, task).await;
}
