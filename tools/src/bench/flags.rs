//! Command-line flags of `terrace-bench`, named and meant as in RocksDB's `db_bench`.
//!
//! Flags keep db_bench's underscores (`--value_size`) and accept both `--name=value`
//! and `--name value`. Boolean flags accept a bare `--histogram` as well as db_bench's
//! `--histogram=1` / `--histogram=true` / `--histogram=0`.
//!
//! Defaults that differ from db_bench, and why:
//! - `--threads 0` (the default) is *embedded mode*: each shard's share of the work runs
//!   on the shard's own executor thread; `--threads N` drives the database from N OS
//!   threads through the cross-thread handle instead.
//! - `--concurrency 32`: operations in flight per shard (embedded) or per thread. One
//!   db_bench thread is `--concurrency 1`. Terrace is asynchronous, so a single
//!   in-flight operation leaves a shard idle while it waits on I/O.
//! - `--cache_size 8388608` (8 MiB, db_bench's default): the block cache of the whole
//!   database, split evenly across shards.
//! - `--compression_type none`: Terrace supports none and zstd; zstd is opt-in.
//! - `--seed 0` is an ordinary seed, not "use the clock": runs are reproducible.
//! - `--max_key_groups 128` (Flink's usual max parallelism) rather than the engine's
//!   32768: a scan whose range spans key groups seeks once per key group with data
//!   when it opens, so with 32768 groups seekrandom would measure little but those
//!   seeks (readseq pays them once per partition, then a heap step per entry). Pass
//!   `--key_group_prefix_bytes` to make short scans single-group instead.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, ValueEnum};
use terrace_tiering::store::fault::{FaultConfig, Latency};

use super::benchmark::{parse_benchmark_list, Benchmark};

/// The benchmark list run when `--benchmarks` is not given (db_bench's default list,
/// restricted to what Terrace implements). seekrandom is left out: without
/// `--key_group_prefix_bytes` every seek visits every key group of every shard, which
/// makes it orders of magnitude slower than the rest; ask for it explicitly.
pub const DEFAULT_BENCHMARKS: &str = "fillseq,fillrandom,overwrite,readrandom,readseq,\
readmissing,updaterandom,multireadrandom,readwhilewriting,compact,readrandom,stats";

/// Data block compression, as `--compression_type` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionType {
    /// Blocks stored as they are.
    None,
    /// zstd at `--compression_level`.
    Zstd,
}

/// How blocks and whole files are cached locally, as `--cache_mode` spells it
/// (`terrace::CacheMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheModeFlag {
    /// Whole files while the disk budget holds the state, the hybrid cache beyond.
    Auto,
    /// Memory + SSD block cache; old files read remotely.
    Hybrid,
    /// Whole local files under the budget, memory block cache.
    File,
    /// Memory block cache only.
    Memory,
}

impl CacheModeFlag {
    /// The engine's setting.
    pub fn mode(self) -> terrace::CacheMode {
        match self {
            CacheModeFlag::Auto => terrace::CacheMode::Auto,
            CacheModeFlag::Hybrid => terrace::CacheMode::Hybrid,
            CacheModeFlag::File => terrace::CacheMode::File,
            CacheModeFlag::Memory => terrace::CacheMode::Memory,
        }
    }
}

/// The block cache's replacement policy, as `--cache_eviction` spells it
/// (`terrace::CacheEviction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CacheEvictionFlag {
    /// Least recently used over memory and the SSD tier.
    Lru,
    /// S3-FIFO: small FIFO in memory, main = memory LRU + SSD FIFO, ghost queue.
    S3fifo,
}

impl CacheEvictionFlag {
    /// The engine's setting.
    pub fn eviction(self) -> terrace::CacheEviction {
        match self {
            CacheEvictionFlag::Lru => terrace::CacheEviction::Lru,
            CacheEvictionFlag::S3fifo => terrace::CacheEviction::S3Fifo,
        }
    }
}

