//! The leaders' pruning of 2PC decisions, as `vault/src/server/twopc/
//! pruning.rs` does it (the rule: `vault/src/store/pruning.rs`).
//!
//! Every [`MEASURE_EVERY`] steps each leader measures the mark: the lowest
//! match index over every member of the configuration in force (voters
//! and learners; itself: its last index), capped by its commit index;
//! `None` while some member's progress is unknown. It then proposes
//! `Prune` through the newest mark it measured at least [`PRUNE_PERIOD`]
//! steps before, if a decision is recorded at or below it. A node's marks
//! are lost when it crashes or stops leading. The oracle checks that no participant ever needed a pruned
//! decision, and the run reports the most decisions any node held.

use super::app::TwoPcApp;
use super::machine::{VaultCommand, VaultModel};
use super::{PRUNE_PERIOD, RECOVERY_PERIOD};
use crate::application::World;
use consensus::raft::{LogIndex, NodeId, RaftCore, Role};
use std::collections::{BTreeMap, VecDeque};

/// Steps between two measurements of a leader.
const MEASURE_EVERY: u64 = RECOVERY_PERIOD;

/// The leaders' marks and the pruning clock.
#[derive(Debug, Default)]
pub(crate) struct Pruning {
    /// Each leader's marks, oldest first, with the step they were taken.
    marks: BTreeMap<NodeId, VecDeque<(u64, Option<LogIndex>)>>,
    /// The step of the next turn.
    next_turn: u64,
    /// Prunes proposed.
    pub(crate) proposed: u64,
    /// The most decisions any node held at once.
    pub(crate) most_live: usize,
}

impl Pruning {
    /// `node` crashed: its mark is gone with its memory.
    pub(crate) fn forget(&mut self, node: NodeId) {
        self.marks.remove(&node);
    }
}

impl TwoPcApp {
    /// One pruning turn of every leader, when its time has come; and the
    /// bound's bookkeeping, every step.
    pub(crate) fn prune(&mut self, world: &mut World<'_, VaultModel>) {
        let live = world
            .nodes
            .values()
            .map(|node| node.machine.live_decisions())
            .max()
            .unwrap_or(0);
        self.pruning.most_live = self.pruning.most_live.max(live);
        if world.now < self.pruning.next_turn {
            return;
        }
        self.pruning.next_turn = world.now + MEASURE_EVERY;
        let ids: Vec<NodeId> = world.nodes.keys().copied().collect();
        for id in ids {
            let leading = self.is_alive(world, id)
                && world
                    .nodes
                    .get(&id)
                    .and_then(|node| node.core.as_ref())
                    .is_some_and(|core| core.role() == Role::Leader);
            if !leading {
                self.pruning.marks.remove(&id);
                continue;
            }
            let Some(node) = world.nodes.get(&id) else {
                continue;
            };
            let mark = node.core.as_ref().and_then(every_member_holds);
            let oldest = node.machine.oldest_decision();
            let marks = self.pruning.marks.entry(id).or_default();
            marks.push_back((world.now, mark));
            // The newest mark old enough; older ones are no longer needed.
            let mut ripe = None;
            while marks
                .front()
                .is_some_and(|(taken, _)| taken + PRUNE_PERIOD <= world.now)
            {
                ripe = marks.pop_front().map(|(_, mark)| mark);
            }
            if let (Some(Some(through)), Some(oldest)) = (ripe, oldest) {
                if oldest <= through {
                    world.trace.line(
                        world.now,
                        format_args!("Node {id} (leader) prunes decisions through {through}"),
                    );
                    self.pruning.proposed += 1;
                    self.propose(world, id, &VaultCommand::Prune { through });
                }
            }
        }
    }
}

/// The highest index every member holds in its log and that is committed,
/// as leader `core` sees it; `None` while a member's progress is unknown.
fn every_member_holds(core: &RaftCore) -> Option<LogIndex> {
    let status = core.status();
    let members = status.membership.voters.union(&status.membership.learners);
    let mut lowest = status.commit_index;
    for member in members {
        let matched = if *member == status.id {
            status.last_log_index
        } else {
            status.followers.get(member)?.match_index
        };
        lowest = lowest.min(matched);
    }
    Some(lowest)
}
