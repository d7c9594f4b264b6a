//! `terrace-ctl --object-store URI checkpoints | --checkpoint latest|ID get|scan|stats
//! | gc`: checkpoints are listed and read from the store alone while the database
//! that wrote them keeps running (and writing); reads see exactly the checkpoint's
//! state; the collector deletes what only a released checkpoint referenced and
//! nothing a retained one needs; bad input is a clear error.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use futures_lite::future::block_on;
use terrace::{Db, ObjectStoreSpec, Options};

fn ctl(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
        .arg(format!("--object-store={store}"))
        .args(args)
        .output()
        .expect("run terrace-ctl")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "terrace-ctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "terrace-ctl should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sst_objects(store: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![store.join("sst")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "sst") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn checkpoints_are_listed_read_and_collected_from_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = format!("file://{}", store_dir.display());
    let mut opts = Options::new(tmp.path().join("db"));
    opts.shards = 2;
    opts.pin_shards = false;
    opts.memtable_bytes = 64 << 10;
    opts.object_store = ObjectStoreSpec::Uri(store.clone());
    opts.gc_interval = None;
    let db = block_on(Db::open(opts)).expect("open");
    let t = db.table("default").unwrap();
    let put_range = |range: std::ops::Range<u32>, gen: &str| {
        block_on(async {
            for i in range {
                let k = format!("key{i:05}");
                db.put(t, k.as_bytes(), format!("{gen}-{i}").as_bytes())
                    .await
                    .unwrap();
            }
        })
    };
    put_range(0..2000, "one");
    block_on(db.flush()).unwrap();
    put_range(0..100, "one-b"); // in the memtables only
    block_on(db.checkpoint(7)).unwrap();
    put_range(0..3000, "two");
    block_on(db.wait_for_compactions()).unwrap();
    block_on(db.checkpoint(9)).unwrap();
    put_range(0..3000, "three"); // never checkpointed

    // The writer is still open while every command below runs.
    let list = ok(&ctl(&store, &["checkpoints"]));
    let rows: Vec<&str> = list
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .filter(|l| !l.ends_with(" checkpoints"))
        .collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(rows[0].trim_start().starts_with("7 "), "{list}");
    assert!(rows[1].trim_start().starts_with("9 "), "{list}");
    assert!(list.contains("2 checkpoints"), "{list}");

    let at = |which: &str, key: &str| ok(&ctl(&store, &["--checkpoint", which, "get", key]));
    assert_eq!(at("7", "key00050").trim(), "one-b-50");
    assert_eq!(at("7", "key01500").trim(), "one-1500");
    assert_eq!(at("latest", "key00050").trim(), "two-50");
    assert_eq!(at("9", "key02999").trim(), "two-2999");
    let missing = failed(&ctl(&store, &["--checkpoint", "7", "get", "key02500"]));
    assert!(missing.contains("not found"), "{missing}");

    let scan = ok(&ctl(
        &store,
        &[
            "--checkpoint",
            "latest",
            "scan",
            "--from",
            "key00010",
            "--to",
            "key00013",
        ],
    ));
    assert_eq!(
        scan.lines().collect::<Vec<_>>(),
        [
            "key00010 => two-10",
            "key00011 => two-11",
            "key00012 => two-12"
        ],
        "{scan}"
    );
    let stats = ok(&ctl(&store, &["--checkpoint", "9", "stats"]));
    assert!(stats.starts_with("checkpoint "), "{stats}");

    // Bad input: a clear error, nothing written.
    let before = sst_objects(&store_dir);
    let no_such = failed(&ctl(&store, &["--checkpoint", "8", "get", "key00001"]));
    assert!(no_such.contains("checkpoint"), "{no_such}");
    let bad_id = failed(&ctl(&store, &["--checkpoint", "newest", "stats"]));
    assert!(bad_id.contains("latest"), "{bad_id}");
    let no_store = Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
        .args(["checkpoints"])
        .output()
        .unwrap();
    assert!(failed(&no_store).contains("--object-store"));
    assert_eq!(sst_objects(&store_dir), before);

    // GC from outside: a dry run deletes nothing; with checkpoint 7 released and no
    // minimum age, what only 7 referenced goes, and 9 still reads back in full.
    block_on(db.release_checkpoint(7)).unwrap();
    block_on(db.close()).unwrap(); // flushes and uploads the last writes
    let before = sst_objects(&store_dir);
    let dry = ok(&ctl(&store, &["gc", "--dry-run", "--min-age-secs=0"]));
    assert!(dry.starts_with("gc (dry run): "), "{dry}");
    assert_eq!(sst_objects(&store_dir), before);
    std::thread::sleep(Duration::from_millis(1100));
    let gc = ok(&ctl(
        &store,
        &[
            "gc",
            "--min-age-secs=0",
            "--db",
            tmp.path().join("db").to_str().unwrap(),
        ],
    ));
    let deleted: u64 = gc
        .split(", ")
        .find_map(|p| p.strip_suffix(" bytes)").and(p.split(' ').next()))
        .and_then(|n| n.parse().ok())
        .expect("deleted count");
    assert!(deleted > 0, "{gc}");
    assert_eq!(sst_objects(&store_dir), before - deleted as usize, "{gc}");
    for i in (0..3000).step_by(97) {
        let key = format!("key{i:05}");
        assert_eq!(at("9", &key).trim(), format!("two-{i}"));
    }
    let again = ok(&ctl(&store, &["gc", "--min-age-secs=0"]));
    assert!(again.contains(" 0 deleted"), "idempotent: {again}");
}

#[test]
fn gc_with_only_a_database_collects_its_embedded_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let mut opts = Options::new(&dir);
    opts.shards = 1;
    opts.pin_shards = false;
    opts.memtable_bytes = 64 << 10;
    opts.gc_interval = None;
    let db = block_on(Db::open(opts)).expect("open");
    let t = db.table("default").unwrap();
    block_on(async {
        for round in 0..3 {
            for i in 0..1500u32 {
                db.put(
                    t,
                    format!("k{i:05}").as_bytes(),
                    format!("{round}").as_bytes(),
                )
                .await
                .unwrap();
            }
            db.flush().await.unwrap();
        }
        db.compact_range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .await
            .unwrap();
        db.wait_for_uploads().await.unwrap();
    });
    block_on(db.close()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
        .args(["gc", "--min-age-secs=0", "--db", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.starts_with("gc: "), "{text}");
    assert!(
        !text.contains(" 0 deleted"),
        "compaction left garbage: {text}"
    );
    // Everything still reads.
    let db = block_on(Db::open(Options::for_existing(&dir).unwrap())).unwrap();
    let t = db.table("default").unwrap();
    for i in (0..1500u32).step_by(37) {
        let v = block_on(db.get(t, format!("k{i:05}").as_bytes())).unwrap();
        assert_eq!(v.as_deref(), Some(&b"2"[..]));
    }
    block_on(db.close()).unwrap();
}

/// `terrace-ctl gc --job URI` collects every database prefix of a job; what a
/// rescaled database's checkpoint names under its sources' prefixes stays.
#[test]
fn gc_of_a_job_keeps_what_a_rescaled_database_references() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("job");
    let uri = |name: &str| {
        std::fs::create_dir_all(job.join(name)).unwrap();
        format!("file://{}", job.join(name).display())
    };
    let options = |name: &str, range: terrace::KeyGroupRange| {
        let mut o = Options::new(tmp.path().join("local").join(name));
        o.shards = 2;
        o.pin_shards = false;
        o.memtable_bytes = 64 << 10;
        o.target_file_bytes = 64 << 10;
        o.max_key_groups = 64;
        o.key_group_range = Some(range);
        o.object_store = ObjectStoreSpec::Uri(uri(name));
        o.gc_interval = None;
        o
    };
    let halves = [
        ("db-a", terrace::KeyGroupRange::new(0, 31)),
        ("db-b", terrace::KeyGroupRange::new(32, 63)),
    ];
    let mut model = std::collections::BTreeMap::new();
    for (name, range) in halves {
        let db = block_on(Db::open(options(name, range))).unwrap();
        let t = db.table("default").unwrap();
        block_on(async {
            for i in 0..3000u32 {
                let k = format!("key{i:05}").into_bytes();
                if range.contains(db.key_group(&k)) {
                    let v = format!("{name}-{i}").into_bytes();
                    db.put(t, &k, &v).await.unwrap();
                    model.insert(k, v);
                }
            }
            db.checkpoint(1).await.unwrap();
            db.close().await.unwrap();
        });
    }
    let sources: Vec<terrace::RestoreSource> = ["db-a", "db-b"]
        .iter()
        .map(|n| terrace::RestoreSource {
            uri: uri(n),
            checkpoint: None,
        })
        .collect();
    let all = terrace::KeyGroupRange::new(0, 63);
    let (db, _) = block_on(Db::restore_from(options("db-c", all), &sources)).unwrap();
    block_on(db.checkpoint(1)).unwrap();
    block_on(db.close()).unwrap();

    let job_uri = format!("file://{}", job.display());
    let out = Command::new(env!("CARGO_BIN_EXE_terrace-ctl"))
        .args(["gc", "--job", &job_uri, "--min-age-secs=0"])
        .output()
        .expect("run terrace-ctl");
    let text = ok(&out);
    for name in ["db-a", "db-b", "db-c"] {
        assert!(text.contains(&format!("{name}: gc: ")), "{text}");
    }
    assert!(text.contains("gc: 3 prefixes, "), "{text}");
    // Not with a single store.
    let err = failed(&ctl(&uri("db-a"), &["gc", "--job", &job_uri]));
    assert!(err.contains("--job"), "{err}");

    // Every local file gone: db-c's checkpoint still restores every key.
    std::fs::remove_dir_all(tmp.path().join("local")).unwrap();
    let mut o = options("db-d", all);
    o.object_store = ObjectStoreSpec::Uri(uri("db-c"));
    let (db, _) = block_on(Db::restore(o, None)).unwrap();
    let t = db.table("default").unwrap();
    block_on(async {
        for (k, v) in &model {
            assert_eq!(db.get(t, k).await.unwrap().as_ref(), Some(v));
        }
        db.close().await.unwrap();
    });
}
