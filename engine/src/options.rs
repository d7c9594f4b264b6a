//! Database options and their validation.
//!
//! Options fall in two groups: those fixed when the database is created and checked on
//! every open (`max_key_groups`, `shards`, the table list may only grow), and tuning
//! knobs that may change between opens. [`Options::validate`] rejects inconsistent
//! settings with an [`ErrorKind::InvalidArgument`](crate::ErrorKind) error before
//! anything touches the disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
pub use terrace_tiering::hybrid::Eviction as CacheEviction;

use terrace_tiering::clock::Clock;
use terrace_tiering::store::fault::FaultConfig;
use terrace_tiering::store::retry::RetryConfig;
use terrace_tiering::store::ObjectStore;
use terrace_uploader::{NewFileHook, UploaderConfig};

use crate::error::{Error, Result};
use crate::key::KeyGroupRange;

/// Per-block compression of SST data blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Blocks are stored as they are.
    #[default]
    None,
    /// zstd at the given level (1..=22); a block is stored raw when compression does
    /// not make it smaller.
    Zstd {
        /// zstd level.
        level: i32,
    },
}

/// How a shard caches SST blocks and whole files on the local disk (see the engine's
/// `shard/cache.rs` and `docs/ARCHITECTURE.md`, "Block cache").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Whole files while the local disk budget holds the live SSTs, the hybrid block
    /// cache once it does not, switching both ways as the state grows and shrinks.
    /// Adapts only with a `local_disk_budget_bytes` (the SSD tier is then
    /// `ssd_cache_bytes`, or by default 15/16 of the budget); otherwise it is `File`.
    #[default]
    Auto,
    /// Always the hybrid cache: memory plus an SSD tier of `ssd_cache_bytes`; uploaded
    /// files lose their local copies once past the warm window.
    Hybrid,
    /// Whole local files kept or dropped by age under `local_disk_budget_bytes`, plus
    /// the memory block cache; no SSD tier.
    File,
    /// Only the memory block cache: uploaded files lose their local copies once past
    /// the warm window, and no SSD tier.
    Memory,
}

/// Directory of the embedded object store inside the database directory.
pub const EMBEDDED_STORE_DIR: &str = "objects";

/// In what order a shard downloads the files it opened without a local copy (after
/// a restore, or a lost disk) into its directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WarmOrder {
    /// Never download; blocks are read remotely through the caches.
    Off,
    /// Top level first (L0, then L1, ...): where the newest and hottest data is.
    #[default]
    Level,
    /// Most remotely read first, as observed since the open.
    Access,
}

/// Where a database keeps its SSTs for good.
#[derive(Clone, Debug, Default)]
pub enum ObjectStoreSpec {
    /// A local directory, `<path>/objects` ([`EMBEDDED_STORE_DIR`]): everything works
    /// with no set-up.
    #[default]
    Embedded,
    /// `file:///abs/path` or `s3://bucket/prefix` (endpoint, region and credentials
    /// the standard AWS way: `AWS_ENDPOINT_URL`, `AWS_REGION`, env vars, profile).
    Uri(String),
    /// A store built by the caller (tests wrap stores this way).
    Custom(Arc<dyn ObjectStore>),
    /// No object store: SSTs live only on the local disk.
    Disabled,
}

