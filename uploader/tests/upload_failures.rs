//! Failed and cancelled uploads: the right error, no half-done state left in the
//! store, and stats that still add up.

mod support;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use support::{block_on, pattern, wait_until, write_file, Knobs, MemStore};
use terrace_tiering::store::{IoRuntime, IoRuntimeConfig, StoreErrorKind, TaskCancelled};
use terrace_uploader::{UploadError, UploadJob, UploadPriority, Uploader, UploaderConfig};

const KIB: u64 = 1024;

fn runtime() -> IoRuntime {
    IoRuntime::start(&IoRuntimeConfig {
        threads: 2,
        max_in_flight: 64,
    })
    .expect("I/O runtime")
}

fn multipart_cfg() -> UploaderConfig {
    UploaderConfig {
        multipart_threshold_bytes: 128 * KIB,
        part_bytes: 64 * KIB,
        max_parallel_parts: 2,
        allow_small_parts: true,
        ..UploaderConfig::default()
    }
}

fn job(key: &str, path: std::path::PathBuf, size: usize) -> UploadJob {
    UploadJob {
        key: key.into(),
        path,
        size: size as u64,
        priority: UploadPriority::Background,
    }
}

/// Uploads `data` once as `x.sst` to a fresh store with `knobs`; the store and how
/// the upload ended.
fn upload_once(
    knobs: Knobs,
    cfg: UploaderConfig,
    data: &[u8],
) -> (Arc<MemStore>, Result<(), UploadError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "x.sst", data);
    let rt = runtime();
    let store = Arc::new(MemStore::with(knobs));
    let up = Uploader::new(rt.handle(), store.clone(), cfg);
    let done = block_on(up.upload(job("x.sst", path, data.len())))
        .unwrap()
        .map(drop);
    (store, done)
}

fn assert_settled(up: &Uploader, failed: u64, cancelled: u64) {
    let s = up.stats();
    assert_eq!(s.queued_files, 0, "{}", s.summary_line());
    assert_eq!(s.in_progress_files, 0, "{}", s.summary_line());
    assert_eq!(s.pending_bytes, 0, "{}", s.summary_line());
    assert_eq!(s.completed_files, 0, "{}", s.summary_line());
    assert_eq!(
        (s.failed, s.cancelled),
        (failed, cancelled),
        "{}",
        s.summary_line()
    );
}

