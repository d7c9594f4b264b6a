//! I/O failures of the SSD tier are never errors for the caller: a segment that cannot
//! be written forgets its blocks (counted in `write_errors`), and a segment file that
//! lost its data (truncated) turns its blocks into misses that load the right bytes.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use std::cell::Cell;

use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};

use hybrid_support::*;

const LEN: usize = 3000;

async fn read_all(cache: &HybridCache, n: u64) -> u64 {
    let loads = Cell::new(0u64);
    for b in 0..n {
        let k = key(1, b * 4096);
        let got = cache
            .get_or_load(k, BlockKind::Data, 2, AdmissionHint::Read, async {
                loads.set(loads.get() + 1);
                Ok(block(k, 0, LEN))
            })
            .await
            .unwrap();
        assert_eq!(got, block(k, 0, LEN), "{k:?}");
    }
    loads.get()
}

#[test]
fn segments_that_cannot_be_written_lose_their_blocks_not_the_reads() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        // The cache directory disappears: creating segment files fails.
        std::fs::remove_dir_all(&cfg.dir).unwrap();
        for b in 0..200u64 {
            let k = key(1, b * 4096);
            cache.insert(k, block(k, 0, LEN), BlockKind::Data, 2, AdmissionHint::Read);
            if b % 8 == 0 {
                cache.flush().await.unwrap();
            }
        }
        cache.flush().await.unwrap();
        let s = cache.stats();
        assert!(s.write_errors > 0, "{s:#?}");
        assert!(s.ssd.total().resident_blocks < 10, "{s:#?}");
        let loads = read_all(&cache, 200).await;
        assert!(
            loads > 100,
            "blocks that never reached the SSD are loaded: {loads}"
        );
        assert_bounds_memory(&cache);
        // The index file cannot be written either: close says so.
        let e = cache.close().await.unwrap_err();
        assert!(e.to_string().contains("index"), "{e}");
    });
}

#[test]
fn a_truncated_segment_file_turns_its_blocks_into_misses() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        for b in 0..200u64 {
            let k = key(1, b * 4096);
            cache.insert(k, block(k, 0, LEN), BlockKind::Data, 2, AdmissionHint::Read);
            if b % 8 == 0 {
                cache.flush().await.unwrap();
            }
        }
        cache.flush().await.unwrap();
        let s = cache.stats();
        assert!(s.ssd.total().resident_blocks > 50);
        assert_eq!(s.indexed_blocks, 200, "{s:#?}");
        // The local disk loses the contents of every segment but its header.
        for p in segment_paths(&cfg.dir) {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(4096).unwrap();
            f.sync_all().unwrap();
        }
        let loads = read_all(&cache, 200).await;
        let s = cache.stats();
        assert!(loads > 50, "{loads}");
        // Most loads are SSD copies refused by their check (the others are blocks
        // pushed out of memory by the reloads; SSD hits are blocks demoted since).
        assert!(s.corruptions + s.read_errors >= 100, "{s:#?}");
        assert!(s.corruptions + s.read_errors <= loads, "{s:#?}");
        // A second pass reads the right bytes again (read_all checks them), and every
        // damaged copy was forgotten by the first.
        read_all(&cache, 200).await;
        assert_eq!(cache.stats().corruptions, s.corruptions);
        cache.close().await.unwrap();
    });
}

fn assert_bounds_memory(cache: &HybridCache) {
    let s = cache.stats();
    assert!(s.memory_used_bytes <= s.memory_capacity_bytes);
}
