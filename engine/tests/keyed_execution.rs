//! Keyed execution: operators run on the shard owning each record's key, see the
//! records of a key in push order, may not touch other shards' keys, and report
//! their errors.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use terrace::{
    ConcurrentOperator, Db, ErrorDetail, ErrorKind, KeyGroupRange, KeyedOptions, LocalDb, Operator,
    Result,
};

/// Appends each record's number to its key's value: the value is the history of
/// the key, so any reordering shows.
struct Append {
    shard: u32,
    wrong_shard: Arc<AtomicU32>,
}

impl Operator<(Vec<u8>, u32)> for Append {
    async fn process(&mut self, state: &LocalDb, (key, n): (Vec<u8>, u32)) -> Result<()> {
        if state.shard_id() != self.shard || !state.owns(&key) || !state.is_strict() {
            self.wrong_shard.fetch_add(1, Ordering::Relaxed);
        }
        let t = state.table("default")?;
        let mut v = state.get(t, &key).await?.unwrap_or_default();
        v.extend_from_slice(&n.to_le_bytes());
        state.put(t, &key, &v).await
    }
}

/// The same, micro-batched: one `multi_get` for the batch's keys, then writes.
struct AppendBatched;

impl Operator<(Vec<u8>, u32)> for AppendBatched {
    async fn process(&mut self, state: &LocalDb, record: (Vec<u8>, u32)) -> Result<()> {
        self.process_batch(state, vec![record]).await
    }

    async fn process_batch(&mut self, state: &LocalDb, records: Vec<(Vec<u8>, u32)>) -> Result<()> {
        let t = state.table("default")?;
        let mut keys: Vec<Vec<u8>> = records.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        let old = state.multi_get(t, &keys).await?;
        let mut values: BTreeMap<Vec<u8>, Vec<u8>> = keys
            .into_iter()
            .zip(old)
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        for (k, n) in records {
            if let Some(v) = values.get_mut(&k) {
                v.extend_from_slice(&n.to_le_bytes());
            }
        }
        for (k, v) in values {
            state.put(t, &k, &v).await?;
        }
        Ok(())
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn records(seed: u64, n: u32) -> Vec<(Vec<u8>, u32)> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| (format!("k{:04}", rng.gen_range(0..500)).into_bytes(), i))
        .collect()
}

fn model_of(recs: &[(Vec<u8>, u32)]) -> Model {
    let mut m = Model::new();
    for (k, n) in recs {
        m.entry(k.clone())
            .or_default()
            .extend_from_slice(&n.to_le_bytes());
    }
    m
}

fn check(db: &Db, model: &Model) {
    let t = db.table("default").unwrap();
    for (k, v) in model {
        let got = block_on(db.get(t, k)).unwrap();
        assert_eq!(got.as_ref(), Some(v), "key {}", String::from_utf8_lossy(k));
    }
}

#[test]
fn records_of_a_key_are_processed_in_push_order_on_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let recs = records(5, 20_000);
    let wrong_shard = Arc::new(AtomicU32::new(0));
    // Small batches and a short queue: many batches in flight, push waits often.
    let opts = KeyedOptions {
        batch_records: 7,
        max_batches_in_flight: 2,
        ..Default::default()
    };
    let w = wrong_shard.clone();
    let report = block_on(async {
        let mut keyed = db
            .keyed(
                move |shard| Append {
                    shard,
                    wrong_shard: w.clone(),
                },
                opts,
            )
            .await?;
        for (k, n) in &recs {
            keyed.push(k, (k.clone(), *n)).await?;
        }
        keyed.finish().await
    })
    .unwrap();
    assert_eq!(report.records, recs.len() as u64);
    assert_eq!(report.records_per_shard.len(), 2);
    assert!(
        report.records_per_shard.iter().all(|&n| n > 0),
        "{report:?}"
    );
    assert!(report.batches >= recs.len() as u64 / 7, "{report:?}");
    assert_eq!(wrong_shard.load(Ordering::Relaxed), 0);
    check(&db, &model_of(&recs));
    block_on(db.close()).unwrap();
}

