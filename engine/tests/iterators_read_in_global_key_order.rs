//! Iterators (`Db::iter`, `LocalDb::iter`) and prefix scans: global user-key order
//! across shards and key groups, snapshots that survive writes and compactions,
//! release of shard cursors, the per-shard cursor bound, and map-state prefix scans
//! that visit one key group.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::*;
use terrace::{map_key, Db, ErrorKind, IterOptions, KeyRange, TableId};

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn fill(db: &Db, t: TableId, n: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    block_on(async {
        for i in 0..n {
            let v = format!("value-{i}").into_bytes();
            db.put(t, &key(i), &v).await.unwrap();
            model.insert(key(i), v);
        }
    });
    model
}

fn read_all(db: &Db, t: TableId, range: KeyRange, opts: IterOptions) -> Vec<(Vec<u8>, Vec<u8>)> {
    block_on(async {
        let mut it = db.iter(t, range, opts).await.unwrap();
        let mut out = Vec::new();
        loop {
            let b = it.next_batch().await.unwrap();
            if b.is_empty() {
                assert!(it.is_done());
                return out;
            }
            assert!(b.len() <= opts.batch_entries);
            out.extend(b.into_entries());
        }
    })
}

fn model_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .range::<[u8], _>((lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn iterators_return_every_shard_and_key_group_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_options(dir.path(), 3);
    o.max_key_groups = 256;
    let db = open(o);
    let t = db.table("default").unwrap();
    let model = fill(&db, t, 3000);
    block_on(db.flush()).unwrap();
    // Overwrite and delete some, so memtables shadow files.
    let mut model = model;
    block_on(async {
        for i in (0..3000).step_by(7) {
            db.put(t, &key(i), b"new").await.unwrap();
            model.insert(key(i), b"new".to_vec());
        }
        for i in (0..3000).step_by(11) {
            db.delete(t, &key(i)).await.unwrap();
            model.remove(&key(i));
        }
    });
    for batch_entries in [1, 7, 1000, 5000] {
        let opts = IterOptions {
            batch_entries,
            ..IterOptions::default()
        };
        let got = read_all(&db, t, KeyRange::all(), opts);
        assert_eq!(got, model_range(&model, Bound::Unbounded, Bound::Unbounded));
    }
    let (lo, hi) = (key(100), key(2100));
    let got = read_all(
        &db,
        t,
        KeyRange::new(Bound::Excluded(&lo), Bound::Included(&hi)),
        IterOptions::default(),
    );
    assert_eq!(
        got,
        model_range(&model, Bound::Excluded(&lo), Bound::Included(&hi))
    );
    // Batches bounded by bytes: each ends after the entry that reaches the limit.
    block_on(async {
        let opts = IterOptions {
            batch_entries: 1000,
            batch_bytes: 100,
        };
        let mut it = db.iter(t, KeyRange::all(), opts).await.unwrap();
        let b = it.next_batch().await.unwrap();
        assert!(b.bytes() >= 100 && b.len() < 10, "{b:?}");
    });
    // The other table is empty.
    let other = db.table("other").unwrap();
    assert!(read_all(&db, other, KeyRange::all(), IterOptions::default()).is_empty());
    block_on(db.close()).unwrap();
}

#[test]
fn an_iterator_reads_the_snapshot_of_its_open_through_writes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let t = db.table("default").unwrap();
    let model = fill(&db, t, 2000);
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    block_on(async {
        let opts = IterOptions {
            batch_entries: 100,
            ..IterOptions::default()
        };
        let mut it = db.iter(t, KeyRange::all(), opts).await.unwrap();
        let mut got = it.next_batch().await.unwrap().into_entries();
        // Change everything, flush, and compact the files the iterator reads away.
        for i in 0..2000 {
            if i % 2 == 0 {
                db.delete(t, &key(i)).await.unwrap();
            } else {
                db.put(t, &key(i), b"changed").await.unwrap();
            }
        }
        db.put(t, b"key-new", b"new").await.unwrap();
        db.compact_range(Bound::Unbounded, Bound::Unbounded)
            .await
            .unwrap();
        loop {
            let b = it.next_batch().await.unwrap();
            if b.is_empty() {
                break;
            }
            got.extend(b.into_entries());
        }
        assert_eq!(got, want);
        // A new iterator sees the new state.
        let now = db
            .scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
            .await
            .unwrap();
        assert_eq!(now.len(), 1001);
    });
    block_on(db.close()).unwrap();
}

