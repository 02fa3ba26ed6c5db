//! Cluster lifecycle through real processes (SPEC §13): growing a running
//! cluster, removing a follower or the leader, replacing a dead host under
//! its old id, a wiped voter that must not come back, one membership change
//! at a time, admin-only membership commands, and their refusals (§8 exit
//! codes).
//!
//! Every node is a real `vault-cli node run` on loopback; every change goes
//! through `vault-cli cluster add-node` and `vault-cli member ...` as an
//! operator would run them.

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use vault_tests::{
    free_port_range, node_number, BackgroundWriter, CliResult, Member, TestCluster, Writes,
};

/// `[raft] election_max_ms` of the nodes `cluster init` writes (README).
const ELECTION_MAX: Duration = Duration::from_millis(1000);

fn node_id(node: usize) -> String {
    format!("node{node}")
}

fn others(excluded: usize, nodes: &[usize]) -> Vec<usize> {
    nodes.iter().copied().filter(|n| *n != excluded).collect()
}

fn ids(members: &[Member]) -> Vec<String> {
    let mut ids: Vec<String> = members.iter().map(|member| member.id.clone()).collect();
    ids.sort();
    ids
}

fn expected_ids(nodes: &[usize]) -> Vec<String> {
    let mut ids: Vec<String> = nodes.iter().map(|node| node_id(*node)).collect();
    ids.sort();
    ids
}

/// The one member `member list` calls leader, as a node number.
fn listed_leader(members: &[Member]) -> usize {
    let leaders: Vec<&Member> = members.iter().filter(|member| member.leader).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {members:?}");
    node_number(&leaders[0].id).expect("a node id")
}

fn add_secret(cluster: &TestCluster, config: &Path, name: &str, password: &str) {
    let args = ["add-secret", name, "--username", "me", "--password-stdin"];
    cluster.cli_as(config, &args, Some(password)).expect_ok();
}

fn get_secret(cluster: &TestCluster, config: &Path, name: &str, stale: bool) -> CliResult {
    let mut args = vec!["get-secret", name];
    if stale {
        args.push("--stale");
    }
    cluster.cli_as(config, &args, None)
}

fn password_of(cluster: &TestCluster, config: &Path, name: &str, stale: bool) -> Option<String> {
    let read = get_secret(cluster, config, name, stale);
    (read.code == 0).then(|| read.json()["password"].as_str().map(str::to_string))?
}

/// Every secret of `secrets` reads back with its password through `config`.
fn assert_all_readable(
    cluster: &TestCluster,
    config: &Path,
    secrets: &[(String, String)],
    stale: bool,
    whom: &str,
) {
    for (name, password) in secrets {
        let read = get_secret(cluster, config, name, stale);
        assert_eq!(
            read.code, 0,
            "{whom}: acknowledged {name} unreadable: {read:?}"
        );
        assert_eq!(read.json()["password"], password.as_str(), "{whom}: {name}");
    }
}

/// Waits until node `node` alone serves the last of `secrets` from its own
/// copy (entries apply in log order, so it then holds every earlier one),
/// then checks them all there with `--stale`.
fn assert_served_locally(cluster: &TestCluster, node: usize, secrets: &[(String, String)]) {
    let only = cluster.write_client_config(
        &format!("only-node{node}.toml"),
        &vault_tests::ClientIdentity::dir("admin"),
        &[node],
        Some(5),
    );
    let (last, last_password) = secrets.last().expect("some secrets").clone();
    cluster.eventually(&format!("node{node} catches up to {last}"), || {
        (password_of(cluster, &only, &last, true)? == last_password).then_some(())
    });
    assert_all_readable(
        cluster,
        &only,
        secrets,
        true,
        &format!("node{node} --stale"),
    );
}

fn pairs(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|index| (format!("{prefix}-{index}"), format!("pw-{prefix}-{index}")))
        .collect()
}

fn write_all(cluster: &TestCluster, config: &Path, secrets: &[(String, String)]) {
    for (name, password) in secrets {
        add_secret(cluster, config, name, password);
    }
}

// ---------------------------------------------------------------------------
// 1. Growing.
// ---------------------------------------------------------------------------

