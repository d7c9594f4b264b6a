//! The hybrid cache's policy choices, as pure functions over small snapshots: what to
//! admit and where, which memory pool or SSD list gives up a block, which segment to
//! reclaim and how, whether a compressed copy is worth keeping, and when to switch
//! between whole-file caching and the hybrid block cache. The cache ([`super::HybridCache`])
//! only carries the choices out, so every rule here is unit-tested without I/O.

use super::format::BlockKind;

/// Why a block is being offered to the cache. Chosen by the caller (the engine), which
/// knows where the read comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionHint {
    /// A foreground read (get, multi_get, user scan) missed: admit at the hot end.
    Read,
    /// The block belongs to a file still in its upload warm window (just flushed or
    /// compacted, its first reads are likely soon). Admitted at the cold end of memory,
    /// so it flows to the SSD tier next without pushing proven-hot blocks out.
    WarmWrite,
    /// A compaction output block. `inputs_hot` says whether the input blocks it replaces
    /// were cached (the engine asks [`super::HybridCache::contains`] while compacting):
    /// hot inputs are preloaded like a read, cold ones are not admitted.
    Preload {
        /// Whether the replaced input blocks were cached.
        inputs_hot: bool,
    },
    /// A one-off read (compaction input, bulk export): hits are served but not
    /// promoted, misses are not admitted, so it cannot flush the cache.
    Bypass,
}

/// Where an offered block goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Into memory, most recently used.
    Hot,
    /// Into memory, least recently used (next to be demoted to the SSD).
    Cold,
    /// Not cached.
    Skip,
}

/// The admission rule.
pub fn admit(hint: AdmissionHint) -> Admit {
    match hint {
        AdmissionHint::Read => Admit::Hot,
        AdmissionHint::Preload { inputs_hot: true } => Admit::Hot,
        AdmissionHint::WarmWrite => Admit::Cold,
        AdmissionHint::Preload { inputs_hot: false } | AdmissionHint::Bypass => Admit::Skip,
    }
}

/// Whether a hit promotes the block (moves it to the hot end in both tiers).
pub fn promotes_on_hit(hint: AdmissionHint) -> bool {
    !matches!(hint, AdmissionHint::Bypass)
}

/// The two memory pools: index and filter blocks are high priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemPool {
    /// Index and filter blocks.
    High,
    /// Data blocks.
    Low,
}

/// The memory pool of a block kind.
pub fn memory_pool(kind: BlockKind) -> MemPool {
    match kind {
        BlockKind::Data => MemPool::Low,
        BlockKind::Index | BlockKind::Filter => MemPool::High,
    }
}

/// Which memory pool gives up its least recently used block when memory is over budget:
/// data blocks go first, unless the high-priority pool holds more than its share
/// (`high_capacity_bytes`) or the low pool is empty. `None` when both are empty.
pub fn memory_victim_pool(
    high_bytes: u64,
    low_bytes: u64,
    high_capacity_bytes: u64,
) -> Option<MemPool> {
    if high_bytes > high_capacity_bytes || (low_bytes == 0 && high_bytes > 0) {
        Some(MemPool::High)
    } else if low_bytes > 0 {
        Some(MemPool::Low)
    } else {
        None
    }
}

/// The SSD tier's two eviction lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskList {
    /// Filter blocks, evicted first: a filter only saves reads, and filters of live
    /// files are kept in memory by their readers anyway.
    Filter,
    /// Data and index blocks, in one LRU order.
    Other,
}

/// The SSD list of a block kind.
pub fn disk_list(kind: BlockKind) -> DiskList {
    match kind {
        BlockKind::Filter => DiskList::Filter,
        BlockKind::Data | BlockKind::Index => DiskList::Other,
    }
}

/// Which SSD list gives up its least recently used block: filters first.
pub fn disk_victim_list(filter_blocks: u64, other_blocks: u64) -> Option<DiskList> {
    if filter_blocks > 0 {
        Some(DiskList::Filter)
    } else if other_blocks > 0 {
        Some(DiskList::Other)
    } else {
        None
    }
}

/// A segment class: blocks of files at levels up to `max_level` (and above the previous
/// class's) share segments, reclaimed when their live fraction falls below
/// `reclaim_below_live_ratio`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentClass {
    /// Highest LSM level of the class (inclusive).
    pub max_level: u8,
    /// Reclaim a sealed segment of this class once live bytes / written bytes fall below
    /// this. Short-lived classes (L0) use a low value: their files die by themselves and
    /// moving their blocks is wasted work. Long-lived classes use a higher one.
    pub reclaim_below_live_ratio: f64,
}

