//! Checkpoints and restores: a restored database holds exactly the writes submitted
//! before its checkpoint (memtables included, with nothing flushed), checkpoints are
//! incremental, retention keeps the newest, bad sources fail with errors naming the
//! object and write nothing, and the garbage collector deletes only what nothing
//! references.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use terrace::{Db, ErrorKind, ObjectStoreSpec, Options};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn store_uri(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("store")).unwrap();
    format!("file://{}", dir.join("store").display())
}

fn options(dir: &Path, name: &str, shards: u32) -> Options {
    let mut o = small_options(&dir.join(name), shards);
    o.tables = vec!["default".into()];
    o.object_store = ObjectStoreSpec::Uri(store_uri(dir));
    o.gc_interval = None;
    o
}

fn write_some(db: &Db, model: &mut Model, rng: &mut rand::rngs::SmallRng, n: usize) {
    let t = db.table("default").unwrap();
    block_on(async {
        for _ in 0..n {
            let k = format!("key{:05}", rng.gen_range(0..3000)).into_bytes();
            if rng.gen_bool(0.1) {
                db.delete(t, &k).await.unwrap();
                model.remove(&k);
            } else {
                let v = vec![rng.gen::<u8>(); rng.gen_range(1..300)];
                db.put(t, &k, &v).await.unwrap();
                model.insert(k, v);
            }
        }
    });
}

fn check(db: &Db, model: &Model) {
    let t = db.table("default").unwrap();
    let all = block_on(db.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
    let got: Model = all.into_iter().collect();
    assert_eq!(got.len(), model.len(), "key count differs");
    for (k, v) in model {
        assert_eq!(got.get(k), Some(v), "key {}", String::from_utf8_lossy(k));
    }
}

fn store_listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.join("store")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path());
            }
        }
    }
    out
}

