//! Runs a workload's workers in one of the two modes and times the whole of it.
//!
//! - **Embedded** (`--threads 0`): for every shard, `Db::on_shard` runs a closure on
//!   the shard's executor thread; it spawns `--concurrency` glommio tasks, each a
//!   worker over that shard's `LocalDb`, so each shard serves its own keys with no
//!   cross-thread hop. readwhilewriting adds one writer task per shard.
//! - **Threads** (`--threads N`): N OS threads, each polling `--concurrency` workers
//!   over the cross-thread `Db` handle with `futures_lite::future::block_on`.
//!   readwhilewriting adds one more thread polling one writer per shard.
//!
//! The elapsed time is wall-clock from before the first worker starts until the last
//! one finishes; the first error of any worker is the benchmark's error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::block_on;
use terrace::{Db, LocalDb, Result};

use super::benchmark::Benchmark;
use super::stats::OpStats;
use super::workload::{run_worker, run_writer, Cursor, Plan};
use crate::join::join_all;

/// Indexes a thread-mode worker claims at a time (fewer trips to the shared counter).
const THREAD_CLAIM_CHUNK: u64 = 16;

/// What a finished workload did and how long it took.
#[derive(Debug)]
pub struct Outcome {
    /// Merged counters of every worker.
    pub stats: OpStats,
    /// Wall-clock time of the whole workload.
    pub elapsed: Duration,
}

/// How the workers are laid out.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Workers on the shards' executors.
    Embedded {
        /// Workers per shard.
        concurrency: u32,
    },
    /// Workers on plain OS threads.
    Threads {
        /// OS threads.
        threads: u32,
        /// Workers per thread.
        concurrency: u32,
    },
}

impl Mode {
    /// Total number of workers over `shards` shards.
    pub fn workers(self, shards: u32) -> u64 {
        match self {
            Mode::Embedded { concurrency } => u64::from(shards) * u64::from(concurrency),
            Mode::Threads {
                threads,
                concurrency,
            } => u64::from(threads) * u64::from(concurrency),
        }
    }
}

/// Runs `plan` in `mode`.
pub fn run(db: &Db, plan: Plan, mode: Mode) -> Result<Outcome> {
    let plan = Arc::new(plan);
    match mode {
        Mode::Embedded { concurrency } => run_embedded(db, plan, concurrency),
        Mode::Threads {
            threads,
            concurrency,
        } => run_threads(db, plan, threads, concurrency),
    }
}

fn merge_results(results: impl IntoIterator<Item = Result<OpStats>>) -> Result<OpStats> {
    let mut total = OpStats::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(s) => total.merge(&s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn run_embedded(db: &Db, plan: Arc<Plan>, concurrency: u32) -> Result<Outcome> {
    let shards = db.shards();
    let start = terrace_tiering::clock::now();
    let per_shard = (0..shards).map(|shard| {
        let plan = plan.clone();
        db.on_shard(shard, move |local| {
            shard_main(local, plan, shard, u64::from(concurrency))
        })
    });
    let results = block_on(join_all(per_shard));
    let elapsed = start.elapsed();
    let stats = merge_results(results.into_iter().map(|r| r.and_then(|inner| inner)))?;
    Ok(Outcome { stats, elapsed })
}

/// The part of an embedded workload that runs on shard `shard`'s executor.
async fn shard_main(local: LocalDb, plan: Arc<Plan>, shard: u32, workers: u64) -> Result<OpStats> {
    // readseq partitions are dealt out by shard; every other benchmark walks the whole
    // index range and keeps the operations whose keys this shard owns.
    let range = if plan.bench == Benchmark::ReadSeq {
        u64::from(shard) * workers..(u64::from(shard) + 1) * workers
    } else {
        0..plan.index_count()
    };
    let cursor = Arc::new(Cursor::new(range, 1));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = (plan.bench == Benchmark::ReadWhileWriting)
        .then(|| glommio::spawn_local(run_writer(local.clone(), plan.clone(), stop.clone(), 0, 1)));
    let tasks: Vec<_> = (0..workers)
        .map(|_| glommio::spawn_local(run_worker(local.clone(), plan.clone(), cursor.clone())))
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await);
    }
    stop.store(true, Ordering::Relaxed);
    let mut stats = merge_results(results)?;
    if let Some(w) = writer {
        stats.background_writes += w.await?;
    }
    Ok(stats)
}

fn run_threads(db: &Db, plan: Arc<Plan>, threads: u32, concurrency: u32) -> Result<Outcome> {
    let cursor = Arc::new(Cursor::new(
        0..plan.index_count(),
        if plan.bench == Benchmark::ReadSeq {
            1
        } else {
            THREAD_CLAIM_CHUNK
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let start = terrace_tiering::clock::now();
    let (results, writes) = std::thread::scope(|scope| {
        let writer = (plan.bench == Benchmark::ReadWhileWriting).then(|| {
            let writers = u64::from(db.shards());
            let (db, plan, stop) = (db.clone(), plan.clone(), stop.clone());
            scope.spawn(move || {
                block_on(join_all((0..writers).map(|w| {
                    run_writer(db.clone(), plan.clone(), stop.clone(), w, writers)
                })))
            })
        });
        let readers: Vec<_> = (0..threads)
            .map(|_| {
                let (db, plan, cursor) = (db.clone(), plan.clone(), cursor.clone());
                scope.spawn(move || {
                    block_on(join_all(
                        (0..concurrency)
                            .map(|_| run_worker(db.clone(), plan.clone(), cursor.clone())),
                    ))
                })
            })
            .collect();
        let results: Vec<Result<OpStats>> = readers
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        stop.store(true, Ordering::Relaxed);
        let writes = writer.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (results, writes)
    });
    let elapsed = start.elapsed();
    let mut stats = merge_results(results)?;
    for w in writes.into_iter().flatten() {
        stats.background_writes += w?;
    }
    Ok(Outcome { stats, elapsed })
}
