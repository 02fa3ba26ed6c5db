//! Two-phase-commit deletes (SPEC §6) across crashes, on real `vault-cli`
//! processes: a coordinator killed before or right after its decision is
//! in the Raft log, and a participant killed while prepared.
//!
//! A crash lands at an exact point by waiting for the node's own log line
//! and then sending SIGKILL; where a phase must not end before the crash, a
//! participant is frozen with SIGSTOP (with a vote timeout long enough that
//! the coordinator keeps waiting for it) and resumed with SIGCONT.

use vault_tests::twopc::{
    add, assert_no_lock_remains, converges, coordinated_tx, decision_line, node_client,
    node_client_with_timeout, report, start, votes, wait_for_line, NOT_FOUND,
};

/// `name`=`value` for every node of a `size`-node cluster.
fn on_every_node<'a>(
    size: usize,
    settings: &[(&'a str, &'a str)],
) -> Vec<(usize, &'a str, &'a str)> {
    (1..=size)
        .flat_map(|node| {
            settings
                .iter()
                .map(move |(name, value)| (node, *name, *value))
        })
        .collect()
}

/// The coordinator crashes after the participants prepared and before any
/// decision: a frozen participant (SIGSTOP) keeps the coordinator waiting
/// for its vote (long vote timeout), the coordinator is killed, and the
/// prepared participants ask the leader after the decision timeout, which
/// logs GLOBAL_ABORT. Five nodes, so three keep a quorum.
#[test]
fn a_coordinator_crash_before_the_decision_is_aborted_by_recovery() {
    let env = on_every_node(
        5,
        &[
            ("VAULT_TWOPC_VOTE_TIMEOUT_MS", "600000"),
            ("VAULT_TWOPC_DECISION_TIMEOUT_MS", "2000"),
        ],
    );
    let mut cluster = start(5, &env);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let coordinator = if leader == 1 { 2 } else { 1 };
    let frozen = (1..=5)
        .rev()
        .find(|node| *node != leader && *node != coordinator)
        .expect("a fifth node");
    cluster.signal_node(frozen, libc::SIGSTOP);

    let client = node_client(&cluster, coordinator);
    let outcome = std::thread::scope(|scope| {
        let delete = scope.spawn(|| cluster.cli_as(&client, &["delete", "mail"], None));
        let tx = coordinated_tx(&cluster, coordinator, "mail");
        for node in (1..=5).filter(|node| *node != frozen) {
            wait_for_line(&cluster, node, "its commit vote", |line| {
                line.ends_with(&format!(
                    ": Phase Participant-Vote of Node node{node} votes VOTE_COMMIT for tx {tx}"
                ))
            });
        }
        // The coordinator cannot decide before the frozen node's vote or
        // the 10-minute vote timeout: it dies undecided.
        cluster.signal_node(coordinator, libc::SIGKILL);
        delete.join().expect("delete thread")
    });
    assert_ne!(
        outcome.code, 0,
        "the delete cannot have succeeded: {outcome:?}"
    );
    cluster.kill_node(coordinator);

    let running: Vec<usize> = (1..=5)
        .filter(|node| *node != frozen && *node != coordinator)
        .collect();
    cluster.eventually(
        "a leader logged GLOBAL_ABORT for the orphaned transaction",
        || {
            running
                .iter()
                .any(|node| {
                    cluster
                        .node_log(*node)
                        .contains("proposes GLOBAL_ABORT for undecided tx")
                })
                .then_some(())
        },
    );
    // The lock is released: an update of the secret is accepted (asked of
    // one live node alone: the client would spend its whole timeout on the
    // dead coordinator's address first).
    let live = node_client(&cluster, running[0]);
    cluster.eventually("an update is accepted once recovery aborted", || {
        let update = cluster.cli_as(
            &live,
            &["add-secret", "mail", "--password-stdin", "--update"],
            Some("new\n"),
        );
        (update.code == 0).then_some(())
    });
    cluster.signal_node(frozen, libc::SIGCONT);
    cluster.start_node(coordinator);
    converges(&cluster, "mail", 0);
    assert_no_lock_remains(&cluster, "mail");
}

