//! Rescaling across processes over S3 (the in-process s3s server on loopback): two
//! processes each own half of the key groups, write and checkpoint; a third restores
//! both into one database, reads every key (no SST data block read before its first
//! read), writes more and checkpoints; two more processes split that checkpoint into
//! halves again, each with another shard count, and read every key of their half.
//!
//! The children are this test binary run again with `TERRACE_RESCALE_ROLE` set: the
//! test function plays that role and returns. One test per binary (environment).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use terrace::{Db, KeyGroupRange, ObjectStoreSpec, Options, RestoreSource, WarmOrder};
use terrace_tiering::store::s3::test_server::{S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY};

const TEST_NAME: &str = "two_databases_become_one_and_one_becomes_two_across_processes";
const MAX_KEY_GROUPS: u16 = 128;
const JOB: &str = "s3://state/job-17";

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn lower() -> KeyGroupRange {
    KeyGroupRange::new(0, 63)
}

fn upper() -> KeyGroupRange {
    KeyGroupRange::new(64, MAX_KEY_GROUPS - 1)
}

fn all() -> KeyGroupRange {
    KeyGroupRange::new(0, MAX_KEY_GROUPS - 1)
}

fn in_range(key: &[u8], range: KeyGroupRange) -> bool {
    range.contains(terrace::key::key_group(key, MAX_KEY_GROUPS))
}

/// What the first writers put: `round` 0 are the two halves' writes, round 1 what
/// the merged database adds (overwrites and new keys, all key groups).
fn writes(round: u32, range: KeyGroupRange) -> Model {
    let mut m = Model::new();
    let n = if round == 0 { 6000 } else { 1500 };
    for i in 0..n {
        let k = format!("user{:06}", (i * 7919 + round * 13) % 9000).into_bytes();
        if in_range(&k, range) {
            let v = format!("r{round}-{i}-{}", "x".repeat(100 + (i % 80) as usize));
            m.insert(k, v.into_bytes());
        }
    }
    m
}

/// The state every database must hold at the end of its role.
fn expected(stage: &str, range: KeyGroupRange) -> Model {
    let mut m = writes(0, all());
    if stage != "first" {
        m.extend(writes(1, all()));
    }
    m.retain(|k, _| in_range(k, range));
    m
}

fn options(root: &std::path::Path, name: &str, shards: u32, range: KeyGroupRange) -> Options {
    let mut o = small_options(&root.join(name), shards);
    o.tables = vec!["default".into()];
    o.max_key_groups = MAX_KEY_GROUPS;
    o.key_group_range = Some(range);
    o.object_store = ObjectStoreSpec::Uri(format!("{JOB}/{name}"));
    o.gc_interval = None;
    // Nothing downloaded in the background: reads fetch what they need.
    o.warm_order = WarmOrder::Off;
    o
}

fn put_all(db: &Db, m: &Model) {
    let t = db.table("default").unwrap();
    block_on(async {
        for (i, (k, v)) in m.iter().enumerate() {
            db.put(t, k, v).await.unwrap();
            if i == m.len() / 2 {
                // Half in SSTs, half in the memtables at the checkpoint.
                db.flush().await.unwrap();
            }
        }
    });
}

fn check(db: &Db, m: &Model, what: &str) {
    let t = db.table("default").unwrap();
    block_on(async {
        let keys: Vec<&Vec<u8>> = m.keys().collect();
        for chunk in keys.chunks(64) {
            let got = db.multi_get(t, chunk).await.unwrap();
            for (k, v) in chunk.iter().zip(got) {
                assert_eq!(
                    v.as_ref(),
                    m.get(*k),
                    "{what}: {}",
                    String::from_utf8_lossy(k)
                );
            }
        }
    });
}

/// Restores `sources` and checks that opening read no SST data block: the block
/// cache has seen no lookup before the first read.
fn restore(opts: Options, sources: &[&str], what: &str) -> Db {
    let sources: Vec<RestoreSource> = sources
        .iter()
        .map(|s| RestoreSource {
            uri: format!("{JOB}/{s}"),
            checkpoint: None,
        })
        .collect();
    let (db, info) = block_on(Db::restore_from(opts, &sources)).unwrap();
    assert!(info.files > 0, "{what}: {info:?}");
    let stats = block_on(db.stats()).unwrap();
    let lookups: u64 = stats
        .shards
        .iter()
        .map(|s| s.cache.hits + s.cache.misses)
        .sum();
    assert_eq!(lookups, 0, "{what}: data blocks read before the first read");
    assert_eq!(stats.tier().warmed_files, 0, "{what}: {stats}");
    // Nor in the background: trims of remote clipped files wait (`trim_delay`),
    // and the warmer is off.
    let opened = stats.tier().remote_reads;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later = block_on(db.stats()).unwrap().tier().remote_reads;
    assert_eq!(
        (later.requests, later.bytes),
        (opened.requests, opened.bytes),
        "{what}: the store was read before the first read"
    );
    db
}

fn child(role: &str, root: &std::path::Path) {
    match role {
        "write-a" | "write-b" => {
            let (name, range, shards) = if role == "write-a" {
                ("db-a", lower(), 2)
            } else {
                ("db-b", upper(), 3)
            };
            let db = open(options(root, name, shards, range));
            put_all(&db, &writes(0, range));
            block_on(db.checkpoint(1)).unwrap();
            block_on(db.close()).unwrap();
        }
        "merge" => {
            let db = restore(options(root, "db-c", 1, all()), &["db-a", "db-b"], "2 -> 1");
            check(&db, &expected("first", all()), "2 -> 1");
            put_all(&db, &writes(1, all()));
            block_on(db.checkpoint(1)).unwrap();
            check(&db, &expected("merged", all()), "2 -> 1, after writes");
            block_on(db.close()).unwrap();
        }
        "split-low" | "split-high" => {
            let (name, range, shards) = if role == "split-low" {
                ("db-d", lower(), 3)
            } else {
                ("db-e", upper(), 2)
            };
            let db = restore(options(root, name, shards, range), &["db-c"], role);
            check(&db, &expected("merged", range), role);
            // Keys of the other half are refused, not silently empty.
            let t = db.table("default").unwrap();
            let other = (0..)
                .map(|i| format!("probe{i}").into_bytes())
                .find(|k| !in_range(k, range))
                .unwrap();
            assert!(block_on(db.get(t, &other)).is_err(), "{role}");
            block_on(db.close()).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_databases_become_one_and_one_becomes_two_across_processes() {
    if let Ok(role) = std::env::var("TERRACE_RESCALE_ROLE") {
        let root = std::env::var("TERRACE_RESCALE_ROOT").unwrap();
        child(&role, std::path::Path::new(&root));
        return;
    }
    let server_dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(server_dir.path()).unwrap();
    server.create_bucket("state").unwrap();
    let root = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for role in ["write-a", "write-b", "merge", "split-low", "split-high"] {
        let out = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env("TERRACE_RESCALE_ROLE", role)
            .env("TERRACE_RESCALE_ROOT", root.path())
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child {role} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Each child ran the test and passed (the harness prints "1 passed").
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child {role} did not run the test:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
