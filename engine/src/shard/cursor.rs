//! Shard-side cursors: one table's entries of a user-key range, in user-key order
//! across the shard's key groups, kept open between batches.
//!
//! Keys are hashed into key groups and the internal key leads with the group, so a
//! shard's data is sorted by (key group, table, user key): global user-key order
//! interleaves every key group. A [`ShardCursor`] keeps one cursor per key group
//! with data in the range ([`KgCursor`], a [`MergeIter`] over the snapshot's runs
//! positioned at that group's next visible entry) in a binary heap ordered by user
//! key. Each entry then costs one heap step and one merge step, not a seek: a key
//! group is sought once, when the cursor opens.
//!
//! Opening skips empty key groups without seeking each: a seek for group `g` that
//! finds nothing of the range stops at the first key after it, in group `g' >= g`,
//! so every group strictly between holds nothing at all and the next seek is at `g'`.
//! Opening costs one seek per key group with data plus one per run of empty groups
//! (counted in `Counters::scan_seeks`). Seeks that wait for block reads run at once,
//! in waves that double (1, 2, 4, … up to 32 groups) while every group of a wave
//! holds data and some seek of it waited, and fall back to one after a skip past the
//! wave or a wave served from memory: over a remote store 128 groups open in ~8
//! rounds of requests, not 128, while sparse or cached data costs what it did.
//!
//! **Snapshot.** A cursor reads the shard as it was when it opened: the sequence
//! number, memtables and version of that moment ([`ReadSnapshot`]). Later writes are
//! invisible to it; the memtables and SST files it reads stay alive (compaction may
//! replace the files, but they are deleted only once no version or cursor holds
//! them).
//!
//! **Memory.** An open cursor holds, per key group with data left in its range, one
//! current block per run, plus its snapshot's memtables and files; batches are
//! bounded by entries and bytes. Cursors live in the shard's [`CursorTable`] (at most
//! `Options::max_open_cursors_per_shard`), each tied to its owner's liveness token:
//! the handle that opened it drops the token when it goes, and every cursor
//! operation first sweeps cursors whose token is gone. A handle also asks for an
//! explicit close when it drops; closing the shard drops every cursor.

use std::cell::Cell;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashMap};
use std::ops::{Bound, RangeInclusive};
use std::rc::Rc;
use std::sync::Weak;

use super::read::{InProgress, ReadSnapshot};
use super::Shard;
use crate::catalog::TableEntry;
use crate::db_iter::Batch;
use crate::error::{Error, ErrorDetail, Result};
use crate::iter::MergeIter;
use crate::key::{
    make_internal_key, state_key_group, InternalKey, TableId, ValueKind, MAX_SEQNO,
    STATE_KEY_PREFIX_LEN,
};

/// Most key groups an opening cursor seeks at once (see `seek_key_groups`).
const MAX_SEEK_WAVE: u16 = 32;

/// What a cursor reads: one table's user keys within bounds, in some key groups.
#[derive(Clone, Debug)]
pub(crate) struct CursorSpec {
    pub(crate) table: TableId,
    pub(crate) lower: Bound<Vec<u8>>,
    pub(crate) upper: Bound<Vec<u8>>,
    /// Clamped to the shard's own key groups.
    pub(crate) key_groups: RangeInclusive<u16>,
}

/// How much one batch may hold. A batch ends after the entry that reaches either
/// limit, so it holds at least one entry while any remain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
}

/// One batch of a cursor, in user-key order.
pub(crate) struct ShardBatch {
    pub(crate) entries: Batch,
    /// The cursor to ask for the next batch; `None` once the range is exhausted
    /// (the cursor is released then).
    pub(crate) cursor: Option<u64>,
}

/// The bounds every key-group cursor of one [`ShardCursor`] checks.
struct Bounds {
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    snapshot: u64,
    /// The table, when it has a merge operator or a TTL (values need work).
    table: Option<TableEntry>,
    /// Wall-clock time of the open, for TTL decisions.
    now_ms: u64,
}

