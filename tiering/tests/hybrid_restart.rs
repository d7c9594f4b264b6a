//! A closed cache reopens warm: the SSD index is loaded from the index file a clean
//! close writes, or rebuilt by scanning the segment files after a crash, so blocks are
//! served with no load. Entries of files that are no longer live, and segments of
//! another owner (database lineage), are never served.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::hybrid::format::INDEX_FILE_NAME;
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};

use hybrid_support::*;

const FILES: u64 = 4;
const BLOCKS: u64 = 150;

async fn fill(cache: &HybridCache) {
    for b in 0..BLOCKS {
        for f in 1..=FILES {
            let k = key(f, b * 4096);
            let bytes = block(k, 0, 3000);
            let got = cache
                .get_or_load(k, BlockKind::Data, f as u8, AdmissionHint::Read, async {
                    Ok(bytes.clone())
                })
                .await
                .unwrap();
            assert_eq!(got, bytes);
        }
        cache.flush().await.unwrap();
    }
}

#[test]
fn a_reopened_cache_serves_its_ssd_blocks_without_loading() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.ssd_bytes = 2 << 20; // room for every block
        cfg.segment_bytes = 128 << 10;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        fill(&cache).await;
        let before = cache.stats();
        assert!(before.ssd.total().resident_blocks > 100, "{before:#?}");
        cache.close().await.unwrap();

        assert!(cfg.dir.join(INDEX_FILE_NAME).exists());
        // File 4 was deleted while the cache was closed.
        let cache = HybridCache::open(cfg.clone(), |f| f != 4).await.unwrap();
        let s = cache.stats();
        assert!(s.index_loaded, "a clean close leaves an index file");
        assert!(!cfg.dir.join(INDEX_FILE_NAME).exists(), "removed on open");
        assert!(s.rebuilt_entries > 100, "{s:#?}");
        assert!(s.stale_entries_skipped > 0, "{s:#?}");
        let mut served = 0;
        for f in 1..=FILES {
            for b in 0..BLOCKS {
                let k = key(f, b * 4096);
                if f == 4 {
                    assert!(!cache.contains(&k), "stale block of a deleted file");
                    continue;
                }
                if cache.contains(&k) {
                    let got = cache
                        .get_or_load(
                            k,
                            BlockKind::Data,
                            f as u8,
                            AdmissionHint::Read,
                            must_not_load(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(got, block(k, 0, 3000));
                    served += 1;
                }
            }
        }
        let s = cache.stats();
        // Memory was written to the SSD on close: every block of a live file is served.
        assert_eq!(served, 3 * BLOCKS, "{s:#?}");
        assert_eq!(s.loads, 0);
        assert_eq!(s.ssd.total().hits, served);
        assert_eq!(s.corruptions, 0);
        cache.close().await.unwrap();

        // Another owner (a different database lineage): nothing is served, files go.
        let mut other = cfg.clone();
        other.owner_id = cfg.owner_id + 1;
        let cache = HybridCache::open(other, |_| true).await.unwrap();
        assert_eq!(cache.stats().indexed_blocks, 0);
        assert_eq!(segment_files_bytes(&cfg.dir).1, 0);
        cache.close().await.unwrap();
    });
}

#[test]
fn a_smaller_ssd_budget_on_reopen_keeps_the_newest_segments_within_it() {
    run(|dir| async move {
        let cfg = small_config(&dir);
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        fill(&cache).await;
        cache.close().await.unwrap();
        let (_, before) = segment_files_bytes(&cfg.dir);
        let mut smaller = cfg.clone();
        smaller.ssd_bytes = 5 * cfg.segment_bytes;
        let cache = HybridCache::open(smaller, |_| true).await.unwrap();
        assert_bounds(&cache);
        let (_, after) = segment_files_bytes(&cfg.dir);
        assert!(after <= 5 && after < before, "{before} -> {after}");
        cache.close().await.unwrap();
    });
}

async fn served(cache: &HybridCache, files: std::ops::RangeInclusive<u64>) -> u64 {
    let mut n = 0;
    for f in files {
        for b in 0..BLOCKS {
            let k = key(f, b * 4096);
            if cache.contains(&k) {
                let got = cache
                    .get_or_load(
                        k,
                        BlockKind::Data,
                        f as u8,
                        AdmissionHint::Read,
                        must_not_load(),
                    )
                    .await
                    .unwrap();
                assert_eq!(got, block(k, 0, 3000));
                n += 1;
            }
        }
    }
    n
}

#[test]
fn after_a_crash_or_with_a_damaged_index_file_the_segments_are_scanned() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.ssd_bytes = 2 << 20;
        cfg.segment_bytes = 128 << 10;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        fill(&cache).await;
        cache.close().await.unwrap();

        // A damaged index file is refused (counted) and the segments are scanned.
        let path = cfg.dir.join(INDEX_FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        let s = cache.stats();
        assert!(!s.index_loaded);
        assert_eq!(s.corruptions, 1);
        assert_eq!(s.rebuilt_entries, 4 * BLOCKS, "{s:#?}");
        assert_eq!(served(&cache, 1..=FILES).await, 4 * BLOCKS);

        // A crash (no close): no index file; the next open scans and serves what was
        // written (blocks only in memory are lost, as memory is).
        let on_ssd = cache.stats().ssd.total().resident_blocks;
        drop(cache);
        assert!(!path.exists());
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        let s = cache.stats();
        assert!(!s.index_loaded);
        assert!(
            s.rebuilt_entries >= on_ssd,
            "{} < {on_ssd}",
            s.rebuilt_entries
        );
        assert_eq!(served(&cache, 1..=FILES).await, s.rebuilt_entries);
        cache.close().await.unwrap();
    });
}
