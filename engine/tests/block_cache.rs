//! The hybrid block cache inside the engine: a restart starts warm, damaged segments
//! are refetched, budgets hold, the adaptive mode switches both ways, blocks of deleted
//! files are never served, and a long scan does not flush the cache.
//!
//! Every test uses the embedded object store with a zero warm window and a local disk
//! budget, so after `wait_for_uploads` + `enforce_local_budget` the files are remote
//! only (hybrid mode keeps no old whole files) and every block comes from memory, the
//! SSD tier, or a ranged GET.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use terrace::stats::DiskMode;
use terrace::{BlockCacheStats, CacheEviction, CacheMode, Db, DbStats, ObjectStoreSpec, Options};

const SEGMENT: u64 = 64 << 10;

/// One shard, hybrid cache: 1 MiB of memory, 1 MiB of SSD in 64 KiB segments.
fn hybrid_options(dir: &Path) -> Options {
    let mut o = small_options(dir, 1);
    o.cache_mode = CacheMode::Hybrid;
    o.block_cache_bytes = 1 << 20;
    o.ssd_cache_bytes = 1 << 20;
    o.cache_segment_bytes = SEGMENT;
    o.cache_write_buffer_bytes = 16 << 10;
    o.local_disk_budget_bytes = Some(1 << 20);
    o.warm_window = Duration::ZERO;
    o
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// A value that identifies its key and generation; half of it compresses.
fn value(i: u32, gen: &str) -> Vec<u8> {
    let mut v = format!("{gen}-{i:06}-").into_bytes();
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ gen.len() as u64;
    while v.len() < 100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(if v.len() % 2 == 0 { b'.' } else { x as u8 });
    }
    v
}

fn fill(db: &Db, n: u32, gen: &str) {
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..n {
            db.put(t, &key(i), &value(i, gen)).await.unwrap();
        }
        settle(db).await;
    });
}

/// Flush, compact, upload, and drop the local copies the mode allows to drop.
async fn settle(db: &Db) {
    db.flush().await.unwrap();
    db.wait_for_compactions().await.unwrap();
    db.wait_for_uploads().await.unwrap();
    db.enforce_local_budget().await.unwrap();
}

/// Reads keys `0..n` (in batches) and checks each against generation `gen`.
fn check(db: &Db, n: u32, gen: &str) {
    let t = db.table("default").unwrap();
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    block_on(async {
        for (c, chunk) in keys.chunks(50).enumerate() {
            let got = db.multi_get(t, chunk).await.unwrap();
            for (j, v) in got.into_iter().enumerate() {
                let i = (c * 50 + j) as u32;
                assert_eq!(v, Some(value(i, gen)), "key {i}");
            }
        }
    });
}

fn stats(db: &Db) -> DbStats {
    block_on(db.stats()).unwrap()
}

fn cache(s: &DbStats) -> BlockCacheStats {
    s.block_cache()
        .expect("a writable database has a hybrid cache")
}

fn gets(s: &DbStats) -> u64 {
    s.tier().remote_reads.requests
}

fn segment_files(dir: &Path, shard: u32) -> Vec<PathBuf> {
    let cache_dir = dir.join(format!("shard-{shard:04}")).join("cache");
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tcs"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_restarted_database_reads_from_the_ssd_tier_without_remote_gets() {
    restart_run(CacheEviction::S3Fifo);
}

#[test]
fn a_restarted_database_reads_from_the_ssd_tier_without_remote_gets_under_lru() {
    restart_run(CacheEviction::Lru);
}

fn restart_run(eviction: CacheEviction) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = hybrid_options(dir.path());
    opts.cache_eviction = eviction;
    let n = 3000;
    let db = open(opts.clone());
    fill(&db, n, "a");
    let s = stats(&db);
    assert_eq!(
        s.tier().local_files,
        0,
        "hybrid mode keeps no old files: {s}"
    );
    check(&db, n, "a");
    assert!(gets(&stats(&db)) > 0, "the first reads are remote");
    block_on(db.close()).unwrap();
    assert!(
        !segment_files(dir.path(), 0).is_empty(),
        "close writes memory to the SSD tier"
    );

    let db = open(opts);
    let before = stats(&db);
    let c = cache(&before);
    assert!(
        c.totals.index_loaded,
        "a clean close leaves an index: {}",
        c.summary_line()
    );
    assert!(c.totals.rebuilt_entries > 0);
    check(&db, n, "a");
    let after = stats(&db);
    let c = cache(&after);
    assert_eq!(
        gets(&after) - gets(&before),
        0,
        "every block came from the cache: {}",
        c.summary_line()
    );
    let ssd = c.totals.ssd.kind(terrace::stats::BlockKind::Data);
    assert!(ssd.hits > 0, "{}", c.summary_line());
    block_on(db.close()).unwrap();
}

