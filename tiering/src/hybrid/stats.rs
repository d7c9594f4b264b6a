//! Counters of a [`super::HybridCache`], per tier and per block kind. Plain data,
//! copied out by `stats()`.

use super::format::BlockKind;
use super::policy::CacheMode;

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
            t.hits += k.hits;
            t.misses += k.misses;
            t.hit_bytes += k.hit_bytes;
            t.admissions += k.admissions;
            t.admitted_bytes += k.admitted_bytes;
            t.evictions += k.evictions;
            t.resident_blocks += k.resident_blocks;
            t.resident_bytes += k.resident_bytes;
        }
        t
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

/// Everything a [`super::HybridCache`] counts.
#[derive(Clone, Copy, Debug, PartialEq)]
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
}
