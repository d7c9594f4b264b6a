//! Data blocks are held raw in memory while it has room and compressed once it is
//! full; a hit on a compressed block turns it raw again when room comes back; a raw
//! block demoted to the SSD is written compressed.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache};

use hybrid_support::*;

const LEN: usize = 3000;

fn insert(cache: &HybridCache, file: u64, b: u64) {
    let k = key(file, b * 4096);
    cache.insert(k, block(k, 0, LEN), BlockKind::Data, 1, AdmissionHint::Read);
}

#[test]
fn memory_holds_blocks_raw_while_it_has_room_and_compressed_when_full() {
    run(|dir| async move {
        let cache = HybridCache::open(small_config(&dir), |_| true)
            .await
            .unwrap();
        for b in 0..20 {
            insert(&cache, 1, b);
        }
        let s = cache.stats();
        assert_eq!(s.memory.kind(BlockKind::Data).resident_blocks, 20);
        assert_eq!(s.compressed_blocks, 0, "room for all: every block raw");

        // Fill memory with file 2, then file 3 enters a full memory: compressed.
        for b in 0..200 {
            insert(&cache, 2, b);
        }
        for b in 0..10 {
            insert(&cache, 3, b);
        }
        let s = cache.stats();
        assert!(s.compressed_blocks >= 10, "{s:#?}");
        // File 1's raw blocks were demoted: on the SSD they are compressed.
        let ssd = s.ssd.kind(BlockKind::Data);
        assert!(ssd.resident_blocks > 0, "{s:#?}");
        assert!(
            ssd.resident_bytes / ssd.resident_blocks < (LEN as u64) * 3 / 4,
            "SSD entries of raw memory blocks stay raw: {s:#?}"
        );
        assert_eq!(s.decompressed_in_memory, 0);

        // Room again: a hit on a compressed block of file 3 keeps it raw from now on.
        cache.evict_file(2);
        let k = key(3, 9 * 4096);
        assert_eq!(cache.get(&k), Some(block(k, 0, LEN)));
        let after = cache.stats();
        assert_eq!(after.decompressed_in_memory, 1, "{after:#?}");
        // File 2's went with it; of file 3's ten, the one hit is raw now.
        assert_eq!(after.compressed_blocks, 9, "{after:#?}");
        assert_eq!(cache.get(&k), Some(block(k, 0, LEN)));
        assert_eq!(cache.stats().decompressed_in_memory, 1, "already raw");
        // Served the same from SSD after everything else.
        for b in 0..20 {
            let k = key(1, b * 4096);
            let got = cache
                .get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, must_not_load())
                .await
                .unwrap();
            assert_eq!(got, block(k, 0, LEN));
        }
        assert_bounds(&cache);
        cache.close().await.unwrap();
    });
}
