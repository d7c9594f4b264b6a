//! Iterators over a shard's sorted runs, and their merge.
//!
//! Every source yields internal keys in internal order (state key ascending, seqno
//! descending). [`MergeIter`] interleaves them; it does not hide shadowed versions or
//! tombstones: scans and compactions decide that, since they differ (a scan filters
//! by its snapshot seqno, a compaction may drop tombstones at the bottom level).
//!
//! Sources are an enum rather than trait objects: the set is closed and the async
//! methods dispatch statically.

use std::cell::Cell;
use std::cmp::Ordering;
use std::rc::Rc;

use crate::error::Result;
use crate::key::{compare_internal, set_internal_key, InternalKey};
use crate::memtable::{Memtable, Node};
use crate::sst::{TableCache, TableIter};
use crate::version::{FileMeta, Version};

/// A memtable cursor. Memtable nodes never move, so it holds its node and steps to
/// the node's current successor: writes between steps are seen in order. Versions
/// newer than its snapshot are skipped.
pub(crate) struct MemIter {
    mem: Rc<Memtable>,
    snapshot: u64,
    node: Option<Node>,
    /// Internal key of `node`.
    ikey: Vec<u8>,
}

impl MemIter {
    pub(crate) fn new(mem: Rc<Memtable>, snapshot: u64) -> MemIter {
        MemIter {
            mem,
            snapshot,
            node: None,
            ikey: Vec::new(),
        }
    }

    /// Settles on `from` or the first node after it visible at the snapshot.
    fn settle(&mut self, mut from: Option<Node>) {
        while let Some(n) = from {
            let e = self.mem.entry(n);
            if e.seqno <= self.snapshot {
                set_internal_key(&mut self.ikey, e.state_key, e.seqno, e.kind);
                break;
            }
            from = self.mem.next(n);
        }
        self.node = from;
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) {
        let from = match InternalKey::decode(ikey) {
            Some(k) => self.mem.seek(k.state_key, k.seqno),
            None => self.mem.first(),
        };
        self.settle(from);
    }

    pub(crate) fn seek_to_first(&mut self) {
        self.settle(self.mem.first());
    }

    pub(crate) fn next(&mut self) {
        if let Some(n) = self.node {
            self.settle(self.mem.next(n));
        }
    }

    pub(crate) fn valid(&self) -> bool {
        self.node.is_some()
    }

    /// Only when `valid()`.
    pub(crate) fn key(&self) -> &[u8] {
        &self.ikey
    }

    /// Empty for a tombstone, and when not `valid()`.
    pub(crate) fn value(&self) -> &[u8] {
        self.node.map_or(&[], |n| self.mem.entry(n).value)
    }
}

/// A cursor over one sorted level: its files in order, one open at a time. It holds
/// the version (not a copy of the level's file list), so many cursors over one
/// version cost little.
pub(crate) struct LevelIter {
    version: Rc<Version>,
    cache: Rc<dyn TableCache>,
    level: u8,
    /// Blocks loaded by the scan (shared with its other iterators).
    scan_blocks: Rc<Cell<u32>>,
    index: usize,
    current: Option<TableIter>,
}

impl LevelIter {
    pub(crate) fn new(
        version: Rc<Version>,
        cache: Rc<dyn TableCache>,
        level: u8,
        scan_blocks: Rc<Cell<u32>>,
    ) -> LevelIter {
        LevelIter {
            version,
            cache,
            level,
            scan_blocks,
            index: 0,
            current: None,
        }
    }

    fn files(&self) -> &[Rc<FileMeta>] {
        self.version
            .levels
            .get(usize::from(self.level))
            .map_or(&[], Vec::as_slice)
    }

    async fn open(&mut self, index: usize) -> Result<()> {
        self.index = index;
        self.current = match self.files().get(index) {
            Some(f) => Some(
                f.reader
                    .iter_at(
                        self.cache.clone(),
                        self.level,
                        Some(self.scan_blocks.clone()),
                    )
                    .clipped(f.desc.clip),
            ),
            None => None,
        };
        Ok(())
    }

    async fn skip_exhausted(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            self.open(self.index + 1).await?;
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first().await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let i = self
            .files()
            .partition_point(|f| f.desc.below(crate::key::state_key_of(ikey)));
        self.open(i).await?;
        if let Some(c) = self.current.as_mut() {
            c.seek(ikey).await?;
        }
        self.skip_exhausted().await
    }

