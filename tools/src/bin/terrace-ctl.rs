//! `terrace-ctl`: inspect a Terrace database or SST file.
//!
//! ```text
//! terrace-ctl sst DIR/shard-0/000012.sst [--entries 20]
//! terrace-ctl get  --db DIR [--table T] [--hex] KEY
//! terrace-ctl scan --db DIR [--table T] [--hex] [--from K] [--to K] [--limit N]
//! terrace-ctl stats --db DIR
//! ```
//!
//! `get`, `scan` and `stats` open the database read-only (with the shard count and
//! key-group layout it was created with, read from its metadata): they take no lock
//! and write, delete or rename nothing, so they are safe on a database another
//! process is writing. They see its state as of its last durable manifest records.

use std::ops::Bound;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures_lite::future::block_on;
use terrace::Db;

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
}

#[derive(Args)]
struct DbArgs {
    /// Database directory.
    #[arg(long)]
    db: PathBuf,
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
        /// Database directory.
        #[arg(long)]
        db: PathBuf,
    },
}

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
    match cli.cmd {
        Cmd::Sst { file, entries } => println!("{}", inspect(&file, entries)?),
        Cmd::Get { db: args, key } => {
            let key = parse_key(&key, args.hex)?;
            let db = open(&args.db, store)?;
            let t = db.table(&args.table)?;
            let got = block_on(db.get(t, &key));
            block_on(db.close()).context("closing the database")?;
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
            let db = open(&args.db, store)?;
            let t = db.table(&args.table)?;
            let lower = from.as_deref().map_or(Bound::Unbounded, Bound::Included);
            let upper = to.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let got = block_on(db.scan(t, lower, upper, limit));
            block_on(db.close()).context("closing the database")?;
            for (k, v) in got? {
                println!("{} => {}", escape(&k, 256), escape(&v, 256));
            }
        }
        Cmd::Stats { db: dir } => {
            let db = open(&dir, store)?;
            let stats = block_on(db.stats());
            block_on(db.close()).context("closing the database")?;
            println!("{}", stats?);
        }
    }
    Ok(())
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
