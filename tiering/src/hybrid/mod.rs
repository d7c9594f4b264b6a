//! The hybrid block cache: one cache of SST blocks over two media, memory and a local
//! SSD area, with one replacement order over both (entries differ only by medium).
//!
//! What each file owns:
//! - [`cache`](HybridCache): the per-shard cache and its data flow (lookup, shared
//!   loads, admission, demotion to SSD segments, SSD eviction, segment reclaim, the
//!   background writer, rebuild on open from the index file or a scan).
//! - `index`: the in-memory index (block → memory copy and/or segment location) and its
//!   recency lists.
//! - [`format`](mod@format): the on-SSD formats (segments, entries, index file;
//!   versioned, checksummed), pure.
//! - `segment`: segment file I/O through glommio DMA files (O_DIRECT, io_uring).
//! - [`policy`]: every policy choice as a pure function (admission, eviction order,
//!   the S3-FIFO rules and ghost queue, reclaim, compression, the whole-file / hybrid
//!   switch).
//! - `flight`: sharing one load among concurrent misses of a block.
//! - [`sim`]: replacement policies (LRU, S3-FIFO, and two tiers) simulated over a
//!   trace, no I/O.
//! - [`HybridConfig`], [`HybridStats`]: options and counters.
//!
//! The cache is per shard and `!Send`: no locks, no atomics. It must be opened and used
//! on the shard's glommio executor, after [`crate::probe_direct_io`] (which
//! [`HybridCache::open`] runs in its directory).
//!
//! How the engine uses it (in place of the per-shard [`crate::BlockCache`]):
//! - open one per shard with [`HybridCache::open_in`] (its own directory, the
//!   database lineage as `owner_id`, `is_live` from the manifest, background work in the
//!   flush or compaction task queue), and [`HybridCache::close`] it on shard close;
//! - read every block through [`HybridCache::get_or_load`], whose load reads the block
//!   from the file (local or remote), verifies and decompresses it: the cache holds the
//!   contents the reader wants. Foreground reads pass [`AdmissionHint::Read`],
//!   compaction inputs [`AdmissionHint::Bypass`]; flush and compaction outputs may
//!   insert their blocks with [`AdmissionHint::WarmWrite`] (file in its upload warm
//!   window) or [`AdmissionHint::Preload`] (asking [`HybridCache::contains`] of the
//!   input blocks they replace);
//! - call [`HybridCache::evict_file`] when a file is deleted (no version or snapshot
//!   reads it any more), before its id could ever be reused;
//! - call [`HybridCache::update_mode`] from the tiering task with the shard's disk budget
//!   and live SST bytes, and keep whole local copies only in [`CacheMode::WholeFile`];
//! - report [`HybridCache::stats`] in the engine's stats.

mod cache;
mod config;
mod flight;
pub mod format;
mod index;
pub mod policy;
mod segment;
pub mod sim;
mod stats;

pub use cache::HybridCache;
pub use config::{HybridConfig, MEMORY_ENTRY_OVERHEAD_BYTES};
pub use format::{BlockKind, Codec};
pub use policy::{AdmissionHint, CacheMode, Eviction, ModePolicy, SegmentClass};
pub use stats::{FifoStats, HybridStats, KindCounters, ReclaimStats, TierStats};
