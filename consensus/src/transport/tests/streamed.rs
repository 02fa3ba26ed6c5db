//! Streamed answers: many frames for one request, in order, a clean end
//! only when the application finished, and a producer told when its
//! reader has gone.

use super::*;
use crate::transport::StreamClosed;

/// Answers every `Echo(n)` with `n` frames `"0"`, `"1"`, ..., streamed.
fn serve_counting(
    mut requests: tokio::sync::mpsc::Receiver<
        super::super::InboundRequest<TestRequest, TestResponse>,
    >,
    finished: tokio::sync::mpsc::UnboundedSender<Result<(), StreamClosed>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(inbound) = requests.recv().await {
            let TestRequest::Echo(count) = inbound.request else {
                continue;
            };
            let count: usize = count.parse().unwrap_or(0);
            let acting_for = inbound.origin.acting_for().to_string();
            let stream = inbound.responder.respond_stream();
            let finished = finished.clone();
            tokio::spawn(async move {
                let mut outcome = Ok(());
                for index in 0..count {
                    let frame = TestResponse {
                        text: index.to_string(),
                        acting_for: acting_for.clone(),
                        forwarded_by: None,
                        calling_node: None,
                    };
                    if let Err(closed) = stream.send(frame).await {
                        outcome = Err(closed);
                        break;
                    }
                }
                drop(stream);
                let _ = finished.send(outcome);
            });
        }
    })
}

#[tokio::test]
async fn a_streamed_answer_arrives_whole_and_in_order_then_ends() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let (finished, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let _server = serve_counting(inbox1.requests, finished);
    let alice = client(&pki.client("alice"), &node1).await;
    let mut stream =
        guard(alice.request_stream::<_, TestResponse>(&TestRequest::Echo("50".into())))
            .await
            .unwrap();
    let mut texts = Vec::new();
    while let Some(frame) = guard(stream.next()).await.unwrap() {
        assert_eq!(frame.acting_for, "urn:vault:client:alice");
        texts.push(frame.text);
    }
    let expected: Vec<String> = (0..50).map(|index| index.to_string()).collect();
    assert_eq!(texts, expected);
    assert_eq!(guard(outcomes.recv()).await, Some(Ok(())));

    // An empty streamed answer is a clean end at once, and a single answer
    // still arrives through the stream reader as one frame.
    let mut empty = guard(alice.request_stream::<_, TestResponse>(&TestRequest::Echo("0".into())))
        .await
        .unwrap();
    assert!(guard(empty.next()).await.unwrap().is_none());
    guard(alice.close()).await;
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn a_producer_learns_that_its_reader_went_away() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let (finished, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let _server = serve_counting(inbox1.requests, finished);
    let alice = client(&pki.client("alice"), &node1).await;
    // Far more frames than the queue and QUIC's windows hold: the producer
    // must be waiting on the reader when the reader leaves.
    let mut stream =
        guard(alice.request_stream::<_, TestResponse>(&TestRequest::Echo("1000000".into())))
            .await
            .unwrap();
    let first = guard(stream.next()).await.unwrap().expect("a first frame");
    assert_eq!(first.text, "0");
    drop(stream);
    guard(alice.close()).await;
    assert_eq!(guard(outcomes.recv()).await, Some(Err(StreamClosed)));
    guard(node1.shutdown()).await;
}