/// How to open a database. Build with [`Options::new`] and adjust the public fields.
#[derive(Clone)]
pub struct Options {
    /// Directory of the database.
    pub path: PathBuf,
    /// Create the database if the directory holds none.
    pub create_if_missing: bool,
    /// Open without writing, deleting or renaming anything, and without taking the
    /// database lock, so a live database can be inspected: the view is the state of
    /// the last durable manifest records when the open ran. Writes, flushes and
    /// compactions fail with an InvalidArgument error; nothing uploads.
    pub read_only: bool,
    /// Number of shards (one glommio executor thread each). Recorded at creation;
    /// opening with another count is an error unless `resplit_on_open` is set.
    pub shards: u32,
    /// A writer opening the database with another `shards` than it has re-splits
    /// its shards locally (files hard-linked, nothing copied; compaction trims the
    /// other shards' keys in the background). Off by default: a wrong shard count
    /// is then refused instead of changing the layout.
    pub resplit_on_open: bool,
    /// Number of key groups (Flink's max parallelism). Fixed at creation.
    pub max_key_groups: u16,
    /// The key group of a key is computed from its first N bytes (the whole key when
    /// shorter), so keys sharing that prefix live in one key group and a scan within
    /// one prefix touches one shard and one key group. `None`: the whole key. Fixed at
    /// creation.
    pub key_group_prefix_bytes: Option<u32>,
    /// The key groups this database owns of the job's `max_key_groups` (Flink's
    /// `KeyGroupRange` of one subtask); its shards split them. A key whose group is
    /// outside is refused with an InvalidArgument error. `None`: all of them. Fixed
    /// at creation (recorded in `TERRACE-META` and in every checkpoint); another
    /// range is a rescale (`Db::restore_from`).
    pub key_group_range: Option<KeyGroupRange>,
    /// Pin shard `i` to CPU `i % cores`.
    pub pin_shards: bool,
    /// State tables, by name. `"default"` always exists. Tables may be added between
    /// opens; ids of existing names never change.
    pub tables: Vec<String>,
    /// Per-table behaviour, by table name (tables not named here are plain): a merge
    /// operator for list state and counters, a time-to-live. See [`TableOptions`].
    pub table_options: HashMap<String, TableOptions>,
    /// Longest accepted user key, in bytes.
    pub max_key_bytes: usize,
    /// Longest accepted value, in bytes.
    pub max_value_bytes: usize,
    /// A memtable is frozen and flushed once it holds this many bytes.
    pub memtable_bytes: usize,
    /// Frozen memtables waiting for flush before writes stall.
    pub max_immutable_memtables: usize,
    /// Target uncompressed size of a data block.
    pub block_bytes: usize,
    /// Keys between restart points in a data block.
    pub block_restart_interval: usize,
    /// Bloom filter bits per key (0 disables filters).
    pub bloom_bits_per_key: u32,
    /// Data block compression.
    pub compression: Compression,
    /// Memory block cache for the whole database (split evenly across shards): the
    /// memory tier of the hybrid cache, demotion write buffers included.
    pub block_cache_bytes: u64,
    /// How blocks and whole files are cached locally.
    pub cache_mode: CacheMode,
    /// The block cache's SSD tier for the whole database (split evenly across shards;
    /// segment files in `<db>/shard-NNNN/cache/`). 0: no SSD tier, except that `Auto`
    /// with a `local_disk_budget_bytes` then takes 15/16 of the budget (where a tier
    /// that size is valid), so it turns hybrid once the state outgrows the disk. Used
    /// by `Auto` and `Hybrid` only; part of `local_disk_budget_bytes` when that is set.
    pub ssd_cache_bytes: u64,
    /// Size of one SSD cache segment file (a multiple of 4096); a shard whose SSD tier
    /// would hold fewer than 32 such segments uses smaller ones.
    pub cache_segment_bytes: u64,
    /// Blocks leaving memory for the SSD tier are gathered in buffers of this size and
    /// written with one O_DIRECT write each (a multiple of 4096, at most a segment).
    pub cache_write_buffer_bytes: u64,
    /// Keep data blocks zstd-compressed in the memory tier (decompressed on each hit)
    /// while it is under pressure; a memory tier with room holds them raw.
    pub cache_compress_memory: bool,
    /// The block cache's replacement policy over memory and the SSD tier: S3-FIFO
    /// (default) or LRU (see `docs/ARCHITECTURE.md`, "Block cache").
    pub cache_eviction: CacheEviction,
    /// Target size of compaction output files.
    pub target_file_bytes: u64,
    /// Number of L0 files that triggers an L0 -> L1 compaction.
    pub l0_compaction_trigger: usize,
    /// Number of L0 files at which writes stall until compaction catches up.
    pub l0_stop_writes_trigger: usize,
    /// Target size of L1; each deeper level is `level_size_multiplier` times larger.
    pub level1_bytes: u64,
    /// Growth factor between levels.
    pub level_size_multiplier: u32,
    /// Number of levels, L0 included.
    pub num_levels: usize,
    /// Requests a shard accepts from other threads before senders wait.
    pub max_pending_requests_per_shard: usize,
    /// Iterators ([`DbIter`](crate::DbIter), [`LocalDbIter`](crate::LocalDbIter)) open
    /// at once on one shard; opening one more fails with an `Unavailable` error. Each
    /// holds its snapshot (memtables, files) and one block per run per key group with
    /// data left in its range; dropping the iterator releases it.
    pub max_open_cursors_per_shard: usize,
    /// Most data blocks a scan's iterator over one SST loads ahead of itself once it
    /// reads the file block after block (each a cache lookup, from the local disk or
    /// the object store on a miss); the window starts at 2 and doubles per block, as
    /// RocksDB's automatic readahead does. At most 1024; 0 turns it off. Memory: up to
    /// this many blocks per SST a scan is reading.
    pub scan_readahead_blocks: usize,
    /// How long an idle shard spins before parking, in microseconds (cuts cross-thread
    /// request latency at the price of CPU). Only pinned shards spin (`pin_shards`):
    /// glommio ignores it for unbound executors. The default (20) is about what a park
    /// and wake-up cost in a VM: long enough to catch the next request of a caller
    /// that is already on its way (the request loop's own spin, `request_spin_us`,
    /// covers back-to-back calls), short enough that a shard waiting on the object
    /// store does not burn its core (100 µs took 14–20% more CPU per read in
    /// docs/BENCHMARKS.md, "Idle spin").
    pub spin_before_park_us: u64,
    /// How long a caller of a [`Db`](crate::Db) method spins on the answer before
    /// parking its thread, in microseconds (at most 1000; 0 never spins). Parking and
    /// being woken costs tens of µs in a VM, more than a cached read takes. The spin
    /// happens inside the future's poll, so it holds the caller's thread (a worker of
    /// an async runtime too); it is skipped when another request is in flight on the
    /// shard and on shard threads. See ARCHITECTURE, "the request path".
    pub caller_spin_us: u64,
    /// How long a pinned shard's request loop polls its channel for the next request
    /// before it lets the executor run the rest and waits the usual way, per visit of
    /// the executor, in microseconds (at most 1000; 0 never). Only while no request
    /// waits for I/O and no flush or compaction is under way. Spares a message to an
    /// idle shard the executor's loop (its io_uring syscalls and a foreign wake-up);
    /// background tasks and completions wait at most this long for the loop. See
    /// ARCHITECTURE, "the request path".
    pub request_spin_us: u64,
    /// Longest a busy foreground queue runs before the shard polls for finished I/O,
    /// in microseconds. Disk completions are only reaped between task-queue runs, so a
    /// task that keeps the queue busy without waiting (a writer loop) delays every
    /// read in flight on the shard by up to this much.
    pub foreground_latency_us: u64,
    /// Scheduler shares of foreground reads and writes.
    pub foreground_shares: usize,
    /// Scheduler shares of memtable flushes.
    pub flush_shares: usize,
    /// Scheduler shares of compactions.
    pub compaction_shares: usize,
    /// Bytes read ahead by compaction input streams.
    pub compaction_readahead_bytes: usize,
    /// Receives every new SST (the uploader's entry point).
    pub new_file_hook: Option<Arc<dyn NewFileHook>>,
    /// Where SSTs live for good. Local files are a cache of it.
    pub object_store: ObjectStoreSpec,
    /// Faults injected into every object-store request (tests and benchmarks).
    pub object_store_faults: Option<FaultConfig>,
    /// Retries of failed object-store requests.
    pub object_store_retry: RetryConfig,
    /// Threads of the background I/O runtime that talks to the object store.
    pub io_threads: usize,
    /// Object-store requests in flight at once (reads and upload parts together).
    pub max_remote_requests: usize,
    /// Upload parallelism, multipart sizes and verification.
    pub uploader: UploaderConfig,
    /// Bytes of SSTs per database written locally but not yet uploaded before
    /// flushes and compactions wait (split evenly across shards).
    pub max_pending_upload_bytes: u64,
    /// How long a file's local copy is kept after its upload, so its first reads
    /// never go remote.
    pub warm_window: std::time::Duration,
    /// Local bytes of SSTs the database may keep (split evenly across shards). When
    /// exceeded, the oldest uploaded files past their warm window lose their local
    /// copy and are read remotely. `None`: no limit.
    pub local_disk_budget_bytes: Option<u64>,
    /// Downloading files that have no local copy at open (after a restore), within
    /// the local disk budget, in the background.
    pub warm_order: WarmOrder,
    /// Download bandwidth of that warming, per shard (0: no limit).
    pub warm_bytes_per_sec: u64,
    /// How long after open compaction leaves the files it opened with alone while
    /// they have no local copy (after a restore or rescale they are all remote): no
    /// trim of a clipped remote file and no merge reading one, unless a writer is
    /// stalled on L0 at `l0_stop_writes_trigger`. Files the warmer made local,
    /// and files written since open, are compacted at once. Keeps a restored database's first reads from
    /// competing with compaction for the store.
    pub trim_delay: std::time::Duration,
    /// How long closing waits for uploads in flight; files not uploaded by then are
    /// uploaded after the next open.
    pub upload_close_timeout: std::time::Duration,
    /// Checkpoints kept in the object store; older ones are released when a new one
    /// commits (at least 1).
    pub retained_checkpoints: usize,
    /// Longest compactions pause for one checkpoint, from its start, while it writes
    /// its memtable snapshot and waits for its files (zero: never). A checkpoint right
    /// after a burst of writes otherwise shares the shard's CPU and disk with the
    /// compaction backlog and takes several times longer; compaction resumes when the
    /// checkpoint's shard part is done or this time has passed, whichever comes
    /// first, and never pauses while writers are stalled.
    pub checkpoint_compaction_pause: std::time::Duration,
    /// The garbage collector deletes an unreferenced object only once it is this
    /// old: uploads finishing and checkpoints in progress are younger. It must also
    /// cover the store's timestamp granularity and its clock's skew from ours (S3
    /// reports whole seconds): the collector tells a fresh upload from an old one by
    /// its time. Zero is for tests on a local directory store.
    pub gc_min_age: std::time::Duration,
    /// How often the database collects garbage in its object store by itself
    /// (`None`: only when [`Db::gc`](crate::Db::gc) is called).
    pub gc_interval: Option<std::time::Duration>,
    /// A shard's manifest log is replaced by a fresh one holding a snapshot of the
    /// state once it grows past this many bytes (and past twice the snapshot).
    pub manifest_roll_bytes: u64,
    /// Where the engine takes its time from (tests substitute a
    /// [`ManualClock`](terrace_tiering::clock::ManualClock)).
    pub clock: Arc<dyn Clock>,
    /// The tables' behaviour by id, built by `Db::open` from the catalog and
    /// `table_options`.
    pub(crate) catalog: Arc<crate::catalog::TableCatalog>,
}

