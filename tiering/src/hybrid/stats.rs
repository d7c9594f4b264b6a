//! Counters of a [`super::HybridCache`], per tier and per block kind. Plain data,
//! copied out by `stats()`.

use super::format::BlockKind;
use super::policy::{CacheMode, Eviction};

/// Counters of one tier for one block kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Lookups served by this tier.
    pub hits: u64,
    /// Lookups this tier could not serve.
    pub misses: u64,
    /// Bytes served (decoded sizes).
    pub hit_bytes: u64,
    /// Blocks added to this tier (memory: admissions and promotions; SSD: demotions
    /// written into a buffer, including reclaim moves).
    pub admissions: u64,
    /// Bytes added (as stored).
    pub admitted_bytes: u64,
    /// Blocks taken out of this tier to stay within its budget (memory: demoted or
    /// dropped; SSD: holes left by eviction and blocks of dropped segments).
    pub evictions: u64,
    /// Blocks held now.
    pub resident_blocks: u64,
    /// Bytes held now (memory: as stored; SSD: aligned entry spans).
    pub resident_bytes: u64,
}

/// Counters of one tier, per block kind (indexed by [`BlockKind::index`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Data, index, filter.
    pub by_kind: [KindCounters; 3],
}

impl TierStats {
    /// The counters of `kind`.
    pub fn kind(&self, kind: BlockKind) -> &KindCounters {
        &self.by_kind[kind.index()]
    }

    pub(crate) fn kind_mut(&mut self, kind: BlockKind) -> &mut KindCounters {
        &mut self.by_kind[kind.index()]
    }

    /// All kinds added up.
    pub fn total(&self) -> KindCounters {
        let mut t = KindCounters::default();
        for k in &self.by_kind {
            t.add(k);
        }
        t
    }

    /// Adds another tier's counters (e.g. of another shard), kind by kind.
    pub fn add(&mut self, other: &TierStats) {
        for (a, b) in self.by_kind.iter_mut().zip(&other.by_kind) {
            a.add(b);
        }
    }
}

impl KindCounters {
    /// Adds `other`'s counters.
    pub fn add(&mut self, other: &KindCounters) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.hit_bytes += other.hit_bytes;
        self.admissions += other.admissions;
        self.admitted_bytes += other.admitted_bytes;
        self.evictions += other.evictions;
        self.resident_blocks += other.resident_blocks;
        self.resident_bytes += other.resident_bytes;
    }
}

/// Segment reclaim work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Segments whose live blocks were moved, then deleted.
    pub segments_moved: u64,
    /// Segments deleted with their blocks (space needed and nothing movable).
    pub segments_dropped: u64,
    /// Blocks rewritten by moves.
    pub blocks_moved: u64,
    /// Bytes rewritten by moves (aligned entry spans).
    pub bytes_moved: u64,
    /// Blocks forgotten by drops, or by moves that found no room.
    pub blocks_dropped: u64,
}

/// S3-FIFO's work (all zero under LRU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FifoStats {
    /// Data blocks admitted to the small queue.
    pub small_admissions: u64,
    /// Blocks that left the small queue for the main queue (hit while there).
    pub small_to_main: u64,
    /// Blocks that left the small queue and the cache, never written to the SSD.
    pub small_evictions: u64,
    /// Blocks that left the small queue unhit but were demoted because the SSD tier
    /// was not full (`policy::warm_ssd_takes_small_exits`).
    pub small_to_cold_ssd: u64,
    /// Reads that missed on a ghost key and were admitted straight to main.
    pub ghost_hits: u64,
    /// Oldest SSD blocks requeued instead of evicted (frequency > 0).
    pub ssd_reinsertions: u64,
    /// Keys in the ghost queue now.
    pub ghost_entries: u64,
}

impl FifoStats {
    /// Adds `other`'s counters.
    pub fn add(&mut self, o: &FifoStats) {
        self.small_admissions += o.small_admissions;
        self.small_to_main += o.small_to_main;
        self.small_evictions += o.small_evictions;
        self.small_to_cold_ssd += o.small_to_cold_ssd;
        self.ghost_hits += o.ghost_hits;
        self.ssd_reinsertions += o.ssd_reinsertions;
        self.ghost_entries += o.ghost_entries;
    }
}

