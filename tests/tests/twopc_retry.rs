//! A `delete` retried after "unavailable" is executed once (SPEC §3, §6):
//! the retry carries the first attempt's client session, and whichever node
//! it lands on answers with the first attempt's transaction and outcome,
//! never "not found" or "aborted" for a delete that committed, and never
//! deletes a second time.
//!
//! The client library is driven directly with a fixed session, as a client
//! process that lost the answer and asks again does.

use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use std::sync::Arc;
use std::time::Duration;
use vault::client::VaultClient;
use vault::protocol::{ClientSession, Decision, Reply, Request, Response};
use vault_tests::twopc::{
    add, converges, coordinated_tx, decision_line, stale_read, start, NOT_FOUND,
};
use vault_tests::TestCluster;

/// A client of the cluster's admin identity (the one `vault-cli` uses in
/// these tests, so it owns the secrets added through the command line) that
/// talks to `nodes` only.
fn client_of(cluster: &TestCluster, nodes: &[usize]) -> VaultClient {
    let dir = cluster.dir.path();
    let credentials = certs::Credentials::load(
        &dir.join("ca/ca.crt"),
        &dir.join("admin/client.crt"),
        &dir.join("admin/client.key"),
    )
    .expect("admin credentials");
    let nodes = nodes
        .iter()
        .map(|node| {
            let id: NodeId = format!("node{node}").parse().expect("node id");
            let address = PeerAddress {
                address: cluster.node_address(*node).parse().expect("socket address"),
                server_name: "127.0.0.1".into(),
            };
            (id, address)
        })
        .collect();
    VaultClient::new(credentials, nodes, Duration::from_secs(20))
}

fn delete(name: &str) -> Request {
    Request::Delete { name: name.into() }
}

/// The transaction id of a commit report; panics on anything else.
fn committed_tx(reply: &Reply, what: &str) -> String {
    match reply {
        Ok(Response::Deleted(report)) if report.decision == Decision::Commit => report.tx.clone(),
        other => panic!("{what}: expected the commit report, got {other:?}"),
    }
}

/// Sends `delete(name)` under `session` through a client of `node` alone.
fn retry_via(
    runtime: &tokio::runtime::Runtime,
    cluster: &TestCluster,
    node: usize,
    name: &str,
    session: ClientSession,
) -> Reply {
    let client = client_of(cluster, &[node]);
    runtime.block_on(async {
        let reply = client.call_in_session(delete(name), session).await;
        client.close().await;
        reply
    })
}

/// First the coordinator dies (SIGKILL) the moment its commit is in the
/// log, so its answer may never leave; the retry, on each of the other two
/// nodes, gets that transaction's commit. Then, with every node up, a
/// delete answered normally is retried on every node (an answer lost on
/// the way): the same transaction again. After each, the secret is added
/// back and retried once more: the retry must not delete it.
#[test]
fn a_retried_delete_gets_the_first_attempts_commit_on_any_node() {
    let mut cluster = start(3, &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client_id = 0x5eed_0000_0000_0001;

    // Round 1: the coordinator dies after its decision committed.
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let coordinator = (1..=3).find(|node| *node != leader).expect("a follower");
    let session = ClientSession { client_id, seq: 1 };
    let first_client = Arc::new(client_of(&cluster, &[coordinator]));
    let first = {
        let client = first_client.clone();
        runtime.spawn(async move { client.call_in_session(delete("mail"), session).await })
    };
    let tx = coordinated_tx(&cluster, coordinator, "mail");
    let decision = decision_line(&cluster, coordinator, &tx);
    cluster.signal_node(coordinator, libc::SIGKILL);
    assert_eq!(decision, "GLOBAL_COMMIT", "{}", cluster.log_tails(30));
    let first = runtime.block_on(first).expect("first attempt task");
    eprintln!("the first attempt, cut off by the kill, got {first:?}");
    cluster.kill_node(coordinator);
    let others: Vec<usize> = (1..=3).filter(|node| *node != coordinator).collect();
    for node in &others {
        let retry = retry_via(&runtime, &cluster, *node, "mail", session);
        let retried = committed_tx(&retry, &format!("the retry via node{node}"));
        assert_eq!(
            retried, tx,
            "the retry via node{node} names the first transaction"
        );
    }
    cluster.start_node(coordinator);
    cluster.wait_for_leader();
    converges(&cluster, "mail", NOT_FOUND);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let late = retry_via(&runtime, &cluster, coordinator, "mail", session);
    assert_eq!(committed_tx(&late, "a late retry"), tx);
    converges(&cluster, "mail", 0);

    // Round 2: the answer of a completed delete is lost.
    assert_eq!(add(&cluster, "pass", false), 0);
    converges(&cluster, "pass", 0);
    let session = ClientSession { client_id, seq: 2 };
    let answered = retry_via(&runtime, &cluster, 1, "pass", session);
    let tx = committed_tx(&answered, "the first attempt");
    for node in 1..=3 {
        let retry = retry_via(&runtime, &cluster, node, "pass", session);
        assert_eq!(
            committed_tx(&retry, &format!("the retry via node{node}")),
            tx
        );
    }
    assert_eq!(add(&cluster, "pass", false), 0);
    let retry = retry_via(&runtime, &cluster, 2, "pass", session);
    assert_eq!(committed_tx(&retry, "a retry after the re-add"), tx);
    for node in 1..=3 {
        assert_eq!(
            stale_read(&cluster, node, "pass"),
            0,
            "node{node} kept the re-added secret"
        );
    }
    runtime.block_on(first_client.close());
}
