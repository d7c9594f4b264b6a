//! Rescaling by metadata: N databases' checkpoints restored into M databases with
//! other key-group ranges and shard counts (`Db::restore_from`), checked against a
//! BTreeMap model; then more writes, background trims (clipped references go to
//! zero, reads stay equal to the model), another checkpoint and another rescale;
//! garbage collection of the whole job deletes nothing still referenced (every key
//! reads back from the store alone afterwards). Bad input fails with typed errors
//! and writes nothing to the store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use terrace::{Db, ErrorKind, KeyGroupRange, ObjectStoreSpec, Options, RestoreSource};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const MAX_KEY_GROUPS: u16 = 64;

fn job(tmp: &Path) -> PathBuf {
    tmp.join("job")
}

fn prefix_uri(tmp: &Path, name: &str) -> String {
    let p = job(tmp).join(name);
    std::fs::create_dir_all(&p).unwrap();
    format!("file://{}", p.display())
}

/// The `i`-th of `n` equal parts of the job's key groups.
fn part(i: usize, n: usize) -> KeyGroupRange {
    let len = usize::from(MAX_KEY_GROUPS);
    let first = i * len / n;
    let last = (i + 1) * len / n - 1;
    KeyGroupRange::new(first as u16, last as u16)
}

fn options(tmp: &Path, name: &str, shards: u32, range: KeyGroupRange) -> Options {
    let mut o = small_options(&tmp.join("local").join(name), shards);
    o.tables = vec!["default".into()];
    o.max_key_groups = MAX_KEY_GROUPS;
    o.key_group_range = Some(range);
    o.object_store = ObjectStoreSpec::Uri(prefix_uri(tmp, name));
    o.gc_interval = None;
    o.gc_min_age = Duration::ZERO;
    o
}

/// One database of the job with the part of the model it owns.
struct Member {
    name: String,
    db: Db,
    range: KeyGroupRange,
}

fn owner<'a>(members: &'a [Member], key: &[u8]) -> Option<&'a Member> {
    let kg = members[0].db.key_group(key);
    members.iter().find(|m| m.range.contains(kg))
}

/// Random puts and deletes over keys of every member, flushing and compacting now
/// and then so files sit in several levels and in memtables.
fn write_some(members: &[Member], model: &mut Model, rng: &mut rand::rngs::SmallRng, n: usize) {
    block_on(async {
        for i in 0..n {
            let k = format!("key{:05}", rng.gen_range(0..4000)).into_bytes();
            let Some(m) = owner(members, &k) else {
                continue;
            };
            let t = m.db.table("default").unwrap();
            if rng.gen_bool(0.1) {
                m.db.delete(t, &k).await.unwrap();
                model.remove(&k);
            } else {
                let v = vec![rng.gen::<u8>(); rng.gen_range(1..200)];
                m.db.put(t, &k, &v).await.unwrap();
                model.insert(k, v);
            }
            if i == n / 2 {
                for m in members {
                    m.db.flush().await.unwrap();
                }
            }
        }
    });
}

