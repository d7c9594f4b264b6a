//! Admission and eviction order: filter blocks leave the SSD first; reads that bypass
//! admission (compaction inputs, one-off scans) do not flush hot blocks; warm writes
//! enter at the cold end; compaction outputs enter only when their inputs were hot.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};

use hybrid_support::*;

#[test]
fn filter_blocks_are_evicted_from_the_ssd_before_data_blocks() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        // Index and filter blocks get no protected share of memory here, so filters
        // reach the SSD quickly.
        cfg.high_priority_ratio = 0.0;
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        for b in 0..60u64 {
            let k = key(1, b * 4096);
            cache.insert(
                k,
                block(k, 0, 2000),
                BlockKind::Filter,
                3,
                AdmissionHint::Read,
            );
        }
        let mut saw_filter_eviction = false;
        for b in 0..3000u64 {
            let k = key(2 + b % 7, b * 4096);
            cache.insert(
                k,
                block(k, 0, 3000),
                BlockKind::Data,
                3,
                AdmissionHint::Read,
            );
            if b % 4 == 0 {
                cache.flush().await.unwrap();
            }
            let s = cache.stats();
            let filters = s.ssd.kind(BlockKind::Filter);
            let data = s.ssd.kind(BlockKind::Data);
            saw_filter_eviction |= filters.evictions > 0;
            if data.evictions > 0 {
                assert_eq!(
                    filters.resident_blocks, 0,
                    "a data block left the SSD while filters stayed: {s:#?}"
                );
            }
            assert_bounds(&cache);
        }
        let s = cache.stats();
        assert!(saw_filter_eviction, "{s:#?}");
        assert!(s.ssd.kind(BlockKind::Data).evictions > 0, "{s:#?}");
        cache.close().await.unwrap();
    });
}

async fn hot_blocks_survive(hint: AdmissionHint) -> usize {
    let (tx, rx) = std::sync::mpsc::channel();
    run(move |dir| async move {
        let cache = HybridCache::open(small_config(&dir), |_| true)
            .await
            .unwrap();
        let hot: Vec<_> = (0..30u64).map(|b| key(1, b * 4096)).collect();
        for &k in &hot {
            cache
                .get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, async {
                    Ok(block(k, 0, 2000))
                })
                .await
                .unwrap();
        }
        // A scan of 6 MB of other blocks.
        for b in 0..2000u64 {
            let k = key(2, b * 4096);
            let got = cache
                .get_or_load(k, BlockKind::Data, 1, hint, async { Ok(block(k, 0, 3000)) })
                .await
                .unwrap();
            assert_eq!(got, block(k, 0, 3000));
        }
        let in_memory = hot.iter().filter(|k| cache.get(k).is_some()).count();
        tx.send(in_memory).unwrap();
        cache.close().await.unwrap();
    });
    rx.recv().unwrap()
}

#[test]
fn a_scan_that_bypasses_admission_does_not_flush_hot_blocks() {
    let kept = futures_lite::future::block_on(hot_blocks_survive(AdmissionHint::Bypass));
    assert_eq!(kept, 30, "every hot block is still in memory");
    // The same scan admitted as reads pushes them out of memory.
    let kept = futures_lite::future::block_on(hot_blocks_survive(AdmissionHint::Read));
    assert!(kept < 30, "{kept}");
}

#[test]
fn warm_writes_enter_cold_and_preloads_need_hot_inputs() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        // Sixty reads, then a warm write, then reads until memory overflows.
        for b in 0..60u64 {
            let k = key(1, b * 4096);
            cache.insert(
                k,
                block(k, 0, 2000),
                BlockKind::Data,
                0,
                AdmissionHint::Read,
            );
        }
        let warm = key(9, 0);
        cache.insert(
            warm,
            block(warm, 0, 2000),
            BlockKind::Data,
            0,
            AdmissionHint::WarmWrite,
        );
        assert!(cache.contains(&warm));
        let mut b = 60u64;
        while cache.stats().memory.kind(BlockKind::Data).evictions == 0 {
            let k = key(1, b * 4096);
            cache.insert(
                k,
                block(k, 0, 2000),
                BlockKind::Data,
                0,
                AdmissionHint::Read,
            );
            b += 1;
        }
        // The warm block left memory first (to the SSD, where it is still served),
        // before reads older than it.
        assert!(
            cache.get(&warm).is_none(),
            "the warm block was evicted from memory first"
        );
        let s = cache.stats();
        assert!(
            cache.get(&key(1, 59 * 4096)).is_some(),
            "an older read is still in memory: {s:#?}"
        );
        assert!(cache.contains(&warm));
        let got = cache
            .get_or_load(
                warm,
                BlockKind::Data,
                0,
                AdmissionHint::Read,
                must_not_load(),
            )
            .await
            .unwrap();
        assert_eq!(got, block(warm, 0, 2000));

        let cold = key(10, 0);
        cache.insert(
            cold,
            block(cold, 0, 100),
            BlockKind::Data,
            1,
            AdmissionHint::Preload { inputs_hot: false },
        );
        assert!(!cache.contains(&cold));
        let hot = key(10, 4096);
        cache.insert(
            hot,
            block(hot, 0, 100),
            BlockKind::Data,
            1,
            AdmissionHint::Preload { inputs_hot: true },
        );
        assert!(cache.contains(&hot));
        assert!(cache.stats().not_admitted >= 1);
        cache.close().await.unwrap();
    });
}

#[test]
fn whole_file_mode_lends_the_idle_write_buffer_reservation_to_blocks() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        cfg.initial_mode = terrace_tiering::hybrid::CacheMode::WholeFile;
        let reserved_budget = cfg.block_memory_bytes();
        let memory = cfg.memory_bytes;
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        for b in 0..200u64 {
            let k = key(1, b * 4096);
            cache.insert(
                k,
                block(k, 0, 2000),
                BlockKind::Data,
                1,
                AdmissionHint::Read,
            );
            assert_bounds(&cache);
        }
        let s = cache.stats();
        assert!(
            s.memory_used_bytes > reserved_budget && s.memory_used_bytes <= memory,
            "whole-file mode uses the buffer reservation for blocks: {s:#?}"
        );
        // Switching to hybrid gives the reservation back to the write buffers.
        let mode = cache.update_mode(1, u64::MAX);
        assert_eq!(mode, terrace_tiering::hybrid::CacheMode::Hybrid);
        assert_bounds(&cache);
        let blocks = cache.stats().memory.total().resident_bytes;
        assert!(blocks <= reserved_budget, "{blocks} > {reserved_budget}");
        cache.close().await.unwrap();
    });
}
