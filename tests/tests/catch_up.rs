//! How a follower that was down catches up once the others compacted their
//! logs meanwhile: from the entries a node keeps behind its snapshots
//! (`[raft] keep_log_mb`) when it was away for less than that, from a
//! whole snapshot otherwise.

use vault_tests::TestCluster;

/// The newest snapshot index in node `node`'s Raft directory (0 if none),
/// from the file names (`snapshot-<index>-<term>.snap`).
fn newest_snapshot(cluster: &TestCluster, node: usize) -> u64 {
    let dir = cluster.node_dir(node).join("data/raft");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let middle = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
            middle.split_once('-')?.0.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Stops a follower, writes while the others snapshot past it, restarts
/// it, waits until it applied everything; returns its log and the
/// leader's.
fn restart_a_follower_behind_a_snapshot(keep_log_mb: &str) -> String {
    let mut cluster = TestCluster::init(3);
    for node in 1..=3 {
        // A snapshot every 5 entries, whatever the size of the state.
        cluster.set_node_env(node, "VAULT_RAFT_SNAPSHOT_EVERY", "5");
        cluster.set_node_env(node, "VAULT_RAFT_SNAPSHOT_AFTER_MB", "0");
        cluster.set_node_env(node, "VAULT_RAFT_KEEP_LOG_MB", keep_log_mb);
        cluster.start_node(node);
    }
    let leader = cluster.wait_for_leader();
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.add_secret("before", "u", "pw");
    let had = cluster.wait_for_applied(1);
    cluster.kill_node(follower);
    let mut written = 0;
    // Writes until the leader's stored snapshot is past everything the
    // follower holds, so that its log on disk no longer has what the
    // follower misses.
    while newest_snapshot(&cluster, leader) <= had + 1 {
        cluster.add_secret(&format!("while-down-{written}"), "u", "pw");
        written += 1;
        assert!(written < 200, "the leader took no snapshot past {had}");
    }
    let target = cluster.wait_for_applied(had + written);
    cluster.start_node(follower);
    cluster.wait_for_applied(target);
    format!(
        "--- restarted follower node{follower} ---\n{}\n--- leader node{leader} ---\n{}",
        cluster.node_log(follower),
        cluster.node_log(leader)
    )
}

/// A follower away for a few writes, far less than the 1 MiB kept, gets
/// them as entries although the leader's disk compacted them.
#[test]
fn a_follower_away_briefly_catches_up_from_the_entries_kept_behind_the_snapshot() {
    let logs = restart_a_follower_behind_a_snapshot("1");
    assert!(!logs.contains("is receiving a snapshot"), "{logs}");
}

/// With no entries kept behind the snapshot, the same follower has to be
/// sent the whole state (what the test above avoids).
#[test]
fn with_no_log_kept_behind_the_snapshot_the_follower_is_sent_one() {
    let logs = restart_a_follower_behind_a_snapshot("0");
    assert!(logs.contains("is receiving a snapshot"), "{logs}");
}
