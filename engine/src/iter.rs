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
use std::collections::VecDeque;
use std::rc::Rc;

use crate::error::Result;
use crate::key::{compare_internal, set_internal_key, InternalKey};
use crate::memtable::{Memtable, Node, PREFETCH_DISTANCE};
use crate::sst::{TableCache, TableIter};
use crate::version::{FileMeta, Version};

/// Nodes a memtable cursor takes from the map per search.
const MEM_READ_AHEAD: usize = 64;

/// A memtable cursor over the versions visible at its snapshot. Memtable nodes
/// never move, so it reads ahead: one search of the map yields the next
/// [`MEM_READ_AHEAD`] nodes (a step that searched the map each time cost a
/// B-tree descent and its key comparisons per entry, which dominated writing a
/// memtable snapshot). Writes after the cursor was made are not missed by reading
/// ahead: they carry seqnos above every snapshot taken before them, so the cursor
/// would skip them anyway.
pub(crate) struct MemIter {
    mem: Rc<Memtable>,
    snapshot: u64,
    node: Option<Node>,
    /// Internal key of `node`.
    ikey: Vec<u8>,
    /// Nodes after `node`, read ahead, in order.
    ahead: VecDeque<Node>,
    /// The last node read from the map, to read on after; `None` once the map ran
    /// out.
    anchor: Option<Node>,
}

impl MemIter {
    pub(crate) fn new(mem: Rc<Memtable>, snapshot: u64) -> MemIter {
        MemIter {
            mem,
            snapshot,
            node: None,
            ikey: Vec::new(),
            ahead: VecDeque::with_capacity(MEM_READ_AHEAD),
            anchor: None,
        }
    }

    /// Starts reading from the first node (`None`) or the first at or after a key.
    fn load(&mut self, from: Option<(&[u8], u64)>) {
        self.ahead.clear();
        self.mem.nodes_from(from, &mut self.ahead, MEM_READ_AHEAD);
        self.anchor = self.ahead.back().copied();
        for &n in self.ahead.iter().take(PREFETCH_DISTANCE) {
            self.mem.prefetch(n);
        }
    }

    /// The next node, reading more from the map while [`PREFETCH_DISTANCE`] or fewer
    /// are left, so the node that many steps ahead is always being fetched.
    fn take(&mut self) -> Option<Node> {
        if self.ahead.len() <= PREFETCH_DISTANCE {
            if let Some(anchor) = self.anchor {
                let had = self.ahead.len();
                self.mem
                    .nodes_after(anchor, &mut self.ahead, MEM_READ_AHEAD);
                // Nothing after the anchor: the map ran out.
                self.anchor = (self.ahead.len() > had)
                    .then(|| self.ahead.back().copied())
                    .flatten();
            }
        }
        if let Some(&n) = self.ahead.get(PREFETCH_DISTANCE) {
            self.mem.prefetch(n);
        }
        self.ahead.pop_front()
    }

    /// Settles on the next node visible at the snapshot.
    fn settle(&mut self) {
        self.node = None;
        while let Some(n) = self.take() {
            let e = self.mem.entry(n);
            if e.seqno <= self.snapshot {
                set_internal_key(&mut self.ikey, e.state_key, e.seqno, e.kind);
                self.node = Some(n);
                return;
            }
        }
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) {
        match InternalKey::decode(ikey) {
            Some(k) => self.load(Some((k.state_key, k.seqno))),
            None => self.load(None),
        }
        self.settle();
    }

    pub(crate) fn seek_to_first(&mut self) {
        self.load(None);
        self.settle();
    }

    pub(crate) fn next(&mut self) {
        if self.node.is_some() {
            self.settle();
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
    /// Read-ahead limit of each file's iterator ([`TableIter::readahead`]).
    readahead_blocks: usize,
    /// Where the scan ends, for the read-ahead ([`TableIter::bound_readahead`]).
    readahead_end: Option<Vec<u8>>,
    index: usize,
    current: Option<TableIter>,
}

impl LevelIter {
    pub(crate) fn new(
        version: Rc<Version>,
        cache: Rc<dyn TableCache>,
        level: u8,
        scan_blocks: Rc<Cell<u32>>,
        readahead_blocks: usize,
    ) -> LevelIter {
        LevelIter {
            version,
            cache,
            level,
            scan_blocks,
            readahead_blocks,
            readahead_end: None,
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
            Some(f) => {
                let mut it = f
                    .reader
                    .iter_at(
                        self.cache.clone(),
                        self.level,
                        Some(self.scan_blocks.clone()),
                    )
                    .readahead(self.readahead_blocks)
                    .clipped(f.desc.clip);
                if let Some(end) = &self.readahead_end {
                    it.bound_readahead(end);
                }
                Some(it)
            }
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
    /// Drops the sources with nothing before internal key `end` (the scan's end) and
    /// tells the others' read-ahead where the scan stops.
    pub(crate) fn retain_below(&mut self, end: &[u8]) {
        self.sources
            .retain(|s| s.valid() && compare_internal(s.key(), end) == Ordering::Less);
        for s in &mut self.sources {
            match s {
                Source::Mem(_) => {}
                Source::Table(t) => t.bound_readahead(end),
                Source::Level(l) => {
                    if let Some(c) = l.current.as_mut() {
                        c.bound_readahead(end);
                    }
                    l.readahead_end = Some(end.to_vec());
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ValueKind;

    /// (state key, seqno, kind) of every entry a cursor yields.
    fn drain(it: &mut MemIter) -> Vec<(Vec<u8>, u64, u8)> {
        let mut out = Vec::new();
        while it.valid() {
            let k = InternalKey::decode(it.key()).unwrap();
            out.push((k.state_key.to_vec(), k.seqno, k.kind));
            it.next();
        }
        out
    }

    #[test]
    fn a_memtable_cursor_reads_ahead_and_yields_exactly_the_visible_versions() {
        let m = Rc::new(Memtable::new());
        // 500 keys, versions at seqnos 1..=1500 spread over them, so runs of
        // invisible versions cross read-ahead boundaries.
        let mut all = Vec::new();
        for seqno in 1..=1500u64 {
            let key = format!("k{:04}", (seqno * 7) % 500).into_bytes();
            let kind = if seqno % 11 == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            m.insert_kind(&key, seqno, kind, b"v");
            all.push((key, seqno, kind as u8));
        }
        // Internal order: state key ascending, seqno descending.
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for snapshot in [0, 1, 63, 64, 65, 700, 1500] {
            let want: Vec<_> = all.iter().filter(|e| e.1 <= snapshot).cloned().collect();
            let mut it = MemIter::new(m.clone(), snapshot);
            it.seek_to_first();
            // Writes after the cursor was made carry higher seqnos: never seen.
            m.insert_kind(b"k0000", 10_000 + snapshot, ValueKind::Put, b"late");
            m.insert_kind(b"k0250", 10_001 + snapshot, ValueKind::Put, b"late");
            assert_eq!(drain(&mut it), want, "snapshot {snapshot}");
            // A seek lands on the first visible version at or after the key.
            let mut it = MemIter::new(m.clone(), snapshot);
            let mut probe = Vec::new();
            set_internal_key(&mut probe, b"k0250", u64::MAX >> 8, ValueKind::Put);
            it.seek(&probe);
            let from: Vec<_> = want
                .iter()
                .filter(|e| e.0.as_slice() >= &b"k0250"[..])
                .cloned()
                .collect();
            assert_eq!(drain(&mut it), from, "seek at snapshot {snapshot}");
        }
    }
}
