//! Golden files of the segment and index formats (version 1) in
//! `fixtures/hybrid-cache/v1/`: the cache still reads every entry of the committed
//! segments (by scanning them, and through the committed index file), and the same
//! operations still write the same bytes, so any change of the on-SSD format fails
//! here first.
//! Regenerate deliberately with `TERRACE_REGEN_FIXTURES=1` (and bump
//! `SEGMENT_FORMAT_VERSION` if old segments can no longer be read).

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use std::path::{Path, PathBuf};

use terrace_tiering::hybrid::format::{
    decode_index, decode_segment_header, scan_entries, INDEX_FILE_NAME, INDEX_FORMAT_VERSION,
    SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_BYTES,
};
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache, HybridConfig};

use hybrid_support::*;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/hybrid-cache/v1")
}

fn golden_config(dir: &Path) -> HybridConfig {
    let mut c = small_config(dir);
    // zstd output may change between library versions: the fixture stores raw blocks.
    c.compress_memory = false;
    c.memory_bytes = 160 << 10;
    c
}

const KINDS: [BlockKind; 3] = [BlockKind::Data, BlockKind::Index, BlockKind::Filter];

fn golden_block(i: u64) -> (terrace_tiering::BlockKey, BlockKind, u8, usize) {
    let k = key(100 + i % 5, i * 4096);
    (
        k,
        KINDS[(i % 7 % 3) as usize],
        [0u8, 1, 4][(i % 3) as usize],
        500 + (mix(i) % 2500) as usize,
    )
}

/// Writes the fixture's segments: inserts only (no awaits between them, so the order of
/// demotions, and therefore the bytes, never depend on timing), then close.
async fn write_golden(dir: &Path) -> Vec<PathBuf> {
    let cfg = golden_config(dir);
    let cache = HybridCache::open(cfg.clone(), |_| true).await.unwrap();
    for i in 0..150 {
        let (k, kind, level, len) = golden_block(i);
        cache.insert(k, block(k, 0, len), kind, level, AdmissionHint::Read);
    }
    cache.close().await.unwrap();
    let mut files = segment_paths(&cfg.dir);
    files.push(cfg.dir.join(INDEX_FILE_NAME));
    files
}

fn fixture_files() -> Vec<PathBuf> {
    let mut files = segment_paths(&fixture_dir());
    let index = fixture_dir().join(INDEX_FILE_NAME);
    if index.exists() {
        files.push(index);
    }
    files
}

#[test]
fn the_cache_writes_the_golden_segments_byte_for_byte() {
    run(|dir| async move {
        let written = write_golden(&dir).await;
        assert!(
            written.len() >= 4,
            "one segment per class at least, and the index"
        );
        let fixtures = fixture_dir();
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            let _ = std::fs::remove_dir_all(&fixtures);
            std::fs::create_dir_all(&fixtures).unwrap();
            for p in &written {
                std::fs::copy(p, fixtures.join(p.file_name().unwrap())).unwrap();
            }
        }
        let want = fixture_files();
        assert_eq!(
            want.iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect::<Vec<_>>(),
            written
                .iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect::<Vec<_>>(),
            "fixture missing or segment set changed; run with TERRACE_REGEN_FIXTURES=1 if intended"
        );
        for (w, g) in written.iter().zip(&want) {
            assert!(
                std::fs::read(w).unwrap() == std::fs::read(g).unwrap(),
                "{} changed: the segment format moved; bump SEGMENT_FORMAT_VERSION and \
                 regenerate with TERRACE_REGEN_FIXTURES=1 if intended",
                g.display()
            );
        }
    });
}

#[test]
fn the_golden_v1_segments_are_served_after_open() {
    run(|dir| async move {
        let cfg = golden_config(&dir);
        std::fs::create_dir_all(&cfg.dir).unwrap();
        let mut expected = Vec::new();
        for p in segment_paths(&fixture_dir()) {
            let bytes = std::fs::read(&p).unwrap();
            let h = decode_segment_header(&bytes).unwrap();
            assert_eq!(SEGMENT_FORMAT_VERSION, 1);
            assert_eq!(h.owner_id, cfg.owner_id);
            let scan = scan_entries(
                &bytes[SEGMENT_HEADER_BYTES as usize..],
                SEGMENT_HEADER_BYTES,
            );
            assert_eq!(scan.corrupt_entries, 0);
            expected.extend(scan.entries.into_iter().map(|e| e.header));
            // O_DIRECT needs a real file on the temp file system.
            std::fs::copy(&p, cfg.dir.join(p.file_name().unwrap())).unwrap();
        }
        assert!(expected.len() > 30, "{} entries", expected.len());
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        assert!(
            !cache.stats().index_loaded,
            "no index file: the segments are scanned"
        );
        assert_eq!(cache.stats().rebuilt_entries, expected.len() as u64);
        for h in &expected {
            let i = h.key.offset / 4096;
            let (k, kind, level, len) = golden_block(i);
            assert_eq!(
                (h.key, h.kind, h.level, h.raw_len as usize),
                (k, kind, level, len)
            );
            let got = cache
                .get_or_load(k, kind, level, AdmissionHint::Read, must_not_load())
                .await
                .unwrap();
            assert_eq!(got, block(k, 0, len), "{k:?}");
        }
        assert_eq!(cache.stats().loads, 0);
        cache.close().await.unwrap();
    });
}

#[test]
fn the_golden_v1_index_file_is_loaded_after_open() {
    run(|dir| async move {
        let cfg = golden_config(&dir);
        std::fs::create_dir_all(&cfg.dir).unwrap();
        for p in fixture_files() {
            std::fs::copy(&p, cfg.dir.join(p.file_name().unwrap())).unwrap();
        }
        let index =
            decode_index(&std::fs::read(fixture_dir().join(INDEX_FILE_NAME)).unwrap()).unwrap();
        assert_eq!(INDEX_FORMAT_VERSION, 1);
        assert_eq!(index.owner_id, cfg.owner_id);
        assert!(index.entries.len() > 30);
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        let s = cache.stats();
        assert!(s.index_loaded);
        assert_eq!(s.rebuilt_entries, index.entries.len() as u64);
        for e in &index.entries {
            let (k, kind, level, len) = golden_block(e.key.offset / 4096);
            assert_eq!(
                (e.key, e.kind, e.level, e.raw_len as usize),
                (k, kind, level, len)
            );
            let got = cache
                .get_or_load(k, kind, level, AdmissionHint::Read, must_not_load())
                .await
                .unwrap();
            assert_eq!(got, block(k, 0, len), "{k:?}");
        }
        assert_eq!(cache.stats().loads, 0);
        cache.close().await.unwrap();
    });
}