#[test]
fn dropped_iterators_release_their_cursors_and_the_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_options(dir.path(), 2);
    o.max_open_cursors_per_shard = 2;
    let db = open(o);
    let t = db.table("default").unwrap();
    fill(&db, t, 500);
    let open_cursors = |db: &Db| -> usize {
        block_on(db.stats())
            .unwrap()
            .shards
            .iter()
            .map(|s| s.open_cursors)
            .sum()
    };
    let small = IterOptions {
        batch_entries: 10,
        ..IterOptions::default()
    };
    block_on(async {
        let a = db.iter(t, KeyRange::all(), small).await.unwrap();
        let b = db.iter(t, KeyRange::all(), small).await.unwrap();
        assert_eq!(open_cursors(&db), 4);
        let err = db.iter(t, KeyRange::all(), small).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        drop(a);
        drop(b);
        // Released by the close messages (or swept at the next open).
        let c = db.iter(t, KeyRange::all(), small).await.unwrap();
        drop(c);
        // The close requests are sent without waiting; stats queue behind them.
        assert_eq!(open_cursors(&db), 0);
        // An iterator read to its end holds nothing.
        let mut d = db
            .iter(t, KeyRange::all(), IterOptions::default())
            .await
            .unwrap();
        assert_eq!(d.next_batch().await.unwrap().len(), 500);
        assert!(d.is_done());
        assert_eq!(open_cursors(&db), 0);
    });
    // Bad options are refused.
    let bad = IterOptions {
        batch_entries: 0,
        ..IterOptions::default()
    };
    let err = block_on(db.iter(t, KeyRange::all(), bad)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    block_on(db.close()).unwrap();
}

#[test]
fn local_iterators_read_their_shard_directly_and_forward_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let t = db.table("default").unwrap();
    let model = fill(&db, t, 1500);
    let want = model_range(&model, Bound::Unbounded, Bound::Unbounded);
    for shard in 0..2 {
        let got = block_on(db.on_shard(shard, move |local| async move {
            let opts = IterOptions {
                batch_entries: 64,
                ..IterOptions::default()
            };
            let mut it = local.iter(t, KeyRange::all(), opts).await.unwrap();
            let mut out = Vec::new();
            loop {
                let b = it.next_batch().await.unwrap();
                if b.is_empty() {
                    return out;
                }
                out.extend(b.into_entries());
            }
        }))
        .unwrap();
        assert_eq!(got, want, "iterator on shard {shard}");
    }
    block_on(db.close()).unwrap();
}

