//! Runs one workload over an [`Engine`] from `--threads` OS threads and times it.
//!
//! Work is a range of operation indexes handed out by a shared atomic cursor,
//! [`CLAIM_CHUNK`] at a time (as `terrace-bench --threads N` does). Operation `i`
//! touches the key `terrace-bench` touches for the same `(seed, position in the list,
//! i)`, whatever the thread count, so every engine reads and writes the same keys.
//! readwhilewriting adds one writer thread that overwrites random keys until the
//! readers finish (db_bench's single writer).
//!
//! The elapsed time is wall-clock from before the first worker starts until the last
//! one finishes; the first error of any worker is the benchmark's error.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::benchmark::Benchmark;
use crate::engine::Engine;
use crate::keys::{KeyBuf, KeyDraw};
use crate::stats::OpStats;
use crate::values::ValuePool;

/// Indexes a worker claims at a time (fewer trips to the shared counter).
pub const CLAIM_CHUNK: u64 = 16;

/// Everything a worker needs to know about the benchmark it runs. Shared read-only.
#[derive(Debug)]
pub struct Plan {
    /// The workload.
    pub bench: Benchmark,
    /// Size of the key space.
    pub num: u64,
    /// Operations of read benchmarks.
    pub reads: u64,
    /// Key width.
    pub key_size: usize,
    /// Entries read after each seek.
    pub seek_nexts: usize,
    /// Keys per multi_get.
    pub batch_size: usize,
    /// Random draws of this benchmark.
    pub draw: KeyDraw,
    /// Random draws of the background writer (readwhilewriting).
    pub writer_draw: KeyDraw,
    /// Values to write.
    pub values: Arc<ValuePool>,
}

impl Plan {
    /// The plan of the benchmark at `position` in `--benchmarks`: the salts are
    /// `terrace-bench`'s (`2 * position`, `2 * position + 1`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bench: Benchmark,
        position: u64,
        seed: u64,
        num: u64,
        reads: u64,
        key_size: usize,
        seek_nexts: usize,
        batch_size: usize,
        values: Arc<ValuePool>,
    ) -> Plan {
        Plan {
            bench,
            num,
            reads,
            key_size,
            seek_nexts,
            batch_size,
            draw: KeyDraw::new(seed, position * 2, num),
            writer_draw: KeyDraw::new(seed, position * 2 + 1, num),
            values,
        }
    }

    /// How many operation indexes the benchmark has.
    pub fn index_count(&self) -> u64 {
        match self.bench {
            Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite => self.num,
            Benchmark::ReadRandom
            | Benchmark::ReadMissing
            | Benchmark::SeekRandom
            | Benchmark::UpdateRandom
            | Benchmark::MultiReadRandom
            | Benchmark::ReadWhileWriting => self.reads,
            Benchmark::Flush | Benchmark::Compact => 0,
        }
    }
}

/// What a finished workload did and how long it took.
#[derive(Debug)]
pub struct Outcome {
    /// Merged counters of every worker.
    pub stats: OpStats,
    /// Wall-clock time of the whole workload.
    pub elapsed: Duration,
}

/// Hands out operation indexes to workers, [`CLAIM_CHUNK`] at a time.
struct Cursor {
    next: AtomicU64,
    end: u64,
}

impl Cursor {
    fn claim(&self) -> Option<Range<u64>> {
        let start = self.next.fetch_add(CLAIM_CHUNK, Ordering::Relaxed);
        (start < self.end).then(|| start..(start + CLAIM_CHUNK).min(self.end))
    }
}

/// Runs `plan` from `threads` worker threads.
pub fn run<E: Engine>(engine: &E, plan: &Plan, threads: u32) -> anyhow::Result<Outcome> {
    let cursor = Cursor {
        next: AtomicU64::new(0),
        end: plan.index_count(),
    };
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (results, writes) = std::thread::scope(|scope| {
        let writer = (plan.bench == Benchmark::ReadWhileWriting)
            .then(|| scope.spawn(|| run_writer(engine, plan, &stop)));
        let workers: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| run_worker(engine, plan, &cursor)))
            .collect();
        let results: Vec<anyhow::Result<OpStats>> = workers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let writes = writer.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (results, writes)
    });
    let elapsed = start.elapsed();
    let mut stats = OpStats::new();
    for r in results {
        stats.merge(&r?);
    }
    if let Some(w) = writes {
        stats.background_writes += w?;
    }
    Ok(Outcome { stats, elapsed })
}

