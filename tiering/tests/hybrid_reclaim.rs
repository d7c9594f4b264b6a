//! Segment reclaim: after files are deleted, segments whose live fraction falls below
//! their class threshold are moved (live blocks rewritten, file deleted), and every
//! block still indexed reads back exactly.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};

use hybrid_support::*;

#[test]
fn moved_segments_keep_their_live_blocks_readable() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        // Blocks of 8 files interleaved, all in the deepest class (threshold 50%).
        let keys: Vec<_> = (0..240u64).map(|b| key(1 + b % 8, b * 4096)).collect();
        for (i, &k) in keys.iter().enumerate() {
            cache.insert(
                k,
                block(k, 0, 2500),
                BlockKind::Data,
                4,
                AdmissionHint::Read,
            );
            if i % 8 == 0 {
                cache.flush().await.unwrap();
            }
        }
        cache.flush().await.unwrap();
        let before = cache.stats();
        assert!(before.segments >= 4, "{before:#?}");
        // Five of eight files die: sealed segments fall to ~3/8 live.
        for f in [1, 2, 3, 5, 7] {
            cache.evict_file(f);
        }
        assert!(
            settle(|| {
                let s = cache.stats();
                s.reclaim.segments_moved >= 2
            })
            .await,
            "{:#?}",
            cache.stats()
        );
        cache.flush().await.unwrap();
        let s = cache.stats();
        assert!(s.reclaim.blocks_moved > 0, "{s:#?}");
        assert!(
            s.segments < before.segments,
            "{} -> {}",
            before.segments,
            s.segments
        );
        let mut served = 0;
        for &k in &keys {
            if [1, 2, 3, 5, 7].contains(&k.file_id) {
                assert!(!cache.contains(&k));
            } else if cache.contains(&k) {
                let got = cache
                    .get_or_load(k, BlockKind::Data, 4, AdmissionHint::Read, must_not_load())
                    .await
                    .unwrap();
                assert_eq!(got, block(k, 0, 2500));
                served += 1;
            }
        }
        assert!(served >= 60, "served {served}");
        assert_bounds(&cache);
        cache.close().await.unwrap();
        // And after a restart, moved blocks are found in their new segments.
        let cache = HybridCache::open(cfg, |f| ![1, 2, 3, 5, 7].contains(&f))
            .await
            .unwrap();
        for &k in &keys {
            if cache.contains(&k) {
                let got = cache
                    .get_or_load(k, BlockKind::Data, 4, AdmissionHint::Read, must_not_load())
                    .await
                    .unwrap();
                assert_eq!(got, block(k, 0, 2500));
            }
        }
        cache.close().await.unwrap();
    });
}