/// Map state: one key's entries under composite keys; with the partition prefix
/// within the key, `scan_prefix` reads one key group of one shard with one seek.
#[test]
fn map_state_prefix_scans_visit_one_key_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_options(dir.path(), 2);
    o.max_key_groups = 1024;
    // Keys are 8 bytes wide; their composites share their first 8 bytes.
    o.key_group_prefix_bytes = Some(8);
    let db = open(o);
    let t = db.table("default").unwrap();
    let mut model: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    block_on(async {
        for user in 0..200u32 {
            let k = format!("u{user:07}").into_bytes();
            for item in 0..(user % 13) {
                let mk = format!("item-{item:03}").into_bytes();
                let v = format!("{user}/{item}").into_bytes();
                db.put(t, &map_key::compose(&k, &mk), &v).await.unwrap();
                model.entry(k.clone()).or_default().insert(mk, v);
            }
        }
        // Deletes inside maps, then some entries land in files.
        for user in (0..200u32).step_by(5) {
            let k = format!("u{user:07}").into_bytes();
            let mk = b"item-001".to_vec();
            db.delete(t, &map_key::compose(&k, &mk)).await.unwrap();
            if let Some(m) = model.get_mut(&k) {
                m.remove(&mk);
            }
        }
    });
    block_on(db.flush()).unwrap();
    let seeks_and_scans = |db: &Db| {
        let s = block_on(db.stats()).unwrap().total();
        (s.scan_seeks, s.scans)
    };
    for user in [0u32, 1, 12, 25, 199] {
        let k = format!("u{user:07}").into_bytes();
        let before = seeks_and_scans(&db);
        let got = block_on(db.scan_prefix(t, &map_key::prefix(&k), usize::MAX)).unwrap();
        let after = seeks_and_scans(&db);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (1, 1),
            "one shard, one key group, one seek"
        );
        let want: Vec<(Vec<u8>, Vec<u8>)> = model
            .get(&k)
            .map(|m| {
                m.iter()
                    .map(|(mk, v)| (map_key::compose(&k, mk), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, want, "map of {user}");
        for (c, _) in &got {
            let (k2, _) = map_key::split(c).unwrap();
            assert_eq!(k2, k);
        }
        // The iterator form reads the same single key group.
        let before = seeks_and_scans(&db);
        let got2 = read_all(
            &db,
            t,
            KeyRange::prefix(&map_key::prefix(&k)),
            IterOptions {
                batch_entries: 3,
                ..IterOptions::default()
            },
        );
        assert_eq!(got2, want);
        assert_eq!(seeks_and_scans(&db).0 - before.0, 1);
    }
    // A prefix shorter than the partition falls back to the global scan, and is
    // still right.
    let before = seeks_and_scans(&db);
    let got = block_on(db.scan_prefix(t, b"u00000", usize::MAX)).unwrap();
    assert!(seeks_and_scans(&db).1 - before.1 == 2, "every shard");
    let want: usize = (0..100u32)
        .map(|u| {
            model
                .get(&format!("u{u:07}").into_bytes())
                .map_or(0, BTreeMap::len)
        })
        .sum();
    assert_eq!(got.len(), want);
    block_on(db.close()).unwrap();
}

#[test]
fn opening_seeks_each_key_group_with_data_once_dense_or_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_options(dir.path(), 2);
    o.max_key_groups = 128;
    let db = open(o);
    let t = db.table("default").unwrap();
    let seeks = |db: &Db| block_on(db.stats()).unwrap().total().scan_seeks;
    // Sparse: five keys, so at most five of the 128 groups hold data. Opening seeks
    // those groups and the runs of empty ones between, each once, plus at most one
    // seek per group with data that a wave takes past it (sought together with it).
    let sparse = fill(&db, t, 5);
    let groups: std::collections::BTreeSet<u16> = sparse.keys().map(|k| db.key_group(k)).collect();
    let before = seeks(&db);
    let all = IterOptions::default();
    assert_eq!(
        read_all(&db, t, KeyRange::all(), all),
        model_range(&sparse, Bound::Unbounded, Bound::Unbounded)
    );
    let sought = seeks(&db) - before;
    let bound = 3 * groups.len() as u64 + 2;
    assert!(
        sought <= bound,
        "{sought} seeks for {} groups with data (at most {bound})",
        groups.len()
    );
    // Dense: every group holds data, so every group is sought exactly once (the
    // waves seek them together, and no seek lands in a gap).
    let model = fill(&db, t, 3000);
    let groups: std::collections::BTreeSet<u16> = model.keys().map(|k| db.key_group(k)).collect();
    assert_eq!(groups.len(), 128);
    for flushed in [false, true] {
        if flushed {
            block_on(db.flush()).unwrap();
        }
        let before = seeks(&db);
        assert_eq!(
            read_all(&db, t, KeyRange::all(), all),
            model_range(&model, Bound::Unbounded, Bound::Unbounded)
        );
        assert_eq!(seeks(&db) - before, 128, "flushed: {flushed}");
    }
}

/// A store that counts how many ranged reads are in flight at once.
#[derive(Debug)]
struct CountedReads {
    inner: std::sync::Arc<dyn terrace_tiering::store::ObjectStore>,
    now: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

impl CountedReads {
    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

mod counted_reads {
    use std::ops::Range;
    use std::sync::atomic::Ordering;

