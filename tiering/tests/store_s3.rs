//! `S3Store` against a real S3 HTTP server on loopback (s3s + s3s-fs, in process):
//! what is put reads back through ranged gets, head and list; multipart objects are the
//! concatenation of their parts; failures come back as the right `StoreErrorKind`;
//! `last_modified` is the server's write time. (s3s-fs has no ListMultipartUploads:
//! the listing of open uploads is checked over the wire in `store_s3_open_uploads.rs`;
//! here, that its refusal is an error and not an empty list.)

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::ChecksumMode;
use bytes::Bytes;
use tempfile::TempDir;
use terrace_tiering::clock::system_time;
use terrace_tiering::store::retry::{RetryConfig, RetryingStore};
use terrace_tiering::store::s3::test_server::{S3TestServer, TEST_ACCESS_KEY, TEST_SECRET_KEY};
use terrace_tiering::store::s3::{S3Config, S3Store};
use terrace_tiering::store::{IoRuntime, IoRuntimeConfig, ObjectStore, StoreErrorKind};

const BUCKET: &str = "terrace-test";
const MIB: usize = 1024 * 1024;

/// A server with one empty bucket; the directory lives as long as the value.
struct Fixture {
    _dir: TempDir,
    server: S3TestServer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3TestServer::start(dir.path()).expect("start S3 test server");
    server.create_bucket(BUCKET).expect("create bucket");
    Fixture { _dir: dir, server }
}

impl Fixture {
    async fn store(&self, prefix: &str) -> S3Store {
        S3Store::connect(self.server.config(BUCKET, prefix))
            .await
            .expect("connect")
    }

    /// A plain SDK client, to look at what the server holds without `S3Store`.
    fn raw_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.server.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                TEST_ACCESS_KEY,
                TEST_SECRET_KEY,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// Bytes that differ at every offset, so a misplaced range shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn get(store: &S3Store, key: &str, range: Range<u64>) -> Bytes {
    store.get_range(key, range).await.expect("get_range")
}

#[test]
fn put_get_range_head_round_trip_through_the_io_runtime() {
    let fx = fixture();
    let rt = IoRuntime::start(&IoRuntimeConfig::default()).expect("io runtime");
    let config = fx.server.config(BUCKET, "/db/shard-0/");
    let body = pattern(100_000, 7);
    let expected = body.clone();
    // The shard side: a non-tokio thread awaits the task the I/O runtime runs.
    let task = rt.handle().spawn(async move {
        let store = S3Store::connect(config).await?;
        store.put("sst/000001.sst", body).await?;
        let head = store.head("sst/000001.sst").await?;
        let whole = store.get_range("sst/000001.sst", 0..100_000).await?;
        let middle = store.get_range("sst/000001.sst", 4_096..8_192).await?;
        let last = store.get_range("sst/000001.sst", 99_999..100_000).await?;
        let empty = store.get_range("sst/000001.sst", 100_000..100_000).await?;
        Ok::<_, terrace_tiering::store::StoreError>((
            store.describe(),
            head,
            whole,
            middle,
            last,
            empty,
        ))
    });
    let (describe, head, whole, middle, last, empty) = futures_lite::future::block_on(task)
        .expect("not cancelled")
        .expect("store calls");
    assert_eq!(head.key, "sst/000001.sst");
    assert_eq!(head.size, 100_000);
    assert_eq!(whole, expected);
    assert_eq!(middle, expected.slice(4_096..8_192));
    assert_eq!(last, expected.slice(99_999..));
    assert!(empty.is_empty());
    // The prefix was trimmed and joined with single slashes.
    assert_eq!(
        describe,
        format!(
            "s3://{BUCKET}/db/shard-0 (endpoint {})",
            fx.server.endpoint()
        )
    );
    let on_disk = fx
        .server
        .root()
        .join(BUCKET)
        .join("db/shard-0/sst/000001.sst");
    assert_eq!(
        std::fs::read(&on_disk).expect("object file"),
        expected.to_vec()
    );
}

