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
//! Replaying: `--seed` fixes the operations, the kill delays and the injected faults.
//! Where in the workload a kill lands still depends on timing, so a failure replays
//! statistically, not exactly; the directory of a failed run is kept.

pub mod child;
pub mod protocol;
pub mod read_back;
pub mod supervise;
pub mod verify;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rand::Rng;
use terrace_tiering::clock::{fresh_seed, now, seeded_rng};

use self::child::{Sabotage, SEED_KILL, SEED_PARENT_FAULTS};
use self::protocol::{ChildLine, Phase};
use self::supervise::{ChildRun, End};
use self::verify::{Problem, Round, Wrong};
use self::workload::Workload;
use super::report::CrashReport;
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

/// What the parent heard from one child.
#[derive(Debug, Default)]
struct Heard {
    opened_at: Option<Duration>,
    end: Option<u64>,
    durable: Option<u64>,
    durable_acks: u64,
    phase: Option<Phase>,
    sabotage: Vec<String>,
    errors: Vec<String>,
    corruption_errors: u64,
    /// Time of the last sign of progress (open, a reservation, a durable flush) and
    /// the longest gap between two.
    progress_at: Option<Duration>,
    longest_gap: Duration,
}

impl Heard {
    fn from(run: &ChildRun) -> Heard {
        let mut h = Heard::default();
        for (at, line) in &run.lines {
            if matches!(
                line,
                ChildLine::Opened { .. } | ChildLine::Reserve { .. } | ChildLine::Durable { .. }
            ) {
                if let Some(prev) = h.progress_at {
                    h.longest_gap = h.longest_gap.max(at.saturating_sub(prev));
                }
                h.progress_at = Some(*at);
            }
            match line {
                ChildLine::Opened { .. } => h.opened_at = Some(*at),
                ChildLine::Reserve { end } => h.end = Some(h.end.map_or(*end, |e| e.max(*end))),
                ChildLine::Durable { op } => {
                    h.durable = Some(h.durable.map_or(*op, |d| d.max(*op)));
                    h.durable_acks += 1;
                }
                ChildLine::Phase(p) => h.phase = Some(*p),
                ChildLine::Sabotage { what } => h.sabotage.push(what.clone()),
                ChildLine::Error { kind, message } => {
                    if kind == "corruption" {
                        h.corruption_errors += 1;
                    }
                    h.errors.push(format!("{kind}: {message}"));
                }
            }
        }
        h
    }

    /// The longest the child went without progress once open, the stretch up to
    /// the kill included. A hang inside the engine shows up here, since the kill
    /// would otherwise hide it.
    fn longest_stall(&self, killed_at: Duration) -> Duration {
        self.progress_at
            .map_or(Duration::ZERO, |last| killed_at.saturating_sub(last))
            .max(self.longest_gap)
    }
}

/// Which phases kills interrupted (a kill may count in several).
#[derive(Debug, Default)]
struct PhaseTally {
    opening: u64,
    just_opened: u64,
    flush: u64,
    compaction: u64,
    upload: u64,
    local_drop: u64,
    writes_only: u64,
}

/// Read-backs tried per round before an error that is not corruption fails the run.
const READ_BACK_ATTEMPTS: u32 = 3;

/// A kill this soon after the child reported `opened` counts as "just opened".
const JUST_OPENED: Duration = Duration::from_millis(100);

impl PhaseTally {
    fn add(&mut self, heard: &Heard, killed_at: Duration) -> String {
        let Some(opened) = heard.opened_at else {
            self.opening += 1;
            return "opening".into();
        };
        let mut names = Vec::new();
        if killed_at.saturating_sub(opened) < JUST_OPENED {
            self.just_opened += 1;
            names.push("just opened");
        }
        let p = heard.phase.unwrap_or_default();
        for (on, count, name) in [
            (p.flush, &mut self.flush, "flush"),
            (p.compaction, &mut self.compaction, "compaction"),
            (p.upload, &mut self.upload, "upload"),
            (p.drop, &mut self.local_drop, "local drop"),
        ] {
            if on {
                *count += 1;
                names.push(name);
            }
        }
        if names.is_empty() {
            self.writes_only += 1;
            names.push("writes only");
        }
        names.join("+")
    }
}