#[test]
fn a_restored_database_holds_exactly_the_checkpointed_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let db = open(options(tmp.path(), "src", 2));
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 4000);
    block_on(db.flush()).unwrap();
    // More writes stay in the memtables: the checkpoint must carry them.
    write_some(&db, &mut model, &mut rng, 300);
    let flushes = block_on(db.stats()).unwrap().total().flushes;
    let first = block_on(db.checkpoint(10)).unwrap();
    assert_eq!(
        block_on(db.stats()).unwrap().total().flushes,
        flushes,
        "a checkpoint must not flush"
    );
    assert!(first.memtable_bytes > 0, "{first:?}");
    assert!(first.state_bytes > first.memtable_bytes, "{first:?}");
    // Where the time went: a snapshot was written and uploaded, objects were put,
    // and no phase outlasts the whole (the snapshot runs beside the file wait).
    let p = first.phases;
    assert!(
        p.snapshot_write > Duration::ZERO && p.snapshot_upload > Duration::ZERO,
        "{p:?}"
    );
    assert!(
        p.shard_object > Duration::ZERO && p.commit > Duration::ZERO,
        "{p:?}"
    );
    assert!(
        p.snapshot_write + p.snapshot_upload + p.shard_object + p.commit <= first.duration,
        "{first:?}"
    );
    assert!(
        p.files_awaited + p.shard_object + p.commit <= first.duration,
        "{first:?}"
    );
    let at_10 = model.clone();

    // Writes after the checkpoint are not in it.
    write_some(&db, &mut model, &mut rng, 500);
    // Those writes may flush (64 KiB memtables) and compact; once every SST is
    // uploaded, the next checkpoint uploads nothing but its memtable snapshot.
    block_on(db.wait_for_compactions()).unwrap();
    block_on(db.wait_for_uploads()).unwrap();
    let second = block_on(db.checkpoint(11)).unwrap();
    // Incremental: SSTs are shared, none is uploaded twice.
    assert_eq!(second.sst_uploaded_bytes, 0, "{second:?}");
    assert!(second.uploaded_bytes() < second.state_bytes, "{second:?}");
    let at_11 = model.clone();
    let err = block_on(db.checkpoint(11)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    write_some(&db, &mut model, &mut rng, 200);
    block_on(db.close()).unwrap();
    // Every local file of the source is gone.
    std::fs::remove_dir_all(tmp.path().join("src")).unwrap();

    let mut no_warming = options(tmp.path(), "a", 2);
    no_warming.warm_order = terrace::WarmOrder::Off;
    let (a, info) = block_on(Db::restore(no_warming, Some(10))).unwrap();
    assert_eq!(info.checkpoint, 10);
    assert!(info.files > 0 && info.metadata_bytes > 0, "{info:?}");
    check(&a, &at_10);
    let stats = block_on(a.stats()).unwrap();
    // Nothing was downloaded: files are read remotely (only files the restored
    // database wrote itself, by compaction, are local).
    assert_eq!(stats.tier().warmed_files, 0, "{stats}");
    assert!(stats.tier().remote_only_files > 0, "{stats}");
    assert!(stats.tier().remote_reads.requests > 0, "{stats}");

    let (b, info) = block_on(Db::restore(options(tmp.path(), "b", 2), None)).unwrap();
    assert_eq!(info.checkpoint, 11, "the newest checkpoint");
    check(&b, &at_11);
    // The warmer downloads every file (no budget) in the background.
    let deadline = terrace_tiering::clock::now() + Duration::from_secs(30);
    loop {
        let t = block_on(b.stats()).unwrap().tier();
        if t.warm_queue == 0 && t.remote_only_files == 0 {
            assert!(t.warmed_files > 0, "{t:?}");
            break;
        }
        assert!(
            terrace_tiering::clock::now() < deadline,
            "warming never finished: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    check(&b, &at_11);

    // The restored database is a database: it writes, checkpoints and reopens.
    let mut after = at_11.clone();
    write_some(&b, &mut after, &mut rng, 1000);
    block_on(b.flush()).unwrap();
    check(&b, &after);
    block_on(b.checkpoint(12)).unwrap();
    block_on(b.close()).unwrap();
    let b = open(options(tmp.path(), "b", 2));
    check(&b, &after);
    block_on(b.close()).unwrap();
    // Restoring the restored database's checkpoint gives its state, not the source's.
    let (c, _) = block_on(Db::restore(options(tmp.path(), "c", 2), None)).unwrap();
    check(&c, &after);
    block_on(c.close()).unwrap();
    block_on(a.close()).unwrap();
}

#[test]
fn retention_keeps_the_newest_and_released_checkpoints_cannot_be_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let mut opts = options(tmp.path(), "src", 1);
    opts.retained_checkpoints = 2;
    let db = open(opts);
    let mut model = Model::new();
    for id in 1..=4u64 {
        write_some(&db, &mut model, &mut rng, 300);
        let info = block_on(db.checkpoint(id)).unwrap();
        if id > 2 {
            assert_eq!(info.released, vec![id - 2]);
            assert!(info.phases.release > Duration::ZERO, "{info:?}");
        } else {
            assert!(info.released.is_empty(), "{info:?}");
        }
    }
    let ids: Vec<u64> = block_on(db.checkpoints())
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![3, 4]);
    block_on(db.release_checkpoint(3)).unwrap();
    let err = block_on(Db::restore(options(tmp.path(), "r", 1), Some(3))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("checkpoint 3"), "{err}");
    assert!(!tmp.path().join("r").join("TERRACE-META").exists());
    block_on(db.close()).unwrap();
}