/// The class of a block at `level`: the first whose `max_level` covers it, else the last.
pub fn segment_class(level: u8, classes: &[SegmentClass]) -> usize {
    classes
        .iter()
        .position(|c| level <= c.max_level)
        .unwrap_or(classes.len().saturating_sub(1))
}

/// A segment as the reclaim policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentView {
    /// Sequence number (older is smaller).
    pub seq: u64,
    /// Its class.
    pub class: usize,
    /// Bytes of entries still indexed.
    pub live_bytes: u64,
    /// Bytes of entries written (live or not).
    pub written_bytes: u64,
    /// Sealed (no longer appended to) and not already being reclaimed.
    pub reclaimable: bool,
}

/// What to do about segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// Nothing.
    None,
    /// Rewrite this segment's live blocks elsewhere, then delete it.
    Move(u64),
    /// Delete this segment and forget its blocks (space is needed now).
    Drop(u64),
}

/// The reclaim rule. A reclaimable segment below its class's threshold is moved (the
/// emptiest first, then the oldest). When a new segment is needed and no slot is free
/// (`need_slot`), and nothing can be moved, the emptiest reclaimable segment (then the
/// oldest) is dropped.
pub fn choose_reclaim(
    segments: &[SegmentView],
    classes: &[SegmentClass],
    need_slot: bool,
) -> Reclaim {
    let fraction = |s: &SegmentView| {
        if s.written_bytes == 0 {
            0.0
        } else {
            s.live_bytes as f64 / s.written_bytes as f64
        }
    };
    let better = |a: &&SegmentView, b: &&SegmentView| {
        fraction(a).total_cmp(&fraction(b)).then(a.seq.cmp(&b.seq))
    };
    let movable = segments
        .iter()
        .filter(|s| s.reclaimable)
        .filter(|s| {
            classes
                .get(s.class)
                .is_some_and(|c| fraction(s) < c.reclaim_below_live_ratio)
        })
        .min_by(better);
    if let Some(s) = movable {
        return Reclaim::Move(s.seq);
    }
    if need_slot {
        if let Some(s) = segments.iter().filter(|s| s.reclaimable).min_by(better) {
            return Reclaim::Drop(s.seq);
        }
    }
    Reclaim::None
}

/// Whether a compressed copy is worth keeping instead of the raw block: it must save at
/// least an eighth (a hit pays a decompression).
pub fn keep_compressed(raw_len: usize, compressed_len: usize) -> bool {
    compressed_len + raw_len / 8 <= raw_len
}

/// How the local disk is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Every live SST keeps its whole local copy; the SSD tier of the block cache is
    /// idle (memory still caches blocks). Cheapest when the disk holds the whole state.
    WholeFile,
    /// Local copies of files are dropped after their warm window; blocks are cached in
    /// memory and in SSD segments.
    Hybrid,
}

/// Thresholds of the adaptive switch, as fractions of the local disk budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModePolicy {
    /// Switch to hybrid when live SST bytes exceed this fraction of the budget.
    pub enter_hybrid_ratio: f64,
    /// Switch back to whole files when live SST bytes fall to this fraction or below.
    /// Lower than `enter_hybrid_ratio`, so a state hovering near the budget does not flap.
    pub leave_hybrid_ratio: f64,
}

impl Default for ModePolicy {
    fn default() -> Self {
        ModePolicy {
            enter_hybrid_ratio: 0.9,
            leave_hybrid_ratio: 0.7,
        }
    }
}

