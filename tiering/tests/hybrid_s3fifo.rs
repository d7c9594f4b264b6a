//! S3-FIFO as the hybrid cache's replacement policy: one-hit wonders leave from the
//! small queue without reaching the SSD, blocks hit twice stay; a ghost hit goes to
//! main; and the real cache's hit ratios agree with the simulator's model of the
//! same arrangement (`hybrid::sim`), for both policies, on one Zipf trace.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use terrace_tiering::clock::seeded_rng;
use terrace_tiering::hybrid::sim::{
    two_tier_hits, two_tier_s3fifo_hits, zipf_trace, MemoryEntry, SimLru,
};
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, Eviction, HybridCache, HybridConfig};
use terrace_tiering::BlockKey;

use hybrid_support::*;

/// Stored 4000 bytes: 4096 charged in memory (with the per-entry overhead), one
/// 4096-byte span on the SSD.
const LEN: usize = 4000;

async fn read(cache: &HybridCache, k: BlockKey) {
    let got = cache
        .get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, async move {
            Ok(block(k, 0, LEN))
        })
        .await
        .unwrap();
    assert_eq!(got, block(k, 0, LEN));
}

async fn cached_read(cache: &HybridCache, k: BlockKey) {
    let got = cache
        .get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, must_not_load())
        .await
        .unwrap_or_else(|e| panic!("{k:?}: {e}"));
    assert_eq!(got, block(k, 0, LEN));
}

/// Reads one-off blocks of file 3 until the SSD tier is (90%) full: a cold tier takes
/// the small queue's unhit blocks. Every read is flushed, so no demotion is dropped
/// for lack of write buffers.
async fn fill_ssd(cache: &HybridCache) {
    let cfg = cache.config();
    let target = (cfg.ssd_bytes as f64 * cfg.ssd_fill_ratio) as u64;
    let mut i = 0;
    while cache.stats().ssd_live_bytes < target * 9 / 10 {
        read(cache, key(3, i * 4096)).await;
        cache.flush().await.unwrap();
        i += 1;
        assert!(i < 10_000, "the SSD tier never filled");
    }
    assert!(cache.stats().s3fifo.small_to_cold_ssd > 0);
}

fn config(dir: &std::path::Path, eviction: Eviction, ssd: bool) -> HybridConfig {
    let mut cfg = small_config_with(dir, eviction);
    cfg.compress_memory = false;
    cfg.small_queue_ratio = 0.5;
    if !ssd {
        cfg.ssd_bytes = 0;
    }
    cfg
}

#[test]
fn a_one_hit_wonder_leaves_memory_before_an_older_block_hit_twice() {
    for eviction in [Eviction::Lru, Eviction::S3Fifo] {
        run(move |dir| async move {
            // Memory only: 256 KiB, 64 blocks.
            let cache = HybridCache::open(config(&dir, eviction, false), |_| true)
                .await
                .unwrap();
            let hot: Vec<BlockKey> = (0..10).map(|i| key(1, i * 4096)).collect();
            for &k in &hot {
                read(&cache, k).await;
                cached_read(&cache, k).await; // the second hit
            }
            for i in 0..200 {
                read(&cache, key(2, i * 4096)).await;
            }
            let kept = hot.iter().filter(|k| cache.contains(k)).count();
            let s = cache.stats();
            match eviction {
                // LRU: 200 newer blocks push the older ones out.
                Eviction::Lru => assert_eq!(kept, 0, "{s:#?}"),
                Eviction::S3Fifo => {
                    assert_eq!(kept, hot.len(), "{s:#?}");
                    assert_eq!(s.s3fifo.small_to_main, hot.len() as u64);
                    // 64 blocks of memory: 10 in main, 54 one-offs in small.
                    assert_eq!(s.s3fifo.small_evictions, 200 - 54, "{s:#?}");
                    assert!(!cache.contains(&key(2, 0)), "the first one-off left");
                }
            }
            cache.close().await.unwrap();
        });
    }
}