#[test]
fn damaged_or_missing_sources_fail_naming_the_object_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    let db = open(options(tmp.path(), "src", 1));
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 2000);
    block_on(db.flush()).unwrap();
    write_some(&db, &mut model, &mut rng, 100);
    block_on(db.checkpoint(1)).unwrap();
    let live = block_on(db.live_files()).unwrap();
    block_on(db.close()).unwrap();
    let before = store_listing(tmp.path());

    // No such checkpoint.
    let err = block_on(Db::restore(options(tmp.path(), "x", 1), Some(99))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(store_listing(tmp.path()), before);

    // A flipped byte in the commit object.
    let commit = before
        .iter()
        .find(|p| p.ends_with("CHECKPOINT"))
        .unwrap()
        .clone();
    let good = std::fs::read(&commit).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0x01;
    std::fs::write(&commit, &bad).unwrap();
    let err = block_on(Db::restore(options(tmp.path(), "y", 1), None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.to_string().contains("CHECKPOINT"), "{err}");
    std::fs::write(&commit, &good).unwrap();

    // A flipped byte in a shard object (read together with the commit object, then
    // checked against the size and CRC it records).
    let shard = before
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".ckpt"))
        .unwrap()
        .clone();
    let good = std::fs::read(&shard).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&shard, &bad).unwrap();
    let err = block_on(Db::restore(options(tmp.path(), "y2", 1), None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    let name = shard.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{err} should name {name}");
    assert!(!tmp.path().join("y2").exists());
    std::fs::write(&shard, &good).unwrap();

    // An SST the checkpoint names is gone.
    let sst = tmp.path().join("store").join(&live[0].object_key);
    let bytes = std::fs::read(&sst).unwrap();
    std::fs::remove_file(&sst).unwrap();
    // The existence check runs while the database opens (whose open of that file
    // fails too); the check's error, which names the object and the checkpoint,
    // is the one returned, and the restore's directory is removed again: a missing
    // one stays missing, an empty one stays empty.
    let err = block_on(Db::restore(options(tmp.path(), "z", 1), None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    let name = sst.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{err} should name {name}");
    assert!(
        err.to_string().contains("checkpoint 1 names this object"),
        "{err}"
    );
    assert!(
        !tmp.path().join("z").exists(),
        "a failed restore left its directory behind"
    );
    std::fs::create_dir_all(tmp.path().join("z2")).unwrap();
    let err = block_on(Db::restore(options(tmp.path(), "z2", 1), None)).unwrap_err();
    assert!(err.to_string().contains(&name), "{err} should name {name}");
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("z2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a failed restore left {left:?}");
    std::fs::write(&sst, &bytes).unwrap();
    assert_eq!(
        store_listing(tmp.path()),
        before,
        "a failed restore wrote to the store"
    );

    // A target that is not empty is refused.
    std::fs::create_dir_all(tmp.path().join("w")).unwrap();
    std::fs::write(tmp.path().join("w").join("stray"), b"x").unwrap();
    let err = block_on(Db::restore(options(tmp.path(), "w", 1), None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    let (ok, _) = block_on(Db::restore(options(tmp.path(), "ok", 1), None)).unwrap();
    check(&ok, &model);
    block_on(ok.close()).unwrap();
}

#[test]
fn garbage_collection_deletes_only_what_nothing_references() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(13);
    let mut opts = options(tmp.path(), "src", 2);
    opts.gc_min_age = Duration::ZERO;
    opts.retained_checkpoints = 1;
    let db = open(opts.clone());
    let mut model = Model::new();
    for round in 0..6u64 {
        write_some(&db, &mut model, &mut rng, 1500);
        block_on(db.flush()).unwrap();
        block_on(db.wait_for_compactions()).unwrap();
        if round == 2 {
            block_on(db.checkpoint(1)).unwrap();
        }
    }
    let at_end = model.clone();
    block_on(db.checkpoint(2)).unwrap(); // releases 1
    let dry = block_on(db.gc_dry_run()).unwrap();
    let before = store_listing(tmp.path());
    let report = block_on(db.gc()).unwrap();
    assert_eq!(
        report.deleted, dry.deleted,
        "a dry run reports what a run does"
    );
    assert!(
        report.deleted > 0,
        "compactions and the released checkpoint left garbage: {report:?}"
    );
    let after = store_listing(tmp.path());
    assert!(
        after.len() <= before.len() - report.deleted as usize,
        "{} objects before, {} deleted, {} after",
        before.len(),
        report.deleted,
        after.len()
    );
    // Idempotent: nothing more to delete.
    assert_eq!(block_on(db.gc()).unwrap().deleted, 0);
    // The live database and the retained checkpoint still have every object.
    check(&db, &at_end);
    block_on(db.close()).unwrap();
    let mut reopen = opts.clone();
    reopen.local_disk_budget_bytes = Some(1);
    for shard in 0..2 {
        let dir = tmp.path().join("src").join(format!("shard-{shard:04}"));
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "sst") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    let db = open(reopen);
    check(&db, &at_end);
    block_on(db.close()).unwrap();
    let (r, _) = block_on(Db::restore(options(tmp.path(), "r", 2), Some(2))).unwrap();
    check(&r, &at_end);
    block_on(r.close()).unwrap();
}

/// The SST objects in the store, as keys relative to it (`sst/<lineage>/<n>.sst`).
fn sst_keys(dir: &Path) -> BTreeSet<String> {
    let root = dir.join("store");
    store_listing(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// What the collector must keep, computed independently of it: the objects the live
/// database reads and those every retained checkpoint names.
fn referenced(db: &Db, store: &str, ids: &[u64]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = block_on(db.live_files())
        .unwrap()
        .into_iter()
        .map(|f| f.object_key)
        .collect();
    for &id in ids {
        let base = small_options(&std::env::temp_dir().join("unused"), 2);
        let r = block_on(terrace::CheckpointReader::open(
            ObjectStoreSpec::Uri(store.to_string()),
            Some(id),
            base,
        ))
        .unwrap();
        out.extend(
            block_on(r.live_files())
                .unwrap()
                .into_iter()
                .map(|f| f.object_key),
        );
        block_on(r.close()).unwrap();
    }
    out
}

#[test]
fn garbage_collection_keeps_exactly_the_referenced_objects_and_collects_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(17);
    let mut opts = options(tmp.path(), "src", 2);
    opts.gc_min_age = Duration::ZERO;
    opts.retained_checkpoints = 2;
    let store = store_uri(tmp.path());
    let db = open(opts);
    let mut model = Model::new();
    let mut retained = Vec::new();
    for id in 1..=5u64 {
        write_some(&db, &mut model, &mut rng, 1200);
        block_on(db.flush()).unwrap();
        if id % 2 == 0 {
            block_on(db.wait_for_compactions()).unwrap();
        }
        block_on(db.checkpoint(id)).unwrap();
        retained.push(id);
        retained.retain(|&r| r + 2 > id);
    }
    block_on(db.wait_for_uploads()).unwrap();

    // Orphans: an upload the manifest never recorded (a crash between the two), and
    // a checkpoint that never committed (its shard object without `CHECKPOINT`).
    let keys = sst_keys(tmp.path());
    let lineage_dir = keys
        .iter()
        .next()
        .unwrap()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let orphan = format!("{lineage_dir}/00000000fffffff0.sst");
    std::fs::write(tmp.path().join("store").join(&orphan), b"never recorded").unwrap();
    let ckpt_dir = store_listing(tmp.path())
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "CHECKPOINT"))
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let db_lineage = ckpt_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .rsplit_once('-')
        .unwrap()
        .1
        .to_string();
    let abandoned = tmp
        .path()
        .join("store/checkpoints")
        .join(format!("{:020}-{db_lineage}", 99));
    std::fs::create_dir_all(&abandoned).unwrap();
    std::fs::write(abandoned.join("shard-0000.ckpt"), b"half a checkpoint").unwrap();

    let want = referenced(&db, &store, &retained);
    assert!(sst_keys(tmp.path()).contains(&orphan));
    let report = block_on(db.gc()).unwrap();
    assert_eq!(
        sst_keys(tmp.path()),
        want,
        "the store must hold exactly what is referenced: {report:?}"
    );
    assert!(report.abandoned_checkpoint_objects >= 1, "{report:?}");
    assert!(!abandoned.join("shard-0000.ckpt").exists());
    // Idempotent, and everything still reads.
    assert_eq!(block_on(db.gc()).unwrap().deleted, 0);
    check(&db, &model);
    block_on(db.close()).unwrap();
    let (r, _) = block_on(Db::restore(options(tmp.path(), "r", 2), None)).unwrap();
    check(&r, &model);
    block_on(r.close()).unwrap();
}

#[test]
fn a_checkpoint_names_merge_inputs_instead_of_waiting_for_outputs_to_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(29);
    let mut opts = options(tmp.path(), "src", 2);
    // Every request waits 300 ms: an upload (put, head, ranged get) takes ~1 s.
    opts.object_store_faults = Some(terrace_tiering::store::fault::FaultConfig {
        latency: terrace_tiering::store::fault::Latency::Fixed(Duration::from_millis(300)),
        ..Default::default()
    });
    // One background upload at a time: the merge outputs take many seconds.
    opts.uploader.max_parallel_uploads = 1;
    opts.gc_min_age = Duration::ZERO;
    let db = open(opts);
    let mut model = Model::new();
    for _ in 0..3 {
        write_some(&db, &mut model, &mut rng, 1500);
        block_on(db.flush()).unwrap();
    }
    block_on(db.wait_for_uploads()).unwrap();
    // Merge everything: the outputs are queued for upload when this returns.
    block_on(db.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap();
    let stats = block_on(db.stats()).unwrap();
    assert!(stats.total().compactions > 0, "{stats}");
    assert!(stats.tier().pending_uploads > 0, "{stats}");
    write_some(&db, &mut model, &mut rng, 200);
    let at_1 = model.clone();
    // A collection now must keep the merge's inputs, though no version reads them:
    // the next checkpoint names them.
    block_on(db.gc()).unwrap();

    let info = block_on(db.checkpoint(1)).unwrap();
    assert!(info.merges_bypassed > 0, "{info:?}");
    assert_eq!(info.sst_uploaded_bytes, 0, "waited for no SST: {info:?}");
    // The collector keeps what the checkpoint names although the live version no
    // longer reads it.
    block_on(db.gc()).unwrap();
    // Writes go on; the outputs upload; a later checkpoint names them.
    write_some(&db, &mut model, &mut rng, 500);
    block_on(db.wait_for_uploads()).unwrap();
    let second = block_on(db.checkpoint(2)).unwrap();
    assert_eq!(second.merges_bypassed, 0, "{second:?}");
    block_on(db.gc()).unwrap();
    let at_2 = model.clone();
    block_on(db.close()).unwrap();
    std::fs::remove_dir_all(tmp.path().join("src")).unwrap();

    for (id, want, name) in [(1, &at_1, "r1"), (2, &at_2, "r2")] {
        let (r, info) = block_on(Db::restore(options(tmp.path(), name, 2), Some(id))).unwrap();
        assert_eq!(info.checkpoint, id);
        check(&r, want);
        // The restored levels are valid LSM levels: compaction runs over them.
        block_on(r.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap();
        check(&r, want);
        block_on(r.close()).unwrap();
    }
}

#[test]
fn a_checkpoint_names_the_l0_file_of_a_flush_already_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(31);
    let mut opts = options(tmp.path(), "src", 1);
    // 2 MiB memtables: a flush takes a few ms, so a checkpoint right after a freeze
    // usually finds it writing.
    opts.memtable_bytes = 1 << 20;
    opts.target_file_bytes = 2 << 20;
    let db = open(opts);
    let t = db.table("default").unwrap();
    let mut model = Model::new();
    let mut models = Vec::new();
    let mut next = 0u64;
    for id in 1..=6u64 {
        // Write until the active memtable freezes, then checkpoint at once: its
        // flush has usually begun writing.
        block_on(async {
            loop {
                for _ in 0..64 {
                    let k = format!("key{:07}", rng.gen_range(0..200_000)).into_bytes();
                    let v = vec![(next % 251) as u8; 200];
                    next += 1;
                    db.put(t, &k, &v).await.unwrap();
                    model.insert(k, v);
                }
                if db.stats().await.unwrap().shards[0].immutable_memtables > 0 {
                    break;
                }
            }
        });
        block_on(db.checkpoint(id)).unwrap();
        models.push(model.clone());
    }
    let awaited = block_on(db.stats())
        .unwrap()
        .total()
        .checkpoint_flushes_awaited;
    block_on(db.close()).unwrap();
    std::fs::remove_dir_all(tmp.path().join("src")).unwrap();
    // Each of the newest (retained) restores exactly its state.
    for id in 5..=6u64 {
        let name = format!("r{id}");
        let (r, _) = block_on(Db::restore(options(tmp.path(), &name, 1), Some(id))).unwrap();
        check(&r, &models[id as usize - 1]);
        block_on(r.close()).unwrap();
    }
    assert!(awaited > 0, "no checkpoint found a flush writing");
}

/// Copies a database directory as a crash would leave it (the copy's LOCK is a new
/// inode, so nothing holds it).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_reopen_after_a_crash_never_reuses_the_file_number_of_a_checkpoints_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), "src", 1);
    opts.memtable_bytes = 64 << 20; // nothing flushes: the state is in the memtable
    let db = open(opts.clone());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(99);
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 400);
    let info = block_on(db.checkpoint(1)).unwrap();
    assert!(info.memtable_bytes > 0, "{info:?}");
    // The directory as a kill right after the checkpoint would leave it.
    copy_dir(&tmp.path().join("src"), &tmp.path().join("crashed"));
    block_on(db.close()).unwrap();

    // The same database reopened from that state (same lineage, same store)
    // writes and flushes new files; none may take the snapshot's number.
    let mut reopened = opts.clone();
    reopened.path = tmp.path().join("crashed");
    let db = open(reopened);
    let mut later = model.clone();
    write_some(&db, &mut later, &mut rng, 400);
    block_on(db.flush()).unwrap();
    block_on(db.wait_for_uploads()).unwrap();
    block_on(db.close()).unwrap();

    let (restored, _) = block_on(Db::restore(options(tmp.path(), "restored", 1), Some(1)))
        .expect("checkpoint 1 still restores");
    check(&restored, &model);
    block_on(restored.close()).unwrap();
}

/// A compaction that starts while a checkpoint writes its snapshot waits for the
/// checkpoint (bounded by `Options::checkpoint_compaction_pause`), then finishes; with
/// the pause at zero it never waits. Either way the checkpoint restores exactly and
/// the compacted database reads the same.
#[test]
fn compactions_pause_while_a_checkpoint_writes_and_resume_after() {
    use std::sync::Arc;
    use terrace_tiering::store::fault::{FaultConfig, FaultyStore, Latency};
    use terrace_tiering::store::local_dir::LocalDirStore;
    for pause in [
        Duration::from_secs(10),
        Duration::ZERO,
        Duration::from_millis(100),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        std::fs::create_dir_all(&root).unwrap();
        // During the checkpoint every request takes 300 ms: its part on the shard
        // (the snapshot's upload: put, then the read-back) lasts ~0.6 s, well past the
        // compaction's start.
        let faulty = Arc::new(FaultyStore::new(
            Arc::new(LocalDirStore::open(&root, false).unwrap()),
            FaultConfig {
                latency: Latency::Fixed(Duration::from_millis(300)),
                ..FaultConfig::default()
            },
        ));
        faulty.set_enabled(false);
        let store: Arc<dyn terrace_tiering::store::ObjectStore> = faulty.clone();
        let with = |name: &str| {
            let mut o = options(tmp.path(), name, 1);
            o.object_store = ObjectStoreSpec::Custom(store.clone());
            o.checkpoint_compaction_pause = pause;
            o
        };
        let db = open(with("src"));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(37);
        let mut model = Model::new();
        write_some(&db, &mut model, &mut rng, 3000);
        block_on(db.flush()).unwrap();
        block_on(db.wait_for_compactions()).unwrap();
        block_on(db.wait_for_uploads()).unwrap();
        // A first checkpoint, so the second reaches the shards at once (the first
        // lists the store's checkpoints before its barrier).
        block_on(db.checkpoint(1)).unwrap();
        write_some(&db, &mut model, &mut rng, 1500);
        let at_checkpoint = model.clone();
        faulty.set_enabled(true);
        let compaction = {
            let db = db.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                block_on(db.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap();
            })
        };
        let info = block_on(db.checkpoint(2)).unwrap();
        compaction.join().unwrap();
        faulty.set_enabled(false);
        assert!(
            info.memtable_bytes > 0,
            "the barrier came after the compaction's flush"
        );
        let paused = block_on(db.stats())
            .unwrap()
            .total()
            .compaction_checkpoint_pause_micros;
        if pause.is_zero() {
            assert_eq!(paused, 0, "with no pause allowed, compactions never wait");
        } else if pause > Duration::from_secs(1) {
            assert!(paused > 0, "the compaction did not wait for the checkpoint");
            assert!(
                paused < pause.as_micros() as u64,
                "it waited {paused} µs: the whole bound, not the checkpoint"
            );
        } else {
            // The bound holds per checkpoint, not per wait: the compaction resumes
            // 100 ms after the checkpoint began although the checkpoint runs on.
            assert!(paused > 0, "the compaction did not wait for the checkpoint");
            assert!(
                paused < 400_000,
                "it waited {paused} µs for a checkpoint allowed to hold it 100 ms"
            );
        }
        check(&db, &model);
        block_on(db.close()).unwrap();
        let (r, _) = block_on(Db::restore(with("r"), Some(2))).unwrap();
        check(&r, &at_checkpoint);
        block_on(r.close()).unwrap();
    }
}

