//! Criterion micro-benchmarks of the engine's hot paths.
//!
//! `cargo bench -p terrace-benches`. Whole-system figures come from `terrace-bench`
//! (see docs/BENCHMARKS.md); these isolate single mechanisms so a change to one shows
//! up here first.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use terrace::key::{compare_internal, key_group, make_internal_key, ValueKind};
use terrace::{Db, Options};

fn keys(c: &mut Criterion) {
    let user: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| format!("{i:016}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("key");
    g.throughput(Throughput::Elements(user.len() as u64));
    g.bench_function("key_group_xxh3", |b| {
        b.iter(|| {
            for k in &user {
                black_box(key_group(black_box(k), 32768));
            }
        })
    });
    let ikeys: Vec<Vec<u8>> = user
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut sk = vec![0, 1, 0, 0];
            sk.extend_from_slice(k);
            make_internal_key(&sk, i as u64, ValueKind::Put)
        })
        .collect();
    g.bench_function("compare_internal", |b| {
        b.iter(|| {
            for w in ikeys.windows(2) {
                black_box(compare_internal(black_box(&w[0]), black_box(&w[1])));
            }
        })
    });
    g.finish();
}

/// Round trips of one-off calls from a foreign thread (issue 13): the caller is
/// criterion's thread, blocking on each call with `block_on`; the one shard is pinned
/// to core 0 so the caller has the other core of a 2-core machine. `local_get` is
/// the same read on the shard's own thread through a [`terrace::LocalDb`], for
/// reference: what the engine costs without the hop.
fn cross_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(dir.path());
    opts.shards = 1;
    opts.pin_shards = true;
    // For experiments: `CALLER_SPIN_US=0 cargo bench ...` compares without the spin.
    if let Some(us) = std::env::var("CALLER_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.caller_spin_us = us;
    }
    if let Some(us) = std::env::var("SPIN_BEFORE_PARK_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.spin_before_park_us = us;
    }
    let db = block_on(Db::open(opts)).expect("open");
    let t = db.table("default").expect("table");
    let value = [7u8; 100];
    let key = |i: u32| format!("{i:016}").into_bytes();
    block_on(async {
        for i in 0..10_000u32 {
            db.put(t, &key(i), &value).await.expect("put");
        }
        // Flushed and read once: later gets are served by the memory block cache.
        db.flush().await.expect("flush");
        for i in 0..10_000u32 {
            db.get(t, &key(i)).await.expect("get");
        }
    });
    let mut g = c.benchmark_group("cross_thread");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("get_cached", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % 10_000;
            black_box(block_on(db.get(t, &key(i))).expect("get"));
        })
    });
    g.bench_function("put", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % 10_000;
            block_on(db.put(t, &key(i), &value)).expect("put");
        })
    });
    g.bench_function("get_memtable", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % 10_000;
            black_box(block_on(db.get(t, &key(i))).expect("get"));
        })
    });
    g.bench_function("multi_get_32_memtable", |b| {
        b.iter_batched(
            || {
                (0..32u32)
                    .map(|j| key((i + j * 311) % 10_000))
                    .collect::<Vec<_>>()
            },
            |batch| black_box(block_on(db.multi_get(t, &batch)).expect("multi_get")),
            BatchSize::SmallInput,
        )
    });
    // One hop per batch of `iters` gets, amortized by criterion's batch sizes.
    g.bench_function("local_get_memtable", |b| {
        b.iter_custom(|iters| {
            let start = terrace_tiering::clock::now();
            block_on(db.on_shard(0, move |local| async move {
                let mut i = 0u32;
                for _ in 0..iters {
                    i = i.wrapping_add(7919) % 10_000;
                    black_box(local.get(t, &key(i)).await.expect("get"));
                }
            }))
            .expect("on_shard");
            start.elapsed()
        })
    });
    g.finish();
    let stats = block_on(db.stats()).expect("stats");
    eprintln!(
        "caller spins: {} answered, {} missed; pulse nudges {}",
        stats.caller_spins_answered, stats.caller_spins_missed, stats.pulse_nudges
    );
    block_on(db.close()).expect("close");
}

criterion_group!(benches, keys, cross_thread);
criterion_main!(benches);
