//! `terrace-bench`: db_bench for Terrace.
//!
//! ```text
//! terrace-bench                                   # default list, 1M keys, temp dir
//! terrace-bench --benchmarks=fillseq,readrandom --num=100000 --histogram
//! terrace-bench --threads=4 --concurrency=8 --json=out.json
//! ```
//!
//! Benchmarks run in order on one database. Without `--db` it lives in a fresh
//! temporary directory removed at exit; with `--db` (and no `--use_existing_db`) an
//! existing Terrace database there is destroyed first, like db_bench does, and a
//! directory holding anything else is refused. With `--restore_from` the database
//! is restored into `--db` (empty or missing) from a checkpoint first. See
//! `terrace_tools::bench` for the design and `bench::report` for the output
//! conventions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use futures_lite::future::block_on;
use terrace::{Db, ObjectStoreSpec, Options, TableId};

use terrace_tools::bench::benchmark::Benchmark;
use terrace_tools::bench::checkpoints::{
    checkpoint_line, CheckpointStats, Checkpointer, Checkpoints,
};
use terrace_tools::bench::cpu::CpuTime;
use terrace_tools::bench::driver::{self, Mode};
use terrace_tools::bench::engine_stats::{cache_line, cache_ratios, one_line, remote_line};
use terrace_tools::bench::flags::{Flags, KeyDist};
use terrace_tools::bench::histogram::{format_histogram, summarize};
use terrace_tools::bench::keys::KeyDraw;
use terrace_tools::bench::plot;
use terrace_tools::bench::progress::{Progress, Reporter};
use terrace_tools::bench::report::{header, BenchResult, JsonSummary};
use terrace_tools::bench::restore::{
    self, trims_line, wait_for_warmer, warm_line, TrimWatch, WarmWatch,
};
use terrace_tools::bench::timeline::{EventKind, Timeline};
use terrace_tools::bench::values::ValuePool;
use terrace_tools::bench::workload::Plan;
use terrace_tools::bench::zipf::Zipf;

/// The file every Terrace database directory holds; its presence is what allows
/// `--db` to destroy a directory.
const DB_MARKER_FILE: &str = "TERRACE-META";

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Err(msg) = flags.validate() {
        eprintln!("terrace-bench: {msg}");
        return ExitCode::from(2);
    }
    // The S3 client reads its endpoint and region the standard AWS way; the flags
    // only fill those variables in, before any thread exists.
    flags.store.export_s3_env();
    match run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terrace-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(flags: &Flags, path: &Path) -> Options {
    let mut opts = flags.store.options(path, flags.seed);
    opts.key_group_prefix_bytes = flags.key_group_prefix_bytes;
    opts.key_group_range = flags.key_group_range;
    opts.max_key_bytes = opts.max_key_bytes.max(flags.key_size + 1);
    opts.max_value_bytes = opts.max_value_bytes.max(flags.value_size);
    opts.warm_order = flags.warm_order.order();
    opts.warm_bytes_per_sec = flags.warm_bytes_per_sec;
    // mergerandom's table: u64 counters.
    opts.tables = vec!["default".into(), "counters".into()];
    opts.table_options
        .insert("counters".into(), terrace::TableOptions::counter());
    // One source without --object_store: the restored database lives in the
    // source's prefix (with it, in its own prefix next to the source's).
    if let ([source], None) = (
        flags.restore_sources().as_slice(),
        flags.store.object_store.as_ref(),
    ) {
        opts.object_store = ObjectStoreSpec::Uri(source.clone());
    }
    opts
}