impl Bounds {
    fn past_upper(&self, user: &[u8]) -> bool {
        match &self.upper {
            Bound::Included(u) => user > u.as_slice(),
            Bound::Excluded(u) => user >= u.as_slice(),
            Bound::Unbounded => false,
        }
    }

    fn excluded_lower(&self, user: &[u8]) -> bool {
        matches!(&self.lower, Bound::Excluded(l) if user == l.as_slice())
    }
}

/// A cursor over one key group's part of the range. While in the heap it is
/// positioned at a visible live entry (the newest version at the snapshot, a put).
struct KgCursor {
    /// `[key group][table]`, the state-key prefix of every entry it yields.
    prefix: [u8; STATE_KEY_PREFIX_LEN],
    it: MergeIter,
    /// User key of the last version decided (yielded or hidden): while in the heap,
    /// the current entry's. Older versions of it are skipped. Kept as a copy so heap
    /// comparisons touch no iterator.
    key: Vec<u8>,
    /// The current entry's value when it is not the iterator's: merge operands
    /// resolved, or a TTL stamp removed.
    resolved: Option<Vec<u8>>,
    /// The iterator already stands past the current entry (resolving a merge read
    /// ahead): the next step must not move it.
    parked: bool,
    /// Whether `key` holds a decided key yet.
    decided: bool,
}

impl KgCursor {
    /// The current entry's user key. Only while positioned.
    fn user_key(&self) -> &[u8] {
        &self.key
    }

    fn value(&self) -> &[u8] {
        self.resolved.as_deref().unwrap_or(self.it.value())
    }

    /// Moves to the next visible live entry of the range from the merge's current
    /// position (inclusive); false when the key group has no more.
    async fn settle(&mut self, b: &Bounds) -> Result<bool> {
        self.resolved = None;
        while self.it.valid() {
            let Some(k) = InternalKey::decode(self.it.key()) else {
                return Err(Error::internal("merge produced a malformed key"));
            };
            if !k.state_key.starts_with(&self.prefix) {
                return Ok(false);
            }
            let user = &k.state_key[STATE_KEY_PREFIX_LEN..];
            if b.past_upper(user) {
                return Ok(false);
            }
            if k.seqno <= b.snapshot && !(self.decided && self.key.as_slice() == user) {
                self.decided = true;
                self.key.clear();
                self.key.extend_from_slice(user);
                match ValueKind::from_u8(k.kind) {
                    Some(ValueKind::Put) if !b.excluded_lower(user) => match &b.table {
                        Some(t) if t.ttl.is_some() => {
                            if let Some(v) = t.live_value(self.it.value().to_vec(), b.now_ms)? {
                                self.resolved = Some(v);
                                return Ok(true);
                            }
                        }
                        _ => return Ok(true),
                    },
                    Some(ValueKind::Merge) if !b.excluded_lower(user) => {
                        let state_key = k.state_key.to_vec();
                        self.resolved = Some(self.resolve_merge(b, state_key).await?);
                        self.parked = true;
                        return Ok(true);
                    }
                    Some(_) => {}
                    None => {
                        return Err(Error::internal(format!(
                            "unknown value kind {} in a merged key",
                            k.kind
                        )))
                    }
                }
            }
            self.it.next().await?;
        }
        Ok(false)
    }

    /// Resolves the key whose newest visible version, an operand, is current: reads
    /// its older versions down to a base or another key, leaving the iterator there.
    async fn resolve_merge(&mut self, b: &Bounds, state_key: Vec<u8>) -> Result<Vec<u8>> {
        let Some(table) = &b.table else {
            return Err(Error::internal(
                "a merge operand in a table without an operator",
            ));
        };
        let mut operands = vec![self.it.value().to_vec()];
        let mut base = None;
        loop {
            self.it.next().await?;
            if !self.it.valid() {
                break;
            }
            let Some(k) = InternalKey::decode(self.it.key()) else {
                return Err(Error::internal("merge produced a malformed key"));
            };
            if k.state_key != state_key.as_slice() {
                break;
            }
            if k.seqno > b.snapshot {
                continue;
            }
            match ValueKind::from_u8(k.kind) {
                Some(ValueKind::Merge) => operands.push(self.it.value().to_vec()),
                Some(ValueKind::Put) => {
                    base = Some(self.it.value().to_vec());
                    break;
                }
                Some(ValueKind::Delete) => break,
                None => {
                    return Err(Error::internal(format!(
                        "unknown value kind {} in a merged key",
                        k.kind
                    )))
                }
            }
        }
        table.full_merge(&state_key, base.as_deref(), &operands)
    }