#[test]
fn once_the_ssd_is_full_one_hit_wonders_are_never_written_to_it() {
    run(|dir| async move {
        let cfg = config(&dir, Eviction::S3Fifo, true);
        let cache = HybridCache::open(cfg, |_| true).await.unwrap();
        // A cold SSD tier takes the small queue's unhit blocks (S3-FIFO evicts
        // nothing while the cache is not full)...
        fill_ssd(&cache).await;
        let warm = cache.stats();
        let cold_writes = warm.s3fifo.small_to_cold_ssd;
        // ...a full one does not: 60 blocks hit twice (more than memory's main queue
        // holds, so some are demoted) and 300 one-off reads.
        let hot: Vec<BlockKey> = (0..60).map(|i| key(1, i * 4096)).collect();
        for &k in &hot {
            read(&cache, k).await;
            cached_read(&cache, k).await;
            cache.flush().await.unwrap();
        }
        for i in 0..300 {
            read(&cache, key(2, i * 4096)).await;
            cache.flush().await.unwrap();
        }
        let s = cache.stats();
        // Demotions only: segment moves rewrite blocks already on the SSD.
        let written = (s.ssd.total().admissions - warm.ssd.total().admissions)
            - (s.reclaim.blocks_moved - warm.reclaim.blocks_moved);
        assert!(written > 0, "{s:#?}");
        assert!(written <= hot.len() as u64, "only blocks hit twice: {s:#?}");
        assert_eq!(s.s3fifo.small_to_cold_ssd, cold_writes);
        assert!(s.s3fifo.small_evictions >= 250, "{s:#?}");
        // Every hot block is still cached; reading them all back serves most without
        // a load. Not all: each SSD hit promotes its block to memory, pushing main's
        // coldest block down to this small SSD tier, which evicts — how many of the
        // 60 that costs depends on when the demotion writes land (43 served in one
        // loaded CI run).
        assert!(
            hot.iter().all(|k| cache.contains(k)),
            "{:#?}",
            cache.stats()
        );
        let mut served = 0;
        for &k in &hot {
            let r = cache
                .get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, async move {
                    Ok(block(k, 1, LEN))
                })
                .await
                .unwrap();
            if r == block(k, 0, LEN) {
                served += 1;
            }
        }
        assert!(served >= hot.len() / 2, "{served} of {}", hot.len());
        assert!(cache.stats().ssd.total().hits > 0);
        assert!((0..250).all(|i| !cache.contains(&key(2, i * 4096))));
        cache.close().await.unwrap();
    });
}

#[test]
fn a_ghost_hit_is_admitted_to_main_and_outlives_one_off_reads() {
    run(|dir| async move {
        let cache = HybridCache::open(config(&dir, Eviction::S3Fifo, true), |_| true)
            .await
            .unwrap();
        fill_ssd(&cache).await;
        let x = key(1, 0);
        read(&cache, x).await;
        for i in 0..100 {
            read(&cache, key(2, i * 4096)).await;
        }
        assert!(!cache.contains(&x), "a one-hit wonder left");
        let before = cache.stats().s3fifo;
        assert!(before.ghost_entries > 0);
        read(&cache, x).await; // missed again: a ghost hit
        let after = cache.stats().s3fifo;
        assert_eq!(after.ghost_hits, before.ghost_hits + 1);
        assert_eq!(
            after.small_admissions, before.small_admissions,
            "not on probation again"
        );
        // One-off reads churn the small queue; x, in main, is demoted to the SSD
        // when memory needs room, and still served without a load.
        for i in 100..400 {
            read(&cache, key(2, i * 4096)).await;
            cache.flush().await.unwrap();
        }
        cached_read(&cache, x).await;
        assert!(!cache.contains(&key(2, 100 * 4096)));
        cache.close().await.unwrap();
    });
}

