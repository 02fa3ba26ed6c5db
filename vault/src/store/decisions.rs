//! The 2PC decisions this node applied most recently, in memory.
//!
//! A participant acknowledges a `Decide` once it has applied the decision
//! (SPEC §6). Asking SQLite costs a blocking-pool hop and a query on the
//! participant's connection, and measured ~0.2 ms per acknowledgement on a
//! busy 5-node machine; the applying state machine already knows each
//! decision as it commits it, so it publishes them here.

use super::apply::FirstDecision;
use crate::protocol::Decision;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many decisions are kept. A `Decide` normally arrives within
/// milliseconds of its decision being applied; anything older is answered
/// from the database.
const KEPT: usize = 4096;

/// Decisions published by the applying [`super::VaultStateMachine`] after
/// each batch commits, read by the participant runtime. Cloning shares the
/// same set.
///
/// Promises: a decision is published only once the batch that applied it is
/// committed, and before the runtime learns the batch's applied index, so a
/// reader that saw the applied index move past a decision finds it here
/// (unless more than [`KEPT`] newer ones pushed it out). A miss proves
/// nothing: ask the database.
#[derive(Debug, Clone, Default)]
pub struct AppliedDecisions {
    recent: Arc<Mutex<Recent>>,
}

#[derive(Debug, Default)]
struct Recent {
    by_tx: HashMap<String, Decision>,
    order: VecDeque<String>,
}

impl AppliedDecisions {
    /// An empty set.
    pub fn new() -> Self {
        AppliedDecisions::default()
    }

    /// The decision this node applied for `tx`, if it is among the recent
    /// ones.
    pub fn get(&self, tx: &str) -> Option<Decision> {
        self.lock().by_tx.get(tx).copied()
    }

    pub(crate) fn publish(&self, decided: &[FirstDecision]) {
        if decided.is_empty() {
            return;
        }
        let mut recent = self.lock();
        for FirstDecision { tx, decision } in decided {
            if recent.by_tx.insert(tx.clone(), *decision).is_none() {
                recent.order.push_back(tx.clone());
            }
        }
        while recent.order.len() > KEPT {
            if let Some(oldest) = recent.order.pop_front() {
                recent.by_tx.remove(&oldest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(tx: &str, decision: Decision) -> FirstDecision {
        FirstDecision {
            tx: tx.to_string(),
            decision,
        }
    }

    #[test]
    fn a_published_decision_is_found_by_every_clone() {
        let set = AppliedDecisions::new();
        let reader = set.clone();
        assert_eq!(reader.get("t1"), None);
        set.publish(&[
            decided("t1", Decision::Commit),
            decided("t2", Decision::Abort),
        ]);
        assert_eq!(reader.get("t1"), Some(Decision::Commit));
        assert_eq!(reader.get("t2"), Some(Decision::Abort));
    }

    #[test]
    fn only_the_most_recent_decisions_are_kept() {
        let set = AppliedDecisions::new();
        let all: Vec<FirstDecision> = (0..KEPT + 10)
            .map(|n| decided(&format!("t{n}"), Decision::Commit))
            .collect();
        set.publish(&all);
        assert_eq!(set.get("t0"), None);
        assert_eq!(set.get("t9"), None);
        assert_eq!(set.get("t10"), Some(Decision::Commit));
        assert_eq!(set.get(&format!("t{}", KEPT + 9)), Some(Decision::Commit));
        assert_eq!(set.lock().by_tx.len(), KEPT);
    }
}