/// Opens a database with `opts`, writes (some flushed, some only in memtables),
/// takes checkpoint 1 and closes it; returns what the checkpoint holds.
fn checkpointed_source(opts: Options, seed: u64) -> Model {
    let db = open(opts);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 2000);
    block_on(db.flush()).unwrap();
    write_some(&db, &mut model, &mut rng, 500);
    block_on(db.checkpoint(1)).unwrap();
    block_on(db.close()).unwrap();
    model
}

/// A restore reads each metadata object (the checkpoint's, each shard's) whole in
/// one request: no `head` for its size first, which would add a round trip to the
/// store per object before the database can serve.
#[test]
fn a_restore_reads_each_metadata_object_in_one_request() {
    use std::sync::Arc;
    use terrace_tiering::store::instrument::{InstrumentedStore, StoreOp};
    use terrace_tiering::store::local_dir::LocalDirStore;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let store = Arc::new(InstrumentedStore::new(Arc::new(
        LocalDirStore::open(&root, false).unwrap(),
    )));
    let with = |name: &str| {
        let mut o = options(tmp.path(), name, 2);
        o.object_store = ObjectStoreSpec::Custom(store.clone());
        o
    };
    let model = checkpointed_source(with("src"), 43);

    store.reset();
    let (r, info) = block_on(Db::restore(with("r"), Some(1))).unwrap();
    check(&r, &model);
    block_on(r.close()).unwrap();
    let stats = store.stats();
    assert_eq!(
        stats.op(StoreOp::Head).count,
        0,
        "{:#?}",
        stats.summary_lines()
    );
    // The checkpoint object, then one object per shard, each read once.
    let metadata_reads = stats.op(StoreOp::Get).count;
    assert!(metadata_reads >= 3, "{:#?}", stats.summary_lines());
    assert!(info.metadata_bytes > 0);
}

