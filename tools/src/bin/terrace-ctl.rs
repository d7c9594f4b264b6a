//! `terrace-ctl`: inspect a Terrace database or SST file.
//!
//! ```text
//! terrace-ctl sst DIR/shard-0/000012.sst [--entries 20]
//! terrace-ctl get  --db DIR [--table T] [--hex] KEY
//! terrace-ctl scan --db DIR [--table T] [--hex] [--from K] [--to K] [--limit N]
//! terrace-ctl stats --db DIR
//! terrace-ctl --object-store URI checkpoints
//! terrace-ctl --object-store URI --checkpoint latest|ID get|scan|stats ...
//! terrace-ctl --object-store URI gc [--dry-run] [--min-age-secs N] [--db DIR]
//! terrace-ctl gc --job URI [--dry-run] [--min-age-secs N]
//! ```
//!
//! `get`, `scan` and `stats` open the database read-only (with the shard count and
//! key-group layout it was created with, read from its metadata): they take no lock
//! and write, delete or rename nothing, so they are safe on a database another
//! process is writing. They see its state as of its last durable manifest records.
//!
//! With `--checkpoint`, `get`, `scan` and `stats` read a checkpoint from the object
//! store alone ([`CheckpointReader`]): no database directory, nothing written to the
//! store, and the job that wrote it keeps running. `checkpoints` lists the committed
//! checkpoints in a store; `gc` collects its garbage with the rules of `Db::gc`
//! (reading the checkpoints of every database beside it under the job root too).
//! `gc --job URI` collects every database prefix under a job root (the parent of
//! the databases' prefixes, e.g. `file:///x/job-17` for `.../job-17/db-a`), each
//! with every prefix's checkpoints protecting what they name.

use std::ops::Bound;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures_lite::future::block_on;
use terrace::{CheckpointReader, CheckpointSummary, Db, ObjectStoreSpec, Options};

use terrace_tools::ctl::sst::inspect;
use terrace_tools::ctl::text::{escape, parse_key};

#[derive(Parser)]
#[command(
    name = "terrace-ctl",
    about = "Inspect Terrace databases and SST files"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Object store holding the database's SSTs (`file:///path`, `s3://bucket/prefix`,
    /// `none`); default the embedded store `<db>/objects` when the database has one.
    #[arg(long = "object-store", alias = "object_store", global = true)]
    object_store: Option<String>,
    /// Read a checkpoint from the object store instead of a database directory:
    /// `latest` or a checkpoint id (for `get`, `scan` and `stats`).
    #[arg(long, global = true)]
    checkpoint: Option<String>,
}

