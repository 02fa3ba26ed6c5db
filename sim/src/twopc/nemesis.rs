//! The 2PC nemesis: crashes aimed at the steps of the protocol rather than
//! at random times. Each run enables some crash points, each with its own
//! probability, and a budget of crashes; when the protocol reaches an
//! enabled point, the node at that point may crash right there (the action
//! that would follow is not carried out) and restart a while later (before
//! or after the vote and decision timeouts). One nemesis crash at a time: a
//! point fires only once the node it crashed last has restarted, so that the
//! cluster keeps a majority often enough for transactions to finish. The
//! run's random faults (node crashes, partitions, network weather,
//! membership changes) go on as in the Raft simulation.

use super::super::application::PlannedCrash;
use super::super::trace::Trace;
use consensus::raft::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fmt;

/// A protocol step at which a node may crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CrashPoint {
    /// The coordinator sent its vote requests.
    CoordinatorAfterVoteRequests,
    /// A participant's prepare is durable; its commit vote has not left.
    ParticipantPreparedBeforeVote,
    /// A participant's commit vote left; the decision is not known.
    ParticipantAfterVote,
    /// The coordinator proposed its decision; it is not committed yet.
    CoordinatorAfterProposingDecision,
    /// The leader took the decision into its log; it is not committed yet.
    LeaderAfterDecisionProposed,
    /// The decision is committed and applied at the coordinator; no Decide
    /// has been sent.
    CoordinatorBeforeDecide,
    /// A participant applied the decision; its ack has not left.
    ParticipantBeforeAck,
    /// The coordinator has some acks but not all.
    CoordinatorBetweenAcks,
}

impl CrashPoint {
    /// Every crash point, in protocol order.
    pub(crate) const ALL: [CrashPoint; 8] = [
        CrashPoint::CoordinatorAfterVoteRequests,
        CrashPoint::ParticipantPreparedBeforeVote,
        CrashPoint::ParticipantAfterVote,
        CrashPoint::CoordinatorAfterProposingDecision,
        CrashPoint::LeaderAfterDecisionProposed,
        CrashPoint::CoordinatorBeforeDecide,
        CrashPoint::ParticipantBeforeAck,
        CrashPoint::CoordinatorBetweenAcks,
    ];
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrashPoint::CoordinatorAfterVoteRequests => "coordinator after sending vote requests",
            CrashPoint::ParticipantPreparedBeforeVote => {
                "participant prepared durably, before its vote left"
            }
            CrashPoint::ParticipantAfterVote => "participant after its commit vote left",
            CrashPoint::CoordinatorAfterProposingDecision => {
                "coordinator after proposing the decision, before it committed"
            }
            CrashPoint::LeaderAfterDecisionProposed => {
                "leader holding the proposed decision, before it committed"
            }
            CrashPoint::CoordinatorBeforeDecide => {
                "coordinator after the decision committed, before sending Decide"
            }
            CrashPoint::ParticipantBeforeAck => "participant applied the decision, before its ack",
            CrashPoint::CoordinatorBetweenAcks => "coordinator between acks",
        })
    }
}

/// How often each crash point fired, summed over runs.
pub(crate) type FiredCounts = BTreeMap<CrashPoint, u64>;

/// One run's crash plan and what it did.
#[derive(Debug)]
pub(crate) struct CrashNemesis {
    /// Enabled points and the probability that reaching one crashes.
    probability: BTreeMap<CrashPoint, f64>,
    /// Crashes left in this run.
    budget: u32,
    /// The step the last crashed node restarts at: no crash before.
    quiet_until: u64,
    /// How often each point fired in this run.
    pub(crate) fired: FiredCounts,
    /// Crashes for the cluster to carry out at the end of the turn.
    requests: Vec<PlannedCrash>,
}

impl CrashNemesis {
    /// Draws a run's plan: each point enabled with probability 0.6, at a
    /// probability of 0.1, 0.3 or 0.7 per reach, with 3 to 8 crashes.
    pub(crate) fn random(rng: &mut ChaCha8Rng) -> Self {
        let mut probability = BTreeMap::new();
        for point in CrashPoint::ALL {
            if rng.gen_bool(0.6) {
                probability.insert(point, [0.1, 0.3, 0.7][rng.gen_range(0..3)]);
            }
        }
        Self {
            probability,
            budget: rng.gen_range(3..=8),
            quiet_until: 0,
            fired: BTreeMap::new(),
            requests: Vec::new(),
        }
    }

    /// A nemesis that never crashes anything (settling and liveness).
    pub(crate) fn disarm(&mut self) {
        self.budget = 0;
    }

    /// The protocol reached `point` at `node`: whether `node` crashes here.
    /// A crashing node does nothing more in this turn; the cluster crashes
    /// it at the end of the turn and restarts it 20 to 700 steps later.
    pub(crate) fn strikes(
        &mut self,
        rng: &mut ChaCha8Rng,
        trace: &Trace,
        now: u64,
        point: CrashPoint,
        node: NodeId,
    ) -> bool {
        let Some(&probability) = self.probability.get(&point) else {
            return false;
        };
        if self.budget == 0 || now < self.quiet_until || !rng.gen_bool(probability) {
            return false;
        }
        self.budget -= 1;
        *self.fired.entry(point).or_insert(0) += 1;
        let restart_after = rng.gen_range(20..=700);
        self.quiet_until = now + restart_after + 1;
        self.requests.push(PlannedCrash {
            node,
            restart_after,
        });
        trace.line(
            now,
            format_args!(
                "2PC nemesis crashes Node {node} at: {point} (restart in {restart_after} steps)"
            ),
        );
        true
    }

    /// The crashes asked for in this turn.
    pub(crate) fn take_requests(&mut self) -> Vec<PlannedCrash> {
        std::mem::take(&mut self.requests)
    }
}
