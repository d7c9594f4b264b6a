//! Iterators in global user-key order: [`DbIter`] (from any thread) and
//! [`LocalDbIter`] (on a shard's thread), and the ranges they read ([`KeyRange`]).
//!
//! Each shard the range touches keeps a cursor open (`shard/cursor.rs`): its key
//! groups merged into one stream in user-key order. The iterator asks each shard
//! for a batch at a time (one hop per batch, all shards concurrently) and merges the
//! shards' batches with a binary heap: an entry is handed out only while every shard
//! that may still have entries has one buffered, so the output is in global order.
//!
//! **Snapshot semantics.** Each shard's cursor reads that shard as it was when the
//! iterator opened (`Db::iter` returns once every shard has opened its cursor): a
//! write that completed before `iter` was called is seen, a write issued after it
//! returned is not, whatever the batches in between; writes racing with the open may
//! or may not be seen, independently per shard. The files a cursor reads are kept
//! until it is released.
//!
//! **Memory.** At most `batch_entries` entries (and about `batch_bytes` bytes) per
//! shard are buffered on the caller's side, plus one batch being handed out. Dropping
//! the iterator releases its shard cursors.
//!
//! After an error the iterator is unusable: later calls fail with an
//! `InvalidArgument` error saying so.

use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;

use crate::db::Db;
use crate::error::{Error, ErrorDetail, Result};
use crate::local_db::LocalDb;
use crate::router::ScanPlan;
use crate::shard::cursor::{BatchLimits, ShardBatch};

/// A key-value entry returned by scans and iterators.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The user keys a scan or iterator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// Set by [`KeyRange::prefix`]: every key in the range starts with it.
    prefix: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            prefix: None,
        }
    }

    /// The keys within `lower` and `upper`.
    pub fn new(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> KeyRange {
        KeyRange {
            lower: lower.map(<[u8]>::to_vec),
            upper: upper.map(<[u8]>::to_vec),
            prefix: None,
        }
    }

    /// The keys that start with `prefix`. When the prefix is at least
    /// `Options::key_group_prefix_bytes` long, all of them share one key group, so the
    /// range is read from one shard and one key group (a single seek). The composite
    /// keys of [`crate::map_key`] are made for this.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange {
            lower: Bound::Included(prefix.to_vec()),
            upper: prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded),
            prefix: Some(prefix.to_vec()),
        }
    }

    /// The lower bound.
    pub fn lower(&self) -> Bound<&[u8]> {
        self.lower.as_ref().map(Vec::as_slice)
    }

    /// The upper bound.
    pub fn upper(&self) -> Bound<&[u8]> {
        self.upper.as_ref().map(Vec::as_slice)
    }

    /// The prefix, for ranges made by [`KeyRange::prefix`].
    pub fn prefix_bytes(&self) -> Option<&[u8]> {
        self.prefix.as_deref()
    }
}

/// The smallest key greater than every key starting with `prefix`, if there is one
/// (none when the prefix is empty or all `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut s = prefix[..=last].to_vec();
    s[last] += 1;
    Some(s)
}

/// Most entries one batch may hold ([`IterOptions::batch_entries`]).
pub const MAX_ITER_BATCH_ENTRIES: usize = 1 << 16;
/// Most bytes one batch may hold ([`IterOptions::batch_bytes`]).
pub const MAX_ITER_BATCH_BYTES: usize = 256 << 20;

/// How an iterator fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IterOptions {
    /// Entries per batch, both per shard fetch and per [`DbIter::next_batch`]
    /// (1..=[`MAX_ITER_BATCH_ENTRIES`]; default 1024).
    pub batch_entries: usize,
    /// Key and value bytes per batch: a batch ends after the entry that reaches it
    /// (1..=[`MAX_ITER_BATCH_BYTES`]; default 1 MiB).
    pub batch_bytes: usize,
}

impl Default for IterOptions {
    fn default() -> Self {
        IterOptions {
            batch_entries: 1024,
            batch_bytes: 1 << 20,
        }
    }
}

impl IterOptions {
    fn limits(&self) -> Result<BatchLimits> {
        if !(1..=MAX_ITER_BATCH_ENTRIES).contains(&self.batch_entries) {
            return Err(ErrorDetail::BadArgument(format!(
                "IterOptions::batch_entries is {}, must be in 1..={MAX_ITER_BATCH_ENTRIES}",
                self.batch_entries
            ))
            .into());
        }
        if !(1..=MAX_ITER_BATCH_BYTES).contains(&self.batch_bytes) {
            return Err(ErrorDetail::BadArgument(format!(
                "IterOptions::batch_bytes is {}, must be in 1..={MAX_ITER_BATCH_BYTES}",
                self.batch_bytes
            ))
            .into());
        }
        Ok(BatchLimits {
            entries: self.batch_entries,
            bytes: self.batch_bytes,
        })
    }
}