/// Scans and point reads of every member equal the model restricted to its range.
fn check(members: &[Member], model: &Model) {
    for m in members {
        let t = m.db.table("default").unwrap();
        let mine: Model = model
            .iter()
            .filter(|(k, _)| m.range.contains(m.db.key_group(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let all = block_on(m.db.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
        let got: Model = all.into_iter().collect();
        assert_eq!(got.len(), mine.len(), "{}: key count differs", m.name);
        assert!(got == mine, "{}: scan differs from the model", m.name);
        block_on(async {
            for i in (0..4000).step_by(7) {
                let k = format!("key{i:05}").into_bytes();
                if !m.range.contains(m.db.key_group(&k)) {
                    continue;
                }
                let v = m.db.get(t, &k).await.unwrap();
                assert_eq!(v.as_ref(), mine.get(&k), "{}: get {i}", m.name);
            }
        });
    }
}

fn clipped(db: &Db) -> usize {
    block_on(db.stats()).unwrap().clipped_files()
}

/// Waits until background compaction has trimmed every clipped reference.
fn wait_for_trims(members: &[Member]) {
    // At most 120 s in 20 ms naps.
    let mut naps = 6000;
    for m in members {
        while clipped(&m.db) > 0 {
            assert!(
                naps > 0,
                "{}: {} clipped references after 120 s",
                m.name,
                clipped(&m.db)
            );
            naps -= 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What the rescales of one round trip did.
#[derive(Default)]
struct Tally {
    /// Objects the closing databases' collectors deleted.
    deleted: u64,
    /// Clipped references the restores created.
    clipped: usize,
}

/// Rescales `from` (checkpointed as `checkpoint`) into `n` databases named
/// `<prefix>0..` with `shards` shards each; collects each of `from`'s garbage
/// (adding the objects deleted to `deleted`) and closes it.
fn rescale(
    tmp: &Path,
    from: Vec<Member>,
    checkpoint: u64,
    prefix: &str,
    n: usize,
    shards: u32,
    tally: &mut Tally,
) -> Vec<Member> {
    let sources: Vec<RestoreSource> = from
        .iter()
        .map(|m| RestoreSource {
            uri: prefix_uri(tmp, &m.name),
            checkpoint: Some(checkpoint),
        })
        .collect();
    let source_names: Vec<String> = from.iter().map(|m| m.name.clone()).collect();
    for m in from {
        // The database's own collector: its unread objects go at once
        // (gc_min_age 0); every job prefix's checkpoints protect what they name.
        tally.deleted += block_on(m.db.gc()).unwrap().deleted;
        block_on(m.db.close()).unwrap();
    }
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let range = part(i, n);
            let (db, info) = block_on(Db::restore_from(
                options(tmp, &name, shards, range),
                &sources,
            ))
            .unwrap_or_else(|e| panic!("restore {name}: {e}"));
            assert_eq!(info.sources.len(), sources.len());
            assert!(info.files > 0, "{name} references no file");
            tally.clipped += info.clipped_files;
            let stats = block_on(db.stats()).unwrap();
            assert_eq!(stats.shards.len(), shards as usize);
            // Trims start at once: some may be done already.
            assert!(stats.clipped_files() <= info.clipped_files);
            // Live files name the prefix holding their object: a source's (or,
            // once compaction rewrote them, the database's own).
            let files = block_on(db.live_files()).unwrap();
            let names: Vec<&str> = source_names.iter().map(String::as_str).collect();
            assert!(
                files
                    .iter()
                    .all(|f| f.home.is_empty() || names.contains(&f.home.as_str())),
                "{name}: homes {:?}, sources {names:?}",
                files.iter().map(|f| &f.home).collect::<Vec<_>>()
            );
            assert!(
                files.iter().any(|f| !f.home.is_empty()),
                "{name}: no file under a source's prefix"
            );
            Member { name, db, range }
        })
        .collect()
}

fn checkpoint_all(members: &[Member], id: u64) {
    for m in members {
        block_on(m.db.checkpoint(id)).unwrap();
    }
}

fn sst_objects(tmp: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![job(tmp)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "sst") {
                out.insert(p);
            }
        }
    }
    out
}

/// `n_src` databases of `src_shards` shards → `n_dst` databases of `dst_shards`
/// shards, then writes, trims, a checkpoint, a rescale into one database, a job
/// garbage collection and a restore from the store alone.
fn round_trip(seed: u64, n_src: usize, src_shards: u32, n_dst: usize, dst_shards: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut model = Model::new();
    let sources: Vec<Member> = (0..n_src)
        .map(|i| {
            let name = format!("src{i}");
            let range = part(i, n_src);
            Member {
                db: open(options(tmp, &name, src_shards, range)),
                name,
                range,
            }
        })
        .collect();
    write_some(&sources, &mut model, &mut rng, 6000);
    // Some data deeper in the tree, some only in memtables.
    for m in &sources {
        block_on(m.db.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap();
    }
    write_some(&sources, &mut model, &mut rng, 1500);
    check(&sources, &model);
    checkpoint_all(&sources, 1);

    let mut tally = Tally::default();
    let targets = rescale(tmp, sources, 1, "dst", n_dst, dst_shards, &mut tally);
    assert!(
        tally.clipped > 0,
        "the new ranges cut no file: nothing to trim was tested"
    );
    check(&targets, &model);

    // Writes after the rescale, then the trims: nothing clipped, reads unchanged.
    write_some(&targets, &mut model, &mut rng, 3000);
    wait_for_trims(&targets);
    check(&targets, &model);
    checkpoint_all(&targets, 1);

    // Another rescale, of the rescaled databases, into one.
    let last = rescale(tmp, targets, 1, "final", 1, 2, &mut tally);
    assert!(
        tally.deleted > 0,
        "compactions left garbage that the databases' collectors must find"
    );
    check(&last, &model);
    // Reopened, it finds its files under the other prefixes again.
    let last: Vec<Member> = last
        .into_iter()
        .map(|m| {
            block_on(m.db.close()).unwrap();
            let o = options(tmp, &m.name, 2, m.range);
            Member { db: open(o), ..m }
        })
        .collect();
    check(&last, &model);
    write_some(&last, &mut model, &mut rng, 500);
    checkpoint_all(&last, 7);

    // Collect the whole job (as `terrace-ctl gc --job` does): what any
    // checkpoint names stays. Objects of other databases' lineages go only once
    // older than their database's newest checkpoint (less a clock margin), so
    // this run may delete nothing; the restore below proves it kept everything
    // still referenced.
    let before = sst_objects(tmp);
    let mut base = Options::new(tmp.join("gc-scratch"));
    base.gc_min_age = Duration::ZERO;
    let job_uri = format!("file://{}", job(tmp).display());
    let report = block_on(terrace::collect_job_garbage(&job_uri, base, false)).unwrap();
    assert_eq!(report.prefixes.len(), n_src + n_dst + 1, "{report:?}");
    let after = sst_objects(tmp);
    assert_eq!(before.len() - after.len(), report.deleted() as usize);

    // Every local file gone: the final database's checkpoint restores every key.
    let final_uri = prefix_uri(tmp, &last[0].name);
    for m in last {
        block_on(m.db.close()).unwrap();
    }
    std::fs::remove_dir_all(tmp.join("local")).unwrap();
    let all = KeyGroupRange::all(MAX_KEY_GROUPS);
    let mut o = options(tmp, "again", 3, all);
    o.object_store = ObjectStoreSpec::Uri(final_uri.clone());
    let (db, _) = block_on(Db::restore_from(
        o,
        &[RestoreSource {
            uri: final_uri,
            checkpoint: None,
        }],
    ))
    .unwrap();
    let again = vec![Member {
        name: "again".into(),
        db,
        range: all,
    }];
    check(&again, &model);
    for m in again {
        block_on(m.db.close()).unwrap();
    }
}

#[test]
fn two_databases_rescale_into_one() {
    round_trip(1, 2, 2, 1, 3);
}

#[test]
fn one_database_rescales_into_two() {
    round_trip(2, 1, 3, 2, 2);
}

#[test]
fn three_databases_rescale_into_two() {
    round_trip(3, 3, 1, 2, 3);
}

#[test]
fn four_databases_rescale_into_three() {
    round_trip(4, 4, 2, 3, 2);
}

/// A plain `Db::restore` into another shard count rescales its one source.
#[test]
fn restore_into_another_shard_count_rescales_one_source() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let mut model = Model::new();
    let all = KeyGroupRange::all(MAX_KEY_GROUPS);
    let src = vec![Member {
        db: open(options(tmp, "a", 2, all)),
        name: "a".into(),
        range: all,
    }];
    write_some(&src, &mut model, &mut rng, 3000);
    checkpoint_all(&src, 1);
    let uri = prefix_uri(tmp, "a");
    for m in src {
        block_on(m.db.close()).unwrap();
    }
    let mut o = options(tmp, "b", 3, all);
    o.object_store = ObjectStoreSpec::Uri(uri);
    let (db, info) = block_on(Db::restore(o, Some(1))).unwrap();
    assert!(info.clipped_files > 0);
    let m = vec![Member {
        name: "b".into(),
        db,
        range: all,
    }];
    check(&m, &model);
    wait_for_trims(&m);
    check(&m, &model);
}

fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path());
        }
    }
    out
}

