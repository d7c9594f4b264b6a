//! Replacement policies simulated over a trace of block ids, with no I/O: LRU and
//! S3-FIFO (Yang et al., SOSP'23: a small FIFO for new blocks, a main FIFO with
//! frequency-based reinsertion, a ghost queue of recently evicted ids), both bounded in
//! blocks. Used to choose the hybrid cache's eviction policy on Zipf traces;
//! [`two_tier_hits`] (LRU) and [`two_tier_s3fifo_hits`] model the two policies as the
//! hybrid cache arranges them over memory and the SSD (`tests/hybrid_s3fifo.rs` checks
//! the real cache against them).

use std::collections::{HashMap, HashSet, VecDeque};

use rand::Rng;

use super::policy::{self, GhostQueue, MainExit, SmallExit};

/// Hit ratio of an LRU of `capacity` blocks over `trace`.
pub fn lru_hit_ratio(trace: &[u64], capacity: usize) -> f64 {
    let mut lru = lru::LruCache::<u64, ()>::unbounded();
    let mut hits = 0usize;
    for &k in trace {
        if lru.get(&k).is_some() {
            hits += 1;
        } else {
            lru.put(k, ());
            if lru.len() > capacity {
                lru.pop_lru();
            }
        }
    }
    hits as f64 / trace.len().max(1) as f64
}

/// Hit ratio of S3-FIFO with `capacity` blocks (10% small queue) over `trace`.
pub fn s3fifo_hit_ratio(trace: &[u64], capacity: usize) -> f64 {
    let small_cap = (capacity / 10).max(1);
    let main_cap = capacity.saturating_sub(small_cap).max(1);
    let mut small: VecDeque<u64> = VecDeque::new();
    let mut main: VecDeque<u64> = VecDeque::new();
    let mut ghost: VecDeque<u64> = VecDeque::new();
    let mut ghost_set: HashSet<u64> = HashSet::new();
    // Frequency (0..=3) of every cached id, and which queue holds it.
    let mut freq: HashMap<u64, u8> = HashMap::new();
    let mut in_main: HashSet<u64> = HashSet::new();
    let mut hits = 0usize;

    let evict_main =
        |main: &mut VecDeque<u64>, freq: &mut HashMap<u64, u8>, in_main: &mut HashSet<u64>| {
            while let Some(k) = main.pop_front() {
                let f = freq.get(&k).copied().unwrap_or(0);
                if f > 0 {
                    freq.insert(k, f - 1);
                    main.push_back(k);
                } else {
                    freq.remove(&k);
                    in_main.remove(&k);
                    return;
                }
            }
        };

    for &k in trace {
        if let Some(f) = freq.get_mut(&k) {
            hits += 1;
            *f = (*f + 1).min(3);
            continue;
        }
        if ghost_set.remove(&k) {
            if main.len() >= main_cap {
                evict_main(&mut main, &mut freq, &mut in_main);
            }
            main.push_back(k);
            in_main.insert(k);
            freq.insert(k, 0);
            continue;
        }
        // Insert into small; make room first.
        while small.len() >= small_cap {
            let Some(v) = small.pop_front() else { break };
            let f = freq.get(&v).copied().unwrap_or(0);
            if f > 0 {
                if main.len() >= main_cap {
                    evict_main(&mut main, &mut freq, &mut in_main);
                }
                main.push_back(v);
                in_main.insert(v);
                freq.insert(v, 0);
            } else {
                freq.remove(&v);
                ghost.push_back(v);
                ghost_set.insert(v);
                if ghost.len() > main_cap {
                    if let Some(g) = ghost.pop_front() {
                        ghost_set.remove(&g);
                    }
                }
            }
        }
        small.push_back(k);
        freq.insert(k, 0);
    }
    hits as f64 / trace.len().max(1) as f64
}

/// A replacement policy over block ids, bounded in blocks, for simulations.
pub trait SimPolicy {
    /// A lookup: true on a hit (the policy updates its state as on a hit).
    fn access(&mut self, id: u64) -> bool;
    /// Admits a missed id; ids it evicts are appended to `evicted`.
    fn insert(&mut self, id: u64, evicted: &mut Vec<u64>);
    /// Whether `id` is cached (no state change).
    fn contains(&self, id: u64) -> bool;
}

/// LRU for [`two_tier_hits`].
pub struct SimLru {
    lru: lru::LruCache<u64, ()>,
    capacity: usize,
}

