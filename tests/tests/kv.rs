//! The key-value plug-in on real nodes (issue 12: the bus is generic).
//!
//! Three `vault-cli kv node run` processes on loopback, started from the
//! node directories `cluster init` writes. Concurrent clients put, get and
//! compare-and-swap a few `u64` keys while the test SIGKILLs the leader and
//! restarts it, several times; every operation's invocation and completion
//! go into one history (one logical clock, so "A returned before B was
//! called" is exact), with the outcome ok (the answer), or unknown when the
//! client gave up (it may or may not have taken effect). The simulator's
//! linearizability checker (Wing & Gong, Lowe) then looks for a
//! linearization of every key's sub-history.
//!
//! Nothing here is timed: progress is waited for with generous timeouts,
//! and the check is on the history alone.

use certs::Credentials;
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use kv::client::KvClient;
use kv::protocol::{KvRequest, KvResponse};
use sim::history::History;
use sim::register::{RegisterOp, RegisterOutput};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vault_tests::TestCluster;

const NODES: usize = 3;
const CLIENTS: u64 = 4;
const KEYS: u64 = 3;
/// How many times the leader is killed and restarted.
const KILLS: usize = 3;
/// Answers ok between two kills, so that each kill hits a working cluster.
const OK_BETWEEN_KILLS: usize = 30;
/// How long one client operation may take before the client gives up (its
/// outcome is then unknown): generous, an election takes well under it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster of key-value nodes, all running.
fn start_kv_cluster() -> TestCluster {
    let mut cluster = TestCluster::init(NODES);
    cluster.set_node_command(&["kv", "node", "run"]);
    for node in 1..=NODES {
        cluster.start_node(node);
    }
    cluster
}

/// A client presenting the admin certificate of `cluster init`, trying
/// node `first` first.
fn client(cluster: &TestCluster, first: usize) -> KvClient {
    let dir = cluster.dir.path();
    let credentials = Credentials::load(
        &dir.join("ca/ca.crt"),
        &dir.join("admin/client.crt"),
        &dir.join("admin/client.key"),
    )
    .expect("the admin credentials of cluster init");
    let nodes = (1..=NODES)
        .map(|node| {
            let address = cluster
                .node_address(node)
                .parse()
                .expect("a socket address");
            (
                NodeId(node as u64),
                PeerAddress::from_socket_address(address),
            )
        })
        .collect();
    let client = KvClient::new(credentials, nodes, OPERATION_TIMEOUT);
    client.prefer(first - 1);
    client
}

/// The running node that says it leads, if any.
async fn leader(client: &KvClient, running: &[usize]) -> Option<usize> {
    for node in running {
        let status = client
            .call_node(NodeId(*node as u64), KvRequest::Status)
            .await;
        if let Ok(KvResponse::Status(report)) = status {
            if report.role == "leader" {
                return Some(*node);
            }
        }
    }
    None
}

/// A small seeded generator (xorshift64): the workload is the same on
/// every run, whatever the timing makes of it.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// What the clients share with the test.
struct Shared {
    history: Mutex<History>,
    /// Operations answered ok so far.
    ok: AtomicUsize,
    stop: AtomicBool,
}

/// One client: operations one after another until told to stop. Written
/// values are unique (client, counter), so a read says which write it saw;
/// a compare-and-swap expects the value this client saw last on that key.
async fn run_client(number: u64, client: KvClient, shared: Arc<Shared>) {
    let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ number);
    let mut seen = [0u64; KEYS as usize];
    let mut counter = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let key = random.below(KEYS);
        counter += 1;
        let value = number * 1_000_000 + counter;
        let op = match random.below(3) {
            0 => RegisterOp::Put(value),
            1 => RegisterOp::Get,
            _ => RegisterOp::Cas {
                expected: seen[key as usize],
                new: value,
            },
        };
        let id = lock(&shared.history).invoke(number, key, op);
        let output = match op {
            RegisterOp::Put(value) => client
                .put(key, value)
                .await
                .map(|()| RegisterOutput::Written),
            RegisterOp::Get => client.get(key, false).await.map(RegisterOutput::Value),
            RegisterOp::Cas { expected, new } => client
                .cas(key, expected, new)
                .await
                .map(|(swapped, _)| RegisterOutput::Swapped(swapped)),
        };
        let mut history = lock(&shared.history);
        match output {
            Ok(output) => {
                history.complete(id, output);
                shared.ok.fetch_add(1, Ordering::SeqCst);
                seen[key as usize] = match (op, output) {
                    (_, RegisterOutput::Value(value)) => value,
                    (RegisterOp::Put(value), _) => value,
                    (RegisterOp::Cas { new, .. }, RegisterOutput::Swapped(true)) => new,
                    _ => seen[key as usize],
                };
            }
            // Unavailable or timed out: the write may have been applied
            // (a follower forwarded it, the leader died after committing).
            Err(_) => history.give_up(id),
        }
    }
    client.close().await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until the clients have `count` answers ok in total.
fn wait_for_answers(cluster: &TestCluster, shared: &Shared, count: usize) {
    cluster.eventually(&format!("{count} operations answered"), || {
        (shared.ok.load(Ordering::SeqCst) >= count).then_some(())
    });
}

#[test]
fn a_kv_history_with_leader_kills_is_linearizable() {
    let mut cluster = start_kv_cluster();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let observer = client(&cluster, 1);
    let all: Vec<usize> = (1..=NODES).collect();
    cluster.eventually("a key-value leader", || {
        runtime.block_on(leader(&observer, &all))
    });
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        ok: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|number| {
            let first = (number as usize - 1) % NODES + 1;
            runtime.spawn(run_client(number, client(&cluster, first), shared.clone()))
        })
        .collect();
    for round in 1..=KILLS {
        wait_for_answers(&cluster, &shared, round * OK_BETWEEN_KILLS);
        let leader = cluster.eventually("a leader to kill", || {
            runtime.block_on(leader(&observer, &all))
        });
        cluster.kill_node(leader);
        let answered = shared.ok.load(Ordering::SeqCst);
        // The others elect a new leader and serve without it.
        wait_for_answers(&cluster, &shared, answered + OK_BETWEEN_KILLS / 2);
        cluster.start_node(leader);
    }
    wait_for_answers(
        &cluster,
        &shared,
        shared.ok.load(Ordering::SeqCst) + OK_BETWEEN_KILLS,
    );
    shared.stop.store(true, Ordering::SeqCst);
    for task in clients {
        runtime.block_on(task).expect("a client task");
    }
    let history = std::mem::take(&mut *lock(&shared.history)).close();
    let answered = shared.ok.load(Ordering::SeqCst);
    assert!(answered >= KILLS * OK_BETWEEN_KILLS, "{answered} answers");
    if let Err(violation) = sim::linearizability::check(&history) {
        let key_history: Vec<_> = history
            .iter()
            .filter(|operation| operation.key == violation.key)
            .collect();
        panic!("{violation}: {key_history:#?}");
    }
}
