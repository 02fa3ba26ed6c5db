//! Exact-output tests of the participant drivers: each input gives exactly
//! the action asserted.

use super::participant::VoteAttempt;
use super::{
    AckAction, AckDriver, Decision, ParticipantOptions, TwoPcReply, Vote, VoteAction, VoteDriver,
    VoteInput, VoteRequest,
};
use crate::raft::NodeId;

const OPTIONS: ParticipantOptions = ParticipantOptions {
    vote_timeout_ms: 100,
    decision_timeout_ms: 400,
};

fn request() -> VoteRequest<&'static str> {
    VoteRequest {
        tx: "tx-old".into(),
        resource: "mail",
    }
}

fn wait(index: u64, deadline_ms: u64, holder: Option<&str>) -> Option<VoteAction> {
    Some(VoteAction::AwaitApplied {
        index,
        deadline_ms,
        holder: holder.map(str::to_string),
    })
}

#[test]
fn a_node_that_applied_the_read_index_attempts_at_once_and_sends_the_vote() {
    let (mut driver, action) = VoteDriver::start(NodeId(1), request(), 5, 5, 1_000, OPTIONS);
    assert_eq!(action, VoteAction::Attempt { may_wait: true });
    let action = driver.step(
        VoteInput::Attempted(VoteAttempt::Voted(Vote::Commit)),
        1_001,
    );
    assert_eq!(action, Some(VoteAction::Send(Vote::Commit)));
    assert!(driver.is_done());
    // Anything later is ignored: the vote left once.
    assert_eq!(driver.step(VoteInput::Applied(9), 1_002), None);
}

#[test]
fn a_node_behind_waits_for_the_read_index_then_votes_with_what_it_has_at_the_timeout() {
    let (mut driver, action) = VoteDriver::start(NodeId(1), request(), 7, 3, 1_000, OPTIONS);
    assert_eq!(Some(action), wait(7, 1_100, None));
    // A wake-up short of the index (a stale one) waits again.
    assert_eq!(
        driver.step(VoteInput::Applied(6), 1_050),
        wait(7, 1_100, None)
    );
    // At the vote timeout it attempts anyway, too late to wait for a lock.
    assert_eq!(
        driver.step(VoteInput::Applied(6), 1_100),
        Some(VoteAction::Attempt { may_wait: false })
    );
}

#[test]
fn an_older_transaction_waits_for_the_younger_holder_within_half_the_vote_timeout() {
    let (mut driver, _) = VoteDriver::start(NodeId(1), request(), 5, 5, 1_000, OPTIONS);
    let holder = VoteAttempt::Wait {
        holder: "tx-young".into(),
    };
    // It waits for one entry past what it had applied, until 1_050.
    assert_eq!(
        driver.step(VoteInput::Attempted(holder.clone()), 1_010),
        wait(6, 1_050, Some("tx-young"))
    );
    assert_eq!(driver.holder(), Some("tx-young"));
    // Something was applied: attempt again, still allowed to wait.
    assert_eq!(
        driver.step(VoteInput::Applied(6), 1_020),
        Some(VoteAction::Attempt { may_wait: true })
    );
    assert_eq!(
        driver.step(VoteInput::Attempted(holder), 1_021),
        wait(7, 1_050, Some("tx-young"))
    );
    // The budget is spent: the last attempt may not wait (and votes abort).
    assert_eq!(
        driver.step(VoteInput::Applied(6), 1_050),
        Some(VoteAction::Attempt { may_wait: false })
    );
    let abort = Vote::Abort("still locked".into());
    assert_eq!(
        driver.step(
            VoteInput::Attempted(VoteAttempt::Voted(abort.clone())),
            1_051
        ),
        Some(VoteAction::Send(abort))
    );
}

#[test]
fn a_store_that_cannot_prepare_votes_abort_with_the_reason() {
    let (mut driver, _) = VoteDriver::start(NodeId(1), request(), 0, 0, 0, OPTIONS);
    assert_eq!(
        driver.step(VoteInput::AttemptFailed("disk I/O error".into()), 1),
        Some(VoteAction::Send(Vote::Abort(
            "this node cannot prepare: disk I/O error".into()
        )))
    );
}

#[test]
fn an_applied_index_during_an_attempt_does_not_start_a_second_attempt() {
    let (mut driver, _) = VoteDriver::start(NodeId(1), request(), 0, 0, 0, OPTIONS);
    assert_eq!(driver.step(VoteInput::Applied(4), 1), None);
    // The later wait starts past what it was told.
    let holder = VoteAttempt::Wait {
        holder: "tx-young".into(),
    };
    assert_eq!(
        driver.step(VoteInput::Attempted(holder), 2),
        wait(5, 50, Some("tx-young"))
    );
}

#[test]
fn a_decide_is_acknowledged_once_applied_and_fails_after_the_decision_timeout() {
    let driver = AckDriver::start(NodeId(2), "tx1".into(), 1_000, OPTIONS);
    assert_eq!(
        driver.step(None, 8, 1_000),
        AckAction::AwaitApplied {
            index: 9,
            deadline_ms: 1_400
        }
    );
    assert_eq!(
        driver.step(Some(Decision::Abort), 9, 1_200),
        AckAction::Reply(TwoPcReply::Acked {
            decision: Decision::Abort
        })
    );
    assert_eq!(
        driver.step(None, 9, 1_400),
        AckAction::Reply(TwoPcReply::Failed(
            "node2 has not applied the decision for tx1 within 400 ms".into()
        ))
    );
}
