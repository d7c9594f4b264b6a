//! A byte flipped in a segment file is a miss, never wrong data: the entry's checksum
//! refuses it, the corruption is counted, the entry dropped and the block loaded from
//! its source. On reopen the scan skips damaged entries too.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use std::cell::Cell;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use terrace_tiering::hybrid::format::{
    scan_entries, ENTRY_HEADER_BYTES, INDEX_FILE_NAME, SEGMENT_HEADER_BYTES,
};
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};
use terrace_tiering::BlockKey;

use hybrid_support::*;

const LEN: usize = 3000;

async fn fill(cache: &HybridCache) {
    for b in 0..200u64 {
        let k = key(1 + b % 3, b * 4096);
        cache.insert(k, block(k, 0, LEN), BlockKind::Data, 2, AdmissionHint::Read);
        if b % 8 == 0 {
            cache.flush().await.unwrap();
        }
    }
    cache.flush().await.unwrap();
}

/// Entries of every segment file: (path, offset, key).
fn entries(dir: &Path) -> Vec<(std::path::PathBuf, u64, BlockKey)> {
    let mut out = Vec::new();
    for p in segment_paths(dir) {
        let bytes = std::fs::read(&p).unwrap();
        for e in scan_entries(
            &bytes[SEGMENT_HEADER_BYTES as usize..],
            SEGMENT_HEADER_BYTES,
        )
        .entries
        {
            out.push((p.clone(), e.offset, e.header.key));
        }
    }
    out
}

fn flip(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    b[0] ^= 0x5a;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn flipped_bytes_in_a_segment_are_misses_that_reload_the_right_bytes() {
    run(|dir| async move {
        let mut cfg = small_config(&dir);
        cfg.compress_memory = false;
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        fill(&cache).await;
        // Blocks only on the SSD (memory does not hold them): `get` is memory-only.
        let on_ssd: Vec<_> = entries(&cfg.dir)
            .into_iter()
            .filter(|(_, _, k)| cache.contains(k) && cache.get(k).is_none())
            .collect();
        assert!(on_ssd.len() >= 5, "{}", on_ssd.len());
        // One payload byte, one header byte.
        let (p1, o1, k1) = on_ssd[0].clone();
        flip(&p1, o1 + ENTRY_HEADER_BYTES as u64 + 100);
        let (p2, o2, k2) = on_ssd[1].clone();
        flip(&p2, o2 + 12);
        for (k, n) in [(k1, 1), (k2, 2)] {
            let loads = Cell::new(0);
            let got = cache
                .get_or_load(k, BlockKind::Data, 2, AdmissionHint::Read, async {
                    loads.set(loads.get() + 1);
                    Ok(block(k, 0, LEN))
                })
                .await
                .unwrap();
            assert_eq!(got, block(k, 0, LEN));
            assert_eq!(loads.get(), 1, "the damaged copy was not served");
            assert_eq!(cache.stats().corruptions, n);
        }
        // An undamaged neighbour is still an SSD hit.
        let (_, _, k3) = on_ssd[2];
        let got = cache
            .get_or_load(k3, BlockKind::Data, 2, AdmissionHint::Read, must_not_load())
            .await
            .unwrap();
        assert_eq!(got, block(k3, 0, LEN));
        cache.close().await.unwrap();

        // Damage a fourth entry and reopen through the index file of the clean close:
        // the damage is found when the block is read.
        let (p4, o4, k4) = on_ssd[3].clone();
        flip(&p4, o4 + ENTRY_HEADER_BYTES as u64 + 7);
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        assert!(cache.stats().index_loaded);
        assert_eq!(cache.stats().corruptions, 0);
        assert_eq!(reload_count(&cache, k4).await, 1);
        assert_eq!(cache.stats().corruptions, 1);
        every_cached_block_is_right(&cache, &cfg.dir).await;
        cache.close().await.unwrap();

        // Damage a fifth and reopen with no index file (as after a crash): the scan
        // skips the damaged entry.
        let (p5, o5, k5) = on_ssd[4].clone();
        flip(&p5, o5 + ENTRY_HEADER_BYTES as u64 + 7);
        std::fs::remove_file(cfg.dir.join(INDEX_FILE_NAME)).unwrap();
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        let s = cache.stats();
        assert!(!s.index_loaded);
        assert!(s.corruptions >= 1, "{s:#?}");
        assert_eq!(reload_count(&cache, k5).await, 1);
        every_cached_block_is_right(&cache, &cfg.dir).await;
        cache.close().await.unwrap();
    });
}

/// Reads `k`, returning how many times its load ran (0: served by the cache).
async fn reload_count(cache: &HybridCache, k: BlockKey) -> u32 {
    let loads = Cell::new(0);
    let got = cache
        .get_or_load(k, BlockKind::Data, 2, AdmissionHint::Read, async {
            loads.set(loads.get() + 1);
            Ok(block(k, 0, LEN))
        })
        .await
        .unwrap();
    assert_eq!(got, block(k, 0, LEN));
    loads.get()
}

/// Every block the cache serves without loading is exactly right.
async fn every_cached_block_is_right(cache: &HybridCache, dir: &Path) {
    for (_, _, k) in entries(dir) {
        if cache.contains(&k) {
            reload_count(cache, k).await;
        }
    }
}

#[test]
fn a_segment_with_a_damaged_header_is_deleted_on_open() {
    run(|dir| async move {
        let cfg = small_config(&dir);
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        fill(&cache).await;
        cache.close().await.unwrap();
        let paths = segment_paths(&cfg.dir);
        flip(&paths[0], 20);
        let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
        assert!(!paths[0].exists());
        assert!(cache.stats().corruptions >= 1);
        cache.close().await.unwrap();
    });
}
