//! The shape of the stored log (snapshot point plus consecutive entries) and
//! the rules every store applies to it: appends without holes, truncation on
//! conflict, compaction by snapshot. Shared by the file store (which keeps
//! only terms in memory), the memory store and recovery (which keep entries).

use super::StorageError;
use crate::raft::types::{Entry, LogIndex, Term};
use std::collections::VecDeque;

/// Something stored per log position that knows its term.
pub(crate) trait Item: Clone {
    /// The term of the entry at this position.
    fn term(&self) -> Term;
}

impl Item for Term {
    fn term(&self) -> Term {
        *self
    }
}

impl Item for Entry {
    fn term(&self) -> Term {
        self.term
    }
}

/// The log after the snapshot point: `items[k]` is the entry at
/// `base_index + 1 + k`.
#[derive(Clone, Debug)]
pub(crate) struct Tail<T> {
    /// Index the snapshot covers (0 without a snapshot).
    pub(crate) base_index: LogIndex,
    /// Term of the entry at `base_index` (0 without a snapshot).
    pub(crate) base_term: Term,
    /// The entries after `base_index`, consecutive.
    pub(crate) items: VecDeque<T>,
}

impl<T> Default for Tail<T> {
    fn default() -> Self {
        Tail {
            base_index: 0,
            base_term: 0,
            items: VecDeque::new(),
        }
    }
}

impl<T: Item> Tail<T> {
    /// Index of the last entry, or `base_index` when there is none.
    pub(crate) fn last_index(&self) -> LogIndex {
        self.base_index + self.items.len() as LogIndex
    }

    /// Term of the entry at `index`, if it is the base or a stored entry.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        let offset = index.checked_sub(self.base_index + 1)?;
        self.items
            .get(usize::try_from(offset).ok()?)
            .map(Item::term)
    }

    /// Checks a batch before anything of it is written: the snapshot (if
    /// any) must be newer than the base, and the entries, indexed `indexes`,
    /// consecutive, after the base, and without a gap after the last entry,
    /// all as the log will be once the snapshot is applied.
    pub(crate) fn check_batch(
        &self,
        snapshot: Option<(LogIndex, Term)>,
        indexes: impl IntoIterator<Item = LogIndex>,
    ) -> Result<(), StorageError> {
        let (base, last) = match snapshot {
            Some((index, term)) => {
                if index <= self.base_index {
                    return Err(StorageError::StaleSnapshot {
                        index,
                        term,
                        current: self.base_index,
                    });
                }
                let last = if self.keeps_suffix(index, term) {
                    self.last_index()
                } else {
                    index
                };
                (index, last)
            }
            None => (self.base_index, self.last_index()),
        };
        let mut indexes = indexes.into_iter();
        let Some(first) = indexes.next() else {
            return Ok(());
        };
        if first <= base {
            return Err(StorageError::Compacted {
                index: first,
                snapshot_index: base,
            });
        }
        if first > last + 1 {
            return Err(StorageError::Hole {
                expected: last + 1,
                found: first,
            });
        }
        let mut previous = first;
        for next in indexes {
            if Some(next) != previous.checked_add(1) {
                return Err(StorageError::NotConsecutive { previous, next });
            }
            previous = next;
        }
        Ok(())
    }

    /// Appends one item at `index`, first dropping any stored entry at or
    /// after it. The caller has checked `base_index < index <= last + 1`.
    pub(crate) fn put(&mut self, index: LogIndex, item: T) {
        let keep = index.saturating_sub(self.base_index + 1);
        self.items
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.items.push_back(item);
    }

    /// Whether a snapshot at (`index`, `term`) keeps the entries after it:
    /// only if the stored entry at `index` has that term (Raft §7).
    pub(crate) fn keeps_suffix(&self, index: LogIndex, term: Term) -> bool {
        index > self.base_index && self.term_at(index) == Some(term)
    }

    /// Moves the base to a snapshot at (`index`, `term`): entries after it are
    /// kept if [`keeps_suffix`](Self::keeps_suffix), otherwise the whole log is
    /// discarded.
    pub(crate) fn compact(&mut self, index: LogIndex, term: Term) {
        if self.keeps_suffix(index, term) {
            let drop = usize::try_from(index - self.base_index).unwrap_or(usize::MAX);
            self.items.drain(..drop.min(self.items.len()));
        } else {
            self.items.clear();
        }
        self.base_index = index;
        self.base_term = term;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(base: LogIndex, terms: &[Term]) -> Tail<Term> {
        Tail {
            base_index: base,
            base_term: 1,
            items: terms.iter().copied().collect(),
        }
    }

    #[test]
    fn appends_are_checked_for_holes_order_and_compaction() {
        let log = tail(5, &[1, 1, 2]); // entries 6..=8
        assert!(log.check_batch(None, [9, 10]).is_ok());
        assert!(log.check_batch(None, [7]).is_ok());
        assert!(matches!(
            log.check_batch(None, [10]),
            Err(StorageError::Hole {
                expected: 9,
                found: 10
            })
        ));
        assert!(matches!(
            log.check_batch(None, [5]),
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            log.check_batch(None, [9, 11]),
            Err(StorageError::NotConsecutive {
                previous: 9,
                next: 11
            })
        ));
        // As the log will be after the snapshot: a matching one keeps 8.
        assert!(log.check_batch(Some((7, 1)), [9]).is_ok());
        assert!(matches!(
            log.check_batch(Some((7, 5)), [9]),
            Err(StorageError::Hole {
                expected: 8,
                found: 9
            })
        ));
        assert!(matches!(
            log.check_batch(Some((7, 1)), [7]),
            Err(StorageError::Compacted { .. })
        ));
        assert!(matches!(
            log.check_batch(Some((5, 1)), []),
            Err(StorageError::StaleSnapshot { .. })
        ));
    }

    #[test]
    fn put_truncates_a_conflicting_suffix() {
        let mut log = tail(5, &[1, 1, 2]);
        log.put(7, 3);
        assert_eq!(log.items, [1, 3]);
        assert_eq!(log.last_index(), 7);
    }

    #[test]
    fn compaction_keeps_the_suffix_only_when_terms_match() {
        let mut log = tail(0, &[1, 1, 2, 2]);
        log.compact(2, 1);
        assert_eq!((log.base_index, log.items.len()), (2, 2));
        let mut log = tail(0, &[1, 1, 2, 2]);
        log.compact(2, 9);
        assert_eq!((log.base_index, log.base_term, log.items.len()), (2, 9, 0));
        let mut log = tail(0, &[1]);
        log.compact(10, 4);
        assert_eq!((log.last_index(), log.term_at(10)), (10, Some(4)));
    }
}