/// Before it serves, a restore waits for two round trips to the store, one after
/// another: the listing that finds the checkpoint together with `checkpoints/LATEST`
/// (the copies of its `CHECKPOINT` and shard objects); the files' tails (footer,
/// index, filter) together with the listings that check every named object exists.
/// Each request here takes 30 ms, so requests sent together overlap and count once.
/// (Without the copy, reading `CHECKPOINT` and the shard objects adds one; checking
/// existence before opening would add another.)
#[test]
fn a_restore_waits_for_two_round_trips_before_it_serves() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    // The source writes to the directory directly; restores read it slowly.
    let (local, store) = slow_store(&root);
    let with = |name: &str, store: Arc<dyn terrace_tiering::store::ObjectStore>| {
        let mut o = options(tmp.path(), name, 2);
        o.object_store = ObjectStoreSpec::Custom(store);
        o
    };
    let src = with("src", local.clone());
    let model = checkpointed_source(src, 47);

    let mut opts = with("r", store.clone());
    // No background downloads to blur the count.
    opts.warm_order = terrace::WarmOrder::Off;
    let (r, info) = block_on(Db::restore(opts, None)).unwrap();
    let stats = store.stats();
    assert!(info.files >= 2, "{info:?}");
    assert_eq!(
        stats.round_trips_in_a_row,
        2,
        "{:#?}",
        stats.summary_lines()
    );
    // What it read: the checkpoint's objects, and of each file exactly the tail its
    // description records (filter, index, properties, footer) — flushed files and
    // memtable snapshots alike, no guessed extra and no second read.
    let files = block_on(r.live_files()).unwrap();
    assert_eq!(files.len(), info.files);
    assert!(
        files
            .iter()
            .all(|f| f.metadata_bytes > 0 && f.metadata_bytes < f.size_bytes),
        "{files:#?}"
    );
    let tails: u64 = files.iter().map(|f| f.metadata_bytes).sum();
    assert_eq!(
        stats
            .op(terrace_tiering::store::instrument::StoreOp::Get)
            .bytes,
        info.metadata_bytes + tails,
        "{:#?}",
        stats.summary_lines()
    );
    block_on(r.close()).unwrap();
    // What it serves is the checkpoint (read back without the delay: every block
    // of a scan would be a 30 ms request).
    let r = open(with("r", local));
    check(&r, &model);
    block_on(r.close()).unwrap();
}

