//! Command-line flags shared by `rocksdb-bench` and `cobble-bench`: the names and
//! meanings of `terrace-bench`'s (db_bench's) flags, so `run.sh` passes one flag set
//! to every engine.
//!
//! Flags keep db_bench's underscores and accept `--name=value` and `--name value`;
//! booleans accept a bare `--histogram` as well as `=1` / `=true` / `=0`.
//!
//! Defaults follow `terrace-bench`, not db_bench, where they differ:
//! - `--threads 1`: there is no embedded mode; N OS threads each keep one operation
//!   in flight (the engines' APIs are synchronous).
//! - `--cache_size 8388608` (8 MiB), `--compression_type none`, `--seed 0` (a fixed
//!   seed: runs are reproducible), `--write_buffer_size 64 MiB`, `--block_size 4096`.
//! - `--disable_wal`, `--use_direct_reads` and `--use_direct_io_for_flush_and_compaction`
//!   default to **on**, to match Terrace (no WAL; every SST read and write is direct
//!   I/O). Engines without a switch say so in the header.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, Parser, ValueEnum};

use crate::benchmark::{parse_benchmark_list, Benchmark};

/// The benchmarks `run.sh` compares, in db_bench's order.
pub const DEFAULT_BENCHMARKS: &str = "fillseq,fillrandom,overwrite,readrandom,\
multireadrandom,seekrandom,updaterandom,readwhilewriting";

/// Data block compression, as `--compression_type` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionType {
    /// Blocks stored as they are.
    None,
    /// zstd at `--compression_level`.
    Zstd,
    /// lz4 (Cobble's only codec; Terrace has none).
    Lz4,
}

/// A list of benchmarks, parsed from `--benchmarks=a,b,c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchmarkList(pub Vec<Benchmark>);

impl FromStr for BenchmarkList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_benchmark_list(s).map(BenchmarkList)
    }
}

/// db_bench-style boolean: `1`, `0`, `true`, `false`, `yes`, `no`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use 1/0/true/false)")),
    }
}

/// Every flag of the harness binaries.
#[derive(Clone, Debug, Parser)]
#[command(rename_all = "snake_case")]
pub struct Flags {
    /// Comma-separated benchmarks, run in order on the same database.
    #[arg(long, default_value = DEFAULT_BENCHMARKS)]
    pub benchmarks: BenchmarkList,

    /// Number of key-value pairs (the key space is 0..num).
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,

    /// Number of read operations; -1 means `--num`.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub reads: i64,

    /// Operations of seekrandom; -1 means `--reads`. Harness-only (terrace-bench has
    /// no such flag): lets `run.sh` run a short seekrandom inside the main list for
    /// engines that cannot reopen a database (Cobble).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub seek_reads: i64,

    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,

    /// Key size in bytes: keys are zero-padded decimal indexes this wide.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,

    /// OS threads, each with one operation in flight.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,

    /// Keys per multi_get in multireadrandom.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Block cache bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub cache_size: u64,

    /// Bloom filter bits per key (0 disables filters).
    #[arg(long, default_value_t = 10)]
    pub bloom_bits: u32,

    /// Data block compression.
    #[arg(long, value_enum, default_value_t = CompressionType::None)]
    pub compression_type: CompressionType,

    /// zstd level when `--compression_type zstd`.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub compression_level: i32,

    /// Fraction of each value that is random (db_bench's `--compression_ratio`).
    #[arg(long, default_value_t = 0.5)]
    pub compression_ratio: f64,

    /// Database directory; default a fresh temporary directory removed at exit.
    #[arg(long)]
    pub db: Option<PathBuf>,

    /// Open the database at `--db` as it is instead of starting from an empty one.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = parse_bool)]
    pub use_existing_db: bool,

    /// Print a latency histogram after each benchmark.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", value_parser = parse_bool)]
    pub histogram: bool,

    /// Seed of every generated key and value.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Entries read after each seek in seekrandom.
    #[arg(long, default_value_t = 10)]
    pub seek_nexts: usize,

    /// Memtable size in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub write_buffer_size: usize,

    /// Target uncompressed data block size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub block_size: usize,

    /// Target size of compaction output files in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub target_file_size_base: u64,

    /// Skip the write-ahead log (RocksDB `WriteOptions::disable_wal`).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool)]
    pub disable_wal: bool,

    /// O_DIRECT for user reads, where the engine has the switch.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool)]
    pub use_direct_reads: bool,

    /// O_DIRECT for flush and compaction I/O, where the engine has the switch.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool)]
    pub use_direct_io_for_flush_and_compaction: bool,

    /// Background flush + compaction jobs (RocksDB `max_background_jobs`).
    #[arg(long, default_value_t = 2)]
    pub max_background_jobs: i32,

    /// Write a machine-readable JSON summary to this path; `-` writes it to stdout
    /// (the human-readable report then goes to stderr).
    #[arg(long)]
    pub json: Option<String>,
}

impl Flags {
    /// Number of reads each read benchmark performs.
    pub fn reads(&self) -> u64 {
        u64::try_from(self.reads).unwrap_or(self.num)
    }

    /// Number of operations `bench` performs if it is a read benchmark.
    pub fn reads_of(&self, bench: Benchmark) -> u64 {
        match u64::try_from(self.seek_reads) {
            Ok(n) if bench == Benchmark::SeekRandom => n,
            _ => self.reads(),
        }
    }

    /// Checks combinations clap cannot express; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.num == 0 {
            return Err("--num must be at least 1".into());
        }
        let digits = crate::keys::decimal_digits(self.num - 1);
        if self.key_size < digits {
            return Err(format!(
                "--key_size={} is too small for --num={}: keys need {digits} digits",
                self.key_size, self.num
            ));
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("--batch_size must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.compression_ratio) {
            return Err("--compression_ratio must be within 0..=1".into());
        }
        if self.use_existing_db && self.db.is_none() {
            return Err("--use_existing_db needs --db".into());
        }
        Ok(())
    }

    /// The flags as text, for the JSON summary.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("num", self.num.to_string()),
            ("reads", self.reads().to_string()),
            ("key_size", self.key_size.to_string()),
            ("value_size", self.value_size.to_string()),
            ("threads", self.threads.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("cache_size", self.cache_size.to_string()),
            ("bloom_bits", self.bloom_bits.to_string()),
            ("compression_type", format!("{:?}", self.compression_type)),
            ("compression_ratio", self.compression_ratio.to_string()),
            ("seed", self.seed.to_string()),
            ("seek_nexts", self.seek_nexts.to_string()),
            ("write_buffer_size", self.write_buffer_size.to_string()),
            ("block_size", self.block_size.to_string()),
            ("disable_wal", self.disable_wal.to_string()),
            ("use_direct_reads", self.use_direct_reads.to_string()),
            (
                "use_direct_io_for_flush_and_compaction",
                self.use_direct_io_for_flush_and_compaction.to_string(),
            ),
        ]
    }
}
