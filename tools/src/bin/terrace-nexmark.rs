//! `terrace-nexmark`: Nexmark queries on Terrace's keyed execution.
//!
//! ```text
//! terrace-nexmark --query=q18 --mode=per-event --events=2000000
//! terrace-nexmark --query=all --mode=batched --events=1000000 --cache_size=1048576
//! terrace-nexmark --query=q20 --mode=batched --object_store_latency_ms=30 --local_disk_budget=20000000
//! ```
//!
//! Each query runs on a fresh database (in a temporary directory under `--db`,
//! removed after) and prints one line:
//! `q18          : 123456 events/s 2000000 events 8.1 cpu-s/M events 310.2 MB state`
//! — events generated per wall second from the first event until the last record
//! is processed, the process's CPU seconds (getrusage: user + system, every thread)
//! per million events over the same span, and the state: live SST bytes plus
//! memtable bytes (`Db::stats`). Store flags are terrace-bench's; see
//! `terrace_tools::nexmark` for the queries.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use futures_lite::future::block_on;
use terrace::Db;

use terrace_tools::bench::cpu::CpuTime;
use terrace_tools::nexmark::flags::{result_line, NexmarkFlags};
use terrace_tools::nexmark::terrace::{nexmark_options, run_query, state_bytes};
use terrace_tools::nexmark::{event_source, QueryName};

fn main() -> ExitCode {
    let flags = NexmarkFlags::parse();
    if let Err(msg) = flags.validate() {
        eprintln!("terrace-nexmark: {msg}");
        return ExitCode::from(2);
    }
    flags.store.export_s3_env();
    for &query in &flags.query.0 {
        match run_one(&flags, query) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("terrace-nexmark: {}: {e:#}", query.name());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn run_one(flags: &NexmarkFlags, query: QueryName) -> anyhow::Result<String> {
    let parent = flags.db.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("terrace-nexmark-{}-", query.name()))
        .tempdir_in(&parent)
        .with_context(|| format!("making a database directory in {}", parent.display()))?;
    let opts = nexmark_options(flags.store.options(dir.path(), flags.seed));
    let source = event_source(flags.events, flags.pregenerate);
    block_on(async {
        let db = Db::open(opts).await.context("opening the database")?;
        let cpu = CpuTime::now();
        let run = run_query(
            &db,
            query,
            flags.mode,
            source,
            terrace::KeyedOptions {
                batch_records: flags.batch_events,
                concurrent_batches: flags.concurrent_batches,
                ..terrace::KeyedOptions::default()
            },
        )
        .await;
        let cpu = CpuTime::now().since(&cpu).total();
        let bytes = state_bytes(&db).await;
        let closed = db.close().await;
        let run = run.context("running the query")?;
        let bytes = bytes.context("reading the database's statistics")?;
        closed.context("closing the database")?;
        Ok(result_line(
            query,
            run.events,
            run.elapsed.as_secs_f64(),
            cpu.as_secs_f64(),
            bytes,
        ))
    })
}