#[derive(Args)]
struct DbArgs {
    /// Database directory (not with `--checkpoint`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// State table.
    #[arg(long, default_value = "default")]
    table: String,
    /// Keys are given as hex digits.
    #[arg(long)]
    hex: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print an SST's properties (and optionally its first entries).
    Sst {
        /// Path of the SST file.
        file: PathBuf,
        /// Also print this many entries from the start of the file.
        #[arg(long, default_value_t = 0)]
        entries: usize,
    },
    /// Print the value of one key.
    Get {
        #[command(flatten)]
        db: DbArgs,
        /// The key.
        key: String,
    },
    /// Print the entries of a key range, in key order.
    Scan {
        #[command(flatten)]
        db: DbArgs,
        /// First key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// End key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print the engine's statistics.
    Stats {
        /// Database directory (not with `--checkpoint`).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List the committed checkpoints in the object store (of every database
    /// writing there), oldest first.
    Checkpoints,
    /// Delete objects in the object store that no checkpoint and no live database
    /// references (and abandoned checkpoints and multipart uploads), once older
    /// than the minimum age.
    Gc {
        /// Only report what would be deleted.
        #[arg(long = "dry-run", alias = "dry_run")]
        dry_run: bool,
        /// Minimum age in seconds of anything deleted (default: the engine's
        /// `gc_min_age`, 600). It must cover the longest a running writer may
        /// still read a file it no longer lists.
        #[arg(long = "min-age-secs", alias = "min_age_secs")]
        min_age_secs: Option<u64>,
        /// A database using this store, opened read-only: the objects its current
        /// version reads are kept, and its own unread objects go once old enough.
        /// Without `--object-store`, its embedded store (`<db>/objects`) is collected.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Collect every database prefix under this job root (a store URI)
        /// instead of one store; not with `--object-store` or `--db`.
        #[arg(long)]
        job: Option<String>,
    },
}

/// What `get`, `scan` and `stats` read: a database directory or a checkpoint.
enum Source {
    Db(Db),
    Checkpoint(CheckpointReader),
}

impl Source {
    fn open(
        db: Option<&std::path::Path>,
        store: Option<&str>,
        checkpoint: Option<&str>,
    ) -> anyhow::Result<Source> {
        match (db, checkpoint) {
            (Some(_), Some(_)) => anyhow::bail!("give either --db or --checkpoint, not both"),
            (None, None) => {
                anyhow::bail!("give --db DIR, or --object-store URI --checkpoint latest|ID")
            }
            (Some(dir), None) => Ok(Source::Db(open(dir, store)?)),
            (None, Some(which)) => {
                let id = parse_checkpoint_id(which)?;
                let store = store_spec(store)?;
                let reader = block_on(CheckpointReader::open(store, id, base_options()))
                    .with_context(|| format!("opening checkpoint {which}"))?;
                Ok(Source::Checkpoint(reader))
            }
        }
    }

    fn table(&self, name: &str) -> terrace::Result<terrace::TableId> {
        match self {
            Source::Db(db) => db.table(name),
            Source::Checkpoint(r) => r.table(name),
        }
    }

    fn get(&self, t: terrace::TableId, key: &[u8]) -> terrace::Result<Option<Vec<u8>>> {
        match self {
            Source::Db(db) => block_on(db.get(t, key)),
            Source::Checkpoint(r) => block_on(r.get(t, key)),
        }
    }

    fn scan(
        &self,
        t: terrace::TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> terrace::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Source::Db(db) => block_on(db.scan(t, lower, upper, limit)),
            Source::Checkpoint(r) => block_on(r.scan(t, lower, upper, limit)),
        }
    }

    fn stats(&self) -> terrace::Result<String> {
        match self {
            Source::Db(db) => Ok(block_on(db.stats())?.to_string()),
            Source::Checkpoint(r) => {
                let summary = checkpoint_line(r.summary());
                Ok(format!("checkpoint {summary}\n{}", block_on(r.stats())?))
            }
        }
    }

    fn close(self) -> anyhow::Result<()> {
        match self {
            Source::Db(db) => block_on(db.close()).context("closing the database"),
            Source::Checkpoint(r) => block_on(r.close()).context("closing the checkpoint"),
        }
    }
}

fn parse_checkpoint_id(which: &str) -> anyhow::Result<Option<u64>> {
    if which == "latest" {
        return Ok(None);
    }
    which.parse().map(Some).map_err(|_| {
        anyhow::anyhow!("--checkpoint takes `latest` or a checkpoint id, not {which:?}")
    })
}

/// The store a command without a database directory works on: `--object-store` is
/// required.
fn store_spec(store: Option<&str>) -> anyhow::Result<ObjectStoreSpec> {
    match store {
        None | Some("none") => {
            anyhow::bail!("this command reads the object store: give --object-store URI")
        }
        Some(uri) => Ok(ObjectStoreSpec::Uri(uri.to_string())),
    }
}

/// Tuning for commands that open a store without a database (path and store are
/// replaced by the engine).
fn base_options() -> Options {
    Options::new(std::env::temp_dir())
}

/// One line per checkpoint: id, creation time (UTC), shards, bytes.
fn checkpoint_line(c: &CheckpointSummary) -> String {
    format!(
        "{:>20}  {}  {:>6}  {:>14}  {:>14}  {:>14}  {:016x}",
        c.id,
        humantime::format_rfc3339_seconds(c.created),
        c.shards,
        c.state_bytes,
        c.memtable_bytes,
        c.uploaded_bytes,
        c.db_lineage
    )
}

const CHECKPOINT_HEADER: &str = "                  id  created (UTC)         shards     state bytes  memtable bytes  uploaded bytes  database";

fn open(dir: &std::path::Path, store: Option<&str>) -> anyhow::Result<Db> {
    let mut opts = terrace::Options::for_existing(dir)
        .with_context(|| format!("reading {}", dir.display()))?;
    opts.read_only = true;
    opts.object_store = match store {
        None => terrace::ObjectStoreSpec::Embedded,
        Some("none") => terrace::ObjectStoreSpec::Disabled,
        Some(uri) => terrace::ObjectStoreSpec::Uri(uri.to_string()),
    };
    block_on(Db::open(opts)).with_context(|| format!("opening {}", dir.display()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let store = cli.object_store.as_deref();
    let checkpoint = cli.checkpoint.as_deref();
    if checkpoint.is_some()
        && !matches!(
            cli.cmd,
            Cmd::Get { .. } | Cmd::Scan { .. } | Cmd::Stats { .. }
        )
    {
        anyhow::bail!("--checkpoint goes with get, scan or stats");
    }
    match cli.cmd {
        Cmd::Sst { file, entries } => println!("{}", inspect(&file, entries)?),
        Cmd::Get { db: args, key } => {
            let key = parse_key(&key, args.hex)?;
            let src = Source::open(args.db.as_deref(), store, checkpoint)?;
            let got = src.table(&args.table).and_then(|t| src.get(t, &key));
            src.close()?;
            match got? {
                Some(v) => println!("{}", escape(&v, usize::MAX)),
                None => anyhow::bail!("key {} not found", escape(&key, 256)),
            }
        }
        Cmd::Scan {
            db: args,
            from,
            to,
            limit,
        } => {
            let from = from.map(|k| parse_key(&k, args.hex)).transpose()?;
            let to = to.map(|k| parse_key(&k, args.hex)).transpose()?;
            let src = Source::open(args.db.as_deref(), store, checkpoint)?;
            let lower = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
            let upper = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let got = src
                .table(&args.table)
                .and_then(|t| src.scan(t, lower, upper, limit));
            src.close()?;
            for (k, v) in got? {
                println!("{} => {}", escape(&k, 256), escape(&v, 256));
            }
        }
        Cmd::Stats { db } => {
            let src = Source::open(db.as_deref(), store, checkpoint)?;
            let stats = src.stats();
            src.close()?;
            println!("{}", stats?);
        }
        Cmd::Checkpoints => {
            let spec = store_spec(store)?;
            let list = block_on(terrace::list_store_checkpoints(spec, base_options()))
                .context("listing checkpoints")?;
            println!("{CHECKPOINT_HEADER}");
            for c in &list {
                println!("{}", checkpoint_line(c));
            }
            println!("{} checkpoints", list.len());
        }
        Cmd::Gc {
            dry_run,
            min_age_secs,
            db,
            job: Some(job),
        } => {
            if store.is_some() || db.is_some() {
                anyhow::bail!(
                    "gc --job collects a whole job: give neither --object-store nor --db"
                );
            }
            let mut base = base_options();
            if let Some(secs) = min_age_secs {
                base.gc_min_age = std::time::Duration::from_secs(secs);
            }
            let report = block_on(terrace::collect_job_garbage(&job, base, dry_run))
                .context("collecting the job's garbage")?;
            for (prefix, r) in &report.prefixes {
                println!("{prefix}: {}", gc_line(r, dry_run));
            }
            println!(
                "gc{}: {} prefixes, {} objects deleted",
                if dry_run { " (dry run)" } else { "" },
                report.prefixes.len(),
                report.deleted()
            );
        }
        Cmd::Gc {
            dry_run,
            min_age_secs,
            db,
            job: None,
        } => {
            let mut base = base_options();
            let spec = match (store, db.as_deref()) {
                // A database's own embedded store, `<db>/objects`.
                (None, Some(dir)) => {
                    base.path = dir.to_path_buf();
                    ObjectStoreSpec::Embedded
                }
                _ => store_spec(store)?,
            };
            if let Some(secs) = min_age_secs {
                base.gc_min_age = std::time::Duration::from_secs(secs);
            }
            let live = db.as_deref().map(|d| open(d, store)).transpose()?;
            let report = block_on(terrace::collect_store_garbage(
                spec,
                base,
                live.as_ref(),
                dry_run,
            ));
            if let Some(db) = live {
                block_on(db.close()).context("closing the database")?;
            }
            let r = report.context("collecting garbage")?;
            println!("{}", gc_line(&r, dry_run));
            if let Some(e) = r.multipart_error {
                println!("gc: open multipart uploads could not be listed: {e}");
            }
        }
    }
    Ok(())
}

/// One collection's report as `terrace-ctl gc` prints it.
fn gc_line(r: &terrace::GcReport, dry_run: bool) -> String {
    format!(
        "gc{}: {} objects, {} referenced, {} kept, {} deleted ({} bytes), {} checkpoints read, {} abandoned checkpoint objects deleted, {} multipart uploads aborted",
        if dry_run { " (dry run)" } else { "" },
        r.objects,
        r.referenced,
        r.kept,
        r.deleted,
        r.deleted_bytes,
        r.checkpoints,
        r.abandoned_checkpoint_objects,
        r.multipart_aborted
    )
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terrace-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
