//! Builds the contents of one data (or index) block.
//!
//! Layout of the (uncompressed) contents:
//!
//! ```text
//! entry*  [restart offset: u32 LE]*  [restart count: u32 LE]
//! entry = [shared: varint32][unshared: varint32][value len: varint32]
//!         [unshared key bytes][value bytes]
//! ```
//!
//! `shared` is the number of leading bytes the entry's key has in common with the
//! previous entry's key. Every `restart_interval`-th entry is a *restart point*: it
//! stores its key whole (`shared = 0`) and its offset is listed in the restart array,
//! which lets a reader binary-search the restart keys and decode forward from there.
//! The first entry is always a restart point, so a non-empty block has at least one.
//!
//! The caller adds keys in strictly increasing internal order; the builder does not
//! check it (the table writer does, once, for every key).

use crate::encoding::put_varint32;

/// Accumulates entries of one block.
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// A builder placing a restart point every `restart_interval` entries (at least 1).
    pub(crate) fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The last key added since the last reset.
    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Size of the contents if the block were finished now.
    pub(crate) fn size_estimate(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// An upper bound of [`size_estimate`](Self::size_estimate) after adding an entry
    /// with the given key and value lengths.
    pub(crate) fn size_estimate_after(&self, key_len: usize, value_len: usize) -> usize {
        // Three varints of at most 5 bytes each, and possibly one more restart slot.
        self.size_estimate() + 15 + key_len + value_len + 4
    }

    /// Appends an entry. `key` and `value` lengths must fit in u32 (the writer checks).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.since_restart == 0 || self.since_restart >= self.restart_interval {
            // Offsets fit u32 because the writer bounds keys, values and block sizes.
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint32(&mut self.buf, shared as u32);
        put_varint32(&mut self.buf, (key.len() - shared) as u32);
        put_varint32(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Appends the restart array and returns the finished contents. Call
    /// [`reset`](Self::reset) before adding to the next block.
    pub(crate) fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        &self.buf
    }

    /// Empties the builder, keeping its allocations.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
    }
}
