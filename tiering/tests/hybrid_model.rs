//! Random gets, inserts, flushes and file evictions against a model of what each block
//! holds now: every hit returns exactly the current bytes, never bytes of a file that
//! was evicted (the model bumps a file's generation on eviction, so a stale hit shows),
//! and memory and SSD bounds hold after every operation.

#![allow(clippy::unwrap_used)]

mod hybrid_support;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::future::join_all;
use rand::Rng;
use terrace_tiering::clock::{fresh_seed, seeded_rng};
use terrace_tiering::hybrid::{AdmissionHint, BlockKind, Eviction, HybridCache};

use hybrid_support::*;

fn seed() -> u64 {
    let s = std::env::var("TERRACE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(fresh_seed);
    eprintln!("seed {s} (replay with TERRACE_SEED={s})");
    s
}

const FILES: u64 = 24;
const BLOCKS_PER_FILE: u64 = 64;

fn kind_of(offset: u64) -> BlockKind {
    match (offset / 4096) % 10 {
        0 => BlockKind::Index,
        1 => BlockKind::Filter,
        _ => BlockKind::Data,
    }
}

fn len_of(file: u64, offset: u64) -> usize {
    300 + (mix(file * 1000 + offset) % 3800) as usize
}

fn model_run(compress: bool, eviction: Eviction) {
    let seed = seed();
    run(move |dir| async move {
        let mut cfg = small_config_with(&dir, eviction);
        cfg.compress_memory = compress;
        // Background work in a queue of its own, as the engine would run it.
        let bg = glommio::executor().create_task_queue(
            glommio::Shares::Static(250),
            glommio::Latency::NotImportant,
            "hybrid-cache-bg",
        );
        let mut cache = HybridCache::open_in(cfg.clone(), |_| true, Some(bg))
            .await
            .unwrap();
        let mut rng = seeded_rng(seed);
        // Generation of each file's contents: bumped when the file is evicted. (The
        // engine never reuses a file id; the model does, so that a stale hit shows.)
        let mut gens: HashMap<u64, u64> = HashMap::new();
        let mut restarts = 0;
        // Counters start again at each open: these add them up.
        let (mut ssd_hits, mut memory_hits) = (0, 0);
        // Whether memory held a compressed block before some restart (stats restart
        // with the cache: a restart near the end leaves too little to compress).
        let mut compressed_before_restart = false;
        let loads = Rc::new(Cell::new(0u64));
        for step in 0..4000u32 {
            let file = rng.gen_range(0..FILES);
            let off = rng.gen_range(0..BLOCKS_PER_FILE) * 4096;
            let k = key(file, off);
            let gen = *gens.get(&file).unwrap_or(&0);
            let want = block(k, gen, len_of(file, off));
            let level = (file % 5) as u8;
            match rng.gen_range(0..100) {
                0..=59 => {
                    let l = loads.clone();
                    let w = want.clone();
                    // Some loads wait, as real ones do, which lets background writes run.
                    let wait = rng.gen_bool(0.25);
                    let got = cache
                        .get_or_load(k, kind_of(off), level, AdmissionHint::Read, async move {
                            l.set(l.get() + 1);
                            if wait {
                                glommio::timer::sleep(std::time::Duration::from_micros(20)).await;
                            }
                            Ok(w)
                        })
                        .await
                        .unwrap();
                    assert_eq!(got, want, "step {step}: block {k:?} gen {gen}");
                }
                60..=69 => {
                    // Several concurrent lookups of a few blocks.
                    let keys: Vec<_> = (0..8)
                        .map(|_| key(file, rng.gen_range(0..4) * 4096))
                        .collect();
                    let futs = keys.iter().map(|&k| {
                        let w = block(k, gen, len_of(k.file_id, k.offset));
                        let c = &cache;
                        async move {
                            let got = c
                                .get_or_load(
                                    k,
                                    kind_of(k.offset),
                                    level,
                                    AdmissionHint::Read,
                                    async {
                                        glommio::timer::sleep(std::time::Duration::from_micros(50))
                                            .await;
                                        Ok(w.clone())
                                    },
                                )
                                .await
                                .unwrap();
                            assert_eq!(got, w, "concurrent {k:?}");
                        }
                    });
                    join_all(futs).await;
                }
                70..=79 => {
                    let hint = if rng.gen_bool(0.5) {
                        AdmissionHint::WarmWrite
                    } else {
                        AdmissionHint::Preload { inputs_hot: true }
                    };
                    cache.insert(k, want.clone(), kind_of(off), level, hint);
                }
                80..=87 => {
                    if let Some(got) = cache.get(&k) {
                        assert_eq!(got, want, "step {step}: memory hit {k:?}");
                    }
                }
                88..=92 => {
                    let got = cache
                        .get_or_load(k, kind_of(off), level, AdmissionHint::Bypass, async {
                            Ok(want.clone())
                        })
                        .await
                        .unwrap();
                    assert_eq!(got, want);
                }
                93 => {
                    cache.evict_file(file);
                    gens.insert(file, gen + 1);
                    for o in 0..BLOCKS_PER_FILE {
                        assert!(!cache.contains(&key(file, o * 4096)));
                    }
                }
                94 => cache.flush().await.unwrap(),
                95 if rng.gen_bool(0.2) => {
                    // Restart: files evicted so far are dead; the rest reopen warm.
                    let before = cache.stats();
                    ssd_hits += before.ssd.total().hits;
                    memory_hits += before.memory.total().hits;
                    compressed_before_restart |= before.compressed_blocks > 0;
                    cache.close().await.unwrap();
                    let dead: Vec<u64> = gens.keys().copied().collect();
                    cache = HybridCache::open_in(cfg.clone(), |f| !dead.contains(&f), Some(bg))
                        .await
                        .unwrap();
                    for f in dead {
                        // A dead file's id is not reused by the engine; here its next
                        // generation starts cold.
                        assert!(!cache.contains(&key(f, 0)) || gens[&f] == 0);
                    }
                    restarts += 1;
                }
                _ => {
                    // A cached block: from either tier, with the exact bytes.
                    if cache.contains(&k) {
                        let got = cache
                            .get_or_load(
                                k,
                                kind_of(off),
                                level,
                                AdmissionHint::Read,
                                must_not_load(),
                            )
                            .await;
                        if let Ok(got) = got {
                            assert_eq!(got, want, "step {step}: cached {k:?}");
                        }
                    }
                }
            }
            assert_bounds(&cache);
            if step % 500 == 0 {
                // Let background writes and moves run.
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        let s = cache.stats();
        eprintln!("{s:#?}\n{restarts} restarts");
        assert!(
            ssd_hits + s.ssd.total().hits > 0,
            "the SSD tier served something"
        );
        assert!(memory_hits + s.memory.total().hits > 0);
        assert_eq!(s.corruptions, 0);
        assert_eq!(s.write_errors, 0);
        assert_eq!(s.read_errors, 0);
        if compress {
            assert!(compressed_before_restart || s.compressed_blocks > 0);
        }
        cache.close().await.unwrap();
    });
}

#[test]
fn random_operations_match_the_model_with_compression() {
    model_run(true, Eviction::Lru);
}

#[test]
fn random_operations_match_the_model_without_compression() {
    model_run(false, Eviction::Lru);
}

#[test]
fn random_operations_match_the_model_under_s3fifo() {
    model_run(true, Eviction::S3Fifo);
    model_run(false, Eviction::S3Fifo);
}

#[test]
fn concurrent_misses_of_one_block_share_one_load() {
    run(|dir| async move {
        let cache = HybridCache::open(small_config(&dir), |_| true)
            .await
            .unwrap();
        let calls = Rc::new(Cell::new(0u32));
        let k = key(1, 0);
        let want = block(k, 0, 4000);
        let futs = (0..10).map(|_| {
            let calls = calls.clone();
            let w = want.clone();
            let c = &cache;
            async move {
                c.get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, async move {
                    calls.set(calls.get() + 1);
                    glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(w)
                })
                .await
                .unwrap()
            }
        });
        for got in join_all(futs).await {
            assert_eq!(got, want);
        }
        assert_eq!(calls.get(), 1);
        let s = cache.stats();
        assert_eq!(s.loads, 1);
        assert_eq!(s.coalesced, 9);
        // A failed load is shared too, and not cached.
        let k2 = key(2, 0);
        let futs = (0..3).map(|_| {
            cache.get_or_load(k2, BlockKind::Data, 1, AdmissionHint::Read, async {
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "store timed out",
                ))
            })
        });
        for r in join_all(futs).await {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        }
        assert!(!cache.contains(&k2));
        cache.close().await.unwrap();
    });
}

