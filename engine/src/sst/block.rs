//! Reading a block's entries: [`BlockIter`] decodes the layout written by
//! [`BlockBuilder`](super::block_builder::BlockBuilder) straight from the block bytes.
//!
//! Every length, offset and restart index is checked against the block before use, so
//! a damaged block yields [`Malformed`], never a panic. Keys are additionally checked
//! to be long enough to carry a trailer and to have a known kind byte.

use std::cmp::Ordering;

use terrace_tiering::Bytes;

use crate::key::{compare_internal, trailer_of, ValueKind};

use crate::encoding::{u32_le_at, DecodeResult, Malformed, Reader};

/// A cursor over the entries of one uncompressed block.
pub(crate) struct BlockIter {
    data: Bytes,
    /// Offset of the restart array; entries live in `[0, restarts_start)`.
    restarts_start: usize,
    num_restarts: usize,
    /// Shortest acceptable key (data blocks need a state-key prefix and a trailer).
    min_key_len: usize,
    /// Offset of the entry after the current one.
    next_offset: usize,
    key: Vec<u8>,
    value_start: usize,
    value_end: usize,
    valid: bool,
}

impl BlockIter {
    /// Checks the restart array header of `data` and positions nowhere (not valid).
    pub(crate) fn new(data: Bytes, min_key_len: usize) -> DecodeResult<BlockIter> {
        let len = data.len();
        let count_at = len
            .checked_sub(4)
            .ok_or_else(|| Malformed::new("block shorter than its restart count"))?;
        let num_restarts = u32_le_at(&data, count_at).unwrap_or(0) as usize;
        let restarts_start = num_restarts
            .checked_mul(4)
            .and_then(|n| count_at.checked_sub(n))
            .ok_or_else(|| {
                Malformed::new(format!(
                    "restart array of {num_restarts} entries does not fit a {len}-byte block"
                ))
            })?;
        if num_restarts == 0 && restarts_start != 0 {
            return Err(Malformed::new("block has entries but no restart points"));
        }
        Ok(BlockIter {
            data,
            restarts_start,
            num_restarts,
            min_key_len,
            next_offset: restarts_start,
            key: Vec::new(),
            value_start: 0,
            value_end: 0,
            valid: false,
        })
    }

    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.data[self.value_start..self.value_end]
    }

    /// Positions at the first entry.
    pub(crate) fn seek_to_first(&mut self) -> DecodeResult<()> {
        self.key.clear();
        self.next_offset = 0;
        self.next()
    }

    /// Advances to the next entry; past the last one the iterator becomes invalid.
    pub(crate) fn next(&mut self) -> DecodeResult<()> {
        if self.next_offset >= self.restarts_start {
            self.valid = false;
            return Ok(());
        }
        let r = self.parse_entry(self.next_offset);
        self.valid = r.is_ok();
        r
    }

    /// Positions at the first entry whose key is ≥ `target` in internal order.
    pub(crate) fn seek(&mut self, target: &[u8]) -> DecodeResult<()> {
        self.valid = false;
        if self.num_restarts == 0 {
            return Ok(());
        }
        // Last restart point whose key is < target (or the first one).
        let (mut lo, mut hi) = (0usize, self.num_restarts - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            self.seek_restart(mid)?;
            if compare_internal(&self.key, target) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_restart(lo)?;
        while self.valid && compare_internal(&self.key, target) == Ordering::Less {
            self.next()?;
        }
        Ok(())
    }

    fn seek_restart(&mut self, index: usize) -> DecodeResult<()> {
        let at = self.restarts_start + 4 * index;
        let offset = u32_le_at(&self.data, at).unwrap_or(u32::MAX) as usize;
        if offset >= self.restarts_start {
            return Err(Malformed::new(format!(
                "restart point {index} at {offset} outside the entry area"
            )));
        }
        self.key.clear();
        let r = self.parse_entry(offset);
        self.valid = r.is_ok();
        r
    }

    /// Decodes the entry at `offset` on top of the previous key held in `self.key`.
    fn parse_entry(&mut self, offset: usize) -> DecodeResult<()> {
        let entries = &self.data[..self.restarts_start];
        let mut r = Reader::at(entries, offset);
        let shared = r.varint32("entry shared length")? as usize;
        let unshared = r.varint32("entry key length")? as usize;
        let value_len = r.varint32("entry value length")? as usize;
        if shared > self.key.len() {
            return Err(Malformed::new(format!(
                "entry at {offset} shares {shared} bytes with a {}-byte key",
                self.key.len()
            )));
        }
        let delta = r.bytes(unshared, "entry key")?;
        let value_start = r.pos();
        r.bytes(value_len, "entry value")?;
        self.key.truncate(shared);
        self.key.extend_from_slice(delta);
        if self.key.len() < self.min_key_len {
            return Err(Malformed::new(format!(
                "entry at {offset} has a {}-byte key, shorter than {}",
                self.key.len(),
                self.min_key_len
            )));
        }
        let kind = (trailer_of(&self.key) & 0xff) as u8;
        if ValueKind::from_u8(kind).is_none() {
            return Err(Malformed::new(format!(
                "entry at {offset} has unknown kind byte {kind}"
            )));
        }
        self.value_start = value_start;
        self.value_end = value_start + value_len;
        self.next_offset = self.value_end;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::rc::Rc;

    use super::super::block_builder::BlockBuilder;
    use super::*;
    use crate::key::make_internal_key;

    fn ik(i: u32, seq: u64) -> Vec<u8> {
        let mut sk = b"\0\x01\0\x02user".to_vec();
        sk.extend_from_slice(&i.to_be_bytes());
        make_internal_key(&sk, seq, ValueKind::Put)
    }

    #[test]
    fn seek_finds_first_key_at_or_after_target() {
        for interval in [1, 3, 16] {
            let mut b = BlockBuilder::new(interval);
            let keys: Vec<Vec<u8>> = (0..100).map(|i| ik(i * 2, 5)).collect();
            for (i, k) in keys.iter().enumerate() {
                b.add(k, format!("v{i}").as_bytes());
            }
            let data: Bytes = Rc::from(b.finish());
            let mut it = BlockIter::new(data, 12).unwrap();
            it.seek_to_first().unwrap();
            let mut n = 0;
            while it.valid() {
                assert_eq!(it.key(), &keys[n][..]);
                assert_eq!(it.value(), format!("v{n}").as_bytes());
                it.next().unwrap();
                n += 1;
            }
            assert_eq!(n, 100);
            for t in 0..202u32 {
                // Same state key, newer seqno sorts before; older sorts after.
                it.seek(&ik(t, 9)).unwrap();
                let want = t.div_ceil(2) as usize;
                assert_eq!(it.valid(), want < 100, "t={t}");
                if want < 100 {
                    assert_eq!(it.key(), &keys[want][..]);
                }
                it.seek(&ik(t, 1)).unwrap();
                let want = (t / 2 + 1) as usize;
                if want < 100 {
                    assert_eq!(it.key(), &keys[want][..]);
                }
            }
        }
    }
}
