//! SPEC §14 "Metrics and health", §14 "Logs" and §10 systemd readiness,
//! against real `vault-cli node run` processes: every node's `/metrics`
//! parsed as Prometheus text, `/health` on a healthy cluster and on a node
//! whose peers are all gone, `--log-format json`, and the `NOTIFY_SOCKET`
//! protocol through a real unix datagram socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vault_tests::{eventually, eventually_explained, vault_cli, TestCluster, HANG_GUARD};

/// Node 1 runs outside the cluster helper (it needs `--log-format json`
/// and a notify socket); killed on drop so a failing test leaves nothing.
struct Node1(Child);

impl Drop for Node1 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `port`: the status code and the body, or None when the
/// listener is not up (yet).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )
    .ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((code, body.to_string()))
}

fn scrape(port: u16) -> Option<prometheus_parse::Scrape> {
    let (code, body) = get(port, "/metrics")?;
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|line| Ok(line.to_string()));
    Some(prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses"))
}

/// The value of the sample `name` whose labels include `label` (if given).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let found = scrape.samples.iter().find(|sample| {
        sample.metric == name
            && label.is_none_or(|(key, value)| sample.labels.get(key) == Some(value))
    });
    match found.map(|sample| &sample.value) {
        Some(
            prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Untyped(value),
        ) => *value,
        other => panic!("{name} {label:?}: {other:?}"),
    }
}

/// Everything the node sent to the notify socket, read on a thread of its
/// own so the node never finds the socket's queue full.
struct Notifications(std::sync::Arc<std::sync::Mutex<String>>);

