//! `terrace-stress compaction`: heavy overwrites and deletes on tiny levels (L0
//! trigger 2) with a faulty object store, checking the LSM layout and the answers
//! continuously.
//!
//! One process, one database. The workload is drawn from a seeded RNG and mirrored
//! in a [`Model`]. Every `--check_every` operations a *check* runs:
//! [`invariants::check_layout`] on `Db::live_files`, then a `multi_get` of sampled
//! keys (random ones and recently deleted ones, to catch resurrections) against the
//! model; every tenth check, and after every `compact_range` and
//! `wait_for_compactions`, the whole table is scanned and compared instead. Now and
//! then the database is settled (flush, compactions, uploads), closed and reopened,
//! and [`invariants::check_reopen`] compares its files before and after: the
//! manifest must bring back every file at its level, and remember every upload.
//! This also happens after every check that finds the engine has moved a file down
//! a level since the last one (a trivial move: one manifest edit deletes and adds
//! the same file). The
//! run ends with a flush, a full compaction, and such a reopen, each followed by a
//! full check. The first failed check stops the run.

pub mod invariants;

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_lite::future::block_on;
use rand::rngs::SmallRng;
use rand::Rng;
use terrace::{Db, Options, TableId};
use terrace_tiering::clock::{fresh_seed, now, seeded_rng};

use self::invariants::{check_layout, check_reopen, Layout};
use super::crash::workload::{key_name, value};
use super::model::Model;
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

/// Recently deleted keys remembered for resurrection probes.
const RECENT_DELETES: usize = 256;

#[derive(Clone, Debug)]
enum Op {
    Put(u32, Vec<u8>),
    Delete(u32),
    /// Deletes `len` consecutive key indices from the first.
    DeleteRun(u32, u32),
    Flush,
    CompactRange(Option<u32>, Option<u32>),
    WaitForCompactions,
    /// Settle (flush, compactions, uploads), close, reopen, compare the files.
    Reopen,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = |k: &Option<u32>| k.map_or("-".into(), key_name);
        match self {
            Op::Put(k, v) => write!(f, "put {} ({} bytes)", key_name(*k), v.len()),
            Op::Delete(k) => write!(f, "delete {}", key_name(*k)),
            Op::DeleteRun(k, n) => write!(f, "delete key indices {k}..{}", k + n),
            Op::Flush => f.write_str("flush"),
            Op::CompactRange(a, b) => write!(f, "compact_range [{}, {}]", range(a), range(b)),
            Op::WaitForCompactions => f.write_str("wait_for_compactions"),
            Op::Reopen => f.write_str("settle, close and reopen"),
        }
    }
}

fn draw(rng: &mut SmallRng, index: u64, flags: &CompactionFlags) -> Op {
    let key = rng.gen_range(0..flags.key_space.max(1));
    match rng.gen_range(0..10_000u32) {
        0..=5999 => {
            let room = flags.small_db.max_value_bytes.saturating_sub(32);
            let padding = match rng.gen_range(0..100u32) {
                0 => rng.gen_range(room / 4..=room),
                1..=9 => rng.gen_range(0..=room.min(4096)),
                _ => rng.gen_range(0..=room.min(800)),
            };
            Op::Put(key, value(index, key, padding))
        }
        6000..=9919 => Op::Delete(key),
        9920..=9969 => Op::DeleteRun(key, rng.gen_range(4..32)),
        9970..=9989 => Op::Flush,
        9990..=9993 => {
            let other = rng.gen_range(0..flags.key_space.max(1));
            let (a, b) = (key.min(other), key.max(other));
            Op::CompactRange(
                rng.gen_bool(0.7).then_some(a),
                rng.gen_bool(0.7).then_some(b),
            )
        }
        9994..=9996 => Op::WaitForCompactions,
        _ => Op::Reopen,
    }
}

