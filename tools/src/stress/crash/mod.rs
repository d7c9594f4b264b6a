//! `terrace-stress crash`: kill -9 a writer again and again, and check after every
//! kill that the database recovered exactly what it promised.
//!
//! ```text
//! parent (run)                          child (crash-child, one per round)
//!   spawn child --start=N  ───────────►  Db::open, then operations N, N+1, ...
//!                          ◄── stdout ─  opened / reserve E / durable D / phase ...
//!   SIGKILL after a seeded delay  ──╳
//!   Db::open, multi_get every key, scan, close
//!   verify: per key and per shard prefix (verify.rs)
//!   model := recovered state; N := E; next round
//! ```
//!
//! The workload is a pure function of the seed and the operation index
//! ([`workload`]), so the parent knows every operation the child may have issued
//! (`start..end`) from the `reserve` lines alone; `durable` lines say what must have
//! survived. The recovered state becomes the model of the next round, whose child
//! reopens the database and carries on from operation `end`, so operation indices,
//! and therefore values, are never reused.
//!
//! With `--checkpoints` ([`checkpoints`]) durable means "in a committed checkpoint":
//! the child also checkpoints, releases checkpoints and collects garbage, and after
//! the kill the parent judges the store's checkpoints and restores the newest.
//!
//! Replaying: `--seed` fixes the operations, the kill delays and the injected faults.
//! Where in the workload a kill lands still depends on timing, so a failure replays
//! statistically, not exactly; the directory of a failed run is kept.

pub mod checkpoints;
pub mod child;
pub mod heard;
pub mod protocol;
pub mod read_back;
pub mod supervise;
pub mod verify;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::Rng;
use terrace_tiering::clock::{fresh_seed, now, seeded_rng};

use self::child::{Sabotage, SEED_KILL, SEED_PARENT_FAULTS};
use self::heard::{Heard, Observed};
use self::read_back::ReadBack;
use self::supervise::End;
use self::verify::{Problem, Round, Verdict, Wrong};
use self::workload::Workload;
use super::report::{CheckpointCounts, CrashReport};
use super::small_db::{derive_seed, SmallDbFlags};
use super::store_audit::{self, StoreAudit};
use super::watchdog::Watchdog;

/// Flags of `terrace-stress crash`.
#[derive(Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct CrashFlags {
    /// Children to kill (rounds).
    #[arg(long, default_value_t = 20)]
    pub kills: u64,
    /// Master seed (default: a fresh one, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Database directory (default: a temporary directory). It must not hold a
    /// database: the model starts empty.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Distinct keys; every round reads all of them back.
    #[arg(long, default_value_t = 3000)]
    pub key_space: u32,
    /// Shortest time from spawning a child to killing it.
    #[arg(long, default_value_t = 20)]
    pub min_kill_ms: u64,
    /// Longest time from spawning a child to killing it.
    #[arg(long, default_value_t = 1500)]
    pub max_kill_ms: u64,
    /// Keep the temporary directory after a successful run too (a failed run always
    /// keeps it and prints its path).
    #[arg(long)]
    pub keep: bool,
    /// Print a progress line every this many kills (0: never).
    #[arg(long, default_value_t = 10)]
    pub progress_every: u64,
    /// A read-back that takes longer than this is a hang: the run stops with exit 2.
    #[arg(long, default_value_t = 300)]
    pub verify_timeout_secs: u64,
    /// Checkpoint mode: each child also writes to an object store outside its
    /// database directory (`file://<run>/store`), takes checkpoints with increasing
    /// ids, releases one now and then and collects garbage; after each kill the
    /// parent checks which checkpoints the store holds, restores the newest (into a
    /// fresh directory, or one round in four reopens the old one), requires exactly
    /// the state of a checkpoint that may have committed, checks one older retained
    /// checkpoint too, and the next child carries on from what was restored. `--db`
    /// is then the run's directory (`store/`, `db-NNNN/`).
    #[arg(long)]
    pub checkpoints: bool,
    /// Checkpoint mode: one restore in this many goes into another shard count
    /// (`1..=--rescale_max_shards`, seeded), and one reopen of the old directory in
    /// this many re-splits it into another count (`Options::resplit_on_open`); the
    /// next child continues with the new count. 0: never.
    #[arg(long, default_value_t = 3)]
    pub rescale_one_in: u32,
    /// Checkpoint mode: the largest shard count a rescale picks.
    #[arg(long, default_value_t = 4)]
    pub rescale_max_shards: u32,
    /// Checkpoint mode: `Options::gc_min_age` of the children, in milliseconds
    /// (small, so that collections really delete).
    #[arg(long, default_value_t = 200)]
    pub gc_min_age_ms: u64,
    /// Damage the database on purpose, to prove the checker fails (self-test).
    #[arg(long, value_enum, hide = true)]
    pub sabotage: Option<Sabotage>,
    /// Database and store settings.
    #[command(flatten)]
    pub small_db: SmallDbFlags,
}