impl Notifications {
    fn drain(socket: UnixDatagram) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let writer = seen.clone();
        // Ends when the test process does; reads time out every 500 ms.
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                if let Ok(length) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    writer.lock().unwrap().push_str(&text);
                }
            }
        });
        Notifications(seen)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn wait_for(&self, wanted: &str) {
        let deadline = Instant::now() + HANG_GUARD;
        while !self.text().contains(wanted) {
            assert!(
                Instant::now() < deadline,
                "no {wanted} in {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn metrics_health_json_logs_and_systemd_readiness_on_a_real_cluster() {
    let mut cluster = TestCluster::init(3);
    let metrics_port = |node: usize| cluster.base_port + node as u16 - 1 + 1000;
    let ports: Vec<u16> = (1..=3).map(metrics_port).collect();

    let sockets = tempfile::tempdir().expect("temp dir");
    let socket_path = sockets.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("socket timeout");
    let json_log = cluster.node_dir(1).join("json.log");
    let log_file = std::fs::File::create(&json_log).expect("json log");
    let node1 = Node1(
        Command::new(vault_cli())
            .args(["node", "run", "--log-format", "json", "--config"])
            .arg(cluster.node_dir(1).join("node.toml"))
            .env("RUST_LOG", "info,consensus=debug")
            .env("NOTIFY_SOCKET", &socket_path)
            // Pings every 100 ms.
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone"))
            .stderr(log_file)
            .spawn()
            .expect("spawn node1"),
    );
    cluster.start_node(2);
    cluster.start_node(3);

    // systemd: READY=1 once a leader is known, with a STATUS= line, and
    // watchdog pings.
    let notifications = Notifications::drain(socket);
    notifications.wait_for("READY=1");
    assert!(
        notifications.text().contains("STATUS="),
        "{:?}",
        notifications.text()
    );
    notifications.wait_for("WATCHDOG=1");

    // Node 1 runs outside the harness's bookkeeping (its own command line),
    // so `wait_for_leader`, which only counts nodes the harness started,
    // would never accept node 1 as the leader: wait for nodes 2 and 3 to
    // agree on any leader instead.
    cluster.eventually("nodes 2 and 3 agree on a leader", || {
        let status = cluster.status()?;
        let leaders: Vec<_> = status["nodes"]
            .as_array()?
            .iter()
            .map(|node| node["leader"].as_str().map(str::to_string))
            .collect::<Option<_>>()?;
        (leaders.len() == 2 && leaders[0] == leaders[1]).then_some(())
    });
    let writes = 5;
    for k in 0..writes {
        cluster.add_secret(&format!("site{k}"), "me", "pw");
    }
    cluster.cli(&["delete", "site0"]).expect_ok();

    // Every node's gauges catch up with the writes (they are refreshed
    // about once per tick).
    let scrapes: Vec<prometheus_parse::Scrape> =
        eventually("every node applied the writes", || {
            let scrapes: Option<Vec<_>> = ports.iter().map(|port| scrape(*port)).collect();
            let scrapes = scrapes?;
            scrapes
                .iter()
                .all(|scrape| sample(scrape, "vault_raft_applied_index", None) >= writes as f64)
                .then_some(scrapes)
        });
    let leaders: Vec<usize> = (0..3)
        .filter(|node| sample(&scrapes[*node], "vault_raft_is_leader", None) == 1.0)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    let sum = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrapes
            .iter()
            .map(|scrape| sample(scrape, name, label))
            .sum()
    };
    for scrape in &scrapes {
        assert!(sample(scrape, "vault_raft_term", None) >= 1.0);
        assert!(sample(scrape, "vault_raft_commit_index", None) >= writes as f64);
        assert_eq!(sample(scrape, "vault_raft_members", None), 3.0);
        assert!(sample(scrape, "vault_wal_fsync_seconds_count", None) > 0.0);
        assert!(sample(scrape, "vault_raft_apply_seconds_count", None) > 0.0);
        let refused = ("reason", "not_member");
        assert!(
            sample(
                scrape,
                "vault_transport_refused_connections_total",
                Some(refused)
            ) >= 0.0
        );
        assert!(sample(scrape, "process_resident_memory_bytes", None) > 0.0);
        assert!(sample(scrape, "process_open_fds", None) > 0.0);
        assert!(sample(scrape, "process_start_time_seconds", None) > 1.0e9);
        assert!(sample(scrape, "process_cpu_seconds_total", None) >= 0.0);
        let fsync_buckets = scrape
            .samples
            .iter()
            .find(|sample| sample.metric == "vault_wal_fsync_seconds")
            .map(|sample| &sample.value);
        assert!(
            matches!(fsync_buckets, Some(prometheus_parse::Value::Histogram(buckets)) if !buckets.is_empty()),
            "{fsync_buckets:?}"
        );
    }
    assert!(sum("vault_raft_proposals_total", None) >= writes as f64 + 1.0);
    assert!(sum("vault_raft_proposal_commit_seconds_count", None) >= writes as f64);
    let commits = sum(
        "vault_twopc_transactions_total",
        Some(("decision", "commit")),
    );
    assert_eq!(
        commits, 1.0,
        "the one delete committed, counted by its coordinator"
    );
    assert_eq!(
        sum(
            "vault_twopc_transactions_total",
            Some(("decision", "abort"))
        ),
        0.0
    );

    // Health: 200 everywhere on a healthy cluster; unknown paths 404.
    for port in &ports {
        let (code, body) = eventually("health ok", || {
            get(*port, "/health").filter(|(code, _)| *code == 200)
        });
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
        assert_eq!(body["status"], "ok", "{body}");
        assert!(body["leader"]
            .as_str()
            .is_some_and(|leader| leader.starts_with("node")));
        assert!(body["commit_index"].as_u64().unwrap() >= writes);
        assert_eq!(code, 200);
        assert_eq!(get(*port, "/nothing-here").map(|(code, _)| code), Some(404));
    }

    // Every peer of node 1 gone: it loses its leader and says why.
    cluster.kill_node(2);
    cluster.kill_node(3);
    let last = std::cell::RefCell::new(None);
    let body = eventually_explained(
        "node1 reports itself unavailable",
        || {
            let answer = get(ports[0], "/health");
            last.replace(answer.clone());
            answer.filter(|(code, _)| *code == 503)
        },
        || {
            let log = std::fs::read_to_string(&json_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!("last answer {:?}; log tail {tail:#?}", last.borrow())
        },
    )
    .1;
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no leader")),
        "{body}"
    );

    // A clean stop says STOPPING=1.
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(node1.0.id() as libc::pid_t, libc::SIGTERM);
    }
    notifications.wait_for("STOPPING=1");
    drop(node1);

    // JSON logs: every line one object, SPEC §7's texts in `message`.
    let log = std::fs::read_to_string(&json_log).expect("read json log");
    let mut messages = Vec::new();
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
        assert!(value.is_object(), "{line}");
        assert!(value["level"].is_string(), "{line}");
        if let Some(message) = value["message"].as_str() {
            messages.push(message.to_string());
        }
    }
    assert!(
        messages
            .iter()
            .any(|message| message.starts_with("Node node1 sends RPC ")
                && message.contains(" to Node node")),
        "no RPC line among {} messages",
        messages.len()
    );
    assert!(
        messages
            .iter()
            .any(|message| message.contains("metrics and health served on http://")),
        "{messages:?}"
    );
}
