//! Restore over S3: a database on `s3://bucket/prefix` (the in-process S3 server on
//! loopback) writes, checkpoints with data still in its memtables, loses its whole
//! local directory, and a new database restored from the bucket reads every key
//! back; the garbage collector runs against S3 too.
//!
//! One test per binary: it sets process-wide environment variables.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use common::*;
use terrace::{Db, ObjectStoreSpec};
use terrace_tiering::store::s3::test_server::{S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY};

#[test]
fn a_database_restored_from_s3_reads_back_every_key() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(server_dir.path()).unwrap();
    server.create_bucket("state").unwrap();
    std::env::set_var("AWS_ENDPOINT_URL", server.endpoint());
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY);

    let root = tempfile::tempdir().unwrap();
    let opts = |name: &str| {
        let mut o = small_options(&root.path().join(name), 2);
        o.tables = vec!["default".into()];
        o.object_store = ObjectStoreSpec::Uri("s3://state/job-7".into());
        o.gc_interval = None;
        o.gc_min_age = Duration::ZERO;
        o
    };
    let db = open(opts("source"));
    let t = db.table("default").unwrap();
    let mut model = BTreeMap::new();
    block_on(async {
        for i in 0..6000u32 {
            let k = format!("user{:05}", (i * 7919) % 6000).into_bytes();
            let v = format!("v{i}-{}", "x".repeat(200 + (i % 50) as usize)).into_bytes();
            db.put(t, &k, &v).await.unwrap();
            model.insert(k, v);
        }
        db.flush().await.unwrap();
        // Still in the memtables at the checkpoint.
        for i in 0..300u32 {
            let k = format!("user{:05}", i * 13).into_bytes();
            db.put(t, &k, format!("late-{i}").as_bytes()).await.unwrap();
            model.insert(k, format!("late-{i}").into_bytes());
        }
        let info = db.checkpoint(1).await.unwrap();
        assert!(info.memtable_bytes > 0, "{info:?}");
        // After the checkpoint: not in it.
        db.put(t, b"after", b"x").await.unwrap();
    });
    drop(db);
    std::fs::remove_dir_all(root.path().join("source")).unwrap();

    let (db, info) = block_on(Db::restore(opts("restored"), None)).unwrap();
    assert_eq!(info.checkpoint, 1);
    let t = db.table("default").unwrap();
    block_on(async {
        let keys: Vec<&Vec<u8>> = model.keys().collect();
        for chunk in keys.chunks(64) {
            let got = db.multi_get(t, chunk).await.unwrap();
            for (k, v) in chunk.iter().zip(got) {
                assert_eq!(v.as_ref(), model.get(*k), "{}", String::from_utf8_lossy(k));
            }
        }
        assert_eq!(db.get(t, b"after").await.unwrap(), None);
        let n = db
            .scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
            .await
            .unwrap()
            .len();
        assert_eq!(n, model.len());
        // The restored database checkpoints and collects garbage on S3 as well.
        db.put(t, b"after-restore", b"y").await.unwrap();
        db.checkpoint(2).await.unwrap();
        let report = db.gc().await.unwrap();
        assert!(report.checkpoints >= 2, "{report:?}");
        db.close().await.unwrap();
    });
    let (db, _) = block_on(Db::restore(opts("again"), Some(2))).unwrap();
    let t = db.table("default").unwrap();
    assert_eq!(
        block_on(db.get(t, b"after-restore")).unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        block_on(db.get(t, b"user00013")).unwrap().as_deref(),
        Some(&b"late-1"[..])
    );
    block_on(db.close()).unwrap();
}
