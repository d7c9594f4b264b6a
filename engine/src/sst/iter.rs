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
//! A cached iterator may read ahead ([`TableIter::readahead`], RocksDB's automatic
//! readahead at block granularity): once it has moved from one block to the next
//! twice in a row (right away when told where the scan ends,
//! [`TableIter::bound_readahead`], and never past that), it starts loading the
//! blocks after the current one, each as its own cache lookup in a task of the
//! current queue, two at first and twice as many at each further step, up to the
//! limit; a jump (seek, or a block it did not queue) cancels the loads and starts
//! over. A block a memory hit serves costs no task. So a long scan keeps several
//! block reads in flight (local disk or object store) instead of waiting for each in
//! turn.
//!
//! A clipped iterator ([`TableIter::clipped`]) yields only the entries whose key
//! group lies in its clip range: the file reference of a rescaled shard holds only
//! those (the file also holds other shards' keys until a compaction trims them).
//!
//! After an error the iterator is invalid; seeking again is allowed.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

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

/// A block loading ahead of a cached iterator.
enum Ahead {
    /// Served at once (a memory hit), or failed at once.
    Ready(Result<Bytes>),
    /// Loading in a task; dropping it cancels the load.
    Loading(glommio::Task<Result<Bytes>>),
}

/// Read-ahead state of a cached iterator (see the module comment).
#[derive(Default)]
struct ReadAhead {
    /// Most blocks loading ahead at once; 0 turns read-ahead off.
    max: usize,
    /// Block moves to the next block in a row.
    streak: u32,
    /// The block last handed to the iterator.
    last: Option<usize>,
    /// How many blocks past the current one are wanted loading.
    window: usize,
    /// Blocks loading ahead, consecutive and in order.
    queue: VecDeque<(usize, Ahead)>,
    /// The last block the scan can need (it holds the first key at or past the
    /// scan's end), when the scan has one: nothing after it is loaded ahead.
    last_needed: Option<usize>,
}