/// `checkpoints/LATEST` is a hint, never the truth: a restore uses it only when the
/// listing shows the checkpoint it copies committed and newest, with every object
/// it copies. A stale, damaged or missing copy, or one of a released checkpoint,
/// costs the round trip it saves (the checkpoint's own objects are read) and never
/// changes what is restored.
#[test]
fn a_stale_damaged_or_missing_latest_copy_falls_back_to_the_checkpoints_objects() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    // The source writes to the directory directly; restores read it slowly.
    let (local, store) = slow_store(&root);
    let with = |name: &str, store: Arc<dyn terrace_tiering::store::ObjectStore>| {
        let mut o = options(tmp.path(), name, 2);
        o.object_store = ObjectStoreSpec::Custom(store);
        o.warm_order = terrace::WarmOrder::Off;
        o
    };
    let latest = root.join("checkpoints").join("LATEST");
    let db = open(with("src", local.clone()));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(48);
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 800);
    block_on(db.checkpoint(1)).unwrap();
    let at_1 = model.clone();
    let copy_of_1 = std::fs::read(&latest).unwrap();
    write_some(&db, &mut model, &mut rng, 400);
    block_on(db.checkpoint(2)).unwrap();
    let at_2 = model;
    let copy_of_2 = std::fs::read(&latest).unwrap();
    assert_ne!(copy_of_1, copy_of_2);
    block_on(db.close()).unwrap();

    let mut n = 0;
    let mut restore_and_check = |want: &Model, round_trips: u64, case: &str| {
        n += 1;
        let name = format!("r{n}");
        store.reset();
        let (r, _) = block_on(Db::restore(with(&name, store.clone()), None))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            store.stats().round_trips_in_a_row,
            round_trips,
            "{case}: {:#?}",
            store.stats().summary_lines()
        );
        block_on(r.close()).unwrap();
        let r = open(with(&name, local.clone()));
        check(&r, want);
        block_on(r.close()).unwrap();
    };
    restore_and_check(&at_2, 2, "the copy of the newest checkpoint");
    std::fs::write(&latest, &copy_of_1).unwrap();
    restore_and_check(&at_2, 3, "a copy of an older checkpoint");
    let mut damaged = copy_of_2.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x20;
    std::fs::write(&latest, &damaged).unwrap();
    restore_and_check(&at_2, 3, "a damaged copy");
    std::fs::remove_file(&latest).unwrap();
    restore_and_check(&at_2, 3, "no copy");
    // The copy names checkpoint 2, whose commit object is gone (a release deletes it
    // first): checkpoint 1 is the newest.
    std::fs::write(&latest, &copy_of_2).unwrap();
    let dir = std::fs::read_dir(root.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("00000000000000000002-"))
        })
        .unwrap();
    std::fs::remove_file(dir.join("CHECKPOINT")).unwrap();
    restore_and_check(&at_1, 3, "a copy of a released checkpoint");
}

