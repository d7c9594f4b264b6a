//! The workloads: what one in-flight operation slot (a *worker*) does, over any
//! [`Store`].
//!
//! Work is a range of operation indexes handed out by a shared [`Cursor`]. Operation
//! `i` touches a key that depends only on `(seed, benchmark salt, i)` (see
//! [`super::keys`]), so the set of keys a benchmark touches does not depend on how
//! many shards, threads or workers split it. In embedded mode each shard walks the
//! whole index range and skips operations whose key another shard owns: every
//! operation is done exactly once, by the shard that owns its key, with no request
//! crossing threads.
//!
//! readseq is the exception: its index range is a list of key-range *partitions*
//! (contiguous runs of key indexes); a worker reads its partition in key order with
//! one iterator (`Db::iter`), in batches of `--readseq_chunk` entries. Iterators
//! return entries in user-key order whatever the key groups, so readseq reads the key
//! space in key order; in embedded mode the iterator reads its own shard directly and
//! fetches the other shards' batches with one hop each.

use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use terrace::{IterOptions, KeyRange, Result, TableId};

use super::benchmark::Benchmark;
use super::keys::{KeyBuf, KeyDraw};
use super::progress::{LocalProgress, Progress};
use super::stats::OpStats;
use super::store::{Batches, Store};
use super::timeline::Timeline;
use super::values::ValuePool;
use super::zipf::Zipf;

/// Operations between voluntary yields, so a worker whose calls complete without
/// waiting (memtable hits) cannot starve the other workers of its thread.
const YIELD_EVERY_OPS: u64 = 64;

/// Everything a worker needs to know about the benchmark it runs. Shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// The workload.
    pub bench: Benchmark,
    /// State table the benchmark uses.
    pub table: TableId,
    /// Size of the key space.
    pub num: u64,
    /// Operations of read benchmarks.
    pub reads: u64,
    /// Key width and, with `--key_group_range`, the groups keys fall in.
    pub keys: super::keys::KeySpace,
    /// Entries read after each seek.
    pub seek_nexts: usize,
    /// When set (`--key_group_prefix_bytes` shorter than the key), seekrandom stays
    /// within the seek key's prefix, like db_bench's prefix seek: the scan then
    /// touches one key group instead of all of them.
    pub seek_prefix_bytes: Option<usize>,
    /// Keys per multi_get.
    pub batch_size: usize,
    /// Entries per scan call in readseq.
    pub readseq_chunk: usize,
    /// Number of readseq partitions.
    pub partitions: u64,
    /// Random draws of this benchmark.
    pub draw: KeyDraw,
    /// Zipf skew of the keys read benchmarks draw (`None`: uniform). Fills stay
    /// uniform.
    pub read_zipf: Option<Arc<Zipf>>,
    /// Random draws of background writers (readwhilewriting).
    pub writer_draw: KeyDraw,
    /// Values to write.
    pub values: Arc<ValuePool>,
    /// Where workers report progress.
    pub progress: Arc<Progress>,
    /// Per-second samples for `--plot`, when asked for.
    pub timeline: Option<Arc<Timeline>>,
}

impl Plan {
    /// The key index read operation `i` touches: uniform, or Zipf-skewed.
    #[inline]
    pub fn read_index(&self, i: u64) -> u64 {
        match &self.read_zipf {
            Some(z) => z.index(self.draw.word(i)),
            None => self.draw.index(i),
        }
    }

    /// How many operation indexes the benchmark has.
    pub fn index_count(&self) -> u64 {
        match self.bench {
            Benchmark::FillSeq
            | Benchmark::FillRandom
            | Benchmark::Overwrite
            | Benchmark::MergeRandom => self.num,
            Benchmark::ReadSeq => self.partitions,
            Benchmark::ReadRandom
            | Benchmark::ReadMissing
            | Benchmark::SeekRandom
            | Benchmark::UpdateRandom
            | Benchmark::MultiReadRandom
            | Benchmark::ReadWhileWriting => self.reads,
            Benchmark::Flush
            | Benchmark::Compact
            | Benchmark::WaitForCompaction
            | Benchmark::WaitForUploads
            | Benchmark::WaitForWarmer
            | Benchmark::WaitForTrims
            | Benchmark::Checkpoint
            | Benchmark::Stats => 0,
        }
    }

    /// How many operations the benchmark reports as the denominator of `found`.
    pub fn looked_for(&self) -> u64 {
        self.reads
    }
}

/// Hands out operation indexes to workers, `chunk` at a time.
#[derive(Debug)]
pub struct Cursor {
    next: AtomicU64,
    end: u64,
    chunk: u64,
}

