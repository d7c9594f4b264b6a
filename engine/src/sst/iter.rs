//! Scanning an SST in internal-key order: [`TableIter`].
//!
//! Two ways to fetch data blocks:
//!
//! * **cached** — each block is fetched like a point read, through the shard's block
//!   cache (hot blocks stay hot, scans share blocks with gets). A scan's misses are
//!   admitted only for its first few blocks (`policy::cache_mode::scan_hint`), so a
//!   long scan does not flush the cache;
//! * **sequential** — for compaction: the data region is read in large chunks
//!   (`readahead_bytes` per read) and blocks are cut out of the chunk; nothing enters
//!   the cache, so a compaction neither pollutes it nor crawls at one 4 KiB read per
//!   block. With a probe cache, the iterator notes whether the cache holds the
//!   current block ([`TableIter::block_hot`]), so compaction can preload the output
//!   blocks that replace hot ones.
//!
//! A clipped iterator ([`TableIter::clipped`]) yields only the entries whose key
//! group lies in its clip range: the file reference of a rescaled shard holds only
//! those (the file also holds other shards' keys until a compaction trims them).
//!
//! After an error the iterator is invalid; seeking again is allowed.

use std::cell::Cell;
use std::rc::Rc;

use terrace_tiering::Bytes;

use crate::error::{Error, Result};
use crate::key::{make_internal_key, KeyGroupRange, ValueKind, MAX_SEQNO};

use super::block::BlockIter;
use super::cache::{BlockRead, TableCache};
use super::reader::{read, TableReader, MIN_DATA_KEY_LEN};
use super::seal::{unseal_borrowed, Unsealed};

enum Fetch {
    Cached {
        cache: Rc<dyn TableCache>,
        level: u8,
        /// Blocks loaded by the whole scan this iterator belongs to.
        scan_blocks: Option<Rc<Cell<u32>>>,
    },
    Sequential {
        readahead_bytes: usize,
        /// File offset of `chunk[0]`.
        chunk_offset: u64,
        chunk: Option<Bytes>,
        /// Asked (never changed) whether it holds each block read.
        probe: Option<Rc<dyn TableCache>>,
    },
}

/// A cursor over the entries of one SST.
pub struct TableIter {
    table: Rc<TableReader>,
    fetch: Fetch,
    /// The current block and its index, when positioned.
    block: Option<(usize, BlockIter)>,
    /// Whether the probe cache held the current block when it was read.
    block_hot: bool,
    /// Only entries of these key groups are yielded.
    clip: Option<KeyGroupRange>,
}

impl TableIter {
    pub(crate) fn cached(
        table: Rc<TableReader>,
        cache: Rc<dyn TableCache>,
        level: u8,
        scan_blocks: Option<Rc<Cell<u32>>>,
    ) -> TableIter {
        TableIter {
            table,
            fetch: Fetch::Cached {
                cache,
                level,
                scan_blocks,
            },
            block: None,
            block_hot: false,
            clip: None,
        }
    }

    pub(crate) fn sequential(
        table: Rc<TableReader>,
        readahead_bytes: usize,
        probe: Option<Rc<dyn TableCache>>,
    ) -> TableIter {
        TableIter {
            table,
            fetch: Fetch::Sequential {
                readahead_bytes,
                chunk_offset: 0,
                chunk: None,
                probe,
            },
            block: None,
            block_hot: false,
            clip: None,
        }
    }

    /// This iterator, yielding only entries whose key group is in `clip` (when set).
    pub(crate) fn clipped(mut self, clip: Option<KeyGroupRange>) -> TableIter {
        self.clip = clip;
        self
    }

    /// After a move: skips to the clip's first group, or ends past its last.
    async fn enter_clip(&mut self) -> Result<()> {
        let Some(clip) = self.clip else {
            return Ok(());
        };
        // At most two rounds: a seek to the first group lands in or past it.
        for _ in 0..2 {
            if !self.valid() {
                return Ok(());
            }
            let key = self.key();
            let kg = match key {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => return Err(Error::internal("internal key too short for a key group")),
            };
            if kg > clip.last {
                self.block = None;
                return Ok(());
            }
            if kg >= clip.first {
                return Ok(());
            }
            let target = make_internal_key(&clip.first.to_be_bytes(), MAX_SEQNO, ValueKind::Put);
            self.block = None;
            self.seek_inner(&target).await?;
        }
        Ok(())
    }

    /// Whether the probe cache held the block of the current entry (sequential
    /// iterators with a probe; false otherwise).
    pub(crate) fn block_hot(&self) -> bool {
        self.block_hot
    }

    /// True when positioned at an entry.
    pub fn valid(&self) -> bool {
        self.block.as_ref().is_some_and(|(_, b)| b.valid())
    }

    /// The full internal key of the current entry (empty when not [`valid`](Self::valid)).
    pub fn key(&self) -> &[u8] {
        match &self.block {
            Some((_, b)) if b.valid() => b.key(),
            _ => &[],
        }
    }