#[test]
fn a_micro_batching_operator_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let recs = records(6, 10_000);
    let report = block_on(async {
        let mut keyed = db.keyed(|_| AppendBatched, KeyedOptions::default()).await?;
        for (k, n) in &recs {
            keyed.push(k, (k.clone(), *n)).await?;
        }
        // A flush in the middle sends partial batches; order still holds.
        keyed.flush().await?;
        keyed.finish().await
    })
    .unwrap();
    assert_eq!(report.records, recs.len() as u64);
    check(&db, &model_of(&recs));
    block_on(db.close()).unwrap();
}

/// `AppendBatched` with batches running at once: it waits a while between its
/// reads and its writes (so a second batch holding one of its keys would lose an
/// update), and records how many batches ran at once and whether two of them ever
/// shared a key.
struct AppendConcurrent {
    running: Cell<usize>,
    keys_running: RefCell<HashSet<Vec<u8>>>,
    most_running: Arc<AtomicUsize>,
    shared_key: Arc<AtomicBool>,
}

impl ConcurrentOperator<(Vec<u8>, u32)> for AppendConcurrent {
    async fn process_batch(&self, state: &LocalDb, records: Vec<(Vec<u8>, u32)>) -> Result<()> {
        self.running.set(self.running.get() + 1);
        self.most_running
            .fetch_max(self.running.get(), Ordering::Relaxed);
        let t = state.table("default")?;
        let mut keys: Vec<Vec<u8>> = records.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        for k in &keys {
            if !self.keys_running.borrow_mut().insert(k.clone()) {
                self.shared_key.store(true, Ordering::Relaxed);
            }
        }
        let old = state.multi_get(t, &keys).await?;
        // 0-3 ms, decided by the batch's first record: batches finish out of order.
        let pause = records[0].1 % 4;
        glommio::timer::sleep(Duration::from_millis(pause.into())).await;
        let mut values: BTreeMap<Vec<u8>, Vec<u8>> = keys
            .iter()
            .cloned()
            .zip(old)
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        for (k, n) in &records {
            values
                .get_mut(k)
                .unwrap()
                .extend_from_slice(&n.to_le_bytes());
        }
        for (k, v) in values {
            state.put(t, &k, &v).await?;
        }
        for k in &keys {
            self.keys_running.borrow_mut().remove(k);
        }
        self.running.set(self.running.get() - 1);
        Ok(())
    }
}

#[test]
fn concurrent_batches_keep_each_keys_records_in_push_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    // 500 keys, so consecutive batches share keys all the time.
    let recs = records(7, 20_000);
    let opts = KeyedOptions {
        batch_records: 16,
        max_batches_in_flight: 4,
        concurrent_batches: 8,
        // Start another batch as soon as the running ones wait: most overlap.
        concurrent_after: Duration::ZERO,
    };
    let most_running = Arc::new(AtomicUsize::new(0));
    let shared_key = Arc::new(AtomicBool::new(false));
    let (most, shared) = (most_running.clone(), shared_key.clone());
    let report = block_on(async {
        let mut keyed = db
            .keyed_concurrent(
                move |_| AppendConcurrent {
                    running: Cell::new(0),
                    keys_running: RefCell::new(HashSet::new()),
                    most_running: most.clone(),
                    shared_key: shared.clone(),
                },
                opts,
            )
            .await?;
        for (k, n) in &recs {
            keyed.push(k, (k.clone(), *n)).await?;
        }
        keyed.finish().await
    })
    .unwrap();
    assert_eq!(report.records, recs.len() as u64);
    check(&db, &model_of(&recs));
    let most = most_running.load(Ordering::Relaxed);
    assert!(
        !shared_key.load(Ordering::Relaxed),
        "two running batches shared a key"
    );
    assert!(most > 1, "batches never ran at once (most {most})");
    block_on(db.close()).unwrap();
}

/// Touches the key it is given and then a fixed key, wherever that lives.
struct TouchOther {
    other: Vec<u8>,
}

