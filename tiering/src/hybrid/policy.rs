//! The hybrid cache's policy choices, as pure functions over small snapshots: what to
//! admit and where, which memory pool or SSD list gives up a block, which segment to
//! reclaim and how, whether a compressed copy is worth keeping, and when to switch
//! between whole-file caching and the hybrid block cache; and the S3-FIFO replacement
//! rules ([`Eviction::S3Fifo`]: small queue, frequency, ghost queue). The cache ([`super::HybridCache`])
//! only carries the choices out, so every rule here is unit-tested without I/O.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use super::format::BlockKind;

/// The replacement policy of the hybrid cache, over both media.
///
/// `Lru`: one recency order; a hit moves a block to the hot end of memory and of the
/// SSD lists, memory's least recently used blocks are demoted to the SSD, the SSD's
/// least recently used are evicted.
///
/// `S3Fifo` (Yang et al., SOSP'23), mapped onto the two media:
/// - *small queue*: a FIFO in memory (`small_queue_ratio` of the memory block budget)
///   where data blocks admitted by a read start. Its oldest block either moves to the
///   main queue (hit while there: frequency > 0) or leaves the cache without being
///   written to the SSD (a one-hit wonder), its key going to the ghost queue;
/// - *main queue*: the rest of memory (an LRU, the hottest part of main) followed by
///   the SSD. Leaving memory demotes a main block to the SSD (as with LRU); the SSD
///   lists are FIFOs with reinsertion: the oldest block with frequency > 0 is requeued
///   (no I/O, its frequency decremented), one with frequency 0 is evicted and its key
///   goes to the ghost queue. SSD hits do not reorder the SSD lists;
/// - *ghost queue*: keys of recently evicted blocks (as many as the cache holds
///   blocks); a read that misses on a ghost key is admitted straight to main;
/// - *frequency*: 2 bits per block (0..=3), bumped by every promoting hit in either
///   medium.
///
/// Index and filter blocks keep their high-priority memory pool (an LRU) under both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eviction {
    /// Least recently used over both media.
    Lru,
    /// S3-FIFO over both media (small FIFO in memory, main = memory LRU + SSD FIFO
    /// with reinsertion, ghost queue).
    #[default]
    S3Fifo,
}

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
    /// Into memory, most recently used (under S3-FIFO: the main queue's hot end).
    Hot,
    /// Into S3-FIFO's small queue (memory), on probation until a second hit.
    Small,
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

/// The admission rule of `eviction` for a block of `kind`; `ghost_hit` says whether
/// the block's key is in the ghost queue (recently evicted). Under S3-FIFO, data
/// blocks a read (or a preload) admits start in the small queue unless their key is a
/// ghost, then they go straight to main — its hot end without an SSD tier (`ssd_tier`
/// false), else its cold end: main spans memory and the SSD, and a block that earned
/// its place in the cache by a second miss has not earned memory's hot end (taking it
/// pushed memory's hottest blocks to the SSD; see `sim::two_tier_s3fifo_hits`); index
/// and filter blocks always go to their high-priority pool; warm writes enter main's
/// cold end, next to be demoted, as with LRU (they are meant for the SSD tier, where
/// the file's blocks are read after its local copy goes).
pub fn admit_with(
    hint: AdmissionHint,
    eviction: Eviction,
    kind: BlockKind,
    ghost_hit: bool,
    ssd_tier: bool,
) -> Admit {
    match (admit(hint), eviction) {
        (Admit::Hot, Eviction::S3Fifo) if kind == BlockKind::Data && !ghost_hit => Admit::Small,
        (Admit::Hot, Eviction::S3Fifo) if kind == BlockKind::Data && ssd_tier => Admit::Cold,
        (a, _) => a,
    }
}

/// Largest S3-FIFO frequency (a 2-bit counter).
pub const MAX_FREQ: u8 = 3;

/// The frequency after a hit: one more, capped at [`MAX_FREQ`].
pub fn bump_freq(freq: u8) -> u8 {
    freq.saturating_add(1).min(MAX_FREQ)
}

