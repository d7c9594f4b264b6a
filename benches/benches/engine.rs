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

fn point_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(dir.path());
    opts.shards = 1;
    opts.pin_shards = false;
    let db = block_on(Db::open(opts)).expect("open");
    let t = db.table("default").expect("table");
    let value = [7u8; 100];
    block_on(async {
        for i in 0..10_000u32 {
            db.put(t, format!("{i:016}").as_bytes(), &value)
                .await
                .expect("put");
        }
    });
    let mut g = c.benchmark_group("db_cross_thread");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u32;
    g.bench_function("put", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % 10_000;
            block_on(db.put(t, format!("{i:016}").as_bytes(), &value)).expect("put");
        })
    });
    g.bench_function("get_memtable", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919) % 10_000;
            black_box(block_on(db.get(t, format!("{i:016}").as_bytes())).expect("get"));
        })
    });
    g.bench_function("multi_get_32_memtable", |b| {
        b.iter_batched(
            || {
                (0..32u32)
                    .map(|j| format!("{:016}", (i + j * 311) % 10_000).into_bytes())
                    .collect::<Vec<_>>()
            },
            |batch| black_box(block_on(db.multi_get(t, &batch)).expect("multi_get")),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    block_on(db.close()).expect("close");
}

criterion_group!(benches, keys, point_ops);
criterion_main!(benches);