/// Steady-state (memory, SSD) hit ratios of the real cache over `trace` (second half).
async fn real_hit_ratios(cfg: HybridConfig, trace: &[u64]) -> (f64, f64, u64) {
    let cache = HybridCache::open(cfg, |_| true).await.unwrap();
    let to_key = |id: u64| key(1 + (id & 63), id >> 6);
    let half = trace.len() / 2;
    let mut at_half = (0, 0);
    for (i, &id) in trace.iter().enumerate() {
        if i == half {
            let s = cache.stats();
            at_half = (s.memory.total().hits, s.ssd.total().hits);
        }
        read(&cache, to_key(id)).await;
        if i % 4 == 0 {
            // Let the background writer keep up, as a shard's idle time would.
            glommio::timer::sleep(std::time::Duration::from_micros(50)).await;
        }
    }
    let s = cache.stats();
    eprintln!(
        "reclaim {:?} s3fifo {:?} ssd live {} evictions {} admissions {}",
        s.reclaim,
        s.s3fifo,
        s.ssd_live_bytes,
        s.ssd.total().evictions,
        s.ssd.total().admissions
    );
    let n = (trace.len() - half) as f64;
    let out = (
        (s.memory.total().hits - at_half.0) as f64 / n,
        (s.ssd.total().hits - at_half.1) as f64 / n,
        s.demotions_dropped,
    );
    cache.close().await.unwrap();
    out
}

#[test]
fn the_real_cache_agrees_with_the_simulator_and_s3fifo_loads_less() {
    run(|dir| async move {
        let mut rng = seeded_rng(12);
        let trace = zipf_trace(20_000, 0.99, 60_000, &mut rng);
        let half = trace.len() / 2;
        let mut results = Vec::new();
        for (i, eviction) in [Eviction::Lru, Eviction::S3Fifo].into_iter().enumerate() {
            let mut cfg = small_config_with(&dir.join(format!("p{i}")), eviction);
            cfg.compress_memory = false;
            cfg.memory_bytes = 2 << 20;
            cfg.ssd_bytes = 8 << 20;
            cfg.segment_bytes = 256 << 10;
            cfg.write_buffer_bytes = 64 << 10;
            cfg.max_writes_in_flight = 4;
            // Capacities in blocks, as the simulator counts them.
            let mem_blocks = (cfg.block_memory_bytes() / 4096) as usize;
            let small_blocks =
                (cfg.block_memory_bytes() as f64 * cfg.small_queue_ratio / 4096.0) as usize;
            let ssd_blocks = (cfg.ssd_bytes as f64 * cfg.ssd_fill_ratio / 4096.0) as usize;
            let (rm, rs, dropped) = real_hit_ratios(cfg, &trace).await;
            let (sm, ss) = {
                let run = |t: &[u64]| match eviction {
                    Eviction::Lru => two_tier_hits(t, &mut SimLru::new(mem_blocks), ssd_blocks),
                    Eviction::S3Fifo => two_tier_s3fifo_hits(
                        t,
                        mem_blocks,
                        small_blocks,
                        ssd_blocks,
                        MemoryEntry::Earned,
                    ),
                };
                let (m1, s1) = run(&trace[..half]);
                let (m2, s2) = run(&trace);
                let n = (trace.len() - half) as f64;
                ((m2 - m1) as f64 / n, (s2 - s1) as f64 / n)
            };
            eprintln!(
                "{eviction:?}: real memory {rm:.3} ssd {rs:.3} total {:.3} (demotions dropped {dropped}); \
                 sim memory {sm:.3} ssd {ss:.3} total {:.3} ({mem_blocks} / {small_blocks} / {ssd_blocks} blocks)",
                rm + rs,
                sm + ss
            );
            assert!(
                dropped < trace.len() as u64 / 100,
                "the writer kept up (else the comparison is off): {dropped} dropped"
            );
            assert!(
                (rm - sm).abs() < 0.02,
                "{eviction:?} memory: real {rm:.3} sim {sm:.3}"
            );
            assert!(
                ((rm + rs) - (sm + ss)).abs() < 0.03,
                "{eviction:?} total: real {:.3} sim {:.3}",
                rm + rs,
                sm + ss
            );
            results.push(1.0 - rm - rs);
        }
        let (lru_loaded, s3_loaded) = (results[0], results[1]);
        assert!(
            s3_loaded < lru_loaded * 0.95,
            "loaded: s3fifo {s3_loaded:.3} lru {lru_loaded:.3}"
        );
    });
}