/// What happens to the oldest block of the small queue when memory needs room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmallExit {
    /// Hit while in the small queue: into the main queue (memory, hot end).
    ToMain,
    /// Never hit again: out of the cache, not written to the SSD; its key becomes a
    /// ghost.
    Evict,
}

/// The small queue's exit rule: `hit` while there.
pub fn small_exit(hit: bool) -> SmallExit {
    if hit {
        SmallExit::ToMain
    } else {
        SmallExit::Evict
    }
}

/// What happens to the oldest block of an SSD list under S3-FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MainExit {
    /// Hit since it was (re)queued: back to the young end with this frequency.
    Reinsert(u8),
    /// Evicted (a hole in its segment); its key becomes a ghost.
    Evict,
}

/// The main queue's exit rule on the SSD.
pub fn main_exit(freq: u8) -> MainExit {
    if freq > 0 {
        MainExit::Reinsert(freq - 1)
    } else {
        MainExit::Evict
    }
}

/// A cold SSD tier (never full since open) is not full below this fraction of its fill
/// target: see [`warm_ssd_takes_small_exits`].
pub const SSD_NOT_FULL_RATIO: f64 = 0.9;
/// A tier that has been full is not full again only below this fraction (emptied by
/// file deletions or a mode switch): reclaim keeps a full tier's live bytes a few
/// percent under its target, which must not read as room.
pub const SSD_REFILL_RATIO: f64 = 0.5;

/// Whether a block leaving the small queue unhit ([`SmallExit::Evict`]) is demoted to
/// the SSD tier anyway: yes while the tier is not full — live bytes below
/// [`SSD_NOT_FULL_RATIO`] of its fill target, or below [`SSD_REFILL_RATIO`] once it
/// `has_been_full` (evicted for room). S3-FIFO evicts nothing while the cache is not
/// full; dropping one-hit wonders from a cold SSD tier would leave it to fill only
/// through second hits and ghost hits, which takes many passes over the state. Such
/// blocks enter the SSD FIFO with frequency 0, so they are the first to go once it is
/// full.
pub fn warm_ssd_takes_small_exits(
    ssd_live_bytes: u64,
    ssd_target_bytes: u64,
    has_been_full: bool,
) -> bool {
    let ratio = if has_been_full {
        SSD_REFILL_RATIO
    } else {
        SSD_NOT_FULL_RATIO
    };
    (ssd_live_bytes as f64) < ssd_target_bytes as f64 * ratio
}

/// Under S3-FIFO a segment is reclaimed below at least this live fraction, whatever its
/// class says.
pub const S3FIFO_MIN_RECLAIM_RATIO: f64 = 0.7;

/// The segment classes reclaim works with under `eviction`. LRU: as configured.
/// S3-FIFO: thresholds raised to [`S3FIFO_MIN_RECLAIM_RATIO`]. Its SSD lists requeue
/// blocks hit since they were written, so a segment keeps its hot blocks and its live
/// fraction settles around a half: with LRU's thresholds (0.3 for L1–2) segments sit
/// unreclaimable, slots run out, and the live bytes stay far under the fill target
/// (measured: 57% of it, SSD hit ratio 0.153 where the simulator gives 0.206; at 0.7
/// both are 0.206, `tests/hybrid_s3fifo.rs`). Moving a segment rewrites the blocks
/// worth keeping — S3-FIFO's reinsertion, done on the log — and S3-FIFO writes far
/// fewer blocks to the SSD than LRU in the first place.
pub fn reclaim_classes(classes: &[SegmentClass], eviction: Eviction) -> Vec<SegmentClass> {
    classes
        .iter()
        .map(|c| match eviction {
            Eviction::Lru => *c,
            Eviction::S3Fifo => SegmentClass {
                max_level: c.max_level,
                reclaim_below_live_ratio: c.reclaim_below_live_ratio.max(S3FIFO_MIN_RECLAIM_RATIO),
            },
        })
        .collect()
}

