//! Iterators over a shard's sorted runs, and their merge.
//!
//! Every source yields internal keys in internal order (state key ascending, seqno
//! descending). [`MergeIter`] interleaves them; it does not hide shadowed versions or
//! tombstones: scans and compactions decide that, since they differ (a scan filters
//! by its snapshot seqno, a compaction may drop tombstones at the bottom level).
//!
//! Sources are an enum rather than trait objects: the set is closed and the async
//! methods dispatch statically.

use std::cmp::Ordering;
use std::ops::Bound;
use std::rc::Rc;

use terrace_tiering::BlockCache;

use crate::error::Result;
use crate::key::{compare_internal, InternalKey};
use crate::memtable::{MemKey, Memtable};
use crate::sst::TableIter;
use crate::version::FileMeta;

/// A memtable cursor that survives writes into the memtable between steps: it
/// remembers its position by key and re-seeks, and skips versions newer than its
/// snapshot.
pub(crate) struct MemIter {
    mem: Rc<Memtable>,
    snapshot: u64,
    current: Option<(MemKey, Vec<u8>, Vec<u8>)>,
}

impl MemIter {
    pub(crate) fn new(mem: Rc<Memtable>, snapshot: u64) -> MemIter {
        MemIter {
            mem,
            snapshot,
            current: None,
        }
    }

    fn load(&mut self, from: Bound<&MemKey>) {
        self.current = self
            .mem
            .seek(from, self.snapshot)
            .map(|(k, ikey, v)| (k, ikey, v.unwrap_or_default()));
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) {
        match InternalKey::decode(ikey) {
            Some(k) => {
                let probe = MemKey {
                    state_key: k.state_key.into(),
                    seqno: k.seqno,
                };
                self.load(Bound::Included(&probe));
            }
            None => self.load(Bound::Unbounded),
        }
    }

    pub(crate) fn next(&mut self) {
        if let Some((k, _, _)) = self.current.take() {
            self.load(Bound::Excluded(&k));
        }
    }
}

/// A cursor over one sorted level: its files in order, one open at a time.
pub(crate) struct LevelIter {
    files: Vec<Rc<FileMeta>>,
    cache: Rc<BlockCache>,
    index: usize,
    current: Option<TableIter>,
}

impl LevelIter {
    pub(crate) fn new(files: Vec<Rc<FileMeta>>, cache: Rc<BlockCache>) -> LevelIter {
        LevelIter {
            files,
            cache,
            index: 0,
            current: None,
        }
    }

    async fn open(&mut self, index: usize) -> Result<()> {
        self.index = index;
        self.current = match self.files.get(index) {
            Some(f) => Some(f.reader.iter(self.cache.clone())),
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
            .files
            .partition_point(|f| compare_internal(&f.desc.largest, ikey) == Ordering::Less);
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
                m.load(Bound::Unbounded);
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
            Source::Mem(m) => m.current.is_some(),
            Source::Table(t) => t.valid(),
            Source::Level(l) => l.valid(),
        }
    }

    /// The current internal key. Only when `valid()`.
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.current.as_ref().map_or(&[], |c| &c.1),
            Source::Table(t) => t.key(),
            Source::Level(l) => l.current.as_ref().map_or(&[], |c| c.key()),
        }
    }

    /// The current value (empty for a tombstone). Only when `valid()`.
    pub(crate) fn value(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.current.as_ref().map_or(&[], |c| &c.2),
            Source::Table(t) => t.value(),
            Source::Level(l) => l.current.as_ref().map_or(&[], |c| c.value()),
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

    pub(crate) fn key(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.sources[i].key())
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.current.map_or(&[], |i| self.sources[i].value())
    }
}
