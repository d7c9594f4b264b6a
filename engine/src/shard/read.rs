//! The read path: point gets, batched gets and scans over a snapshot.
//!
//! A read captures a [`ReadSnapshot`] when submitted: the current seqno, the
//! memtables and the version. It then searches newest to oldest: active memtable,
//! frozen memtables, L0 files newest first, then one file per deeper level. The
//! first version found decides (a tombstone means "absent").
//!
//! `multi_get` captures one snapshot for the whole batch and runs every key's search
//! at once, so the block reads of the batch are in flight together on io_uring.
//! Scans are cursors (`cursor.rs`) over [`Shard::merge_iter`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use terrace_tiering::RemoteStatsCell;

use super::cache::ShardCache;
use super::cursor::CursorTable;
use super::Shard;
use crate::error::{ErrorDetail, Result};
use crate::iter::{LevelIter, MemIter, MergeIter, Source};
use crate::key::ValueKind;
use crate::memtable::{Collected, MemValue, Memtable};
use crate::sst::BlockRead;
use crate::version::Version;

/// The read path's own state.
pub(crate) struct ReadPath {
    /// The block cache every read of the shard goes through.
    pub(crate) cache: Rc<ShardCache>,
    /// Counters of remote block reads, shared by the shard's files.
    pub(crate) remote_reads: RemoteStatsCell,
    /// Foreground reads (gets, batches, scans) in progress.
    pub(crate) in_progress: Cell<u32>,
    /// Writes applied since the last turn given to the reactor while reads waited.
    pub(crate) writes_since_io_turn: Cell<u32>,
    /// Open scan cursors (`cursor.rs`).
    pub(crate) cursors: RefCell<CursorTable>,
}

impl ReadPath {
    pub(crate) fn new(cache: ShardCache) -> ReadPath {
        ReadPath {
            cache: Rc::new(cache),
            remote_reads: RemoteStatsCell::default(),
            in_progress: Cell::new(0),
            writes_since_io_turn: Cell::new(0),
            cursors: RefCell::default(),
        }
    }
}

/// Writes a shard applies back to back while reads are in progress before it lets
/// the reactor reap their I/O. glommio only polls for disk completions between
/// task-queue runs, so a writer that never waits (writes land in the memtable) would
/// otherwise hold every read in flight until its queue's preemption timer fires.
pub(crate) const WRITES_PER_IO_TURN: u32 = 32;
/// How long such a write steps aside (the reactor runs as soon as the queue is idle).
pub(crate) const IO_TURN: std::time::Duration = std::time::Duration::from_micros(10);

/// Counts an operation (a read, a stalled writer) in a `Cell` for as long as it lives.
pub(crate) struct InProgress<'a>(&'a Cell<u32>);

