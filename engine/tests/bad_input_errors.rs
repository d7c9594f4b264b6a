//! Bad input gets a typed error, never a panic.

mod common;

use common::*;
use terrace::{Db, ErrorKind, Options};

#[test]
fn oversized_empty_and_unknown_inputs_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 2);
    opts.max_key_bytes = 100;
    opts.max_value_bytes = 1000;
    let db = open(opts);
    let t = db.table("default").unwrap();
    block_on(async {
        let e = db.put(t, &[b'k'; 101], b"v").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("101"), "{e}");
        let e = db.put(t, b"k", &[0; 1001]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = db.put(t, b"", b"v").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = db.get(t, b"").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = db
            .multi_get(t, &[b"ok".to_vec(), vec![]])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = db.table("nope").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("nope"));
        let e = db.get(terrace::TableId(77), b"k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        // The database still works.
        db.put(t, b"k", b"v").await.unwrap();
        assert_eq!(db.get(t, b"k").await.unwrap(), Some(b"v".to_vec()));
        db.clone().close().await.unwrap();
        let e = db.get(t, b"k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
    });
}

#[test]
fn bad_options_are_rejected_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    type Tweak = Box<dyn Fn(&mut Options)>;
    let cases: Vec<(&str, Tweak)> = vec![
        ("shards", Box::new(|o| o.shards = 0)),
        (
            "max_key_groups",
            Box::new(|o| {
                o.shards = 8;
                o.max_key_groups = 4;
            }),
        ),
        ("memtable_bytes", Box::new(|o| o.memtable_bytes = 10)),
        ("block_bytes", Box::new(|o| o.block_bytes = 1)),
        ("caller_spin_us", Box::new(|o| o.caller_spin_us = 1001)),
        ("request_spin_us", Box::new(|o| o.request_spin_us = 1001)),
        (
            "l0_stop_writes_trigger",
            Box::new(|o| o.l0_stop_writes_trigger = 2),
        ),
        (
            "tables",
            Box::new(|o| o.tables = vec!["a".into(), "a".into()]),
        ),
        (
            "compression",
            Box::new(|o| o.compression = terrace::Compression::Zstd { level: 99 }),
        ),
    ];
    for (name, tweak) in cases {
        let path = dir.path().join(name);
        let mut o = small_options(&path, 2);
        tweak(&mut o);
        let e = block_on(Db::open(o)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name}: {e}");
        assert!(e.to_string().contains(name), "{name}: {e}");
        assert!(!path.exists(), "{name}: nothing may be created");
    }
}

#[test]
fn reopening_with_a_different_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    block_on(db.close()).unwrap();
    let e = block_on(Db::open(small_options(dir.path(), 3))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("shards"), "{e}");
    let mut o = small_options(dir.path(), 2);
    o.create_if_missing = false;
    let db = open(o);
    block_on(db.close()).unwrap();
    let mut o = small_options(&dir.path().join("missing"), 2);
    o.create_if_missing = false;
    let e = block_on(Db::open(o)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

/// A creation that fails at open (here: the store's root does not exist) leaves
/// nothing behind: no `LOCK`, and no directory if the open made it, so the next
/// attempt (or a tool that wants an empty directory) finds what it had.
#[test]
fn a_failed_creation_leaves_no_lock_and_no_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let missing_store = format!("file://{}", tmp.path().join("no-such-store").display());
    for dir_existed in [false, true] {
        let dir = tmp.path().join(format!("db-{dir_existed}"));
        if dir_existed {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut o = small_options(&dir, 2);
        o.object_store = terrace::ObjectStoreSpec::Uri(missing_store.clone());
        let err = block_on(Db::open(o)).unwrap_err();
        assert!(err.to_string().contains("no-such-store"), "{err}");
        if dir_existed {
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
            assert!(left.is_empty(), "left behind: {left:?}");
        } else {
            assert!(!dir.exists(), "the failed open left {}", dir.display());
        }
    }
    // A database that exists keeps its LOCK file (it is part of the database).
    let dir = tmp.path().join("db");
    let db = open(small_options(&dir, 1));
    block_on(db.close()).unwrap();
    let mut o = small_options(&dir, 1);
    o.object_store = terrace::ObjectStoreSpec::Uri(missing_store);
    assert!(block_on(Db::open(o)).is_err());
    assert!(dir.join("TERRACE-META").exists());
}

#[test]
fn merges_without_an_operator_bad_operands_and_another_operator_are_refused() {
    use terrace::TableOptions;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 2);
    opts.tables = vec!["default".into(), "counts".into(), "lists".into()];
    opts.table_options
        .insert("counts".into(), TableOptions::counter());
    opts.table_options
        .insert("lists".into(), TableOptions::list());
    let db = open(opts.clone());
    let (plain, counts, lists) = (
        db.table("default").unwrap(),
        db.table("counts").unwrap(),
        db.table("lists").unwrap(),
    );
    block_on(async {
        let e = db.merge(plain, b"k", b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("\"default\""), "{e}");
        let e = db.merge(counts, b"k", b"1234567").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("\"counts\""), "{e}");
        // A put the operator could not merge into later is refused up front.
        let e = db.put(counts, b"bad", b"xyz").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = db.put(lists, b"bad", &[9, 0, 0, 0]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(db.get(counts, b"bad").await.unwrap(), None);
        db.merge(counts, b"k", &5u64.to_le_bytes()).await.unwrap();
        db.merge(lists, b"k", b"a").await.unwrap();
        assert_eq!(
            db.get(counts, b"k").await.unwrap(),
            Some(5u64.to_le_bytes().to_vec())
        );
        db.clone().close().await.unwrap();
    });
    drop(db);

    // Reopening with another operator, or none, names the table and both operators.
    let mut other = opts.clone();
    other
        .table_options
        .insert("counts".into(), TableOptions::list());
    let e = block_on(Db::open(other)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("\"counts\""), "{msg}");
    assert!(
        msg.contains(terrace::merge::U64_ADD) && msg.contains(terrace::merge::APPEND),
        "{msg}"
    );
    let mut none = opts.clone();
    none.table_options.remove("lists");
    let e = block_on(Db::open(none)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("\"lists\""), "{e}");
    // The right options still open it, data intact.
    let db = open(opts);
    block_on(async {
        let lists = db.table("lists").unwrap();
        let got = db.get(lists, b"k").await.unwrap().unwrap();
        assert_eq!(terrace::merge::decode_list(&got).unwrap(), vec![&b"a"[..]]);
        db.close().await.unwrap();
    });
}
