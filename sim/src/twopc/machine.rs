//! The vault as the 2PC simulation replicates it: versioned secrets, the
//! first decision of every transaction, and client sessions. It mirrors the
//! apply rules of `vault/src/store/apply.rs` without SQLite:
//!
//! - `Add` (add-secret): creates a secret at version 1, or with `update`
//!   moves an existing one to version + 1; anything else is refused.
//!   A command carries (client, sequence): a retry is answered without
//!   being applied again (SPEC §3, exactly-once client commands).
//! - `Decide`: the first decision for a transaction in the log wins and is
//!   recorded; a commit deletes the secret only if it is still at the voted
//!   version (an update that slipped in after the vote wins instead). A
//!   commit whose participants are not exactly the members (voters and
//!   learners) of the configuration in force at its log index is applied,
//!   and recorded, as an abort (SPEC §13, `unless_members_changed` in the
//!   vault): a member that joined while the votes were out had no say, and
//!   one that left could not acknowledge.
//!
//! - `Prune`: the leader's prune of settled 2PC state (`vault/src/store/
//!   pruning.rs`): the decisions recorded at or below `through` are
//!   forgotten, and `through` becomes the pruning horizon. Unlike the
//!   vault, which keeps the horizon node-local and raises it to a restored
//!   snapshot's index, the model carries it in the snapshot: the same
//!   horizon on every replica, so the final checks can compare states.
//!
//! Apply reads nothing but the command, the replicated state and the
//! membership in force at the command's index (which the node tells the
//! model through [`SimMachine::membership_changed`], as the runtime tells
//! the vault), so every node computes the same [`Effect`] at the same
//! index; the checkers compare them.

use super::super::node::SimMachine;
use consensus::raft::{LogIndex, Membership, NodeId};
use consensus::twopc::Decision;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

thread_local! {
    /// The planted bug `skip_membership_check` ([`super::TwoPcBugs`]): the
    /// model applies a commit whatever the membership in force. A run sets
    /// it for its own thread while it runs ([`PlantedSkip`]); a model has
    /// no other way in, since nodes build theirs by `Default` and restore.
    static SKIP_MEMBERSHIP_CHECK: Cell<bool> = const { Cell::new(false) };
}

/// Plants (or not) the bug `skip_membership_check` on this thread until
/// dropped.
pub(crate) struct PlantedSkip;

impl PlantedSkip {
    /// Sets the switch for the run on this thread.
    pub(crate) fn new(skip: bool) -> Self {
        SKIP_MEMBERSHIP_CHECK.with(|cell| cell.set(skip));
        PlantedSkip
    }
}

impl Drop for PlantedSkip {
    fn drop(&mut self) {
        SKIP_MEMBERSHIP_CHECK.with(|cell| cell.set(false));
    }
}

/// A command in the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum VaultCommand {
    /// `add-secret NAME [--update]` from a client session.
    Add {
        /// The client (0 is the liveness probe).
        client: u64,
        /// The client's sequence number: at or below the last applied one
        /// means a retry.
        sequence: u64,
        /// The secret's name.
        name: String,
        /// Replace an existing secret (version + 1) instead of creating one.
        update: bool,
    },
    /// The decision for transaction `tx` (deleting `name` at `version`).
    Decide {
        /// The transaction.
        tx: String,
        /// The secret it deletes on commit.
        name: String,
        /// The version every participant voted on.
        version: u64,
        /// What the proposer decided; only the first decision counts.
        decision: Decision,
        /// The nodes the coordinator asked to vote (the members it knew
        /// when it started); a commit applies only if they are exactly the
        /// members in force at this entry's index. Empty for a recovery
        /// abort, which is not checked.
        participants: Vec<NodeId>,
    },
    /// The leader's prune of the decisions recorded at or below `through`.
    Prune {
        /// The highest log index whose decisions go.
        through: LogIndex,
    },
}