struct Checker {
    db: Option<Db>,
    opts: Options,
    table: TableId,
    layout: Layout,
    model: Model,
    recent_deletes: VecDeque<u32>,
    key_space: u32,
    sample_keys: usize,
    rng: SmallRng,
    files_seen: HashSet<(u32, u64)>,
    /// The engine's count of trivial moves at the last check (since the open).
    moves_counted: u64,
    /// Moves noticed since the last reopen.
    moves_seen: u64,
    checks: u64,
    reopens: u64,
    /// Engine counters of the sessions closed so far (counters restart at open).
    engine: EngineTotals,
    /// Found by the last reopen, reported by the next check.
    reopen_violations: Vec<String>,
}

impl Checker {
    fn db(&self) -> anyhow::Result<&Db> {
        self.db.as_ref().context("database is not open")
    }

    fn apply(&mut self, op: &Op) -> anyhow::Result<bool> {
        let t = self.table;
        let db = self.db()?.clone();
        let mut full_check = false;
        match op {
            Op::Put(k, v) => {
                block_on(db.put(t, key_name(*k).as_bytes(), v))?;
                self.model.put(0, key_name(*k).as_bytes(), v);
            }
            Op::Delete(k) => {
                block_on(db.delete(t, key_name(*k).as_bytes()))?;
                self.deleted(*k);
            }
            Op::DeleteRun(first, len) => {
                for k in *first..(*first + len).min(self.key_space) {
                    block_on(db.delete(t, key_name(k).as_bytes()))?;
                    self.deleted(k);
                }
            }
            Op::Flush => block_on(db.flush())?,
            Op::CompactRange(lo, hi) => {
                let (lo, hi) = (lo.map(key_name), hi.map(key_name));
                fn bound(k: &Option<String>) -> Bound<&[u8]> {
                    k.as_ref()
                        .map_or(Bound::Unbounded, |k| Bound::Included(k.as_bytes()))
                }
                block_on(db.compact_range(bound(&lo), bound(&hi)))?;
                full_check = true;
            }
            Op::WaitForCompactions => {
                block_on(db.wait_for_compactions())?;
                full_check = true;
            }
            Op::Reopen => {
                let found = self.reopen_and_compare()?;
                self.reopen_violations.extend(found);
                full_check = true;
            }
        }
        Ok(full_check)
    }

    /// Settles the database so nothing changes its files during the close, closes
    /// it, reopens it and compares the files before and after.
    fn reopen_and_compare(&mut self) -> anyhow::Result<Vec<String>> {
        let db = self.db()?.clone();
        block_on(db.flush())?;
        block_on(db.wait_for_compactions())?;
        block_on(db.wait_for_uploads())?;
        let before = block_on(db.live_files())?;
        drop(db);
        self.reopen()?;
        self.reopens += 1;
        self.moves_seen = 0;
        self.moves_counted = 0;
        let after = block_on(self.db()?.live_files())?;
        Ok(check_reopen(&before, &after))
    }

    fn deleted(&mut self, k: u32) {
        self.model.delete(0, key_name(k).as_bytes());
        if self.recent_deletes.len() == RECENT_DELETES {
            self.recent_deletes.pop_front();
        }
        self.recent_deletes.push_back(k);
    }

    /// One check: the layout, then sampled keys or (`full`) the whole table.
    /// Returns the violations found.
    fn check(&mut self, full: bool) -> anyhow::Result<Vec<String>> {
        self.checks += 1;
        let db = self.db()?.clone();
        let files = block_on(db.live_files())?;
        for f in &files {
            self.files_seen.insert((f.shard, f.id));
        }
        let moves = block_on(db.stats())?.total().trivial_moves;
        self.moves_seen += moves.saturating_sub(self.moves_counted);
        self.moves_counted = moves;
        let mut out = std::mem::take(&mut self.reopen_violations);
        out.extend(check_layout(&files, &self.layout));
        if full {
            let got =
                block_on(db.scan(self.table, Bound::Unbounded, Bound::Unbounded, usize::MAX))?;
            let want = self
                .model
                .scan(0, Bound::Unbounded, Bound::Unbounded, usize::MAX);
            if got != want {
                out.push(full_scan_difference(&got, &want));
            }
        } else {
            let mut keys: Vec<u32> = (0..self.sample_keys)
                .map(|_| self.rng.gen_range(0..self.key_space))
                .collect();
            keys.extend(self.recent_deletes.iter().rev().take(self.sample_keys));
            let names: Vec<String> = keys.iter().map(|&k| key_name(k)).collect();
            let got = block_on(db.multi_get(self.table, &names))?;
            for (name, v) in names.iter().zip(got) {
                let want = self.model.get(0, name.as_bytes());
                if v.as_ref() != want {
                    out.push(format!(
                        "key {name}: db has {}, model has {}",
                        describe(v.as_deref()),
                        describe(want.map(Vec::as_slice))
                    ));
                }
            }
        }
        Ok(out)
    }