    /// The value of the current entry (empty when not [`valid`](Self::valid)).
    pub fn value(&self) -> &[u8] {
        match &self.block {
            Some((_, b)) if b.valid() => b.value(),
            _ => &[],
        }
    }

    /// Positions at the first entry of the file.
    pub async fn seek_to_first(&mut self) -> Result<()> {
        self.block = None;
        let r = match self.first_valid_from(0).await {
            Ok(()) => self.enter_clip().await,
            e => e,
        };
        self.settle(r)
    }

    /// Positions at the first entry ≥ `ikey` in internal order.
    pub async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        self.block = None;
        let r = match self.seek_inner(ikey).await {
            Ok(()) => self.enter_clip().await,
            e => e,
        };
        self.settle(r)
    }

    /// Moves to the next entry. Calling it when not valid is an error.
    pub async fn next(&mut self) -> Result<()> {
        let Some((i, b)) = self.block.as_mut().filter(|(_, b)| b.valid()) else {
            return Err(Error::internal(format!(
                "TableIter::next on an unpositioned iterator over {}",
                self.table.path().display()
            )));
        };
        let i = *i;
        let r = match b.next() {
            Ok(()) if b.valid() => Ok(()),
            Ok(()) => self.first_valid_from(i + 1).await,
            Err(m) => Err(self.corrupt_block(i, m)),
        };
        let r = match r {
            Ok(()) => self.enter_clip().await,
            e => e,
        };
        self.settle(r)
    }

    async fn seek_inner(&mut self, ikey: &[u8]) -> Result<()> {
        let i = self.table.find_block(ikey);
        if i >= self.table.block_count() {
            return Ok(());
        }
        let mut it = self.load(i).await?;
        it.seek(ikey).map_err(|m| self.corrupt_block(i, m))?;
        if it.valid() {
            self.block = Some((i, it));
            return Ok(());
        }
        self.first_valid_from(i + 1).await
    }

    /// Positions at the first entry of the first non-empty block from `start` on, or
    /// at the end.
    async fn first_valid_from(&mut self, start: usize) -> Result<()> {
        self.block = None;
        for i in start..self.table.block_count() {
            let mut it = self.load(i).await?;
            it.seek_to_first().map_err(|m| self.corrupt_block(i, m))?;
            if it.valid() {
                self.block = Some((i, it));
                return Ok(());
            }
        }
        Ok(())
    }

    /// Leaves the iterator invalid after an error.
    fn settle(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.block = None;
        }
        r
    }

    fn corrupt_block(&self, i: usize, m: crate::encoding::Malformed) -> Error {
        let offset = self.table.block_handle(i).map_or(0, |h| h.offset);
        m.at(self.table.path(), offset)
    }

    async fn load(&mut self, i: usize) -> Result<BlockIter> {
        let contents = match &mut self.fetch {
            Fetch::Cached {
                cache,
                level,
                scan_blocks,
            } => {
                let hint = match scan_blocks {
                    Some(n) => {
                        n.set(n.get().saturating_add(1));
                        crate::policy::cache_mode::scan_hint(n.get())
                    }
                    None => terrace_tiering::AdmissionHint::Read,
                };
                let read = BlockRead {
                    level: *level,
                    hint,
                };
                self.table.read_data_block(i, &**cache, read).await?
            }
            Fetch::Sequential {
                readahead_bytes,
                chunk_offset,
                chunk,
                probe,
            } => {
                let table = &self.table;
                let path = table.path();
                let h = table
                    .block_handle(i)
                    .ok_or_else(|| Error::internal(format!("data block {i} out of range")))?;
                let covered = chunk.as_ref().is_some_and(|c| {
                    h.offset >= *chunk_offset && h.end() <= *chunk_offset + c.len() as u64
                });
                if !covered {
                    // Index validation guarantees h.end() <= data_end.
                    let want = (*readahead_bytes as u64).max(h.len_with_trailer());
                    let len = want.min(table.data_end().saturating_sub(h.offset));
                    let c = read(table.source(), path, h.offset, len as usize).await?;
                    *chunk_offset = h.offset;
                    *chunk = Some(c);
                }
                let c = chunk
                    .as_ref()
                    .ok_or_else(|| Error::internal("sequential chunk missing"))?;
                self.block_hot = probe.as_ref().is_some_and(|p| {
                    p.contains(&terrace_tiering::BlockKey {
                        file_id: table.file_id(),
                        offset: h.offset,
                    })
                });
                let start = (h.offset - *chunk_offset) as usize;
                let end = (h.end() - *chunk_offset) as usize;
                let slice = c
                    .get(start..end)
                    .ok_or_else(|| Error::internal("data block outside the read chunk"))?;
                match unseal_borrowed(path, h.offset, slice)? {
                    Unsealed::Raw(r) => Rc::from(r),
                    Unsealed::Owned(v) => Rc::from(v),
                }
            }
        };
        BlockIter::new(contents, MIN_DATA_KEY_LEN).map_err(|m| self.corrupt_block(i, m))
    }
}
