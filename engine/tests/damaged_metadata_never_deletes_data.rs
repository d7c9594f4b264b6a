//! Crash-safety rules of the local metadata: a shard directory that lost its
//! CURRENT is Corruption (its SSTs are not orphans), a trivially moved file keeps
//! its "uploaded" record across a reopen, and the manifest rolls under a small size
//! limit without losing anything.

mod common;

use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use common::*;
use terrace::{Db, ErrorKind, Options};

fn ssts(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sst"))
        .collect();
    out.sort();
    out
}

fn fill(db: &Db, n: u32, tag: &str) {
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..n {
            db.put(
                t,
                format!("k{i:07}").as_bytes(),
                format!("{tag}{i}").as_bytes(),
            )
            .await
            .unwrap();
        }
        db.flush().await.unwrap();
    });
}

fn check(db: &Db, n: u32, tag: &str) {
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..n {
            let want = format!("{tag}{i}");
            assert_eq!(
                db.get(t, format!("k{i:07}").as_bytes())
                    .await
                    .unwrap()
                    .as_deref(),
                Some(want.as_bytes()),
                "key {i}"
            );
        }
    });
}

#[test]
fn a_shard_without_current_is_corruption_and_its_files_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(small_options(&dir, 1));
    fill(&db, 3000, "v");
    block_on(db.close()).unwrap();
    let shard = dir.join("shard-0000");
    let before = ssts(&shard);
    assert!(!before.is_empty());

    std::fs::remove_file(shard.join("CURRENT")).unwrap();
    let err = block_on(Db::open(small_options(&dir, 1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("CURRENT"), "{err}");
    assert_eq!(ssts(&shard), before, "SSTs were deleted as orphans");
    // Read-only opens say the same.
    let err = block_on(Db::open_read_only(&dir)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert_eq!(ssts(&shard), before);
}

#[test]
fn a_new_database_refuses_a_shard_directory_that_holds_files_but_no_current() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let shard = dir.join("shard-0000");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::write(shard.join("0000000000000007.sst"), b"someone's data").unwrap();
    let err = block_on(Db::open(small_options(&dir, 1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(shard.join("0000000000000007.sst").exists());
    assert!(
        !dir.join("TERRACE-META").exists(),
        "a failed creation must not leave a database behind"
    );
}

/// Found by `terrace-stress crash`: a kill during the very first open, after a shard
/// wrote its first manifest and before CURRENT, left a directory no later open
/// accepted. Without `TERRACE-META` the database was never created and accepted no
/// write, so that manifest is a leftover: the next open creates the database.
#[test]
fn a_creation_killed_before_current_is_created_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    // What the interrupted creation left: a complete database's manifest, no
    // CURRENT, no TERRACE-META.
    let db = open(small_options(&dir, 1));
    block_on(db.close()).unwrap();
    let shard = dir.join("shard-0000");
    std::fs::remove_file(shard.join("CURRENT")).unwrap();
    std::fs::remove_file(dir.join("TERRACE-META")).unwrap();
    let manifests: Vec<_> = std::fs::read_dir(&shard)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        .collect();
    assert!(!manifests.is_empty());

    let db = open(small_options(&dir, 1));
    fill(&db, 500, "w");
    block_on(db.close()).unwrap();
    let db = open(small_options(&dir, 1));
    check(&db, 500, "w");
    block_on(db.close()).unwrap();
}

#[test]
fn a_trivially_moved_file_stays_uploaded_and_reopens_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = |dir: &Path| {
        let mut o = small_options(dir, 1);
        o.tables = vec!["default".into()];
        o.level1_bytes = 1 << 20;
        o.l0_compaction_trigger = 2;
        o.warm_window = Duration::ZERO;
        o
    };
    let db = open(opts(&dir));
    // Sequential keys in disjoint batches: L1 overflows into an empty L2, so its
    // files move down without rewriting.
    let t = db.table("default").unwrap();
    block_on(async {
        for round in 0..40u32 {
            for i in 0..1000u32 {
                let k = round * 1000 + i;
                db.put(t, format!("k{k:07}").as_bytes(), &[b'x'; 100])
                    .await
                    .unwrap();
            }
            db.flush().await.unwrap();
            db.wait_for_compactions().await.unwrap();
        }
        db.wait_for_uploads().await.unwrap();
    });
    let stats = block_on(db.stats()).unwrap();
    assert!(
        stats.total().trivial_moves > 0,
        "no trivial move happened: {stats}"
    );
    block_on(db.close()).unwrap();

    // Drop every local copy: the store holds them all (they were uploaded, moved
    // or not), and the manifest must still say so.
    let shard = dir.join("shard-0000");
    for f in ssts(&shard) {
        std::fs::remove_file(shard.join(f)).unwrap();
    }
    let db = block_on(Db::open(opts(&dir))).expect("reopen with every file remote");
    let t = db.table("default").unwrap();
    block_on(async {
        for k in (0..40_000u32).step_by(97) {
            assert_eq!(
                db.get(t, format!("k{k:07}").as_bytes())
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&[b'x'; 100][..])
            );
        }
    });
    block_on(db.close()).unwrap();
}

#[test]
fn a_tiny_manifest_limit_rolls_the_log_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = |dir: &Path| {
        let mut o: Options = small_options(dir, 1);
        o.manifest_roll_bytes = 4096;
        o
    };
    let db = open(opts(&dir));
    for round in 0..16 {
        fill(&db, 2000, &format!("r{round}-"));
    }
    block_on(db.wait_for_compactions()).unwrap();
    let stats = block_on(db.stats()).unwrap();
    let m = stats.shards[0].manifest;
    assert!(m.rolls > 0, "{m:?}");
    assert!(m.appends > 0 && m.dir_syncs > 0, "{m:?}");
    assert!(m.dir_syncs <= m.appends, "{m:?}");
    block_on(db.close()).unwrap();
    let manifests = std::fs::read_dir(dir.join("shard-0000"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        .count();
    assert_eq!(manifests, 1);

    let db = open(opts(&dir));
    check(&db, 2000, "r15-");
    let t = db.table("default").unwrap();
    let n = block_on(db.scan(t, Bound::Unbounded, Bound::Unbounded, 100_000))
        .unwrap()
        .len();
    assert_eq!(n, 2000);
    block_on(db.close()).unwrap();
}

#[test]
fn every_flush_syncs_the_directory_before_its_manifest_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(small_options(&dir, 1));
    for round in 0..5 {
        fill(&db, 500, &format!("r{round}-"));
    }
    let stats = block_on(db.stats()).unwrap();
    let s = &stats.shards[0];
    // Each flush and compaction output named new files; each such edit synced the
    // directory first. Upload records and moves name none.
    let new_file_edits = s.counters.flushes + s.counters.compactions;
    assert!(s.counters.flushes >= 5);
    assert_eq!(s.manifest.dir_syncs, new_file_edits, "{:?}", s.manifest);
    block_on(db.close()).unwrap();
}
