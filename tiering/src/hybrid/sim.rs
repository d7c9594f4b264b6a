//! Replacement policies simulated over a trace of block ids, with no I/O: LRU and
//! S3-FIFO (Yang et al., SOSP'23: a small FIFO for new blocks, a main FIFO with
//! frequency-based reinsertion, a ghost queue of recently evicted ids), both bounded in
//! blocks. Used to choose the hybrid cache's eviction policy on Zipf traces.

use std::collections::{HashMap, HashSet, VecDeque};

use rand::Rng;

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
