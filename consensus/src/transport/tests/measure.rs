//! A loopback measurement of peer message throughput and request latency.
//! It prints figures (run with `--nocapture`) and asserts only that every
//! message and response arrived.

use super::*;
use std::time::Instant;

const REQUESTS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_peer_throughput_and_request_latency() {
    let pki = Pki::new();
    let (node1, _inbox1) = start(&pki, config(1)).await;
    let (node2, inbox2) = start(&pki, config(2)).await;
    let _server = serve_echo(inbox2.requests);
    let inbox2 = inbox2.peer_messages;
    connect_pair(&node1, &node2);
    let inbox2 = stream_and_report(&node1, inbox2, 20_000, 100).await;
    let _inbox2 = stream_and_report(&node1, inbox2, 2_000, 16 * 1024).await;

    let alice = client(&pki.client("alice"), &node2).await;
    let mut latencies = Vec::with_capacity(REQUESTS);
    for index in 0..REQUESTS {
        let started = Instant::now();
        let response: TestResponse = guard(alice.request(&TestRequest::Echo(index.to_string())))
            .await
            .unwrap();
        latencies.push(started.elapsed());
        assert_eq!(response.text, index.to_string());
    }
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "request round trips: {REQUESTS} sequential, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(50),
        percentile(90),
        percentile(99),
        latencies[latencies.len() - 1]
    );
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

/// Sends `count` messages of `size` bytes from `sender` to node2 as fast as
/// its queue allows and prints the rate once all have arrived in order.
async fn stream_and_report(
    sender: &TestTransport,
    mut inbox: tokio::sync::mpsc::Receiver<(NodeId, PeerMessage)>,
    count: u64,
    size: usize,
) -> tokio::sync::mpsc::Receiver<(NodeId, PeerMessage)> {
    let body = "x".repeat(size);
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        for expected in 0..count {
            let (_, message) = inbox.recv().await.unwrap();
            assert_eq!(message.sequence, expected);
        }
        inbox
    });
    for sequence in 0..count {
        let message = PeerMessage {
            sequence,
            body: body.clone(),
        };
        // Measuring, not testing drops: wait for room instead of losing.
        while let Err(crate::transport::SendError::QueueFull(_)) =
            sender.send(NodeId(2), message.clone())
        {
            tokio::task::yield_now().await;
        }
    }
    let inbox = guard(receiver).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "peer messages: {count} x {size} B in {seconds:.3} s = {:.0} msg/s, {:.1} MiB/s",
        count as f64 / seconds,
        (count as f64 * size as f64) / seconds / (1024.0 * 1024.0)
    );
    inbox
}
