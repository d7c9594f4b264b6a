//! The cache never holds more than its memory and SSD budgets, whatever the block sizes
//! and however slow the writer is.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use rand::Rng;
use terrace_tiering::clock::seeded_rng;
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, Eviction, HybridCache};

use hybrid_support::*;

#[test]
fn memory_and_ssd_bytes_stay_within_their_budgets() {
    bounds_run(Eviction::Lru);
}

#[test]
fn memory_and_ssd_bytes_stay_within_their_budgets_under_s3fifo() {
    bounds_run(Eviction::S3Fifo);
}

fn bounds_run(eviction: Eviction) {
    run(move |dir| async move {
        let mut cfg = small_config_with(&dir, eviction);
        cfg.max_writes_in_flight = 1;
        cfg.ssd_bytes = 640 << 10; // 10 segments
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        let mut rng = seeded_rng(5);
        for i in 0..6000u64 {
            let k = key(rng.gen_range(0..50), rng.gen_range(0..200) * 4096);
            let len = rng.gen_range(1..12_000);
            let kind = [BlockKind::Data, BlockKind::Index, BlockKind::Filter][rng.gen_range(0..3)];
            let level = rng.gen_range(0..7);
            if rng.gen_bool(0.7) {
                cache.insert(k, block(k, 0, len), kind, level, AdmissionHint::Read);
            } else {
                let _ = cache
                    .get_or_load(k, kind, level, AdmissionHint::Read, async {
                        Ok(block(k, 0, len))
                    })
                    .await
                    .unwrap();
            }
            assert_bounds(&cache);
            if i % 64 == 0 {
                glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
                assert_bounds(&cache);
            }
        }
        // A block bigger than a quarter of memory is not admitted at all.
        let big = key(99, 0);
        cache.insert(
            big,
            block(big, 0, 200 << 10),
            BlockKind::Data,
            0,
            AdmissionHint::Read,
        );
        assert!(!cache.contains(&big));
        let s = cache.stats();
        assert!(s.ssd.total().evictions > 0, "{s:#?}");
        assert_bounds(&cache);
        cache.close().await.unwrap();
        assert!(segment_files_bytes(&cfg.dir).0 <= cfg.ssd_bytes);
    });
}