#[test]
fn flipped_bytes_in_a_segment_are_refetched_from_the_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = hybrid_options(dir.path());
    let n = 3000;
    let db = open(opts.clone());
    fill(&db, n, "a");
    check(&db, n, "a");
    block_on(db.close()).unwrap();

    // Damage every 4 KiB page of every segment after its header.
    let mut flipped = 0;
    for path in segment_files(dir.path(), 0) {
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 4096 + 100;
        while at < bytes.len() {
            bytes[at] ^= 0x5a;
            at += 4096;
            flipped += 1;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    assert!(flipped > 10, "segments must hold entries to damage");

    let db = open(opts);
    let before = stats(&db);
    check(&db, n, "a");
    let after = stats(&db);
    let c = cache(&after);
    assert!(c.totals.corruptions > 0, "{}", c.summary_line());
    assert!(
        gets(&after) > gets(&before),
        "damaged blocks are fetched again: {}",
        c.summary_line()
    );
    block_on(db.close()).unwrap();
}

#[test]
fn the_cache_never_exceeds_its_memory_and_ssd_budgets() {
    bounds_run(CacheEviction::S3Fifo);
}

#[test]
fn the_cache_never_exceeds_its_memory_and_ssd_budgets_under_lru() {
    bounds_run(CacheEviction::Lru);
}

fn bounds_run(eviction: CacheEviction) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = hybrid_options(dir.path());
    opts.cache_eviction = eviction;
    opts.shards = 2;
    opts.block_cache_bytes = 1 << 20; // 512 KiB per shard
    opts.ssd_cache_bytes = 1 << 20; // 512 KiB = 8 segments per shard
    opts.cache_compress_memory = false;
    let n = 20_000; // ~2.5 MB of blocks: 5x memory + SSD
    let db = open(opts.clone());
    fill(&db, n, "a");
    let t = db.table("default").unwrap();
    let mut x = 7u64;
    let mut samples = 0;
    for round in 0..40 {
        block_on(async {
            let keys: Vec<Vec<u8>> = (0..200)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    key(((x >> 33) % u64::from(n)) as u32)
                })
                .collect();
            let got = db.multi_get(t, &keys).await.unwrap();
            assert!(got.iter().all(Option::is_some));
        });
        let s = stats(&db);
        for shard in &s.shards {
            let h = shard.block_cache.expect("hybrid");
            assert!(
                h.memory_used_bytes <= h.memory_capacity_bytes,
                "round {round} shard {}: memory {} > {}",
                shard.shard,
                h.memory_used_bytes,
                h.memory_capacity_bytes
            );
            assert!(
                h.ssd_used_bytes <= h.ssd_capacity_bytes,
                "round {round} shard {}: ssd {} > {}",
                shard.shard,
                h.ssd_used_bytes,
                h.ssd_capacity_bytes
            );
            let files = segment_files(dir.path(), shard.shard);
            let on_disk: u64 = files
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum();
            assert!(
                on_disk <= h.ssd_capacity_bytes,
                "round {round} shard {}: {on_disk} bytes of segment files",
                shard.shard
            );
            samples += 1;
        }
    }
    let c = cache(&stats(&db));
    assert!(samples >= 80);
    assert!(
        c.totals.ssd.total().evictions > 0 && c.totals.memory.total().evictions > 0,
        "both tiers must have been full: {}",
        c.summary_line()
    );
    block_on(db.close()).unwrap();
}