/// The coordinator is killed (SIGKILL) the moment it logs
/// `Coordinator decision for tx T: GLOBAL_COMMIT`, which it prints only once
/// the decision entry is committed and applied (by the leader, when a
/// follower coordinates). The delete must still complete on every other
/// node, and on the coordinator once it restarts, leaving no lock. Whether
/// the Decide messages or the client's answer got out before the kill is a
/// race; nothing below depends on it. First a follower coordinates, then
/// the leader (whose death also forces an election).
#[test]
fn a_coordinator_killed_after_logging_the_commit_leaves_the_delete_complete() {
    let mut cluster = start(3, &[]);
    for (round, coordinator_is_leader) in [false, true].into_iter().enumerate() {
        let name = format!("mail{round}");
        assert_eq!(add(&cluster, &name, false), 0);
        converges(&cluster, &name, 0);
        let leader = cluster.wait_for_leader();
        let coordinator = match coordinator_is_leader {
            true => leader,
            false => (1..=3).find(|node| *node != leader).expect("a follower"),
        };
        let client = node_client(&cluster, coordinator);
        let outcome = std::thread::scope(|scope| {
            let delete = scope.spawn(|| cluster.cli_as(&client, &["delete", &name], None));
            let tx = coordinated_tx(&cluster, coordinator, &name);
            let decision = decision_line(&cluster, coordinator, &tx);
            cluster.signal_node(coordinator, libc::SIGKILL);
            assert_eq!(decision, "GLOBAL_COMMIT", "{}", cluster.log_tails(30));
            delete.join().expect("delete thread")
        });
        // Finished before the kill (0, the commit report) or cut off by it
        // (unavailable or another error), never an abort or "not found".
        eprintln!(
            "round {round}: the client of the killed coordinator exited {}",
            outcome.code
        );
        match outcome.code {
            0 => assert_eq!(report(&outcome)["decision"], "commit", "{outcome:?}"),
            code => assert!(![3, 4, 5].contains(&code), "{outcome:?}"),
        }
        cluster.kill_node(coordinator);
        converges(&cluster, &name, NOT_FOUND);
        cluster.start_node(coordinator);
        converges(&cluster, &name, NOT_FOUND);
        cluster.wait_for_leader();
        assert_no_lock_remains(&cluster, &name);
    }
}

/// A participant killed while prepared, and down while the decision is
/// made, learns it when it restarts. Five nodes: the coordinator C and the
/// leader L stay up, X is frozen (SIGSTOP) so that C cannot decide before
/// the crash, P is killed (SIGKILL) once C has received its commit vote
/// (logged after P's prepare was durable), then X resumes and votes, and
/// the decision commits through C, L, X and the fifth node while P is down.
/// After its restart P must read "not found" and hold no lock.
#[test]
fn a_participant_killed_while_prepared_learns_the_commit_on_restart() {
    // The vote timeout only bounds how long C waits for the frozen X (a
    // hang guard: X is resumed a moment later); acks are waited for as long,
    // so the client's timeout is longer still.
    let env = on_every_node(5, &[("VAULT_TWOPC_VOTE_TIMEOUT_MS", "15000")]);
    let mut cluster = start(5, &env);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let others: Vec<usize> = (1..=5).filter(|node| *node != leader).collect();
    let (coordinator, prepared, frozen) = (others[0], others[1], others[2]);
    let client = node_client_with_timeout(&cluster, coordinator, Some(45));
    cluster.signal_node(frozen, libc::SIGSTOP);

    let (outcome, decision) = std::thread::scope(|scope| {
        let delete = scope.spawn(|| cluster.cli_as(&client, &["delete", "mail"], None));
        let tx = coordinated_tx(&cluster, coordinator, "mail");
        let received = format!(
            ": Phase Coordinator of Node node{coordinator} receives VOTE_COMMIT from Phase \
             Participant-Vote of Node node{prepared} for tx {tx}"
        );
        wait_for_line(&cluster, coordinator, "P's commit vote", |line| {
            line.ends_with(&received)
        });
        cluster.signal_node(prepared, libc::SIGKILL);
        let undecided = !cluster
            .node_log(coordinator)
            .contains(&format!("Coordinator decision for tx {tx}"));
        cluster.signal_node(frozen, libc::SIGCONT);
        let decision = decision_line(&cluster, coordinator, &tx);
        assert!(
            undecided,
            "decided before P's crash: the vote timeout ran out?"
        );
        (delete.join().expect("delete thread"), decision)
    });
    assert_eq!(decision, "GLOBAL_COMMIT", "{}", cluster.log_tails(30));
    assert_eq!(outcome.code, 0, "{outcome:?}");
    let report = report(&outcome);
    assert_eq!(report["decision"], "commit", "{report}");
    assert_eq!(
        votes(&report),
        [1, 2, 3, 4, 5].map(|node| (format!("node{node}"), "commit".to_string()))
    );
    cluster.kill_node(prepared);
    converges(&cluster, "mail", NOT_FOUND);

    cluster.start_node(prepared);
    cluster.eventually("the restarted participant learns the commit", || {
        (vault_tests::twopc::stale_read(&cluster, prepared, "mail") == NOT_FOUND).then_some(())
    });
    // It learned the outcome from the log, not from a Decide, and still
    // says so in the SPEC §7 form.
    let learned = format!(
        "Phase Participant-Decision of Node node{prepared} commits tx {} (GLOBAL_COMMIT)",
        report["tx"].as_str().expect("tx id")
    );
    cluster.eventually("the restarted participant logs its commit", || {
        vault_tests::twopc::logged(&cluster, prepared, &learned).then_some(())
    });
    converges(&cluster, "mail", NOT_FOUND);
    assert_no_lock_remains(&cluster, "mail");
}