/// Longest accepted [`TableOptions::ttl`] (100 years).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How one state table behaves. The merge operator's name and whether values carry
/// TTL stamps are recorded in `TERRACE-META` when the table is first opened with
/// them; later opens must agree (a mismatch is an InvalidArgument error naming the
/// table). A TTL's duration may change between opens.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    /// Makes `merge(table, key, operand)` available: the operand is written without
    /// reading, and reads, flushes and compactions combine it with the key's value
    /// ([`crate::merge`]; built-ins [`crate::merge::append`] for lists and
    /// [`crate::merge::u64_add`] for counters). `None`: `merge` is refused.
    pub merge_operator: Option<Arc<dyn crate::merge::MergeOperator>>,
    /// Values expire this long after they were written: reads no longer see them and
    /// compactions drop them. Time comes from [`Options::clock`]'s wall clock. At
    /// least 1 ms, at most [`MAX_TTL`]. Not combinable with a merge operator (yet).
    pub ttl: Option<Duration>,
}

impl TableOptions {
    /// A table whose merges append to a list ([`crate::merge::AppendOperator`]).
    pub fn list() -> TableOptions {
        TableOptions {
            merge_operator: Some(crate::merge::append()),
            ttl: None,
        }
    }

    /// A table of u64 counters ([`crate::merge::U64AddOperator`]).
    pub fn counter() -> TableOptions {
        TableOptions {
            merge_operator: Some(crate::merge::u64_add()),
            ttl: None,
        }
    }