impl ReadAhead {
    /// Notes that block `i` is wanted; returns its load if it was queued. Anything
    /// queued before `i` is dropped (cancelled), and a jump empties the queue.
    fn take(&mut self, i: usize) -> Option<Ahead> {
        let sequential = self.last.is_some_and(|l| l + 1 == i);
        self.last = Some(i);
        if !sequential {
            self.streak = 0;
            self.window = 0;
            self.queue.clear();
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        while self.queue.front().is_some_and(|(j, _)| *j < i) {
            self.queue.pop_front();
        }
        match self.queue.front() {
            Some((j, _)) if *j == i => self.queue.pop_front().map(|(_, a)| a),
            _ => {
                self.queue.clear();
                None
            }
        }
    }

    /// Which blocks to start loading after block `i` of `count`: none until two
    /// moves in a row (one when the scan's end is known), then a window that doubles
    /// per move up to `max`.
    fn plan(&mut self, i: usize, count: usize) -> std::ops::Range<usize> {
        let moves = if self.last_needed.is_some() { 1 } else { 2 };
        if self.max == 0 || self.streak < moves {
            return 0..0;
        }
        self.window = (self.window * 2).max(2).min(self.max);
        let from = self.queue.back().map_or(i + 1, |(j, _)| j + 1);
        let end = self
            .last_needed
            .map_or(count, |l| l.saturating_add(1).min(count));
        let to = (i + 1 + self.window).min(end);
        from..to.max(from)
    }
}

/// A cursor over the entries of one SST.
pub struct TableIter {
    table: Rc<TableReader>,
    fetch: Fetch,
    /// Blocks loading ahead (cached iterators with [`TableIter::readahead`]).
    ahead: ReadAhead,
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
            ahead: ReadAhead::default(),
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
            ahead: ReadAhead::default(),
            block: None,
            block_hot: false,
            clip: None,
        }
    }

    /// This iterator, reading up to `max_blocks` blocks ahead of itself once it moves
    /// through the file block after block (cached iterators only; 0 = never). It
    /// spawns the loads on the current glommio executor: use it only on one.
    pub fn readahead(mut self, max_blocks: usize) -> TableIter {
        if matches!(self.fetch, Fetch::Cached { .. }) {
            self.ahead.max = max_blocks;
        }
        self
    }

    /// Tells the read-ahead that the scan ends before internal key `end`: blocks past
    /// the one that may hold `end` are never loaded ahead. A scan positioned in an
    /// earlier block will read on to that one, so the loads after the current block
    /// start at once, and later ones after a single move.
    pub fn bound_readahead(&mut self, end: &[u8]) {
        if self.ahead.max == 0 {
            return;
        }
        let last_needed = self.table.find_block(end);
        self.ahead.last_needed = Some(last_needed);
        if let Some(i) = self.block.as_ref().map(|(i, _)| *i) {
            if self.ahead.queue.is_empty() && self.ahead.last == Some(i) && i < last_needed {
                self.ahead.streak = self.ahead.streak.max(1);
                self.queue_ahead(i);
            }
        }
    }

    /// Starts loading the blocks [`ReadAhead::plan`] picks after block `i`.
    fn queue_ahead(&mut self, i: usize) {
        let Fetch::Cached {
            cache,
            level,
            scan_blocks,
        } = &self.fetch
        else {
            return;
        };
        for j in self.ahead.plan(i, self.table.block_count()) {
            let read = scan_read(*level, scan_blocks.as_deref());
            let load = start_load(self.table.clone(), cache.clone(), j, read);
            self.ahead.queue.push_back((j, load));
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
                let contents = match self.ahead.take(i) {
                    Some(Ahead::Ready(r)) => r?,
                    Some(Ahead::Loading(task)) => task.await?,
                    None => {
                        let read = scan_read(*level, scan_blocks.as_deref());
                        self.table.read_data_block(i, &**cache, read).await?
                    }
                };
                self.queue_ahead(i);
                contents
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

/// How a scan reads its next block: admitted to the cache only among the scan's
/// first blocks (`policy::cache_mode::scan_hint`), which this counts.
fn scan_read(level: u8, scan_blocks: Option<&Cell<u32>>) -> BlockRead {
    let hint = match scan_blocks {
        Some(n) => {
            n.set(n.get().saturating_add(1));
            crate::policy::cache_mode::scan_hint(n.get())
        }
        None => terrace_tiering::AdmissionHint::Read,
    };
    BlockRead { level, hint }
}

/// Starts loading data block `i` ahead of the iterator: polled once here, so a
/// memory hit is served without a task; otherwise the rest runs as a task of the
/// current queue.
fn start_load(
    table: Rc<TableReader>,
    cache: Rc<dyn TableCache>,
    i: usize,
    read: BlockRead,
) -> Ahead {
    let mut load: Pin<Box<dyn Future<Output = Result<Bytes>>>> =
        Box::pin(async move { table.read_data_block(i, &*cache, read).await });
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match load.as_mut().poll(&mut cx) {
        Poll::Ready(r) => Ahead::Ready(r),
        Poll::Pending => Ahead::Loading(glommio::spawn_local(load)),
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAhead;

    #[test]
    fn the_window_opens_after_two_moves_doubles_to_the_limit_and_a_jump_closes_it() {
        let mut ra = ReadAhead {
            max: 8,
            ..ReadAhead::default()
        };
        let mut planned = Vec::new();
        for i in 10..16 {
            assert!(
                ra.take(i).is_none(),
                "nothing queued: no tasks in this test"
            );
            let p = ra.plan(i, 100);
            planned.push((p.start, p.end));
        }
        // Block 10 starts a run, 11 is one move, 12 the second: a window of 2 from
        // there, then 4 and 8, and 8 again. Nothing was queued (plan's caller queues),
        // so each plan starts right after the current block.
        assert_eq!(
            planned,
            [(0, 0), (0, 0), (13, 15), (14, 18), (15, 23), (16, 24)]
        );
        // A jump back closes the window; the next two moves open it again.
        assert!(ra.take(3).is_none());
        assert_eq!(ra.plan(3, 100), 0..0);
        ra.take(4);
        assert_eq!(ra.plan(4, 100), 0..0);
        ra.take(5);
        assert_eq!(ra.plan(5, 100), 6..8);
        // Near the end the plan stops at the last block.
        ra.take(6);
        assert_eq!(ra.plan(6, 9), 7..9);
        // A scan that ends in block 20 loads nothing past it.
        let mut bounded = ReadAhead {
            max: 8,
            last_needed: Some(20),
            ..ReadAhead::default()
        };
        let lasts: Vec<Option<usize>> = (14..22)
            .map(|i| {
                bounded.take(i);
                bounded.plan(i, 100).last()
            })
            .collect();
        // (A scan whose end is known starts after one move.)
        assert_eq!(
            lasts,
            [
                None,
                Some(17),
                Some(20),
                Some(20),
                Some(20),
                Some(20),
                None,
                None
            ]
        );
        // Off: never plans.
        let mut off = ReadAhead::default();
        for i in 0..10 {
            off.take(i);
            assert_eq!(off.plan(i, 100), 0..0);
        }
    }
}
