//! `ticks_until_due`: a driver that sleeps for that many ticks and then
//! makes them all at once must see exactly what a driver ticking every
//! time sees.

use super::*;

/// Ticks `core` until just before it is due, checking that nothing comes
/// out meanwhile, then makes the due tick; returns how many ticks that was.
fn tick_through_quiet_span(core: &mut RaftCore) -> u32 {
    let due = core.ticks_until_due();
    assert!(due >= 1, "a core is always due within at least one tick");
    let role = core.role();
    let term = core.term();
    for tick in 1..due {
        core.tick();
        assert!(
            !core.has_ready(),
            "tick {tick} of a quiet span of {due} produced output"
        );
        assert_eq!(core.role(), role, "tick {tick} of {due} changed the role");
        assert_eq!(core.term(), term, "tick {tick} of {due} changed the term");
        assert!(
            core.ticks_until_due() <= due - tick,
            "the deadline moved away while nothing happened"
        );
    }
    core.tick();
    due
}

// A follower's election timeout is the only thing its ticks do: the span is
// exactly its randomised timeout, and the tick after it starts an election.
#[test]
fn a_follower_is_due_when_its_election_timeout_expires() {
    let mut core = fresh(config(1));
    let due = core.ticks_until_due();
    assert!(due >= core.shared.config.election_ticks_min);
    assert!(due < core.shared.config.election_ticks_max);
    tick_through_quiet_span(&mut core);
    assert_eq!(core.role(), Role::Candidate);
    assert!(core.has_ready());
}

// A message from the leader restarts the election clock, and the span with it.
#[test]
fn hearing_from_the_leader_pushes_the_deadline_back() {
    let mut core = fresh(config(2));
    for _ in 0..core.ticks_until_due() - 1 {
        core.tick();
    }
    assert_eq!(core.ticks_until_due(), 1);
    core.step(message(
        1,
        2,
        2,
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: Vec::new(),
            leader_commit: 1,
        }),
    ));
    persist(&mut core);
    assert!(core.ticks_until_due() >= core.shared.config.election_ticks_min);
    tick_through_quiet_span(&mut core);
    assert_eq!(core.role(), Role::Candidate);
}

// A leader is due at every heartbeat and at every CheckQuorum round; over
// many rounds with answering followers it stays leader and every due tick
// that sends heartbeats is one the span predicted.
#[test]
fn a_leader_is_due_at_each_heartbeat_and_quorum_check() {
    let mut core = leader();
    let mut heartbeats = 0;
    for _ in 0..40 {
        let due = tick_through_quiet_span(&mut core);
        assert!(due <= core.shared.config.heartbeat_ticks);
        let ready = persist(&mut core);
        if !ready.messages.is_empty() {
            heartbeats += 1;
        }
        let last = core.shared.log.last_index();
        accept(&mut core, 2, last);
        accept(&mut core, 3, last);
        persist(&mut core);
        assert_eq!(core.role(), Role::Leader);
    }
    assert!(
        heartbeats >= 20,
        "only {heartbeats} heartbeat rounds in 40 spans"
    );
}

// A leader that stops hearing from its followers steps down at a due tick,
// never inside a quiet span.
#[test]
fn a_leader_cut_off_steps_down_on_a_due_tick() {
    let mut config = config(1);
    config.check_quorum = true;
    let mut core = fresh(config);
    core.campaign();
    persist(&mut core);
    core.step(vote_granted(2, 1, 2));
    persist(&mut core);
    let mut spans = 0;
    while core.role() == Role::Leader {
        tick_through_quiet_span(&mut core);
        persist(&mut core);
        spans += 1;
        assert!(spans < 100, "a leader hearing no one never stepped down");
    }
    assert_eq!(core.role(), Role::Follower);
}

// While a leadership transfer is under way every tick counts.
#[test]
fn a_transfer_in_progress_makes_every_tick_due() {
    let mut core = leader();
    core.transfer_leader(NodeId(3)).expect("node 3 is a voter");
    persist(&mut core);
    assert_eq!(core.ticks_until_due(), 1);
}
