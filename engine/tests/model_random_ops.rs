//! Random operation sequences checked against a `BTreeMap` model.
//!
//! Puts, deletes, gets, multi-gets, scans, prefix scans, iterators, flushes, range
//! compactions and close-and-reopen cycles run against a 2-shard database with tiny
//! memtables and files, so flushes and compactions happen constantly. After every
//! read the answer must equal the model's. Iterators stay open across other
//! operations (writes, flushes, compactions) and must keep returning the model as it
//! was when they opened, in batches within their limits. The run is seeded: set `TERRACE_SEED` to replay a failure
//! (the seed is printed when an assertion fails), and `TERRACE_MODEL_OPS` to run longer.
//!
//! State kinds are modelled too: a list table (`merge` appends), a counter table
//! (`merge` adds) and a table whose values expire after a TTL, with the database's
//! clock a manual one the test moves forward (by up to a few seconds, now and then),
//! so values expire while reads, iterators, flushes, compactions and reopens run.
//!
//! A second run does the same with the hybrid block cache on: files lose their local
//! copies as soon as they are uploaded, so reads go through memory, the SSD tier
//! (small, so it evicts and reclaims segments) and ranged GETs.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use terrace::merge::encode_list;
use terrace::{CacheMode, Db, DbIter, IterOptions, KeyRange, Options, TableId, TableOptions};
use terrace_tiering::clock::{Clock, ManualClock};

/// Values by (table index, key); values of the TTL table carry their write time in
/// ms as an 8-byte little-endian prefix (what [`visible`] strips).
type Model = BTreeMap<(u16, Vec<u8>), Vec<u8>>;

const TABLES: [&str; 5] = ["default", "other", "list", "counter", "ttl"];
const LIST: u16 = 2;
const COUNTER: u16 = 3;
const TTL: u16 = 4;
const TTL_MS: u64 = 10_000;

/// What a read of a model value returns at `now_ms`.
fn visible(t: u16, v: &[u8], now_ms: u64) -> Option<Vec<u8>> {
    if t != TTL {
        return Some(v.to_vec());
    }
    let written = u64::from_le_bytes(v[..8].try_into().unwrap());
    (written + TTL_MS > now_ms).then(|| v[8..].to_vec())
}

fn model_get(model: &Model, t: u16, k: &[u8], now_ms: u64) -> Option<Vec<u8>> {
    model
        .get(&(t, k.to_vec()))
        .and_then(|v| visible(t, v, now_ms))
}

fn now_ms(clock: &ManualClock) -> u64 {
    clock
        .system_time()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The options with the state-kind tables and the test's clock.
fn with_state_kinds(mut o: Options, clock: &Arc<ManualClock>) -> Options {
    o.tables = TABLES.iter().map(|s| s.to_string()).collect();
    o.table_options.insert("list".into(), TableOptions::list());
    o.table_options
        .insert("counter".into(), TableOptions::counter());
    o.table_options.insert(
        "ttl".into(),
        TableOptions::with_ttl(Duration::from_millis(TTL_MS)),
    );
    o.clock = clock.clone();
    o
}

fn key(rng: &mut SmallRng, space: u32) -> Vec<u8> {
    // Varied lengths, shared prefixes, and some keys that are prefixes of others.
    let n = rng.gen_range(0..space);
    match n % 3 {
        0 => format!("k{n}").into_bytes(),
        1 => format!("k{n}-suffix").into_bytes(),
        _ => format!("p{:04}/{}", n % 37, n).into_bytes(),
    }
}

fn value(rng: &mut SmallRng) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0 => rng.gen_range(4096..20000), // larger than a block
        1..=10 => 0,
        _ => rng.gen_range(1..200),
    };
    (0..len).map(|_| rng.gen()).collect()
}

fn options(dir: &std::path::Path) -> Options {
    let mut o = small_options(dir, 2);
    o.max_key_groups = 16; // cheap whole-table scans
    o
}

/// [`options`] with the hybrid cache: 512 KiB of memory and 1 MiB of SSD per shard in
/// 64 KiB segments; no local copies past upload.
fn hybrid_options(dir: &std::path::Path) -> Options {
    let mut o = options(dir);
    o.cache_mode = CacheMode::Hybrid;
    o.block_cache_bytes = 1 << 20;
    o.ssd_cache_bytes = 2 << 20;
    o.cache_segment_bytes = 64 << 10;
    o.cache_write_buffer_bytes = 16 << 10;
    o.local_disk_budget_bytes = Some(2 << 20);
    o.warm_window = std::time::Duration::ZERO;
    o
}

