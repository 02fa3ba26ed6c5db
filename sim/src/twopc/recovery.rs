//! Recovery of transactions left prepared (SPEC §6.3), as
//! `vault/src/server/twopc/recovery.rs` and the leader's `resolve` do it.
//!
//! Every [`RECOVERY_PERIOD`] steps a participant lists its prepared
//! transactions; those prepared at least [`DECISION_TIMEOUT`] ago
//! ([`participant::overdue`]) are sent to the leader it knows. The leader
//! answers from its applied state ([`participant::resolve`]): a decision it
//! knows is left to reach the participant through the log; for none it
//! proposes GLOBAL_ABORT, which is safe because the first decision in the
//! log wins. The answer changes nothing at the participant (the vault only
//! logs it), so no reply message is simulated.

use super::app::TwoPcApp;
use super::machine::{VaultCommand, VaultModel};
use super::messages::TwoPcMessage;
use super::oracle::violation;
use super::{DECISION_TIMEOUT, RECOVERY_PERIOD};
use crate::application::World;
use crate::invariants::Violation;
use crate::node::SimMachine;
use consensus::raft::{NodeId, Role};
use consensus::twopc::participant::{self, Resolution};
use consensus::twopc::Decision;

impl TwoPcApp {
    /// Runs the recovery pass of every participant whose time has come.
    pub(crate) fn recover(&mut self, world: &mut World<'_, VaultModel>) {
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            if !self.is_alive(world, id) {
                continue;
            }
            let Some(participant) = self.participants.get_mut(&id) else {
                continue;
            };
            if world.now < participant.next_recovery {
                continue;
            }
            participant.next_recovery = world.now + RECOVERY_PERIOD;
            let ages = participant.table.prepared_ages();
            let due: Vec<String> = participant::overdue(&ages, world.now, DECISION_TIMEOUT)
                .into_iter()
                .map(str::to_string)
                .collect();
            for tx in due {
                self.ask_leader(world, id, &tx);
            }
        }
    }

    /// Participant `id` asks the leader it knows to resolve `tx`.
    fn ask_leader(&mut self, world: &mut World<'_, VaultModel>, id: NodeId, tx: &str) {
        let Some(row) = self
            .participants
            .get(&id)
            .and_then(|p| p.table.row(tx))
            .cloned()
        else {
            return;
        };
        let Some(core) = world.nodes.get(&id).and_then(|n| n.core.as_ref()) else {
            return;
        };
        let leader = match core.role() {
            Role::Leader => Some(id),
            _ => core.leader(),
        };
        let Some(leader) = leader else {
            world.trace.line(
                world.now,
                format_args!("Node {id} cannot resolve tx {tx}: no known leader"),
            );
            return;
        };
        let applied_index = world
            .nodes
            .get(&id)
            .map_or(0, |node| node.machine.applied_index());
        let message = TwoPcMessage::Resolve {
            tx: tx.to_string(),
            name: row.name,
            version: row.version,
            applied_index,
        };
        self.send(world, id, leader, message);
    }

    /// A recovery question reached node `at`: if it leads, it answers from
    /// its applied state or proposes GLOBAL_ABORT (the planted bug
    /// `recovery_proposes_commit` proposes GLOBAL_COMMIT); not for an asker
    /// below its pruning horizon, which must apply its own log first.
    ///
    /// Checked here: a participant in doubt always finds its decision.
    /// If the log decided `tx` at an index the asker has applied (so its
    /// own log cannot settle it) and the leader no longer has it, the
    /// decision was pruned while a participant still needed it.
    pub(crate) fn on_resolve(
        &mut self,
        world: &mut World<'_, VaultModel>,
        at: NodeId,
        question: &Question,
    ) -> Result<(), Violation> {
        let Question {
            asker,
            tx,
            name,
            version,
            applied_index,
        } = question;
        let (tx, name, version, applied_index) =
            (tx.as_str(), name.as_str(), *version, *applied_index);
        let Some(node) = world.nodes.get(&at) else {
            return Ok(());
        };
        let leads = node.core.as_ref().is_some_and(|c| c.role() == Role::Leader);
        if !leads {
            world.trace.line(
                world.now,
                format_args!("Node {at} is not the leader: tx {tx} stays unresolved for now"),
            );
            return Ok(());
        }
        let known = node.machine.decision(tx);
        if let (None, Some((decision, index))) = (known, self.oracle.logged_at(tx)) {
            if index <= applied_index && index <= node.machine.applied_index() {
                return Err(violation(
                    "a participant in doubt always finds its decision",
                    format!(
                        "Node {asker} holds tx {tx} prepared and asks Node {at} (leader), which \
                         pruned its {decision} (index {index}, horizon {}); Node {asker} applied \
                         through {applied_index}, so its own log cannot settle it either",
                        node.machine.pruned_through()
                    ),
                ));
            }
        }
        let horizon = node.machine.pruned_through();
        if known.is_none() && applied_index < horizon {
            world.trace.line(
                world.now,
                format_args!(
                    "Node {at} (leader): Node {asker} applied through {applied_index}, below the \
                     pruning horizon {horizon}; tx {tx} waits for its own log"
                ),
            );
            return Ok(());
        }
        match participant::resolve(known) {
            Resolution::Decided(decision) => world.trace.line(
                world.now,
                format_args!("Node {at} (leader): the log decides tx {tx} {decision}"),
            ),
            Resolution::ProposeAbort => {
                // The vault's recovery abort names no participants (an
                // abort is not checked). The planted commit names the
                // members the leader knows, so that the state machine's
                // membership check does not hide it.
                let (decision, participants) = if self.bugs.recovery_proposes_commit {
                    let membership = node.core.as_ref().map(|c| c.membership().clone());
                    let members = membership
                        .map(|m| m.voters.union(&m.learners).copied().collect())
                        .unwrap_or_default();
                    (Decision::Commit, members)
                } else {
                    (Decision::Abort, Vec::new())
                };
                world.trace.line(
                    world.now,
                    format_args!("Node {at} (leader) proposes {decision} for undecided tx {tx}"),
                );
                self.stats.recovery_proposals += 1;
                let command = VaultCommand::Decide {
                    tx: tx.to_string(),
                    name: name.to_string(),
                    version,
                    decision,
                    participants,
                };
                self.propose(world, at, &command);
            }
        }
        Ok(())
    }
}

/// A participant's recovery question, as the leader receives it.
pub(crate) struct Question {
    /// The participant holding `tx` prepared.
    pub(crate) asker: NodeId,
    /// The transaction.
    pub(crate) tx: String,
    /// The secret it locks.
    pub(crate) name: String,
    /// The version it voted on.
    pub(crate) version: u64,
    /// How far the asker has applied the log.
    pub(crate) applied_index: u64,
}