#[test]
fn bad_sources_fail_with_typed_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(6);
    let mut model = Model::new();
    // a: 0-31, b: 16-47 (overlaps a), c: 32-63.
    let ranges = [
        ("a", KeyGroupRange::new(0, 31)),
        ("b", KeyGroupRange::new(16, 47)),
        ("c", KeyGroupRange::new(32, 63)),
    ];
    for (name, range) in ranges {
        let m = vec![Member {
            db: open(options(tmp, name, 1, range)),
            name: name.into(),
            range,
        }];
        write_some(&m, &mut model, &mut rng, 300);
        checkpoint_all(&m, 1);
        for m in m {
            block_on(m.db.close()).unwrap();
        }
    }
    // A database in another job root.
    let other = tmp.join("elsewhere").join("x");
    std::fs::create_dir_all(&other).unwrap();
    let src = |name: &str| RestoreSource {
        uri: prefix_uri(tmp, name),
        checkpoint: None,
    };
    let before = listing(&job(tmp));
    let all = KeyGroupRange::all(MAX_KEY_GROUPS);
    let cases: Vec<(Vec<RestoreSource>, KeyGroupRange, &str)> = vec![
        (
            vec![src("a"), src("b")],
            KeyGroupRange::new(0, 47),
            "overlap",
        ),
        (vec![src("a")], all, "in no source"),
        (
            vec![
                src("a"),
                RestoreSource {
                    uri: format!("file://{}", other.display()),
                    checkpoint: None,
                },
            ],
            all,
            "not under the job root",
        ),
        (vec![src("a"), src("a")], all, "twice"),
        (vec![], all, "no source"),
    ];
    for (i, (sources, range, why)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}");
        let o = options(tmp, &name, 2, range);
        let created = job(tmp).join(&name);
        std::fs::remove_dir_all(&created).unwrap();
        let err = block_on(Db::restore_from(o, &sources)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{why}: {err}");
        assert!(err.to_string().contains(why), "{why}: {err}");
        assert_eq!(listing(&job(tmp)), before, "{why}: the store changed");
        assert!(!tmp.join("local").join(&name).join("TERRACE-META").exists());
    }
    // A checkpoint that does not exist is named.
    let o = options(tmp, "bad-id", 1, all);
    std::fs::remove_dir_all(job(tmp).join("bad-id")).unwrap();
    let sources = [
        RestoreSource {
            uri: prefix_uri(tmp, "a"),
            checkpoint: Some(99),
        },
        src("c"),
    ];
    assert!(block_on(Db::restore_from(o, &sources)).is_err());
    // An object a source's checkpoint names is gone: the existence check (run while
    // the new database opens) names it, and what the rescale wrote is removed.
    let gone = listing(&job(tmp).join("c"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let bytes = std::fs::read(&gone).unwrap();
    std::fs::remove_file(&gone).unwrap();
    let before = listing(&job(tmp));
    let o = options(tmp, "bad-gone", 2, KeyGroupRange::new(0, 63));
    std::fs::remove_dir_all(job(tmp).join("bad-gone")).unwrap();
    let err = block_on(Db::restore_from(o, &[src("a"), src("c")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    let name = gone.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{err} should name {name}");
    assert_eq!(listing(&job(tmp)), before, "the store changed");
    assert!(!tmp.join("local").join("bad-gone").exists());
    std::fs::write(&gone, &bytes).unwrap();
    // A good pair works.
    let o = options(tmp, "good", 2, KeyGroupRange::new(0, 63));
    let (db, info) = block_on(Db::restore_from(o, &[src("a"), src("c")])).unwrap();
    assert_eq!(info.sources.len(), 2);
    block_on(db.close()).unwrap();
}

/// Reopening a database with another shard count re-splits it locally: the same
/// keys, trims to zero, and again back to the first count.
#[test]
fn reopening_with_another_shard_count_resplits_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut model = Model::new();
    let all = KeyGroupRange::all(MAX_KEY_GROUPS);
    // Without an object store: every file is local and only local.
    let local = |shards: u32| {
        let mut o = options(tmp, "r", shards, all);
        o.object_store = ObjectStoreSpec::Disabled;
        o.resplit_on_open = true;
        o
    };
    let mut m = vec![Member {
        db: open(local(2)),
        name: "r".into(),
        range: all,
    }];
    for shards in [3, 1, 4, 2] {
        write_some(&m, &mut model, &mut rng, 2000);
        let Member { db, name, range } = m.pop().unwrap();
        block_on(db.close()).unwrap();
        let db = open(local(shards));
        assert_eq!(block_on(db.stats()).unwrap().shards.len(), shards as usize);
        m.push(Member { db, name, range });
        check(&m, &model);
        wait_for_trims(&m);
        check(&m, &model);
        assert!(!tmp.join("local/r/resplit").exists());
        assert!(!tmp.join("local/r/resplit-old").exists());
    }
    // With an object store: uploads are kept, a checkpoint after the re-split
    // restores everything, and the restored database serves it.
    let Member { db, .. } = m.pop().unwrap();
    block_on(db.close()).unwrap();
    let with_store = |name: &str, shards: u32| {
        let mut o = options(tmp, name, shards, all);
        o.resplit_on_open = true;
        o
    };
    let m = vec![Member {
        db: open(with_store("s", 2)),
        name: "s".into(),
        range: all,
    }];
    let mut model = Model::new();
    write_some(&m, &mut model, &mut rng, 3000);
    for m in m {
        block_on(m.db.close()).unwrap();
    }
    let m = vec![Member {
        db: open(with_store("s", 3)),
        name: "s".into(),
        range: all,
    }];
    check(&m, &model);
    checkpoint_all(&m, 1);
    for m in m {
        block_on(m.db.close()).unwrap();
    }
    let mut o = with_store("s2", 1);
    o.object_store = ObjectStoreSpec::Uri(prefix_uri(tmp, "s"));
    let (db, _) = block_on(Db::restore(o, Some(1))).unwrap();
    let m = vec![Member {
        db,
        name: "s2".into(),
        range: all,
    }];
    check(&m, &model);
    for m in m {
        block_on(m.db.close()).unwrap();
    }
}