impl Cursor {
    /// Indexes `range`, handed out in runs of `chunk`.
    pub fn new(range: Range<u64>, chunk: u64) -> Cursor {
        Cursor {
            next: AtomicU64::new(range.start),
            end: range.end,
            chunk: chunk.max(1),
        }
    }

    fn claim(&self) -> Option<Range<u64>> {
        let start = self.next.fetch_add(self.chunk, Ordering::Relaxed);
        (start < self.end).then(|| start..(start + self.chunk).min(self.end))
    }
}

/// A worker's current run of indexes.
struct Claim<'a> {
    cursor: &'a Cursor,
    run: Range<u64>,
}

impl Claim<'_> {
    fn next(&mut self) -> Option<u64> {
        if self.run.is_empty() {
            self.run = self.cursor.claim()?;
        }
        self.run.next()
    }
}

/// Runs one worker until the cursor is exhausted.
pub async fn run_worker<S: Store>(
    store: S,
    plan: Arc<Plan>,
    cursor: Arc<Cursor>,
) -> Result<OpStats> {
    let mut stats = OpStats::new();
    stats.per_second = plan
        .timeline
        .as_ref()
        .map(|t| t.recorder(plan.bench.writes()));
    let mut progress = LocalProgress::new(plan.progress.clone());
    let mut claim = Claim {
        cursor: &cursor,
        run: 0..0,
    };
    let mut key = KeyBuf::for_space(plan.keys);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(plan.batch_size);
    let t = plan.table;
    let mut since_yield = 0u64;
    let mut prefix_end: Vec<u8> = Vec::new();
    while let Some(i) = claim.next() {
        let ops = match plan.bench {
            Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite => {
                let index = if plan.bench == Benchmark::FillSeq {
                    i
                } else {
                    plan.draw.index(i)
                };
                let k = key.set(index);
                if !store.owns(k) {
                    continue;
                }
                let v = plan.values.value(plan.draw.word(i));
                let start = terrace_tiering::clock::now();
                store.put(t, k, v).await?;
                stats.record(start.elapsed(), 1, 0, (k.len() + v.len()) as u64);
                1
            }
            Benchmark::ReadRandom | Benchmark::ReadMissing | Benchmark::ReadWhileWriting => {
                let index = plan.read_index(i);
                let k = if plan.bench == Benchmark::ReadMissing {
                    key.set_missing(index)
                } else {
                    key.set(index)
                };
                if !store.owns(k) {
                    continue;
                }
                let start = terrace_tiering::clock::now();
                let got = store.get(t, k).await?;
                let bytes = got.as_ref().map_or(0, |v| (k.len() + v.len()) as u64);
                stats.record(start.elapsed(), 1, u64::from(got.is_some()), bytes);
                1
            }
            Benchmark::MergeRandom => {
                let k = key.set(plan.draw.index(i));
                if !store.owns(k) {
                    continue;
                }
                let start = terrace_tiering::clock::now();
                store.merge(t, k, &1u64.to_le_bytes()).await?;
                stats.record(start.elapsed(), 1, 0, (k.len() + 8) as u64);
                1
            }
            Benchmark::UpdateRandom => {
                let k = key.set(plan.read_index(i));
                if !store.owns(k) {
                    continue;
                }
                let start = terrace_tiering::clock::now();
                let got = store.get(t, k).await?;
                // A new value, different from what fillrandom wrote for this slot.
                let v = plan.values.value(!plan.draw.word(i));
                store.put(t, k, v).await?;
                let read = got.as_ref().map_or(0, |old| k.len() + old.len());
                stats.record(
                    start.elapsed(),
                    1,
                    u64::from(got.is_some()),
                    (read + k.len() + v.len()) as u64,
                );
                1
            }
            Benchmark::SeekRandom => {
                let k = key.set(plan.read_index(i));
                if !store.owns(k) {
                    continue;
                }
                let upper = match plan.seek_prefix_bytes {
                    Some(n) if n < k.len() => {
                        // Sorts after every key of the prefix, and shares the prefix so
                        // the engine sees a single-group range.
                        prefix_end.clear();
                        prefix_end.extend_from_slice(&k[..n]);
                        prefix_end.resize(k.len() + 1, 0xff);
                        Bound::Included(prefix_end.as_slice())
                    }
                    _ => Bound::Unbounded,
                };
                let start = terrace_tiering::clock::now();
                let entries = store
                    .scan(t, Bound::Included(k), upper, plan.seek_nexts + 1)
                    .await?;
                let found = entries.first().is_some_and(|(ek, _)| ek.as_slice() == k);
                let bytes: usize = entries.iter().map(|(ek, ev)| ek.len() + ev.len()).sum();
                stats.record(start.elapsed(), 1, u64::from(found), bytes as u64);
                1
            }
            Benchmark::MultiReadRandom => {
                let k = key.set(plan.read_index(i));
                if !store.owns(k) {
                    continue;
                }
                batch.push(k.to_vec());
                if batch.len() < plan.batch_size {
                    continue;
                }
                let n = multi_get(&store, t, &mut batch, &mut stats).await?;
                progress.add(n);
                continue;
            }
            Benchmark::ReadSeq => read_partition(&store, &plan, i, &mut stats).await?,
            Benchmark::Flush
            | Benchmark::Compact
            | Benchmark::WaitForCompaction
            | Benchmark::WaitForUploads
            | Benchmark::WaitForWarmer
            | Benchmark::WaitForTrims
            | Benchmark::Checkpoint
            | Benchmark::Stats => 0,
        };
        progress.add(ops);
        since_yield += 1;
        if since_yield >= YIELD_EVERY_OPS {
            since_yield = 0;
            futures_lite::future::yield_now().await;
        }
    }
    if !batch.is_empty() {
        let n = multi_get(&store, t, &mut batch, &mut stats).await?;
        progress.add(n);
    }
    Ok(stats)
}