    async fn advance(&mut self, b: &Bounds) -> Result<bool> {
        if self.parked {
            self.parked = false;
        } else {
            self.it.next().await?;
        }
        self.settle(b).await
    }
}

// Ordered for a min-heap on user keys. Two key groups never hold the same user key.
impl PartialEq for KgCursor {
    fn eq(&self, other: &Self) -> bool {
        self.user_key() == other.user_key()
    }
}

impl Eq for KgCursor {}

impl PartialOrd for KgCursor {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KgCursor {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.user_key().cmp(self.user_key())
    }
}

/// A shard's merged stream of one range, in user-key order.
pub(crate) struct ShardCursor {
    bounds: Bounds,
    heap: BinaryHeap<KgCursor>,
    /// Holds the version (so its files are not deleted) and the memtables.
    _snapshot: ReadSnapshot,
}

impl ShardCursor {
    fn exhausted(&self) -> bool {
        self.heap.is_empty()
    }

    /// Takes the next entries, up to `limits`, into `out` (cleared first).
    async fn fill(&mut self, limits: BatchLimits, mut out: Batch) -> Result<Batch> {
        out.clear();
        while out.len() < limits.entries && out.bytes() < limits.bytes {
            let Some(mut top) = self.heap.peek_mut() else {
                break;
            };
            out.push(top.user_key(), top.value());
            if !top.advance(&self.bounds).await? {
                PeekMut::pop(top);
            }
        }
        Ok(out)
    }
}

/// A registered cursor and the token of the handle that owns it.
struct Entry {
    owner: Weak<()>,
    /// `None` while a batch is being filled (the cursor is out of the table then, so
    /// no `RefCell` borrow lives across an `.await`).
    cursor: Option<Box<ShardCursor>>,
}

/// The shard's open cursors.
#[derive(Default)]
pub(crate) struct CursorTable {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

impl CursorTable {
    /// Drops cursors whose owner is gone.
    fn sweep(&mut self) {
        self.entries.retain(|_, e| e.owner.strong_count() > 0);
    }

    /// Number of open cursors.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops every cursor (the shard is closing).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

impl Shard {
    /// Opens a cursor over `spec` at the current snapshot and returns its first batch.
    /// With `keep_open` false (one-shot scans) the cursor is never registered: the
    /// batch is all the caller gets.
    pub(crate) async fn open_cursor(
        &self,
        spec: &CursorSpec,
        limits: BatchLimits,
        owner: Weak<()>,
        keep_open: bool,
    ) -> Result<ShardBatch> {
        self.check_readable()?;
        // A slot is reserved before the first await, so concurrent opens cannot
        // pass the bound together.
        let slot = if keep_open {
            let mut table = self.reads.cursors.borrow_mut();
            table.sweep();
            let max = self.opts.max_open_cursors_per_shard;
            if table.len() >= max {
                return Err(ErrorDetail::TooManyCursors {
                    shard: self.id,
                    max,
                }
                .into());
            }
            let id = table.next_id;
            table.next_id += 1;
            table.entries.insert(
                id,
                Entry {
                    owner,
                    cursor: None,
                },
            );
            Some(id)
        } else {
            None
        };
        let opened = self.open_cursor_at_snapshot(spec, limits).await;
        let mut table = self.reads.cursors.borrow_mut();
        let (cursor, entries) = match opened {
            Ok(c) => c,
            Err(e) => {
                if let Some(id) = slot {
                    table.entries.remove(&id);
                }
                return Err(e);
            }
        };
        let Some(id) = slot.filter(|_| !cursor.exhausted()) else {
            if let Some(id) = slot {
                table.entries.remove(&id);
            }
            return Ok(ShardBatch {
                entries,
                cursor: None,
            });
        };
        match table.entries.get_mut(&id) {
            Some(e) if !self.health.closing.get() => e.cursor = Some(Box::new(cursor)),
            // The shard began closing (its cursors were dropped) while this one opened.
            _ => return Err(ErrorDetail::Closed.into()),
        }
        Ok(ShardBatch {
            entries,
            cursor: Some(id),
        })
    }

