//! `terrace-stress`: long, seeded random workloads checked against models.
//!
//! ```text
//! terrace-stress --ops=1000000 --seed=42         # the model run
//! terrace-stress crash --kills=1000 --seed=42    # kill -9 a writer, verify each recovery
//! terrace-stress crash --checkpoints --kills=200 --seed=7   # ... restoring its checkpoints
//! terrace-stress compaction --ops=200000 --seed=42
//! ```
//!
//! The model run (no subcommand): puts, deletes, point reads, multi-gets, scans,
//! flushes, compactions and close-and-reopen cycles run on a database with tiny
//! memtables and files, so flushes and compactions happen all the time. Every read is
//! compared with a `BTreeMap` model; the first difference stops the run with exit
//! code 1, the seed, the operation index and the operations before it. The same
//! `--seed` replays it.
//!
//! `crash` and `compaction` are described in `terrace_tools::stress::crash` and
//! `terrace_tools::stress::compaction`; each ends with one report line and exits
//! non-zero when anything was lost, corrupt or violated (2 on a hang).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rand::SeedableRng;
use terrace::{Compression, Options};

use terrace_tools::stress::compaction::{self, CompactionFlags};
use terrace_tools::stress::crash::child::{self, ChildFlags};
use terrace_tools::stress::crash::{self, CrashFlags};
use terrace_tools::stress::op::{draw, Mix};
use terrace_tools::stress::runner::Runner;

#[derive(Parser, Debug)]
#[command(
    name = "terrace-stress",
    about = "Seeded random workloads checked against models",
    rename_all = "snake_case",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Flags of the model run (no subcommand).
    #[command(flatten)]
    model: Flags,
}

#[derive(Subcommand, Debug)]
#[command(rename_all = "kebab-case")]
enum Command {
    /// Kill -9 a writing child process again and again; after each kill, reopen the
    /// database and check every durable write survived and nothing else appeared.
    /// With --checkpoints, the child also checkpoints to an object store, releases
    /// checkpoints and collects garbage, and the parent restores the newest
    /// checkpoint and requires exactly its state.
    Crash(CrashFlags),
    /// The child process of `crash` (started by it, not by hand).
    #[command(hide = true)]
    CrashChild(ChildFlags),
    /// Heavy overwrites and deletes on tiny levels, checking the LSM layout and the
    /// answers while compactions run.
    Compaction(CompactionFlags),
}

#[derive(Args, Debug)]
#[command(rename_all = "snake_case")]
struct Flags {
    /// Operations to run.
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct keys per table.
    #[arg(long, default_value_t = 3000)]
    key_space: u32,
    /// Largest value in bytes.
    #[arg(long, default_value_t = 8192)]
    max_value_bytes: usize,
    /// Shards.
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Key groups (few make whole-table scans cheap).
    #[arg(long, default_value_t = 16)]
    max_key_groups: u16,
    /// Number of tables.
    #[arg(long, default_value_t = 2)]
    tables: usize,
    /// Compress blocks with zstd.
    #[arg(long)]
    zstd: bool,
    /// Database directory (default: a temporary directory removed at exit). It must
    /// not hold a database: the model starts empty.
    #[arg(long)]
    db: Option<std::path::PathBuf>,
    /// Compare every table in full with the model every this many operations (0: only
    /// at the end).
    #[arg(long, default_value_t = 10_000)]
    verify_every: u64,
    /// Print every operation before it runs (to find the one that hangs).
    #[arg(long)]
    trace: bool,
    /// Print progress every this many operations.
    #[arg(long, default_value_t = 10_000)]
    progress_every: u64,
}

fn options(flags: &Flags, dir: &std::path::Path) -> Options {
    let mut o = Options::new(dir);
    o.shards = flags.shards;
    o.max_key_groups = flags.max_key_groups;
    o.pin_shards = false;
    o.memtable_bytes = 64 << 10;
    o.target_file_bytes = 64 << 10;
    o.level1_bytes = 1 << 20;
    o.block_cache_bytes = 256 << 10;
    o.spin_before_park_us = 0;
    o.max_value_bytes = o.max_value_bytes.max(flags.max_value_bytes);
    o.tables = (0..flags.tables.max(1))
        .map(|i| {
            if i == 0 {
                "default".to_string()
            } else {
                format!("t{i}")
            }
        })
        .collect();
    if flags.zstd {
        o.compression = Compression::Zstd { level: 1 };
    }
    o
}

fn run(flags: &Flags) -> anyhow::Result<()> {
    let (_tmp, dir) = match &flags.db {
        Some(d) => {
            if d.join("TERRACE-META").exists() {
                anyhow::bail!(
                    "{} already holds a database; the model starts empty",
                    d.display()
                );
            }
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("terrace-stress-")
                .tempdir()
                .context("creating a temporary directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let opts = options(flags, &dir);
    let mix = Mix {
        key_space: flags.key_space,
        max_value_bytes: flags.max_value_bytes,
        tables: opts.tables.len(),
        shards: flags.shards,
    };
    println!(
        "terrace-stress: seed {} ops {} shards {} key space {} in {}",
        flags.seed,
        flags.ops,
        flags.shards,
        flags.key_space,
        dir.display()
    );
    let mut runner = Runner::new(opts)?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(flags.seed);
    let start = terrace_tiering::clock::now();
    for i in 0..flags.ops {
        let op = draw(&mut rng, &mix);
        if flags.trace {
            println!("#{i}: {op}");
        }
        runner.apply(i, &op)?;
        let done = i + 1;
        if flags.verify_every > 0 && done % flags.verify_every == 0 {
            runner
                .verify_all()
                .with_context(|| format!("full check after {done} operations"))?;
        }
        if flags.progress_every > 0 && done % flags.progress_every == 0 {
            let t = runner.tally;
            println!(
                "  {done}/{} ops, {} checked reads, {} reopens, {} live keys, {:.1} s",
                flags.ops,
                t.checked_reads,
                t.reopens,
                runner.model_keys(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    runner.verify_all().context("final full check")?;
    let t = runner.tally;
    runner.close()?;
    println!(
        "terrace-stress: OK: {} ops, {} checked reads, {} reopens in {:.1} s",
        t.ops,
        t.checked_reads,
        t.reopens,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => model_run(&cli.model),
        Some(Command::Crash(f)) => match crash::run(&f) {
            Ok(out) => {
                println!("{}", out.report);
                let r = out.report;
                if out.failure.is_some() || r.lost > 0 || r.corrupt > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("terrace-stress crash: FAILED: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::CrashChild(f)) => child::run(&f),
        Some(Command::Compaction(f)) => match compaction::run(&f) {
            Ok(out) => {
                println!("{}", out.report);
                if out.failure.is_some() || out.report.violations > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("terrace-stress compaction: FAILED: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn model_run(flags: &Flags) -> ExitCode {
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "terrace-stress: FAILED (replay with --seed={}): {e:#}",
                flags.seed
            );
            ExitCode::FAILURE
        }
    }
}