impl SimLru {
    /// An LRU of `capacity` blocks.
    pub fn new(capacity: usize) -> SimLru {
        SimLru {
            lru: lru::LruCache::unbounded(),
            capacity: capacity.max(1),
        }
    }
}

impl SimPolicy for SimLru {
    fn access(&mut self, id: u64) -> bool {
        self.lru.get(&id).is_some()
    }
    fn insert(&mut self, id: u64, evicted: &mut Vec<u64>) {
        self.lru.put(id, ());
        while self.lru.len() > self.capacity {
            if let Some((k, _)) = self.lru.pop_lru() {
                evicted.push(k);
            }
        }
    }
    fn contains(&self, id: u64) -> bool {
        self.lru.contains(&id)
    }
}

/// S3-FIFO for [`two_tier_hits`] (10% small queue, ghost of the main queue's size).
pub struct SimS3Fifo {
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghost: VecDeque<u64>,
    ghost_set: HashSet<u64>,
    freq: HashMap<u64, u8>,
    small_cap: usize,
    main_cap: usize,
}

impl SimS3Fifo {
    /// S3-FIFO holding `capacity` blocks.
    pub fn new(capacity: usize) -> SimS3Fifo {
        let small_cap = (capacity / 10).max(1);
        SimS3Fifo {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            freq: HashMap::new(),
            small_cap,
            main_cap: capacity.saturating_sub(small_cap).max(1),
        }
    }

    fn evict_main(&mut self, evicted: &mut Vec<u64>) {
        while let Some(k) = self.main.pop_front() {
            let f = self.freq.get(&k).copied().unwrap_or(0);
            if f > 0 {
                self.freq.insert(k, f - 1);
                self.main.push_back(k);
            } else {
                self.freq.remove(&k);
                evicted.push(k);
                return;
            }
        }
    }

    fn push_main(&mut self, k: u64, evicted: &mut Vec<u64>) {
        if self.main.len() >= self.main_cap {
            self.evict_main(evicted);
        }
        self.main.push_back(k);
        self.freq.insert(k, 0);
    }
}