/// The two S3-FIFO queues holding data blocks in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataQueue {
    /// The small (probation) FIFO.
    Small,
    /// The memory part of the main queue (an LRU).
    Main,
}

/// Which memory queue gives up a data block: the small queue while it holds more than
/// its share (`small_capacity_bytes`) or main is empty, else main. `None` when both
/// are empty.
pub fn data_victim_queue(
    small_bytes: u64,
    main_bytes: u64,
    small_capacity_bytes: u64,
) -> Option<DataQueue> {
    if small_bytes > 0 && (small_bytes > small_capacity_bytes || main_bytes == 0) {
        Some(DataQueue::Small)
    } else if main_bytes > 0 {
        Some(DataQueue::Main)
    } else {
        None
    }
}

/// The small queue's share of the memory block budget.
pub fn small_capacity_bytes(block_budget_bytes: u64, small_queue_ratio: f64) -> u64 {
    (block_budget_bytes as f64 * small_queue_ratio.clamp(0.0, 1.0)) as u64
}

/// S3-FIFO's ghost queue: the keys of recently evicted blocks, oldest forgotten first.
/// Bounded by the `capacity` given to each [`Self::insert`] (the engine passes the
/// number of blocks the cache holds, as the paper sizes it like the main queue).
#[derive(Debug)]
pub struct GhostQueue<K> {
    /// Keys in insertion order with the generation they were inserted under; an entry
    /// whose generation no longer matches `live` was removed or re-inserted since.
    order: VecDeque<(K, u64)>,
    live: HashMap<K, u64>,
    next_gen: u64,
}

impl<K: Copy + Eq + Hash> Default for GhostQueue<K> {
    fn default() -> Self {
        GhostQueue {
            order: VecDeque::new(),
            live: HashMap::new(),
            next_gen: 0,
        }
    }
}

impl<K: Copy + Eq + Hash> GhostQueue<K> {
    /// Remembers `key` as evicted, forgetting the oldest keys beyond `capacity`.
    pub fn insert(&mut self, key: K, capacity: usize) {
        let generation = self.next_gen;
        self.next_gen += 1;
        self.live.insert(key, generation);
        self.order.push_back((key, generation));
        while self.order.len() > capacity.max(1) {
            let Some((k, g)) = self.order.pop_front() else {
                break;
            };
            if self.live.get(&k) == Some(&g) {
                self.live.remove(&k);
            }
        }
    }

    /// Whether `key` is a ghost.
    pub fn contains(&self, key: &K) -> bool {
        self.live.contains_key(key)
    }

    /// Forgets `key` (a ghost hit, admitted to main); whether it was a ghost.
    pub fn remove(&mut self, key: &K) -> bool {
        self.live.remove(key).is_some()
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.order.clear();
        self.live.clear();
    }

    /// Approximate heap bytes.
    pub fn approx_bytes(&self) -> u64 {
        let entry = std::mem::size_of::<(K, u64)>();
        (self.order.capacity() * entry + self.live.capacity() * (entry + 1)) as u64
    }
}

/// Whether a hit promotes the block (moves it to the hot end in both tiers).
pub fn promotes_on_hit(hint: AdmissionHint) -> bool {
    !matches!(hint, AdmissionHint::Bypass)
}

/// The memory pools: index and filter blocks are high priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemPool {
    /// Index and filter blocks.
    High,
    /// Data blocks (under S3-FIFO: the memory part of the main queue).
    Low,
    /// Data blocks in S3-FIFO's small queue (never used under LRU). Counted with
    /// `Low` by [`memory_victim_pool`]; [`data_victim_queue`] splits them.
    Small,
}