fn model_scan(
    model: &Model,
    t: u16,
    lo: Bound<&Vec<u8>>,
    hi: Bound<&Vec<u8>>,
    limit: usize,
    now_ms: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|((tt, k), _)| {
            *tt == t
                && match lo {
                    Bound::Included(l) => k >= l,
                    Bound::Excluded(l) => k > l,
                    Bound::Unbounded => true,
                }
                && match hi {
                    Bound::Included(h) => k <= h,
                    Bound::Excluded(h) => k < h,
                    Bound::Unbounded => true,
                }
        })
        .filter_map(|((_, k), v)| Some((k.clone(), visible(t, v, now_ms)?)))
        .take(limit)
        .collect()
}

/// A value for a put into table `t`.
fn value_for(rng: &mut SmallRng, t: u16) -> Vec<u8> {
    match t {
        LIST => {
            let elems: Vec<Vec<u8>> = (0..rng.gen_range(0..4))
                .map(|_| (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect())
                .collect();
            encode_list(&elems)
        }
        COUNTER => rng.gen::<u64>().to_le_bytes().to_vec(),
        _ => value(rng),
    }
}

/// An open iterator and what it must still return: the model's entries of its range
/// when it opened.
struct OpenIter {
    iter: DbIter,
    want: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    opts: IterOptions,
    what: String,
}

/// Takes one batch of `it` and checks it against the snapshot it must return.
async fn step_iter(it: &mut OpenIter, ctx: &str) {
    let batch = it.iter.next_batch().await.unwrap();
    let what = &it.what;
    assert!(
        batch.len() <= it.opts.batch_entries,
        "{ctx} {what}: batch too long"
    );
    for (k, v) in batch.iter() {
        let Some((wk, wv)) = it.want.pop_front() else {
            panic!("{ctx} {what}: entry {k:?} past the end");
        };
        assert_eq!((k, v), (wk.as_slice(), wv.as_slice()), "{ctx} {what}");
    }
    let full = batch.len() == it.opts.batch_entries || batch.bytes() >= it.opts.batch_bytes;
    if !full {
        assert!(
            it.want.is_empty(),
            "{ctx} {what}: short batch before the end"
        );
        assert!(it.iter.is_done(), "{ctx} {what}: short batch but not done");
    }
    if it.want.is_empty() {
        // The next batch is empty (the last one may have been full).
        if !it.iter.is_done() {
            assert!(
                it.iter.next_batch().await.unwrap().is_empty(),
                "{ctx} {what}"
            );
        }
        assert!(it.iter.is_done(), "{ctx} {what}: all read but not done");
    }
}

/// A prefix of a key the generator makes (sometimes a whole key).
fn prefix(rng: &mut SmallRng, space: u32) -> Vec<u8> {
    let k = key(rng, space);
    let n = rng.gen_range(0..=k.len());
    k[..n].to_vec()
}

fn bound(rng: &mut SmallRng, space: u32) -> Bound<Vec<u8>> {
    match rng.gen_range(0..5) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(key(rng, space)),
        _ => Bound::Excluded(key(rng, space)),
    }
}