/// Everything a [`super::HybridCache`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HybridStats {
    /// Current mode.
    pub mode: CacheMode,
    /// Times the mode changed since open.
    pub mode_switches: u64,
    /// The memory tier.
    pub memory: TierStats,
    /// The SSD tier.
    pub ssd: TierStats,
    /// Loads from the caller's source (both tiers missed, or an SSD copy was refused).
    pub loads: u64,
    /// Lookups that joined a load or SSD read already in flight for the same block.
    pub coalesced: u64,
    /// Blocks offered but not admitted (admission said skip).
    pub not_admitted: u64,
    /// Memory bytes in use now (blocks with overhead, plus write buffers).
    pub memory_used_bytes: u64,
    /// Memory budget.
    pub memory_capacity_bytes: u64,
    /// Bytes of segment files (each counted at its capacity once created).
    pub ssd_used_bytes: u64,
    /// Bytes of live entries in segments.
    pub ssd_live_bytes: u64,
    /// SSD budget.
    pub ssd_capacity_bytes: u64,
    /// Segment files now.
    pub segments: u64,
    /// Demoted blocks dropped because too many writes were in flight or no segment
    /// could be had.
    pub demotions_dropped: u64,
    /// Buffers written to segments.
    pub segment_writes: u64,
    /// Bytes written to segments (headers and padding included).
    pub segment_write_bytes: u64,
    /// Failed segment writes (their blocks are forgotten).
    pub write_errors: u64,
    /// SSD reads that failed (the block is then loaded from the source).
    pub read_errors: u64,
    /// SSD entries refused by their checksum or header, on read or on the open scan.
    pub corruptions: u64,
    /// Segment reclaim work.
    pub reclaim: ReclaimStats,
    /// Whether open loaded the index file written by the last clean close (else it
    /// scanned the segments).
    pub index_loaded: bool,
    /// Entries rebuilt on open (from the index file or a scan of the segments).
    pub rebuilt_entries: u64,
    /// Entries skipped on open because their file is no longer live.
    pub stale_entries_skipped: u64,
    /// Blocks forgotten by `evict_file`.
    pub invalidated_blocks: u64,
    /// Blocks the index knows (in either tier or both) now.
    pub indexed_blocks: u64,
    /// Approximate heap bytes of the index (about 150 per block, in either tier). Not
    /// part of `memory_used_bytes`: size `memory_bytes` with it in mind when the SSD
    /// tier holds millions of blocks.
    pub index_bytes: u64,
    /// Blocks stored compressed in memory now.
    pub compressed_blocks: u64,
    /// Compressed memory copies replaced by raw ones on a hit, memory having room
    /// for them (`policy::compress_in_memory`).
    pub decompressed_in_memory: u64,
    /// The replacement policy.
    pub eviction: Eviction,
    /// S3-FIFO's queues (zero under LRU).
    pub s3fifo: FifoStats,
}

impl ReclaimStats {
    /// Adds `other`'s counters.
    pub fn add(&mut self, other: &ReclaimStats) {
        self.segments_moved += other.segments_moved;
        self.segments_dropped += other.segments_dropped;
        self.blocks_moved += other.blocks_moved;
        self.bytes_moved += other.bytes_moved;
        self.blocks_dropped += other.blocks_dropped;
    }
}

impl HybridStats {
    /// Adds the counters and sizes of another cache (another shard's) to these; `mode`,
    /// `eviction` and `index_loaded` stay this one's.
    pub fn add(&mut self, o: &HybridStats) {
        self.mode_switches += o.mode_switches;
        self.memory.add(&o.memory);
        self.ssd.add(&o.ssd);
        self.loads += o.loads;
        self.coalesced += o.coalesced;
        self.not_admitted += o.not_admitted;
        self.memory_used_bytes += o.memory_used_bytes;
        self.memory_capacity_bytes += o.memory_capacity_bytes;
        self.ssd_used_bytes += o.ssd_used_bytes;
        self.ssd_live_bytes += o.ssd_live_bytes;
        self.ssd_capacity_bytes += o.ssd_capacity_bytes;
        self.segments += o.segments;
        self.demotions_dropped += o.demotions_dropped;
        self.segment_writes += o.segment_writes;
        self.segment_write_bytes += o.segment_write_bytes;
        self.write_errors += o.write_errors;
        self.read_errors += o.read_errors;
        self.corruptions += o.corruptions;
        self.reclaim.add(&o.reclaim);
        self.rebuilt_entries += o.rebuilt_entries;
        self.stale_entries_skipped += o.stale_entries_skipped;
        self.invalidated_blocks += o.invalidated_blocks;
        self.indexed_blocks += o.indexed_blocks;
        self.index_bytes += o.index_bytes;
        self.compressed_blocks += o.compressed_blocks;
        self.decompressed_in_memory += o.decompressed_in_memory;
        self.s3fifo.add(&o.s3fifo);
    }
}
