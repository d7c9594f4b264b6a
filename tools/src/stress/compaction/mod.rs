//! `terrace-stress compaction`: heavy overwrites and deletes on tiny levels (L0
//! trigger 2) with a faulty object store, checking the LSM layout and the answers
//! continuously.
//!
//! One process, one database. The [`workload`] is drawn from a seeded RNG and
//! mirrored in a [`Model`](crate::stress::model::Model). Every `--check_every`
//! operations a *check* runs: [`invariants::check_layout`] on `Db::live_files`, then
//! a `multi_get` of sampled keys (random ones and recently deleted ones, to catch
//! resurrections) against the model; every tenth check, and after every
//! `compact_range` and `wait_for_compactions`, the whole table is scanned and
//! compared instead.
//!
//! Now and then, and after every check that finds the engine moved a file down a
//! level since the last one (a trivial move: one manifest edit deletes and adds the
//! same file), the database is settled (flush, compactions, uploads), closed and
//! reopened, and [`invariants::check_reopen`] compares its files before and after:
//! the manifest must bring back every file at its level, and remember every upload.
//!
//! The run ends with a flush, a full compaction and such a reopen, each followed by
//! a full check, then closes the database and audits its object store
//! ([`crate::stress::store_audit`]). The first failure stops the run.

mod checker;
pub mod invariants;
pub mod workload;

use std::ops::Bound;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_lite::future::block_on;
use terrace::Db;
use terrace_tiering::clock::{fresh_seed, now, seeded_rng};

use self::checker::Checker;
use self::workload::draw;
use super::report::CompactionReport;
use super::small_db::SmallDbFlags;
use super::store_audit;
use super::watchdog::Watchdog;

/// Flags of `terrace-stress compaction`.
#[derive(Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct CompactionFlags {
    /// Operations to run.
    #[arg(long, default_value_t = 50_000)]
    pub ops: u64,
    /// Seed (default: a fresh one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Database directory (default: a temporary directory). It must not hold a
    /// database.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Distinct keys (enough that L1 overflows into L2 and files move down).
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u32,
    /// Run a check every this many operations.
    #[arg(long, default_value_t = 1000)]
    pub check_every: u64,
    /// Keys read per sampled check (as many again are recently deleted keys).
    #[arg(long, default_value_t = 64)]
    pub sample_keys: usize,
    /// Print progress every this many operations (0: never).
    #[arg(long, default_value_t = 10_000)]
    pub progress_every: u64,
    /// A stretch of work between two checks that takes longer than this is a hang.
    #[arg(long, default_value_t = 300)]
    pub hang_timeout_secs: u64,
    /// Database and store settings.
    #[command(flatten)]
    pub small_db: SmallDbFlags,
}

/// The outcome of a compaction run.
#[derive(Debug)]
pub struct CompactionOutcome {
    /// The report line.
    pub report: CompactionReport,
    /// What failed, if anything did.
    pub failure: Option<String>,
}

/// One of the closing steps of a run.
type Step = fn(&mut Checker) -> anyhow::Result<()>;

/// The failure message of `what` with its violations.
fn failed(seed: u64, what: &str, found: &[String]) -> String {
    let mut msg = format!("seed {seed}: {what}: {} violations", found.len());
    for v in found.iter().take(20) {
        msg.push_str(&format!("\n  {v}"));
    }
    if found.len() > 20 {
        msg.push_str(&format!("\n  ... and {} more", found.len() - 20));
    }
    msg
}