/// The outcome of a crash run.
#[derive(Debug)]
pub struct CrashOutcome {
    /// The report line.
    pub report: CrashReport,
    /// Why the run failed, if it did (lost or corrupt data, an engine error, a child
    /// that died by itself).
    pub failure: Option<String>,
    /// The directory, if it was kept.
    pub kept: Option<PathBuf>,
}

/// Read-backs tried per round before an error that is not corruption fails the run.
const READ_BACK_ATTEMPTS: u32 = 3;

/// Problems printed in a failure message.
const PROBLEMS_SHOWN: usize = 20;

struct Dir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl Dir {
    fn new(flags: &CrashFlags) -> anyhow::Result<Dir> {
        match &flags.db {
            Some(d) => {
                if d.join("TERRACE-META").exists() {
                    anyhow::bail!(
                        "{} already holds a database; the model starts empty",
                        d.display()
                    );
                }
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                Ok(Dir {
                    path: d.clone(),
                    temp: None,
                })
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("terrace-crash-")
                    .tempdir()
                    .context("creating a temporary directory")?;
                Ok(Dir {
                    path: t.path().to_path_buf(),
                    temp: Some(t),
                })
            }
        }
    }

    /// Keeps the directory (or lets a temporary one go); returns its path if kept.
    fn finish(self, keep: bool) -> Option<PathBuf> {
        match self.temp {
            Some(t) if !keep => {
                drop(t);
                None
            }
            Some(t) => Some(t.keep()),
            None => Some(self.path),
        }
    }
}

/// A kill delay within `--min_kill_ms..=--max_kill_ms`. One kill in four is drawn
/// from the first eighth of the range, so that opening, the first flushes and the
/// uploads queued again after a reopen are interrupted often too.
fn kill_delay_ms(seed: u64, flags: &CrashFlags) -> u64 {
    let mut rng = seeded_rng(seed);
    let (lo, hi) = (flags.min_kill_ms, flags.max_kill_ms);
    if rng.gen_bool(0.25) {
        rng.gen_range(lo..=lo + (hi - lo) / 8)
    } else {
        rng.gen_range(lo..=hi)
    }
}

/// The last lines of a file, for a failure message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n    ")
}

/// The parent between rounds: the model is the state the last read-back verified,
/// and the next child starts at `next_op`.
struct Parent<'a> {
    flags: &'a CrashFlags,
    seed: u64,
    exe: PathBuf,
    db: PathBuf,
    stderr: PathBuf,
    workload: Workload,
    model: Vec<Option<u64>>,
    next_op: u64,
    report: CrashReport,
    observed: Observed,
    store: StoreAudit,
    start: Instant,
    /// Checkpoint mode's state.
    ckpt: Option<checkpoints::CheckpointRun>,
    /// The shard count of the database the next child opens (checkpoint mode
    /// changes it when it rescales).
    shards: u32,
}