/// 3 → 5 voters while a client keeps writing: each new node is made with
/// `cluster add-node`, told to the cluster with `member add`, started, and
/// promoted by the leader once caught up. No acknowledged write is lost,
/// the new nodes serve every one of them from their own copy, and
/// `member list --json` has the shape of SPEC §8.
#[test]
fn growing_from_three_to_five_voters_under_writes_keeps_every_acknowledged_write() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let founders = cluster.admin_config("founders.toml", &[1, 2, 3]);
    let writer = BackgroundWriter::start(founders.clone(), "grow");
    cluster.eventually("the writer's first write is acknowledged", || {
        (writer.acknowledged_count() > 0).then_some(())
    });

    let before_changes = writer.acknowledged_count();
    let node4 = cluster.join_new_node(&founders);
    cluster.wait_for_voter(&founders, node4);
    let node5 = cluster.join_new_node(&founders);
    cluster.wait_for_voter(&founders, node5);
    let during_changes = writer.acknowledged_count() - before_changes;
    // Some writes on the grown cluster, so that the last acknowledged ones
    // were committed by five voters.
    let grown = writer.acknowledged_count();
    cluster.eventually("writes go on with five voters", || {
        (writer.acknowledged_count() >= grown + 3).then_some(())
    });
    let Writes {
        acknowledged,
        failed,
    } = writer.stop();
    assert!(
        during_changes > 0,
        "no write was acknowledged while node4 and node5 joined; failed writes: {failed:?}"
    );

    let everyone: Vec<usize> = (1..=5).collect();
    let members = cluster.eventually("five reachable voters", || {
        let members = cluster.member_list(&cluster.client_config())?;
        (members.len() == 5 && members.iter().all(|m| m.is_voter() && m.reachable))
            .then_some(members)
    });
    assert_eq!(ids(&members), expected_ids(&everyone), "{members:?}");
    listed_leader(&members);
    for member in &members {
        let number = node_number(&member.id).expect("a node id");
        assert_eq!(member.addr, cluster.node_address(number), "{member:?}");
        assert!(member.match_index > 0, "{member:?}");
    }

    // Linearizable reads through every node, then each new node's copy.
    assert_all_readable(
        &cluster,
        &cluster.client_config(),
        &acknowledged,
        false,
        "linearizable",
    );
    for node in [node4, node5] {
        assert_served_locally(&cluster, node, &acknowledged);
    }
    eprintln!(
        "{} writes acknowledged ({during_changes} while the two nodes joined), {} failed",
        acknowledged.len(),
        failed.len()
    );
}

// ---------------------------------------------------------------------------
// 2. and 3. Removing.
// ---------------------------------------------------------------------------

/// `member remove` of a follower that keeps running: the rest keep writing,
/// they close its connections ("refusing a node that is not a member of the
/// cluster": its certificate is still signed by the CA, but trust follows
/// membership), and it cannot disturb them: over several election timeouts
/// their term does not move and each term has one leader.
#[test]
fn a_removed_follower_that_keeps_running_is_refused_and_cannot_disturb_the_rest() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    cluster.add_secret("before", "me", "pw-before");
    let removed = others(leader, &[1, 2, 3])[0];
    let rest = others(removed, &[1, 2, 3]);
    let rest_config = cluster.admin_config("rest.toml", &rest);

    let removed_log_start = cluster.node_log(removed).len();
    let answer = cluster
        .member(&rest_config, &["remove", &node_id(removed)])
        .expect_ok()
        .json();
    assert_eq!(
        answer,
        json!({"id": node_id(removed)}),
        "member remove --json"
    );
    let members = cluster.member_list(&rest_config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&rest), "{members:?}");
    add_secret(&cluster, &rest_config, "after-remove", "pw-after-remove");

    let stranger = format!("urn:vault:node:node{removed}");
    for node in &rest {
        cluster.eventually(&format!("node{node} refuses node{removed}"), || {
            cluster
                .node_log(*node)
                .lines()
                .any(|line| {
                    line.contains("refusing a node that is not a member of the cluster")
                        && line.contains(&stranger)
                })
                .then_some(())
        });
    }

    // Watch the rest for several election timeouts of the removed node:
    // a removed node that could still campaign would show up as a rising
    // term (or a second leader) here.
    let term_before = cluster.views_of(&rest).expect("status of the rest")[&leader].term;
    let watch = watch_terms(&cluster, &rest, 5 * ELECTION_MAX);
    assert_eq!(
        watch.terms.iter().copied().collect::<Vec<_>>(),
        vec![term_before],
        "the term moved after node{removed} was removed (leaders by term: {:?}); \
         node{removed} running: {}\n{}",
        watch.leaders,
        cluster.is_running(removed),
        cluster.log_tails(30)
    );
    assert_eq!(
        watch.leaders.get(&term_before),
        Some(&leader),
        "the leader changed: {:?}",
        watch.leaders
    );

    // The watch proves something only if the removed node tried: still
    // running, it no longer hears a leader, so it keeps starting pre-votes
    // that the rest never see (they close its connections).
    if cluster.exited(removed).is_none() {
        let since_removal = &cluster.node_log(removed)[removed_log_start..];
        assert!(
            since_removal.contains("pre-vote"),
            "node{removed} kept running but never tried to campaign, so the watch shows \
             nothing:\n{since_removal}"
        );
    }
    add_secret(&cluster, &rest_config, "after-watch", "pw-after-watch");
    let secrets = [
        ("before".to_string(), "pw-before".to_string()),
        ("after-remove".to_string(), "pw-after-remove".to_string()),
        ("after-watch".to_string(), "pw-after-watch".to_string()),
    ];
    assert_all_readable(&cluster, &rest_config, &secrets, false, "the rest");
    let members = cluster.member_list(&rest_config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&rest), "{members:?}");
}

