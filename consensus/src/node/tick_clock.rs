//! When the driver makes the core's ticks.
//!
//! The core counts time in ticks, but most ticks do nothing but count: a
//! follower's only job for them is its election timeout, which every
//! heartbeat pushes back. So the driver does not wake for each one. It asks
//! the core how many ticks may pass before one matters
//! ([`RaftCore::ticks_until_due`](crate::raft::RaftCore::ticks_until_due)),
//! sleeps that long, and on waking (for that or any other reason) makes
//! every tick that has passed before it hands the core anything else. An
//! idle follower then wakes on heartbeats only, and an idle leader on its
//! heartbeat rounds.
//!
//! Time spent waiting counts in full. Time the driver spends busy in one
//! turn counts for at most one tick, as it did with a periodic timer that
//! delays missed ticks: a driver held up (say, waiting for room in the
//! apply queue while heartbeats queue behind it) must not come back to a
//! burst of ticks that times out the leader whose heartbeats it has not
//! read yet.

use std::time::Duration;
use tokio::time::Instant;

/// Logical time for the core, advanced by what the driver waited.
#[derive(Debug)]
pub(crate) struct TickClock {
    period: Duration,
    /// Time counted but not yet made into ticks (less than one period after
    /// each [`TickClock::woke`]).
    credit: Duration,
    /// When the current wait (or the current turn) began.
    since: Instant,
}

impl TickClock {
    /// A clock of ticks of `period` (at least 1 ms), starting `now`.
    pub(crate) fn new(period: Duration, now: Instant) -> Self {
        TickClock {
            period: period.max(Duration::from_millis(1)),
            credit: Duration::ZERO,
            since: now,
        }
    }

    /// When to wake if nothing else happens, for a core that is due in
    /// `due` ticks; the driver's wait starts now.
    pub(crate) fn deadline(&self, due: u32) -> Instant {
        let wait = self.period.saturating_mul(due.max(1));
        self.since + wait.saturating_sub(self.credit)
    }

    /// The driver woke at `now` after waiting since the end of its last
    /// turn: how many ticks to make before anything else.
    pub(crate) fn woke(&mut self, now: Instant) -> u32 {
        self.credit += now.saturating_duration_since(self.since);
        self.since = now;
        let ticks = (self.credit.as_nanos() / self.period.as_nanos()).min(u128::from(u32::MAX));
        let ticks = ticks as u32;
        self.credit -= self.period * ticks;
        ticks
    }

    /// The driver finished a turn at `now`: its busy time counts for at
    /// most one period.
    pub(crate) fn turn_done(&mut self, now: Instant) {
        let busy = now.saturating_duration_since(self.since);
        self.credit += busy.min(self.period);
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(50);

    #[test]
    fn waking_at_the_deadline_makes_exactly_the_due_ticks() {
        let start = Instant::now();
        let mut clock = TickClock::new(PERIOD, start);
        let deadline = clock.deadline(7);
        assert_eq!(deadline, start + PERIOD * 7);
        assert_eq!(clock.woke(deadline), 7);
        clock.turn_done(deadline);
        assert_eq!(clock.deadline(3), deadline + PERIOD * 3);
    }

    #[test]
    fn time_between_ticks_carries_over_to_the_next_wake() {
        let start = Instant::now();
        let mut clock = TickClock::new(PERIOD, start);
        // Woken by a heartbeat 80 ms in: one tick, 30 ms carried.
        let heartbeat = start + Duration::from_millis(80);
        assert_eq!(clock.woke(heartbeat), 1);
        clock.turn_done(heartbeat);
        // The next tick is due 20 ms later, not 50.
        assert_eq!(clock.deadline(1), heartbeat + Duration::from_millis(20));
        assert_eq!(clock.woke(heartbeat + Duration::from_millis(20)), 1);
    }

    #[test]
    fn a_long_busy_turn_counts_for_one_tick_only() {
        let start = Instant::now();
        let mut clock = TickClock::new(PERIOD, start);
        assert_eq!(clock.woke(start), 0);
        // The turn is held up for ten periods.
        let end = start + PERIOD * 10;
        clock.turn_done(end);
        assert_eq!(clock.woke(end), 1);
        // Short turns count in full.
        let mut now = end;
        for _ in 0..10 {
            now += Duration::from_millis(10);
            clock.turn_done(now);
        }
        assert_eq!(clock.woke(now), 2);
    }

    #[test]
    fn a_wake_before_any_tick_is_due_makes_none() {
        let start = Instant::now();
        let mut clock = TickClock::new(PERIOD, start);
        assert_eq!(clock.woke(start + Duration::from_millis(49)), 0);
        assert_eq!(clock.woke(start + Duration::from_millis(50)), 1);
    }
}