impl VaultCommand {
    /// The bytes proposed to Raft.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding an enum of strings and integers into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// What applying one command did: identical on every node at one index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Effect {
    /// The secret now exists at this version (1: created; more: updated).
    Added {
        /// The secret.
        name: String,
        /// Its new version.
        version: u64,
    },
    /// The add was refused (exists without `update`, or missing with it).
    AddRefused {
        /// The secret.
        name: String,
    },
    /// A retried add, answered without applying it again.
    Duplicate,
    /// The first decision for `tx`; `deleted` tells whether the commit found
    /// the secret at the voted version.
    Decided {
        /// The transaction.
        tx: String,
        /// The decision, now final.
        decision: Decision,
        /// Whether the secret was deleted.
        deleted: bool,
        /// A commit applied as this abort because its participants were
        /// not the members in force.
        members_changed: bool,
    },
    /// Decisions recorded at or below `through` were forgotten.
    Pruned {
        /// The horizon now.
        through: LogIndex,
        /// The transactions whose decisions went, in id order.
        txs: Vec<String>,
    },
    /// A later decision for an already decided transaction: no effect.
    AlreadyDecided {
        /// The transaction.
        tx: String,
        /// The decision that won.
        first: Decision,
    },
}

/// The replicated vault state of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VaultModel {
    /// name -> version.
    secrets: BTreeMap<String, u64>,
    /// tx -> its first logged decision (as applied: a commit turned into
    /// an abort is recorded as the abort) and the index it was recorded at.
    decisions: BTreeMap<String, (Decision, LogIndex)>,
    /// Decisions recorded at or below this index may have been pruned.
    pruned_through: LogIndex,
    /// client -> last applied sequence.
    sessions: BTreeMap<u64, u64>,
    applied_index: LogIndex,
    /// The members of the configuration in force at `applied_index`, once
    /// the node said ([`SimMachine::membership_changed`]); not in the
    /// snapshot, as in the vault (the runtime says it again after every
    /// restore and start). Compared by the final checks too: settled
    /// members must agree on it.
    members: Option<BTreeSet<NodeId>>,
}

/// The snapshot image: every replicated table, in key order.
#[derive(Serialize, Deserialize)]
struct Image {
    applied_index: LogIndex,
    secrets: Vec<(String, u64)>,
    decisions: Vec<(String, (Decision, LogIndex))>,
    sessions: Vec<(u64, u64)>,
    pruned_through: LogIndex,
}

impl VaultModel {
    /// The version of secret `name`, if it exists.
    pub(crate) fn version(&self, name: &str) -> Option<u64> {
        self.secrets.get(name).copied()
    }

    /// The decision this node has applied for `tx` (the first in the log).
    pub(crate) fn decision(&self, tx: &str) -> Option<Decision> {
        self.decisions.get(tx).map(|(decision, _)| *decision)
    }

    /// The pruning horizon: decisions recorded at or below it may be gone.
    pub(crate) fn pruned_through(&self) -> LogIndex {
        self.pruned_through
    }

    /// How many decisions this node still records.
    pub(crate) fn live_decisions(&self) -> usize {
        self.decisions.len()
    }

    /// The lowest index at which a decision is still recorded.
    pub(crate) fn oldest_decision(&self) -> Option<LogIndex> {
        self.decisions.values().map(|(_, index)| *index).min()
    }

    fn prune(&mut self, through: LogIndex) -> Effect {
        let txs: Vec<String> = self
            .decisions
            .iter()
            .filter(|(_, (_, index))| *index <= through)
            .map(|(tx, _)| tx.clone())
            .collect();
        for tx in &txs {
            self.decisions.remove(tx);
        }
        self.pruned_through = self.pruned_through.max(through);
        Effect::Pruned {
            through: self.pruned_through,
            txs,
        }
    }

    fn add(&mut self, name: &str, update: bool) -> Effect {
        let name = name.to_string();
        match (self.secrets.get(&name).copied(), update) {
            (None, false) => {
                self.secrets.insert(name.clone(), 1);
                Effect::Added { name, version: 1 }
            }
            (Some(version), true) => {
                let version = version.saturating_add(1);
                self.secrets.insert(name.clone(), version);
                Effect::Added { name, version }
            }
            _ => Effect::AddRefused { name },
        }
    }

    fn decide(
        &mut self,
        index: LogIndex,
        tx: &str,
        name: &str,
        version: u64,
        proposed: Decision,
        participants: &[NodeId],
    ) -> Effect {
        let decision = self.unless_members_changed(proposed, participants);
        if let Some((first, _)) = self.decisions.get(tx).copied() {
            let tx = tx.to_string();
            return Effect::AlreadyDecided { tx, first };
        }
        self.decisions.insert(tx.to_string(), (decision, index));
        let deleted = decision == Decision::Commit && self.secrets.get(name) == Some(&version);
        if deleted {
            self.secrets.remove(name);
        }
        Effect::Decided {
            tx: tx.to_string(),
            decision,
            deleted,
            members_changed: decision != proposed,
        }
    }

