//! The in-memory log: entries since the last snapshot, with the bookkeeping
//! of which of them the runtime was asked to persist and which are durable.
//!
//! Indices: `base_index` is the last index covered by the snapshot (0 when
//! none); `entries[k]` holds index `base_index + 1 + k`. Entries up to
//! `handed_out` were given to the runtime to persist; entries up to `stable`
//! are known durable.

use super::message::ConflictHint;
use super::types::{Entry, EntryPayload, LogIndex, Membership, Term};
use super::Snapshot;

/// The log of one node.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The newest snapshot (kept to stream it to lagging followers).
    snapshot: Option<Snapshot>,
    base_index: LogIndex,
    base_term: Term,
    entries: Vec<Entry>,
    handed_out: LogIndex,
    stable: LogIndex,
}

impl RaftLog {
    /// A log restored from disk: everything given is already durable.
    pub(crate) fn restored(snapshot: Option<Snapshot>, entries: Vec<Entry>) -> RaftLog {
        let (base_index, base_term) = snapshot.as_ref().map_or((0, 0), |snapshot| {
            (snapshot.meta.last_index, snapshot.meta.last_term)
        });
        let last = base_index + entries.len() as LogIndex;
        RaftLog {
            snapshot,
            base_index,
            base_term,
            entries,
            handed_out: last,
            stable: last,
        }
    }

