//! The `main` both harness binaries share: parse flags, prepare `--db`, open the
//! engine, run `--benchmarks` in order, print db_bench lines (and `--json`).
//!
//! With `--db` and no `--use_existing_db` the directory is emptied first, like
//! db_bench does — but only if it is empty or holds this harness's marker file
//! ([`MARKER_FILE`]); a directory holding anything else is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches};

use crate::benchmark::Benchmark;
use crate::driver::{self, Plan};
use crate::engine::Engine;
use crate::flags::Flags;
use crate::histogram::{format_histogram, summarize};
use crate::report::{header, BenchResult, JsonSummary};
use crate::values::ValuePool;

/// Written into every database directory the harness creates; its presence is what
/// allows `--db` to destroy a directory.
pub const MARKER_FILE: &str = "COMPARE-BENCH-DB";

/// Runs a harness binary named `name` over the engine `open` builds.
pub fn main<E, F>(name: &'static str, open: F) -> ExitCode
where
    E: Engine,
    F: FnOnce(&Flags, &Path) -> anyhow::Result<E>,
{
    let command = Flags::command().name(name).about(format!(
        "{name}: terrace-bench's workloads, flags and output over another engine"
    ));
    let flags = match Flags::from_arg_matches(&command.get_matches()) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    if let Err(msg) = flags.validate() {
        eprintln!("{name}: {msg}");
        return ExitCode::from(2);
    }
    match run(&flags, open) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Empties `--db` unless it is to be reused; refuses foreign directories.
fn prepare_db_dir(path: &Path, use_existing: bool) -> anyhow::Result<()> {
    let marked = path.join(MARKER_FILE).exists();
    if use_existing {
        if !marked {
            bail!(
                "--use_existing_db: {} holds no harness database",
                path.display()
            );
        }
        return Ok(());
    }
    let empty = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !empty {
        if !marked {
            bail!(
                "{} is not empty and holds no harness database ({MARKER_FILE}); refusing to delete it",
                path.display()
            );
        }
        std::fs::remove_dir_all(path).with_context(|| format!("destroying {}", path.display()))?;
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::write(path.join(MARKER_FILE), b"")
        .with_context(|| format!("marking {}", path.display()))
}

/// Where the report goes: stdout, or stderr when stdout carries the JSON.
struct Out {
    to_stderr: bool,
}

impl Out {
    fn line(&self, s: &str) {
        if self.to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn run<E, F>(flags: &Flags, open: F) -> anyhow::Result<()>
where
    E: Engine,
    F: FnOnce(&Flags, &Path) -> anyhow::Result<E>,
{
    let out = Out {
        to_stderr: flags.json.as_deref() == Some("-"),
    };
    let (_tempdir, path): (Option<tempfile::TempDir>, PathBuf) = match &flags.db {
        Some(p) => {
            prepare_db_dir(p, flags.use_existing_db)?;
            (None, p.clone())
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("compare-bench-")
                .tempdir()
                .context("creating a temporary database directory")?;
            let p = dir.path().to_path_buf();
            (Some(dir), p)
        }
    };
    let engine = open(flags, &path)
        .with_context(|| format!("opening the database in {}", path.display()))?;
    let settings = engine.settings();
    out.line(&header(flags, &path.display().to_string(), &settings));

    let values = Arc::new(ValuePool::new(
        flags.seed,
        flags.value_size,
        flags.compression_ratio,
    ));
    let mut summary = JsonSummary::new(flags, &path.display().to_string(), &settings.engine);
    for (position, &bench) in flags.benchmarks.0.iter().enumerate() {
        if let Some(reason) = engine.unsupported(bench) {
            eprintln!("{bench:<12} : skipped: {reason}");
            continue;
        }
        let (result, histogram) = if bench.is_pseudo() {
            (run_pseudo(&engine, bench)?, None)
        } else {
            let plan = Plan::new(
                bench,
                position as u64,
                flags.seed,
                flags.num,
                flags.reads_of(bench),
                flags.key_size,
                flags.seek_nexts,
                flags.batch_size,
                values.clone(),
            );
            run_workload(&engine, &plan, flags)?
        };
        out.line(&result.line());
        if let Some(w) = result.writer_line() {
            out.line(&w);
        }
        if let Some(h) = histogram {
            out.line(&h);
        }
        summary.benchmarks.push(result);
    }
    drop(engine);
    if let Some(target) = &flags.json {
        let text = serde_json::to_string_pretty(&summary)?;
        if target == "-" {
            println!("{text}");
        } else {
            std::fs::write(target, text + "\n").with_context(|| format!("writing {target}"))?;
        }
    }
    Ok(())
}

fn run_workload<E: Engine>(
    engine: &E,
    plan: &Plan,
    flags: &Flags,
) -> anyhow::Result<(BenchResult, Option<String>)> {
    let bench = plan.bench;
    let outcome = driver::run(engine, plan, flags.threads)
        .with_context(|| format!("benchmark {bench} failed"))?;
    let stats = &outcome.stats;
    let mut result = BenchResult::new(
        bench.name(),
        stats.ops,
        outcome.elapsed.as_secs_f64(),
        stats.bytes,
    );
    if bench.reports_found() {
        result.found = Some((stats.found, plan.reads));
    }
    result.background_writes = stats.background_writes;
    result.latency = Some(summarize(&stats.latency_ns));
    let histogram = flags
        .histogram
        .then(|| format_histogram(bench.histogram_op(), &stats.latency_ns));
    Ok((result, histogram))
}

fn run_pseudo<E: Engine>(engine: &E, bench: Benchmark) -> anyhow::Result<BenchResult> {
    let start = Instant::now();
    match bench {
        Benchmark::Flush => engine.flush().context("flush")?,
        Benchmark::Compact => engine.compact().context("compact")?,
        other => bail!("{other} is not a pseudo-benchmark"),
    }
    Ok(BenchResult::new(
        bench.name(),
        1,
        start.elapsed().as_secs_f64(),
        0,
    ))
}
