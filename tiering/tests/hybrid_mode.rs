//! The adaptive switch: whole-file caching while the live SSTs fit the local budget,
//! the hybrid block cache when they do not; both ways, without a restart, reported in
//! the stats.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::hybrid::{AdmissionHint, BlockKind, CacheMode, HybridCache};

use hybrid_support::*;

const GIB: u64 = 1 << 30;

fn fill(cache: &HybridCache, file: u64) {
    for b in 0..300u64 {
        let k = key(file, b * 4096);
        cache.insert(
            k,
            block(k, 0, 3000),
            BlockKind::Data,
            2,
            AdmissionHint::Read,
        );
    }
}

#[test]
fn the_cache_switches_modes_both_ways_as_the_state_grows_and_shrinks() {
    run(|dir| async move {
        let cfg = small_config(&dir);
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        assert_eq!(cache.mode(), CacheMode::Hybrid);
        fill(&cache, 1);
        cache.flush().await.unwrap();
        assert!(segment_files_bytes(&cfg.dir).1 > 0);

        // The state shrinks well below the budget: whole files; the SSD tier empties.
        assert_eq!(cache.update_mode(10 * GIB, 5 * GIB), CacheMode::WholeFile);
        cache.flush().await.unwrap();
        let s = cache.stats();
        assert_eq!(s.mode, CacheMode::WholeFile);
        assert_eq!(s.mode_switches, 1);
        assert_eq!(s.segments, 0);
        assert_eq!(s.ssd.total().resident_blocks, 0);
        assert_eq!(segment_files_bytes(&cfg.dir).1, 0);
        // Memory still caches; nothing goes to the SSD.
        fill(&cache, 2);
        cache.flush().await.unwrap();
        assert_eq!(segment_files_bytes(&cfg.dir).1, 0);
        assert!(cache.get(&key(2, 299 * 4096)).is_some());

        // Hysteresis: 80% of the budget is not enough to leave whole files...
        assert_eq!(cache.update_mode(10 * GIB, 8 * GIB), CacheMode::WholeFile);
        // ...above 90% is.
        assert_eq!(
            cache.update_mode(10 * GIB, 9_800_000_000),
            CacheMode::Hybrid
        );
        fill(&cache, 3);
        cache.flush().await.unwrap();
        assert!(segment_files_bytes(&cfg.dir).1 > 0);
        let s = cache.stats();
        assert_eq!(s.mode, CacheMode::Hybrid);
        assert_eq!(s.mode_switches, 2);
        // Shrinking a little stays hybrid.
        assert_eq!(cache.update_mode(10 * GIB, 8 * GIB), CacheMode::Hybrid);
        cache.close().await.unwrap();
    });
}
