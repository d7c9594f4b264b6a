//! `LocalDirStore` keeps the `ObjectStore` contract: round trips, atomic publication,
//! multipart in any submission order, abort, clear errors for bad input, times that
//! are never older than the write (even for a linked file), and a listing of exactly
//! the uploads left open.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use terrace_tiering::clock::system_time;
use terrace_tiering::store::local_dir::LocalDirStore;
use terrace_tiering::store::{ObjectMeta, ObjectStore, PendingMultipart, StoreErrorKind};

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn open(dir: &Path) -> LocalDirStore {
    LocalDirStore::open(dir, true).expect("open store")
}

/// `(key, size)` of each listed object.
fn keys_sizes(listed: Vec<ObjectMeta>) -> Vec<(String, u64)> {
    listed.into_iter().map(|m| (m.key, m.size)).collect()
}

/// Asserts that `time` is known and within `from..=to`.
fn assert_within(what: &str, time: Option<SystemTime>, from: SystemTime, to: SystemTime) {
    let time = time.unwrap_or_else(|| panic!("{what}: no time reported"));
    assert!(
        from <= time && time <= to,
        "{what}: {time:?} is outside {from:?}..={to:?}"
    );
}

/// Files under `.tmp/` other than the multipart directory: temp files left behind.
fn stray_temp_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join(".tmp"))
        .expect("read .tmp")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "multipart")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_list_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = pattern(10_000, 1);
    let b = pattern(300, 2);
    store.put("db/0001.sst", a.clone()).await.unwrap();
    store.put("db/0002.sst", b.clone()).await.unwrap();
    store
        .put("other/x", Bytes::from_static(b"x"))
        .await
        .unwrap();
    store.put("db2", Bytes::new()).await.unwrap();

    // The file is where the key says, byte for byte.
    assert_eq!(
        std::fs::read(dir.path().join("db/0001.sst")).unwrap(),
        a.to_vec()
    );
    assert_eq!(store.get_range("db/0001.sst", 0..10_000).await.unwrap(), a);
    assert_eq!(store.get("db/0001.sst").await.unwrap(), a);
    assert_eq!(store.get("db2").await.unwrap(), Bytes::new());
    let missing = store.get("db/0003.sst").await.unwrap_err();
    assert_eq!(
        (missing.kind, missing.op),
        (StoreErrorKind::NotFound, "get")
    );
    // A directory is not an object.
    assert_eq!(
        store.get("db").await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.get_range("db/0001.sst", 4_000..4_100).await.unwrap(),
        a.slice(4_000..4_100)
    );
    assert_eq!(
        store
            .get_range("db/0001.sst", 10_000..10_000)
            .await
            .unwrap(),
        Bytes::new()
    );
    assert_eq!(store.head("db/0002.sst").await.unwrap().size, 300);
    assert_eq!(store.head("db2").await.unwrap().size, 0);

    let meta = |key: &str, size| (key.to_owned(), size);
    assert_eq!(
        keys_sizes(store.list("db/").await.unwrap()),
        vec![meta("db/0001.sst", 10_000), meta("db/0002.sst", 300)]
    );
    assert_eq!(
        keys_sizes(store.list("db").await.unwrap()),
        vec![
            meta("db/0001.sst", 10_000),
            meta("db/0002.sst", 300),
            meta("db2", 0)
        ]
    );
    assert_eq!(
        keys_sizes(store.list("db/0002").await.unwrap()),
        vec![meta("db/0002.sst", 300)]
    );
    assert_eq!(store.list("").await.unwrap().len(), 4);
    assert!(store.list("nothing/here").await.unwrap().is_empty());

    store.delete("db/0001.sst").await.unwrap();
    assert_eq!(
        store.head("db/0001.sst").await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );
    assert_eq!(
        store.get_range("db/0001.sst", 0..1).await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );
    // Deleting what is not there (again, or a directory) succeeds.
    store.delete("db/0001.sst").await.unwrap();
    store.delete("never/was").await.unwrap();
    store.delete("db").await.unwrap();
    assert_eq!(
        keys_sizes(store.list("db/").await.unwrap()),
        vec![meta("db/0002.sst", 300)]
    );

    assert!(stray_temp_files(dir.path()).is_empty());
    let described = store.describe();
    assert!(described.starts_with("file:///"), "{described}");
    assert!(described.ends_with(&*dir.path().canonicalize().unwrap().to_string_lossy()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_object_and_temp_files_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    // Leftovers of a crash mid-write: a temp file and an upload never completed.
    std::fs::write(dir.path().join(".tmp/123-4-5"), b"torn").unwrap();
    let upload = store.create_multipart("db/big.sst").await.unwrap();
    store
        .put_part("db/big.sst", &upload, 1, pattern(100, 0))
        .await
        .unwrap();

    let body = pattern(32 << 20, 7);
    let writer = {
        let (store, body) = (store.clone(), body.clone());
        tokio::spawn(async move { store.put("db/big.sst", body).await })
    };
    let mut seen_whole = 0;
    loop {
        let done = writer.is_finished();
        for meta in store.list("").await.unwrap() {
            assert!(!meta.key.starts_with(".tmp"), "listed {}", meta.key);
            assert_eq!(meta.key, "db/big.sst");
            assert_eq!(meta.size, body.len() as u64, "a partial object was listed");
        }
        match store.head("db/big.sst").await {
            Ok(meta) => {
                assert_eq!(meta.size, body.len() as u64, "a partial object was visible");
                seen_whole += 1;
            }
            Err(e) => assert_eq!(e.kind, StoreErrorKind::NotFound),
        }
        if done {
            break;
        }
    }
    writer.await.unwrap().unwrap();
    assert!(seen_whole >= 1);
    assert_eq!(
        store
            .get_range("db/big.sst", 0..body.len() as u64)
            .await
            .unwrap(),
        body
    );
    // Only the crash leftover remains; the put cleaned up after itself.
    assert_eq!(stray_temp_files(dir.path()), vec!["123-4-5".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_parts_submitted_out_of_order_complete_in_part_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let parts = [pattern(5000, 1), pattern(7000, 2), pattern(123, 3)];
    let upload = store.create_multipart("db/000042.sst").await.unwrap();

    // Submit 3, then 1, then 2, concurrently for 1 and 2.
    let third = store
        .put_part("db/000042.sst", &upload, 3, parts[2].clone())
        .await
        .unwrap();
    let (first, second) = tokio::join!(
        store.put_part("db/000042.sst", &upload, 1, parts[0].clone()),
        store.put_part("db/000042.sst", &upload, 2, parts[1].clone()),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        (first.part_number, second.part_number, third.part_number),
        (1, 2, 3)
    );
    // Not visible before completion.
    assert!(store.list("").await.unwrap().is_empty());

    // Receipts in any order.
    store
        .complete_multipart("db/000042.sst", &upload, vec![third, first, second])
        .await
        .unwrap();
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
    assert_eq!(store.head("db/000042.sst").await.unwrap().size, 12_123);
    assert_eq!(
        store.get_range("db/000042.sst", 0..12_123).await.unwrap(),
        whole
    );
    // The upload's directory is gone.
    let uploads = std::fs::read_dir(dir.path().join(".tmp/multipart")).unwrap();
    assert_eq!(uploads.count(), 0);
    assert!(stray_temp_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_rejects_gaps_wrong_receipts_and_foreign_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = "db/1.sst";
    let upload = store.create_multipart(key).await.unwrap();
    let one = store
        .put_part(key, &upload, 1, pattern(10, 1))
        .await
        .unwrap();
    let three = store
        .put_part(key, &upload, 3, pattern(10, 3))
        .await
        .unwrap();

    let invalid = |kind| assert_eq!(kind, StoreErrorKind::InvalidArgument);
    // A gap (part 2 missing).
    invalid(
        store
            .complete_multipart(key, &upload, vec![one.clone(), three])
            .await
            .unwrap_err()
            .kind,
    );
    // A receipt that does not match what was stored.
    let mut forged = one.clone();
    forged.etag = "0000000000000000-10".to_owned();
    invalid(
        store
            .complete_multipart(key, &upload, vec![forged])
            .await
            .unwrap_err()
            .kind,
    );
    // The upload belongs to another key; part 0 does not exist.
    invalid(
        store
            .put_part("db/other.sst", &upload, 2, pattern(1, 0))
            .await
            .unwrap_err()
            .kind,
    );
    invalid(
        store
            .put_part(key, &upload, 0, pattern(1, 0))
            .await
            .unwrap_err()
            .kind,
    );
    // A part overwritten by a retry counts with its latest bytes.
    let one = store
        .put_part(key, &upload, 1, pattern(20, 9))
        .await
        .unwrap();
    store
        .complete_multipart(key, &upload, vec![one.clone()])
        .await
        .unwrap();
    assert_eq!(store.get_range(key, 0..20).await.unwrap(), pattern(20, 9));
    // Completing again (a retry whose answer was lost) is fine; parts of a finished
    // upload are not.
    store
        .complete_multipart(key, &upload, vec![one])
        .await
        .unwrap();
    let gone = store
        .put_part(key, &upload, 1, pattern(1, 0))
        .await
        .unwrap_err();
    assert_eq!(gone.kind, StoreErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_discards_the_parts_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let upload = store.create_multipart("db/2.sst").await.unwrap();
    let part = store
        .put_part("db/2.sst", &upload, 1, pattern(4096, 1))
        .await
        .unwrap();
    store.abort_multipart("db/2.sst", &upload).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp/multipart"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        store.head("db/2.sst").await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );
    let err = store
        .complete_multipart("db/2.sst", &upload, vec![part])
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert!(err.message.contains(&upload.0), "{}", err.message);
    // Aborting twice is fine.
    store.abort_multipart("db/2.sst", &upload).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_invalid_arguments_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for key in [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "a/./b",
        "a//b",
        "a/",
        ".tmp/x",
    ] {
        let err = store.put(key, Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::InvalidArgument, "{key:?}");
        assert_eq!(err.key, key);
        for kind in [
            store.get_range(key, 0..1).await.unwrap_err().kind,
            store.head(key).await.unwrap_err().kind,
            store.delete(key).await.unwrap_err().kind,
            store.create_multipart(key).await.unwrap_err().kind,
        ] {
            assert_eq!(kind, StoreErrorKind::InvalidArgument, "{key:?}");
        }
    }
    assert_eq!(
        store.list("../").await.unwrap_err().kind,
        StoreErrorKind::InvalidArgument
    );
    assert!(!dir.path().parent().unwrap().join("escape").exists());
    assert!(store.list("").await.unwrap().is_empty());

    // A name cannot be both an object and a prefix of others.
    store.put("a/b", Bytes::from_static(b"x")).await.unwrap();
    let err = store
        .put("a/b/c", Bytes::from_static(b"y"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    let err = store.put("a", Bytes::from_static(b"y")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    assert!(stray_temp_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_past_the_end_are_invalid_not_short() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put("k", pattern(100, 0)).await.unwrap();
    for range in [0..101, 100..101, 200..300] {
        let err = store.get_range("k", range.clone()).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::InvalidArgument, "{range:?}");
        assert!(err.message.contains("100 bytes"), "{}", err.message);
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 50..10;
    let err = store.get_range("k", backwards).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    assert_eq!(
        store.get_range("k", 99..100).await.unwrap(),
        pattern(100, 0).slice(99..)
    );
}

#[test]
fn a_missing_root_is_no_such_bucket_unless_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket/nested");
    let err = LocalDirStore::open(&root, false).unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NoSuchBucket);
    assert!(err.message.contains("does not exist"), "{}", err.message);
    assert!(err.message.contains("bucket/nested"), "{}", err.message);
    assert!(!root.exists());

    let store = LocalDirStore::open(&root, true).unwrap();
    assert!(root.join(".tmp/multipart").is_dir());
    assert_eq!(store.root(), root.canonicalize().unwrap());
    // Reopening an existing root works either way.
    LocalDirStore::open(&root, false).unwrap();

    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let err = LocalDirStore::open(&dir.path().join("file"), true).unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
}

/// `put_file` publishes a finished file as a second name of it: same inode, no copy,
/// readable like any object, and still there after the source name is removed (the
/// engine drops local copies that way). A wrong announced size is refused and
/// leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_file_links_the_file_on_one_file_system() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = open(&root);
    let data = pattern(70_000, 9);
    let source = dir.path().join("000042.sst");
    std::fs::write(&source, &data).unwrap();

    let linked = store
        .put_file("shard-0000/000042.sst", &source, data.len() as u64)
        .await
        .unwrap();
    assert!(linked, "same file system: the store links");
    let object = root.join("shard-0000/000042.sst");
    assert_eq!(
        std::fs::metadata(&object).unwrap().ino(),
        std::fs::metadata(&source).unwrap().ino()
    );
    assert_eq!(
        store
            .get_range("shard-0000/000042.sst", 100..200)
            .await
            .unwrap(),
        data.slice(100..200)
    );
    std::fs::remove_file(&source).unwrap();
    assert_eq!(
        store.head("shard-0000/000042.sst").await.unwrap().size,
        data.len() as u64
    );

    let other = dir.path().join("000043.sst");
    std::fs::write(&other, b"short").unwrap();
    let err = store
        .put_file("shard-0000/000043.sst", &other, 6)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    assert!(err.to_string().contains("announced"), "{err}");
    assert!(store.head("shard-0000/000043.sst").await.is_err());
    assert!(stray_temp_files(&root).is_empty());

    let missing = store
        .put_file("shard-0000/000044.sst", &dir.path().join("gone.sst"), 1)
        .await
        .unwrap_err();
    assert_eq!(missing.kind, StoreErrorKind::InvalidArgument, "{missing}");
    assert!(missing.to_string().contains("gone.sst"), "{missing}");
}

/// Across file systems (the store on tmpfs, the file elsewhere) a link is
/// impossible: `put_file` says so and stores nothing, so the caller copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_file_declines_across_file_systems() {
    use std::os::unix::fs::MetadataExt;

    let shm = Path::new("/dev/shm");
    let dir = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir_in(shm).expect("tmpfs at /dev/shm");
    let source = dir.path().join("000001.sst");
    std::fs::write(&source, b"data").unwrap();
    let same_device = std::fs::metadata(&source).unwrap().dev()
        == std::fs::metadata(store_dir.path()).unwrap().dev();
    let store = open(store_dir.path());
    let linked = store.put_file("a.sst", &source, 4).await.unwrap();
    assert_eq!(linked, same_device, "links exactly when on one file system");
    if !linked {
        assert!(store.head("a.sst").await.is_err(), "nothing stored");
        assert!(stray_temp_files(store_dir.path()).is_empty());
    }
}

/// `last_modified` from `head` and `list` is when the store wrote the object: not
/// before the call began, not after it returned. That holds for a put, a completed
/// multipart upload, and a file linked in by `put_file` whose own mtime is a day old
/// (the object must not look a day old to a garbage collector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_is_never_before_the_write_started() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("objects");
    let store = open(&root);

    let started = system_time();
    store.put("db/put.sst", pattern(1000, 1)).await.unwrap();
    let put_done = system_time();

    let mp_started = system_time();
    let upload = store.create_multipart("db/multi.sst").await.unwrap();
    let part = store
        .put_part("db/multi.sst", &upload, 1, pattern(2000, 2))
        .await
        .unwrap();
    store
        .complete_multipart("db/multi.sst", &upload, vec![part])
        .await
        .unwrap();
    let mp_done = system_time();

    let source = dir.path().join("000007.sst");
    std::fs::write(&source, pattern(3000, 3)).unwrap();
    let day_ago = system_time() - Duration::from_secs(24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    let link_started = system_time();
    assert!(store
        .put_file("db/linked.sst", &source, 3000)
        .await
        .unwrap());
    let link_done = system_time();

    let expected = [
        ("db/linked.sst", link_started, link_done),
        ("db/multi.sst", mp_started, mp_done),
        ("db/put.sst", started, put_done),
    ];
    let listed = store.list("db/").await.unwrap();
    assert_eq!(listed.len(), expected.len());
    for (meta, (key, from, to)) in listed.iter().zip(expected) {
        assert_eq!(meta.key, key);
        assert_within(&format!("list {key}"), meta.last_modified, from, to);
        let head = store.head(key).await.unwrap();
        assert_eq!(head.last_modified, meta.last_modified, "{key}");
    }
}

/// `list_multipart` shows the uploads that were started and neither completed nor
/// aborted, by prefix, with the time they started; a listed upload can be aborted by
/// what the listing says, and neither an aborted nor a completed upload is listed
/// again. Directories under `.tmp/multipart` that are no uploads are not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_uploads_are_listed_until_completed_or_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.list_multipart("").await.unwrap().is_empty());

    let started = system_time();
    let doomed = store.create_multipart("db/b.sst").await.unwrap();
    let finished = store.create_multipart("db/a.sst").await.unwrap();
    let elsewhere = store.create_multipart("wal/1").await.unwrap();
    let created = system_time();
    store
        .put_part("db/b.sst", &doomed, 1, pattern(4096, 1))
        .await
        .unwrap();
    let part = store
        .put_part("db/a.sst", &finished, 1, pattern(100, 2))
        .await
        .unwrap();
    // Not uploads: a directory without its key (a crash inside `create_multipart` in
    // the layout before the key was recorded first) and a name the store never makes.
    std::fs::create_dir(dir.path().join(".tmp/multipart/123-0-0")).unwrap();
    std::fs::create_dir(dir.path().join(".tmp/multipart/not an id")).unwrap();

    let listed = store.list_multipart("db/").await.unwrap();
    let pending =
        |key: &str, upload: &terrace_tiering::store::MultipartId| (key.to_owned(), upload.clone());
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.key.clone(), p.upload.clone()))
            .collect::<Vec<_>>(),
        vec![pending("db/a.sst", &finished), pending("db/b.sst", &doomed)]
    );
    for p in &listed {
        assert_within(&p.key, p.initiated, started, created);
    }
    assert_eq!(store.list_multipart("").await.unwrap().len(), 3);
    assert_eq!(store.list_multipart("db/b").await.unwrap().len(), 1);
    assert!(store.list_multipart("nothing/").await.unwrap().is_empty());

    // Abort what the listing names, as a collector would.
    let PendingMultipart { key, upload, .. } = &listed[1];
    store.abort_multipart(key, upload).await.unwrap();
    assert!(!dir.path().join(".tmp/multipart").join(&doomed.0).exists());
    store
        .complete_multipart("db/a.sst", &finished, vec![part])
        .await
        .unwrap();
    assert!(store.list_multipart("db/").await.unwrap().is_empty());
    let rest = store.list_multipart("").await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].key.as_str(), &rest[0].upload),
        ("wal/1", &elsewhere)
    );

    let err = store.list_multipart("/abs").await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    assert_eq!(err.op, "list_multipart");
    let err = store.list_multipart("a/../b").await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
}