/// `--restore_from` restores into an empty or missing directory only.
fn check_restore_target(path: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(path).map(|mut entries| entries.next().is_none()) {
        Ok(false) => bail!(
            "--restore_from restores into an empty or missing directory; {} is not empty",
            path.display()
        ),
        Ok(true) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Empties `--db` unless it is to be reused; refuses directories that are not
/// Terrace databases.
fn prepare_db_dir(path: &Path, use_existing: bool) -> anyhow::Result<()> {
    if use_existing {
        if !path.join(DB_MARKER_FILE).exists() {
            bail!(
                "--use_existing_db: {} holds no Terrace database",
                path.display()
            );
        }
        return Ok(());
    }
    let empty = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if empty {
        return Ok(());
    }
    if !path.join(DB_MARKER_FILE).exists() {
        bail!(
            "{} is not empty and holds no Terrace database; refusing to delete it",
            path.display()
        );
    }
    std::fs::remove_dir_all(path).with_context(|| format!("destroying {}", path.display()))
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

fn run(flags: &Flags) -> anyhow::Result<()> {
    let out = Out {
        to_stderr: flags.json.as_deref() == Some("-"),
    };
    let restoring = !flags.restore_sources().is_empty();
    let (_tempdir, path): (Option<tempfile::TempDir>, PathBuf) = match &flags.db {
        Some(p) if restoring => {
            check_restore_target(p)?;
            (None, p.clone())
        }
        Some(p) => {
            prepare_db_dir(p, flags.use_existing_db)?;
            (None, p.clone())
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("terrace-bench-")
                .tempdir()
                .context("creating a temporary database directory")?;
            let p = dir.path().to_path_buf();
            (Some(dir), p)
        }
    };
    let timeline = flags.plot.as_ref().map(|_| Arc::new(Timeline::new()));
    let restore_start = terrace_tiering::clock::now();
    let (db, restored) = if restoring {
        // The keys the first fillrandom of a run wrote first: present in a database
        // a run starting with fillrandom filled, so the first read is a real lookup.
        // A rescale spells keys of its new range, not its sources': the first few
        // may be absent, so the first read goes on to the next until one is found.
        let space = flags.key_space();
        let draw = KeyDraw::new(flags.seed, 0, flags.num);
        let probe: Vec<Vec<u8>> = (0..PROBE_KEYS)
            .map(|i| space.key_of(draw.index(i)))
            .collect();
        let (db, report) = restore::restore(
            options(flags, &path),
            &flags.restore_sources(),
            flags.checkpoint_id,
            flags.restore_mode.mode(),
            "default",
            &probe,
            timeline.as_ref(),
        )
        .with_context(|| format!("restoring into {}", path.display()))?;
        (db, Some(report))
    } else {
        let db = block_on(Db::open(options(flags, &path)))
            .with_context(|| format!("opening the database in {}", path.display()))?;
        (db, None)
    };
    out.line(&header(flags, &path.display().to_string(), db.shards()));
    if let Some(r) = &restored {
        out.line(&r.line());
    }
    // The baseline downloaded everything before it opened: nothing to warm.
    let warm_watch = restored
        .as_ref()
        .filter(|r| r.mode == restore::RestoreMode::Lazy)
        .map(|_| WarmWatch::start(&db, restore_start, timeline.clone()));
    let mut warm_reported = false;
    let trim_watch = restored
        .as_ref()
        .map(|_| TrimWatch::start(&db, restore_start));
    let mut trims_reported = false;

    let checkpoints = if flags.checkpoint_every_secs > 0.0
        || flags.benchmarks.0.contains(&Benchmark::Checkpoint)
    {
        let after = restored.as_ref().map_or(0, |r| r.checkpoint);
        Some(Arc::new(Checkpoints::new(&db, after, timeline.clone())?))
    } else {
        None
    };
    let checkpointer = match (&checkpoints, flags.checkpoint_every_secs > 0.0) {
        (Some(c), true) => Some(Checkpointer::start(
            c.clone(),
            Duration::from_secs_f64(flags.checkpoint_every_secs),
        )?),
        _ => None,
    };
    let mut checkpoints_reported = 0usize;

    let table = db.table("default").context("opening table \"default\"")?;
    let counters = db.table("counters").context("opening table \"counters\"")?;
    let values = Arc::new(ValuePool::new(
        flags.seed,
        flags.value_size,
        flags.compression_ratio,
    ));
    let mode = if flags.threads == 0 {
        Mode::Embedded {
            concurrency: flags.concurrency,
        }
    } else {
        Mode::Threads {
            threads: flags.threads,
            concurrency: flags.concurrency,
        }
    };
    let mut summary = JsonSummary::new(flags, &path.display().to_string());
    let mut last_stats = None;
    let read_zipf = match flags.key_dist {
        KeyDist::Uniform => None,
        KeyDist::Zipf => Some(Arc::new(
            Zipf::new(flags.num, flags.zipf_theta).map_err(anyhow::Error::msg)?,
        )),
    };

    for (position, &bench) in flags.benchmarks.0.iter().enumerate() {
        if let Some(t) = &timeline {
            t.event(EventKind::Benchmark(bench.name().to_string()));
        }
        let cpu_start = CpuTime::now();
        let (mut result, histogram) = if bench == Benchmark::Checkpoint {
            let c = checkpoints
                .as_ref()
                .context("checkpoint: no checkpoint log (internal)")?;
            let taken = c.take(false)?;
            let mut result = BenchResult::new(
                bench.name(),
                1,
                taken.info.duration.as_secs_f64(),
                taken.info.uploaded_bytes(),
            );
            result.checkpoints = Some(CheckpointStats::of(std::slice::from_ref(&taken)));
            out.line(&checkpoint_line(&taken.info));
            (result, None)
        } else if bench == Benchmark::WaitForWarmer {
            let start = terrace_tiering::clock::now();
            // The download-first baseline has nothing to warm. A plain open of a
            // database with remote-only files has a warmer too: wait, report nothing.
            let baseline = restored.is_some() && warm_watch.is_none();
            let done = (!baseline)
                .then(|| wait_for_warmer(&db, restore_start, None))
                .flatten();
            if let (Some(done), Some(_), false) = (done, &warm_watch, warm_reported) {
                out.line(&warm_line(&done));
                warm_reported = true;
            }
            (
                BenchResult::new(bench.name(), 1, start.elapsed().as_secs_f64(), 0),
                None,
            )
        } else if bench == Benchmark::WaitForTrims {
            let start = terrace_tiering::clock::now();
            // Without a restore, timed from this call.
            let own;
            let watch = match &trim_watch {
                Some(w) => w,
                None => {
                    own = TrimWatch::start(&db, start);
                    &own
                }
            };
            let done = watch.wait(TRIM_WAIT_MAX).with_context(|| {
                format!(
                    "waitfortrims: file references still clipped after {} s",
                    TRIM_WAIT_MAX.as_secs()
                )
            })?;
            if !trims_reported {
                out.line(&trims_line(&done));
                trims_reported = trim_watch.is_some();
            }
            (
                BenchResult::new(bench.name(), 1, start.elapsed().as_secs_f64(), 0),
                None,
            )
        } else if bench.is_pseudo() {
            (run_pseudo(&db, bench, &out)?, None)
        } else {
            let table = if bench == Benchmark::MergeRandom {
                counters
            } else {
                table
            };
            let mut plan = plan(flags, bench, position as u64, table, &values, &db, mode);
            plan.read_zipf = read_zipf.clone();
            plan.timeline = timeline.clone();
            run_workload(&db, plan, mode, flags.histogram)?
        };
        let cpu = CpuTime::now().since(&cpu_start);
        result.set_cpu(&cpu);
        if bench != Benchmark::Checkpoint {
            out.line(&result.line());
        }
        if let Some(w) = result.writer_line() {
            out.line(&w);
        }
        if let Some(h) = histogram {
            out.line(&h);
        }
        if let (Some(c), Some(ck)) = (&checkpoints, &checkpointer) {
            let taken = c.taken();
            let background: Vec<_> = taken[checkpoints_reported..]
                .iter()
                .filter(|t| t.background)
                .cloned()
                .collect();
            checkpoints_reported = taken.len();
            let stats = CheckpointStats::of(&background);
            out.line(&stats.line());
            if bench != Benchmark::Checkpoint {
                result.checkpoints = Some(stats);
            }
            if let Some(e) = ck.failure() {
                bail!("the background checkpointer failed: {e}");
            }
        }
        if let (Some(w), false) = (&warm_watch, warm_reported) {
            if let Some(done) = w.done() {
                out.line(&warm_line(&done));
                warm_reported = true;
            }
        }
        if !bench.is_pseudo() {
            out.line(&result.cpu_line(&cpu));
            let stats = block_on(db.stats()).context("reading engine statistics")?;
            let line = one_line(last_stats.as_ref(), &stats);
            out.line(&format!("  engine: {line}"));
            if let Some(remote) = remote_line(last_stats.as_ref(), &stats) {
                out.line(&format!("  remote: {remote}"));
            }
            if let Some(cache) = cache_line(last_stats.as_ref(), &stats) {
                out.line(&format!("  cache: {cache}"));
                result.cache_stats = Some(cache);
            }
            result.cache_hit_ratios =
                cache_ratios(last_stats.as_ref(), &stats).map(|(m, s, j, l, _)| (m, s, j, l));
            result.engine_stats = Some(line);
            last_stats = Some(stats);
        }
        summary.benchmarks.push(result);
    }

    if let (Some(c), Some(ck)) = (&checkpoints, checkpointer) {
        ck.stop().context("the background checkpointer failed")?;
        let late: Vec<_> = c.taken()[checkpoints_reported..]
            .iter()
            .filter(|t| t.background)
            .cloned()
            .collect();
        if !late.is_empty() {
            out.line(&format!(
                "{} (finished after the last benchmark)",
                CheckpointStats::of(&late).line()
            ));
        }
    }
    if let (Some(w), false) = (&warm_watch, warm_reported) {
        match w.done() {
            Some(done) => out.line(&warm_line(&done)),
            None => out.line(&format!(
                "  warmer: not done {:.3} s after the restore began (add waitforwarmer to wait)",
                w.elapsed().as_secs_f64()
            )),
        }
    }
    drop(warm_watch);
    if let (Some(w), false) = (&trim_watch, trims_reported) {
        match w.done() {
            Some(done) => out.line(&trims_line(&done)),
            None => out
                .line("  trims: not done at the end of the benchmarks (add waitfortrims to wait)"),
        }
    }
    drop(trim_watch);
    if let (Some(t), Some(file)) = (&timeline, &flags.plot) {
        let title = format!(
            "terrace-bench {}{}",
            flags
                .benchmarks
                .0
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(","),
            if flags.checkpoint_every_secs > 0.0 {
                format!(", checkpoint every {} s", flags.checkpoint_every_secs)
            } else {
                String::new()
            }
        );
        plot::write_svg(file, t, &title).with_context(|| format!("plotting {}", file.display()))?;
        out.line(&format!("plot: {}", file.display()));
    }
    block_on(db.close()).context("closing the database")?;
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

fn plan(
    flags: &Flags,
    bench: Benchmark,
    position: u64,
    table: TableId,
    values: &Arc<ValuePool>,
    db: &Db,
    mode: Mode,
) -> Plan {
    Plan {
        bench,
        table,
        num: flags.num,
        reads: flags.reads(),
        keys: flags.key_space(),
        seek_nexts: flags.seek_nexts,
        seek_prefix_bytes: flags.key_group_prefix_bytes.map(|n| n as usize),
        batch_size: flags.batch_size,
        readseq_chunk: flags.readseq_chunk,
        partitions: mode.workers(db.shards()),
        // The salt is the position in the list: a readrandom after fillrandom draws
        // other keys than the fill did, and two runs of the same list draw the same.
        draw: KeyDraw::new(flags.seed, position * 2, flags.num),
        read_zipf: None,
        writer_draw: KeyDraw::new(flags.seed, position * 2 + 1, flags.num),
        values: values.clone(),
        progress: Arc::new(Progress::default()),
        timeline: None,
    }
}

fn run_workload(
    db: &Db,
    plan: Plan,
    mode: Mode,
    histogram: bool,
) -> anyhow::Result<(BenchResult, Option<String>)> {
    let bench = plan.bench;
    let looked_for = plan.looked_for();
    let reporter = Reporter::start(bench.name(), plan.progress.clone());
    let outcome = driver::run(db, plan, mode);
    drop(reporter);
    let outcome = outcome.with_context(|| format!("benchmark {bench} failed"))?;
    let stats = &outcome.stats;
    let mut result = BenchResult::new(
        bench.name(),
        stats.ops,
        outcome.elapsed.as_secs_f64(),
        stats.bytes,
    );
    if bench.reports_found() {
        result.found = Some((stats.found, looked_for));
    }
    result.background_writes = stats.background_writes;
    result.latency = Some(summarize(&stats.latency_ns));
    let histogram = histogram.then(|| format_histogram(bench.histogram_op(), &stats.latency_ns));
    Ok((result, histogram))
}

/// Keys the first read after a restore tries, in order, until one is found.
const PROBE_KEYS: u64 = 64;

/// `waitfortrims` gives up after this long (compaction is stuck or off).
const TRIM_WAIT_MAX: Duration = Duration::from_secs(3600);

fn run_pseudo(db: &Db, bench: Benchmark, out: &Out) -> anyhow::Result<BenchResult> {
    let start = terrace_tiering::clock::now();
    match bench {
        Benchmark::Flush => block_on(db.flush()).context("flush")?,
        Benchmark::Compact => {
            block_on(db.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded))
                .context("compact")?
        }
        Benchmark::WaitForCompaction => {
            block_on(db.wait_for_compactions()).context("waitforcompaction")?
        }
        Benchmark::WaitForUploads => block_on(async {
            db.flush().await?;
            db.wait_for_uploads().await?;
            db.enforce_local_budget().await
        })
        .context("waitforuploads")?,
        Benchmark::Stats => {
            let stats = block_on(db.stats()).context("stats")?;
            out.line(&stats.to_string());
        }
        other => bail!("{other} is not a pseudo-benchmark"),
    }
    Ok(BenchResult::new(
        bench.name(),
        1,
        start.elapsed().as_secs_f64(),
        0,
    ))
}