/// Entries in key order, packed in one buffer: what [`DbIter::next_batch`] returns.
/// One allocation per batch rather than two per entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Batch {
    data: Vec<u8>,
    /// Per entry, where its key and its value end in `data`.
    ends: Vec<(usize, usize)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("entries", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Batch {
    /// Empties it, keeping its buffers for reuse.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        self.data.extend_from_slice(value);
        self.ends.push((key_end, self.data.len()));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no entry (an iterator's last batch is empty).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Key and value bytes of all entries.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Entry `i`: its key and value.
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let (key_end, end) = *self.ends.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1].1,
        };
        Some((&self.data[start..key_end], &self.data[key_end..end]))
    }

    /// The key of entry `i`.
    fn key(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], |(k, _)| k)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, end)| {
            let entry = (&self.data[start..key_end], &self.data[key_end..end]);
            start = end;
            entry
        })
    }

    /// The entries as owned pairs.
    pub fn into_entries(self) -> Vec<Entry> {
        self.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }
}

/// One shard's part of an iterator.
struct Stream {
    shard: u32,
    /// The shard-side cursor while it has more.
    cursor: Option<u64>,
    /// The shard's last batch and the next entry of it to hand out.
    batch: Batch,
    pos: usize,
}

impl Stream {
    fn has_entry(&self) -> bool {
        self.pos < self.batch.len()
    }

    /// Nothing buffered, more on the shard: must fetch before anything is handed out.
    fn starving(&self) -> bool {
        !self.has_entry() && self.cursor.is_some()
    }

    fn key(&self) -> &[u8] {
        self.batch.key(self.pos)
    }
}

/// Merges the shards' streams; the same for both iterator kinds.
pub(crate) struct Merge {
    streams: Vec<Stream>,
    /// Min-heap of the streams with an entry buffered, by their next key (two shards
    /// never hold the same key).
    heap: Vec<usize>,
    limits: BatchLimits,
    failed: bool,
}

impl Merge {
    fn new(shards: &[u32], limits: BatchLimits) -> Merge {
        Merge {
            streams: shards
                .iter()
                .map(|&shard| Stream {
                    shard,
                    cursor: None,
                    batch: Batch::default(),
                    pos: 0,
                })
                .collect(),
            heap: Vec::with_capacity(shards.len()),
            limits,
            failed: false,
        }
    }

    fn less(&self, a: usize, b: usize) -> bool {
        self.streams[self.heap[a]].key() < self.streams[self.heap[b]].key()
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(i, parent) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.less(l, m) {
                m = l;
            }
            if r < self.heap.len() && self.less(r, m) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    /// Takes a batch of stream `i`, which must have nothing buffered.
    fn accept(&mut self, i: usize, batch: ShardBatch) {
        let s = &mut self.streams[i];
        s.cursor = batch.cursor;
        s.batch = batch.entries;
        s.pos = 0;
        if s.has_entry() {
            self.heap.push(i);
            self.sift_up(self.heap.len() - 1);
        }
    }

    /// The streams to fetch for: `(stream, shard, cursor)`.
    fn starving(&self) -> Vec<(usize, u32, u64)> {
        self.streams
            .iter()
            .enumerate()
            .filter(|(_, s)| s.starving())
            .filter_map(|(i, s)| s.cursor.map(|c| (i, s.shard, c)))
            .collect()
    }

    fn any_starving(&self) -> bool {
        self.streams.iter().any(Stream::starving)
    }

    fn is_done(&self) -> bool {
        self.heap.is_empty() && !self.any_starving()
    }

    /// Hands out entries in key order until a limit is reached or a stream starves.
    fn emit(&mut self, out: &mut Batch, limits: BatchLimits) {
        if self.streams.len() == 1 && out.is_empty() {
            // One shard: its batch is the answer as it is.
            let s = &mut self.streams[0];
            if s.pos == 0 && s.batch.len() <= limits.entries {
                // The stream keeps `out`'s old buffers for its next fetch.
                std::mem::swap(out, &mut s.batch);
                s.batch.clear();
                self.heap.clear();
                return;
            }
        }
        while out.len() < limits.entries && out.bytes() < limits.bytes {
            let Some(&top) = self.heap.first() else {
                return;
            };
            let s = &mut self.streams[top];
            if let Some((k, v)) = s.batch.get(s.pos) {
                out.push(k, v);
            }
            s.pos += 1;
            if s.has_entry() {
                self.sift_down(0);
            } else {
                let starving = s.starving();
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
                if !self.heap.is_empty() {
                    self.sift_down(0);
                }
                if starving {
                    return;
                }
            }
        }
    }

    /// Shard cursors still open, to release.
    fn open_cursors(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.streams
            .iter()
            .filter_map(|s| s.cursor.map(|c| (s.shard, c)))
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(ErrorDetail::BadArgument(
                "the iterator failed earlier; open a new one".into(),
            )
            .into());
        }
        Ok(())
    }