impl std::fmt::Display for PhaseTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "opening {}, just opened {}, flush {}, compaction {}, upload {}, local drop {}, writes only {}",
            self.opening,
            self.just_opened,
            self.flush,
            self.compaction,
            self.upload,
            self.local_drop,
            self.writes_only
        )
    }
}

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
    let exe = std::env::current_exe().context("finding this program's path")?;
    let dir = Dir::new(flags)?;
    let db_path = dir.path.clone();
    let stderr_path = db_path.join("crash-child.stderr");
    let workload = Workload {
        seed,
        key_space: flags.key_space,
        max_value_bytes: flags.small_db.max_value_bytes,
    };
    println!(
        "terrace-stress crash: seed {seed} (replay with --seed={seed}) kills {} key space {} \
         shards {} kill after {}..={} ms, store errors {} latency 0..={} ms, local budget {} B, in {}",
        flags.kills,
        flags.key_space,
        flags.small_db.shards,
        flags.min_kill_ms,
        flags.max_kill_ms,
        flags.small_db.object_store_error_rate,
        flags.small_db.object_store_latency_ms,
        flags.small_db.local_disk_budget,
        db_path.display()
    );

    let start = now();
    let mut report = CrashReport::default();
    let mut phases = PhaseTally::default();
    let mut model: Vec<Option<u64>> = vec![None; flags.key_space as usize];
    let mut next_op = 0u64;
    let mut durable_acks = 0u64;
    let mut open_ms: Vec<u64> = Vec::new();
    // (stall, round, kill time)
    let mut longest_stall = (Duration::ZERO, 0u64, Duration::ZERO);
    let mut failure = None;
    let mut store = StoreAudit::default();

    for round in 0..flags.kills {
        let kill_ms = kill_delay_ms(derive_seed(seed, round, SEED_KILL), flags);
        let mut args = vec![
            "crash-child".to_string(),
            format!("--db={}", db_path.display()),
            format!("--seed={seed}"),
            format!("--round={round}"),
            format!("--start={next_op}"),
            format!("--key_space={}", flags.key_space),
        ];
        args.extend(flags.small_db.to_args());
        if let Some(s) = flags.sabotage {
            args.push(format!(
                "--sabotage={}",
                clap::ValueEnum::to_possible_value(&s)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            ));
        }
        let child =
            supervise::run_and_kill(&exe, &args, Duration::from_millis(kill_ms), &stderr_path)?;
        let heard = Heard::from(&child);
        for g in &child.garbage {
            println!("  round {round}: child wrote an unexpected line: {g:?}");
        }
        let killed_at = match child.end {
            End::Killed(at) => at,
            End::Exited(status) => {
                report.corrupt += heard.corruption_errors;
                failure = Some(format!(
                    "seed {seed} round {round}: the child exited by itself ({status}) before the kill at {kill_ms} ms; \
                     errors it reported: {:?}\n  its stderr ({}) ends with:\n    {}",
                    heard.errors,
                    stderr_path.display(),
                    tail(&stderr_path, 20)
                ));
                break;
            }
        };
        report.kills += 1;
        durable_acks += heard.durable_acks;
        open_ms.extend(heard.opened_at.map(|d| d.as_millis() as u64));
        let stall = heard.longest_stall(killed_at);
        if stall > longest_stall.0 {
            longest_stall = (stall, round, killed_at);
        }
        let phase = phases.add(&heard, killed_at);
        let round_ops = Round {
            start: next_op,
            durable: heard.durable,
            end: heard.end.unwrap_or(next_op).max(next_op),
        };

        let opts = flags
            .small_db
            .options(&db_path, derive_seed(seed, round, SEED_PARENT_FAULTS));
        let guard = Watchdog::arm(
            Duration::from_secs(flags.verify_timeout_secs),
            format!(
                "reading back the database in {} after round {round} (seed {seed})",
                db_path.display()
            ),
        );
        let mut read = read_back::read_back(&opts, flags.key_space);
        // The parent's store misbehaves too: an error that is not corruption (a
        // request that failed all its retries) is tried again with fresh faults.
        for attempt in 1..READ_BACK_ATTEMPTS {
            match &read {
                Err(e) if e.kind() != terrace::ErrorKind::Corruption => {
                    println!(
                        "  round {round}: read-back attempt {attempt} failed ({e}); trying again"
                    );
                    let opts = flags.small_db.options(
                        &db_path,
                        derive_seed(seed, round, SEED_PARENT_FAULTS + 100 * u64::from(attempt)),
                    );
                    read = read_back::read_back(&opts, flags.key_space);
                }
                _ => break,
            }
        }
        drop(guard);
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                if e.kind() == terrace::ErrorKind::Corruption {
                    report.corrupt += 1;
                }
                failure = Some(format!(
                    "seed {seed} round {round}: reopening and reading the database after the kill \
                     at {} ms ({phase}; operations #{}..#{}) failed: {e}",
                    killed_at.as_millis(),
                    round_ops.start,
                    round_ops.end
                ));
                break;
            }
        };
        report.reopens += 1;
        report.keys_verified += u64::from(flags.key_space);
        let verdict = verify::check(
            &workload,
            &model,
            &round_ops,
            &read.found,
            &read.shard_of,
            flags.small_db.shards,
        );
        let mut problems: Vec<Problem> = verdict.problems.clone();
        problems.extend(read.problems);
        store = store_audit::audit(&db_path, flags.small_db.shards, &read.files);
        problems.extend(store.problems.iter().cloned());
        let lost = problems.iter().filter(|p| p.wrong == Wrong::Lost).count() as u64;
        let corrupt = problems.len() as u64 - lost;
        report.lost += lost;
        report.corrupt += corrupt;
        if !problems.is_empty() {
            let mut msg = format!(
                "seed {seed} round {round}: {lost} lost, {corrupt} corrupt after the child was killed \
                 at {} ms ({phase}); it issued operations #{}..#{} (durable through {})",
                killed_at.as_millis(),
                round_ops.start,
                round_ops.end,
                round_ops
                    .durable
                    .map_or("none of them".to_string(), |d| format!("#{d}")),
            );
            for s in &heard.sabotage {
                msg.push_str(&format!("\n  sabotage: {s}"));
            }
            for p in problems.iter().take(20) {
                msg.push_str(&format!("\n  {p}"));
            }
            if problems.len() > 20 {
                msg.push_str(&format!("\n  ... and {} more", problems.len() - 20));
            }
            failure = Some(msg);
            break;
        }
        model = verdict.recovered;
        next_op = round_ops.end;
        let done = round + 1;
        if flags.progress_every > 0 && done % flags.progress_every == 0 {
            let cuts: Vec<String> = verdict
                .cuts
                .iter()
                .map(|c| c.map_or("-".into(), |(lo, _)| format!("#{lo}")))
                .collect();
            println!(
                "  {done}/{} kills; last: killed at {} ms ({phase}), ops #{}..#{}, durable {}, \
                 shards recovered through {}; {} ops, {durable_acks} durable acks, {} live keys, \
                 {} keys verified, {:.1} s",
                flags.kills,
                killed_at.as_millis(),
                round_ops.start,
                round_ops.end,
                round_ops.durable.map_or("-".into(), |d| format!("#{d}")),
                cuts.join(","),
                next_op,
                model.iter().filter(|s| s.is_some()).count(),
                report.keys_verified,
                start.elapsed().as_secs_f64()
            );
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    println!("terrace-stress crash: kills by phase: {phases}");
    println!("terrace-stress crash: {store}");
    open_ms.sort_unstable();
    if let (Some(first), Some(last)) = (open_ms.first(), open_ms.last()) {
        println!(
            "terrace-stress crash: {} children opened the database, in {first}..{last} ms \
             (median {} ms) after their spawn",
            open_ms.len(),
            open_ms[open_ms.len() / 2]
        );
        let (stall, round, killed) = longest_stall;
        println!(
            "terrace-stress crash: the longest a child went without progress once open: {} ms \
             (round {round}, killed at {} ms)",
            stall.as_millis(),
            killed.as_millis()
        );
    }
    let kept = if let Some(f) = &failure {
        println!("terrace-stress crash: FAILED: {f}");
        let kept = dir.finish(true);
        if let Some(k) = &kept {
            println!(
                "terrace-stress crash: the database is kept in {} (last child's stderr: {})",
                k.display(),
                stderr_path.display()
            );
        }
        kept
    } else {
        dir.finish(flags.keep)
    };
    Ok(CrashOutcome {
        report,
        failure,
        kept,
    })
}