/// Issues one multi_get of `batch` (and empties it); returns the keys read.
async fn multi_get<S: Store>(
    store: &S,
    t: TableId,
    batch: &mut Vec<Vec<u8>>,
    stats: &mut OpStats,
) -> Result<u64> {
    let start = terrace_tiering::clock::now();
    let got = store.multi_get(t, batch).await?;
    let mut found = 0u64;
    let mut bytes = 0usize;
    for (k, v) in batch.iter().zip(&got) {
        if let Some(v) = v {
            found += 1;
            bytes += k.len() + v.len();
        }
    }
    let n = batch.len() as u64;
    stats.record(start.elapsed(), n, found, bytes as u64);
    batch.clear();
    Ok(n)
}

/// Reads readseq partition `p` to its end with one iterator (batches of
/// `--readseq_chunk` entries); returns the entries read. Each batch is one recorded
/// operation (the first includes opening the iterator).
async fn read_partition<S: Store>(
    store: &S,
    plan: &Plan,
    p: u64,
    stats: &mut OpStats,
) -> Result<u64> {
    let parts = u128::from(plan.partitions.max(1));
    let bound = |p: u64| (u128::from(p) * u128::from(plan.num) / parts) as u64;
    let (lo, hi) = (bound(p), bound(p + 1));
    let first = p == 0;
    let last = p + 1 >= plan.partitions;
    if lo == hi && !first && !last {
        return Ok(0);
    }
    let upper_key = plan.keys.key_of(hi);
    let lower_key = plan.keys.key_of(lo);
    let lower = if first {
        Bound::Unbounded
    } else {
        Bound::Included(lower_key.as_slice())
    };
    let upper = if last {
        Bound::Unbounded
    } else {
        Bound::Excluded(upper_key.as_slice())
    };
    let opts = IterOptions {
        batch_entries: plan.readseq_chunk.min(terrace::MAX_ITER_BATCH_ENTRIES),
        ..IterOptions::default()
    };
    let mut start = terrace_tiering::clock::now();
    let mut iter = store
        .iter(plan.table, KeyRange::new(lower, upper), opts)
        .await?;
    let mut total = 0u64;
    let mut entries = terrace::Batch::default();
    loop {
        iter.next_batch_into(&mut entries).await?;
        if entries.is_empty() {
            return Ok(total);
        }
        let n = entries.len() as u64;
        stats.record(start.elapsed(), n, n, entries.bytes() as u64);
        total += n;
        start = terrace_tiering::clock::now();
    }
}

/// A background writer (readwhilewriting): overwrites random keys it owns, using
/// indexes `first, first + step, ...`, until `stop` is set. Returns the writes done.
pub async fn run_writer<S: Store>(
    store: S,
    plan: Arc<Plan>,
    stop: Arc<AtomicBool>,
    first: u64,
    step: u64,
) -> Result<u64> {
    let mut key = KeyBuf::for_space(plan.keys);
    let mut writes = 0u64;
    let mut i = first;
    let mut until_yield = YIELD_EVERY_OPS / 4;
    while !stop.load(Ordering::Relaxed) {
        let k = key.set(plan.writer_draw.index(i));
        if store.owns(k) {
            let v = plan.values.value(plan.writer_draw.word(i));
            store.put(plan.table, k, v).await?;
            writes += 1;
        }
        i = i.wrapping_add(step);
        // Yield often: readers on this thread must run for `stop` ever to be set.
        until_yield -= 1;
        if until_yield == 0 {
            until_yield = YIELD_EVERY_OPS / 4;
            futures_lite::future::yield_now().await;
        }
    }
    Ok(writes)
}