    /// The next batch, fetching from starving shards with `fetch(shard, cursor,
    /// limits)` (all at once) whenever needed.
    async fn next_batch<F, Fut>(&mut self, out: &mut Batch, fetch: F) -> Result<()>
    where
        F: Fn(u32, u64, BatchLimits, Batch) -> Fut,
        Fut: Future<Output = Result<ShardBatch>>,
    {
        self.check_usable()?;
        let limits = self.limits;
        out.clear();
        loop {
            let need = self.starving();
            if !need.is_empty() {
                let calls: Vec<_> = need
                    .iter()
                    .map(|&(i, shard, cursor)| {
                        // The stream's spent batch is refilled (its buffers reused).
                        let f = fetch(
                            shard,
                            cursor,
                            limits,
                            std::mem::take(&mut self.streams[i].batch),
                        );
                        async move { Ok::<_, Error>((i, f.await?)) }
                    })
                    .collect();
                match futures_util::future::try_join_all(calls).await {
                    Ok(got) => {
                        for (i, batch) in got {
                            self.accept(i, batch);
                        }
                    }
                    Err(e) => {
                        self.failed = true;
                        return Err(e);
                    }
                }
            }
            self.emit(out, limits);
            if self.is_done() || out.len() >= limits.entries || out.bytes() >= limits.bytes {
                return Ok(());
            }
        }
    }
}

/// Opens the cursors of `plan` on every shard it names with `open(shard)` (all at
/// once) and takes their first batches. On failure, cursors that did open are
/// released with `release`.
async fn open_merge<O, Fut>(
    plan: &ScanPlan,
    limits: BatchLimits,
    open: O,
    release: impl Fn(u32, u64),
) -> Result<Merge>
where
    O: Fn(u32) -> Fut,
    Fut: Future<Output = Result<ShardBatch>>,
{
    let mut merge = Merge::new(&plan.shards, limits);
    let opened = futures_util::future::join_all(plan.shards.iter().map(|&shard| open(shard))).await;
    let mut first_err = None;
    for (i, r) in opened.into_iter().enumerate() {
        match r {
            Ok(batch) => merge.accept(i, batch),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        for (shard, cursor) in merge.open_cursors() {
            release(shard, cursor);
        }
        return Err(e);
    }
    Ok(merge)
}

/// One-shot scan: every shard returns its first `limit` entries (so the first `limit`
/// of the union are among them) and closes its cursor at once.
pub(crate) async fn scan_once<O, Fut>(plan: &ScanPlan, limit: usize, open: O) -> Result<Vec<Entry>>
where
    O: Fn(u32, BatchLimits) -> Fut,
    Fut: Future<Output = Result<ShardBatch>>,
{
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limits = BatchLimits {
        entries: limit,
        bytes: usize::MAX,
    };
    let mut merge = open_merge(plan, limits, |shard| open(shard, limits), |_, _| {}).await?;
    let mut out = Batch::default();
    merge.emit(&mut out, limits);
    Ok(out.into_entries())
}

/// An iterator over a table's entries in global user-key order, usable from any
/// thread. Made by [`Db::iter`]; see the module docs of `db_iter` (in
/// ARCHITECTURE, "Scans") for its snapshot and memory bounds.
pub struct DbIter {
    db: Db,
    merge: Merge,
    /// Shard cursors live while this does (they are swept once it is gone).
    _owner: Arc<()>,
}

impl std::fmt::Debug for DbIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIter")
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl DbIter {
    pub(crate) async fn open(db: Db, plan: ScanPlan, opts: IterOptions) -> Result<DbIter> {
        let limits = opts.limits()?;
        let owner = Arc::new(());
        let merge = open_merge(
            &plan,
            limits,
            |shard| {
                let (spec, weak) = (plan.spec.clone(), Arc::downgrade(&owner));
                db.call(shard, move |s| async move {
                    s.open_cursor(&spec, limits, weak, true).await
                })
            },
            |shard, cursor| db.close_cursor_nowait(shard, cursor),
        )
        .await?;
        Ok(DbIter {
            db,
            merge,
            _owner: owner,
        })
    }

    /// The next entries in user-key order (at most `batch_entries`, about
    /// `batch_bytes`); empty once the range is exhausted.
    pub async fn next_batch(&mut self) -> Result<Batch> {
        let mut out = Batch::default();
        self.next_batch_into(&mut out).await?;
        Ok(out)
    }

    /// [`DbIter::next_batch`] into `out` (cleared first), reusing its buffers: a
    /// loop that hands the same batch back each time allocates nothing per batch.
    pub async fn next_batch_into(&mut self, out: &mut Batch) -> Result<()> {
        let db = &self.db;
        self.merge
            .next_batch(out, |shard, cursor, limits, buf| {
                db.call(shard, move |s| async move {
                    s.cursor_next(cursor, limits, buf).await
                })
            })
            .await
    }

    /// Whether every entry has been handed out.
    pub fn is_done(&self) -> bool {
        self.merge.is_done()
    }
}

impl Drop for DbIter {
    fn drop(&mut self) {
        for (shard, cursor) in self.merge.open_cursors() {
            self.db.close_cursor_nowait(shard, cursor);
        }
    }
}

/// [`DbIter`] for code on a shard's thread: this shard's cursor is read directly,
/// other shards' through the cross-thread handle. Made by [`LocalDb::iter`]. `!Send`.
pub struct LocalDbIter {
    local: LocalDb,
    merge: Merge,
    _owner: Arc<()>,
}

impl std::fmt::Debug for LocalDbIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDbIter")
            .field("done", &self.is_done())
            .finish_non_exhaustive()
    }
}

