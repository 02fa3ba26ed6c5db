//! `vault-cli cluster up`: one command runs a whole local cluster as child
//! processes, and Ctrl-C (SIGINT) stops every one of them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vault_tests::{eventually, free_port_range, node_number, vault_cli, HANG_GUARD};

/// The `cluster up` process; on drop (a failed test) it is stopped with
/// SIGTERM, which stops its nodes too, and killed if it lingers.
struct ClusterUp {
    child: Option<Child>,
}

impl ClusterUp {
    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for ClusterUp {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        self.wait();
    }
}

/// Pids of live processes whose command line mentions `dir`, other than us.
fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command = String::from_utf8_lossy(&raw).replace('\0', " ");
        // A zombie has an empty command line; it is not running.
        if command.contains(&needle) {
            found.push((pid, command));
        }
    }
    found
}

fn client(dir: &Path, args: &[&str], input: Option<&str>) -> vault_tests::CliResult {
    let config = dir.join("client.toml");
    let config = config.to_string_lossy();
    let mut full = vec!["--config", config.as_ref()];
    full.extend_from_slice(args);
    full.push("--json");
    vault_tests::run_cli_full(
        &full,
        &[("VAULT_PASSPHRASE", vault_tests::PASSPHRASE)],
        input,
    )
}

#[test]
fn cluster_up_runs_every_node_and_sigint_stops_them_all() {
    let root = tempfile::Builder::new()
        .prefix("vault-up-")
        .tempdir()
        .expect("temp dir");
    let dir = root.path().join("cluster");
    let base = free_port_range(3);
    let log = std::fs::File::create(root.path().join("up.log")).expect("up.log");
    let mut up = ClusterUp {
        child: Some(
            Command::new(vault_cli())
                .args(["cluster", "up", "--dir"])
                .arg(&dir)
                .args(["--nodes", "3", "--base-port", &base.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .expect("spawn cluster up"),
        ),
    };

    let leader = eventually("cluster up elects a leader", || {
        if !dir.join("client.toml").exists() {
            return None;
        }
        let status = client(&dir, &["status"], None);
        if status.code != 0 {
            return None;
        }
        let json = status.json();
        let nodes = json["nodes"].as_array()?;
        let leaders: Vec<_> = nodes.iter().map(|node| node["leader"].clone()).collect();
        (nodes.len() == 3 && leaders.iter().all(|l| l.is_string() && *l == leaders[0]))
            .then(|| node_number(leaders[0].as_str()?))
            .flatten()
    });
    assert!((1..=3).contains(&leader));
    let node_processes = processes_mentioning(&dir);
    assert!(
        node_processes.len() >= 4,
        "cluster up and its 3 nodes: {node_processes:?}"
    );

    // client.toml as written: default (slow) key derivation, still works.
    let added = client(
        &dir,
        &["add-secret", "up", "--password-stdin"],
        Some("pw-up"),
    );
    assert_eq!(added.code, 0, "{added:?}");
    let read = client(&dir, &["get-secret", "up"], None);
    assert_eq!(read.code, 0, "{read:?}");
    assert_eq!(read.json()["password"], "pw-up");

    // The ready lines are commands that run as printed: the binary's
    // absolute path (vault-cli may not be on PATH) and the passphrase.
    let printed = std::fs::read_to_string(root.path().join("up.log")).expect("up.log");
    let binary = vault_cli().canonicalize().expect("the binary's path");
    assert!(
        printed.contains(&format!("{} get-secret github", binary.display())),
        "cluster up does not print runnable commands:\n{printed}"
    );
    assert!(printed.contains("VAULT_PASSPHRASE"), "{printed}");

    up.signal(libc::SIGINT);
    let status = up.wait().expect("cluster up exits after SIGINT");
    assert!(status.success(), "cluster up exit status: {status:?}");
    let left = processes_mentioning(&dir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for node in 1..=3 {
        let log =
            std::fs::read_to_string(dir.join(format!("node{node}/node.log"))).expect("node log");
        assert!(
            log.contains(&format!("Node node{node} stopped cleanly")),
            "node{node} did not stop cleanly:\n{log}"
        );
    }
}
