//! Two-phase-commit deletes (SPEC §6) on real `vault-cli` processes: the
//! outcomes, the report, the exit codes and the log lines of SPEC §7/§8,
//! and concurrent operations on one secret. Crashes are in `twopc_crash.rs`.

use vault_tests::twopc::{
    add, assert_no_lock_remains, converges, delete_via, logged, node_client, report, stale_read,
    start, votes, ABORTED, CONFLICT, NOT_FOUND,
};
use vault_tests::{CliResult, TestCluster};

/// The SPEC §7 lines of one transaction on both sides, for every
/// participant: vote request and answer, the vote itself (`None` for
/// commit, `Some(reason)` for abort) as sent and as received, the decision,
/// the Decide request, and each participant's commit/abort and ack.
fn assert_logged_transaction(
    cluster: &TestCluster,
    coordinator: usize,
    tx: &str,
    decision: &str,
    votes: &[(usize, Option<&str>)],
) {
    let c = format!("node{coordinator}");
    let (verb, global) = match decision {
        "commit" => ("commits", "GLOBAL_COMMIT"),
        _ => ("aborts", "GLOBAL_ABORT"),
    };
    let mut expected = vec![(
        coordinator,
        format!("Coordinator decision for tx {tx}: {global}"),
    )];
    for (node, abort_reason) in votes {
        let p = format!("node{node}");
        let (vote, reason) = match abort_reason {
            None => ("VOTE_COMMIT", String::new()),
            Some(reason) => ("VOTE_ABORT", format!(": {reason}")),
        };
        expected.extend([
            (coordinator, format!("Phase Coordinator of Node {c} sends RPC Vote to Phase Participant-Vote of Node {p}")),
            (*node, format!("Phase Participant-Vote of Node {p} votes {vote} for tx {tx}{reason}")),
            (*node, format!("Phase Participant-Vote of Node {p} sends RPC Vote to Phase Coordinator of Node {c}")),
            (coordinator, format!("Phase Coordinator of Node {c} receives {vote} from Phase Participant-Vote of Node {p} for tx {tx}{reason}")),
            (coordinator, format!("Phase Coordinator of Node {c} sends RPC Decide to Phase Participant-Decision of Node {p}")),
            (*node, format!("Phase Participant-Decision of Node {p} {verb} tx {tx} ({global})")),
            (*node, format!("Phase Participant-Decision of Node {p} sends RPC Ack to Phase Coordinator of Node {c}")),
        ]);
    }
    // Nodes write their logs on a background thread: a line logged just
    // before the reply may reach the file just after it.
    for (node, message) in expected {
        cluster.eventually(&format!("node{node} logs exactly {message:?}"), || {
            logged(cluster, node, &message).then_some(())
        });
    }
}