#[test]
fn auto_mode_switches_to_hybrid_as_the_state_outgrows_the_disk_and_back_as_it_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = hybrid_options(dir.path());
    opts.cache_mode = CacheMode::Auto;
    opts.local_disk_budget_bytes = Some(2 << 20);
    opts.ssd_cache_bytes = 1 << 20;
    let db = open(opts.clone());
    let t = db.table("default").unwrap();

    // Small state: whole files, all local.
    fill(&db, 2000, "a");
    let s = stats(&db);
    let c = cache(&s);
    assert_eq!(c.mode(), Some(DiskMode::WholeFile), "{}", c.summary_line());
    assert!(s.tier().remote_only_files == 0, "{s}");

    // Past 90% of the budget: hybrid, old files lose their local copies.
    fill(&db, 20_000, "b");
    let s = stats(&db);
    let c = cache(&s);
    let live: u64 = s.levels().iter().map(|l| l.bytes).sum();
    assert!(
        live > (2 << 20),
        "the state must outgrow the budget: {live}"
    );
    assert_eq!(c.mode(), Some(DiskMode::Hybrid), "{}", c.summary_line());
    assert_eq!(c.totals.mode_switches, 1);
    assert_eq!(s.tier().local_files, 0, "{s}");
    check(&db, 20_000, "b");
    assert!(
        cache(&stats(&db)).totals.segment_writes > 0,
        "the SSD tier is used"
    );

    // Shrink below 70%: back to whole files, SSD tier emptied.
    block_on(async {
        for i in 1000..20_000 {
            db.delete(t, &key(i)).await.unwrap();
        }
        db.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .await
            .unwrap();
        settle(&db).await;
    });
    let s = stats(&db);
    let c = cache(&s);
    let live: u64 = s.levels().iter().map(|l| l.bytes).sum();
    assert!(live < (1 << 20), "{live}");
    assert_eq!(c.mode(), Some(DiskMode::WholeFile), "{}", c.summary_line());
    assert_eq!(c.totals.mode_switches, 2);
    assert_eq!(c.totals.segments, 0, "whole-file mode empties the SSD tier");
    assert!(s.tier().local_files > 0, "new files stay local again: {s}");
    check(&db, 1000, "b");
    block_on(db.close()).unwrap();
}

#[test]
fn blocks_of_deleted_files_are_never_served_even_when_file_ids_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = hybrid_options(dir.path());
    // Memory smaller than the data: most reads come from the SSD tier, where a stale
    // entry would be found.
    opts.block_cache_bytes = 256 << 10;
    opts.cache_compress_memory = false;
    let n = 3000;
    let db = open(opts.clone());
    fill(&db, n, "old");
    check(&db, n, "old");
    block_on(db.close()).unwrap();
    assert!(!segment_files(dir.path(), 0).is_empty());

    // A new database in the same directory, keeping only the SSD cache: its files get
    // the same ids (and, with same-sized values, the same block offsets) as the old.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir()
            && p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("shard-")
        {
            for e in std::fs::read_dir(&p).unwrap() {
                let q = e.unwrap().path();
                if q.file_name().unwrap() != "cache" {
                    if q.is_dir() {
                        std::fs::remove_dir_all(&q).unwrap();
                    } else {
                        std::fs::remove_file(&q).unwrap();
                    }
                }
            }
        } else if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let db = open(opts);
    let c = cache(&stats(&db));
    assert!(c.totals.stale_entries_skipped > 0, "{}", c.summary_line());
    fill(&db, n, "new");
    check(&db, n, "new");
    // Compaction deletes files whose blocks are cached: they are forgotten.
    block_on(async {
        let t = db.table("default").unwrap();
        for i in 0..n / 2 {
            db.put(t, &key(i), &value(i, "new")).await.unwrap();
        }
        db.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .await
            .unwrap();
        settle(&db).await;
    });
    let c = cache(&stats(&db));
    assert!(c.totals.invalidated_blocks > 0, "{}", c.summary_line());
    check(&db, n, "new");
    block_on(db.close()).unwrap();
}

#[test]
fn a_long_scan_does_not_flush_hot_blocks_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 1);
    opts.object_store = ObjectStoreSpec::Disabled;
    opts.cache_mode = CacheMode::Memory;
    opts.block_cache_bytes = 512 << 10;
    opts.cache_compress_memory = false;
    let db = open(opts);
    let n = 20_000; // ~2.5 MB of blocks, 5x memory
    fill(&db, n, "a");
    let t = db.table("default").unwrap();
    let hot: Vec<Vec<u8>> = (0..40).map(|i| key(i * 500)).collect();
    let memory = |db: &Db| cache(&stats(db)).totals.memory.total();
    block_on(async {
        db.multi_get(t, &hot).await.unwrap();
        let before = memory(&db);
        db.multi_get(t, &hot).await.unwrap();
        let warm = memory(&db);
        assert_eq!(warm.misses, before.misses, "the hot set fits in memory");
        let all = db
            .scan(
                t,
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
                usize::MAX,
            )
            .await
            .unwrap();
        assert_eq!(all.len(), n as usize);
        let scanned = memory(&db);
        assert!(
            scanned.misses > warm.misses + 100,
            "the scan read from disk"
        );
        db.multi_get(t, &hot).await.unwrap();
        let after = memory(&db);
        assert_eq!(
            after.misses, scanned.misses,
            "the hot set survived the scan in memory"
        );
    });
    block_on(db.close()).unwrap();
}