/// One worker: claims indexes until the cursor is exhausted.
fn run_worker<E: Engine>(engine: &E, plan: &Plan, cursor: &Cursor) -> anyhow::Result<OpStats> {
    let mut stats = OpStats::new();
    let mut key = KeyBuf::new(plan.key_size);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(plan.batch_size);
    while let Some(run) = cursor.claim() {
        for i in run {
            match plan.bench {
                Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite => {
                    let index = if plan.bench == Benchmark::FillSeq {
                        i
                    } else {
                        plan.draw.index(i)
                    };
                    let k = key.set(index);
                    let v = plan.values.value(plan.draw.word(i));
                    let start = Instant::now();
                    engine.put(k, v)?;
                    stats.record(start.elapsed(), 1, 0, (k.len() + v.len()) as u64);
                }
                Benchmark::ReadRandom | Benchmark::ReadMissing | Benchmark::ReadWhileWriting => {
                    let index = plan.draw.index(i);
                    let k = if plan.bench == Benchmark::ReadMissing {
                        key.set_missing(index)
                    } else {
                        key.set(index)
                    };
                    let start = Instant::now();
                    let got = engine.get(k)?;
                    let bytes = got.map_or(0, |len| (k.len() + len) as u64);
                    stats.record(start.elapsed(), 1, u64::from(got.is_some()), bytes);
                }
                Benchmark::UpdateRandom => {
                    let k = key.set(plan.draw.index(i));
                    let start = Instant::now();
                    let got = engine.get(k)?;
                    // A new value, different from what fillrandom wrote for this slot.
                    let v = plan.values.value(!plan.draw.word(i));
                    engine.put(k, v)?;
                    let read = got.map_or(0, |len| k.len() + len);
                    stats.record(
                        start.elapsed(),
                        1,
                        u64::from(got.is_some()),
                        (read + k.len() + v.len()) as u64,
                    );
                }
                Benchmark::SeekRandom => {
                    let k = key.set(plan.draw.index(i));
                    let start = Instant::now();
                    let out = engine.seek(k, plan.seek_nexts + 1)?;
                    stats.record(start.elapsed(), 1, u64::from(out.found), out.bytes);
                }
                Benchmark::MultiReadRandom => {
                    batch.push(key.set(plan.draw.index(i)).to_vec());
                    if batch.len() >= plan.batch_size {
                        multi_get(engine, &mut batch, &mut stats)?;
                    }
                }
                Benchmark::Flush | Benchmark::Compact => {}
            }
        }
    }
    if !batch.is_empty() {
        multi_get(engine, &mut batch, &mut stats)?;
    }
    Ok(stats)
}

/// Issues one multi_get of `batch` and empties it.
fn multi_get<E: Engine>(
    engine: &E,
    batch: &mut Vec<Vec<u8>>,
    stats: &mut OpStats,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let got = engine.multi_get(batch)?;
    let mut found = 0u64;
    let mut bytes = 0usize;
    for (k, v) in batch.iter().zip(&got) {
        if let Some(len) = v {
            found += 1;
            bytes += k.len() + len;
        }
    }
    stats.record(start.elapsed(), batch.len() as u64, found, bytes as u64);
    batch.clear();
    Ok(())
}

/// The background writer of readwhilewriting: overwrites random keys until `stop`.
fn run_writer<E: Engine>(engine: &E, plan: &Plan, stop: &AtomicBool) -> anyhow::Result<u64> {
    let mut key = KeyBuf::new(plan.key_size);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = key.set(plan.writer_draw.index(i));
        engine.put(k, plan.values.value(plan.writer_draw.word(i)))?;
        i += 1;
    }
    Ok(i)
}
