//! One 2PC simulation run per seed: a faulty phase (clients, random faults,
//! the Raft nemesis and the 2PC crash points), then healing until the
//! system settles, a liveness probe (a fresh delete must commit), settling
//! again and the final checks.

use super::app::TwoPcApp;
use super::machine::PlantedSkip;
use super::nemesis::{CrashPoint, FiredCounts};
use super::oracle;
use super::participant::ParticipantNode;
use super::TwoPcBugs;
use crate::cluster::{Cluster, StepFailure, FAULT_PROBABILITY};
use crate::harness::{fingerprint, Failure, SeedPlan, Simulation};
use crate::network::NetworkFaults;
use crate::node::SimMachine;
use crate::trace::Trace;
use consensus::raft::{MembershipChange, NodeId};
use consensus::twopc::Decision;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Spare node ids that membership changes may add.
const SPARES: u64 = 2;
/// Steps allowed for the healed system to settle: every member applied the
/// same log, no coordinator runs, no lock is held.
const SETTLE_STEPS: u64 = 6000;
/// Steps allowed for the liveness probe's delete to commit.
const LIVENESS_STEPS: u64 = 3000;
/// A test part that ran at least this many seeds must have fired every
/// crash point.
const COVERAGE_SEEDS: u64 = 100;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunOptions {
    /// The seed: it alone decides everything that happens.
    pub(crate) seed: u64,
    /// Steps of the faulty phase.
    pub(crate) steps: u64,
    /// Protocol bugs to plant in the 2PC layer.
    pub(crate) bugs: TwoPcBugs,
    /// Print the trace.
    pub(crate) trace: bool,
    /// Voters at the start; by default 3 or 5 by the seed.
    pub(crate) voters: Option<u64>,
}

/// Figures of a successful run.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunReport {
    /// Steps run in total.
    pub(crate) steps: u64,
    /// Transactions started.
    pub(crate) transactions: u64,
    /// Transactions the log decided commit.
    pub(crate) commits: u64,
    /// Transactions the log decided abort.
    pub(crate) aborts: u64,
    /// GLOBAL_ABORT proposals made by recovery.
    pub(crate) recovery_proposals: u64,
    /// Commits the state machine applied as aborts: the members in force
    /// at their index were not the nodes asked (SPEC §13).
    pub(crate) membership_aborts: u64,
    /// Commits coordinators turned into aborts before proposing them,
    /// their membership having changed while they voted.
    pub(crate) coordinator_membership_aborts: u64,
    /// Votes held under wait-die (an older transaction waiting for a
    /// younger one's decision).
    pub(crate) wait_die_waits: u64,
    /// Commits applied after an asked voter lost its disk in place (by id
    /// still a member; its vote rested on a durable prepare).
    pub(crate) reborn_member_commits: u64,
    /// Commits applied after a participant lost its durable prepare with
    /// a wiped disk.
    pub(crate) wiped_prepare_commits: u64,
    /// Commits applied where an asked id had been removed and added back
    /// empty since it was asked (the known SPEC §13 gap).
    pub(crate) readded_member_commits: u64,
    /// Disks wiped: nodes started empty to join, and voters' disks
    /// replaced without their removal first.
    pub(crate) wipes: u64,
    /// Voters' disks replaced without their removal first.
    pub(crate) lost_disks: u64,
    /// Prunes of decisions proposed by leaders.
    pub(crate) prunes: u64,
    /// The most decisions any node held at once.
    pub(crate) most_live_decisions: usize,
    /// How often each crash point fired.
    pub(crate) fired: FiredCounts,
    /// A digest of the decisions and the final state: equal digests mean
    /// the same run.
    pub(crate) fingerprint: u64,
}

/// Why the healed system has not settled yet.
enum Unsettled {
    /// Some member still holds a prepared transaction.
    Locks(String),
    /// Anything else (no leader, a member behind, coordinators running).
    Other(String),
}

/// One run in progress.
struct Run {
    cluster: Cluster<TwoPcApp>,
    seed: u64,
    voters: u64,
}