#[tokio::test]
async fn put_sends_a_crc32c_the_server_checks() {
    let fx = fixture();
    let store = fx.store("p").await;
    let body = pattern(300_000, 3);
    store.put("a", body.clone()).await.expect("put");

    // s3s-fs computes a CRC32C only when the request carried one, and refuses the
    // body if they differ; so a stored CRC32C means ours was sent and matched.
    let raw = fx.raw_client();
    let head = raw
        .head_object()
        .bucket(BUCKET)
        .key("p/a")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("raw head");
    assert!(
        head.checksum_crc32_c().is_some(),
        "server stored no CRC32C: the put sent none"
    );

    // And the server does compare: a wrong CRC32C is refused with BadDigest.
    let err = raw
        .put_object()
        .bucket(BUCKET)
        .key("p/bad")
        .body(body.into())
        .checksum_crc32_c("AAAAAA==")
        .send()
        .await
        .expect_err("a wrong checksum must be refused");
    assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
    // (s3s-fs 0.14.1 renames the body into place before comparing, so unlike S3 it
    // keeps the refused object; nothing here depends on that.)
}

#[tokio::test]
async fn multipart_of_three_parts_reads_back_as_their_concatenation() {
    let fx = fixture();
    let store = fx.store("mp").await;
    let parts = [
        pattern(5 * MIB, 1),
        pattern(5 * MIB + 17, 2),
        pattern(1_000, 3),
    ];
    let started = terrace_tiering::clock::now();
    let upload = store.create_multipart("big.sst").await.expect("create");
    let mut receipts = Vec::new();
    // Out of order on purpose: completion sorts by part number.
    for (i, body) in parts.iter().enumerate().rev() {
        let n = i as u32 + 1;
        let receipt = store
            .put_part("big.sst", &upload, n, body.clone())
            .await
            .expect("put_part");
        assert_eq!(receipt.part_number, n);
        assert!(!receipt.etag.is_empty());
        receipts.push(receipt);
    }
    // Not visible before completion.
    assert_eq!(
        store.head("big.sst").await.expect_err("incomplete").kind,
        StoreErrorKind::NotFound
    );
    store
        .complete_multipart("big.sst", &upload, receipts)
        .await
        .expect("complete");
    let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let size = expected.len() as u64;
    assert_eq!(store.head("big.sst").await.expect("head").size, size);
    assert_eq!(
        get(&store, "big.sst", 0..size).await.as_ref(),
        &expected[..]
    );
    // A range across the boundary between the second and third part.
    let edge = (10 * MIB + 17) as u64;
    assert_eq!(
        get(&store, "big.sst", edge - 100..edge + 100)
            .await
            .as_ref(),
        &expected[edge as usize - 100..edge as usize + 100]
    );
    eprintln!(
        "multipart of {size} bytes round trip: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn abort_multipart_leaves_no_object_and_no_parts() {
    let fx = fixture();
    let store = fx.store("").await;
    let upload = store.create_multipart("gone.sst").await.expect("create");
    store
        .put_part("gone.sst", &upload, 1, pattern(5 * MIB, 9))
        .await
        .expect("put_part");
    store
        .abort_multipart("gone.sst", &upload)
        .await
        .expect("abort");
    assert_eq!(
        store.head("gone.sst").await.expect_err("aborted").kind,
        StoreErrorKind::NotFound
    );
    // s3s-fs keeps parts as `.upload_id-*` files in its root: all gone.
    let leftovers: Vec<String> = std::fs::read_dir(fx.server.root())
        .expect("read root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".upload_id-"))
        .collect();
    assert!(leftovers.is_empty(), "parts left behind: {leftovers:?}");
    assert!(store.list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn ranged_get_past_the_end_is_invalid_argument() {
    let fx = fixture();
    let store = fx.store("r").await;
    store.put("k", pattern(100, 5)).await.expect("put");
    // Starting at or after the end: the server answers 416 InvalidRange.
    for range in [100..101, 100..110, 200..300] {
        let err = store
            .get_range("k", range.clone())
            .await
            .expect_err("past end");
        assert_eq!(
            err.kind,
            StoreErrorKind::InvalidArgument,
            "{range:?}: {err}"
        );
    }
    // Straddling the end: the server answers with fewer bytes, which is refused.
    let err = store.get_range("k", 90..110).await.expect_err("short");
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument, "{err}");
    assert!(err.message.contains("100 bytes"), "{err}");
    // Empty ranges: fine up to the end, refused beyond it.
    assert!(get(&store, "k", 100..100).await.is_empty());
    let err = store.get_range("k", 101..101).await.expect_err("beyond");
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 10..5;
    let err = store.get_range("k", reversed).await.expect_err("reversed");
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    let err = store
        .get_range("missing", 0..10)
        .await
        .expect_err("missing");
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn list_pages_through_the_prefix_and_returns_keys_as_put() {
    let fx = fixture();
    let mut config = fx.server.config(BUCKET, "db");
    config.list_page_size = 2;
    let store = S3Store::connect(config).await.expect("connect");
    // Neighbours that share the store's prefix as a string but not as a folder.
    let other = fx.store("db2").await;
    other
        .put("sst/x", Bytes::from_static(b"x"))
        .await
        .expect("put other");
    let root = fx.store("").await;
    root.put("dbfile", Bytes::from_static(b"y"))
        .await
        .expect("put root");

    let mut sst: Vec<String> = (0..7).map(|i| format!("sst/{:06}.sst", 7 - i)).collect();
    for (i, key) in sst.iter().enumerate() {
        store.put(key, pattern(10 + i, 1)).await.expect("put sst");
    }
    store.put("wal/1", pattern(3, 1)).await.expect("put wal");
    store.put("wal/2", pattern(4, 1)).await.expect("put wal");
    sst.sort();

    let listed = store.list("sst/").await.expect("list sst");
    assert_eq!(
        listed.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        sst
    );
    for meta in &listed {
        let head = store.head(&meta.key).await.expect("head listed key");
        assert_eq!(head.size, meta.size);
    }
    let all = store.list("").await.expect("list all");
    assert_eq!(all.len(), 9);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted");
    assert_eq!(all[7].key, "wal/1");
    assert_eq!(all[7].size, 3);
    assert!(store.list("nothing/").await.expect("list empty").is_empty());
    // The bucket root sees every store's objects, with their full keys.
    assert_eq!(
        root.list("db2/").await.expect("list root")[0].key,
        "db2/sst/x"
    );
}

#[tokio::test]
async fn get_reads_whole_objects_of_any_size_and_a_missing_one_is_not_found() {
    let fx = fixture();
    let store = fx.store("g").await;
    for (key, len) in [
        ("empty", 0),
        ("small", 1),
        ("meta", 4_321),
        ("big", 3 << 20),
    ] {
        let body = pattern(len, len as u8);
        store.put(key, body.clone()).await.expect("put");
        assert_eq!(store.get(key).await.expect("get"), body, "{key}");
    }
    let err = store.get("missing").await.expect_err("missing");
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
    assert_eq!((err.op, err.key.as_str()), ("get", "missing"));
}

#[tokio::test]
async fn delete_then_head_is_not_found_and_deleting_again_is_fine() {
    let fx = fixture();
    let store = fx.store("d").await;
    store.put("k", pattern(10, 1)).await.expect("put");
    store.delete("k").await.expect("delete");
    let err = store.head("k").await.expect_err("deleted");
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
    assert_eq!(err.op, "head");
    assert_eq!(err.key, "k");
    store.delete("k").await.expect("delete of a missing key");
    store
        .delete("never/was")
        .await
        .expect("delete of a missing key");
}

#[tokio::test]
async fn connect_to_a_missing_bucket_is_no_such_bucket() {
    let fx = fixture();
    let err = S3Store::connect(fx.server.config("no-such-bucket", "p"))
        .await
        .expect_err("missing bucket");
    assert_eq!(err.kind, StoreErrorKind::NoSuchBucket, "{err}");
    assert!(err.message.contains("no-such-bucket"), "{err}");
    assert!(err.message.contains(&fx.server.endpoint()), "{err}");
}

#[tokio::test]
async fn connect_with_a_wrong_secret_is_access_denied() {
    let fx = fixture();
    let mut config = fx.server.config(BUCKET, "p");
    config.credentials = Some((TEST_ACCESS_KEY.to_string(), "not-the-secret".to_string()));
    let err = S3Store::connect(config.clone())
        .await
        .expect_err("bad secret");
    assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");
    assert!(err.message.contains(BUCKET), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    assert!(!format!("{config:?}").contains("not-the-secret"));

    config.credentials = Some(("unknown-key".to_string(), TEST_SECRET_KEY.to_string()));
    let err = S3Store::connect(config).await.expect_err("unknown key");
    assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");
}

#[tokio::test]
async fn connect_to_an_unreachable_endpoint_is_transient() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut config = S3Config::new(BUCKET.to_string(), String::new());
    config.endpoint = Some(endpoint.clone());
    config.force_path_style = true;
    config.credentials = Some((TEST_ACCESS_KEY.to_string(), TEST_SECRET_KEY.to_string()));
    let started = terrace_tiering::clock::now();
    let err = S3Store::connect(config).await.expect_err("unreachable");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.kind, StoreErrorKind::Transient, "{err}");
    assert!(err.message.contains(&endpoint), "{err}");
    assert!(
        started.elapsed().as_secs() < 10,
        "one attempt, no long retries"
    );
}

/// `time` rounded down to a whole second: HeadObject's Last-Modified has no fraction.
fn floor_to_second(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn last_modified_is_when_the_server_wrote_the_object() {
    let fx = fixture();
    let store = fx.store("t").await;
    let started = floor_to_second(system_time());
    store.put("put.sst", pattern(1_000, 1)).await.expect("put");
    let upload = store.create_multipart("multi.sst").await.expect("create");
    let part = store
        .put_part("multi.sst", &upload, 1, pattern(2_000, 2))
        .await
        .expect("part");
    store
        .complete_multipart("multi.sst", &upload, vec![part])
        .await
        .expect("complete");
    let done = system_time() + Duration::from_secs(1);

    let listed = store.list("").await.expect("list");
    assert_eq!(listed.len(), 2);
    for meta in listed {
        let head = store.head(&meta.key).await.expect("head");
        for (how, time) in [("list", meta.last_modified), ("head", head.last_modified)] {
            let time = time.unwrap_or_else(|| panic!("{how} {}: no time", meta.key));
            assert!(
                started <= time && time <= done,
                "{how} {}: {time:?} outside {started:?}..={done:?}",
                meta.key
            );
        }
        // HEAD says whole seconds; the listing may say more, never a different second.
        assert_eq!(
            head.last_modified.map(floor_to_second),
            meta.last_modified.map(floor_to_second),
            "{}",
            meta.key
        );
    }
}

#[tokio::test]
async fn a_server_without_upload_listing_is_an_error_not_an_empty_list() {
    let fx = fixture();
    let store = Arc::new(fx.store("u").await);
    store.create_multipart("open.sst").await.expect("create");
    let err = store
        .list_multipart("")
        .await
        .expect_err("s3s-fs 0.14.1 has no ListMultipartUploads");
    assert_eq!(err.kind, StoreErrorKind::Other, "{err}");
    assert_eq!(err.op, "list_multipart");
    assert!(err.message.contains("NotImplemented"), "{err}");
    // Not retryable: a retrying store gives up at once.
    let retrying = RetryingStore::new(store, RetryConfig::default());
    let err = retrying
        .list_multipart("")
        .await
        .expect_err("still refused");
    assert_eq!(err.kind, StoreErrorKind::Other, "{err}");
    assert_eq!(retrying.retries(), 0);
}
