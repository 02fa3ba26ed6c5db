//! Crashes: leader kill and re-election, restart and catch-up, losing every
//! node at once, and a torn Raft log tail.

use vault_tests::{files_under, TestCluster};

fn other_than(excluded: usize, size: usize) -> usize {
    (1..=size)
        .find(|node| *node != excluded)
        .expect("another node")
}

#[test]
fn killing_the_leader_elects_a_new_one_and_the_old_one_catches_up() {
    let mut cluster = TestCluster::start(3);
    let old_leader = cluster.wait_for_leader();
    cluster.add_secret("before", "u", "pw-before");

    cluster.kill_node(old_leader);
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, old_leader);

    // Writes continue on the two survivors.
    for index in 0..5 {
        cluster.add_secret(&format!("during-{index}"), "u", &format!("pw-{index}"));
    }
    let secret = cluster.cli(&["get-secret", "before"]).expect_ok().json();
    assert_eq!(secret["password"], "pw-before");

    cluster.start_node(old_leader);
    cluster.wait_for_leader();
    let applied = cluster.wait_for_applied(7);
    assert!(applied >= 7, "every write applied everywhere: {applied}");
    // The restarted node serves the new writes from its own copy.
    let admin = vault_tests::ClientIdentity::dir("admin");
    let only_old = cluster.write_client_config("old.toml", &admin, &[old_leader], None);
    let stale = cluster
        .cli_as(&only_old, &["get-secret", "during-4", "--stale"], None)
        .expect_ok()
        .json();
    assert_eq!(stale["password"], "pw-4");
}

#[test]
fn every_acknowledged_write_survives_killing_every_node() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let count = 50;
    for index in 0..count {
        cluster.add_secret(&format!("acked-{index}"), "u", &format!("pw-{index}"));
    }
    for node in 1..=3 {
        cluster.kill_node(node);
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_for_leader();
    let list = cluster.cli(&["list"]).expect_ok().json();
    let names: Vec<&str> = list["secrets"]
        .as_array()
        .expect("secrets array")
        .iter()
        .filter_map(|secret| secret["name"].as_str())
        .collect();
    assert_eq!(names.len(), count, "{list}");
    for index in 0..count {
        let secret = cluster
            .cli(&["get-secret", &format!("acked-{index}")])
            .expect_ok()
            .json();
        assert_eq!(secret["password"], format!("pw-{index}"));
    }
}

#[test]
fn a_torn_log_tail_is_cut_with_a_warning_and_the_node_catches_up() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    for index in 0..5 {
        cluster.add_secret(&format!("early-{index}"), "u", "pw");
    }
    let victim = other_than(leader, 3);
    cluster.wait_for_applied(6);
    cluster.kill_node(victim);

    let raft_dir = cluster.node_dir(victim).join("data").join("raft");
    let newest = files_under(&raft_dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .max()
        .expect("a Raft log segment");
    let length = std::fs::metadata(&newest).expect("segment metadata").len();
    assert!(length > 5, "segment too short to tear: {length}");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .expect("open segment");
    file.set_len(length - 5).expect("truncate segment");
    drop(file);

    // More writes while it is down, so catching up means receiving entries.
    for index in 0..3 {
        cluster.add_secret(&format!("late-{index}"), "u", "pw");
    }
    let log_before = cluster.node_log(victim).len();
    cluster.start_node(victim);
    cluster.wait_for_leader();
    cluster.wait_for_applied(9);
    let restart_log = cluster.node_log(victim)[log_before..].to_string();
    assert!(
        restart_log.contains("WARN") && restart_log.contains("corrupt tail"),
        "no warning about the torn tail:\n{restart_log}"
    );
    let admin = vault_tests::ClientIdentity::dir("admin");
    let only_victim = cluster.write_client_config("victim.toml", &admin, &[victim], None);
    for name in ["early-4", "late-2"] {
        cluster
            .cli_as(&only_victim, &["get-secret", name, "--stale"], None)
            .expect_ok();
    }
}

#[test]
fn a_client_fails_over_when_the_first_listed_node_is_down() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    cluster.kill_node(1);
    cluster.wait_for_leader();
    // client.toml lists node1 first, as `cluster init` writes it.
    let full = cluster.client_config();
    let added = cluster.cli_as(
        &full,
        &["add-secret", "failover", "--password-stdin"],
        Some("pw"),
    );
    assert_eq!(added.code, 0, "with node1 down: {added:?}");
    let read = cluster.cli_as(&full, &["get-secret", "failover"], None);
    assert_eq!(read.code, 0, "with node1 down: {read:?}");
}