#[test]
fn a_load_finishing_after_its_file_was_evicted_is_not_admitted() {
    run(|dir| async move {
        let cache = Rc::new(
            HybridCache::open(small_config(&dir), |_| true)
                .await
                .unwrap(),
        );
        let k = key(3, 0);
        let c = cache.clone();
        let task = glommio::spawn_local(async move {
            c.get_or_load(k, BlockKind::Data, 0, AdmissionHint::Read, async {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                Ok(block(k, 0, 1000))
            })
            .await
            .unwrap()
        });
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        cache.evict_file(3);
        let got = task.await;
        assert_eq!(got, block(k, 0, 1000), "the caller still gets its bytes");
        assert!(
            !cache.contains(&k),
            "but the evicted file's block is not cached"
        );
    });
}

#[test]
fn a_waiter_loads_for_itself_when_the_leader_is_cancelled() {
    run(|dir| async move {
        let cache = Rc::new(
            HybridCache::open(small_config(&dir), |_| true)
                .await
                .unwrap(),
        );
        let k = key(5, 0);
        let want = block(k, 0, 1500);
        let c = cache.clone();
        let leader = glommio::spawn_local(async move {
            c.get_or_load(k, BlockKind::Data, 1, AdmissionHint::Read, async {
                glommio::timer::sleep(std::time::Duration::from_secs(60)).await;
                Ok(block(k, 9, 1500)) // never returned
            })
            .await
        });
        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        let c = cache.clone();
        let w = want.clone();
        let waiter = glommio::spawn_local(async move {
            c.get_or_load(
                k,
                BlockKind::Data,
                1,
                AdmissionHint::Read,
                async move { Ok(w) },
            )
            .await
            .unwrap()
        });
        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        assert_eq!(
            cache.stats().coalesced,
            1,
            "the waiter joined the leader's load"
        );
        assert!(leader.cancel().await.is_none());
        assert_eq!(waiter.await, want);
        assert!(cache.contains(&k));
        assert_eq!(cache.stats().loads, 2);
    });
}