/// How `--restore_from` restores, as `--restore_mode` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RestoreModeFlag {
    /// Terrace's restore: serve from the store at once, warm in the background.
    Lazy,
    /// Baseline: download every object of the checkpoint, then open.
    #[value(name = "download_first")]
    DownloadFirst,
}

impl RestoreModeFlag {
    /// The tool's mode.
    pub fn mode(self) -> super::restore::RestoreMode {
        match self {
            RestoreModeFlag::Lazy => super::restore::RestoreMode::Lazy,
            RestoreModeFlag::DownloadFirst => super::restore::RestoreMode::DownloadFirst,
        }
    }
}

/// In what order files without a local copy are downloaded, as `--warm_order`
/// spells it (`terrace::WarmOrder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WarmOrderFlag {
    /// Top level first.
    Level,
    /// Most remotely read first.
    Access,
    /// Never download.
    Off,
}

impl WarmOrderFlag {
    /// The engine's setting.
    pub fn order(self) -> terrace::WarmOrder {
        match self {
            WarmOrderFlag::Level => terrace::WarmOrder::Level,
            WarmOrderFlag::Access => terrace::WarmOrder::Access,
            WarmOrderFlag::Off => terrace::WarmOrder::Off,
        }
    }
}

/// The error for more than one `--restore_from` URI without `--object_store`.
pub const RESCALE_NEEDS_OBJECT_STORE: &str =
    "restoring several databases is a rescale: give --object_store, the new database's own prefix under the sources' job root";

/// Which keys read benchmarks draw, as `--key_dist` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf(`--zipf_theta`): a real hot set.
    Zipf,
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

/// Every flag of `terrace-bench`.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "terrace-bench",
    about = "db_bench-like benchmark for the Terrace LSM state engine",
    rename_all = "snake_case",
    after_help = "Benchmarks: fillseq fillrandom overwrite readrandom readseq readmissing \
seekrandom updaterandom multireadrandom readwhilewriting mergerandom, and the pseudo-benchmarks \
flush compact waitforcompaction waitforuploads waitforwarmer waitfortrims checkpoint stats."
)]
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

    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,

    /// Key size in bytes: keys are zero-padded decimal indexes this wide.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,

    /// 0 = embedded mode (work runs on the shards' own threads); N > 0 = N OS threads
    /// driving the database through the cross-thread handle.
    #[arg(long, default_value_t = 0)]
    pub threads: u32,

    /// Operations in flight per shard (embedded mode) or per thread (`--threads N`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,

    /// Keys per multi_get in multireadrandom.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,

    /// Key distribution of read benchmarks (fills stay uniform).
    #[arg(long, value_enum, default_value_t = KeyDist::Uniform)]
    pub key_dist: KeyDist,

    /// Skew of `--key_dist=zipf`, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,

    /// Fraction of each value that is random; the rest repeats it (db_bench's
    /// `--compression_ratio`).
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

    /// Key group = hash of the first N key bytes (default: the whole key). With N
    /// below `--key_size`, runs of consecutive keys share a key group, and seekrandom
    /// stays within the seek key's prefix (db_bench's prefix seek), touching one key
    /// group per seek.
    #[arg(long)]
    pub key_group_prefix_bytes: Option<u32>,

    /// The key groups the database owns, `LO-HI` inclusive (Flink's KeyGroupRange of
    /// one subtask; default all). The workload draws only keys whose group is in the
    /// range, so "(N of N found)" counts them.
    #[arg(long, value_parser = parse_key_group_range)]
    pub key_group_range: Option<terrace::KeyGroupRange>,

    /// Spell keys as a database owning this key-group range `LO-HI` does (default:
    /// `--key_group_range`). After a rescale, `--num` and the range of one source
    /// database's fill read back exactly the keys it wrote; the range must lie in
    /// the database's own.
    #[arg(long, value_parser = parse_key_group_range)]
    pub key_space_range: Option<terrace::KeyGroupRange>,

    /// Entries fetched per scan call in readseq.
    #[arg(long, default_value_t = 1000)]
    pub readseq_chunk: usize,

    /// Take a checkpoint every N seconds during the benchmarks (0: never); each
    /// benchmark then reports the checkpoints' count, duration P50/P99 and bytes
    /// uploaded. Needs an object store.
    #[arg(long, default_value_t = 0.0)]
    pub checkpoint_every_secs: f64,

    /// Restore `--db` (an empty or missing directory) from a checkpoint in this
    /// store (`file:///abs/path` or `s3://bucket/prefix`) before the benchmarks, which
    /// then run on the restored database as with `--use_existing_db`. A
    /// comma-separated list restores several databases into one (a rescale,
    /// `Db::restore_from`): each URI a source database's prefix under one job root,
    /// `--object_store` the new database's own prefix there, `--checkpoint_id` (if
    /// given) the checkpoint of every source. With one URI and no
    /// `--object_store` the restored database keeps writing to that store; with
    /// an `--object_store` next to it, that is the new database's prefix (a
    /// rescale of one database, e.g. into `--key_group_range` half of it).
    #[arg(long)]
    pub restore_from: Option<String>,

    /// Checkpoint id to restore (default: the newest).
    #[arg(long)]
    pub checkpoint_id: Option<u64>,

    /// `lazy` (Terrace's restore: serve at once, warm in the background) or
    /// `download_first` (baseline: download every object, then open; with several
    /// `--restore_from` stores, every object of every source the rescaled database
    /// references, then open and trim: download-then-clip).
    #[arg(long, value_enum, default_value_t = RestoreModeFlag::Lazy)]
    pub restore_mode: RestoreModeFlag,

    /// Order in which files without a local copy are downloaded after a restore.
    #[arg(long, value_enum, default_value_t = WarmOrderFlag::Level)]
    pub warm_order: WarmOrderFlag,

    /// Download bandwidth of that warming per shard, bytes per second (0: no limit).
    #[arg(long, default_value_t = terrace::Options::new("").warm_bytes_per_sec)]
    pub warm_bytes_per_sec: u64,

    /// Write an SVG chart of the run here: operations per second and write P99 per
    /// second, with checkpoints and restores marked.
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// Write a machine-readable JSON summary to this path; `-` writes it to stdout
    /// (the human-readable report then goes to stderr).
    #[arg(long)]
    pub json: Option<String>,

    /// Store, cache and LSM flags (shared with terrace-nexmark).
    #[command(flatten)]
    pub store: StoreFlags,
}

