//! Micro-benchmark of the hybrid cache: memory hit (raw and zstd), SSD hit, miss +
//! insert (with and without demotion), SSD-tier read IOPS at queue depth 1/32/64
//! against raw O_DIRECT reads of the same segment files, and the LRU vs S3-FIFO hit
//! ratios over Zipf(0.99) traces.
//!
//! `cargo bench -p terrace-tiering --bench hybrid_cache` (set TERRACE_BENCH_DIR to put
//! the segment files on a particular disk; default: the system temp dir).
//! Runs inside one glommio executor, like a shard. Timing uses `clock::now`.

#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::DmaFile;
use glommio::LocalExecutorBuilder;
use rand::Rng;
use terrace_tiering::clock::{now, seeded_rng};
use terrace_tiering::hybrid::format::parse_segment_file_name;
use terrace_tiering::hybrid::sim::{
    lru_hit_ratio, s3fifo_hit_ratio, two_tier_hits, zipf_trace, SimLru, SimS3Fifo,
};
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, HybridCache, HybridConfig};
use terrace_tiering::{BlockKey, Bytes};

const BLOCK: usize = 4096;

fn key(i: u64) -> BlockKey {
    BlockKey {
        file_id: 1 + i / 10_000,
        offset: (i % 10_000) * BLOCK as u64,
    }
}

/// A 4 KiB block: half text (compresses ~2x with zstd), half noise.
fn block(i: u64) -> Bytes {
    let mut v = Vec::with_capacity(BLOCK);
    let text = format!("user-{i:08} value of a typical state entry; ");
    while v.len() < BLOCK / 2 {
        v.extend_from_slice(text.as_bytes());
    }
    v.truncate(BLOCK / 2);
    let mut rng = seeded_rng(i);
    while v.len() < BLOCK {
        v.push(rng.gen());
    }
    Rc::from(v)
}

fn config(dir: &Path, memory: u64, ssd: u64, compress: bool) -> HybridConfig {
    let mut c = HybridConfig::new(dir.to_path_buf(), memory, ssd);
    c.write_buffer_bytes = 256 << 10;
    c.max_writes_in_flight = 8;
    c.compress_memory = compress;
    c
}

fn report(name: &str, ops: u64, elapsed: Duration) {
    let ns = elapsed.as_nanos() as f64 / ops as f64;
    println!("{name:<44} {ns:>10.0} ns/op  {:>10.0} ops/s", 1e9 / ns);
}

async fn memory_hits(dir: &Path, compress: bool) {
    let n = 10_000u64;
    let cache = HybridCache::open(
        config(&dir.join(format!("mem-{compress}")), 256 << 20, 0, compress),
        |_| true,
    )
    .await
    .unwrap();
    for i in 0..n {
        cache.insert(key(i), block(i), BlockKind::Data, 1, AdmissionHint::Read);
    }
    let mut rng = seeded_rng(1);
    let keys: Vec<BlockKey> = (0..1_000_000).map(|_| key(rng.gen_range(0..n))).collect();
    let start = now();
    let mut bytes = 0usize;
    for k in &keys {
        bytes += cache.get(k).map_or(0, |b| b.len());
    }
    let name = if compress {
        "memory hit, zstd data block (get)"
    } else {
        "memory hit, raw block (get)"
    };
    report(name, keys.len() as u64, start.elapsed());
    assert_eq!(bytes, keys.len() * BLOCK);
    cache.close().await.unwrap();
}

async fn miss_insert(dir: &Path, memory: u64, compress: bool, name: &str) {
    let cache = HybridCache::open(
        config(&dir.join(name.replace(' ', "-")), memory, 2 << 30, compress),
        |_| true,
    )
    .await
    .unwrap();
    let n = 200_000u64;
    let blocks: Vec<Bytes> = (0..1000).map(block).collect();
    let mut busy = Duration::ZERO;
    for i in 0..n {
        let b = Rc::clone(&blocks[(i % 1000) as usize]);
        let start = now();
        cache
            .get_or_load(
                key(i),
                BlockKind::Data,
                3,
                AdmissionHint::Read,
                async move { Ok(b) },
            )
            .await
            .unwrap();
        busy += start.elapsed();
        if i % 64 == 0 {
            // Real loads wait on I/O, which lets the reactor reap the writer's
            // completions; these loads are instant, so pause (not timed) instead.
            glommio::timer::sleep(Duration::from_micros(100)).await;
        }
    }
    report(name, n, busy);
    let s = cache.stats();
    println!(
        "    (demoted {} blocks, {} dropped by back-pressure)",
        s.ssd.total().admissions,
        s.demotions_dropped
    );
    cache.close().await.unwrap();
}