/// Runs the compaction stress. Progress goes to stdout; the caller prints the report.
pub fn run(flags: &CompactionFlags) -> anyhow::Result<CompactionOutcome> {
    anyhow::ensure!(flags.key_space > 0, "--key_space must be positive");
    anyhow::ensure!(flags.check_every > 0, "--check_every must be positive");
    let seed = flags.seed.unwrap_or_else(fresh_seed);
    let (temp, dir) = match &flags.db {
        Some(d) => {
            anyhow::ensure!(
                !d.join("TERRACE-META").exists(),
                "{} already holds a database; the model starts empty",
                d.display()
            );
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("terrace-compaction-")
                .tempdir()
                .context("creating a temporary directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let mut opts = flags.small_db.options(&dir, seed);
    opts.l0_compaction_trigger = 2;
    println!(
        "terrace-stress compaction: seed {seed} (replay with --seed={seed}) ops {} key space {} \
         shards {} store errors {} latency 0..={} ms, local budget {} B, in {}",
        flags.ops,
        flags.key_space,
        flags.small_db.shards,
        flags.small_db.object_store_error_rate,
        flags.small_db.object_store_latency_ms,
        flags.small_db.local_disk_budget,
        dir.display()
    );
    let start = now();
    let db = block_on(Db::open(opts.clone())).context("opening")?;
    let mut c = Checker::new(db, opts, flags.key_space, flags.sample_keys, seed)?;
    let mut rng = seeded_rng(seed);
    let mut failure = None;
    let mut violations = 0u64;
    let mut ops = 0u64;
    let hang = Duration::from_secs(flags.hang_timeout_secs);
    let mut guard = Watchdog::arm(hang, format!("operations from #0 (seed {seed})"));

    for i in 0..flags.ops {
        let op = draw(&mut rng, i, flags.key_space, flags.small_db.max_value_bytes);
        let periodic = (i + 1).is_multiple_of(flags.check_every);
        let step = c.apply(&op).and_then(|full_check| {
            if !(full_check || periodic) {
                return Ok(Vec::new());
            }
            let full = full_check || ((i + 1) / flags.check_every).is_multiple_of(10);
            let found = c.check(full)?;
            if !found.is_empty() || c.moves_seen == 0 {
                return Ok(found);
            }
            // A file moved down a level by a manifest edit alone: the reopen must
            // bring it back where it is now, uploaded if it was.
            c.reopen_violations = c
                .reopen_and_compare()
                .context("settle, close and reopen after a trivial move")?;
            c.check(true)
        });
        ops += 1;
        let what = || format!("operation #{i} ({op})");
        match step {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                failure = Some(failed(seed, &format!("check after {}", what()), &found));
                violations += found.len() as u64;
                break;
            }
            Err(e) => {
                failure = Some(failed(seed, &what(), &[format!("{e:#}")]));
                violations += 1;
                break;
            }
        }
        if periodic {
            drop(guard);
            guard = Watchdog::arm(hang, format!("operations from #{} (seed {seed})", i + 1));
        }
        if flags.progress_every > 0 && ops.is_multiple_of(flags.progress_every) {
            println!(
                "  {ops}/{} ops, {} checks, {} reopens, {} files seen, {} live keys, {:.1} s",
                flags.ops,
                c.checks,
                c.reopens,
                c.files_seen.len(),
                c.model.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    if failure.is_none() {
        // Settle, compact everything, and come back from a reopen, checking each.
        let steps: [(&str, Step); 3] = [
            ("flush and wait for compactions", |c| {
                let db = c.db()?;
                block_on(db.flush())?;
                block_on(db.wait_for_compactions())?;
                Ok(())
            }),
            ("compact everything", |c| {
                block_on(c.db()?.compact_range(Bound::Unbounded, Bound::Unbounded))?;
                Ok(())
            }),
            ("close and reopen", |c| {
                let found = c.reopen_and_compare()?;
                c.reopen_violations.extend(found);
                Ok(())
            }),
        ];
        for (what, step) in steps {
            drop(guard);
            guard = Watchdog::arm(hang, format!("{what} (seed {seed})"));
            let found = match step(&mut c).and_then(|()| c.check(true)) {
                Ok(found) => found,
                Err(e) => vec![format!("{e:#}")],
            };
            if !found.is_empty() {
                failure = Some(failed(seed, what, &found));
                violations += found.len() as u64;
                break;
            }
        }
    }
    drop(guard);
    c.note_engine_stats();
    let e = c.engine;
    println!(
        "terrace-stress compaction: the engine did {} flushes, {} compactions, {} trivial \
         moves, {} uploads ({} failed attempts), {} local drops, {} remote reads, {} reopens; \
         {} faults injected",
        e.flushes,
        e.compactions,
        e.trivial_moves,
        e.uploads,
        e.upload_failures,
        e.local_drops,
        e.remote_reads,
        c.reopens,
        e.faults
    );
    // Settled by the last step: no compaction changes the files before the close.
    let final_files = match (&failure, &c.db) {
        (None, Some(db)) => block_on(db.live_files()).ok(),
        _ => None,
    };
    if let Some(db) = c.db.take() {
        if let Err(e) = block_on(db.close()) {
            if failure.is_none() {
                failure = Some(failed(seed, "closing", &[e.to_string()]));
                violations += 1;
            }
        }
    }
    if let Some(files) = final_files {
        let audit = store_audit::audit(&dir.join(terrace::EMBEDDED_STORE_DIR), &files);
        println!("terrace-stress compaction: {audit}");
        if !audit.problems.is_empty() && failure.is_none() {
            let found: Vec<String> = audit.problems.iter().map(|p| p.to_string()).collect();
            violations += found.len() as u64;
            failure = Some(failed(
                seed,
                "auditing the object store after the close",
                &found,
            ));
        }
    }
    if let Some(f) = &failure {
        println!("terrace-stress compaction: FAILED: {f}");
        if let Some(t) = temp {
            println!(
                "terrace-stress compaction: the database is kept in {}",
                t.keep().display()
            );
        }
    }
    Ok(CompactionOutcome {
        report: CompactionReport {
            ops,
            checks: c.checks,
            files_seen: c.files_seen.len() as u64,
            violations,
            seconds: start.elapsed().as_secs_f64(),
        },
        failure,
    })
}