/// What `status` of some nodes showed over a window of polls.
struct TermWatch {
    /// Every term any of them reported.
    terms: BTreeSet<u64>,
    /// The node that called itself leader in each term where one did.
    leaders: BTreeMap<u64, usize>,
}

/// Polls `status` of `nodes` for `window` (and at least five times).
/// Panics if a term ever has two leaders.
fn watch_terms(cluster: &TestCluster, nodes: &[usize], window: Duration) -> TermWatch {
    let mut watch = TermWatch {
        terms: BTreeSet::new(),
        leaders: BTreeMap::new(),
    };
    let started = Instant::now();
    let mut polls = 0;
    while started.elapsed() < window || polls < 5 {
        let views = cluster.eventually("every remaining node answers status", || {
            cluster.views_of(nodes)
        });
        polls += 1;
        for (node, view) in views {
            let term = view.term;
            watch.terms.insert(term);
            if view.role == "leader" {
                let earlier = *watch.leaders.entry(term).or_insert(node);
                assert_eq!(earlier, node, "two leaders in term {term}");
            }
        }
        // Spacing between polls; the window, not this pause, is what the
        // assertion relies on.
        std::thread::sleep(Duration::from_millis(200));
    }
    watch
}

/// `member remove` of the leader itself: it hands over, one of the rest
/// leads, writes go on, and it is no longer a member.
#[test]
fn removing_the_leader_hands_leadership_to_one_of_the_rest() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let all = cluster.client_config();
    let members = cluster.eventually("member list names a leader", || {
        cluster
            .member_list(&all)
            .filter(|members| members.iter().any(|member| member.leader))
    });
    let leader = listed_leader(&members);
    cluster.add_secret("before", "me", "pw-before");

    let answer = cluster
        .member(&all, &["remove", &node_id(leader)])
        .expect_ok()
        .json();
    assert_eq!(
        answer,
        json!({"id": node_id(leader)}),
        "member remove --json"
    );
    let rest = others(leader, &[1, 2, 3]);
    let new_leader = cluster.wait_for_leader_among(&rest);
    assert_ne!(new_leader, leader);

    let rest_config = cluster.admin_config("rest.toml", &rest);
    add_secret(&cluster, &rest_config, "after", "pw-after");
    let secrets = [
        ("before".to_string(), "pw-before".to_string()),
        ("after".to_string(), "pw-after".to_string()),
    ];
    assert_all_readable(&cluster, &rest_config, &secrets, false, "the rest");
    let members = cluster.member_list(&rest_config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&rest), "{members:?}");
    assert_eq!(listed_leader(&members), new_leader, "{members:?}");
}

// ---------------------------------------------------------------------------
// 4. Replacing a dead host.
// ---------------------------------------------------------------------------