    pub(crate) async fn seek_to_first(&mut self) -> Result<()> {
        self.open(0).await?;
        if let Some(c) = self.current.as_mut() {
            c.seek_to_first().await?;
        }
        self.skip_exhausted().await
    }

    pub(crate) async fn next(&mut self) -> Result<()> {
        if let Some(c) = self.current.as_mut() {
            c.next().await?;
        }
        self.skip_exhausted().await
    }

    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(TableIter::valid)
    }
}

/// One input of a merge.
pub(crate) enum Source {
    Mem(MemIter),
    Table(TableIter),
    Level(LevelIter),
}

impl Source {
    pub(crate) async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.seek(ikey);
                Ok(())
            }
            Source::Table(t) => t.seek(ikey).await,
            Source::Level(l) => l.seek(ikey).await,
        }
    }

    pub(crate) async fn seek_to_first(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.seek_to_first();
                Ok(())
            }
            Source::Table(t) => t.seek_to_first().await,
            Source::Level(l) => l.seek_to_first().await,
        }
    }

    pub(crate) async fn next(&mut self) -> Result<()> {
        match self {
            Source::Mem(m) => {
                m.next();
                Ok(())
            }
            Source::Table(t) => t.next().await,
            Source::Level(l) => l.next().await,
        }
    }

    pub(crate) fn valid(&self) -> bool {
        match self {
            Source::Mem(m) => m.valid(),
            Source::Table(t) => t.valid(),
            Source::Level(l) => l.valid(),
        }
    }

    /// The current internal key. Only when `valid()`.
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.key(),
            Source::Table(t) => t.key(),
            Source::Level(l) => l.current.as_ref().map_or(&[], |c| c.key()),
        }
    }

    /// The current value (empty for a tombstone). Only when `valid()`.
    pub(crate) fn value(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.value(),
            Source::Table(t) => t.value(),
            Source::Level(l) => l.current.as_ref().map_or(&[], |c| c.value()),
        }
    }

    /// Whether the current entry's block was in the probe cache (compaction inputs).
    fn block_hot(&self) -> bool {
        match self {
            Source::Mem(_) => false,
            Source::Table(t) => t.block_hot(),
            Source::Level(l) => l.current.as_ref().is_some_and(TableIter::block_hot),
        }
    }
}

/// Merges sources into one stream in internal order. Among equal keys (which cannot
/// happen with unique seqnos) the earlier source wins.
pub(crate) struct MergeIter {
    sources: Vec<Source>,
    current: Option<usize>,
}

impl MergeIter {
    /// Sources ordered newest first.
    pub(crate) fn new(sources: Vec<Source>) -> MergeIter {
        MergeIter {
            sources,
            current: None,
        }
    }

    fn pick(&mut self) {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if !s.valid() {
                continue;
            }
            best = match best {
                Some(b)
                    if compare_internal(self.sources[b].key(), s.key()) != Ordering::Greater =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        self.current = best;
    }

    pub(crate) async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        for s in &mut self.sources {
            s.seek(ikey).await?;
        }
        self.pick();
        Ok(())
    }

    pub(crate) async fn seek_to_first(&mut self) -> Result<()> {
        for s in &mut self.sources {
            s.seek_to_first().await?;
        }
        self.pick();
        Ok(())
    }

    pub(crate) async fn next(&mut self) -> Result<()> {
        if let Some(i) = self.current {
            self.sources[i].next().await?;
            self.pick();
        }
        Ok(())
    }

    pub(crate) fn valid(&self) -> bool {
        self.current.is_some()
    }

    /// Drops the sources that can no longer yield a key below `end` (an internal key):
    /// exhausted ones and ones already positioned at or past it. Sources are sorted, so
    /// a later step never brings them back below `end`; a cursor confined to a key
    /// range then compares only the sources that still hold keys in it. Call only
    /// while every remaining step stays below `end`.
    pub(crate) fn retain_below(&mut self, end: &[u8]) {
        self.sources
            .retain(|s| s.valid() && compare_internal(s.key(), end) == Ordering::Less);
        self.pick();
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.sources[i].key())
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.sources[i].value())
    }

    /// Whether the current entry came from a block the compaction's probe cache held.
    pub(crate) fn block_hot(&self) -> bool {
        self.current.is_some_and(|i| self.sources[i].block_hot())
    }
}
