//! Criterion micro-benchmarks of the engine's hot paths.
//!
//! `cargo bench -p terrace-benches` (one group: `cargo bench -p terrace-benches -- scans`). Whole-system figures come from `terrace-bench`
//! (see docs/BENCHMARKS.md); these isolate single mechanisms so a change to one shows
//! up here first.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use terrace::key::{compare_internal, key_group, make_internal_key, ValueKind};
use terrace::{map_key, Batch, Db, IterOptions, KeyRange, Options};

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
    // For experiments: `CALLER_SPIN_US=0 cargo bench ...` compares without the caller's
    // spin, `REQUEST_SPIN_US=0` without the shard's.
    if let Some(us) = std::env::var("CALLER_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.caller_spin_us = us;
    }
    if let Some(us) = std::env::var("REQUEST_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.request_spin_us = us;
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
        "caller spins: {} answered, {} missed; requests taken spinning {}; pulse nudges {}",
        stats.caller_spins_answered,
        stats.caller_spins_missed,
        stats.total().requests_spun,
        stats.pulse_nudges
    );
    block_on(db.close()).expect("close");
}

/// Iterators: a whole table in global key order over 2 shards and 128 key groups
/// (a heap step per entry, one hop per batch per shard), and map-state prefix scans
/// that read one key group.
fn scans(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(dir.path());
    opts.shards = 2;
    opts.max_key_groups = 128;
    // Map keys: 8-byte user keys, so one user's map is one key group.
    opts.key_group_prefix_bytes = Some(8);
    // For experiments: `SCAN_READAHEAD_BLOCKS=0 cargo bench ...` scans without read-ahead.
    if let Some(n) = std::env::var("SCAN_READAHEAD_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.scan_readahead_blocks = n;
    }
    let db = block_on(Db::open(opts)).expect("open");
    let t = db.table("default").expect("table");
    let value = [7u8; 100];
    let (users, items) = (6_250u32, 16u32);
    let user = |u: u32| format!("{u:08}").into_bytes();
    block_on(async {
        for u in 0..users {
            for i in 0..items {
                let k = map_key::compose(&user(u), format!("item-{i:04}").as_bytes());
                db.put(t, &k, &value).await.expect("put");
            }
        }
        db.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .await
            .expect("compact");
    });
    let total = u64::from(users * items);
    let mut g = c.benchmark_group("scans");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total));
    g.bench_function("iter_all_100k", |b| {
        b.iter(|| {
            block_on(async {
                let mut it = db
                    .iter(t, KeyRange::all(), IterOptions::default())
                    .await
                    .expect("iter");
                let mut batch = Batch::default();
                let mut n = 0u64;
                loop {
                    it.next_batch_into(&mut batch).await.expect("batch");
                    if batch.is_empty() {
                        break;
                    }
                    n += batch.len() as u64;
                }
                assert_eq!(n, total);
            })
        })
    });
    g.throughput(Throughput::Elements(u64::from(items)));
    let mut u = 0u32;
    g.bench_function("scan_prefix_map_16", |b| {
        b.iter(|| {
            u = u.wrapping_add(7919) % users;
            let got = block_on(db.scan_prefix(t, &map_key::prefix(&user(u)), usize::MAX))
                .expect("scan_prefix");
            assert_eq!(got.len(), items as usize);
        })
    });
    g.finish();
    block_on(db.close()).expect("close");
}

criterion_group!(benches, keys, cross_thread, scans);
criterion_main!(benches);