/// `node2-1700000000123-0a1b2c3d`: the coordinator, its clock, a nonce.
fn assert_tx_id_shape(tx: &str, coordinator: usize) {
    let parts: Vec<&str> = tx.split('-').collect();
    assert_eq!(parts.len(), 3, "{tx}");
    assert_eq!(parts[0], format!("node{coordinator}"), "{tx}");
    assert!(parts[1].bytes().all(|b| b.is_ascii_digit()), "{tx}");
    assert!(
        parts[2].len() == 8 && parts[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{tx}"
    );
}

#[test]
fn all_commit_deletes_the_secret_on_every_node() {
    let cluster = start(3, &[]);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let coordinator = if leader == 1 { 2 } else { 1 };

    let result = delete_via(&cluster, coordinator, "mail");
    assert_eq!(result.code, 0, "{result:?}");
    let report = report(&result);
    assert_eq!(report["decision"], "commit", "{report}");
    assert_eq!(
        votes(&report),
        [1, 2, 3].map(|node| (format!("node{node}"), "commit".to_string()))
    );
    assert_eq!(
        report["acked"],
        serde_json::json!(["node1", "node2", "node3"])
    );
    // Acked means applied: every node already lost the secret.
    for node in 1..=3 {
        assert_eq!(stale_read(&cluster, node, "mail"), NOT_FOUND, "node{node}");
    }
    let tx = report["tx"].as_str().expect("tx id");
    assert_tx_id_shape(tx, coordinator);
    let all_commit = [1, 2, 3].map(|node| (node, None));
    assert_logged_transaction(&cluster, coordinator, tx, "commit", &all_commit);

    // Deleting it again, or a name that never existed: nothing to delete,
    // exit 3 and one JSON error document.
    for name in ["mail", "never-added"] {
        let again = cluster.cli(&["delete", name]);
        assert_eq!(again.code, NOT_FOUND, "{again:?}");
        assert_eq!(again.json()["code"], NOT_FOUND, "{again:?}");
    }

    // Through the leader, which reads the version from its own state:
    // the version an update just made is the one voted on and deleted, and
    // "not found" stays exit 3.
    let as_leader = node_client(&cluster, leader);
    let add_and_update = [false, true].map(|update| {
        let mut args = vec!["add-secret", "bank", "--password-stdin"];
        if update {
            args.push("--update");
        }
        cluster.cli_as(&as_leader, &args, Some("hunter2\n")).code
    });
    assert_eq!(add_and_update, [0, 0]);
    let result = delete_via(&cluster, leader, "bank");
    assert_eq!(result.code, 0, "{result:?}");
    assert_eq!(
        vault_tests::twopc::report(&result)["decision"],
        "commit",
        "{result:?}"
    );
    converges(&cluster, "bank", NOT_FOUND);
    for name in ["bank", "never-added"] {
        let again = delete_via(&cluster, leader, name);
        assert_eq!(again.code, NOT_FOUND, "{again:?}");
    }
}

#[test]
fn a_node_with_the_abort_policy_aborts_and_the_secret_stays() {
    let cluster = start(3, &[(3, "VAULT_VOTE", "abort")]);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);

    let result = delete_via(&cluster, 1, "mail");
    assert_eq!(result.code, ABORTED, "{result:?}");
    assert!(result.stderr.contains("aborted"), "{result:?}");
    // One JSON document, the report: no error document after it.
    let report = report(&result);
    assert_eq!(report["decision"], "abort");
    assert_eq!(
        votes(&report),
        [(1, "commit"), (2, "commit"), (3, "abort")]
            .map(|(node, vote)| (format!("node{node}"), vote.to_string()))
    );
    assert_eq!(
        report["acked"],
        serde_json::json!(["node1", "node2", "node3"])
    );
    let tx = report["tx"].as_str().expect("tx id");
    let votes = [(1, None), (2, None), (3, Some("vote policy is abort"))];
    assert_logged_transaction(&cluster, 1, tx, "abort", &votes);
    converges(&cluster, "mail", 0);
    // The abort released every lock: an update through each node (which
    // refuses an update of a secret it holds locked) goes through.
    for node in 1..=3 {
        let update = cluster.cli_as(
            &node_client(&cluster, node),
            &["add-secret", "mail", "--password-stdin", "--update"],
            Some("new\n"),
        );
        assert_eq!(update.code, 0, "node{node}: {update:?}");
    }
}

#[test]
fn a_node_down_makes_the_delete_abort_and_it_catches_up_later() {
    let mut cluster = start(3, &[]);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill_node(down);

    let result = cluster.cli(&["delete", "mail"]);
    assert_eq!(result.code, ABORTED, "{result:?}");
    let report = report(&result);
    assert_eq!(report["votes"][format!("node{down}")], "abort", "{report}");
    converges(&cluster, "mail", 0);

    cluster.start_node(down);
    converges(&cluster, "mail", 0);
    // With every node back, the delete commits: no lock was left behind.
    assert_no_lock_remains(&cluster, "mail");
}