    async fn open_cursor_at_snapshot(
        &self,
        spec: &CursorSpec,
        limits: BatchLimits,
    ) -> Result<(ShardCursor, Batch)> {
        let snap = self.snapshot();
        self.counters.borrow_mut().scans += 1;
        let _reading = InProgress::new(&self.reads.in_progress);
        let bounds = Bounds {
            lower: spec.lower.clone(),
            upper: spec.upper.clone(),
            snapshot: snap.seqno,
            table: self
                .opts
                .catalog
                .get(spec.table)
                .filter(|t| t.merge.is_some() || t.ttl.is_some())
                .cloned(),
            now_ms: self.now_ms(),
        };
        let heap = self.seek_key_groups(&snap, spec, &bounds).await?;
        let mut cursor = ShardCursor {
            bounds,
            heap,
            _snapshot: snap,
        };
        let entries = cursor.fill(limits, Batch::default()).await?;
        Ok((cursor, entries))
    }

    /// Positions a key-group cursor in every key group of `spec` that has data in the
    /// range, skipping runs of empty groups (see the module docs).
    async fn seek_key_groups(
        &self,
        snap: &ReadSnapshot,
        spec: &CursorSpec,
        bounds: &Bounds,
    ) -> Result<BinaryHeap<KgCursor>> {
        let mut heap = BinaryHeap::new();
        let first = (*spec.key_groups.start()).max(self.key_groups.0);
        let last = (*spec.key_groups.end()).min(self.key_groups.1);
        if first > last {
            return Ok(heap);
        }
        let start_user: &[u8] = match &spec.lower {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        };
        let table = spec.table.0.to_be_bytes();
        // A long scan stops admitting its blocks to the cache (shared count).
        let scan_blocks = Rc::new(Cell::new(0));
        let mut kg = first;
        let mut wave: u16 = 1;
        let mut seeks = 0u64;
        loop {
            // Groups kg..=wave_last are sought at once (their block reads overlap).
            let wave_last = kg.saturating_add(wave - 1).min(last);
            let mut waves =
                std::pin::pin!(futures_util::future::join_all((kg..=wave_last).map(|g| {
                    self.open_key_group(snap, g, table, start_user, bounds, &scan_blocks)
                })));
            // Whether a seek had to wait (a block read): only then do waves pay.
            let mut waited = false;
            let opened = std::future::poll_fn(|cx| {
                let p = std::future::Future::poll(waves.as_mut(), cx);
                waited |= p.is_pending();
                p
            })
            .await;
            seeks += u64::from(wave_last - kg) + 1;
            let mut next = None;
            for (g, c) in (kg..=wave_last).zip(opened) {
                let (c, found) = c?;
                next = if found {
                    heap.push(c);
                    g.checked_add(1)
                } else if !c.it.valid() {
                    None
                } else {
                    // Nothing of the range in `g`; nothing at all before the group
                    // the merge stopped in.
                    let stopped = state_key_group(c.it.key());
                    if stopped > g {
                        Some(stopped)
                    } else {
                        g.checked_add(1)
                    }
                };
            }
            // Dense groups whose seeks wait for reads: seek twice as many at once next
            // time; after a skip past the wave, or when nothing waited (memory-only
            // data gains nothing from overlap), one at a time again.
            wave = if waited && next == wave_last.checked_add(1) {
                wave.saturating_mul(2).min(MAX_SEEK_WAVE)
            } else {
                1
            };
            match next {
                Some(n) if n <= last => kg = n,
                _ => break,
            }
        }
        self.counters.borrow_mut().scan_seeks += seeks;
        Ok(heap)
    }

