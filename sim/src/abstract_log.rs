//! A node's log as the invariant checkers see it: per index, the entry's term,
//! a digest of its payload, and a chain hash over the whole prefix.
//!
//! The chain hash makes Log Matching cheap to check: two slots with the same
//! (index, term) and the same chain hash have identical prefixes (up to a
//! 64-bit hash collision), so a checker compares one number instead of two
//! logs. The same structure stores the simulated disk (the durable log).

use consensus::raft::{Entry, LogIndex, Term};

/// A 64-bit digest of an entry payload or of a log prefix.
pub(crate) type Digest = u64;

/// Mixes `value` into `state` (splitmix64 finaliser over the xor).
pub(crate) fn mix(state: Digest, value: u64) -> Digest {
    let mut z = (state ^ value).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The digest of an entry's payload (its term and index are kept apart).
pub(crate) fn payload_digest(entry: &Entry) -> Digest {
    let bytes = postcard::to_allocvec(&entry.payload).unwrap_or_default();
    let mut state = bytes.len() as u64;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        state = mix(state, u64::from_le_bytes(word));
    }
    state
}

/// One position of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The entry's term.
    pub(crate) term: Term,
    /// Digest of its payload.
    pub(crate) digest: Digest,
    /// Chain hash of the log up to and including this entry.
    pub(crate) chain: Digest,
}

/// A log: a base (what a snapshot covers) followed by slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AbstractLog {
    base_index: LogIndex,
    base_term: Term,
    base_chain: Digest,
    slots: Vec<Slot>,
    /// Lowest index written since [`AbstractLog::take_dirty`] was last called.
    dirty_from: Option<LogIndex>,
}

impl AbstractLog {
    /// Index of the last entry (the base index when there are no slots).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.base_index + self.slots.len() as LogIndex
    }

    /// Index covered by the snapshot base.
    pub(crate) fn base_index(&self) -> LogIndex {
        self.base_index
    }

    /// The slot at `index`; the base counts as a slot (with no payload
    /// digest), entries below it are gone.
    pub(crate) fn slot(&self, index: LogIndex) -> Option<Slot> {
        if index == self.base_index {
            let (term, chain) = (self.base_term, self.base_chain);
            return Some(Slot {
                term,
                digest: 0,
                chain,
            });
        }
        let offset = index.checked_sub(self.base_index + 1)?;
        self.slots.get(usize::try_from(offset).ok()?).copied()
    }

    /// Writes `entry` at its index, truncating any suffix from there on
    /// (Raft: a conflicting entry and all that follow it are deleted).
    /// Returns false, writing nothing, if that would leave a gap or reach
    /// below the base.
    pub(crate) fn write(&mut self, entry: &Entry) -> bool {
        if entry.index <= self.base_index || entry.index > self.last_index() + 1 {
            return false;
        }
        let keep = (entry.index - self.base_index - 1) as usize;
        self.slots.truncate(keep);
        let previous = self.slot(entry.index - 1).map_or(0, |slot| slot.chain);
        let digest = payload_digest(entry);
        let chain = mix(mix(previous, entry.term), digest);
        self.slots.push(Slot {
            term: entry.term,
            digest,
            chain,
        });
        self.mark_dirty(entry.index);
        true
    }

    /// Replaces the whole log by a snapshot base at (index, term) whose
    /// prefix hashes to `chain` (installing a snapshot drops every entry).
    pub(crate) fn install_base(&mut self, index: LogIndex, term: Term, chain: Digest) {
        self.base_index = index;
        self.base_term = term;
        self.base_chain = chain;
        self.slots.clear();
        self.mark_dirty(index);
    }

    /// Drops the entries up to `index` into the base (a local snapshot).
    pub(crate) fn compact(&mut self, index: LogIndex) {
        let Some(slot) = self.slot(index) else { return };
        if index <= self.base_index {
            return;
        }
        let drop = (index - self.base_index) as usize;
        self.slots.drain(..drop);
        self.base_index = index;
        self.base_term = slot.term;
        self.base_chain = slot.chain;
    }

    fn mark_dirty(&mut self, index: LogIndex) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |from| from.min(index)));
    }

    /// The lowest index written since the last call, and resets it.
    pub(crate) fn take_dirty(&mut self) -> Option<LogIndex> {
        self.dirty_from.take()
    }

    /// Whether this log holds exactly the slot `(index, chain)`, or covers
    /// it with its snapshot base.
    pub(crate) fn holds(&self, index: LogIndex, chain: Digest) -> bool {
        if index < self.base_index {
            return true;
        }
        self.slot(index).is_some_and(|slot| slot.chain == chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::raft::EntryPayload;

    fn entry(index: LogIndex, term: Term, byte: u8) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Command(vec![byte]),
        }
    }

    #[test]
    fn chains_agree_exactly_when_prefixes_agree() {
        let (mut left, mut right) = (AbstractLog::default(), AbstractLog::default());
        for log in [&mut left, &mut right] {
            assert!(log.write(&entry(1, 1, 1)));
            assert!(log.write(&entry(2, 1, 2)));
        }
        assert_eq!(left.slot(2), right.slot(2));
        assert!(right.write(&entry(2, 1, 9)));
        assert!(right.write(&entry(3, 2, 3)));
        assert!(left.write(&entry(3, 2, 3)));
        // Same (index, term) at 3, different prefixes: the chains differ.
        assert_ne!(
            left.slot(3).map(|s| s.chain),
            right.slot(3).map(|s| s.chain)
        );
        assert!(!left.write(&entry(5, 2, 5)), "gaps are refused");
        assert_eq!(left.take_dirty(), Some(1));
        assert_eq!(left.take_dirty(), None);
    }

    #[test]
    fn compaction_keeps_the_chain() {
        let mut log = AbstractLog::default();
        for index in 1..=5 {
            assert!(log.write(&entry(index, 1, index as u8)));
        }
        let chain = log.slot(3).map(|s| s.chain);
        log.compact(3);
        assert_eq!(log.base_index(), 3);
        assert_eq!(log.slot(3).map(|s| s.chain), chain);
        assert!(log.slot(2).is_none());
        assert!(log.holds(2, 0), "covered by the base");
        assert_eq!(log.last_index(), 5);
    }
}