/// node3's host dies with its disk. `member remove node3`; `cluster
/// add-node --id node3` is refused while the old directory is there (exit
/// 4) and accepted once it is gone; `member add node3` at the same address;
/// the new node3 catches up, becomes a voter and serves what was written
/// before it died, while it was gone and after it came back.
#[test]
fn a_dead_host_is_replaced_under_its_old_id_and_catches_up() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let before = pairs("before", 3);
    write_all(&cluster, &cluster.client_config(), &before);

    cluster.kill_node(3);
    cluster.wipe_data(3);
    let rest_config = cluster.admin_config("rest.toml", &[1, 2]);
    cluster.wait_for_leader_among(&[1, 2]);
    cluster
        .member(&rest_config, &["remove", "node3"])
        .expect_ok();
    let gone = pairs("gone", 2);
    write_all(&cluster, &rest_config, &gone);

    let address = cluster.node_address(3);
    let refused = cluster.cluster_add_node(3, &address);
    assert_eq!(
        refused.code, 4,
        "add-node over an existing directory: {refused:?}"
    );
    assert!(
        refused.stderr.contains("already exists")
            && refused.stderr.contains("vault-cli member remove node3"),
        "the refusal says what to do: {refused:?}"
    );
    cluster.remove_node_directory(3);
    cluster.cluster_add_node(3, &address).expect_ok();
    let added = cluster
        .member(&rest_config, &["add", "node3", "--addr", &address])
        .expect_ok()
        .json();
    assert_eq!(
        added,
        json!({"id": "node3", "addr": address, "role": "learner"})
    );
    cluster.start_node(3);
    let members = cluster.wait_for_voter(&rest_config, 3);
    assert_eq!(ids(&members), expected_ids(&[1, 2, 3]), "{members:?}");

    let after = pairs("after", 2);
    write_all(&cluster, &cluster.client_config(), &after);
    let every: Vec<(String, String)> = [before, gone, after].concat();
    assert_served_locally(&cluster, 3, &every);
    assert_all_readable(
        &cluster,
        &cluster.client_config(),
        &every,
        false,
        "linearizable",
    );
}

// ---------------------------------------------------------------------------
// 5. A wiped voter does not come back.
// ---------------------------------------------------------------------------

/// The scenario an amnesiac voter would break: follower A is down while
/// writes are acknowledged by the leader and follower B; B loses its disk;
/// the leader dies; A comes back. Had B come back as a voter with empty
/// state, A and B could elect A, which lacks those writes, and reads would
/// answer "not found". B refuses to start instead (naming the fix), so A
/// waits for the old leader, and no acknowledged secret is ever reported
/// missing (exit 6 while there is no quorum is fine; exit 3 never).
#[test]
fn a_wiped_voter_refuses_to_start_and_no_acknowledged_write_is_ever_missing() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    let followers = others(leader, &[1, 2, 3]);
    let (down, wiped) = (followers[0], followers[1]);
    let early = pairs("early", 2);
    write_all(&cluster, &cluster.client_config(), &early);
    cluster.wait_for_applied(1);

    cluster.kill_node(down);
    let late = pairs("late", 3);
    let pair_config = cluster.admin_config("pair.toml", &[leader, wiped]);
    write_all(&cluster, &pair_config, &late);

    cluster.kill_node(wiped);
    cluster.wipe_data(wiped);
    let refused = cluster.run_node_to_exit(wiped, &[]);
    assert_ne!(refused.code, 0, "a wiped voter started: {refused:?}");
    let sentence = refused
        .stderr
        .lines()
        .find(|line| line.contains("holds no Raft state"))
        .unwrap_or_else(|| panic!("no refusal sentence: {refused:?}"));
    for needed in [
        format!("vault-cli member remove node{wiped}"),
        "add it back".to_string(),
    ] {
        assert!(sentence.contains(&needed), "{needed:?} missing: {sentence}");
    }

    cluster.kill_node(leader);
    cluster.start_node(down);
    let acknowledged: Vec<(String, String)> = [early, late].concat();
    // A alone: no quorum, so it must not answer at all; above all it must
    // not say that a late write does not exist.
    let alone = cluster.write_client_config(
        "alone.toml",
        &vault_tests::ClientIdentity::dir("admin"),
        &[down],
        Some(3),
    );
    let (last, _) = acknowledged.last().expect("writes").clone();
    let read = get_secret(&cluster, &alone, &last, false);
    assert_ne!(
        read.code, 3,
        "node{down} alone says {last} is missing: {read:?}"
    );
    assert_ne!(
        read.code, 0,
        "node{down} alone answered a linearizable read: {read:?}"
    );

    cluster.start_node(leader);
    let live = cluster.admin_config("live.toml", &[down, leader]);
    for (name, password) in &acknowledged {
        let read = cluster.eventually(&format!("{name} is readable"), || {
            let read = get_secret(&cluster, &live, name, false);
            assert_ne!(
                read.code,
                3,
                "acknowledged {name} reported missing: {read:?}\n{}",
                cluster.log_tails(30)
            );
            (read.code == 0).then_some(read)
        });
        assert_eq!(read.json()["password"], password.as_str(), "{name}");
    }
}

// ---------------------------------------------------------------------------
// 6. to 8. Refusals.
// ---------------------------------------------------------------------------