/// Runs one seed to the end.
pub(crate) fn run_seed(options: RunOptions) -> Result<RunReport, Failure> {
    let _planted = PlantedSkip::new(options.bugs.skip_membership_check);
    let mut run = Run::new(options);
    run.cluster
        .bootstrap(run.voters)
        .map_err(|failure| run.fail(failure))?;
    for _ in 0..options.steps {
        run.step(true)?;
    }
    run.heal()?;
    run.replace_forgotten()?;
    run.until_settled()?;
    run.probe()?;
    run.until_settled()?;
    run.final_checks()?;
    Ok(run.report())
}

impl Run {
    fn new(options: RunOptions) -> Self {
        let seed = options.seed;
        let voters = options.voters.unwrap_or([3, 3, 5][(seed % 3) as usize]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let faults = NetworkFaults::random(&mut rng);
        let ids: Vec<NodeId> = (1..=voters + SPARES).map(NodeId).collect();
        let app = TwoPcApp::new(&mut rng, &ids, options.steps, options.bugs);
        let mut cluster = Cluster::new(seed, rng, voters, SPARES, app);
        cluster.trace = Trace::new(options.trace);
        cluster.network.set_faults(faults);
        // Gentler Raft faults than the Raft simulation's (which may crash
        // every new leader and fault every 12 steps): transactions need a
        // leader now and then to get anywhere. Some runs stay rough.
        let scale = [0.25, 0.5, 1.0, 2.0][cluster.rng.gen_range(0..4)];
        cluster.fault_probability = scale * FAULT_PROBABILITY;
        cluster.leader_crash_probability = [0.0, 0.0, 0.0, 0.1, 0.3][cluster.rng.gen_range(0..5)];
        // Voters' disks replaced without their removal first, as in the
        // Raft simulation: the operator removes such a voter and adds it
        // back empty (during the run, or when healing: `replace_forgotten`).
        cluster.wipe_voters = true;
        let window = cluster.app.abort_window;
        cluster.trace.line(
            0,
            format_args!(
                "Seed {seed}: {voters} voters, {faults:?}, faults x{scale}, leader crashes {}, \
                 abort policy {window:?}",
                cluster.leader_crash_probability
            ),
        );
        Self {
            cluster,
            seed,
            voters,
        }
    }

    fn failure(&self, invariant: String, detail: String) -> Failure {
        Failure {
            seed: self.seed,
            cluster_size: self.voters,
            step: self.cluster.now,
            invariant,
            detail,
        }
    }

    fn fail(&self, failure: StepFailure) -> Failure {
        let violation = failure.violation;
        let invariant = format!("{} ({})", violation.invariant, violation.section);
        Failure {
            step: failure.step,
            ..self.failure(invariant, violation.detail)
        }
    }

    fn step(&mut self, faults: bool) -> Result<(), Failure> {
        self.cluster
            .step(faults)
            .map_err(|failure| self.fail(failure))
    }

    /// Ends the faulty phase: clients stop, the nemesis is disarmed, every
    /// link is restored and every node restarted.
    fn heal(&mut self) -> Result<(), Failure> {
        self.cluster.app.clients.active = false;
        self.cluster.app.nemesis.disarm();
        self.cluster
            .heal_all()
            .map_err(|failure| self.fail(failure))
    }

    /// The operator's part of healing: a voter whose disk was replaced
    /// and that is still a member is removed, then added back empty as a
    /// joiner with a fresh incarnation (SPEC §13, "replacing a dead
    /// host"), one change at a time through the leader. Until then it is
    /// down (it refuses to start) or a new life the leader does not count,
    /// and the cluster could not settle.
    fn replace_forgotten(&mut self) -> Result<(), Failure> {
        let deadline = self.cluster.now + SETTLE_STEPS;
        while let Some(&node) = self.cluster.forgotten.iter().next() {
            if self.cluster.now >= deadline {
                let invariant = "liveness: the healed system settles".to_string();
                let detail = format!("the operator could not replace wiped Node {node}");
                return Err(self.failure(invariant, detail));
            }
            self.operator_replaces(node)?;
            self.step(false)?;
        }
        Ok(())
    }

    /// One move of [`Run::replace_forgotten`] for `node`, if the leader has
    /// no change in flight: its removal, or once it is out, its return.
    fn operator_replaces(&mut self, node: NodeId) -> Result<(), Failure> {
        let now = self.cluster.now;
        let Some(leader) = self.cluster.leader() else {
            return Ok(());
        };
        let Some(core) = self
            .cluster
            .nodes
            .get_mut(&leader)
            .and_then(|n| n.core.as_mut())
        else {
            return Ok(());
        };
        if core.membership_index() > core.commit_index() {
            return Ok(());
        }
        let membership = core.membership();
        let member = membership.voters.contains(&node) || membership.learners.contains(&node);
        let change = if member {
            MembershipChange::RemoveNode(node)
        } else {
            MembershipChange::AddLearner {
                node,
                address: String::new(),
            }
        };
        let result = core.change_membership(change.clone());
        self.cluster.trace.line(
            now,
            format_args!("Operator (healing) asks Node {leader} for {change:?}: {result:?}"),
        );
        if let (Ok(_), false) = (result, member) {
            self.cluster
                .rejoin_wiped(node)
                .map_err(|failure| self.fail(failure))?;
        }
        Ok(())
    }

    /// The current members, as the leader knows them.
    fn members(&self) -> Option<(NodeId, BTreeSet<NodeId>)> {
        let leader = self.cluster.leader()?;
        let core = self.cluster.nodes.get(&leader)?.core.as_ref()?;
        let membership = core.membership();
        let members = membership.voters.union(&membership.learners).copied();
        Some((leader, members.collect()))
    }

    /// Steps until the system settled; a lock still held at the deadline is
    /// a violation of "no lock is held forever".
    fn until_settled(&mut self) -> Result<(), Failure> {
        let deadline = self.cluster.now + SETTLE_STEPS;
        loop {
            match self.settled() {
                Ok(()) => return Ok(()),
                Err(Unsettled::Locks(detail)) if self.cluster.now >= deadline => {
                    let invariant = "no lock is held forever (SPEC §6.3)".to_string();
                    return Err(self.failure(invariant, detail));
                }
                Err(Unsettled::Other(detail)) if self.cluster.now >= deadline => {
                    let invariant = "liveness: the healed system settles".to_string();
                    return Err(self.failure(invariant, detail));
                }
                Err(_) => self.step(false)?,
            }
        }
    }

    fn settled(&self) -> Result<(), Unsettled> {
        let other = Unsettled::Other;
        let (leader, members) = self.members().ok_or(other("no leader".into()))?;
        let commit = self
            .cluster
            .nodes
            .get(&leader)
            .and_then(|node| node.core.as_ref())
            .map_or(0, |core| core.commit_index());
        let app = &self.cluster.app;
        let mut locks = Vec::new();
        for member in &members {
            let node = self.cluster.nodes.get(member).filter(|n| n.is_up());
            let node = node.ok_or_else(|| other(format!("member {member} is down")))?;
            let applied = node.machine.applied_index();
            if applied != commit {
                let detail =
                    format!("{member} applied through {applied}, {leader} committed {commit}");
                return Err(other(detail));
            }
            let participant = app.participants.get(member);
            if participant.is_some_and(|p| p.table.has_pending()) {
                return Err(other(format!("{member} has unsynced participant writes")));
            }
            let held = participant
                .map(|p| p.table.durable_prepared())
                .unwrap_or_default();
            for tx in held {
                let logged = app.oracle.logged(tx);
                let applied_here = node.machine.decision(tx);
                locks.push(format!(
                    "Node {member} still holds tx {tx} prepared (log decides {logged:?}, \
                     applied here: {applied_here:?})"
                ));
            }
        }
        if let Some((node, runs)) = app.coordinators.iter().find(|(_, runs)| !runs.is_empty()) {
            let txs: Vec<&String> = runs.keys().collect();
            return Err(other(format!("coordinators of {node} still run {txs:?}")));
        }
        if !locks.is_empty() {
            return Err(Unsettled::Locks(locks.join("; ")));
        }
        Ok(())
    }

    /// Liveness: with every fault healed and every policy back to commit, a
    /// delete of a freshly added secret must commit.
    fn probe(&mut self) -> Result<(), Failure> {
        let now = self.cluster.now;
        self.cluster.app.abort_window = None;
        self.cluster.app.clients.start_probe(now);
        let deadline = now + LIVENESS_STEPS;
        let committed = |run: &Run| {
            let probe = run.cluster.app.clients.probe.as_ref();
            probe.is_some_and(|probe| probe.committed)
        };
        while !committed(self) {
            if self.cluster.now >= deadline {
                let invariant = "liveness: a fresh delete commits after healing".to_string();
                let detail = format!("no probe delete committed within {LIVENESS_STEPS} steps");
                return Err(self.failure(invariant, detail));
            }
            self.step(false)?;
        }
        Ok(())
    }

    /// Atomicity and lock release on the settled members.
    fn final_checks(&self) -> Result<(), Failure> {
        let Some((_, members)) = self.members() else {
            let detail = "no leader after settling".to_string();
            return Err(self.failure("final checks".into(), detail));
        };
        let mut views: BTreeMap<NodeId, (&super::machine::VaultModel, &ParticipantNode)> =
            BTreeMap::new();
        for member in members {
            let node = self.cluster.nodes.get(&member);
            let participant = self.cluster.app.participants.get(&member);
            if let (Some(node), Some(participant)) = (node, participant) {
                views.insert(member, (&node.machine, participant));
            }
        }
        oracle::final_checks(&views).map_err(|violation| {
            let invariant = format!("{} ({})", violation.invariant, violation.section);
            self.failure(invariant, violation.detail)
        })
    }

    fn report(&self) -> RunReport {
        let app = &self.cluster.app;
        let decided = |wanted| {
            let txs = app.oracle.txs.values();
            txs.filter(|tx| tx.decision.is_some_and(|(d, _)| d == wanted))
                .count() as u64
        };
        let leader_state = self
            .members()
            .and_then(|(leader, _)| self.cluster.nodes.get(&leader))
            .map(|node| format!("{:?}", node.machine))
            .unwrap_or_default();
        let decisions: Vec<_> = app
            .oracle
            .txs
            .iter()
            .map(|(tx, r)| (tx, r.decision))
            .collect();
        let fingerprint = fingerprint(&format!("{decisions:?}{leader_state}"));
        RunReport {
            steps: self.cluster.now,
            transactions: app.oracle.txs.len() as u64,
            commits: decided(Decision::Commit),
            aborts: decided(Decision::Abort),
            recovery_proposals: app.stats.recovery_proposals,
            membership_aborts: app.oracle.membership_aborts,
            coordinator_membership_aborts: app.stats.coordinator_membership_aborts,
            wait_die_waits: app.stats.wait_die_waits,
            reborn_member_commits: app.oracle.reborn_member_commits,
            wiped_prepare_commits: app.oracle.wiped_prepare_commits,
            readded_member_commits: app.oracle.readded_member_commits,
            wipes: app.stats.wipes,
            lost_disks: self.cluster.lost_disks.len() as u64,
            prunes: app.pruning.proposed,
            most_live_decisions: app.pruning.most_live,
            fired: app.nemesis.fired.clone(),
            fingerprint,
        }
    }
}

impl RunReport {
    /// Adds `report` to these totals of a test part (the most live
    /// decisions are a maximum, not a sum).
    fn add(&mut self, report: &RunReport) {
        self.steps += report.steps;
        self.transactions += report.transactions;
        self.commits += report.commits;
        self.aborts += report.aborts;
        self.recovery_proposals += report.recovery_proposals;
        self.membership_aborts += report.membership_aborts;
        self.coordinator_membership_aborts += report.coordinator_membership_aborts;
        self.wait_die_waits += report.wait_die_waits;
        self.reborn_member_commits += report.reborn_member_commits;
        self.wiped_prepare_commits += report.wiped_prepare_commits;
        self.readded_member_commits += report.readded_member_commits;
        self.wipes += report.wipes;
        self.lost_disks += report.lost_disks;
        self.prunes += report.prunes;
        self.most_live_decisions = self.most_live_decisions.max(report.most_live_decisions);
        for (point, count) in &report.fired {
            *self.fired.entry(*point).or_insert(0) += count;
        }
    }
}

/// The 2PC simulation as the harness runs it (`TWOPC_SIM_*`): a part of at
/// least [`COVERAGE_SEEDS`] seeds must also have fired every crash point.
pub(crate) struct TwoPcSimulation;

impl Simulation for TwoPcSimulation {
    type Options = RunOptions;
    type Report = RunReport;
    type Totals = RunReport;