/// The flags that say how the database is stored and cached: LSM sizes, caches,
/// the object store and its injected faults, the local disk budget. Shared by
/// `terrace-bench` and `terrace-nexmark` (flattened into each one's flags).
#[derive(Clone, Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct StoreFlags {
    /// Number of shards; default one per core. Fixed when the database is created.
    #[arg(long)]
    pub shards: Option<u32>,

    /// Block cache bytes for the whole database (split across shards): the memory tier.
    #[arg(long, default_value_t = 8 << 20)]
    pub cache_size: u64,

    /// How blocks and whole files are cached locally: `auto` adapts between whole
    /// files and the hybrid cache, `hybrid` is memory + SSD blocks, `file` whole local
    /// files under `--local_disk_budget`, `memory` the memory block cache only.
    #[arg(long, value_enum, default_value_t = CacheModeFlag::Auto)]
    pub cache_mode: CacheModeFlag,

    /// SSD tier of the block cache for the whole database (0: none); used by `auto`
    /// and `hybrid`.
    #[arg(long, default_value_t = 0)]
    pub ssd_cache_bytes: u64,

    /// The block cache's replacement policy over memory and the SSD tier.
    #[arg(long, value_enum, default_value_t = CacheEvictionFlag::S3fifo)]
    pub cache_eviction: CacheEvictionFlag,

    /// Size of one SSD cache segment file.
    #[arg(long, default_value_t = terrace::Options::new("").cache_segment_bytes)]
    pub cache_segment_bytes: u64,

    /// Size of one SSD cache write buffer (demoted blocks are appended to it and
    /// written with one O_DIRECT write; each shard reserves 7 of them in memory).
    #[arg(long, default_value_t = terrace::Options::new("").cache_write_buffer_bytes)]
    pub cache_write_buffer_bytes: u64,

    /// Keep data blocks zstd-compressed in the memory tier (`true` or `false`).
    #[arg(long, default_value_t = terrace::Options::new("").cache_compress_memory, action = clap::ArgAction::Set)]
    pub cache_compress_memory: bool,

    /// Bloom filter bits per key (0 disables filters).
    #[arg(long, default_value_t = 10)]
    pub bloom_bits: u32,

    /// Data block compression.
    #[arg(long, value_enum, default_value_t = CompressionType::None)]
    pub compression_type: CompressionType,

    /// zstd level when `--compression_type zstd`.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub compression_level: i32,

    /// Memtable size in bytes (per shard).
    #[arg(long, default_value_t = 64 << 20)]
    pub write_buffer_size: usize,

    /// Target uncompressed data block size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub block_size: usize,

    /// Target size of compaction output files in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub target_file_size_base: u64,

    /// Number of key groups (fixed when the database is created).
    #[arg(long, default_value_t = 128)]
    pub max_key_groups: u16,

    /// Pin shard i to CPU i % cores.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true",
          default_missing_value = "true", value_parser = parse_bool)]
    pub pin_shards: bool,

    /// How long a pinned shard polls its channel for the next request from another
    /// thread before it returns to its executor, in µs per visit (0 = never;
    /// `Options::request_spin_us`).
    #[arg(long, default_value_t = 50)]
    pub request_spin_us: u64,

    /// Most data blocks a scan's iterator over one SST reads ahead of itself
    /// (`Options::scan_readahead_blocks`; 0 = none).
    #[arg(long, default_value_t = 16)]
    pub scan_readahead_blocks: usize,

    /// How long an idle pinned shard's executor spins before it parks, in µs
    /// (`Options::spin_before_park_us`; 0 = park at once).
    #[arg(long, default_value_t = 20)]
    pub spin_before_park_us: u64,

    /// Object store holding the SSTs: `file:///abs/path`, `s3://bucket/prefix`
    /// (endpoint, region and credentials from the usual AWS variables), `none` for
    /// local files only. Default: the embedded local-directory store `<db>/objects`.
    #[arg(long)]
    pub object_store: Option<String>,

    /// S3 endpoint for `s3://` stores (sets `AWS_ENDPOINT_URL`; path-style requests).
    /// Default: what the environment says, else AWS.
    #[arg(long)]
    pub object_store_endpoint: Option<String>,

    /// S3 region for `s3://` stores (sets `AWS_REGION`).
    #[arg(long)]
    pub object_store_region: Option<String>,

    /// Latency injected into every object-store request, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub object_store_latency_ms: f64,

    /// Fraction of object-store requests failed with a retryable error (injected).
    #[arg(long, default_value_t = 0.0)]
    pub object_store_error_rate: f64,

    /// Local bytes of SSTs kept; beyond it, uploaded files past the warm window are
    /// read from the object store. Default: no limit.
    #[arg(long)]
    pub local_disk_budget: Option<u64>,

    /// Seconds a new file's local copy is kept after upload.
    #[arg(long, default_value_t = 30.0)]
    pub warm_window_secs: f64,

    /// Object-store requests in flight at once.
    #[arg(long, default_value_t = 1024)]
    pub max_remote_requests: usize,

    /// Microseconds a busy shard runs foreground tasks before reaping finished I/O
    /// (`Options::foreground_latency_us`).
    #[arg(long, default_value_t = terrace::Options::new("").foreground_latency_us)]
    pub foreground_latency_us: u64,

    /// Collect garbage in the object store every N seconds (0: only the engine's
    /// default interval).
    #[arg(long, default_value_t = 0.0)]
    pub gc_interval_secs: f64,

    /// Age below which the garbage collector keeps an unreferenced object (default:
    /// the engine's). Lower it on long fills to bound the store's disk use.
    #[arg(long)]
    pub gc_min_age_secs: Option<f64>,

    /// Longest a compaction pauses for a checkpoint's snapshot and file waits, in
    /// milliseconds (default: the engine's; 0 never pauses).
    #[arg(long)]
    pub checkpoint_compaction_pause_ms: Option<u64>,

    /// Uploads the checkpoint path waits for (memtable snapshots, flush outputs) that
    /// run at once, beside the background uploads (default: the uploader's).
    #[arg(long)]
    pub max_parallel_urgent_uploads: Option<usize>,
}