    /// A commit whose participants are not exactly the members in force
    /// becomes an abort, decided from the log alone so that every node
    /// agrees (`vault/src/store/apply.rs`, `unless_members_changed`). Not
    /// checked before the node said what the membership is, nor for an
    /// abort, nor with the planted bug `skip_membership_check`.
    fn unless_members_changed(&self, decision: Decision, participants: &[NodeId]) -> Decision {
        let Some(members) = &self.members else {
            return decision;
        };
        if decision != Decision::Commit || SKIP_MEMBERSHIP_CHECK.with(Cell::get) {
            return decision;
        }
        let asked: BTreeSet<NodeId> = participants.iter().copied().collect();
        if asked == *members {
            decision
        } else {
            Decision::Abort
        }
    }
}

impl SimMachine for VaultModel {
    type Command = VaultCommand;
    type Output = Effect;

    fn decode(bytes: &[u8]) -> Option<VaultCommand> {
        postcard::from_bytes(bytes).ok()
    }

    fn apply(&mut self, index: LogIndex, command: &VaultCommand) -> Effect {
        self.applied_index = index;
        match command {
            VaultCommand::Add {
                client,
                sequence,
                name,
                update,
            } => {
                if self
                    .sessions
                    .get(client)
                    .is_some_and(|last| sequence <= last)
                {
                    return Effect::Duplicate;
                }
                self.sessions.insert(*client, *sequence);
                self.add(name, *update)
            }
            VaultCommand::Decide {
                tx,
                name,
                version,
                decision,
                participants,
            } => self.decide(index, tx, name, *version, *decision, participants),
            VaultCommand::Prune { through } => self.prune(*through),
        }
    }

    fn membership_changed(&mut self, _index: LogIndex, membership: &Membership) {
        let members = membership.voters.union(&membership.learners).copied();
        self.members = Some(members.collect());
    }

    fn skip_to(&mut self, index: LogIndex) {
        self.applied_index = self.applied_index.max(index);
    }

    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    fn snapshot(&self) -> Vec<u8> {
        let image = Image {
            applied_index: self.applied_index,
            secrets: self.secrets.clone().into_iter().collect(),
            decisions: self.decisions.clone().into_iter().collect(),
            sessions: self.sessions.clone().into_iter().collect(),
            pruned_through: self.pruned_through,
        };
        postcard::to_allocvec(&image).unwrap_or_default()
    }

