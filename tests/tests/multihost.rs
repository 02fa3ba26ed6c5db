//! The multi-host path of SPEC §10 on one machine: one network namespace
//! per node on a Linux bridge, real IP addresses, certificates from
//! `vault-cli cluster init --hosts IP1,IP2,IP3`, and real partitions.
//!
//! Needs root and iproute2 (`ip`); without them each test prints a loud
//! `SKIPPED` line and passes. Namespaces, veths, the bridge and every node
//! are removed when the test ends, however it ends (see `netns`).

use serde_json::Value;
use std::path::Path;
use vault_tests::netns::{self, HostCluster};

/// Skips the calling test (returns) when namespaces are unavailable.
macro_rules! require_namespaces {
    ($test:literal) => {
        if let Some(reason) = netns::missing_requirements() {
            netns::report_skip($test, &reason);
            return;
        }
    };
}

fn password_of(cluster: &HostCluster, node: usize, config: &Path, name: &str) -> Option<String> {
    let read = cluster.cli_in(node, config, &["get-secret", name, "--stale"], None);
    (read.code == 0).then(|| read.json()["password"].as_str().map(str::to_string))?
}

/// A leader is elected across namespaces and serves writes; isolating it
/// leaves a majority that elects a new leader and keeps accepting writes,
/// while the isolated node, up and answering, commits nothing (exit 6 for a
/// client that can reach only it). After healing, every acknowledged write
/// is on every node, the minority's attempted write on none, and no term
/// ever had two leaders.
#[test]
fn a_partitioned_leader_cannot_commit_and_the_majority_carries_on() {
    require_namespaces!("a_partitioned_leader_cannot_commit_and_the_majority_carries_on");
    let cluster = HostCluster::start(3);
    let all = [1, 2, 3];
    let everyone = cluster.client_config("everyone.toml", &all, None);
    let old_leader = cluster.wait_for_leader(&all);
    let old_term = cluster.node_status(old_leader).expect("leader status")["term"]
        .as_u64()
        .expect("term");

    let mut acknowledged = Vec::new();
    for index in 0..3 {
        let (name, password) = (format!("before-{index}"), format!("pw-before-{index}"));
        cluster.add_secret(&everyone, &name, &password);
        acknowledged.push((name, password));
    }
    let read = cluster
        .cli(&everyone, &["get-secret", "before-0"], None)
        .expect_ok()
        .json();
    assert_eq!(read["password"], "pw-before-0");

    // Partition: the leader alone on one side, the other two on the other.
    cluster.network.isolate(old_leader);
    let majority: Vec<usize> = all.into_iter().filter(|n| *n != old_leader).collect();
    let new_leader = cluster.wait_for_leader(&majority);
    assert_ne!(new_leader, old_leader);
    let new_term = cluster.node_status(new_leader).expect("new leader status")["term"]
        .as_u64()
        .expect("term");
    assert!(
        new_term > old_term,
        "new leader's term {new_term} <= {old_term}"
    );

    let majority_config = cluster.client_config("majority.toml", &majority, None);
    for index in 0..4 {
        let (name, password) = (format!("during-{index}"), format!("pw-during-{index}"));
        cluster.add_secret(&majority_config, &name, &password);
        acknowledged.push((name, password));
    }

    // The isolated node is up and reachable from its own namespace: it
    // serves its local copy, steps down (CheckQuorum), and cannot commit.
    let only_isolated = cluster.client_config("isolated.toml", &[old_leader], Some(3));
    assert_eq!(
        password_of(&cluster, old_leader, &only_isolated, "before-2").as_deref(),
        Some("pw-before-2"),
        "the isolated node answers stale reads from its own copy"
    );
    cluster.eventually("the isolated leader steps down", || {
        let row = cluster.node_status(old_leader)?;
        (row["role"] != "leader").then_some(())
    });
    let write = cluster.cli_in(
        old_leader,
        &only_isolated,
        &[
            "add-secret",
            "minority",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some("pw-minority"),
    );
    assert_eq!(write.code, 6, "a write to the minority: {write:?}");
    let read = cluster.cli_in(
        old_leader,
        &only_isolated,
        &["get-secret", "before-0"],
        None,
    );
    assert_eq!(
        read.code, 6,
        "a linearizable read from the minority: {read:?}"
    );
    for node in &majority {
        cluster.node_status(*node).expect("majority node answers");
    }

    cluster.network.heal(old_leader);
    cluster.wait_for_leader(&all);
    for index in 0..2 {
        let (name, password) = (format!("after-{index}"), format!("pw-after-{index}"));
        cluster.add_secret(&everyone, &name, &password);
        acknowledged.push((name, password));
    }

    // Entries apply in log order, so once a node has the last write it
    // must have every earlier one.
    let (last, last_password) = acknowledged.last().cloned().expect("writes");
    for node in all {
        let only = cluster.client_config(&format!("only-node{node}.toml"), &[node], Some(5));
        cluster.eventually(&format!("node{node} catches up"), || {
            (password_of(&cluster, node, &only, &last)? == last_password).then_some(())
        });
        for (name, password) in &acknowledged {
            assert_eq!(
                password_of(&cluster, node, &only, name).as_deref(),
                Some(password.as_str()),
                "node{node} lacks acknowledged {name}"
            );
        }
        let missing = cluster.cli_in(node, &only, &["get-secret", "minority", "--stale"], None);
        assert_eq!(
            missing.code, 3,
            "node{node} holds the write the minority could not commit: {missing:?}"
        );
        cluster.node_status(node).expect("node answers");
    }

    let leaders = cluster.assert_one_leader_per_term();
    assert!(
        leaders
            .values()
            .any(|id| *id == format!("node{old_leader}"))
            && leaders
                .values()
                .any(|id| *id == format!("node{new_leader}")),
        "both leaders were observed: {leaders:?}"
    );
}

// ---------------------------------------------------------------------------
// One membership change across namespaces: a fourth host joins, then one of
// the founding hosts is removed.
// ---------------------------------------------------------------------------

fn member_ids(cluster: &HostCluster, config: &Path) -> Option<Vec<(String, String)>> {
    let list = cluster.cli(config, &["member", "list"], None);
    if list.code != 0 {
        return None;
    }
    let members = list.json()["members"].as_array()?.clone();
    members
        .iter()
        .map(|member: &Value| {
            Some((
                member["id"].as_str()?.to_string(),
                member["role"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// `cluster add-node` for a host in a fourth namespace, `member add`, the
/// joiner catches up and becomes a voter; then `member remove` of a founding
/// follower; the three remaining members serve every acknowledged write.
#[test]
fn a_fourth_host_joins_and_a_founding_host_leaves() {
    require_namespaces!("a_fourth_host_joins_and_a_founding_host_leaves");
    let mut cluster = HostCluster::start(3);
    let founders = [1, 2, 3];
    let founders_config = cluster.client_config("founders.toml", &founders, None);
    cluster.wait_for_leader(&founders);
    let mut acknowledged = vec![("first".to_string(), "pw-first".to_string())];
    cluster.add_secret(&founders_config, "first", "pw-first");

    cluster.network.add_host(4);
    let address = cluster.node_address(4);
    let dir = cluster.dir.path().to_string_lossy().into_owned();
    vault_tests::run_cli(&[
        "cluster", "add-node", "--dir", &dir, "--id", "node4", "--addr", &address,
    ])
    .expect_ok();
    cluster
        .cli(
            &founders_config,
            &["member", "add", "node4", "--addr", &address],
            None,
        )
        .expect_ok();
    cluster.start_node(4);
    cluster.eventually("node4 becomes a voter", || {
        let members = member_ids(&cluster, &founders_config)?;
        members
            .contains(&("node4".to_string(), "voter".to_string()))
            .then_some(())
    });
    let four = [1, 2, 3, 4];
    let leader = cluster.wait_for_leader(&four);
    let everyone = cluster.client_config("four.toml", &four, None);
    cluster.add_secret(&everyone, "second", "pw-second");
    acknowledged.push(("second".to_string(), "pw-second".to_string()));

    let leaving = founders
        .into_iter()
        .find(|node| *node != leader)
        .expect("a follower");
    cluster
        .cli(
            &everyone,
            &["member", "remove", &format!("node{leaving}")],
            None,
        )
        .expect_ok();
    let remaining: Vec<usize> = four.into_iter().filter(|n| *n != leaving).collect();
    let remaining_config = cluster.client_config("remaining.toml", &remaining, None);
    cluster.eventually(&format!("node{leaving} leaves the membership"), || {
        let members = member_ids(&cluster, &remaining_config)?;
        (members.len() == 3
            && members
                .iter()
                .all(|(id, _)| *id != format!("node{leaving}")))
        .then_some(())
    });
    cluster.kill_node(leaving);
    cluster.wait_for_leader(&remaining);
    cluster.add_secret(&remaining_config, "third", "pw-third");
    acknowledged.push(("third".to_string(), "pw-third".to_string()));

    for node in remaining {
        let only = cluster.client_config(&format!("only-node{node}.toml"), &[node], Some(5));
        cluster.eventually(&format!("node{node} catches up"), || {
            (password_of(&cluster, node, &only, "third")? == "pw-third").then_some(())
        });
        for (name, password) in &acknowledged {
            assert_eq!(
                password_of(&cluster, node, &only, name).as_deref(),
                Some(password.as_str()),
                "node{node} lacks acknowledged {name}"
            );
        }
    }
    cluster.assert_one_leader_per_term();
}