/// The adaptive switch with hysteresis: whole files while the live SSTs fit well in the
/// local disk budget, the hybrid block cache once they do not.
pub fn choose_mode(
    local_budget_bytes: u64,
    live_sst_bytes: u64,
    current: CacheMode,
    policy: &ModePolicy,
) -> CacheMode {
    let live = live_sst_bytes as f64;
    let budget = local_budget_bytes as f64;
    match current {
        CacheMode::WholeFile if live > budget * policy.enter_hybrid_ratio => CacheMode::Hybrid,
        CacheMode::Hybrid if live <= budget * policy.leave_hybrid_ratio => CacheMode::WholeFile,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_follows_the_hint() {
        assert_eq!(admit(AdmissionHint::Read), Admit::Hot);
        assert_eq!(admit(AdmissionHint::WarmWrite), Admit::Cold);
        assert_eq!(
            admit(AdmissionHint::Preload { inputs_hot: true }),
            Admit::Hot
        );
        assert_eq!(
            admit(AdmissionHint::Preload { inputs_hot: false }),
            Admit::Skip
        );
        assert_eq!(admit(AdmissionHint::Bypass), Admit::Skip);
        assert!(!promotes_on_hit(AdmissionHint::Bypass));
        assert!(promotes_on_hit(AdmissionHint::Read));
    }

    #[test]
    fn data_blocks_leave_memory_before_index_and_filter_blocks() {
        assert_eq!(memory_pool(BlockKind::Data), MemPool::Low);
        assert_eq!(memory_pool(BlockKind::Filter), MemPool::High);
        assert_eq!(memory_victim_pool(100, 100, 500), Some(MemPool::Low));
        assert_eq!(memory_victim_pool(100, 0, 500), Some(MemPool::High));
        // Over its share, the high pool gives up blocks first.
        assert_eq!(memory_victim_pool(600, 100, 500), Some(MemPool::High));
        assert_eq!(memory_victim_pool(0, 0, 500), None);
    }

    #[test]
    fn filters_leave_the_ssd_first() {
        assert_eq!(disk_list(BlockKind::Filter), DiskList::Filter);
        assert_eq!(disk_list(BlockKind::Index), DiskList::Other);
        assert_eq!(disk_victim_list(1, 100), Some(DiskList::Filter));
        assert_eq!(disk_victim_list(0, 100), Some(DiskList::Other));
        assert_eq!(disk_victim_list(0, 0), None);
    }

    fn classes() -> Vec<SegmentClass> {
        vec![
            SegmentClass {
                max_level: 0,
                reclaim_below_live_ratio: 0.15,
            },
            SegmentClass {
                max_level: 2,
                reclaim_below_live_ratio: 0.3,
            },
            SegmentClass {
                max_level: u8::MAX,
                reclaim_below_live_ratio: 0.5,
            },
        ]
    }

    #[test]
    fn levels_map_to_classes() {
        let c = classes();
        assert_eq!(segment_class(0, &c), 0);
        assert_eq!(segment_class(1, &c), 1);
        assert_eq!(segment_class(2, &c), 1);
        assert_eq!(segment_class(6, &c), 2);
        let short = &c[..2];
        assert_eq!(segment_class(6, short), 1, "past the last class: the last");
    }

    fn seg(seq: u64, class: usize, live: u64, reclaimable: bool) -> SegmentView {
        SegmentView {
            seq,
            class,
            live_bytes: live,
            written_bytes: 100,
            reclaimable,
        }
    }

    #[test]
    fn reclaim_moves_segments_below_their_class_threshold() {
        let c = classes();
        // 20% live: below the deep class's 0.5, above L0's 0.15.
        assert_eq!(
            choose_reclaim(&[seg(1, 0, 20, true)], &c, false),
            Reclaim::None
        );
        assert_eq!(
            choose_reclaim(&[seg(1, 2, 20, true)], &c, false),
            Reclaim::Move(1)
        );
        // The emptiest first, then the oldest.
        let s = [
            seg(5, 2, 40, true),
            seg(3, 2, 10, true),
            seg(2, 2, 10, true),
        ];
        assert_eq!(choose_reclaim(&s, &c, false), Reclaim::Move(2));
        // The active segment (not reclaimable) is never chosen.
        assert_eq!(
            choose_reclaim(&[seg(1, 2, 0, false)], &c, true),
            Reclaim::None
        );
    }

    #[test]
    fn reclaim_drops_the_emptiest_segment_only_when_a_slot_is_needed() {
        let c = classes();
        let s = [
            seg(1, 0, 90, true),
            seg(2, 2, 60, true),
            seg(3, 1, 95, true),
        ];
        assert_eq!(choose_reclaim(&s, &c, false), Reclaim::None);
        assert_eq!(choose_reclaim(&s, &c, true), Reclaim::Drop(2));
    }

    #[test]
    fn compressed_copies_must_save_an_eighth() {
        assert!(keep_compressed(4096, 2000));
        assert!(keep_compressed(4096, 3584));
        assert!(!keep_compressed(4096, 3585));
    }

    #[test]
    fn mode_switches_both_ways_with_hysteresis() {
        let p = ModePolicy::default();
        let gib = 1u64 << 30;
        let mut m = CacheMode::WholeFile;
        m = choose_mode(10 * gib, 8 * gib, m, &p);
        assert_eq!(m, CacheMode::WholeFile);
        m = choose_mode(10 * gib, 10 * gib, m, &p);
        assert_eq!(m, CacheMode::Hybrid, "past 90% of the budget");
        // Shrinking a little stays hybrid (no flapping around the threshold).
        m = choose_mode(10 * gib, 8 * gib, m, &p);
        assert_eq!(m, CacheMode::Hybrid);
        m = choose_mode(10 * gib, 7 * gib, m, &p);
        assert_eq!(m, CacheMode::WholeFile, "at 70% or below");
        // A bigger budget alone switches back too.
        assert_eq!(
            choose_mode(40 * gib, 20 * gib, CacheMode::Hybrid, &p),
            CacheMode::WholeFile
        );
    }
}