    pub(crate) fn base_index(&self) -> LogIndex {
        self.base_index
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.base_index + self.entries.len() as LogIndex
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.base_term, |entry| entry.term)
    }

    /// The last index known durable on this node.
    pub(crate) fn stable_index(&self) -> LogIndex {
        self.stable
    }

    /// The term of the entry at `index`, or `None` if it is compacted away
    /// or beyond the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.base_index {
            return None;
        }
        self.entries.get((index - self.base_index - 1) as usize)
    }

    /// Entries in `from..=to` (clamped to what is held).
    pub(crate) fn slice(&self, from: LogIndex, to: LogIndex) -> Vec<Entry> {
        let from = from.max(self.base_index + 1);
        let to = to.min(self.last_index());
        if from > to {
            return Vec::new();
        }
        let start = (from - self.base_index - 1) as usize;
        let end = (to - self.base_index) as usize;
        self.entries[start..end].to_vec()
    }

    /// Entries from `from`, at most `max_count` of them and about
    /// `max_bytes` of payload (always at least one if any exists).
    pub(crate) fn batch(&self, from: LogIndex, max_count: usize, max_bytes: usize) -> Vec<Entry> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut index = from.max(self.base_index + 1);
        while let Some(entry) = self.entry(index) {
            let size = payload_size(&entry.payload);
            if !batch.is_empty() && (batch.len() >= max_count || bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            batch.push(entry.clone());
            index += 1;
        }
        batch
    }

    /// Appends entries that directly follow the last one (leader path).
    pub(crate) fn append(&mut self, entries: Vec<Entry>) {
        self.entries.extend(entries);
    }

    /// Appends the entries of an AppendEntries after the consistency check
    /// (Raft §5.3): returns the index up to which the log now matches the
    /// leader's and whether anything was truncated, or a conflict hint.
    pub(crate) fn try_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
    ) -> Result<(LogIndex, bool), ConflictHint> {
        let match_index = prev_index + entries.len() as LogIndex;
        // Entries at or below the snapshot are committed, hence match.
        let (prev_index, prev_term, entries) = if prev_index < self.base_index {
            let skip = (self.base_index - prev_index) as usize;
            let rest: Vec<Entry> = entries.into_iter().skip(skip).collect();
            (self.base_index, self.base_term, rest)
        } else {
            (prev_index, prev_term, entries)
        };
        if self.term_at(prev_index) != Some(prev_term) {
            return Err(self.conflict_hint(prev_index));
        }
        let mut truncated = false;
        for entry in entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    self.truncate_from(entry.index);
                    truncated = true;
                    self.entries.push(entry);
                }
                None => self.entries.push(entry),
            }
        }
        Ok((match_index.max(self.base_index), truncated))
    }

    fn conflict_hint(&self, prev_index: LogIndex) -> ConflictHint {
        match self.term_at(prev_index) {
            None => ConflictHint {
                conflict_term: None,
                first_index: self.last_index() + 1,
            },
            Some(term) => {
                let mut first = prev_index;
                while first > self.base_index + 1 && self.term_at(first - 1) == Some(term) {
                    first -= 1;
                }
                ConflictHint {
                    conflict_term: Some(term),
                    first_index: first,
                }
            }
        }
    }

    /// The last index holding an entry of `term`, if any (leader side of
    /// fast backtracking).
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let found = self.entries.iter().rev().find(|entry| entry.term <= term)?;
        (found.term == term).then_some(found.index)
    }

    /// Drops the entries from `index` on; they will be rewritten, so the
    /// runtime must overwrite them (the next batch starts at or below them).
    fn truncate_from(&mut self, index: LogIndex) {
        let keep = index.saturating_sub(self.base_index + 1) as usize;
        self.entries.truncate(keep);
        self.handed_out = self.handed_out.min(index - 1);
        self.stable = self.stable.min(index - 1);
    }

    /// The entries not yet handed to the runtime; marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let entries = self.slice(self.handed_out + 1, self.last_index());
        self.handed_out = self.last_index();
        entries
    }

    /// Whether some entries wait to be handed out.
    pub(crate) fn has_unstable(&self) -> bool {
        self.handed_out < self.last_index()
    }

    /// The runtime made entries durable through `(index, term)`; an
    /// acknowledgement for entries since overwritten is ignored.
    pub(crate) fn persisted(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.stable || index > self.handed_out || self.term_at(index) != Some(term) {
            return false;
        }
        self.stable = index;
        true
    }

    /// Replaces the log prefix up to the snapshot with the snapshot.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.last_index;
        let drop = (index - self.base_index) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.base_index = index;
        self.base_term = snapshot.meta.last_term;
        self.snapshot = Some(snapshot);
    }

    /// Swaps the snapshot held for another copy of it (same metadata, same
    /// length); anything else is refused.
    pub(crate) fn replace_snapshot(&mut self, copy: Snapshot) -> bool {
        match &mut self.snapshot {
            Some(held) if held.meta == copy.meta && held.data.len() == copy.data.len() => {
                *held = copy;
                true
            }
            _ => false,
        }
    }

    /// Replaces the whole log with a snapshot received from the leader.
    pub(crate) fn install(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.base_index = snapshot.meta.last_index;
        self.base_term = snapshot.meta.last_term;
        self.handed_out = self.base_index;
        self.stable = self.base_index;
        self.snapshot = Some(snapshot);
    }

    /// The membership in force after the entry at `index`: the last
    /// membership entry at or before it, else the snapshot's.
    pub(crate) fn membership_at(&self, index: LogIndex) -> Option<(Membership, LogIndex)> {
        let upto = index.min(self.last_index());
        if upto > self.base_index {
            let end = (upto - self.base_index) as usize;
            let found = self.entries[..end]
                .iter()
                .rev()
                .find_map(|entry| match &entry.payload {
                    EntryPayload::Membership(membership) => Some((membership.clone(), entry.index)),
                    _ => None,
                });
            if found.is_some() {
                return found;
            }
        }
        if index < self.base_index {
            return None;
        }
        self.snapshot
            .as_ref()
            .map(|snapshot| (snapshot.meta.membership.clone(), self.base_index))
    }
}

/// Approximate wire size of a payload, for batching.
fn payload_size(payload: &EntryPayload) -> usize {
    match payload {
        EntryPayload::Command(bytes) => bytes.len() + 16,
        EntryPayload::Blank => 16,
        EntryPayload::Membership(membership) => {
            16 + 9 * (membership.voters.len() + membership.learners.len())
        }
    }
}
