//! The index block: one entry per data block, in file order.
//!
//! An entry's key is a *separator* `s` with `last key of block i ≤ s < first key of
//! block i+1` (internal order); its value is the block handle as
//! `[offset: varint64][size: varint32]`. The index block uses the data-block entry
//! layout (see [`block_builder`](super::block_builder)) with restarts every
//! [`INDEX_RESTART_INTERVAL`] entries. Readers decode it whole into a `Vec` once,
//! validating that separators strictly increase and that handles are in file order,
//! do not overlap and lie inside the data region.

use std::cmp::Ordering;
use std::rc::Rc;

use crate::key::{compare_internal, pack_trailer, state_key_of, ValueKind, MAX_SEQNO, TRAILER_LEN};

use super::block::BlockIter;
use super::block_builder::BlockBuilder;
use super::handle::BlockHandle;
use crate::encoding::{DecodeResult, Malformed, Reader};

/// Restart interval of index blocks (only affects their size: readers decode them whole).
pub(crate) const INDEX_RESTART_INTERVAL: usize = 16;

/// One decoded index entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) separator: Vec<u8>,
    pub(crate) handle: BlockHandle,
}

/// Writes into `out` a short key `s` with `last ≤ s < next` in internal order.
///
/// When the state keys differ at byte `i` by more than one, `s` is the state key
/// `last[..i] ++ [last[i] + 1]` with the largest trailer (so it sorts before every
/// version of itself). Otherwise `s` is `last` unchanged, which always qualifies.
pub(crate) fn separator(last: &[u8], next: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let (a, b) = (state_key_of(last), state_key_of(next));
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if i < a.len() && i < b.len() && a[i] < 0xff && a[i] + 1 < b[i] {
        out.extend_from_slice(&a[..=i]);
        out[i] += 1;
        out.extend_from_slice(&pack_trailer(MAX_SEQNO, ValueKind::Put).to_le_bytes());
        debug_assert_eq!(compare_internal(last, out), Ordering::Less);
        debug_assert_eq!(compare_internal(out, next), Ordering::Less);
    } else {
        out.extend_from_slice(last);
    }
}

/// Accumulates index entries while data blocks are written.
pub(crate) struct IndexBuilder {
    block: BlockBuilder,
    value: Vec<u8>,
}

impl IndexBuilder {
    pub(crate) fn new() -> IndexBuilder {
        IndexBuilder {
            block: BlockBuilder::new(INDEX_RESTART_INTERVAL),
            value: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, separator: &[u8], handle: BlockHandle) {
        self.value.clear();
        handle.encode_varint(&mut self.value);
        self.block.add(separator, &self.value);
    }

    pub(crate) fn size_estimate(&self) -> usize {
        self.block.size_estimate()
    }

    pub(crate) fn finish(&mut self) -> &[u8] {
        self.block.finish()
    }
}

/// Decodes and validates an index block whose data blocks must end by `data_end`.
pub(crate) fn decode_index(contents: &[u8], data_end: u64) -> DecodeResult<Vec<IndexEntry>> {
    let mut it = BlockIter::new(Rc::from(contents), TRAILER_LEN)?;
    it.seek_to_first()?;
    let mut out: Vec<IndexEntry> = Vec::new();
    while it.valid() {
        let mut r = Reader::new(it.value());
        let handle = BlockHandle::decode_varint(&mut r)?;
        if !r.is_empty() {
            return Err(Malformed::new("trailing bytes after an index block handle"));
        }
        let prev_end = out.last().map_or(0, |e| e.handle.end());
        handle.check_within(prev_end, data_end, "data block")?;
        if let Some(prev) = out.last() {
            if compare_internal(&prev.separator, it.key()) != Ordering::Less {
                return Err(Malformed::new(format!(
                    "index separators out of order at entry {}",
                    out.len()
                )));
            }
        }
        out.push(IndexEntry {
            separator: it.key().to_vec(),
            handle,
        });
        it.next()?;
    }
    if out.is_empty() {
        return Err(Malformed::new("index block lists no data blocks"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::key::make_internal_key;

    #[test]
    fn separators_sit_between_blocks() {
        let cases: [(&[u8], u64, &[u8], u64); 5] = [
            (b"\0\0\0\0apple", 5, b"\0\0\0\0banana", 9),
            (b"\0\0\0\0a", 5, b"\0\0\0\0a", 3),
            (b"\0\0\0\0a", 5, b"\0\0\0\0ab", 7),
            (b"\0\0\0\0a\xff", 5, b"\0\0\0\0b", 7),
            (b"\0\0\0\0az", 5, b"\0\0\0\0b", 7),
        ];
        let mut s = Vec::new();
        for (a, sa, b, sb) in cases {
            let last = make_internal_key(a, sa, ValueKind::Put);
            let next = make_internal_key(b, sb, ValueKind::Delete);
            separator(&last, &next, &mut s);
            assert_ne!(compare_internal(&last, &s), Ordering::Greater);
            assert_eq!(compare_internal(&s, &next), Ordering::Less);
        }
    }
}