impl<'a> InProgress<'a> {
    pub(crate) fn new(count: &'a Cell<u32>) -> Self {
        count.set(count.get() + 1);
        InProgress(count)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What a read sees.
pub(crate) struct ReadSnapshot {
    pub(crate) seqno: u64,
    pub(crate) mem: Rc<Memtable>,
    pub(crate) imms: Vec<Rc<Memtable>>,
    pub(crate) version: Rc<Version>,
}

impl Shard {
    pub(crate) fn snapshot(&self) -> ReadSnapshot {
        let m = self.mem.borrow();
        ReadSnapshot {
            seqno: m.last_seqno,
            mem: m.active.clone(),
            imms: m.frozen.iter().cloned().collect(),
            version: self.versions.current(),
        }
    }

    pub(crate) fn check_readable(&self) -> Result<()> {
        if self.health.closing.get() {
            return Err(ErrorDetail::Closed.into());
        }
        Ok(())
    }

    /// The value of `state_key` in `snap`: its newest version, with merge operands
    /// resolved and expired values hidden.
    pub(crate) async fn read_key(
        &self,
        snap: &ReadSnapshot,
        state_key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let mut operands = Vec::new();
        let base = self.find_base(snap, state_key, &mut operands).await?;
        if operands.is_empty() && self.opts.catalog.is_plain() {
            return Ok(base);
        }
        let table = self.opts.catalog.of_state_key(state_key)?;
        let value = if operands.is_empty() {
            base
        } else {
            Some(table.full_merge(state_key, base.as_deref(), &operands)?)
        };
        match value {
            Some(v) if table.ttl.is_some() => table.live_value(v, self.now_ms()),
            v => Ok(v),
        }
    }

    /// Wall-clock now, in ms since the Unix epoch (TTL decisions).
    pub(crate) fn now_ms(&self) -> u64 {
        crate::catalog::unix_ms(self.opts.clock.system_time())
    }

    /// Searches newest to oldest for the base of `state_key` (its newest put or
    /// tombstone: `Some(value)` or `None`; `None` as well at the bottom), collecting
    /// the merge operands above it into `operands`, newest first. A sorted run holds
    /// at most one version of a key (flushes and compactions combine them), so one
    /// version per file is enough.
    async fn find_base(
        &self,
        snap: &ReadSnapshot,
        state_key: &[u8],
        operands: &mut Vec<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        for mem in std::iter::once(&snap.mem).chain(snap.imms.iter()) {
            match mem.collect(state_key, snap.seqno, operands) {
                Collected::Base(MemValue::Put(v)) => return Ok(Some(v)),
                Collected::Base(MemValue::Delete) => return Ok(None),
                Collected::Operands => {}
            }
        }
        let v = &snap.version;
        for f in &v.levels[0] {
            if !f.desc.overlaps(Some(state_key), Some(state_key)) {
                continue;
            }
            if let Some(found) = f
                .reader
                .get_at(
                    state_key,
                    snap.seqno,
                    &*self.reads.cache,
                    BlockRead::read(0),
                )
                .await?
            {
                match found {
                    (_, ValueKind::Merge, v) => operands.push(v),
                    (_, ValueKind::Put, v) => return Ok(Some(v)),
                    (_, ValueKind::Delete, _) => return Ok(None),
                }
            }
        }
        for level in 1..v.levels.len() {
            if let Some(f) = v.file_for_key(level, state_key) {
                let read = BlockRead::read(level as u8);
                if let Some(found) = f
                    .reader
                    .get_at(state_key, snap.seqno, &*self.reads.cache, read)
                    .await?
                {
                    match found {
                        (_, ValueKind::Merge, v) => operands.push(v),
                        (_, ValueKind::Put, v) => return Ok(Some(v)),
                        (_, ValueKind::Delete, _) => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// A read the memtables answer at once: `None` unless no other operation on the
    /// key is in flight (so completing now keeps per-key order) and a memtable holds
    /// the key's newest version as a put or a tombstone, with no merge operand above
    /// it and no TTL to apply. Spares a memory hit the lane ticket, the snapshot and
    /// the await of the full path.
    fn get_from_memtables(&self, state_key: &[u8]) -> Option<Option<Vec<u8>>> {
        if !self.opts.catalog.is_plain()
            && self
                .opts
                .catalog
                .of_state_key(state_key)
                .map_or(true, |t| t.ttl.is_some())
        {
            return None;
        }
        if !self.lanes.is_idle(state_key) {
            return None;
        }
        let m = self.mem.borrow();
        let mut operands = Vec::new();
        for mem in std::iter::once(&m.active).chain(m.frozen.iter()) {
            // Operands above the base (in this memtable or a newer one) need the
            // merge operator: the full path.
            match mem.collect(state_key, m.last_seqno, &mut operands) {
                _ if !operands.is_empty() => return None,
                Collected::Base(MemValue::Put(v)) => return Some(Some(v)),
                Collected::Base(MemValue::Delete) => return Some(None),
                Collected::Operands => {}
            }
        }
        None
    }

    /// A point read, completing in order with other operations on the key.
    pub(crate) async fn get(self: &Rc<Self>, state_key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_readable()?;
        if let Some(v) = self.get_from_memtables(state_key) {
            self.counters.borrow_mut().gets += 1;
            return Ok(v);
        }
        let ticket = self.lanes.enter(state_key);
        let snap = self.snapshot();
        self.counters.borrow_mut().gets += 1;
        let reading = InProgress::new(&self.reads.in_progress);
        let r = self.read_key(&snap, state_key).await;
        drop(reading);
        ticket.finish().await;
        r
    }

    /// Reads a batch of keys with all their I/O in flight at once.
    pub(crate) async fn multi_get(
        self: &Rc<Self>,
        state_keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.check_readable()?;
        self.counters.borrow_mut().gets += state_keys.len() as u64;
        // Keys the memtables answer at once; the others take the full path, their
        // I/O in flight together.
        let mut values: Vec<Option<Option<Vec<u8>>>> = state_keys
            .iter()
            .map(|k| self.get_from_memtables(k))
            .collect();
        let rest: Vec<usize> = (0..state_keys.len())
            .filter(|&i| values[i].is_none())
            .collect();
        if rest.is_empty() {
            return Ok(values.into_iter().map(Option::unwrap_or_default).collect());
        }
        let tickets: Vec<_> = rest
            .iter()
            .map(|&i| self.lanes.enter(&state_keys[i]))
            .collect();
        let snap = self.snapshot();
        let _reading = InProgress::new(&self.reads.in_progress);
        let r = futures_util::future::try_join_all(
            rest.iter().map(|&i| self.read_key(&snap, &state_keys[i])),
        )
        .await;
        for t in tickets {
            t.finish().await;
        }
        for (i, v) in rest.into_iter().zip(r?) {
            values[i] = Some(v);
        }
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// A merge over every run of `snap`, for scans. The scan's table iterators share
    /// one count of blocks loaded, so a long scan stops admitting blocks to the cache.
    pub(crate) fn merge_iter(&self, snap: &ReadSnapshot, scan_blocks: Rc<Cell<u32>>) -> MergeIter {
        let mut sources = Vec::new();
        sources.push(Source::Mem(MemIter::new(snap.mem.clone(), snap.seqno)));
        for m in &snap.imms {
            sources.push(Source::Mem(MemIter::new(m.clone(), snap.seqno)));
        }
        let cache: Rc<dyn crate::sst::TableCache> = self.reads.cache.clone();
        for f in &snap.version.levels[0] {
            sources.push(Source::Table(
                f.reader
                    .iter_at(cache.clone(), 0, Some(scan_blocks.clone()))
                    .readahead(self.opts.scan_readahead_blocks)
                    .clipped(f.desc.clip),
            ));
        }
        for (level, files) in snap.version.levels.iter().enumerate().skip(1) {
            if !files.is_empty() {
                sources.push(Source::Level(LevelIter::new(
                    snap.version.clone(),
                    cache.clone(),
                    level as u8,
                    scan_blocks.clone(),
                    self.opts.scan_readahead_blocks,
                )));
            }
        }
        MergeIter::new(sources)
    }
}
