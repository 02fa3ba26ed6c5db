//! The registry's text and the HTTP listener, over a real TCP socket.

use super::*;
use crate::node::NodeStatus;
use crate::raft::NodeId;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sample_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
    })
}

fn value(text: &str, name: &str) -> f64 {
    let line = sample_line(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn leader_status() -> NodeStatus {
    NodeStatus {
        id: NodeId(1),
        role: "leader".into(),
        term: 7,
        leader: Some(NodeId(1)),
        commit_index: 42,
        applied_index: 41,
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
        learners: vec![NodeId(4)],
        ..NodeStatus::default()
    }
}

#[test]
fn the_text_carries_every_metric_with_what_was_recorded() {
    let metrics = Metrics::new();
    metrics.record_status(&leader_status());
    metrics.proposals_appended(3);
    metrics
        .proposal_commit_latency()
        .observe(Duration::from_millis(2));
    metrics.apply_latency().observe(Duration::from_micros(300));
    metrics
        .wal_fsync_latency()
        .observe(Duration::from_micros(80));
    metrics.twopc_decided(Decision::Commit);
    metrics.twopc_decided(Decision::Abort);
    metrics.twopc_decided(Decision::Abort);
    metrics.connection_refused(RefusalReason::NotMember);
    let text = metrics.encode();
    assert_eq!(value(&text, "vault_raft_term"), 7.0);
    assert_eq!(value(&text, "vault_raft_is_leader"), 1.0);
    assert_eq!(value(&text, "vault_raft_commit_index"), 42.0);
    assert_eq!(value(&text, "vault_raft_applied_index"), 41.0);
    assert_eq!(value(&text, "vault_raft_members"), 4.0);
    assert_eq!(value(&text, "vault_raft_proposals_total"), 3.0);
    assert_eq!(
        value(&text, "vault_raft_proposal_commit_seconds_count"),
        1.0
    );
    assert_eq!(value(&text, "vault_raft_apply_seconds_count"), 1.0);
    assert_eq!(value(&text, "vault_wal_fsync_seconds_count"), 1.0);
    assert!(
        text.contains("vault_wal_fsync_seconds_bucket{le=\"+Inf\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vault_twopc_transactions_total{decision=\"commit\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vault_twopc_transactions_total{decision=\"abort\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("vault_transport_refused_connections_total{reason=\"not_member\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vault_transport_refused_connections_total{reason=\"connection_limit\"} 0"),
        "every reason is shown from the start: {text}"
    );
    // A test process may not have used a whole clock tick of CPU yet.
    assert!(value(&text, "process_cpu_seconds_total") >= 0.0, "{text}");
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(value(&text, name) > 0.0, "{name} in {text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn a_follower_is_not_counted_as_leader() {
    let metrics = Metrics::new();
    metrics.record_status(&leader_status());
    metrics.record_status(&NodeStatus {
        role: "follower".into(),
        leader: Some(NodeId(2)),
        ..leader_status()
    });
    assert_eq!(value(&metrics.encode(), "vault_raft_is_leader"), 0.0);
}

#[test]
fn health_needs_a_leader_a_small_apply_lag_and_a_disk_that_writes() {
    let healthy = Health::of(&leader_status());
    assert_eq!(healthy.http_status(), 200);
    let body: serde_json::Value = serde_json::from_str(&healthy.to_json()).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["leader"], "node1");
    assert_eq!(body["commit_index"], 42);
    assert_eq!(body["applied_index"], 41);

    let cases = [
        (
            NodeStatus {
                role: "pre-candidate".into(),
                leader: None,
                ..leader_status()
            },
            "no leader",
        ),
        (
            NodeStatus {
                commit_index: 5000,
                applied_index: 5000 - MAX_HEALTHY_APPLY_LAG - 1,
                ..leader_status()
            },
            "lags",
        ),
        (
            NodeStatus {
                writes_refused: Some("free space below the reserve".into()),
                ..leader_status()
            },
            "writes refused",
        ),
    ];
    for (status, reason) in cases {
        let health = Health::of(&status);
        assert_eq!(health.http_status(), 503, "{status:?}");
        let body: serde_json::Value = serde_json::from_str(&health.to_json()).unwrap();
        assert_eq!(body["status"], "unavailable");
        let text = body["reason"].as_str().unwrap();
        assert!(text.contains(reason), "{text:?} should say {reason:?}");
    }
    let at_the_bound = NodeStatus {
        commit_index: 5000,
        applied_index: 5000 - MAX_HEALTHY_APPLY_LAG,
        ..leader_status()
    };
    assert_eq!(Health::of(&at_the_bound).http_status(), 200);
}

/// Sends `request` on a fresh connection and reads until the server closes.
/// A connection the server closed or reset gives what was read before.
async fn exchange(address: std::net::SocketAddr, request: &str) -> String {
    let mut response = String::new();
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return response;
    };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return response;
    }
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    response.push_str(&String::from_utf8_lossy(&bytes));
    response
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn the_listener_answers_metrics_health_and_404() {
    let metrics = Metrics::new();
    metrics.proposals_appended(5);
    let status = Arc::new(std::sync::Mutex::new(leader_status()));
    let source_status = status.clone();
    let source: StatusSource = Arc::new(move || source_status.lock().unwrap().clone());
    let (address, server) = serve("127.0.0.1:0".parse().unwrap(), metrics, source)
        .await
        .unwrap();
    let server = tokio::spawn(server);
    let guard = Duration::from_secs(30);
    tokio::time::timeout(guard, async {
        let response = exchange(address, &get("/metrics")).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("openmetrics-text"), "{response}");
        assert!(
            response.contains("vault_raft_proposals_total 5"),
            "{response}"
        );

        let response = exchange(address, &get("/health")).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"status\":\"ok\""), "{response}");

        status.lock().unwrap().leader = None;
        let response = exchange(address, &get("/health")).await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains("no leader known"), "{response}");

        let response = exchange(address, &get("/secrets")).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let post =
            "POST /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let response = exchange(address, post).await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");

        // Garbage is answered (400) or dropped; the listener goes on.
        let _ = exchange(address, "\x00\x01 not http at all\r\n\r\n").await;
        let response = exchange(address, &get("/metrics")).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    })
    .await
    .expect("hang guard");
    server.abort();
}

#[tokio::test]
async fn idle_connections_cannot_lock_out_a_scrape_for_long() {
    let (address, server) = serve(
        "127.0.0.1:0".parse().unwrap(),
        Metrics::new(),
        Arc::new(leader_status),
    )
    .await
    .unwrap();
    let server = tokio::spawn(server);
    // Every permit taken by a client that never sends a byte.
    let mut idle = Vec::new();
    for _ in 0..MAX_HTTP_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    // The header read timeout frees them; a scrape then gets through.
    let scraped = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let response = exchange(address, &get("/metrics")).await;
            if response.starts_with("HTTP/1.1 200") {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("a scrape gets through once idle clients time out");
    assert!(scraped.contains("vault_raft_term"));
    drop(idle);
    server.abort();
}