impl SimPolicy for SimS3Fifo {
    fn access(&mut self, id: u64) -> bool {
        match self.freq.get_mut(&id) {
            Some(f) => {
                *f = (*f + 1).min(3);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, id: u64, evicted: &mut Vec<u64>) {
        if self.ghost_set.remove(&id) {
            self.push_main(id, evicted);
            return;
        }
        while self.small.len() >= self.small_cap {
            let Some(v) = self.small.pop_front() else {
                break;
            };
            if self.freq.get(&v).copied().unwrap_or(0) > 0 {
                self.push_main(v, evicted);
            } else {
                self.freq.remove(&v);
                evicted.push(v);
                self.ghost.push_back(v);
                self.ghost_set.insert(v);
                if self.ghost.len() > self.main_cap {
                    if let Some(g) = self.ghost.pop_front() {
                        self.ghost_set.remove(&g);
                    }
                }
            }
        }
        self.small.push_back(id);
        self.freq.insert(id, 0);
    }

    fn contains(&self, id: u64) -> bool {
        self.freq.contains_key(&id)
    }
}

/// Hits of a two-tier cache over `trace`, as the hybrid cache arranges its tiers:
/// memory (`mem`) in front; every block memory evicts is demoted to the SSD tier (an
/// LRU of `ssd_capacity` blocks) unless it has a copy there; an SSD hit promotes the
/// block to memory and keeps the SSD copy. Returns (memory hits, SSD hits).
pub fn two_tier_hits(trace: &[u64], mem: &mut dyn SimPolicy, ssd_capacity: usize) -> (u64, u64) {
    let mut ssd = SimLru::new(ssd_capacity);
    let (mut mem_hits, mut ssd_hits) = (0, 0);
    let mut evicted = Vec::new();
    let mut dropped = Vec::new();
    for &k in trace {
        if mem.access(k) {
            mem_hits += 1;
            continue;
        }
        if ssd.access(k) {
            ssd_hits += 1;
        }
        mem.insert(k, &mut evicted);
        for v in evicted.drain(..) {
            if !ssd.contains(v) {
                ssd.insert(v, &mut dropped);
                dropped.clear();
            }
        }
    }
    (mem_hits, ssd_hits)
}

/// Hits of the hybrid cache's S3-FIFO over two tiers (`super::Eviction::S3Fifo`), in
/// blocks: memory holds `mem_capacity` blocks, of which the small FIFO at most
/// `small_capacity` while main has any; a small-queue block hit while there moves to
/// main (memory, an LRU), else it leaves the cache unwritten and its id becomes a
/// ghost (unless the SSD has never been full and is below 90% of it: then it is
/// demoted with frequency 0); main blocks leaving memory are demoted to the SSD unless they have a copy
/// there; the SSD (`ssd_capacity` blocks) is a FIFO whose oldest block is requeued
/// while its 2-bit frequency is above 0 (decremented), else evicted (a ghost unless
/// memory still holds it; the ghost queue keeps as many ids as both tiers hold
/// blocks); an SSD hit copies the block to memory as `ssd_hit` says and leaves
/// the SSD order alone (a copy on probation that is not hit again just leaves
/// memory); a miss on a ghost id goes straight to main. Returns (memory hits, SSD
/// hits).
pub fn two_tier_s3fifo_hits(
    trace: &[u64],
    mem_capacity: usize,
    small_capacity: usize,
    ssd_capacity: usize,
    rule: MemoryEntry,
) -> (u64, u64) {
    let mut small: VecDeque<u64> = VecDeque::new();
    let mut in_small: HashSet<u64> = HashSet::new();
    // Small-queue blocks hit while there.
    let mut hit_in_small: HashSet<u64> = HashSet::new();
    let mut main = lru::LruCache::<u64, ()>::unbounded();
    let mut disk: VecDeque<u64> = VecDeque::new();
    let mut on_disk: HashSet<u64> = HashSet::new();
    let mut freq: HashMap<u64, u8> = HashMap::new();
    let mut ghost: GhostQueue<u64> = GhostQueue::default();
    let (mut mem_hits, mut ssd_hits) = (0, 0);
    let mem_capacity = mem_capacity.max(1);
    let ssd_capacity = ssd_capacity.max(1);
    // As many ghosts as the cache holds blocks (the cache: its budgets over the
    // average block).
    let cached = (mem_capacity + ssd_capacity).max(1024);
    // Below this the SSD is not full and takes the small queue's unhit blocks too.
    let cold_ssd = (ssd_capacity as f64 * policy::SSD_NOT_FULL_RATIO) as usize;
    // Once full, the SSD stays full here (nothing else empties it).
    let mut disk_has_been_full = false;
    for &k in trace {
        if in_small.contains(&k) || main.get(&k).is_some() {
            mem_hits += 1;
            let f = freq.entry(k).or_insert(0);
            *f = policy::bump_freq(*f);
            if in_small.contains(&k) {
                hit_in_small.insert(k);
            }
            continue;
        }
        if on_disk.contains(&k) {
            ssd_hits += 1;
            let f = freq.entry(k).or_insert(0);
            *f = policy::bump_freq(*f);
            match rule {
                MemoryEntry::Hot => {
                    main.put(k, ());
                }
                MemoryEntry::Earned => {
                    small.push_back(k);
                    in_small.insert(k);
                }
            }
        } else if ghost.remove(&k) {
            freq.insert(k, 0);
            main.put(k, ());
            if rule == MemoryEntry::Earned {
                main.demote(&k);
            }
        } else {
            freq.insert(k, 0);
            small.push_back(k);
            in_small.insert(k);
        }
        while small.len() + main.len() > mem_capacity {
            let from_small = !small.is_empty() && (small.len() > small_capacity || main.is_empty());
            if from_small {
                let Some(v) = small.pop_front() else { break };
                in_small.remove(&v);
                match policy::small_exit(hit_in_small.remove(&v)) {
                    SmallExit::ToMain => {
                        main.put(v, ());
                    }
                    // An SSD hit's copy on probation: the SSD keeps the block.
                    SmallExit::Evict if on_disk.contains(&v) => {}
                    SmallExit::Evict if !disk_has_been_full && disk.len() < cold_ssd => {
                        disk.push_back(v);
                        on_disk.insert(v);
                    }
                    SmallExit::Evict => {
                        freq.remove(&v);
                        ghost.insert(v, cached);
                    }
                }
                continue;
            }
            let Some((v, ())) = main.pop_lru() else { break };
            if on_disk.contains(&v) {
                continue;
            }
            disk.push_back(v);
            on_disk.insert(v);
            while disk.len() > ssd_capacity {
                disk_has_been_full = true;
                let Some(d) = disk.pop_front() else { break };
                match policy::main_exit(freq.get(&d).copied().unwrap_or(0)) {
                    MainExit::Reinsert(f) => {
                        freq.insert(d, f);
                        disk.push_back(d);
                    }
                    MainExit::Evict => {
                        on_disk.remove(&d);
                        if !main.contains(&d) {
                            freq.remove(&d);
                            ghost.insert(d, cached);
                        }
                    }
                }
            }
        }
    }
    (mem_hits, ssd_hits)
}

/// Where blocks that are in main but not in memory enter memory (the simulator's
/// knob; the cache does [`MemoryEntry::Earned`] under S3-FIFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryEntry {
    /// An SSD hit's copy and a ghost hit at the hot end of memory's main (the cache's
    /// rule before 2026-11-27).
    Hot,
    /// An SSD hit's copy on probation in the small queue (kept only if hit again
    /// there), a ghost hit at the cold end of memory's main (next to be demoted).
    Earned,
}

/// A trace of `len` ids drawn from Zipf(`theta`) over `n` ids (id 0 the most popular),
/// with the ids scrambled so popularity does not follow id order.
pub fn zipf_trace(n: u64, theta: f64, len: usize, rng: &mut impl Rng) -> Vec<u64> {
    // Inverse-CDF sampling over a precomputed cumulative table.
    let mut cdf = Vec::with_capacity(n as usize);
    let mut sum = 0.0;
    for i in 1..=n {
        sum += 1.0 / (i as f64).powf(theta);
        cdf.push(sum);
    }
    (0..len)
        .map(|_| {
            let u = rng.gen::<f64>() * sum;
            let i = cdf.partition_point(|&c| c < u) as u64;
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_policies_hit_everything_that_fits() {
        let trace: Vec<u64> = (0..1000).map(|i| i % 50).collect();
        assert!((lru_hit_ratio(&trace, 64) - 0.95).abs() < 1e-9);
        // S3-FIFO first sees each id in its small queue (10%), so the first passes miss.
        assert!(s3fifo_hit_ratio(&trace, 64) > 0.85);
    }

    #[test]
    fn the_policy_structs_agree_with_the_single_tier_functions() {
        let mut rng = crate::clock::seeded_rng(3);
        let trace = zipf_trace(5_000, 0.99, 40_000, &mut rng);
        let run = |p: &mut dyn SimPolicy| {
            let mut ev = Vec::new();
            let mut hits = 0;
            for &k in &trace {
                if p.access(k) {
                    hits += 1;
                } else {
                    p.insert(k, &mut ev);
                }
            }
            hits as f64 / trace.len() as f64
        };
        assert!((run(&mut SimLru::new(500)) - lru_hit_ratio(&trace, 500)).abs() < 1e-12);
        assert!((run(&mut SimS3Fifo::new(500)) - s3fifo_hit_ratio(&trace, 500)).abs() < 1e-12);
        // Two tiers: the SSD catches what memory misses, whatever memory's policy.
        let (m, s) = two_tier_hits(&trace, &mut SimLru::new(100), 1000);
        assert!(m > 0 && s > 0);
        assert!((m + s) as f64 / trace.len() as f64 > lru_hit_ratio(&trace, 100));
    }

    #[test]
    fn two_tier_s3fifo_loads_fewer_blocks_than_two_tier_lru() {
        // The issue-12 "disk small" proportions: memory ~1.5% and SSD ~7% of the
        // blocks, Zipf(0.99). Steady state: the second half of the trace.
        let mut rng = crate::clock::seeded_rng(12);
        let n = 40_000;
        let trace = zipf_trace(n, 0.99, 600_000, &mut rng);
        let (mem, small, ssd) = (600, 60, 2_800);
        let half = trace.len() / 2;
        let steady = |f: &dyn Fn(&[u64]) -> (u64, u64)| {
            let (m1, s1) = f(&trace[..half]);
            let (m2, s2) = f(&trace);
            (
                (m2 - m1) as f64 / half as f64,
                (s2 - s1) as f64 / half as f64,
            )
        };
        let (lm, ls) = steady(&|t| two_tier_hits(t, &mut SimLru::new(mem), ssd));
        let (sm, ss) = steady(&|t| two_tier_s3fifo_hits(t, mem, small, ssd, MemoryEntry::Earned));
        let (lru_loaded, s3_loaded) = (1.0 - lm - ls, 1.0 - sm - ss);
        eprintln!(
            "lru: memory {lm:.3} ssd {ls:.3} loaded {lru_loaded:.3}; \
             s3fifo: memory {sm:.3} ssd {ss:.3} loaded {s3_loaded:.3}"
        );
        assert!(
            s3_loaded < lru_loaded * 0.9,
            "s3fifo loads {s3_loaded:.3}, lru {lru_loaded:.3}"
        );
        assert!(
            sm > lm * 0.95,
            "memory keeps its hot blocks: {sm:.3} vs {lm:.3}"
        );
        // Everything fits: after a few passes (first touch, then ghost to main) every
        // lookup hits.
        let cyclic: Vec<u64> = (0..10_000).map(|i| i % 100).collect();
        let (m1, s1) = two_tier_s3fifo_hits(&cyclic[..5_000], 50, 5, 200, MemoryEntry::Earned);
        let (m2, s2) = two_tier_s3fifo_hits(&cyclic, 50, 5, 200, MemoryEntry::Earned);
        assert_eq!((m2 + s2) - (m1 + s1), 5_000);
        assert!(s2 > s1, "the SSD holds what memory cannot");
    }

    #[test]
    fn memory_keeps_its_hot_blocks_when_ssd_and_ghost_hits_earn_their_place() {
        // The issue-12 "disk small" proportions again. With every SSD hit's copy and
        // every ghost hit at memory's hot end, memory hits ~6 points less than a
        // memory-only S3-FIFO of its size: blocks that were hot enough for the cache
        // (memory or SSD) push out blocks hot enough for memory.
        let mut rng = crate::clock::seeded_rng(12);
        let trace = zipf_trace(40_000, 0.99, 600_000, &mut rng);
        let (mem, small, ssd) = (600, 60, 2_800);
        let half = trace.len() / 2;
        let steady = |rule: MemoryEntry| {
            let (m1, s1) = two_tier_s3fifo_hits(&trace[..half], mem, small, ssd, rule);
            let (m2, s2) = two_tier_s3fifo_hits(&trace, mem, small, ssd, rule);
            let n = half as f64;
            ((m2 - m1) as f64 / n, (s2 - s1) as f64 / n)
        };
        let (hm, hs) = steady(MemoryEntry::Hot);
        let (em, es) = steady(MemoryEntry::Earned);
        let one_tier = {
            let mut p = SimS3Fifo::new(mem);
            let mut ev = Vec::new();
            let mut hits = 0;
            for (i, &k) in trace.iter().enumerate() {
                if p.access(k) {
                    hits += usize::from(i >= half);
                } else {
                    p.insert(k, &mut ev);
                }
            }
            hits as f64 / half as f64
        };
        eprintln!(
            "hot entry: memory {hm:.3} ssd {hs:.3} loaded {:.3}; earned: memory {em:.3} \
             ssd {es:.3} loaded {:.3}; memory-only s3fifo {one_tier:.3}",
            1.0 - hm - hs,
            1.0 - em - es
        );
        assert!(
            hm < one_tier - 0.04,
            "the old rule's loss: {hm:.3} vs {one_tier:.3}"
        );
        assert!(em > one_tier - 0.01, "memory hits {em:.3} vs {one_tier:.3}");
        assert!(
            1.0 - em - es < (1.0 - hm - hs) + 0.005,
            "the cache as a whole loads no more"
        );
    }

    #[test]
    fn a_one_off_scan_hurts_lru_more_than_s3fifo() {
        let mut rng = crate::clock::seeded_rng(1);
        let mut trace = zipf_trace(10_000, 0.99, 50_000, &mut rng);
        // A scan of 5,000 never-again ids in the middle.
        let scan: Vec<u64> = (0..5_000).map(|i| u64::MAX - i).collect();
        trace.splice(25_000..25_000, scan);
        trace.extend(zipf_trace(10_000, 0.99, 50_000, &mut rng));
        let lru = lru_hit_ratio(&trace, 1_000);
        let s3 = s3fifo_hit_ratio(&trace, 1_000);
        assert!(s3 > lru, "s3fifo {s3} lru {lru}");
    }
}
