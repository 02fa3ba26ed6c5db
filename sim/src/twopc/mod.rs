//! Deterministic simulation of two-phase-commit deletes over the real Raft
//! core (see docs/simulation.md, "The 2PC simulation").
//!
//! The Raft side is the cluster of the Raft simulation (cores, disks,
//! network faults, crashes, partitions, membership changes, the Raft
//! invariants after every step). On top of it runs [`app::TwoPcApp`]: a
//! replicated vault model ([`machine`]), per-node participants with a
//! durable participant table ([`participant`], [`voting`]), coordinators on
//! nodes that drive the real pure [`consensus::twopc::Coordinator`]
//! ([`deciding`]), recovery through the leader ([`recovery`]), clients
//! ([`clients`]), a nemesis that crashes nodes at protocol steps
//! ([`nemesis`]), and the oracle that checks atomicity, lock release,
//! ordering and commit validity ([`oracle`]).
//!
//! Run: `cargo test -p sim twopc`; choose seeds with
//! `TWOPC_SIM_SEEDS=N TWOPC_SIM_SEED_START=S`, steps with
//! `TWOPC_SIM_STEPS`, print a trace with `TWOPC_SIM_TRACE=1`.

mod app;
mod clients;
mod deciding;
mod machine;
mod messages;
mod nemesis;
mod oracle;
mod participant;
mod pruning;
mod recovery;
mod run;
mod voting;

#[cfg(test)]
mod teeth;

/// A participant that has not voted within this many steps counts as an
/// abort vote; acks are waited for as long, and a vote request waits at
/// most this long for the participant to apply the coordinator's read
/// index. (An election timeout is 50 to 100 steps; a message takes 1 to 12.)
pub(crate) const VOTE_TIMEOUT: u64 = 150;

/// A transaction prepared and undecided for this many steps is resolved
/// through the leader; a Decide waits at most this long for the decision to
/// be applied.
pub(crate) const DECISION_TIMEOUT: u64 = 400;

/// Steps between two recovery passes of a participant (half the decision
/// timeout, as in the vault).
pub(crate) const RECOVERY_PERIOD: u64 = DECISION_TIMEOUT / 2;

/// Steps between two pruning turns of a leader, which proposes a prune
/// through the mark it measured one turn earlier (`pruning.rs`). The rule
/// assumes that no decision entry is proposed again a period after the
/// first one was everywhere: the vault's period (at least 30 s) outlasts a
/// node's proposal retries (5 s), and this one outlasts a coordinator's
/// re-proposals (up to [`MAX_PROPOSALS`] every [`PROPOSAL_TIMEOUT`]). With
/// a period of one recovery period, the simulation finds a coordinator's
/// re-proposal landing after the prune (a transaction decided twice).
pub(crate) const PRUNE_PERIOD: u64 = (MAX_PROPOSALS as u64 + 1) * PROPOSAL_TIMEOUT;

/// Steps a coordinator waits for its proposed decision to be applied
/// before proposing it again.
pub(crate) const PROPOSAL_TIMEOUT: u64 = 200;

/// Steps before retrying a proposal no leader took (an election takes 50
/// to 100 steps).
pub(crate) const PROPOSAL_RETRY: u64 = 50;

/// Proposals of one decision before the coordinator gives up and leaves
/// the transaction to recovery.
pub(crate) const MAX_PROPOSALS: u32 = 6;

/// The one owner of every simulated secret.
pub(crate) const OWNER: &str = "client:sim";

/// Protocol bugs the teeth tests plant in the 2PC layer; each must make the
/// simulation report a violation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TwoPcBugs {
    /// A participant's commit vote leaves before its prepare is durable.
    pub(crate) vote_before_durable_prepare: bool,
    /// Recovery proposes GLOBAL_COMMIT for a transaction with no decision.
    pub(crate) recovery_proposes_commit: bool,
    /// The coordinator counts a vote missing at the deadline as a commit.
    pub(crate) commit_on_missing_vote: bool,
    /// A state machine restored from a snapshot does not settle the
    /// participant rows the snapshot decides.
    pub(crate) skip_settle_on_restore: bool,
    /// The vault model applies a commit whatever the membership in force
    /// at its index (no SPEC §13 check).
    pub(crate) skip_membership_check: bool,
}

/// The default seeds are split over this many test functions, so that the
/// test harness runs them on every core.
const PARTS: u64 = 4;

#[test]
fn simulate_twopc_seeds_part_0() {
    run::run_part(0, PARTS);
}

#[test]
fn simulate_twopc_seeds_part_1() {
    run::run_part(1, PARTS);
}

#[test]
fn simulate_twopc_seeds_part_2() {
    run::run_part(2, PARTS);
}

#[test]
fn simulate_twopc_seeds_part_3() {
    run::run_part(3, PARTS);
}