async fn populate_ssd(dir: &Path, n: u64, compress: bool) -> Rc<HybridCache> {
    // Small memory so nearly everything lives on the SSD; raw blocks are 4 KiB + a
    // 40-byte header (4608-byte entries), zstd ones about half.
    let cache = HybridCache::open(config(dir, 16 << 20, 2 << 30, compress), |_| true)
        .await
        .unwrap();
    for i in 0..n {
        cache.insert(key(i), block(i), BlockKind::Data, 3, AdmissionHint::Read);
        if i % 16 == 0 {
            cache.flush().await.unwrap();
        }
    }
    cache.flush().await.unwrap();
    let s = cache.stats();
    println!(
        "    (populated: {} blocks on SSD in {} segments, {} in memory; {} demotions dropped, {} SSD evictions, reclaim {:?})",
        s.ssd.total().resident_blocks,
        s.segments,
        s.memory.total().resident_blocks,
        s.demotions_dropped,
        s.ssd.total().evictions,
        s.reclaim
    );
    Rc::new(cache)
}

async fn ssd_reads(cache: &Rc<HybridCache>, n: u64, depth: usize, run_for: Duration) {
    let hits_before = cache.stats().ssd.total().hits;
    let done = Rc::new(Cell::new(0u64));
    let start = now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for w in 0..depth {
        let cache = Rc::clone(cache);
        let done = Rc::clone(&done);
        tasks.push(glommio::spawn_local(async move {
            let mut rng = seeded_rng(100 + w as u64);
            while now() < deadline {
                let i = rng.gen_range(0..n);
                let got = cache
                    .get_or_load(
                        key(i),
                        BlockKind::Data,
                        3,
                        AdmissionHint::Bypass,
                        async move { Ok(block(i)) },
                    )
                    .await
                    .unwrap();
                assert_eq!(got.len(), BLOCK);
                done.set(done.get() + 1);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed();
    report(
        &format!("SSD-tier lookup (get_or_load), depth {depth}"),
        done.get(),
        elapsed,
    );
    let hits = cache.stats().ssd.total().hits - hits_before;
    println!(
        "    ({hits} of {} lookups were SSD hits: {:.0} SSD hits/s)",
        done.get(),
        hits as f64 / elapsed.as_secs_f64()
    );
}

async fn raw_reads(dir: &Path, depth: usize, run_for: Duration) {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name()
            .to_str()
            .and_then(parse_segment_file_name)
            .is_some()
        {
            let f = DmaFile::open(e.path()).await.unwrap();
            let size = f.file_size().await.unwrap();
            files.push((Rc::new(f), size));
        }
    }
    let files = Rc::new(files);
    let done = Rc::new(Cell::new(0u64));
    let start = now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for w in 0..depth {
        let files = Rc::clone(&files);
        let done = Rc::clone(&done);
        tasks.push(glommio::spawn_local(async move {
            let mut rng = seeded_rng(200 + w as u64);
            while now() < deadline {
                let (f, size) = &files[rng.gen_range(0..files.len())];
                let pages = size / 4096;
                let off = rng.gen_range(1..pages.max(2)) * 4096;
                let r = f.read_at_aligned(off, 4096).await.unwrap();
                assert!(r.len() <= 4096);
                done.set(done.get() + 1);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    report(
        &format!("raw O_DIRECT 4 KiB read, depth {depth}"),
        done.get(),
        start.elapsed(),
    );
}

fn simulate() {
    println!("\nLRU vs S3-FIFO, Zipf(0.99) over 100k blocks, 2M requests (hit ratio):");
    let mut rng = seeded_rng(7);
    let trace = zipf_trace(100_000, 0.99, 2_000_000, &mut rng);
    println!("{:>10} {:>8} {:>8}", "cache", "LRU", "S3-FIFO");
    for pct in [1usize, 5, 10, 20] {
        let cap = 100_000 * pct / 100;
        println!(
            "{:>9}% {:>8.4} {:>8.4}",
            pct,
            lru_hit_ratio(&trace, cap),
            s3fifo_hit_ratio(&trace, cap)
        );
    }
    // The same with a one-off scan of 50k blocks every 200k requests.
    let mut scanned = Vec::with_capacity(trace.len() + 500_000);
    let mut next_scan = u64::MAX / 2;
    for (i, &k) in trace.iter().enumerate() {
        if i % 200_000 == 100_000 {
            for _ in 0..50_000 {
                scanned.push(next_scan);
                next_scan += 1;
            }
        }
        scanned.push(k);
    }
    println!("two tiers (memory M in front of an LRU SSD tier S, every memory eviction demoted):");
    println!(
        "{:>6} {:>6} {:>22} {:>22}",
        "M", "S", "LRU mem: mem/total", "S3-FIFO mem: mem/total"
    );
    for (m, sz) in [(1usize, 10usize), (2, 20), (5, 50)] {
        let (mc, sc) = (100_000 * m / 100, 100_000 * sz / 100);
        let n = trace.len() as f64;
        let (lm, ls) = two_tier_hits(&trace, &mut SimLru::new(mc), sc);
        let (fm, fs) = two_tier_hits(&trace, &mut SimS3Fifo::new(mc), sc);
        println!(
            "{:>5}% {:>5}% {:>10.4} / {:>8.4} {:>10.4} / {:>8.4}",
            m,
            sz,
            lm as f64 / n,
            (lm + ls) as f64 / n,
            fm as f64 / n,
            (fm + fs) as f64 / n
        );
    }
    println!("with a 50k-block one-off scan every 200k requests:");
    for pct in [1usize, 5, 10, 20] {
        let cap = 100_000 * pct / 100;
        println!(
            "{:>9}% {:>8.4} {:>8.4}",
            pct,
            lru_hit_ratio(&scanned, cap),
            s3fifo_hit_ratio(&scanned, cap)
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special:
    // run a tiny version then so the bench is compiled and exercised in CI.
    let quick = !std::env::args().any(|a| a == "--bench");
    let base: PathBuf = std::env::var_os("TERRACE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let path = dir.path().to_path_buf();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            terrace_tiering::probe_direct_io(&path).await.unwrap();
            if quick {
                // Enough raw blocks to spill past 16 MiB of memory onto the SSD.
                let cache = populate_ssd(&path.join("quick"), 8_000, false).await;
                ssd_reads(&cache, 8_000, 4, Duration::from_millis(50)).await;
                assert!(cache.stats().ssd.total().hits > 0);
                return;
            }
            memory_hits(&path, false).await;
            memory_hits(&path, true).await;
            miss_insert(&path, 1 << 30, false, "miss + insert, raw, no demotion").await;
            miss_insert(&path, 1 << 30, true, "miss + insert, zstd, no demotion").await;
            miss_insert(
                &path,
                32 << 20,
                false,
                "miss + insert, raw, demoting to SSD",
            )
            .await;
            let ssd_dir = path.join("ssd");
            let n = 120_000;
            let cache = populate_ssd(&ssd_dir, n, false).await;
            for depth in [1, 32, 64] {
                ssd_reads(&cache, n, depth, Duration::from_secs(3)).await;
            }
            let s = cache.stats();
            println!(
                "    (SSD hits {}, memory hits {}, loads {}, corruptions {})",
                s.ssd.total().hits,
                s.memory.total().hits,
                s.loads,
                s.corruptions
            );
            for depth in [1, 32, 64] {
                raw_reads(&ssd_dir, depth, Duration::from_secs(3)).await;
            }
            drop(cache);
            println!("zstd data blocks (entries of about 2.5 KiB):");
            let zdir = path.join("ssd-zstd");
            let cache = populate_ssd(&zdir, n, true).await;
            for depth in [1, 64] {
                ssd_reads(&cache, n, depth, Duration::from_secs(3)).await;
            }
        })
        .unwrap()
        .join()
        .unwrap();
    if !quick {
        simulate();
    }
}