impl Operator<Vec<u8>> for TouchOther {
    async fn process(&mut self, state: &LocalDb, key: Vec<u8>) -> Result<()> {
        let t = state.table("default")?;
        state.put(t, &key, b"v").await?;
        state.get(t, &self.other).await.map(drop)
    }
}

#[test]
fn a_state_call_for_another_shards_key_fails_instead_of_hopping() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let other = b"the-other-key".to_vec();
    let owner = db.shard_of(&other);
    // A key of the other shard: its record runs on shard 1 - owner.
    let key = (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| db.shard_of(k) != owner)
        .unwrap();
    let err = block_on(async {
        let o = other.clone();
        let mut keyed = db
            .keyed(
                move |_| TouchOther { other: o.clone() },
                KeyedOptions::default(),
            )
            .await?;
        keyed.push(&key, key.clone()).await?;
        keyed.finish().await
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    match err.detail() {
        ErrorDetail::NotThisShard {
            owner: o, shard, ..
        } => {
            assert_eq!(*o, owner);
            assert_eq!(*shard, 1 - owner);
        }
        other => panic!("unexpected error {other:?}"),
    }
    // The same calls through a plain LocalDb (on_shard) forward instead.
    let k = key.clone();
    let o = other.clone();
    block_on(db.on_shard(1 - owner, move |local| async move {
        let t = local.table("default")?;
        local.put(t, &k, b"v").await?;
        local.get(t, &o).await
    }))
    .unwrap()
    .unwrap();
    block_on(db.close()).unwrap();
}

/// Fails on one record.
struct FailOn(u32);

impl Operator<u32> for FailOn {
    async fn process(&mut self, _state: &LocalDb, n: u32) -> Result<()> {
        if n == self.0 {
            return Err(ErrorDetail::BadArgument(format!("record {n} is poison")).into());
        }
        Ok(())
    }
}

#[test]
fn an_operator_error_ends_the_pipeline_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let err = block_on(async {
        let mut keyed = db
            .keyed(
                |_| FailOn(300),
                KeyedOptions {
                    batch_records: 4,
                    max_batches_in_flight: 1,
                    ..Default::default()
                },
            )
            .await?;
        for n in 0..100_000u32 {
            keyed.push(format!("k{n}").as_bytes(), n).await?;
        }
        keyed.finish().await
    })
    .unwrap_err();
    assert!(err.to_string().contains("record 300 is poison"), "{err}");
    // The database goes on serving.
    let t = db.table("default").unwrap();
    block_on(db.put(t, b"after", b"x")).unwrap();
    block_on(db.close()).unwrap();
}

#[test]
fn bad_options_and_keys_outside_the_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 2);
    opts.max_key_groups = 128;
    opts.key_group_range = Some(KeyGroupRange::new(0, 63));
    let db = open(opts);
    for bad in [
        KeyedOptions {
            batch_records: 0,
            ..Default::default()
        },
        KeyedOptions {
            max_batches_in_flight: 0,
            ..Default::default()
        },
        KeyedOptions {
            concurrent_batches: 0,
            ..Default::default()
        },
        KeyedOptions {
            concurrent_after: Duration::from_secs(3600),
            ..Default::default()
        },
    ] {
        let err = block_on(db.keyed(|_| FailOn(0), bad)).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    }
    let outside = (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| db.key_group(k) >= 64)
        .unwrap();
    let err = block_on(async {
        let mut keyed = db
            .keyed(|_| FailOn(u32::MAX), KeyedOptions::default())
            .await?;
        keyed.push(&outside, 1).await
    })
    .unwrap_err();
    assert!(
        matches!(err.detail(), ErrorDetail::KeyGroupOutOfRange { .. }),
        "{err}"
    );
    block_on(db.close()).unwrap();
}

#[test]
fn closing_the_database_under_a_running_pipeline_ends_it_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let mut keyed = block_on(db.keyed(|_| FailOn(u32::MAX), KeyedOptions::default())).unwrap();
    for n in 0..1000u32 {
        block_on(keyed.push(format!("k{n}").as_bytes(), n)).unwrap();
    }
    block_on(db.close()).unwrap();
    let err = block_on(keyed.finish()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}