/// The first checkpoint after an open needs the store's list of checkpoints (to
/// refuse an id not above the last); the open starts that listing, so the
/// checkpoint does not wait a round trip for it — and still refuses a reused id.
#[test]
fn the_first_checkpoint_after_an_open_uses_the_listing_the_open_started() {
    use std::sync::Arc;
    use terrace_tiering::store::instrument::{InstrumentedStore, StoreOp};
    use terrace_tiering::store::local_dir::LocalDirStore;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let store = Arc::new(InstrumentedStore::new(Arc::new(
        LocalDirStore::open(&root, false).unwrap(),
    )));
    let with = |name: &str| {
        let mut o = options(tmp.path(), name, 2);
        o.object_store = ObjectStoreSpec::Custom(store.clone());
        o
    };
    let db = open(with("src"));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(49);
    let mut model = Model::new();
    write_some(&db, &mut model, &mut rng, 300);
    // The open's listing has long ended (a local directory).
    std::thread::sleep(Duration::from_millis(200));
    store.reset();
    block_on(db.checkpoint(5)).unwrap();
    assert_eq!(
        store.stats().op(StoreOp::List).count,
        0,
        "{:#?}",
        store.stats().summary_lines()
    );
    block_on(db.close()).unwrap();
    // After a reopen, the listing from the open knows checkpoint 5.
    let db = open(with("src"));
    let err = block_on(db.checkpoint(5)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    block_on(db.checkpoint(6)).unwrap();
    block_on(db.close()).unwrap();
}

/// A local directory store, and a view of it where every request waits 30 ms and is
/// counted.
fn slow_store(
    root: &Path,
) -> (
    std::sync::Arc<terrace_tiering::store::local_dir::LocalDirStore>,
    std::sync::Arc<terrace_tiering::store::instrument::InstrumentedStore>,
) {
    use std::sync::Arc;
    use terrace_tiering::store::fault::{FaultConfig, FaultyStore, Latency};
    std::fs::create_dir_all(root).unwrap();
    let local =
        Arc::new(terrace_tiering::store::local_dir::LocalDirStore::open(root, false).unwrap());
    let slow = FaultyStore::new(
        local.clone(),
        FaultConfig {
            latency: Latency::Fixed(Duration::from_millis(30)),
            ..FaultConfig::default()
        },
    );
    let store = Arc::new(terrace_tiering::store::instrument::InstrumentedStore::new(
        Arc::new(slow),
    ));
    (local, store)
}
