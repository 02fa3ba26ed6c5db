//! Catch-up by snapshot over the real transport: how fast a follower that
//! is far behind receives and installs a large snapshot from the leader.
//!
//! Three real [`Node`]s on loopback, each with its own data directory,
//! QUIC endpoint and certificate from an in-memory CA. Nodes 1 and 3 start,
//! elect a leader and apply a few commands; their state machine's snapshot
//! is `SNAPSHOT_BENCH_MB` MB (100 by default) of incompressible bytes, so
//! both compact their logs past everything node 2 holds. Node 2 then starts
//! with only the founding entry and can catch up only through
//! InstallSnapshot. The benchmark prints, per run and as the median:
//!
//! - *transfer*: from node 2's start until its state machine is handed the
//!   whole snapshot (connection set-up, the leader finding out it is
//!   behind, and the stream of chunks), and the rate that makes;
//! - *installed*: until node 2's state machine has restored it (the
//!   snapshot is also written and fsynced to node 2's Raft directory).
//!
//! It measures and asserts only that node 2 did receive the snapshot.
//!
//! Run: `cargo bench -p consensus --bench snapshot_transfer`
//! (`SNAPSHOT_BENCH_MB=N` sets the size, `SNAPSHOT_BENCH_RUNS=N` the number
//! of runs, `RUST_LOG=info` shows the nodes' logs, with the receiver's
//! progress lines).

use certs::{CertificateAuthority, Credentials};
use consensus::node::{
    initialize, Node, NodeError, NodeOptions, NodeReply, NodeRequest, PeerNetwork, RpcFuture,
};
use consensus::raft::{LogIndex, Message, NodeId};
use consensus::state_machine::{CommittedCommand, StateMachine};
use consensus::transport::{PeerAddress, Transport, TransportConfig};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type PeerTransport = Transport<Message, NodeRequest, NodeReply>;

/// What the benchmark learns from a state machine.
#[derive(Default)]
struct Observed {
    /// Snapshots this machine produced.
    snapshots: u64,
    /// When a snapshot restore began, its index and size.
    restored: Option<(Instant, LogIndex, usize)>,
}

/// A state machine whose whole state is `size` opaque bytes: applying only
/// moves the applied index, a snapshot is the bytes, a restore keeps them.
struct BlobMachine {
    applied: LogIndex,
    size: usize,
    observed: Arc<Mutex<Observed>>,
}

