//! The engine over S3: a database whose store is `s3://bucket/prefix`, configured the
//! standard AWS way (environment variables), against an S3 server on loopback.
//!
//! One test per binary: it sets process-wide environment variables.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use terrace::{Db, ErrorKind, ObjectStoreSpec};
use terrace_tiering::store::s3::test_server::{S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY};

#[test]
fn a_database_on_s3_survives_losing_every_local_file() {
    let server_dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(server_dir.path()).unwrap();
    server.create_bucket("state").unwrap();
    std::env::set_var("AWS_ENDPOINT_URL", server.endpoint());
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY);

    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 2);
    opts.object_store = ObjectStoreSpec::Uri("s3://state/job-1".into());
    // One flush of ~6 MiB per shard: above S3's 5 MiB minimum part, so it goes multipart
    // (5 MiB + the rest); later small files go in one put.
    opts.memtable_bytes = 16 << 20;
    opts.target_file_bytes = 16 << 20;
    opts.uploader.multipart_threshold_bytes = 5 << 20;
    opts.uploader.part_bytes = 5 << 20;
    opts.local_disk_budget_bytes = Some(64 << 10);
    opts.warm_window = Duration::ZERO;

    let db = open(opts.clone());
    let t = db.table("default").unwrap();
    let mut model = BTreeMap::new();
    block_on(async {
        for i in 0..12000u32 {
            let k = format!("user{:05}", (i * 7919) % 12000).into_bytes();
            let v = format!("v{i}-{}", "x".repeat(1000 + (i % 50) as usize)).into_bytes();
            db.put(t, &k, &v).await.unwrap();
            model.insert(k, v);
        }
        db.flush().await.unwrap();
        for i in 0..300u32 {
            let k = format!("user{:05}", i * 13).into_bytes();
            let v = format!("second-{i}").into_bytes();
            db.put(t, &k, &v).await.unwrap();
            model.insert(k, v);
        }
        db.flush().await.unwrap();
        db.wait_for_compactions().await.unwrap();
        db.wait_for_uploads().await.unwrap();
        db.enforce_local_budget().await.unwrap();
    });
    let stats = block_on(db.stats()).unwrap();
    let store = stats.object_store.clone().unwrap();
    assert!(store.put_part.count > 0, "multipart used: {stats}");
    assert!(stats.tier().remote_only_files > 0, "{stats}");
    block_on(db.close()).unwrap();

    // The objects are in the bucket, under the prefix.
    let objects: Vec<_> = walk(&server.root().join("state").join("job-1"));
    assert!(objects.iter().any(|p| p.ends_with(".sst")), "{objects:?}");

    // Lose every local SST; the database reads everything from S3.
    for s in 0..2 {
        for e in std::fs::read_dir(dir.path().join(format!("shard-{s:04}"))).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "sst") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    let db = open(opts.clone());
    block_on(async {
        let keys: Vec<&Vec<u8>> = model.keys().collect();
        for chunk in keys.chunks(64) {
            let got = db.multi_get(t, chunk).await.unwrap();
            for (k, v) in chunk.iter().zip(got) {
                assert_eq!(v.as_ref(), model.get(*k));
            }
        }
        assert_eq!(
            db.get(t, b"user00013").await.unwrap().as_deref(),
            Some(&b"second-1"[..])
        );
        let stats = db.stats().await.unwrap();
        assert_eq!(stats.tier().local_files, 0, "{stats}");
        assert!(stats.tier().remote_reads.requests > 0, "{stats}");
        db.close().await.unwrap();
    });

    // A missing bucket and wrong credentials are one clear error at open.
    let mut missing = opts.clone();
    missing.object_store = ObjectStoreSpec::Uri("s3://no-such-bucket/x".into());
    let e = block_on(Db::open(missing)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("no-such-bucket"), "{e}");

    std::env::set_var("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    let e = block_on(Db::open(opts)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        !e.to_string().contains("wrong-secret"),
        "secrets never appear: {e}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
