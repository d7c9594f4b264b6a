//! A database that owns a sub-range of the job's key groups (`Options::key_group_range`,
//! one Flink subtask's `KeyGroupRange`): its shards split that range, a key whose group
//! is outside it is refused with an error naming the group and the range, and the
//! range is fixed at creation, kept across reopens, and carried by checkpoints into
//! restores.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use common::*;
use terrace::{Db, ErrorKind, KeyGroupRange, ObjectStoreSpec, Options};

const RANGE: KeyGroupRange = KeyGroupRange::new(32, 95);

fn options(dir: &Path, name: &str) -> Options {
    let mut o = small_options(&dir.join(name), 2);
    o.max_key_groups = 128;
    o.key_group_range = Some(RANGE);
    std::fs::create_dir_all(dir.join("store")).unwrap();
    o.object_store = ObjectStoreSpec::Uri(format!("file://{}", dir.join("store").display()));
    o.gc_interval = None;
    o
}

/// Keys `key00000..` split into those the range owns and those it does not.
fn keys(db: &Db, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    (0..n)
        .map(|i| format!("key{i:05}").into_bytes())
        .partition(|k| RANGE.contains(db.key_group(k)))
}

fn assert_out_of_range(err: terrace::Error, db: &Db, key: &[u8]) {
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("key group {}", db.key_group(key))) && msg.contains("32-95"),
        "the error must name the key group and the range: {msg}"
    );
}

#[test]
fn a_database_serves_its_key_groups_and_refuses_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(options(tmp.path(), "db"));
    let t = db.table("default").unwrap();
    let (inside, outside) = keys(&db, 2000);
    assert!(inside.len() > 500 && outside.len() > 500);

    // The shards split the range, not the job's key groups.
    let stats = block_on(db.stats()).unwrap();
    let ranges: Vec<(u16, u16)> = stats.shards.iter().map(|s| s.key_groups).collect();
    assert_eq!(ranges, [(32, 63), (64, 95)]);

    let mut model = BTreeMap::new();
    block_on(async {
        for (i, k) in inside.iter().enumerate() {
            let v = format!("v{i}").into_bytes();
            db.put(t, k, &v).await.unwrap();
            model.insert(k.clone(), v);
        }
        for k in outside.iter().take(50) {
            assert_out_of_range(db.put(t, k, b"x").await.unwrap_err(), &db, k);
            assert_out_of_range(db.get(t, k).await.unwrap_err(), &db, k);
            assert_out_of_range(db.delete(t, k).await.unwrap_err(), &db, k);
        }
        let batch = [inside[0].as_slice(), outside[0].as_slice()];
        assert_out_of_range(
            db.multi_get(t, &batch).await.unwrap_err(),
            &db,
            outside[0].as_slice(),
        );
        let k = outside[1].as_slice();
        let point = db
            .scan(t, Bound::Included(k), Bound::Included(k), 10)
            .await
            .unwrap_err();
        assert_out_of_range(point, &db, k);
        // A shard's local handle refuses them too.
        let k0 = outside[2].clone();
        let local = db
            .on_shard(0, move |l| async move {
                let t = l.table("default").unwrap();
                l.put(t, &k0, b"x").await
            })
            .await
            .unwrap();
        assert_eq!(local.unwrap_err().kind(), ErrorKind::InvalidArgument);
    });
    check_all(&db, &model);
    block_on(db.flush()).unwrap();
    block_on(db.checkpoint(1)).unwrap();
    block_on(db.close()).unwrap();

    // Reopen: the range is the database's; `None` means "as created"; another
    // range is refused and changes nothing.
    let mut other = options(tmp.path(), "db");
    other.key_group_range = Some(KeyGroupRange::new(0, 63));
    let err = block_on(Db::open(other)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("key_group_range"), "{err}");
    let mut as_created = options(tmp.path(), "db");
    as_created.key_group_range = None;
    let db = open(as_created);
    check_all(&db, &model);
    assert_out_of_range(
        block_on(db.get(db.table("default").unwrap(), &outside[0])).unwrap_err(),
        &db,
        &outside[0],
    );
    block_on(db.close()).unwrap();
    let existing = Options::for_existing(tmp.path().join("db")).unwrap();
    assert_eq!(existing.key_group_range, Some(RANGE));

    // A restore carries the range; asking for another one is a clear error.
    let mut elsewhere = options(tmp.path(), "r2");
    elsewhere.key_group_range = Some(KeyGroupRange::new(0, 127));
    let err = block_on(Db::restore(elsewhere, None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("32-95"), "{err}");
    let mut restore = options(tmp.path(), "r");
    restore.key_group_range = None;
    let (r, _) = block_on(Db::restore(restore, Some(1))).unwrap();
    let ranges: Vec<(u16, u16)> = block_on(r.stats())
        .unwrap()
        .shards
        .iter()
        .map(|s| s.key_groups)
        .collect();
    assert_eq!(ranges, [(32, 63), (64, 95)]);
    check_all(&r, &model);
    assert_out_of_range(
        block_on(r.put(r.table("default").unwrap(), &outside[0], b"x")).unwrap_err(),
        &r,
        &outside[0],
    );
    block_on(r.close()).unwrap();
}

#[test]
fn a_range_must_fit_the_job_and_the_shards() {
    let tmp = tempfile::tempdir().unwrap();
    for (range, shards) in [
        (KeyGroupRange::new(10, 200), 2), // past max_key_groups (128)
        (KeyGroupRange::new(20, 10), 1),  // backwards
        (KeyGroupRange::new(5, 6), 3),    // fewer groups than shards
    ] {
        let mut o = options(tmp.path(), "bad");
        o.shards = shards;
        o.key_group_range = Some(range);
        let err = block_on(Db::open(o)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{range}: {err}");
        assert!(err.to_string().contains("key_group_range"), "{err}");
        assert!(
            !tmp.path().join("bad").exists(),
            "nothing created for {range}"
        );
    }
}

fn check_all(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let t = db.table("default").unwrap();
    let all = block_on(db.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = all.into_iter().collect();
    assert_eq!(&got, model);
    let keys: Vec<&[u8]> = model.keys().map(Vec::as_slice).collect();
    let vals = block_on(db.multi_get(t, &keys)).unwrap();
    for (k, v) in keys.iter().zip(vals) {
        assert_eq!(v.as_ref(), model.get(*k));
    }
}