    const ENV_PREFIX: &'static str = "TWOPC_SIM";
    const DEFAULT_SEEDS: u64 = 1000;
    const DEFAULT_STEPS: u64 = 2000;
    const TEST_FILTER: &'static str = "simulate_twopc";
    const NAME: &'static str = "2PC simulation";

    fn options(seed: u64, plan: &SeedPlan) -> RunOptions {
        RunOptions {
            seed,
            steps: plan.steps,
            bugs: TwoPcBugs::default(),
            trace: plan.trace,
            voters: None,
        }
    }

    fn traced(options: RunOptions) -> RunOptions {
        RunOptions {
            trace: true,
            ..options
        }
    }

    fn run_seed(options: RunOptions) -> Result<RunReport, Failure> {
        run_seed(options)
    }

    fn fingerprint(report: &RunReport) -> (u64, u64) {
        (report.steps, report.fingerprint)
    }

    fn add(totals: &mut RunReport, report: &RunReport) {
        totals.add(report);
    }

    fn figures(total: &RunReport) -> String {
        format!(
            "{} steps, {} transactions ({} committed, {} aborted, {} recovery proposals)",
            total.steps, total.transactions, total.commits, total.aborts, total.recovery_proposals
        )
    }

    /// The membership and pruning figures, and how often each crash point
    /// fired; panics if a part of at least [`COVERAGE_SEEDS`] seeds left
    /// one unfired.
    fn details(total: &RunReport, runs: u64) {
        println!(
            "  membership: {} commits applied as aborts (members in force not the ones asked), \
             {} turned by coordinators before proposing; {} commits after an asked voter lost its \
             disk in place; {} disks wiped ({} voters' disks replaced unremoved), {} commits after a \
             participant's durable prepare was wiped; {} commits where an asked id had been \
             removed and added back empty (same ids, a member that never voted: known gap)",
            total.membership_aborts,
            total.coordinator_membership_aborts,
            total.reborn_member_commits,
            total.wipes,
            total.lost_disks,
            total.wiped_prepare_commits,
            total.readded_member_commits
        );
        println!(
            "  pruning: {} prunes proposed; at most {} decisions held by one node at once",
            total.prunes, total.most_live_decisions
        );
        println!(
            "  wait-die: {} votes held for a younger transaction's decision",
            total.wait_die_waits
        );
        for point in CrashPoint::ALL {
            let fired = total.fired.get(&point).copied().unwrap_or(0);
            println!("  crash point fired {fired:>4}x: {point}");
            assert!(
                fired > 0 || runs < COVERAGE_SEEDS,
                "crash point `{point}` never fired in {runs} seeds: the nemesis misses a protocol step"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::assert_replays_exactly;

    /// A seed replays exactly; another seed runs differently.
    #[test]
    fn a_seed_replays_exactly() {
        let options = |seed| RunOptions {
            seed,
            steps: 1000,
            bugs: TwoPcBugs::default(),
            trace: false,
            voters: None,
        };
        assert_replays_exactly::<TwoPcSimulation>(options, 7, 8);
    }
}