/// One change at a time: while node4 (never started) is a learner, adding
/// node5 and removing node1 are conflicts (exit 4); removing node4 cancels
/// its addition, and then node5 may be added.
#[test]
fn a_second_membership_change_is_refused_while_a_learner_is_pending() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let config = cluster.client_config();
    let address4 = format!("127.0.0.1:{}", free_port_range(1));
    let address5 = format!("127.0.0.1:{}", free_port_range(1));

    let added = cluster
        .member(&config, &["add", "node4", "--addr", &address4])
        .expect_ok()
        .json();
    assert_eq!(added["role"], "learner", "{added}");
    let second = cluster.member(&config, &["add", "node5", "--addr", &address5]);
    assert_eq!(
        second.code, 4,
        "a second add while node4 is a learner: {second:?}"
    );
    assert!(second.stderr.contains("in progress"), "{second:?}");
    let remove = cluster.member(&config, &["remove", "node1"]);
    assert_eq!(
        remove.code, 4,
        "a remove while node4 is a learner: {remove:?}"
    );

    let members = cluster.member_list(&config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&[1, 2, 3, 4]), "{members:?}");
    let node4 = members.iter().find(|m| m.id == "node4").expect("node4");
    assert_eq!(node4.role, "learner", "{members:?}");

    let cancel = cluster
        .member(&config, &["remove", "node4"])
        .expect_ok()
        .json();
    assert_eq!(cancel, json!({"id": "node4"}));
    cluster
        .member(&config, &["add", "node5", "--addr", &address5])
        .expect_ok();
    let members = cluster.member_list(&config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&[1, 2, 3, 5]), "{members:?}");
}

/// A client identity (not an admin) may not list, add or remove members
/// (exit 7), and its attempts change nothing.
#[test]
fn a_client_identity_may_not_list_add_or_remove_members() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let admin = cluster.client_config();
    let before = cluster.eventually("member list", || cluster.member_list(&admin));
    let alice = cluster.add_client("alice");

    let address = format!("127.0.0.1:{}", free_port_range(1));
    for args in [
        vec!["list"],
        vec!["add", "node4", "--addr", &address],
        vec!["remove", "node3"],
    ] {
        let refused = cluster.member(&alice, &args);
        assert_eq!(refused.code, 7, "member {args:?} as alice: {refused:?}");
    }
    let after = cluster.member_list(&admin).expect("member list");
    assert_eq!(ids(&after), ids(&before), "membership changed");
    let roles = |members: &[Member]| -> Vec<String> {
        members
            .iter()
            .map(|m| format!("{}:{}", m.id, m.role))
            .collect()
    };
    assert_eq!(roles(&after), roles(&before));
}

/// The refusals of SPEC §13 on a one-node cluster: an unknown id (exit 3),
/// the last voter (exit 4), an existing member (exit 4), a malformed
/// address (a usage error, exit 2, that says what is wrong, as for
/// `cluster add-node`). The membership is unchanged.
#[test]
fn membership_refusals_unknown_id_last_voter_existing_member_bad_address() {
    let cluster = TestCluster::start(1);
    cluster.wait_for_leader();
    let config = cluster.client_config();

    let unknown = cluster.member(&config, &["remove", "node9"]);
    assert_eq!(unknown.code, 3, "remove of an unknown id: {unknown:?}");
    let last = cluster.member(&config, &["remove", "node1"]);
    assert_eq!(last.code, 4, "remove of the last voter: {last:?}");
    let address = cluster.node_address(1);
    let existing = cluster.member(&config, &["add", "node1", "--addr", &address]);
    assert_eq!(existing.code, 4, "add of an existing member: {existing:?}");
    for bad in [
        "no-port",
        "127.0.0.1:",
        ":7001",
        "127.0.0.1:99999",
        "127.0.0.1:0",
    ] {
        let malformed = cluster.member(&config, &["add", "node2", "--addr", bad]);
        assert_eq!(
            malformed.code, 2,
            "add with --addr {bad:?} is a usage error: {malformed:?}"
        );
        assert!(
            malformed.stderr.contains(bad) && malformed.stderr.contains("HOST:PORT"),
            "the error names the address and the expected form: {malformed:?}"
        );
        assert_eq!(
            malformed.stderr.trim().lines().count(),
            1,
            "one sentence: {malformed:?}"
        );
    }

    let members = cluster.member_list(&config).expect("member list");
    assert_eq!(ids(&members), expected_ids(&[1]), "{members:?}");
    assert!(members[0].is_voter() && members[0].leader, "{members:?}");
}