    use bytes::Bytes;
    use terrace_tiering::store::{
        BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreResult,
    };

    use super::CountedReads;

    impl ObjectStore for CountedReads {
        fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
            self.inner.put(key, body)
        }
        fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
            self.inner.create_multipart(key)
        }
        fn put_part<'a>(
            &'a self,
            key: &'a str,
            upload: &'a MultipartId,
            part_number: u32,
            body: Bytes,
        ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
            self.inner.put_part(key, upload, part_number, body)
        }
        fn complete_multipart<'a>(
            &'a self,
            key: &'a str,
            upload: &'a MultipartId,
            parts: Vec<PartReceipt>,
        ) -> BoxFuture<'a, StoreResult<()>> {
            self.inner.complete_multipart(key, upload, parts)
        }
        fn abort_multipart<'a>(
            &'a self,
            key: &'a str,
            upload: &'a MultipartId,
        ) -> BoxFuture<'a, StoreResult<()>> {
            self.inner.abort_multipart(key, upload)
        }
        fn get_range<'a>(
            &'a self,
            key: &'a str,
            range: Range<u64>,
        ) -> BoxFuture<'a, StoreResult<Bytes>> {
            Box::pin(async move {
                let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                let got = self.inner.get_range(key, range).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                got
            })
        }
        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
            self.inner.get(key)
        }
        fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
            self.inner.head(key)
        }
        fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
            self.inner.list(prefix)
        }
        fn list_multipart<'a>(
            &'a self,
            prefix: &'a str,
        ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
            self.inner.list_multipart(prefix)
        }
        fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
            self.inner.delete(key)
        }
        fn describe(&self) -> String {
            format!("reads counted over {}", self.inner.describe())
        }
    }
}

/// Opening a cursor over a file that is only in the object store seeks its key groups
/// in waves whose reads overlap: with one shard, no read-ahead, no block cache to speak
/// of and 20 ms per request, reads go out several at a time (one after the other they
/// would never exceed one in flight), and the scan still returns exactly the model.
#[test]
fn key_group_seeks_on_a_remote_file_overlap_their_reads() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    std::fs::create_dir(&root).unwrap();
    use terrace_tiering::store::fault::{FaultConfig, FaultyStore, Latency};
    let slow = Arc::new(FaultyStore::new(
        Arc::new(terrace_tiering::store::local_dir::LocalDirStore::open(&root, false).unwrap()),
        FaultConfig {
            latency: Latency::Fixed(std::time::Duration::from_millis(20)),
            ..FaultConfig::default()
        },
    ));
    slow.set_enabled(false);
    let store = Arc::new(CountedReads {
        inner: slow.clone(),
        now: Default::default(),
        peak: Default::default(),
    });
    let mut o = small_options(dir.path(), 1);
    o.max_key_groups = 128;
    o.object_store = terrace::ObjectStoreSpec::Custom(store.clone());
    o.local_disk_budget_bytes = Some(1);
    o.warm_window = std::time::Duration::ZERO;
    o.block_cache_bytes = 4 << 10;
    o.scan_readahead_blocks = 0;
    let db = open(o);
    let t = db.table("default").unwrap();
    let model = fill(&db, t, 3000);
    block_on(async {
        db.flush().await.unwrap();
        db.wait_for_compactions().await.unwrap();
        db.wait_for_uploads().await.unwrap();
        db.enforce_local_budget().await.unwrap();
    });
    let stats = block_on(db.stats()).unwrap();
    assert!(
        stats.total().local_drops > 0,
        "no file went remote-only: {stats}"
    );
    store.peak.store(0, std::sync::atomic::Ordering::SeqCst);
    slow.set_enabled(true);
    assert_eq!(
        read_all(&db, t, KeyRange::all(), IterOptions::default()),
        model_range(&model, Bound::Unbounded, Bound::Unbounded)
    );
    assert!(
        store.peak() >= 4,
        "at most {} reads in flight while opening 128 key groups",
        store.peak()
    );
    block_on(db.close()).unwrap();
}
