//! Proposals waiting for their answer, each bound to the `(index, term)` of
//! the entry it was given (Raft §8: a leader's proposal can be overwritten
//! by a later leader's entry at the same index; only the entry of that term
//! at that index is the proposal).
//!
//! Pure bookkeeping, no I/O: the apply worker keeps one table per node for
//! real clients, and the simulation keeps the same table for its simulated
//! ones, so the rule that binds an answer to its entry is the one the
//! simulation checks.

use crate::raft::{LogIndex, Term};
use std::collections::BTreeMap;

/// How a waiter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Its own entry was applied: answer with that entry's output.
    Applied,
    /// Its entry can no longer be applied here (overwritten, or covered by
    /// a snapshot): the caller retries, and the client session's dedup
    /// makes the retry return the first outcome if the proposal did commit.
    Superseded,
}

/// Waiters by log index; `R` is whatever answers one (a channel, a client).
#[derive(Debug)]
pub struct Waiters<R> {
    waiting: BTreeMap<LogIndex, (Term, R)>,
    /// Planted bug for the simulation's teeth tests (feature `testing`):
    /// resolve a waiter by index alone.
    #[cfg(any(test, feature = "testing"))]
    pub planted_index_only: bool,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            waiting: BTreeMap::new(),
            #[cfg(any(test, feature = "testing"))]
            planted_index_only: false,
        }
    }
}

impl<R> Waiters<R> {
    /// Waits for the entry proposed at `(index, term)`. A waiter still
    /// registered at that index (a proposal of an earlier term whose entry
    /// was overwritten before it was applied here) is superseded through
    /// `resolve`.
    pub fn register(
        &mut self,
        index: LogIndex,
        term: Term,
        reply: R,
        mut resolve: impl FnMut(R, Resolution),
    ) {
        if let Some((_, displaced)) = self.waiting.insert(index, (term, reply)) {
            resolve(displaced, Resolution::Superseded);
        }
    }

    /// The entry at `(index, term)` was applied. Its own waiter, if any, is
    /// [`Resolution::Applied`]; a waiter at `index` for another term, and
    /// every waiter below `index` (whose entry was covered by a snapshot),
    /// is [`Resolution::Superseded`].
    pub fn applied(&mut self, index: LogIndex, term: Term, mut resolve: impl FnMut(R, Resolution)) {
        while let Some(entry) = self.waiting.first_entry() {
            let waited_index = *entry.key();
            if waited_index > index {
                break;
            }
            let (waited_term, reply) = entry.remove();
            let own = waited_index == index && (waited_term == term || self.index_only());
            let resolution = if own {
                Resolution::Applied
            } else {
                Resolution::Superseded
            };
            resolve(reply, resolution);
        }
    }

    /// A snapshot replaced the state through `through`: every waiter at or
    /// below it is superseded.
    pub fn covered(&mut self, through: LogIndex, mut resolve: impl FnMut(R)) {
        let above = self.waiting.split_off(&through.saturating_add(1));
        for (_, (_, reply)) in std::mem::replace(&mut self.waiting, above) {
            resolve(reply);
        }
    }

    /// Removes every waiter (the node stops or crashes).
    pub fn take_all(&mut self) -> impl Iterator<Item = R> {
        std::mem::take(&mut self.waiting)
            .into_values()
            .map(|(_, reply)| reply)
    }

    #[cfg(any(test, feature = "testing"))]
    fn index_only(&self) -> bool {
        self.planted_index_only
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn index_only(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(waiters: &mut Waiters<&'static str>, index: LogIndex, term: Term) -> Vec<String> {
        let mut out = Vec::new();
        waiters.applied(index, term, |reply, resolution| {
            out.push(format!("{reply}: {resolution:?}"))
        });
        out
    }

    #[test]
    fn an_answer_is_bound_to_the_term_of_its_entry() {
        let mut waiters = Waiters::default();
        waiters.register(5, 2, "proposal at 5 in term 2", |_, _| {
            panic!("nothing displaced")
        });
        waiters.register(6, 2, "proposal at 6 in term 2", |_, _| {
            panic!("nothing displaced")
        });
        // A later leader (term 3) wrote another entry at index 5.
        assert_eq!(
            applied(&mut waiters, 5, 3),
            vec!["proposal at 5 in term 2: Superseded"]
        );
        assert_eq!(
            applied(&mut waiters, 6, 2),
            vec!["proposal at 6 in term 2: Applied"]
        );
    }

    #[test]
    fn waiters_below_an_applied_index_or_a_snapshot_are_superseded() {
        let mut waiters = Waiters::default();
        for (index, name) in [(3, "three"), (4, "four"), (9, "nine")] {
            waiters.register(index, 1, name, |_, _| panic!("nothing displaced"));
        }
        let mut covered = Vec::new();
        waiters.covered(3, |reply| covered.push(reply));
        assert_eq!(covered, vec!["three"]);
        assert_eq!(
            applied(&mut waiters, 9, 1),
            vec!["four: Superseded", "nine: Applied"]
        );
        assert_eq!(waiters.take_all().count(), 0);
    }

    #[test]
    fn a_new_proposal_at_an_index_supersedes_the_old_one() {
        let mut waiters = Waiters::default();
        waiters.register(5, 2, "old", |_, _| panic!("nothing displaced"));
        let mut displaced = Vec::new();
        waiters.register(5, 3, "new", |reply, resolution| {
            displaced.push((reply, resolution))
        });
        assert_eq!(displaced, vec![("old", Resolution::Superseded)]);
    }

    #[test]
    fn the_planted_bug_answers_by_index_alone() {
        let mut waiters = Waiters {
            planted_index_only: true,
            ..Waiters::default()
        };
        waiters.register(5, 2, "proposal at 5 in term 2", |_, _| {});
        assert_eq!(
            applied(&mut waiters, 5, 3),
            vec!["proposal at 5 in term 2: Applied"]
        );
    }
}