impl Parent<'_> {
    fn child_args(&self, round: u64) -> Vec<String> {
        let mut args = vec![
            "crash-child".to_string(),
            format!("--db={}", self.db.display()),
            format!("--seed={}", self.seed),
            format!("--round={round}"),
            format!("--start={}", self.next_op),
            format!("--key_space={}", self.flags.key_space),
        ];
        let small_db = SmallDbFlags {
            shards: self.shards,
            ..self.flags.small_db.clone()
        };
        args.extend(small_db.to_args());
        if let Some(c) = &self.ckpt {
            args.push(format!("--store={}", c.store.display()));
            args.push(format!("--first_checkpoint={}", c.book.next_id));
            args.push(format!("--gc_min_age_ms={}", self.flags.gc_min_age_ms));
        }
        if let Some(s) = self.flags.sabotage {
            if let Some(v) = clap::ValueEnum::to_possible_value(&s) {
                args.push(format!("--sabotage={}", v.get_name()));
            }
        }
        args
    }

    /// Options of a database of this run in `dir`, with the current shard count.
    fn options(&self, dir: &Path, fault_seed: u64) -> terrace::Options {
        let mut o = match &self.ckpt {
            Some(c) => checkpoints::options(
                &self.flags.small_db,
                dir,
                &c.store,
                fault_seed,
                self.flags.gc_min_age_ms,
            ),
            None => self.flags.small_db.options(dir, fault_seed),
        };
        o.shards = self.shards;
        o
    }

    /// The directory of the object store.
    fn store_dir(&self) -> PathBuf {
        match &self.ckpt {
            Some(c) => c.store.clone(),
            None => self.db.join(terrace::EMBEDDED_STORE_DIR),
        }
    }

    /// Opens, reads and closes the database under the watchdog. The parent's store
    /// misbehaves too: an error that is not corruption (a request that failed all
    /// its retries) is tried again with fresh faults.
    /// With `resplit`, opens with that shard count and `Options::resplit_on_open`.
    fn read_back(&self, round: u64, resplit: Option<u32>) -> Result<ReadBack, terrace::Error> {
        let _guard = Watchdog::arm(
            Duration::from_secs(self.flags.verify_timeout_secs),
            format!(
                "reading back the database in {} after round {round} (seed {})",
                self.db.display(),
                self.seed
            ),
        );
        let mut attempt = 0;
        loop {
            let faults = derive_seed(self.seed, round, SEED_PARENT_FAULTS + 100 * attempt);
            let mut opts = self.options(&self.db, faults);
            if let Some(n) = resplit {
                opts.shards = n;
                opts.resplit_on_open = true;
            }
            match read_back::read_back(&opts, self.flags.key_space) {
                Err(e)
                    if e.kind() != terrace::ErrorKind::Corruption
                        && attempt + 1 < u64::from(READ_BACK_ATTEMPTS) =>
                {
                    println!("  round {round}: read-back failed ({e}); trying again");
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Runs round `round`: a child, its kill, the read-back and the verdict.
    /// `Ok(Err(why))` is a failed round.
    fn round(&mut self, round: u64) -> anyhow::Result<Result<(), String>> {
        let killed = match self.run_child(round)? {
            Ok(k) => k,
            Err(why) => return Ok(Err(why)),
        };
        if self.ckpt.is_some() {
            return self.checkpoint_round(round, &killed);
        }
        let verdict = match self.reopen_and_check(round, &killed, None) {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        };
        self.model = verdict.recovered;
        self.next_op = killed.ops.end;
        let cuts: Vec<String> = verdict
            .cuts
            .iter()
            .map(|c| c.map_or("-".into(), |(lo, _)| format!("#{lo}")))
            .collect();
        self.progress(
            round,
            &format!(
                "{}, shards recovered through {}",
                killed.what,
                cuts.join(",")
            ),
        );
        Ok(Ok(()))
    }

    /// Runs the child of round `round` and kills it. `Ok(Err(why))`: it exited by
    /// itself.
    fn run_child(&mut self, round: u64) -> anyhow::Result<Result<Killed, String>> {
        let seed = self.seed;
        let kill_ms = kill_delay_ms(derive_seed(seed, round, SEED_KILL), self.flags);
        let child = supervise::run_and_kill(
            &self.exe,
            &self.child_args(round),
            Duration::from_millis(kill_ms),
            &self.stderr,
        )?;
        let heard = Heard::from(&child);
        for g in &child.garbage {
            println!("  round {round}: the child wrote an unexpected line: {g:?}");
        }
        let killed_at = match child.end {
            End::Killed(at) => at,
            End::Exited(status) => {
                self.report.corrupt += heard.corruption_errors;
                return Ok(Err(format!(
                    "seed {seed} round {round}: the child exited by itself ({status}) before \
                     the kill at {kill_ms} ms; errors it reported: {:?}\n  its stderr ({}) ends \
                     with:\n    {}",
                    heard.errors,
                    self.stderr.display(),
                    tail(&self.stderr, 20)
                )));
            }
        };
        self.report.kills += 1;
        let phase = self.observed.kill(round, &heard, killed_at);
        let ops = Round {
            start: self.next_op,
            durable: heard.durable,
            end: heard.end.unwrap_or(self.next_op).max(self.next_op),
        };
        let what = format!(
            "the child was killed at {} ms ({phase}); it issued operations #{}..#{} (durable \
             through {})",
            killed_at.as_millis(),
            ops.start,
            ops.end,
            ops.durable
                .map_or("none of them".to_string(), |d| format!("#{d}")),
        );
        Ok(Ok(Killed { heard, ops, what }))
    }

    /// Reopens the database the child used and checks it against what the child
    /// made durable by flushing. Returns the verdict, or why the round failed.
    /// With `resplit`, the reopen re-splits the directory into that many shards
    /// (the shards the child wrote are what the prefix check judges: each old shard
    /// must still come back as a prefix of its history), and the next child
    /// continues with that count.
    fn reopen_and_check(
        &mut self,
        round: u64,
        killed: &Killed,
        resplit: Option<u32>,
    ) -> Result<Verdict, String> {
        let seed = self.seed;
        let what = &killed.what;
        let read = match self.read_back(round, resplit) {
            Ok(r) => r,
            Err(e) => {
                if e.kind() == terrace::ErrorKind::Corruption {
                    self.report.corrupt += 1;
                }
                return Err(format!(
                    "seed {seed} round {round}: reopening and reading the database failed after \
                     {what}: {e}"
                ));
            }
        };
        self.report.reopens += 1;
        self.report.keys_verified += u64::from(self.flags.key_space);
        // The prefix check is per shard the child wrote, which a re-split does not
        // change: judge by the old layout.
        let written_shard_of = match resplit {
            Some(_) => shard_of_keys(self.flags.key_space, self.shards),
            None => read.shard_of.clone(),
        };
        let verdict = verify::check(
            &self.workload,
            &self.model,
            &killed.ops,
            &read.found,
            &written_shard_of,
            self.shards,
        );
        let mut problems: Vec<Problem> = verdict.problems.clone();
        problems.extend(read.problems);
        self.store = store_audit::audit(&self.store_dir(), &read.files);
        problems.extend(self.store.problems.iter().cloned());
        let lost = problems.iter().filter(|p| p.wrong == Wrong::Lost).count() as u64;
        let corrupt = problems.len() as u64 - lost;
        if !problems.is_empty() {
            return Err(self.failure(
                round,
                lost,
                corrupt,
                killed,
                problems.iter().map(ToString::to_string),
            ));
        }
        if let Some(n) = resplit {
            self.shards = n;
        }
        Ok(verdict)
    }

    /// Counts `lost` and `corrupt` and words the failure of round `round`.
    fn failure(
        &mut self,
        round: u64,
        lost: u64,
        corrupt: u64,
        killed: &Killed,
        problems: impl ExactSizeIterator<Item = String>,
    ) -> String {
        self.report.lost += lost;
        self.report.corrupt += corrupt;
        let mut msg = format!(
            "seed {} round {round}: {lost} lost, {corrupt} corrupt after {}",
            self.seed, killed.what
        );
        for s in &killed.heard.sabotage {
            msg.push_str(&format!("\n  sabotage: {s}"));
        }
        let n = problems.len();
        for p in problems.take(PROBLEMS_SHOWN) {
            msg.push_str(&format!("\n  {p}"));
        }
        if n > PROBLEMS_SHOWN {
            msg.push_str(&format!("\n  ... and {} more", n - PROBLEMS_SHOWN));
        }
        msg
    }

    /// Prints a progress line after round `round` every `--progress_every` kills.
    fn progress(&self, round: u64, last: &str) {
        let done = round + 1;
        let every = self.flags.progress_every;
        if every > 0 && done.is_multiple_of(every) {
            println!(
                "  {done}/{} kills; last: {last}; {} ops, {} durable acks, {} live keys, {} keys \
                 verified, {:.1} s",
                self.flags.kills,
                self.next_op,
                self.observed.durable_acks,
                self.model.iter().filter(|s| s.is_some()).count(),
                self.report.keys_verified,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Per key of `0..key_space`, its shard in a database of `shards` shards over all
/// the key groups of [`SmallDbFlags::options`].
fn shard_of_keys(key_space: u32, shards: u32) -> Vec<u32> {
    let groups = SmallDbFlags::MAX_KEY_GROUPS;
    (0..key_space)
        .map(|k| {
            let kg = terrace::key::key_group(workload::key_name(k).as_bytes(), groups);
            terrace::key::shard_for_key_group(kg, shards, terrace::KeyGroupRange::all(groups))
        })
        .collect()
}

/// A killed child: what it said, the operations it may have issued, and a
/// description for messages.
struct Killed {
    heard: Heard,
    ops: Round,
    what: String,
}

/// Runs the crash loop. Progress goes to stdout; the caller prints the report.
pub fn run(flags: &CrashFlags) -> anyhow::Result<CrashOutcome> {
    anyhow::ensure!(
        flags.min_kill_ms <= flags.max_kill_ms,
        "--min_kill_ms {} is above --max_kill_ms {}",
        flags.min_kill_ms,
        flags.max_kill_ms
    );
    anyhow::ensure!(flags.key_space > 0, "--key_space must be positive");
    let seed = flags.seed.unwrap_or_else(fresh_seed);
    let dir = Dir::new(flags)?;
    let ckpt = if flags.checkpoints {
        Some(checkpoints::CheckpointRun::new(&dir.path)?)
    } else {
        None
    };
    let mut parent = Parent {
        flags,
        seed,
        exe: std::env::current_exe().context("finding this program's path")?,
        db: ckpt.as_ref().map_or(dir.path.clone(), |c| c.db_dir(0)),
        stderr: dir.path.join("crash-child.stderr"),
        workload: Workload {
            seed,
            key_space: flags.key_space,
            max_value_bytes: flags.small_db.max_value_bytes,
        },
        model: vec![None; flags.key_space as usize],
        next_op: 0,
        report: CrashReport::default(),
        observed: Observed::new(ckpt.is_some()),
        store: StoreAudit::default(),
        start: now(),
        ckpt,
        shards: flags.small_db.shards,
    };
    if let Some(c) = parent.ckpt.as_mut() {
        c.rescales.counts.insert(flags.small_db.shards);
    }
    println!(
        "terrace-stress crash: seed {seed} (replay with --seed={seed}) kills {} key space {} \
         shards {} kill after {}..={} ms, store errors {} latency 0..={} ms, local budget {} B{}, in {}",
        flags.kills,
        flags.key_space,
        flags.small_db.shards,
        flags.min_kill_ms,
        flags.max_kill_ms,
        flags.small_db.object_store_error_rate,
        flags.small_db.object_store_latency_ms,
        flags.small_db.local_disk_budget,
        if flags.checkpoints {
            format!(", checkpoints (gc min age {} ms)", flags.gc_min_age_ms)
        } else {
            String::new()
        },
        dir.path.display()
    );

    let mut failure = None;
    for round in 0..flags.kills {
        let outcome = parent.round(round);
        parent.report.seconds = parent.start.elapsed().as_secs_f64();
        if let Err(why) = outcome? {
            failure = Some(why);
            break;
        }
    }
    if let Some(c) = &parent.ckpt {
        parent.report.checkpoint = Some(CheckpointCounts {
            restores: c.restores,
            checkpoints_verified: c.verified,
        });
        println!("terrace-stress crash: {}", c.rescales);
    }
    println!("{}", parent.observed);
    println!("terrace-stress crash: {}", parent.store);
    let kept = match &failure {
        Some(f) => {
            println!("terrace-stress crash: FAILED: {f}");
            let kept = dir.finish(true);
            if let Some(k) = &kept {
                println!(
                    "terrace-stress crash: the database is kept in {} (last child's stderr: {})",
                    k.display(),
                    parent.stderr.display()
                );
            }
            kept
        }
        None => dir.finish(flags.keep),
    };
    Ok(CrashOutcome {
        report: parent.report,
        failure,
        kept,
    })
}
