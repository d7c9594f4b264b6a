//! A database directory has one writer (the LOCK) and any number of read-only
//! inspectors: a second writer is refused and changes nothing; a read-only open
//! writes, deletes and renames nothing, needs no lock, and sees what the manifest
//! says; the writer goes on untouched.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use common::*;
use terrace::{Db, ErrorKind, Options};

/// Every file under `dir` with its size and modification time.
fn listing(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                let name = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn options(dir: &Path) -> Options {
    let mut o = small_options(dir, 2);
    o.tables = vec!["default".into()];
    o
}

#[test]
fn a_second_writer_is_refused_with_the_directory_and_pid_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(options(&dir));
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..2000 {
            db.put(t, &key(i), b"v1").await.unwrap();
        }
        db.flush().await.unwrap();
        db.wait_for_compactions().await.unwrap();
        db.wait_for_uploads().await.unwrap();
    });
    let before = listing(&dir);

    let err = block_on(Db::open(options(&dir))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert_eq!(listing(&dir), before, "the refused open changed files");

    // The writer is untouched and keeps working.
    block_on(async {
        for i in 0..2000 {
            assert_eq!(
                db.get(t, &key(i)).await.unwrap().as_deref(),
                Some(&b"v1"[..])
            );
        }
        db.put(t, b"after", b"x").await.unwrap();
        db.flush().await.unwrap();
    });
    block_on(db.close()).unwrap();

    // Closed: the next writer gets the directory.
    let db = open(options(&dir));
    let t = db.table("default").unwrap();
    assert_eq!(
        block_on(db.get(t, b"after")).unwrap().as_deref(),
        Some(&b"x"[..])
    );
    block_on(db.close()).unwrap();
}

#[test]
fn a_read_only_open_of_a_live_database_changes_nothing_and_sees_what_is_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(options(&dir));
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..3000 {
            db.put(t, &key(i), format!("v{i}").as_bytes())
                .await
                .unwrap();
        }
        db.flush().await.unwrap();
        db.wait_for_compactions().await.unwrap();
        db.wait_for_uploads().await.unwrap();
        // Written but not flushed: not durable, so not in the manifest.
        db.put(t, b"unflushed", b"x").await.unwrap();
    });
    let before = listing(&dir);

    for _ in 0..3 {
        let ro = block_on(Db::open_read_only(&dir)).unwrap();
        let rt = ro.table("default").unwrap();
        block_on(async {
            for i in (0..3000).step_by(7) {
                let want = format!("v{i}");
                assert_eq!(
                    ro.get(rt, &key(i)).await.unwrap().as_deref(),
                    Some(want.as_bytes())
                );
            }
            assert_eq!(ro.get(rt, b"unflushed").await.unwrap(), None);
            let all = ro
                .scan(
                    rt,
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    10_000,
                )
                .await
                .unwrap();
            assert_eq!(all.len(), 3000);
            let stats = ro.stats().await.unwrap();
            assert_eq!(stats.total().flushes, 0, "a read-only shard flushed");

            let err = ro.put(rt, b"k", b"v").await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            assert!(err.to_string().contains("read-only"), "{err}");
            for err in [
                ro.flush().await.unwrap_err(),
                ro.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
                    .await
                    .unwrap_err(),
            ] {
                assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
            }
        });
        block_on(ro.close()).unwrap();
        assert_eq!(listing(&dir), before, "a read-only open changed files");
    }

    // The writer never noticed: everything (and the unflushed write) reads back,
    // and it keeps flushing and compacting.
    block_on(async {
        for i in 0..3000 {
            db.put(t, &key(i), b"v2").await.unwrap();
        }
        db.flush().await.unwrap();
        db.wait_for_compactions().await.unwrap();
        assert_eq!(
            db.get(t, b"unflushed").await.unwrap().as_deref(),
            Some(&b"x"[..])
        );
        for i in 0..3000 {
            assert_eq!(
                db.get(t, &key(i)).await.unwrap().as_deref(),
                Some(&b"v2"[..])
            );
        }
    });
    block_on(db.close()).unwrap();
}

#[test]
fn a_read_only_open_of_no_database_fails_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing-here");
    let err = block_on(Db::open_read_only(&dir)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let mut o = options(&dir);
    o.read_only = true;
    let err = block_on(Db::open(o)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!dir.exists(), "a read-only open created {}", dir.display());
}
