//! The shard's block cache: [`ShardCache`], the one [`TableCache`] every read of the
//! shard goes through.
//!
//! A writable shard opens a [`HybridCache`] (memory tier of `block_cache_bytes /
//! shards`, SSD tier of `ssd_cache_bytes / shards` in `<shard dir>/cache/`, shaped by
//! [`crate::policy::cache_mode`]); a read-only open keeps a memory [`BlockCache`],
//! because it may write nothing. Data flow:
//!
//! - reads (gets, multi_gets, scans) look blocks up with `AdmissionHint::Read` (a
//!   long scan's later blocks with `Bypass`); compaction inputs never go through the
//!   cache (sequential read-ahead) but ask [`TableCache::contains`] so that compaction
//!   outputs replacing hot blocks are preloaded; flush outputs are offered as
//!   `WarmWrite` while the SSD tier is in use;
//! - [`ShardCache::evict_file`] runs when a file is deleted (`Shard::purge_obsolete`);
//!   on open, blocks of files the manifest no longer names are skipped (`is_live`);
//! - the local-copy task feeds [`ShardCache::update_mode`] (adaptive mode);
//! - [`ShardCache::close`] runs at shard close: it waits (bounded) for reads still
//!   holding the cache, then closes it so the next open starts warm.
//!
//! Invariant: once `close` began, lookups find no cache and load from the file
//! directly, so nothing touches a closed cache.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use glommio::TaskQueueHandle;
use terrace_tiering::hybrid::HybridConfig;
use terrace_tiering::{
    AdmissionHint, BlockCache, BlockKey, BlockKind, Bytes, CacheMode as DiskMode, CacheStats,
    HybridCache, HybridStats, LocalBoxFuture,
};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::policy::cache_mode::{self, MAX_WRITES_IN_FLIGHT};
use crate::sst::{BlockRead, DataBlockHook, TableCache};
use crate::version::ManifestState;

/// Directory of a shard's SSD cache segments, inside the shard directory.
pub(crate) const CACHE_DIR: &str = "cache";

/// Longest `close` waits for reads still holding the cache before it gives up on a
/// clean close (the next open then rebuilds the index by scanning the segments).
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The shard's block cache.
pub(crate) enum ShardCache {
    /// Memory only, writes nothing (read-only opens).
    Memory(BlockCache),
    /// The hybrid memory + SSD cache; `None` once closing.
    Hybrid(RefCell<Option<Rc<HybridCache>>>),
}

/// The hybrid cache configuration of shard `shard` of `opts` in `shard_dir`.
pub(crate) fn hybrid_config(
    opts: &Options,
    shard: u32,
    shard_dir: &Path,
    live_sst_bytes: u64,
) -> HybridConfig {
    let ssd = cache_mode::ssd_bytes_per_shard(opts);
    let memory = opts.block_cache_bytes / u64::from(opts.shards);
    let mut cfg = HybridConfig::new(shard_dir.join(CACHE_DIR), memory, ssd);
    // File ids are unique within a database's history (numbers never go back), and on
    // open blocks of files the manifest does not name are skipped, so the shard id is
    // identity enough; a restore that rewinds file numbers must change this.
    cfg.owner_id = u64::from(shard);
    cfg.segment_bytes =
        cache_mode::segment_bytes(opts.cache_segment_bytes, ssd, opts.cache_write_buffer_bytes);
    cfg.write_buffer_bytes = opts.cache_write_buffer_bytes;
    cfg.max_writes_in_flight = MAX_WRITES_IN_FLIGHT;
    // Segment classes and the mode policy are the tiering defaults: L0, L1–2 and
    // L3+ with reclaim thresholds 0.15, 0.3 and 0.5.
    cfg.compress_memory = opts.cache_compress_memory;
    cfg.eviction = opts.cache_eviction;
    cfg.initial_mode = cache_mode::initial_mode(
        opts.cache_mode,
        ssd,
        cache_mode::budget_per_shard(opts),
        live_sst_bytes,
        &cfg.mode_policy,
    );
    cfg
}

impl ShardCache {
    /// Opens the cache of shard `shard`: a memory cache for a read-only open, else the
    /// hybrid cache in `<shard_dir>/cache`, rebuilt from what it holds for the files in
    /// `live` (the manifest's), its background work in `background`.
    pub(crate) async fn open(
        opts: &Options,
        shard: u32,
        shard_dir: &Path,
        live: HashSet<u64>,
        live_sst_bytes: u64,
        background: TaskQueueHandle,
    ) -> Result<ShardCache> {
        if opts.read_only {
            let bytes = opts.block_cache_bytes / u64::from(opts.shards);
            return Ok(ShardCache::Memory(BlockCache::new(bytes)));
        }
        let cfg = hybrid_config(opts, shard, shard_dir, live_sst_bytes);
        let dir = cfg.dir.clone();
        let cache = HybridCache::open_in(cfg, move |id| live.contains(&id), Some(background))
            .await
            .map_err(|e| cache_error("open", &dir, e))?;
        Ok(ShardCache::Hybrid(RefCell::new(Some(Rc::new(cache)))))
    }

    /// [`Self::open`] for the files of a replayed manifest, background work in the
    /// compaction queue (demotions and segment moves never compete with reads at
    /// equal shares).
    pub(crate) async fn open_for(
        opts: &Options,
        shard: u32,
        shard_dir: &Path,
        state: &ManifestState,
        queues: super::Queues,
    ) -> Result<ShardCache> {
        let live = state.files.keys().copied().collect();
        let bytes = state.files.values().map(|(_, d)| d.size_bytes).sum();
        ShardCache::open(opts, shard, shard_dir, live, bytes, queues.compaction).await
    }