impl Flags {
    /// Number of reads each read benchmark performs.
    pub fn reads(&self) -> u64 {
        u64::try_from(self.reads).unwrap_or(self.num)
    }

    /// The stores of `--restore_from` (several: a rescale).
    pub fn restore_sources(&self) -> Vec<String> {
        self.restore_from
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of shards to open with.
    pub fn shard_count(&self) -> u32 {
        self.store.shard_count()
    }

    /// How key indexes become keys.
    pub fn key_space(&self) -> super::keys::KeySpace {
        super::keys::KeySpace {
            width: self.key_size,
            filter: self.key_space_range.or(self.key_group_range).map(|range| {
                super::keys::GroupFilter {
                    range,
                    max_key_groups: self.store.max_key_groups,
                    prefix_bytes: self.key_group_prefix_bytes.map(|n| n as usize),
                }
            }),
        }
    }

    /// Checks combinations clap cannot express; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.num == 0 {
            return Err("--num must be at least 1".into());
        }
        if let Some(r) = self.key_space_range {
            if r.last >= self.store.max_key_groups {
                return Err(format!(
                    "--key_space_range={r} goes past --max_key_groups={}",
                    self.store.max_key_groups
                ));
            }
            if self
                .key_group_range
                .is_some_and(|own| r.first < own.first || r.last > own.last)
            {
                return Err(format!(
                    "--key_space_range={r} is not inside --key_group_range"
                ));
            }
        }
        if let Some(r) = self.key_group_range {
            if r.last >= self.store.max_key_groups {
                return Err(format!(
                    "--key_group_range={r} goes past --max_key_groups={}",
                    self.store.max_key_groups
                ));
            }
        }
        let digits = super::keys::decimal_digits(self.key_space().max_number(self.num));
        if self.key_size < digits {
            return Err(format!(
                "--key_size={} is too small for --num={}: keys need {digits} digits",
                self.key_size, self.num
            ));
        }
        self.store.validate()?;
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("--batch_size must be at least 1".into());
        }
        if self.readseq_chunk == 0 {
            return Err("--readseq_chunk must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.compression_ratio) {
            return Err("--compression_ratio must be within 0..=1".into());
        }
        if self.key_dist == KeyDist::Zipf && !(self.zipf_theta > 0.0 && self.zipf_theta < 1.0) {
            return Err(format!(
                "--zipf_theta={} must be in (0, 1)",
                self.zipf_theta
            ));
        }
        if self.use_existing_db && self.db.is_none() {
            return Err("--use_existing_db needs --db".into());
        }
        if !(self.checkpoint_every_secs >= 0.0 && self.checkpoint_every_secs < 1e9) {
            return Err("--checkpoint_every_secs must be a non-negative number of seconds".into());
        }
        let sources = self.restore_sources();
        if self.restore_from.is_some() && sources.is_empty() {
            return Err("--restore_from names no store".into());
        }
        if sources.len() > 1 {
            if self.store.object_store.is_none() {
                return Err(format!(
                    "--restore_from names {} stores: {RESCALE_NEEDS_OBJECT_STORE}",
                    sources.len()
                ));
            }
            if self.use_existing_db {
                return Err("--restore_from creates the database; drop --use_existing_db".into());
            }
        } else if !sources.is_empty() {
            // An --object_store other than the source is the new database's own
            // prefix under the source's job root: a rescale of one database
            // (`Db::restore_from`), e.g. into half its key groups.
            if self.use_existing_db {
                return Err("--restore_from creates the database; drop --use_existing_db".into());
            }
        } else {
            if self.checkpoint_id.is_some() {
                return Err("--checkpoint_id needs --restore_from".into());
            }
            if self.restore_mode != RestoreModeFlag::Lazy {
                return Err("--restore_mode needs --restore_from".into());
            }
        }
        let checkpoints =
            self.checkpoint_every_secs > 0.0 || self.benchmarks.0.contains(&Benchmark::Checkpoint);
        if checkpoints && self.store.object_store.as_deref() == Some("none") {
            return Err("checkpoints need an object store; --object_store=none has none".into());
        }
        Ok(())
    }

    /// The flags as text, for the JSON summary.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("num", self.num.to_string()),
            ("reads", self.reads().to_string()),
            ("key_size", self.key_size.to_string()),
            (
                "key_group_range",
                self.key_group_range
                    .map_or_else(|| "all".to_string(), |r| r.to_string()),
            ),
            ("value_size", self.value_size.to_string()),
            ("threads", self.threads.to_string()),
            ("concurrency", self.concurrency.to_string()),
            ("shards", self.shard_count().to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("cache_size", self.store.cache_size.to_string()),
            ("bloom_bits", self.store.bloom_bits.to_string()),
            (
                "compression_type",
                format!("{:?}", self.store.compression_type),
            ),
            ("compression_ratio", self.compression_ratio.to_string()),
            ("seed", self.seed.to_string()),
            ("seek_nexts", self.seek_nexts.to_string()),
            (
                "write_buffer_size",
                self.store.write_buffer_size.to_string(),
            ),
            ("block_size", self.store.block_size.to_string()),
            (
                "object_store",
                self.store
                    .object_store
                    .clone()
                    .unwrap_or_else(|| "embedded".into()),
            ),
            (
                "object_store_latency_ms",
                self.store.object_store_latency_ms.to_string(),
            ),
            (
                "object_store_error_rate",
                self.store.object_store_error_rate.to_string(),
            ),
            (
                "local_disk_budget",
                self.store
                    .local_disk_budget
                    .map_or_else(|| "none".into(), |b| b.to_string()),
            ),
            ("warm_window_secs", self.store.warm_window_secs.to_string()),
            (
                "cache_mode",
                format!("{:?}", self.store.cache_mode).to_lowercase(),
            ),
            ("ssd_cache_bytes", self.store.ssd_cache_bytes.to_string()),
            (
                "cache_eviction",
                format!("{:?}", self.store.cache_eviction).to_lowercase(),
            ),
            (
                "cache_segment_bytes",
                self.store.cache_segment_bytes.to_string(),
            ),
            (
                "cache_write_buffer_bytes",
                self.store.cache_write_buffer_bytes.to_string(),
            ),
            (
                "cache_compress_memory",
                self.store.cache_compress_memory.to_string(),
            ),
            ("key_dist", format!("{:?}", self.key_dist).to_lowercase()),
            ("zipf_theta", self.zipf_theta.to_string()),
            (
                "checkpoint_every_secs",
                self.checkpoint_every_secs.to_string(),
            ),
            (
                "restore_from",
                self.restore_from.clone().unwrap_or_else(|| "none".into()),
            ),
            (
                "restore_mode",
                format!("{:?}", self.restore_mode).to_lowercase(),
            ),
        ]
    }
}