#[test]
fn a_concurrent_delete_and_update_agree_on_every_node() {
    let cluster = start(3, &[]);
    for round in 0..3 {
        let name = format!("race{round}");
        assert_eq!(add(&cluster, &name, false), 0);
        let (delete, update) = std::thread::scope(|scope| {
            let delete = scope.spawn(|| cluster.cli(&["delete", &name]));
            let update = scope.spawn(|| {
                cluster.cli_with_input(
                    &["add-secret", &name, "--password-stdin", "--update"],
                    Some("new\n"),
                )
            });
            (
                delete.join().expect("delete thread"),
                update.join().expect("update thread"),
            )
        });
        assert!(
            [0, NOT_FOUND, CONFLICT].contains(&update.code),
            "update: {update:?}"
        );
        match delete.code {
            0 => converges(&cluster, &name, NOT_FOUND),
            CONFLICT | ABORTED => converges(&cluster, &name, 0),
            other => panic!("delete exit {other}: {delete:?}"),
        }
        assert_no_lock_remains(&cluster, &name);
    }
}

/// Two deletes of one secret, each coordinated by a different node, at
/// once. Under wait-die exactly one commits; the other aborts (it found the
/// secret locked by an older delete, or gone once it could vote) or, if it
/// started after the first committed, reports not found. Rounds alternate
/// two followers and the leader with a follower as the coordinators.
#[test]
fn two_concurrent_deletes_commit_exactly_once() {
    let cluster = start(3, &[]);
    for round in 0..6 {
        let leader = cluster.wait_for_leader();
        let followers: Vec<usize> = (1..=3).filter(|node| *node != leader).collect();
        let (first, second) = match round % 3 {
            0 => (followers[0], followers[1]),
            1 => (leader, followers[0]),
            _ => (followers[1], leader),
        };
        let name = format!("twice{round}");
        assert_eq!(add(&cluster, &name, false), 0);
        converges(&cluster, &name, 0);
        let (one, two) = std::thread::scope(|scope| {
            let one = scope.spawn(|| delete_via(&cluster, first, &name));
            let two = scope.spawn(|| delete_via(&cluster, second, &name));
            (
                one.join().expect("first delete"),
                two.join().expect("second delete"),
            )
        });
        let (winner, loser) = exactly_one_winner(&cluster, round, &one, &two);
        let winner = report(winner);
        assert_eq!(winner["decision"], "commit", "{winner}");
        if loser.code == ABORTED {
            assert_eq!(report(loser)["decision"], "abort", "{loser:?}");
        }
        converges(&cluster, &name, NOT_FOUND);
        assert_no_lock_remains(&cluster, &name);
    }
    // How often the race really met a lock (it varies from run to run).
    let logs: String = (1..=3).map(|node| cluster.node_log(node)).collect();
    let votes = |needle: &str| {
        logs.lines()
            .filter(|line| line.contains(": Phase Participant-Vote") && line.contains(needle))
            .count()
    };
    eprintln!(
        "wait-die over the rounds: {} votes waited, {} died",
        votes("until younger tx"),
        votes("which is older (wait-die)")
    );
}

/// The one delete that committed (exit 0) and the other, which must have
/// aborted or found nothing.
fn exactly_one_winner<'a>(
    cluster: &TestCluster,
    round: usize,
    one: &'a CliResult,
    two: &'a CliResult,
) -> (&'a CliResult, &'a CliResult) {
    let (winner, loser) = match (one.code, two.code) {
        (0, code) if code != 0 => (one, two),
        (code, 0) if code != 0 => (two, one),
        _ => panic!(
            "round {round}: not exactly one delete committed:\n{one:?}\n{two:?}\n{}",
            cluster.log_tails(30)
        ),
    };
    assert!(
        [NOT_FOUND, ABORTED].contains(&loser.code),
        "round {round}: the other delete must abort or find nothing: {loser:?}"
    );
    (winner, loser)
}
