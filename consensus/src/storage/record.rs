//! Framing of WAL records: `[len: u32 LE][crc: u32 LE][payload: len bytes]`,
//! where `payload` is a postcard-encoded [`Record`] and `crc` is CRC32C over
//! the four length bytes followed by the payload (so a damaged length is
//! caught too). Decoding never panics, whatever the bytes.

use super::StorageError;
use crate::raft::types::{Entry, HardState, LogIndex, Term};
use serde::{Deserialize, Serialize};

/// Bytes of the length and checksum in front of every payload.
pub(crate) const FRAME_HEADER: usize = 8;

/// Largest payload accepted. Entries carry at most 64 KiB of ciphertext (§5),
/// so anything near this bound is damage, not data; the bound also keeps a
/// corrupt length from making recovery allocate gigabytes.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// One durable fact in the write-ahead log.
///
/// Variant order is part of the on-disk format: append new variants at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// The hard state from here on. Also written at the head of every segment
    /// so that deleting older segments never loses it.
    HardState(HardState),
    /// An entry; if its index is at or below the last one, it replaces the
    /// log suffix from that index (truncation on conflict).
    Entry(Entry),
    /// A snapshot at (`index`, `term`) was saved: entries up to `index` are
    /// dropped, and those after it too unless `kept_suffix`. The decision is
    /// recorded rather than recomputed because after compaction deleted old
    /// segments, replay may no longer see the entry at `index`.
    Snapshot {
        /// Last index covered by the snapshot.
        index: LogIndex,
        /// Term of that entry.
        term: Term,
        /// Whether the stored entry at `index` had `term`, so that the entries
        /// after it were kept (Raft §7).
        kept_suffix: bool,
    },
}

/// The same variants borrowing their content, so that encoding an entry does
/// not clone its payload. Postcard encodes both enums identically.
#[derive(Serialize)]
pub(crate) enum RecordRef<'a> {
    /// See [`Record::HardState`].
    HardState(&'a HardState),
    /// See [`Record::Entry`].
    Entry(&'a Entry),
    /// See [`Record::Snapshot`].
    Snapshot {
        /// Last index covered by the snapshot.
        index: LogIndex,
        /// Term of that entry.
        term: Term,
        /// Whether the entries after `index` were kept.
        kept_suffix: bool,
    },
}

/// Appends one framed record to `buffer`.
pub(crate) fn encode(record: &RecordRef<'_>, buffer: &mut Vec<u8>) -> Result<(), StorageError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; FRAME_HEADER]);
    let taken = std::mem::take(buffer);
    *buffer = postcard::to_extend(record, taken)?;
    let payload_len = buffer.len() - start - FRAME_HEADER;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|_| payload_len <= MAX_PAYLOAD)
        .ok_or(StorageError::RecordTooLarge(payload_len))?;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &buffer[start + FRAME_HEADER..]);
    buffer[start..start + 4].copy_from_slice(&len_bytes);
    buffer[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What was found at a record boundary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A valid record that used `len` bytes.
    Record {
        /// The record.
        record: Record,
        /// Bytes consumed, frame included.
        len: usize,
    },
    /// No bytes left: a clean end.
    End,
    /// The bytes here are not a valid record (torn write or damage).
    Bad(&'static str),
}

/// Decodes the record at the start of `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Decoded {
    if bytes.is_empty() {
        return Decoded::End;
    }
    let (Some(len_bytes), Some(crc_bytes)) = (bytes.get(0..4), bytes.get(4..FRAME_HEADER)) else {
        return Decoded::Bad("short record header");
    };
    let mut len_array = [0u8; 4];
    len_array.copy_from_slice(len_bytes);
    let mut crc_array = [0u8; 4];
    crc_array.copy_from_slice(crc_bytes);
    let len = u32::from_le_bytes(len_array) as usize;
    if len == 0 {
        return Decoded::Bad("zero record length");
    }
    if len > MAX_PAYLOAD {
        return Decoded::Bad("record length out of range");
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else {
        return Decoded::Bad("short record payload");
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_array), payload);
    if crc != u32::from_le_bytes(crc_array) {
        return Decoded::Bad("record checksum mismatch");
    }
    match postcard::take_from_bytes::<Record>(payload) {
        Ok((record, [])) => Decoded::Record {
            record,
            len: FRAME_HEADER + len,
        },
        Ok(_) => Decoded::Bad("trailing bytes in record"),
        Err(_) => Decoded::Bad("undecodable record"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{EntryPayload, NodeId};
    use proptest::prelude::*;

    fn encoded(records: &[RecordRef<'_>]) -> Vec<u8> {
        let mut buffer = Vec::new();
        for record in records {
            encode(record, &mut buffer).expect("test records encode");
        }
        buffer
    }

    #[test]
    fn borrowed_and_owned_records_share_one_encoding() {
        let entry = Entry {
            term: 3,
            index: 9,
            payload: EntryPayload::Command(b"ciphertext".to_vec()),
        };
        let hard_state = HardState {
            term: 3,
            vote: Some(NodeId(2)),
            commit: 7,
            incarnation: 0,
        };
        let bytes = encoded(&[
            RecordRef::Entry(&entry),
            RecordRef::HardState(&hard_state),
            RecordRef::Snapshot {
                index: 4,
                term: 2,
                kept_suffix: true,
            },
        ]);
        let mut rest = &bytes[..];
        let mut records = Vec::new();
        while let Decoded::Record { record, len } = decode(rest) {
            records.push(record);
            rest = &rest[len..];
        }
        assert_eq!(decode(rest), Decoded::End);
        assert_eq!(
            records,
            [
                Record::Entry(entry),
                Record::HardState(hard_state),
                Record::Snapshot {
                    index: 4,
                    term: 2,
                    kept_suffix: true
                }
            ]
        );
    }

    #[test]
    fn a_damaged_length_is_caught_by_the_checksum() {
        let entry = Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Command(vec![7; 40]),
        };
        let mut bytes = encoded(&[RecordRef::Entry(&entry)]);
        bytes[0] -= 1;
        assert_eq!(decode(&bytes), Decoded::Bad("record checksum mismatch"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn framed_garbage_with_a_valid_checksum_never_panics(payload in proptest::collection::vec(any::<u8>(), 1..256)) {
            let len_bytes = (payload.len() as u32).to_le_bytes();
            let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &payload);
            let mut bytes = len_bytes.to_vec();
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&payload);
            match decode(&bytes) {
                Decoded::Record { len, .. } => prop_assert_eq!(len, bytes.len()),
                Decoded::Bad(_) => {}
                Decoded::End => prop_assert!(false, "non-empty input decoded as end"),
            }
        }

        #[test]
        fn entries_round_trip(term in any::<u64>(), index in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let entry = Entry { term, index, payload: EntryPayload::Command(data) };
            let bytes = encoded(&[RecordRef::Entry(&entry)]);
            prop_assert_eq!(decode(&bytes), Decoded::Record { record: Record::Entry(entry), len: bytes.len() });
        }
    }
}