impl BlobMachine {
    fn observe(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StateMachine for BlobMachine {
    type Error = std::io::Error;

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        if let Some(last) = commands.last() {
            self.applied = self.applied.max(last.index);
        }
        Ok(vec![Vec::new(); commands.len()])
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), Self::Error> {
        self.applied = self.applied.max(index);
        Ok(())
    }

    fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(Vec::new())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, Self::Error> {
        self.observe().snapshots += 1;
        Ok(incompressible(self.size))
    }

    fn restore(&mut self, index: LogIndex, data: &[u8]) -> Result<(), Self::Error> {
        self.observe().restored = Some((Instant::now(), index, data.len()));
        self.applied = index;
        Ok(())
    }
}

/// `size` bytes of an xorshift sequence: nothing on the path compresses,
/// but it is honest to make sure.
fn incompressible(size: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// The node runtime's network over the QUIC transport: Raft messages only
/// (the benchmark proposes on the leader, so no request is forwarded).
struct QuicPeers {
    transport: Arc<PeerTransport>,
}

impl PeerNetwork for QuicPeers {
    fn send(&self, message: Message) {
        let _ = self.transport.send(message.to, message);
    }

    fn call(&self, _to: NodeId, _request: NodeRequest) -> RpcFuture<'_> {
        Box::pin(async { Err(NodeError::Unavailable) })
    }
}

/// One started node and what it is observed through.
struct Running {
    node: Node,
    transport: Arc<PeerTransport>,
    observed: Arc<Mutex<Observed>>,
}

/// Production timing (`node.toml` defaults): heartbeats every 50 ms.
fn options(id: u64, raft_dir: &Path) -> NodeOptions {
    NodeOptions {
        id: NodeId(id),
        raft_dir: raft_dir.to_path_buf(),
        join: false,
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(500),
        election_max: Duration::from_millis(1000),
        snapshot_every: 10,
        snapshot_after_bytes: consensus::node::DEFAULT_SNAPSHOT_AFTER_BYTES,
        // The bench measures a transfer: compact at once, so one is needed.
        keep_log_bytes: 0,
        request_timeout: Duration::from_secs(5),
        max_pending_requests: consensus::node::DEFAULT_MAX_PENDING_REQUESTS,
        seed: id,
        min_free_bytes: 0,
        metrics: Default::default(),
    }
}

fn start(
    id: u64,
    root: &Path,
    size: usize,
    transport: Arc<PeerTransport>,
    inbox: tokio::sync::mpsc::Receiver<(NodeId, Message)>,
) -> Result<Running, String> {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let machine = BlobMachine {
        applied: 0,
        size,
        observed: observed.clone(),
    };
    let network = Arc::new(QuicPeers {
        transport: transport.clone(),
    });
    let raft_dir = root.join(format!("node{id}"));
    let (node, _task) = Node::start(&options(id, &raft_dir), machine, network)
        .map_err(|error| format!("node{id} does not start: {error}"))?;
    let receiver = node.clone();
    let mut inbox = inbox;
    tokio::spawn(async move {
        while let Some((from, message)) = inbox.recv().await {
            if message.from == from {
                receiver.deliver(message);
            }
        }
    });
    Ok(Running {
        node,
        transport,
        observed,
    })
}

/// Figures of one run.
struct Run {
    transfer: Duration,
    installed: Duration,
    bytes: usize,
}

async fn run_once(size: usize) -> Result<Run, String> {
    let root = tempfile::tempdir().map_err(|error| error.to_string())?;
    let voters: BTreeSet<NodeId> = (1..=3).map(NodeId).collect();
    let ca = CertificateAuthority::generate("benchmark CA").map_err(|error| error.to_string())?;
    let mut transports = Vec::new();
    let mut inboxes = Vec::new();
    for id in 1..=3u64 {
        initialize(
            &root.path().join(format!("node{id}")),
            NodeId(id),
            voters.clone(),
        )
        .map_err(|error| error.to_string())?;
        let issued = ca
            .issue_node(&format!("node{id}"), &["127.0.0.1".to_string()])
            .map_err(|error| error.to_string())?;
        let credentials = Credentials::from_pem(
            ca.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .map_err(|error| error.to_string())?;
        let config =
            TransportConfig::new(NodeId(id), "127.0.0.1:0".parse().map_err(|_| "address")?);
        let (transport, inbox) = PeerTransport::bind(config, &credentials)
            .await
            .map_err(|error| error.to_string())?;
        transports.push(Arc::new(transport));
        inboxes.push(Some(inbox.peer_messages));
    }
    for (index, transport) in transports.iter().enumerate() {
        for (other, peer) in transports.iter().enumerate() {
            if index != other {
                let address = peer.local_address().map_err(|error| error.to_string())?;
                transport.add_peer(peer.node_id(), PeerAddress::from_socket_address(address));
            }
        }
    }
    let mut take_inbox = |index: usize| inboxes[index].take().ok_or("inbox taken twice");
    let first = start(1, root.path(), size, transports[0].clone(), take_inbox(0)?)?;
    let third = start(3, root.path(), size, transports[2].clone(), take_inbox(2)?)?;

    let leader = wait_for_leader(&[&first, &third]).await?;
    for sequence in 0..20u32 {
        leader
            .node
            .propose(sequence.to_le_bytes().to_vec())
            .await
            .map_err(|error| format!("proposal failed: {error}"))?;
    }
    // Both have applied past `snapshot_every`: wait for their snapshots,
    // then for the driver to compact the log and store the snapshot.
    let deadline = Instant::now() + Duration::from_secs(120);
    while [&first, &third]
        .iter()
        .any(|running| observed(running).snapshots == 0)
    {
        if Instant::now() > deadline {
            return Err("no snapshot taken".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let target = leader.node.status().commit_index;

    let started = Instant::now();
    let second = start(2, root.path(), size, transports[1].clone(), take_inbox(1)?)?;
    let caught_up = second
        .node
        .wait_applied(
            target,
            tokio::time::Instant::now() + Duration::from_secs(600),
        )
        .await;
    let installed = started.elapsed();
    if !caught_up {
        return Err("node2 did not catch up".into());
    }
    let restored = observed(&second).restored;
    let Some((restore_began, index, bytes)) = restored else {
        return Err("node2 caught up without a snapshot: the leader had not compacted".into());
    };
    if bytes != size || index == 0 {
        return Err(format!("node2 restored {bytes} bytes at {index}"));
    }
    for running in [&first, &second, &third] {
        running.node.shutdown().await;
        running.transport.shutdown().await;
    }
    Ok(Run {
        transfer: restore_began.duration_since(started),
        installed,
        bytes,
    })
}

fn observed(running: &Running) -> Observed {
    let guard = running
        .observed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Observed {
        snapshots: guard.snapshots,
        restored: guard.restored,
    }
}

async fn wait_for_leader<'a>(nodes: &[&'a Running]) -> Result<&'a Running, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = nodes.iter().find(|running| running.node.is_leader()) {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            return Err("no leader elected".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn megabytes_per_second(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    // Honour `cargo bench -- <filter>` and `--list` quietly: one benchmark.
    if std::env::args().any(|argument| argument == "--list") {
        return;
    }
    let size = number("SNAPSHOT_BENCH_MB", 100) * 1_000_000;
    let runs = number("SNAPSHOT_BENCH_RUNS", 3).max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("no tokio runtime: {error}"),
    };
    let mut transfers = Vec::new();
    let mut installs = Vec::new();
    for run in 1..=runs {
        match runtime.block_on(run_once(size)) {
            Ok(figures) => {
                println!(
                    "run {run}: {} MB snapshot: transfer {:.2} s ({:.1} MB/s), installed after {:.2} s ({:.1} MB/s)",
                    figures.bytes / 1_000_000,
                    figures.transfer.as_secs_f64(),
                    megabytes_per_second(figures.bytes, figures.transfer),
                    figures.installed.as_secs_f64(),
                    megabytes_per_second(figures.bytes, figures.installed),
                );
                transfers.push(figures.transfer);
                installs.push(figures.installed);
            }
            Err(error) => panic!("run {run} failed: {error}"),
        }
    }
    transfers.sort();
    installs.sort();
    let median = |values: &[Duration]| values[values.len() / 2];
    println!(
        "median of {runs}: transfer {:.2} s ({:.1} MB/s), installed after {:.2} s ({:.1} MB/s)",
        median(&transfers).as_secs_f64(),
        megabytes_per_second(size, median(&transfers)),
        median(&installs).as_secs_f64(),
        megabytes_per_second(size, median(&installs)),
    );
}