    fn reopen(&mut self) -> anyhow::Result<()> {
        self.note_engine_stats();
        let db = self.db.take().context("database is not open")?;
        block_on(db.close()).context("closing")?;
        let db = block_on(Db::open(self.opts.clone())).context("reopening")?;
        self.table = db.table("default")?;
        self.db = Some(db);
        Ok(())
    }
}

/// Engine counters summed over sessions.
#[derive(Clone, Copy, Debug, Default)]
struct EngineTotals {
    flushes: u64,
    compactions: u64,
    trivial_moves: u64,
    uploads: u64,
    upload_failures: u64,
    local_drops: u64,
    remote_reads: u64,
    faults: u64,
}

impl Checker {
    /// Adds the open session's counters to the totals (call before closing).
    fn note_engine_stats(&mut self) {
        let Some(Ok(s)) = self.db.as_ref().map(|db| block_on(db.stats())) else {
            return;
        };
        let (t, e) = (s.total(), &mut self.engine);
        e.flushes += t.flushes;
        e.compactions += t.compactions;
        e.trivial_moves += t.trivial_moves;
        e.uploads += t.uploads;
        e.upload_failures += t.upload_failures;
        e.local_drops += t.local_drops;
        e.remote_reads += s.tier().remote_reads.requests;
        e.faults += s.faults_injected;
    }
}

/// "the value of put #12 to k000003" / "nothing" / raw bytes.
fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => match super::crash::workload::parse_header(v) {
            Some((op, key)) => format!("the value of put #{op} to {key} ({} bytes)", v.len()),
            None => format!("{} foreign bytes", v.len()),
        },
    }
}

fn full_scan_difference(got: &[(Vec<u8>, Vec<u8>)], want: &[(Vec<u8>, Vec<u8>)]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let entry = |e: Option<&(Vec<u8>, Vec<u8>)>| {
        e.map_or("the end".into(), |(k, v)| {
            format!("{} = {}", String::from_utf8_lossy(k), describe(Some(v)))
        })
    };
    format!(
        "full scan: db has {} keys, model {}; first difference at entry {i}: db {}, model {}",
        got.len(),
        want.len(),
        entry(got.get(i)),
        entry(want.get(i))
    )
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
    let mut c = Checker {
        table: db.table("default")?,
        db: Some(db),
        layout: Layout {
            shards: opts.shards,
            max_key_groups: opts.max_key_groups,
            num_levels: opts.num_levels,
        },
        opts,
        model: Model::new(1),
        recent_deletes: VecDeque::new(),
        key_space: flags.key_space,
        sample_keys: flags.sample_keys,
        rng: seeded_rng(seed ^ 0x5eed),
        files_seen: HashSet::new(),
        moves_counted: 0,
        moves_seen: 0,
        checks: 0,
        reopens: 0,
        engine: EngineTotals::default(),
        reopen_violations: Vec::new(),
    };
    let mut rng = seeded_rng(seed);
    let mut failure = None;
    let mut violations = 0u64;
    let mut ops = 0u64;
    let hang = Duration::from_secs(flags.hang_timeout_secs);
    let mut guard = Watchdog::arm(hang, format!("operations from #0 (seed {seed})"));

    for i in 0..flags.ops {
        let op = draw(&mut rng, i, flags);
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
        let audit = store_audit::audit(&dir, c.layout.shards, &files);
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