fn run(seed: u64, ops: usize, options: fn(&std::path::Path) -> Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let clock = Arc::new(ManualClock::new());
    let options = |p: &std::path::Path| with_state_kinds(options(p), &clock);
    let mut db = open(options(dir.path()));
    let tables: Vec<TableId> = TABLES.iter().map(|n| db.table(n).unwrap()).collect();
    let mut model = Model::new();
    let space = 3000;
    let ctx = |i: usize| format!("seed {seed}, op {i}");
    let (mut flushes, mut compactions) = (0u64, 0u64);
    let (mut remote_gets, mut ssd_hits) = (0u64, 0u64);
    let hybrid = options(dir.path()).cache_mode == CacheMode::Hybrid;
    let mut iters: Vec<OpenIter> = Vec::new();
    let (mut iter_batches, mut prefix_scans) = (0u64, 0u64);
    let (mut merges, mut ttl_dropped) = (0u64, 0u64);
    for i in 0..ops {
        if rng.gen_bool(0.01) {
            clock.advance(Duration::from_millis(rng.gen_range(0..4000)));
        }
        let now = now_ms(&clock);
        let ti = rng.gen_range(0..tables.len());
        let t = tables[ti];
        let tid = ti as u16;
        let dice = rng.gen_range(0..1000);
        if std::env::var_os("TERRACE_MODEL_TRACE").is_some() {
            eprintln!("op {i}: {dice}");
        }
        block_on(async {
            match dice {
                250..=449 if tid == LIST || tid == COUNTER => {
                    // A small key space: keys pile up operands across runs.
                    let k = key(&mut rng, 200);
                    let old = model.get(&(tid, k.clone())).cloned();
                    let (operand, new) = if tid == LIST {
                        let e: Vec<u8> = (0..rng.gen_range(0..30)).map(|_| rng.gen()).collect();
                        let mut new = old.unwrap_or_default();
                        new.extend_from_slice(&encode_list(&[&e]));
                        (e, new)
                    } else {
                        let n = rng.gen_range(0..1000u64);
                        let sum = old.map_or(0, |o| u64::from_le_bytes(o.try_into().unwrap()));
                        (
                            n.to_le_bytes().to_vec(),
                            sum.wrapping_add(n).to_le_bytes().to_vec(),
                        )
                    };
                    db.merge(t, &k, &operand).await.unwrap();
                    model.insert((tid, k), new);
                    merges += 1;
                }
                0..=449 => {
                    let (k, v) = (key(&mut rng, space), value_for(&mut rng, tid));
                    db.put(t, &k, &v).await.unwrap();
                    let stored = if tid == TTL {
                        [now.to_le_bytes().as_slice(), &v].concat()
                    } else {
                        v
                    };
                    model.insert((tid, k), stored);
                }
                450..=599 => {
                    let k = key(&mut rng, space);
                    db.delete(t, &k).await.unwrap();
                    model.remove(&(tid, k));
                }
                600..=899 => {
                    let k = key(&mut rng, space);
                    let got = db.get(t, &k).await.unwrap();
                    assert_eq!(got, model_get(&model, tid, &k, now), "{} get {k:?}", ctx(i));
                }
                900..=929 => {
                    let keys: Vec<Vec<u8>> = (0..rng.gen_range(1..40))
                        .map(|_| key(&mut rng, space))
                        .collect();
                    let got = db.multi_get(t, &keys).await.unwrap();
                    for (k, g) in keys.iter().zip(got) {
                        assert_eq!(
                            g,
                            model_get(&model, tid, k, now),
                            "{} multi_get {k:?}",
                            ctx(i)
                        );
                    }
                }
                970..=989 => {
                    let (lo, hi) = (bound(&mut rng, space), bound(&mut rng, space));
                    let limit = rng.gen_range(0..50);
                    let got = db
                        .scan(
                            t,
                            lo.as_ref().map(|v| v.as_slice()),
                            hi.as_ref().map(|v| v.as_slice()),
                            limit,
                        )
                        .await
                        .unwrap();
                    let want = model_scan(&model, tid, lo.as_ref(), hi.as_ref(), limit, now);
                    assert_eq!(got, want, "{} scan {lo:?}..{hi:?} limit {limit}", ctx(i));
                }
                930..=939 => {
                    let p = prefix(&mut rng, space);
                    let limit = rng.gen_range(0..60);
                    let got = db.scan_prefix(t, &p, limit).await.unwrap();
                    let want: Vec<_> = model_scan(
                        &model,
                        tid,
                        Bound::Included(&p),
                        Bound::Unbounded,
                        usize::MAX,
                        now,
                    )
                    .into_iter()
                    .take_while(|(k, _)| k.starts_with(&p))
                    .take(limit)
                    .collect();
                    assert_eq!(got, want, "{} scan_prefix {p:?} limit {limit}", ctx(i));
                    prefix_scans += 1;
                }
                940..=949 if iters.len() < 4 => {
                    let range = if rng.gen_bool(0.2) {
                        KeyRange::prefix(&prefix(&mut rng, space))
                    } else {
                        let (lo, hi) = (bound(&mut rng, space), bound(&mut rng, space));
                        KeyRange::new(
                            lo.as_ref().map(|v| v.as_slice()),
                            hi.as_ref().map(|v| v.as_slice()),
                        )
                    };
                    let opts = IterOptions {
                        batch_entries: rng.gen_range(1..40),
                        batch_bytes: if rng.gen_bool(0.3) {
                            rng.gen_range(1..2000)
                        } else {
                            1 << 20
                        },
                    };
                    let want = model_scan(
                        &model,
                        tid,
                        range.lower().map(|b| b.to_vec()).as_ref(),
                        range.upper().map(|b| b.to_vec()).as_ref(),
                        usize::MAX,
                        now,
                    );
                    let iter = db.iter(t, range.clone(), opts).await.unwrap();
                    iters.push(OpenIter {
                        iter,
                        want: want.into(),
                        opts,
                        what: format!("iterator over {range:?} with {opts:?}"),
                    });
                }
                950..=969 if !iters.is_empty() => {
                    let n = rng.gen_range(0..iters.len());
                    step_iter(&mut iters[n], &ctx(i)).await;
                    iter_batches += 1;
                    if iters[n].iter.is_done() || rng.gen_bool(0.1) {
                        iters.swap_remove(n);
                    }
                }
                990..=993 => db.flush().await.unwrap(),
                994..=996 => db
                    .compact_range(Bound::Unbounded, Bound::Unbounded)
                    .await
                    .unwrap(),
                _ => {}
            }
        });
        if dice >= 997 {
            iters.clear();
            let stats = block_on(db.stats()).unwrap();
            let t = stats.total();
            flushes += t.flushes;
            compactions += t.compactions + t.trivial_moves;
            ttl_dropped += t.ttl_dropped;
            remote_gets += stats.tier().remote_reads.requests;
            if let Some(c) = stats.block_cache() {
                ssd_hits += c.totals.ssd.total().hits;
            }
            block_on(db.clone().close()).unwrap();
            drop(db);
            db = open(options(dir.path()));
        }
    }
    eprintln!(
        "{flushes} flushes, {compactions} compactions and moves, {remote_gets} GETs, {ssd_hits} SSD hits, \
         {iter_batches} iterator batches, {prefix_scans} prefix scans, {merges} merges, \
         {ttl_dropped} values expired by compactions"
    );
    iters.clear();
    if ops >= 10_000 {
        assert!(
            flushes > 10 && compactions > 10,
            "the workload must exercise the LSM"
        );
        assert!(
            merges > 100 && ttl_dropped > 0,
            "the workload must merge and expire values"
        );
        if hybrid {
            assert!(
                remote_gets > 0 && ssd_hits > 0,
                "reads must come from the SSD tier and the object store"
            );
        }
    }
    // Everything, once more, after a final reopen.
    block_on(db.clone().close()).unwrap();
    drop(db);
    let db: Db = open(options(dir.path()));
    let now = now_ms(&clock);
    block_on(async {
        for (ti, t) in tables.iter().enumerate() {
            let got = db
                .scan(*t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
                .await
                .unwrap();
            let want = model_scan(
                &model,
                ti as u16,
                Bound::Unbounded,
                Bound::Unbounded,
                usize::MAX,
                now,
            );
            assert_eq!(got.len(), want.len(), "seed {seed}: final scan length");
            assert!(got == want, "seed {seed}: final scan differs");
        }
        let stats = db.stats().await.unwrap();
        let t = stats.total();
        assert!(t.flushes == 0, "a fresh open has not flushed yet");
        db.close().await.unwrap();
    });
}

fn seed_and_ops(default_ops: usize) -> (u64, usize) {
    let seed = std::env::var("TERRACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| terrace_tiering::clock::fresh_seed() % 1_000_000);
    let ops = std::env::var("TERRACE_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_ops);
    (seed, ops)
}

#[test]
fn random_ops_match_a_btreemap() {
    let (seed, ops) = seed_and_ops(100_000);
    eprintln!("model test: seed {seed}, {ops} ops (replay with TERRACE_SEED={seed})");
    run(seed, ops, options);
}

#[test]
fn random_ops_match_a_btreemap_with_the_hybrid_cache() {
    let (seed, ops) = seed_and_ops(40_000);
    eprintln!("hybrid model test: seed {seed}, {ops} ops (replay with TERRACE_SEED={seed})");
    run(seed, ops, hybrid_options);
}