impl LocalDbIter {
    pub(crate) async fn open(
        local: LocalDb,
        plan: ScanPlan,
        opts: IterOptions,
    ) -> Result<LocalDbIter> {
        let limits = opts.limits()?;
        let owner = Arc::new(());
        let merge = open_merge(
            &plan,
            limits,
            |shard| local.open_cursor(shard, plan.spec.clone(), limits, Arc::downgrade(&owner)),
            |shard, cursor| local.close_cursor(shard, cursor),
        )
        .await?;
        Ok(LocalDbIter {
            local,
            merge,
            _owner: owner,
        })
    }

    /// Like [`DbIter::next_batch`].
    pub async fn next_batch(&mut self) -> Result<Batch> {
        let mut out = Batch::default();
        self.next_batch_into(&mut out).await?;
        Ok(out)
    }

    /// Like [`DbIter::next_batch_into`].
    pub async fn next_batch_into(&mut self, out: &mut Batch) -> Result<()> {
        let local = &self.local;
        self.merge
            .next_batch(out, |shard, cursor, limits, buf| {
                local.cursor_next(shard, cursor, limits, buf)
            })
            .await
    }

    /// Whether every entry has been handed out.
    pub fn is_done(&self) -> bool {
        self.merge.is_done()
    }
}

impl Drop for LocalDbIter {
    fn drop(&mut self) {
        for (shard, cursor) in self.merge.open_cursors() {
            self.local.close_cursor(shard, cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn iter_options_are_bounded() {
        let mut o = IterOptions::default();
        assert!(o.limits().is_ok());
        o.batch_entries = 0;
        assert!(o.limits().is_err());
        o.batch_entries = MAX_ITER_BATCH_ENTRIES + 1;
        assert!(o.limits().is_err());
        o.batch_entries = 1;
        o.batch_bytes = 0;
        assert!(o.limits().is_err());
    }

    fn batch(keys: &[&str], more: bool) -> ShardBatch {
        let mut b = Batch::default();
        for k in keys {
            b.push(k.as_bytes(), b"v");
        }
        ShardBatch {
            entries: b,
            cursor: more.then_some(7),
        }
    }

    fn keys(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn merge_waits_for_a_starving_stream_before_handing_out_more() {
        let limits = BatchLimits {
            entries: 100,
            bytes: usize::MAX,
        };
        let mut m = Merge::new(&[0, 1, 2], limits);
        m.accept(0, batch(&["a", "c"], true));
        m.accept(1, batch(&["b", "z"], false));
        m.accept(2, batch(&[], false));
        let mut out = Batch::default();
        m.emit(&mut out, limits);
        // "c" is the last buffered entry of stream 0, which has more: "d" may follow
        // and must come before "z".
        assert_eq!(keys(&out), ["a", "b", "c"]);
        assert_eq!(m.starving(), vec![(0, 0, 7)]);
        m.accept(0, batch(&["d"], false));
        m.emit(&mut out, limits);
        assert_eq!(keys(&out), ["a", "b", "c", "d", "z"]);
        assert!(m.is_done());
    }

    #[test]
    fn batch_packs_entries() {
        let mut b = Batch::default();
        b.push(b"k1", b"");
        b.push(b"", b"v2");
        b.push(b"k3", b"v3");
        assert_eq!(b.len(), 3);
        assert_eq!(b.bytes(), 8);
        assert_eq!(b.get(1), Some((&b""[..], &b"v2"[..])));
        assert_eq!(b.get(3), None);
        assert_eq!(
            b.into_entries(),
            vec![
                (b"k1".to_vec(), Vec::new()),
                (Vec::new(), b"v2".to_vec()),
                (b"k3".to_vec(), b"v3".to_vec())
            ]
        );
    }
}