    fn hybrid(&self) -> Option<Rc<HybridCache>> {
        match self {
            ShardCache::Memory(_) => None,
            ShardCache::Hybrid(h) => h.borrow().clone(),
        }
    }

    /// Forgets every block of a deleted file.
    pub(crate) fn evict_file(&self, file_id: u64) {
        match self {
            ShardCache::Memory(m) => m.evict_file(file_id),
            ShardCache::Hybrid(_) => {
                if let Some(h) = self.hybrid() {
                    h.evict_file(file_id);
                }
            }
        }
    }

    /// The mode in force (whole files for a memory-only read-only cache).
    pub(crate) fn mode(&self) -> DiskMode {
        self.hybrid().map_or(DiskMode::WholeFile, |h| h.mode())
    }

    /// Feeds the adaptive switch; returns the mode in force.
    pub(crate) fn update_mode(&self, budget_bytes: u64, live_sst_bytes: u64) -> DiskMode {
        match self.hybrid() {
            Some(h) => h.update_mode(budget_bytes, live_sst_bytes),
            None => DiskMode::WholeFile,
        }
    }

    /// Memory-tier counters in the shape of the plain memory cache's.
    pub(crate) fn memory_stats(&self) -> CacheStats {
        match self {
            ShardCache::Memory(m) => m.stats(),
            ShardCache::Hybrid(_) => match self.hybrid() {
                Some(h) => {
                    let s = h.stats();
                    let m = s.memory.total();
                    CacheStats {
                        hits: m.hits,
                        misses: m.misses,
                        evictions: m.evictions,
                        used_bytes: s.memory_used_bytes,
                    }
                }
                None => CacheStats::default(),
            },
        }
    }

    /// Every counter of the hybrid cache (`None` for a memory-only cache or once closed).
    pub(crate) fn hybrid_stats(&self) -> Option<HybridStats> {
        self.hybrid().map(|h| h.stats())
    }

    /// Closes the hybrid cache: later lookups load directly. Waits up to
    /// [`CLOSE_WAIT`] for reads still using it; if they do not finish, the cache is
    /// dropped without its clean close (the next open scans its segments).
    pub(crate) async fn close(&self) -> Result<()> {
        let ShardCache::Hybrid(slot) = self else {
            return Ok(());
        };
        let Some(mut cache) = slot.borrow_mut().take() else {
            return Ok(());
        };
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(1);
        let cache = loop {
            match Rc::try_unwrap(cache) {
                Ok(c) => break c,
                Err(shared) if waited < CLOSE_WAIT => {
                    cache = shared;
                    glommio::timer::sleep(step).await;
                    waited += step;
                }
                Err(_) => {
                    tracing::warn!(
                        "block cache still in use at close; its index is rebuilt on the next open"
                    );
                    return Ok(());
                }
            }
        };
        let dir = cache.config().dir.clone();
        cache
            .close()
            .await
            .map_err(|e| cache_error("close", &dir, e))
    }
}

/// A [`DataBlockHook`] offering each block of output file `file_id` (at `level`) to
/// `cache` with the hint `hint` picks when the block is written (`None`: not offered).
pub(crate) fn output_hook(
    cache: &Rc<ShardCache>,
    file_id: u64,
    level: u8,
    mut hint: impl FnMut() -> Option<AdmissionHint> + 'static,
) -> DataBlockHook {
    let cache = Rc::clone(cache);
    Box::new(move |offset, block| {
        if let Some(hint) = hint() {
            cache.offer(
                BlockKey { file_id, offset },
                block,
                BlockRead { level, hint },
            );
        }
    })
}

fn cache_error(op: &'static str, dir: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::InvalidInput {
        return Error::invalid_option("cache", e.to_string());
    }
    Error::io(op, dir, e)
}

impl TableCache for ShardCache {
    fn lookup(&self, key: &BlockKey, read: BlockRead) -> Option<Bytes> {
        match self {
            ShardCache::Memory(m) => m.lookup(key, read),
            ShardCache::Hybrid(slot) => slot.borrow().as_ref().and_then(|h| h.get(key)),
        }
    }

    fn get_or_load<'a>(
        &'a self,
        key: BlockKey,
        read: BlockRead,
        load: LocalBoxFuture<'a, io::Result<Bytes>>,
    ) -> LocalBoxFuture<'a, io::Result<Bytes>> {
        match self {
            ShardCache::Memory(m) => m.get_or_load(key, read, load),
            ShardCache::Hybrid(_) => match self.hybrid() {
                Some(h) => Box::pin(async move {
                    h.get_or_load(key, BlockKind::Data, read.level, read.hint, load)
                        .await
                }),
                None => load,
            },
        }
    }

    fn contains(&self, key: &BlockKey) -> bool {
        match self {
            ShardCache::Memory(_) => false,
            ShardCache::Hybrid(slot) => slot.borrow().as_ref().is_some_and(|h| h.contains(key)),
        }
    }

    fn offer(&self, key: BlockKey, block: Bytes, read: BlockRead) {
        match self {
            ShardCache::Memory(m) => m.offer(key, block, read),
            ShardCache::Hybrid(slot) => {
                if let Some(h) = slot.borrow().as_ref() {
                    h.insert(key, block, BlockKind::Data, read.level, read.hint);
                }
            }
        }
    }
}