    fn restore(bytes: &[u8]) -> Option<Self> {
        let image: Image = postcard::from_bytes(bytes).ok()?;
        Some(Self {
            secrets: image.secrets.into_iter().collect(),
            decisions: image.decisions.into_iter().collect(),
            sessions: image.sessions.into_iter().collect(),
            applied_index: image.applied_index,
            pruned_through: image.pruned_through,
            members: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(client: u64, sequence: u64, name: &str, update: bool) -> VaultCommand {
        let name = name.to_string();
        VaultCommand::Add {
            client,
            sequence,
            name,
            update,
        }
    }

    fn decide(tx: &str, version: u64, decision: Decision) -> VaultCommand {
        decide_by(tx, version, decision, &[1, 2, 3])
    }

    fn decide_by(tx: &str, version: u64, decision: Decision, asked: &[u64]) -> VaultCommand {
        VaultCommand::Decide {
            tx: tx.into(),
            name: "k".into(),
            version,
            decision,
            participants: asked.iter().copied().map(NodeId).collect(),
        }
    }

    fn members(voters: &[u64], learners: &[u64]) -> Membership {
        let mut membership = Membership::with_voters(voters.iter().copied().map(NodeId));
        membership.learners = learners.iter().copied().map(NodeId).collect();
        membership
    }

    /// SPEC §13: a commit applies only where its participants are exactly
    /// the members in force at its index (voters and learners); otherwise
    /// it is applied and recorded as an abort. Aborts are not checked, and
    /// the membership is forgotten by a snapshot (the node tells it again).
    #[test]
    fn a_commit_whose_participants_are_not_the_members_in_force_aborts() {
        let mut model = VaultModel::default();
        model.membership_changed(0, &members(&[1, 2, 3], &[]));
        model.apply(1, &add(1, 1, "k", false));
        model.membership_changed(2, &members(&[1, 2, 3], &[4]));
        let joined = model.apply(3, &decide("t1", 1, Decision::Commit));
        let turned = Effect::Decided {
            tx: "t1".into(),
            decision: Decision::Abort,
            deleted: false,
            members_changed: true,
        };
        assert_eq!(joined, turned);
        assert_eq!(model.decision("t1"), Some(Decision::Abort));
        let again = model.apply(4, &decide_by("t1", 1, Decision::Commit, &[1, 2, 3, 4]));
        let first = Decision::Abort;
        let tx = "t1".into();
        assert_eq!(again, Effect::AlreadyDecided { tx, first });
        model.membership_changed(5, &members(&[1, 2], &[]));
        let left = model.apply(6, &decide("t2", 1, Decision::Commit));
        assert!(matches!(
            left,
            Effect::Decided {
                members_changed: true,
                ..
            }
        ));
        let aborted = model.apply(7, &decide_by("t3", 1, Decision::Abort, &[]));
        let members_changed = false;
        assert!(matches!(
            aborted,
            Effect::Decided {
                members_changed: false,
                ..
            }
        ));
        let all = model.apply(8, &decide_by("t4", 1, Decision::Commit, &[2, 1]));
        let deleted = true;
        let (tx, decision) = ("t4".into(), Decision::Commit);
        let expected = Effect::Decided {
            tx,
            decision,
            deleted,
            members_changed,
        };
        assert_eq!(all, expected);
        let restored = VaultModel::restore(&model.snapshot()).unwrap_or_default();
        assert_eq!(restored.members, None);
    }

    /// With the planted bug, the model commits whatever the membership.
    #[test]
    fn the_planted_bug_skips_the_membership_check() {
        let _planted = PlantedSkip::new(true);
        let mut model = VaultModel::default();
        model.apply(1, &add(1, 1, "k", false));
        model.membership_changed(2, &members(&[1, 2, 3], &[4]));
        let joined = model.apply(3, &decide("t1", 1, Decision::Commit));
        assert!(matches!(joined, Effect::Decided { deleted: true, .. }));
    }

    #[test]
    fn adds_update_and_retries_apply_once() {
        let mut model = VaultModel::default();
        let added = |version| Effect::Added {
            name: "k".into(),
            version,
        };
        assert_eq!(model.apply(1, &add(1, 1, "k", false)), added(1));
        assert_eq!(model.apply(2, &add(1, 1, "k", false)), Effect::Duplicate);
        let refused = Effect::AddRefused { name: "k".into() };
        assert_eq!(model.apply(3, &add(1, 2, "k", false)), refused);
        assert_eq!(model.apply(4, &add(2, 1, "k", true)), added(2));
        assert_eq!(model.version("k"), Some(2));
    }

    #[test]
    fn the_first_decision_wins_and_commit_deletes_only_the_voted_version() {
        let mut model = VaultModel::default();
        model.apply(1, &add(1, 1, "k", false));
        model.apply(2, &add(1, 2, "k", true));
        // Voted on version 1, but an update moved it to 2: nothing deleted.
        let stale = model.apply(3, &decide("t1", 1, Decision::Commit));
        assert!(matches!(stale, Effect::Decided { deleted: false, .. }));
        let late = model.apply(4, &decide("t1", 2, Decision::Commit));
        let first = Decision::Commit;
        assert_eq!(
            late,
            Effect::AlreadyDecided {
                tx: "t1".into(),
                first
            }
        );
        model.apply(5, &decide("t2", 2, Decision::Abort));
        assert_eq!(model.version("k"), Some(2));
        let commit = model.apply(6, &decide("t3", 2, Decision::Commit));
        assert!(matches!(commit, Effect::Decided { deleted: true, .. }));
        assert_eq!(model.apply(7, &decide("t3", 2, Decision::Abort)), {
            Effect::AlreadyDecided {
                tx: "t3".into(),
                first,
            }
        });
        assert_eq!(model.version("k"), None);
        assert_eq!(model.decision("t2"), Some(Decision::Abort));
        let restored = VaultModel::restore(&model.snapshot());
        assert_eq!(restored.as_ref(), Some(&model));
        assert_eq!(VaultModel::decode(&[0xff, 0xff]), None);
    }
}
