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