#[test]
fn corrupted_tail_is_a_mismatch_and_the_bad_object_is_deleted() {
    for (name, size, cfg) in [
        ("small", 100_000, UploaderConfig::default()),
        ("multipart", 300 * 1024, multipart_cfg()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(size, 4);
        let path = write_file(dir.path(), "x.sst", &data);
        let rt = runtime();
        let store = Arc::new(MemStore::with(Knobs {
            corrupt_tail: true,
            ..Knobs::default()
        }));
        let up = Uploader::new(rt.handle(), store.clone(), cfg);

        let err = block_on(up.upload(job("x.sst", path, size)))
            .unwrap()
            .unwrap_err();

        match &err {
            UploadError::Mismatch { key, detail } => {
                assert_eq!(key, "x.sst");
                assert!(
                    detail.contains(&format!("offset {}", size - 1)),
                    "{name}: {detail}"
                );
            }
            other => panic!("{name}: expected a mismatch, got {other:?}"),
        }
        assert!(err.is_retryable());
        assert_eq!(store.object("x.sst"), None, "{name}: bad object deleted");
        assert_eq!(store.deleted(), vec!["x.sst".to_string()]);
        assert_settled(&up, 1, 0);
    }
}

#[test]
fn a_store_reporting_the_wrong_size_is_a_mismatch() {
    let knobs = Knobs {
        head_lies: true,
        ..Knobs::default()
    };
    let (_, done) = upload_once(knobs, UploaderConfig::default(), &pattern(10_000, 5));
    let err = done.unwrap_err();

    assert!(
        matches!(&err, UploadError::Mismatch { detail, .. } if detail.contains("10001 bytes")),
        "{err}"
    );
}

#[test]
fn verification_reads_the_size_and_the_tail_in_one_round_trip() {
    for (name, size, cfg) in [
        ("small", 100_000, UploaderConfig::default()),
        ("multipart", 300 * 1024, multipart_cfg()),
    ] {
        let data = pattern(size, 7);
        let knobs = Knobs {
            read_delay: Duration::from_millis(50),
            ..Knobs::default()
        };
        let (store, done) = upload_once(knobs, cfg, &data);
        done.unwrap();

        assert_eq!(store.object("x.sst"), Some(data), "{name}");
        assert_eq!(
            (store.calls("head"), store.calls("get_range")),
            (1, 1),
            "{name}"
        );
        // Each read waits 50 ms: one after the other would never overlap.
        assert_eq!(
            store.peak_reads(),
            2,
            "{name}: head and tail read in flight together"
        );
    }
}

#[test]
fn a_wrong_size_is_reported_even_when_the_tail_read_fails() {
    let knobs = Knobs {
        head_lies: true,
        fail: Some(("get_range", 1, StoreErrorKind::Transient)),
        ..Knobs::default()
    };
    let (store, done) = upload_once(knobs, UploaderConfig::default(), &pattern(10_000, 8));
    let err = done.unwrap_err();

    assert!(
        matches!(&err, UploadError::Mismatch { detail, .. } if detail.contains("10001 bytes")),
        "{err}"
    );
    assert_eq!(store.object("x.sst"), None, "the bad object is deleted");
}

#[test]
fn a_failing_part_fails_the_upload_and_aborts_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300 * 1024, 6);
    let path = write_file(dir.path(), "x.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        fail: Some(("put_part", 3, StoreErrorKind::AccessDenied)),
        put_delay: Duration::from_millis(5),
        ..Knobs::default()
    }));
    let up = Uploader::new(rt.handle(), store.clone(), multipart_cfg());

    let err = block_on(up.upload(job("x.sst", path, data.len())))
        .unwrap()
        .unwrap_err();

    match &err {
        UploadError::Store(e) => {
            assert_eq!(e.kind, StoreErrorKind::AccessDenied);
            assert_eq!(e.op, "put_part");
            assert_eq!(e.key, "x.sst");
        }
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(store.aborted(), vec!["x.sst".to_string()]);
    assert_eq!(store.open_uploads(), 0, "parts freed");
    assert_eq!(store.calls("complete_multipart"), 0);
    assert!(store.calls("put_part") < 5, "no new part after the failure");
    assert_eq!(
        store.puts_in_flight(),
        0,
        "no part still sending after the abort"
    );
    assert_eq!(store.object("x.sst"), None);
    assert_settled(&up, 1, 0);
}

#[test]
fn a_failing_part_stops_its_stalled_siblings_before_aborting() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300 * 1024, 6);
    let path = write_file(dir.path(), "x.sst", &data);
    let rt = runtime();
    // Part 1 never finishes; part 2 fails.
    let store = Arc::new(MemStore::with(Knobs {
        fail: Some(("put_part", 2, StoreErrorKind::Other)),
        stall_puts: true,
        ..Knobs::default()
    }));
    let up = Uploader::new(rt.handle(), store.clone(), multipart_cfg());

    let err = block_on(up.upload(job("x.sst", path, data.len())))
        .unwrap()
        .unwrap_err();

    assert!(
        matches!(&err, UploadError::Store(e) if e.op == "put_part"),
        "{err:?}"
    );
    assert_eq!(store.puts_in_flight(), 0, "the stalled part was stopped");
    assert_eq!(store.aborted(), vec!["x.sst".to_string()]);
    assert_settled(&up, 1, 0);
}

#[test]
fn a_failing_complete_aborts_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(200 * 1024, 7);
    let path = write_file(dir.path(), "x.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        fail: Some(("complete_multipart", 1, StoreErrorKind::Transient)),
        ..Knobs::default()
    }));
    let up = Uploader::new(rt.handle(), store.clone(), multipart_cfg());

    let err = block_on(up.upload(job("x.sst", path, data.len())))
        .unwrap()
        .unwrap_err();

    assert!(matches!(&err, UploadError::Store(e) if e.op == "complete_multipart"));
    assert!(err.is_retryable(), "transient store errors are retryable");
    assert_eq!(store.aborted(), vec!["x.sst".to_string()]);
    assert_settled(&up, 1, 0);
}