/// The memory pool a block's copy joins when it was read from the SSD tier: under
/// S3-FIFO a data block goes on probation (the small queue), since one SSD hit says
/// less than a hit in memory; under LRU (and for index and filter blocks) its pool.
pub fn memory_pool_for_ssd_hit(kind: BlockKind, eviction: Eviction) -> MemPool {
    match (kind, eviction) {
        (BlockKind::Data, Eviction::S3Fifo) => MemPool::Small,
        _ => memory_pool(kind),
    }
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

/// Whether a data block entering memory (or hit there) should be held compressed:
/// while memory is under pressure (`pressed`, see [`memory_pressed`]), or when its raw
/// bytes do not fit beside what memory holds (`used` of `budget`). Compression trades
/// a decompression per hit (~1 µs for a 4 KiB block) for room; while memory has room
/// it buys nothing, so a cache that holds its working set keeps it raw, and under
/// pressure new blocks come in compressed and the raw ones age out.
pub fn compress_in_memory(pressed: bool, used: u64, raw_len: u64, budget: u64) -> bool {
    pressed || used.saturating_add(raw_len) > budget
}

/// Whether memory is still under pressure: it was (`was`: it evicted a block since
/// it last had room) and holds more than 7/8 of its budget. The gap keeps a full
/// memory from taking raw blocks into the room each eviction leaves.
pub fn memory_pressed(was: bool, used: u64, budget: u64) -> bool {
    was && used > budget - budget / 8
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
    fn s3fifo_admits_new_data_blocks_on_probation_and_ghosts_to_main() {
        let s3 = Eviction::S3Fifo;
        let read = AdmissionHint::Read;
        for ssd in [false, true] {
            assert_eq!(
                admit_with(read, s3, BlockKind::Data, false, ssd),
                Admit::Small
            );
            assert_eq!(
                admit_with(read, s3, BlockKind::Index, false, ssd),
                Admit::Hot
            );
            assert_eq!(
                admit_with(read, s3, BlockKind::Index, true, ssd),
                Admit::Hot
            );
            assert_eq!(
                admit_with(AdmissionHint::WarmWrite, s3, BlockKind::Data, false, ssd),
                Admit::Cold
            );
            assert_eq!(
                admit_with(AdmissionHint::Bypass, s3, BlockKind::Data, true, ssd),
                Admit::Skip
            );
            assert_eq!(
                admit_with(
                    AdmissionHint::Preload { inputs_hot: true },
                    s3,
                    BlockKind::Data,
                    false,
                    ssd
                ),
                Admit::Small
            );
        }
        // A ghost goes to main: memory's hot end in one tier, main's cold end (next to
        // be demoted to the SSD) in two.
        assert_eq!(
            admit_with(read, s3, BlockKind::Data, true, false),
            Admit::Hot
        );
        assert_eq!(
            admit_with(read, s3, BlockKind::Data, true, true),
            Admit::Cold
        );
        // LRU is the plain rule.
        for kind in [BlockKind::Data, BlockKind::Filter] {
            for (ghost, ssd) in [(false, false), (true, true)] {
                assert_eq!(
                    admit_with(read, Eviction::Lru, kind, ghost, ssd),
                    Admit::Hot
                );
            }
        }
    }

    #[test]
    fn frequency_is_a_capped_two_bit_counter() {
        let mut f = 0;
        for want in [1, 2, 3, 3, 3] {
            f = bump_freq(f);
            assert_eq!(f, want);
        }
        assert_eq!(bump_freq(u8::MAX), MAX_FREQ);
        assert_eq!(main_exit(3), MainExit::Reinsert(2));
        assert_eq!(main_exit(1), MainExit::Reinsert(0));
        assert_eq!(main_exit(0), MainExit::Evict);
        // A block reinserted at most MAX_FREQ times before it is evicted.
        let (mut f, mut passes) = (MAX_FREQ, 0);
        while let MainExit::Reinsert(next) = main_exit(f) {
            f = next;
            passes += 1;
        }
        assert_eq!(passes, 3);
    }

    #[test]
    fn a_one_hit_wonder_leaves_the_small_queue_and_a_block_hit_twice_moves_to_main() {
        assert_eq!(small_exit(false), SmallExit::Evict);
        assert_eq!(small_exit(true), SmallExit::ToMain);
        // The small queue gives up blocks while above its share, or main is empty.
        assert_eq!(data_victim_queue(200, 800, 100), Some(DataQueue::Small));
        assert_eq!(data_victim_queue(100, 800, 100), Some(DataQueue::Main));
        assert_eq!(data_victim_queue(50, 0, 100), Some(DataQueue::Small));
        assert_eq!(data_victim_queue(0, 10, 100), Some(DataQueue::Main));
        assert_eq!(data_victim_queue(0, 0, 100), None);
        assert_eq!(small_capacity_bytes(1000, 0.1), 100);
        // A cold SSD tier takes one-hit wonders; a full one (>= 90% of target) does not.
        assert!(warm_ssd_takes_small_exits(0, 1000, false));
        assert!(warm_ssd_takes_small_exits(899, 1000, false));
        assert!(!warm_ssd_takes_small_exits(900, 1000, false));
        assert!(!warm_ssd_takes_small_exits(0, 0, false), "no SSD tier");
        // Once full, a few percent of slack is not room; half empty is.
        assert!(!warm_ssd_takes_small_exits(850, 1000, true));
        assert!(warm_ssd_takes_small_exits(499, 1000, true));
        assert_eq!(
            small_capacity_bytes(1000, 7.0),
            1000,
            "never above the budget"
        );
    }

    #[test]
    fn the_ghost_queue_is_bounded_and_forgets_the_oldest() {
        let mut g = GhostQueue::default();
        for k in 0..10u64 {
            g.insert(k, 4);
        }
        assert_eq!(g.len(), 4);
        assert!(!g.contains(&5));
        assert!((6..10).all(|k| g.contains(&k)));
        // A hit takes the key out; re-inserting it makes it the newest.
        assert!(g.remove(&6));
        assert!(!g.remove(&6));
        g.insert(7, 4); // 7 again: its older entry must not evict the new one
        for k in 10..12 {
            g.insert(k, 4);
        }
        assert!(
            g.contains(&7),
            "re-inserted keys count from their last insert"
        );
        assert!(!g.contains(&8));
        // Entries (stale ones included) never exceed the capacity.
        for k in 0..1000 {
            g.insert(k % 7, 16);
            assert!(g.order.len() <= 16 && g.len() <= 16);
        }
        g.clear();
        assert!(g.is_empty());
        assert!(g.approx_bytes() > 0 || g.order.capacity() == 0);
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
    fn s3fifo_reclaims_segments_sooner() {
        let c = classes();
        assert_eq!(reclaim_classes(&c, Eviction::Lru), c);
        let s3 = reclaim_classes(&c, Eviction::S3Fifo);
        assert!(s3
            .iter()
            .all(|x| x.reclaim_below_live_ratio == S3FIFO_MIN_RECLAIM_RATIO));
        assert_eq!(s3[1].max_level, c[1].max_level);
        // 60% live: kept under LRU, moved under S3-FIFO.
        let s = [seg(1, 1, 60, true)];
        assert_eq!(choose_reclaim(&s, &c, false), Reclaim::None);
        assert_eq!(choose_reclaim(&s, &s3, false), Reclaim::Move(1));
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
    fn blocks_are_compressed_in_memory_only_under_pressure_or_when_they_do_not_fit() {
        assert!(!compress_in_memory(false, 0, 4096, 1 << 20));
        assert!(!compress_in_memory(false, (1 << 20) - 4096, 4096, 1 << 20));
        assert!(compress_in_memory(false, (1 << 20) - 4095, 4096, 1 << 20));
        assert!(compress_in_memory(false, u64::MAX, 4096, 1 << 20));
        assert!(compress_in_memory(false, 0, 4096, 0));
        assert!(compress_in_memory(true, 0, 4096, 1 << 20));
    }

    #[test]
    fn memory_stays_pressed_until_it_falls_below_seven_eighths() {
        let budget = 800;
        assert!(!memory_pressed(false, 800, budget), "never evicted");
        assert!(memory_pressed(true, 800, budget));
        assert!(memory_pressed(true, 701, budget));
        assert!(!memory_pressed(true, 700, budget));
        assert!(!memory_pressed(true, 0, 0));
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
