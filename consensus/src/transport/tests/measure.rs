//! A loopback measurement of peer message throughput and request latency.
//! It prints figures (run with `--nocapture`) and asserts only that every
//! message and response arrived.

use super::*;
use std::time::Instant;

const MESSAGES: u64 = 20_000;
const REQUESTS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_peer_throughput_and_request_latency() {
    let pki = Pki::new();
    let (node1, _inbox1) = start(&pki, config(1)).await;
    let (node2, mut inbox2) = start(&pki, config(2)).await;
    let _server = serve_echo(inbox2.requests);
    connect_pair(&node1, &node2);
    let body = "x".repeat(100);

    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        for expected in 0..MESSAGES {
            let (_, message) = inbox2.peer_messages.recv().await.unwrap();
            assert_eq!(message.sequence, expected);
        }
    });
    for sequence in 0..MESSAGES {
        let mut message = PeerMessage {
            sequence,
            body: body.clone(),
        };
        // Measuring, not testing drops: wait for room instead of losing.
        while let Err(crate::transport::SendError::QueueFull(_)) =
            node1.send(NodeId(2), message.clone())
        {
            tokio::task::yield_now().await;
            message = message.clone();
        }
    }
    guard(receiver).await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "peer messages: {MESSAGES} x {} B in {:.3} s = {:.0} msg/s",
        body.len(),
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );

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