    /// A table whose values expire `ttl` after they were written.
    pub fn with_ttl(ttl: Duration) -> TableOptions {
        TableOptions {
            merge_operator: None,
            ttl: Some(ttl),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("path", &self.path)
            .field("shards", &self.shards)
            .field("max_key_groups", &self.max_key_groups)
            .field("key_group_range", &self.key_group_range)
            .field("tables", &self.tables)
            .field("table_options", &self.table_options)
            .field("memtable_bytes", &self.memtable_bytes)
            .field("block_bytes", &self.block_bytes)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("compression", &self.compression)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("cache_mode", &self.cache_mode)
            .field("ssd_cache_bytes", &self.ssd_cache_bytes)
            .field("cache_eviction", &self.cache_eviction)
            .field("object_store", &self.object_store)
            .field("warm_window", &self.warm_window)
            .field("local_disk_budget_bytes", &self.local_disk_budget_bytes)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// Hard ceiling of `max_key_bytes`: key lengths are persisted as u32 and blocks must
/// hold at least one entry comfortably.
pub const KEY_BYTES_LIMIT: usize = 1 << 20;
/// Hard ceiling of `max_value_bytes`.
pub const VALUE_BYTES_LIMIT: usize = 256 << 20;

impl Options {
    /// Defaults for a database in `path`: one shard per available core.
    pub fn new(path: impl Into<PathBuf>) -> Options {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        Options {
            path: path.into(),
            create_if_missing: true,
            resplit_on_open: false,
            read_only: false,
            shards: cores,
            max_key_groups: 32768,
            key_group_prefix_bytes: None,
            key_group_range: None,
            pin_shards: true,
            tables: vec!["default".to_string()],
            max_key_bytes: 64 << 10,
            max_value_bytes: 32 << 20,
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_bytes: 4096,
            block_restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            block_cache_bytes: 64 << 20,
            cache_mode: CacheMode::Auto,
            ssd_cache_bytes: 0,
            cache_segment_bytes: 16 << 20,
            cache_write_buffer_bytes: 256 << 10,
            cache_compress_memory: true,
            cache_eviction: CacheEviction::default(),
            target_file_bytes: 64 << 20,
            l0_compaction_trigger: 4,
            l0_stop_writes_trigger: 20,
            level1_bytes: 256 << 20,
            level_size_multiplier: 10,
            num_levels: 7,
            max_pending_requests_per_shard: 4096,
            max_open_cursors_per_shard: 1024,
            scan_readahead_blocks: 16,
            spin_before_park_us: 20,
            caller_spin_us: 50,
            request_spin_us: 50,
            foreground_latency_us: 1000,
            foreground_shares: 1000,
            flush_shares: 500,
            compaction_shares: 250,
            compaction_readahead_bytes: 2 << 20,
            new_file_hook: None,
            object_store: ObjectStoreSpec::Embedded,
            object_store_faults: None,
            object_store_retry: RetryConfig::default(),
            io_threads: 2,
            max_remote_requests: 1024,
            uploader: UploaderConfig::default(),
            max_pending_upload_bytes: 1 << 30,
            warm_window: std::time::Duration::from_secs(30),
            local_disk_budget_bytes: None,
            upload_close_timeout: std::time::Duration::from_secs(60),
            manifest_roll_bytes: 32 << 20,
            retained_checkpoints: 3,
            checkpoint_compaction_pause: std::time::Duration::from_secs(2),
            gc_min_age: std::time::Duration::from_secs(600),
            gc_interval: Some(std::time::Duration::from_secs(300)),
            clock: terrace_tiering::clock::system(),
            table_options: HashMap::new(),
            catalog: Arc::default(),
            warm_order: WarmOrder::Level,
            warm_bytes_per_sec: 256 << 20,
            trim_delay: std::time::Duration::from_secs(10),
        }
    }

    /// Options to open the existing database at `path` as it was created: its shard
    /// count, key groups, key-group prefix and every table it has (tuning knobs at
    /// their defaults). For tools that open a database someone else created.
    pub fn for_existing(path: impl Into<PathBuf>) -> Result<Options> {
        let path = path.into();
        let meta = crate::meta::DbMeta::load(&path)?.ok_or_else(|| {
            Error::invalid_option(
                "path",
                format!("{} holds no Terrace database", path.display()),
            )
        })?;
        let mut opts = Options::new(path);
        opts.create_if_missing = false;
        opts.shards = meta.shards;
        opts.max_key_groups = meta.max_key_groups;
        opts.key_group_prefix_bytes = meta.key_group_prefix_bytes;
        opts.key_group_range = Some(meta.key_group_range);
        let mut tables = meta.tables;
        tables.sort();
        opts.tables = tables.into_iter().map(|(_, name)| name).collect();
        Ok(opts)
    }

    /// The key groups this database owns: `key_group_range`, or every group.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_group_range
            .unwrap_or(KeyGroupRange::all(self.max_key_groups))
    }

    /// Checks every option; the first problem found is the error.
    pub fn validate(&self) -> Result<()> {
        fn bad(option: &'static str, reason: impl Into<String>) -> Error {
            Error::invalid_option(option, reason)
        }
        if self.path.as_os_str().is_empty() {
            return Err(bad("path", "must not be empty"));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(bad("shards", format!("{} is not in 1..=1024", self.shards)));
        }
        if u32::from(self.max_key_groups) < self.shards {
            return Err(bad(
                "max_key_groups",
                format!(
                    "{} is fewer than the {} shards; every shard needs a key group",
                    self.max_key_groups, self.shards
                ),
            ));
        }
        let range = self.key_groups();
        if range.first > range.last || range.last >= self.max_key_groups {
            return Err(bad(
                "key_group_range",
                format!(
                    "{range} is not a range within the {} key groups 0-{}",
                    self.max_key_groups,
                    self.max_key_groups.saturating_sub(1)
                ),
            ));
        }
        if range.len() < self.shards {
            return Err(bad(
                "key_group_range",
                format!(
                    "{range} holds {} key groups, fewer than the {} shards; every shard needs one",
                    range.len(),
                    self.shards
                ),
            ));
        }
        if self.key_group_prefix_bytes == Some(0) {
            return Err(bad("key_group_prefix_bytes", "must be at least 1 when set"));
        }
        if self.tables.is_empty() || self.tables.len() > usize::from(u16::MAX) {
            return Err(bad("tables", "needs between 1 and 65535 names"));
        }
        for (name, t) in &self.table_options {
            if name != "default" && !self.tables.contains(name) {
                return Err(bad(
                    "table_options",
                    format!("table {name:?} is not in Options::tables"),
                ));
            }
            if let Some(ttl) = t.ttl {
                if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
                    return Err(bad(
                        "table_options",
                        format!("ttl of table {name:?} must be in 1 ms..={MAX_TTL:?}"),
                    ));
                }
                if t.merge_operator.is_some() {
                    return Err(bad(
                        "table_options",
                        format!("table {name:?} has both a merge operator and a ttl, which is not supported yet"),
                    ));
                }
            }
            if let Some(op) = &t.merge_operator {
                if op.name().is_empty() || op.name().len() > 255 {
                    return Err(bad(
                        "table_options",
                        format!("merge operator name of table {name:?} must be 1..=255 bytes"),
                    ));
                }
            }
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.is_empty() || t.len() > 255 {
                return Err(bad("tables", format!("name {t:?} must be 1..=255 bytes")));
            }
            if self.tables[..i].contains(t) {
                return Err(bad("tables", format!("name {t:?} appears twice")));
            }
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > KEY_BYTES_LIMIT {
            return Err(bad(
                "max_key_bytes",
                format!("{} is not in 1..={KEY_BYTES_LIMIT}", self.max_key_bytes),
            ));
        }
        if self.max_value_bytes > VALUE_BYTES_LIMIT {
            return Err(bad(
                "max_value_bytes",
                format!("{} exceeds {VALUE_BYTES_LIMIT}", self.max_value_bytes),
            ));
        }
        if self.caller_spin_us > 1000 {
            return Err(bad("caller_spin_us", "must be at most 1000"));
        }
        if self.request_spin_us > 1000 {
            return Err(bad("request_spin_us", "must be at most 1000"));
        }
        if !(10..=100_000).contains(&self.foreground_latency_us) {
            return Err(bad("foreground_latency_us", "must be in 10..=100000"));
        }
        if self.memtable_bytes < 64 << 10 {
            return Err(bad("memtable_bytes", "must be at least 64 KiB"));
        }
        if self.max_immutable_memtables == 0 || self.max_immutable_memtables > 64 {
            return Err(bad("max_immutable_memtables", "must be in 1..=64"));
        }
        if !(256..=(4 << 20)).contains(&self.block_bytes) {
            return Err(bad("block_bytes", "must be in 256..=4 MiB"));
        }
        if self.block_restart_interval == 0 || self.block_restart_interval > 1024 {
            return Err(bad("block_restart_interval", "must be in 1..=1024"));
        }
        if self.bloom_bits_per_key > 64 {
            return Err(bad("bloom_bits_per_key", "must be at most 64"));
        }
        if let Compression::Zstd { level } = self.compression {
            if !(1..=22).contains(&level) {
                return Err(bad(
                    "compression",
                    format!("zstd level {level} not in 1..=22"),
                ));
            }
        }
        if self.target_file_bytes < 64 << 10 {
            return Err(bad("target_file_bytes", "must be at least 64 KiB"));
        }
        if self.l0_compaction_trigger < 2 {
            return Err(bad("l0_compaction_trigger", "must be at least 2"));
        }
        if self.l0_stop_writes_trigger <= self.l0_compaction_trigger {
            return Err(bad(
                "l0_stop_writes_trigger",
                "must be larger than l0_compaction_trigger",
            ));
        }
        if self.level1_bytes < 1 << 20 {
            return Err(bad("level1_bytes", "must be at least 1 MiB"));
        }
        if self.level_size_multiplier < 2 || self.level_size_multiplier > 100 {
            return Err(bad("level_size_multiplier", "must be in 2..=100"));
        }
        if !(2..=12).contains(&self.num_levels) {
            return Err(bad("num_levels", "must be in 2..=12"));
        }
        if self.max_pending_requests_per_shard == 0 {
            return Err(bad("max_pending_requests_per_shard", "must be at least 1"));
        }
        if !(1..=1 << 20).contains(&self.max_open_cursors_per_shard) {
            return Err(bad("max_open_cursors_per_shard", "must be in 1..=1048576"));
        }
        if self.scan_readahead_blocks > 1024 {
            return Err(bad("scan_readahead_blocks", "must be at most 1024"));
        }
        if self.foreground_shares == 0 || self.flush_shares == 0 || self.compaction_shares == 0 {
            return Err(bad("*_shares", "task queue shares must be positive"));
        }
        if self.compaction_readahead_bytes < 4096 {
            return Err(bad("compaction_readahead_bytes", "must be at least 4096"));
        }
        if self.io_threads == 0 || self.io_threads > 64 {
            return Err(bad("io_threads", "must be in 1..=64"));
        }
        if self.max_remote_requests == 0 || self.max_remote_requests > 65536 {
            return Err(bad("max_remote_requests", "must be in 1..=65536"));
        }
        if let Some(f) = &self.object_store_faults {
            f.validate()
                .map_err(|e| bad("object_store_faults", e.message))?;
        }
        self.uploader.validate().map_err(|e| bad("uploader", e))?;
        if self.max_pending_upload_bytes < self.memtable_bytes as u64 {
            return Err(bad(
                "max_pending_upload_bytes",
                "must hold at least one memtable's worth of files",
            ));
        }
        if self.retained_checkpoints == 0 || self.retained_checkpoints > 10_000 {
            return Err(bad("retained_checkpoints", "must be in 1..=10000"));
        }
        if self.checkpoint_compaction_pause > std::time::Duration::from_secs(60) {
            return Err(bad("checkpoint_compaction_pause", "must be at most 60 s"));
        }
        if self
            .gc_interval
            .is_some_and(|i| i < std::time::Duration::from_secs(1))
        {
            return Err(bad("gc_interval", "must be at least 1 s when set"));
        }
        if self.manifest_roll_bytes < 4096 {
            return Err(bad("manifest_roll_bytes", "must be at least 4096"));
        }
        if self.local_disk_budget_bytes == Some(0) {
            return Err(bad("local_disk_budget_bytes", "must be positive when set"));
        }
        crate::policy::cache_mode::validate(self)
    }
}