    /// A cursor over key group `kg`'s part of the range, positioned at its first
    /// visible live entry; `false` with it when the group has none (the merge then
    /// stands where it stopped looking).
    async fn open_key_group(
        &self,
        snap: &ReadSnapshot,
        kg: u16,
        table: [u8; 2],
        start_user: &[u8],
        bounds: &Bounds,
        scan_blocks: &Rc<Cell<u32>>,
    ) -> Result<(KgCursor, bool)> {
        let kgb = kg.to_be_bytes();
        let prefix = [kgb[0], kgb[1], table[0], table[1]];
        let mut seek_key = Vec::with_capacity(STATE_KEY_PREFIX_LEN + start_user.len());
        seek_key.extend_from_slice(&prefix);
        seek_key.extend_from_slice(start_user);
        let mut it = self.merge_iter(snap, scan_blocks.clone());
        it.seek(&make_internal_key(&seek_key, MAX_SEQNO, ValueKind::Put))
            .await?;
        let mut c = KgCursor {
            prefix,
            it,
            key: Vec::new(),
            decided: false,
            resolved: None,
            parked: false,
        };
        let found = c.settle(bounds).await?;
        if found {
            if let Some(end) = end_of_range(&prefix, &bounds.upper) {
                c.it.retain_below(&make_internal_key(&end, MAX_SEQNO, ValueKind::Put));
            }
        }
        Ok((c, found))
    }

    /// The next batch of cursor `id`, filled into `buf` (its buffers reused).
    pub(crate) async fn cursor_next(
        &self,
        id: u64,
        limits: BatchLimits,
        buf: Batch,
    ) -> Result<ShardBatch> {
        self.check_readable()?;
        let taken = {
            let mut table = self.reads.cursors.borrow_mut();
            table.sweep();
            table.entries.get_mut(&id).and_then(|e| e.cursor.take())
        };
        let Some(mut cursor) = taken else {
            return Err(Error::internal(format!(
                "cursor {id} is not open on shard {} (closed, or a batch of it is in progress)",
                self.id
            )));
        };
        let _reading = InProgress::new(&self.reads.in_progress);
        let filled = cursor.fill(limits, buf).await;
        let mut table = self.reads.cursors.borrow_mut();
        match filled {
            Ok(entries) if cursor.exhausted() => {
                table.entries.remove(&id);
                Ok(ShardBatch {
                    entries,
                    cursor: None,
                })
            }
            Ok(entries) => match table.entries.get_mut(&id) {
                Some(e) if !self.health.closing.get() => {
                    e.cursor = Some(cursor);
                    Ok(ShardBatch {
                        entries,
                        cursor: Some(id),
                    })
                }
                // Dropped while filling (the shard is closing, or the owner went):
                // more entries exist, so ending here would truncate the scan.
                _ => {
                    table.entries.remove(&id);
                    Err(ErrorDetail::Closed.into())
                }
            },
            Err(e) => {
                table.entries.remove(&id);
                Err(e)
            }
        }
    }

    /// Releases cursor `id` (nothing happens if it is already gone).
    pub(crate) fn close_cursor(&self, id: u64) {
        let mut table = self.reads.cursors.borrow_mut();
        table.entries.remove(&id);
        table.sweep();
    }

    /// Cursors open on this shard.
    pub(crate) fn open_cursors(&self) -> usize {
        self.reads.cursors.borrow().len()
    }
}

/// The smallest state key past the range in one key group: every state key at or
/// after it is out of range (`None`: the range runs to the end of the key space).
fn end_of_range(prefix: &[u8; STATE_KEY_PREFIX_LEN], upper: &Bound<Vec<u8>>) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    match upper {
        Bound::Excluded(u) => end.extend_from_slice(u),
        Bound::Included(u) => {
            // No user key lies strictly between `u` and `u ++ [0]`.
            end.extend_from_slice(u);
            end.push(0);
        }
        Bound::Unbounded => {
            let n = u32::from_be_bytes(*prefix).checked_add(1)?;
            end = n.to_be_bytes().to_vec();
        }
    }
    Some(end)
}
