//! The nemesis: faults aimed at the moments where Raft's subtle cases live
//! (Raft Figure 8 and §5.4.2), rather than at random times. A leader may be
//! crashed a few steps after it is elected (before its first entries spread)
//! or right after it advances its commit index (before the news spreads),
//! and is restarted a little later.

use super::application::Application;
use super::cluster::{Cluster, StepFailure};
use super::node::SimNode;
use consensus::raft::{NodeId, Role};
use rand::Rng;

impl<A: Application> Cluster<A> {
    /// With the run's leader-crash probability times `scale`, plans a crash
    /// of `leader` within `within` steps and its restart some steps later.
    pub(crate) fn maybe_plan_leader_crash(&mut self, leader: NodeId, scale: f64, within: u64) {
        if !self.rng.gen_bool(self.leader_crash_probability * scale) {
            return;
        }
        let crash_at = self.now + self.rng.gen_range(1..=within);
        let restart_at = crash_at + self.rng.gen_range(10..=150);
        // A counter, not `scheduled.len()`: the length repeats once planned
        // entries ran, and a repeated key overwrote a pending plan.
        let order = self.next_order;
        self.next_order += 2;
        self.scheduled.insert((crash_at, order), (leader, true));
        self.scheduled
            .insert((restart_at, order + 1), (leader, false));
    }

    /// Carries out the crashes and restarts planned for this step.
    pub(crate) fn run_scheduled(&mut self) -> Result<(), StepFailure> {
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (node, crash) = entry.remove();
            let up = self.nodes.get(&node).is_some_and(SimNode::is_up);
            match (crash, up) {
                (true, true) => self.crash(node),
                (false, false) => self.restart(node)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Notes every advance of a commit index: traces it, and (in the faulty
    /// phase) may plan a crash of a leader that just advanced its own.
    pub(crate) fn observe_commits(&mut self, faults: bool) {
        let mut advanced_leaders = Vec::new();
        for (id, node) in &self.nodes {
            let Some(core) = node.core.as_ref() else {
                continue;
            };
            let commit = core.commit_index();
            let seen = self.commits_seen.insert(*id, (node.incarnation, commit));
            let same = seen.is_some_and(|(incarnation, before)| {
                incarnation == node.incarnation && before >= commit
            });
            if same || commit == 0 {
                continue;
            }
            if core.role() == Role::Leader {
                advanced_leaders.push(*id);
            }
            let term = node.log.slot(commit).map_or(0, |slot| slot.term);
            let (role, current) = (core.role(), core.term());
            self.trace.line(
                self.now,
                format_args!(
                    "Node {id} ({role}, term {current}) commits through index {commit} \
                     (entry term {term})"
                ),
            );
        }
        if faults {
            for leader in advanced_leaders {
                // Leaders commit often: a tenth of the rate keeps runs moving.
                self.maybe_plan_leader_crash(leader, 0.1, 8);
            }
        }
    }
}