impl StoreFlags {
    /// Number of shards to open with: `--shards`, else one per core.
    pub fn shard_count(&self) -> u32 {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        })
    }

    /// Checks the store flags' ranges; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.object_store_error_rate) {
            return Err("--object_store_error_rate must be within 0..=1".into());
        }
        if !(self.object_store_latency_ms >= 0.0 && self.object_store_latency_ms < 3.6e6) {
            return Err("--object_store_latency_ms must be within 0..3600000".into());
        }
        if !(self.warm_window_secs >= 0.0 && self.warm_window_secs < 1e9) {
            return Err("--warm_window_secs must be a non-negative number of seconds".into());
        }
        if self.local_disk_budget == Some(0) {
            return Err("--local_disk_budget must be positive".into());
        }
        if !(self.gc_interval_secs >= 0.0 && self.gc_interval_secs < 1e9) {
            return Err("--gc_interval_secs must be a non-negative number of seconds".into());
        }
        if self
            .gc_min_age_secs
            .is_some_and(|s| !(0.0..1e9).contains(&s))
        {
            return Err("--gc_min_age_secs must be a non-negative number of seconds".into());
        }
        Ok(())
    }

    /// The S3 client reads its endpoint and region the standard AWS way; this fills
    /// those variables in from `--object_store_endpoint` and `--object_store_region`.
    /// Call it before any thread exists.
    pub fn export_s3_env(&self) {
        if let Some(endpoint) = &self.object_store_endpoint {
            std::env::set_var("AWS_ENDPOINT_URL", endpoint);
        }
        if let Some(region) = &self.object_store_region {
            std::env::set_var("AWS_REGION", region);
        }
    }

    /// Database options at `path` as these flags say; `seed` seeds the injected
    /// object-store faults.
    pub fn options(&self, path: &std::path::Path, seed: u64) -> terrace::Options {
        let mut opts = terrace::Options::new(path);
        opts.shards = self.shard_count();
        opts.max_key_groups = self.max_key_groups;
        opts.memtable_bytes = self.write_buffer_size;
        opts.block_bytes = self.block_size;
        opts.bloom_bits_per_key = self.bloom_bits;
        opts.compression = match self.compression_type {
            CompressionType::None => terrace::Compression::None,
            CompressionType::Zstd => terrace::Compression::Zstd {
                level: self.compression_level,
            },
        };
        opts.block_cache_bytes = self.cache_size;
        opts.cache_mode = self.cache_mode.mode();
        opts.ssd_cache_bytes = self.ssd_cache_bytes;
        opts.cache_eviction = self.cache_eviction.eviction();
        opts.cache_segment_bytes = self.cache_segment_bytes;
        opts.cache_write_buffer_bytes = self.cache_write_buffer_bytes;
        opts.cache_compress_memory = self.cache_compress_memory;
        opts.target_file_bytes = self.target_file_size_base;
        opts.pin_shards = self.pin_shards;
        opts.request_spin_us = self.request_spin_us;
        opts.spin_before_park_us = self.spin_before_park_us;
        opts.scan_readahead_blocks = self.scan_readahead_blocks;
        opts.object_store = match self.object_store.as_deref() {
            None => terrace::ObjectStoreSpec::Embedded,
            Some("none") => terrace::ObjectStoreSpec::Disabled,
            Some(uri) => terrace::ObjectStoreSpec::Uri(uri.to_string()),
        };
        if self.object_store_latency_ms > 0.0 || self.object_store_error_rate > 0.0 {
            opts.object_store_faults = Some(FaultConfig {
                seed,
                latency: Latency::Fixed(Duration::from_secs_f64(
                    self.object_store_latency_ms / 1000.0,
                )),
                error_rate: self.object_store_error_rate,
                ..Default::default()
            });
        }
        opts.local_disk_budget_bytes = self.local_disk_budget;
        opts.warm_window = Duration::from_secs_f64(self.warm_window_secs);
        opts.max_remote_requests = self.max_remote_requests;
        opts.foreground_latency_us = self.foreground_latency_us;
        if self.gc_interval_secs > 0.0 {
            opts.gc_interval = Some(Duration::from_secs_f64(self.gc_interval_secs));
        }
        if let Some(age) = self.gc_min_age_secs {
            opts.gc_min_age = Duration::from_secs_f64(age);
        }
        if let Some(ms) = self.checkpoint_compaction_pause_ms {
            opts.checkpoint_compaction_pause = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_parallel_urgent_uploads {
            opts.uploader.max_parallel_urgent_uploads = n;
        }
        opts
    }
}

fn parse_key_group_range(s: &str) -> Result<terrace::KeyGroupRange, String> {
    terrace::KeyGroupRange::parse(s)
        .ok_or_else(|| format!("{s:?} is not a key group range LO-HI with LO <= HI"))
}