#[test]
fn a_file_of_the_wrong_size_is_a_local_error_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1000, 8);
    let path = write_file(dir.path(), "x.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let up = Uploader::new(rt.handle(), store.clone(), UploaderConfig::default());

    let err = block_on(up.upload(job("x.sst", path.clone(), 999)))
        .unwrap()
        .unwrap_err();
    match &err {
        UploadError::Local { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), io::ErrorKind::InvalidData);
        }
        other => panic!("expected a local error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("x.sst"), "{err}");

    let missing = dir.path().join("missing.sst");
    let err = block_on(up.upload(job("m.sst", missing, 10)))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, UploadError::Local { source, .. } if source.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_eq!(store.calls("put") + store.calls("create_multipart"), 0);
    assert_settled(&up, 2, 0);
}

#[test]
fn runtime_shutdown_mid_upload_cancels_and_releases_pending_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        stall_puts: true,
        ..Knobs::default()
    }));
    let cfg = UploaderConfig {
        max_parallel_uploads: 1,
        ..multipart_cfg()
    };
    let up = Uploader::new(rt.handle(), store.clone(), cfg);
    // One multipart upload stalled in its parts, two small ones queued behind it.
    let sizes = [300 * 1024, 1000, 2000];
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let path = write_file(dir.path(), &format!("{i}.sst"), &pattern(size, i as u64));
            up.upload(job(&format!("{i}.sst"), path, size))
        })
        .collect();
    wait_until("the first upload to stall in its parts", || {
        store.puts_in_flight() == 2
    });
    let s = up.stats();
    assert_eq!(
        (s.in_progress_files, s.queued_files),
        (1, 2),
        "{}",
        s.summary_line()
    );
    assert_eq!(s.pending_bytes, sizes.iter().sum::<usize>() as u64);

    rt.shutdown_now();

    for t in tasks {
        assert_eq!(block_on(t).map(|_| ()), Err(TaskCancelled));
    }
    // The runtime drops each task (and its ticket) as it shuts down, on its own
    // threads; the counters settle as soon as it has.
    wait_until("pending bytes to drain", || up.stats().pending_bytes == 0);
    assert_settled(&up, 0, 3);
    assert_eq!(store.object_count(), 0);

    // A job submitted after the runtime stopped is cancelled, not leaked.
    let path = write_file(dir.path(), "late.sst", b"late");
    assert_eq!(
        block_on(up.upload(job("late.sst", path, 4))).map(|_| ()),
        Err(TaskCancelled)
    );
    wait_until("the late job to be released", || up.stats().cancelled == 4);
    assert_settled(&up, 0, 4);
}

#[test]
fn closing_cancels_queued_jobs_and_lets_running_ones_finish() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        put_delay: Duration::from_millis(100),
        ..Knobs::default()
    }));
    let cfg = UploaderConfig {
        max_parallel_uploads: 1,
        ..UploaderConfig::default()
    };
    let up = Uploader::new(rt.handle(), store.clone(), cfg);
    let data = pattern(500, 1);
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let path = write_file(dir.path(), &format!("{i}.sst"), &data);
            up.upload(job(&format!("{i}.sst"), path, data.len()))
        })
        .collect();
    wait_until("the first put", || store.puts_in_flight() == 1);

    up.close();

    let results: Vec<_> = tasks.into_iter().map(|t| block_on(t).unwrap()).collect();
    assert!(results[0].is_ok(), "{:?}", results[0]);
    for r in &results[1..] {
        assert!(matches!(r, Err(UploadError::Cancelled)), "{r:?}");
    }
    let s = up.stats();
    assert_eq!((s.completed_files, s.cancelled, s.pending_bytes), (1, 2, 0));
}
