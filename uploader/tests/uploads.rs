//! Successful uploads: bytes arrive exactly, parallelism stays within its bounds and
//! the stats add up.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{block_on, pattern, write_file, Knobs, MemStore};
use terrace_tiering::store::{IoRuntime, IoRuntimeConfig};
use terrace_uploader::{UploadJob, UploadPriority, Uploader, UploaderConfig};

const KIB: u64 = 1024;

fn runtime() -> IoRuntime {
    IoRuntime::start(&IoRuntimeConfig {
        threads: 2,
        max_in_flight: 64,
    })
    .expect("I/O runtime")
}

fn small_parts(part_bytes: u64, threshold: u64, max_parallel_parts: usize) -> UploaderConfig {
    let cfg = UploaderConfig {
        multipart_threshold_bytes: threshold,
        part_bytes,
        max_parallel_parts,
        allow_small_parts: true,
        ..UploaderConfig::default()
    };
    cfg.validate().expect("valid config");
    cfg
}

fn job(key: &str, path: std::path::PathBuf, size: usize) -> UploadJob {
    UploadJob {
        key: key.into(),
        path,
        size: size as u64,
        priority: UploadPriority::Background,
    }
}

#[test]
fn small_file_arrives_byte_exact_with_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(100_000, 1);
    let path = write_file(dir.path(), "000001.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let up = Uploader::new(rt.handle(), store.clone(), UploaderConfig::default());

    let receipt = block_on(up.upload(job("db/000001.sst", path, data.len())))
        .expect("not cancelled")
        .expect("uploaded");

    assert_eq!(store.object("db/000001.sst").as_deref(), Some(&data[..]));
    assert_eq!(receipt.key, "db/000001.sst");
    assert_eq!(receipt.size, data.len() as u64);
    assert_eq!(receipt.crc32, Some(crc32fast::hash(&data)));
    assert_eq!(receipt.parts, 1);
    assert_eq!(store.calls("put"), 1);
    assert_eq!(store.calls("create_multipart"), 0);
    // Verification: one head and one ranged read of the 64 KiB tail.
    assert_eq!(store.calls("head"), 1);
    assert_eq!(store.calls("get_range"), 1);
}

#[test]
fn empty_file_is_one_put_and_verifies_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "empty.sst", &[]);
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let up = Uploader::new(rt.handle(), store.clone(), UploaderConfig::default());

    let receipt = block_on(up.upload(job("empty.sst", path, 0)))
        .unwrap()
        .unwrap();

    assert_eq!(store.object("empty.sst"), Some(Vec::new()));
    assert_eq!(receipt.crc32, Some(crc32fast::hash(&[])));
    assert_eq!(store.calls("get_range"), 0);
}

#[test]
fn large_file_goes_multipart_within_the_parallel_part_bound() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300 * 1024 + 123, 2);
    let path = write_file(dir.path(), "big.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        put_delay: Duration::from_millis(40),
        ..Knobs::default()
    }));
    let cfg = small_parts(64 * KIB, 128 * KIB, 2);
    let up = Uploader::new(rt.handle(), store.clone(), cfg);

    let receipt = block_on(up.upload(job("big.sst", path, data.len())))
        .unwrap()
        .expect("uploaded");

    assert_eq!(store.object("big.sst").as_deref(), Some(&data[..]));
    assert_eq!(receipt.parts, 5);
    assert_eq!(store.calls("put_part"), 5);
    assert_eq!(store.calls("put"), 0);
    assert_eq!(
        receipt.crc32,
        Some(crc32fast::hash(&data)),
        "combined part CRCs"
    );
    assert!(store.peak_parts() <= 2, "peak {} parts", store.peak_parts());
    assert_eq!(store.peak_parts(), 2, "parts did run in parallel");
    assert_eq!(store.open_uploads(), 0);
    assert!(store.aborted().is_empty());
}

#[test]
fn a_file_exactly_at_the_threshold_goes_multipart() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(128 * 1024, 3);
    let path = write_file(dir.path(), "edge.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let up = Uploader::new(
        rt.handle(),
        store.clone(),
        small_parts(64 * KIB, 128 * KIB, 4),
    );

    let receipt = block_on(up.upload(job("edge.sst", path, data.len())))
        .unwrap()
        .unwrap();

    assert_eq!(receipt.parts, 2);
    assert_eq!(store.object("edge.sst").as_deref(), Some(&data[..]));
}

#[test]
fn at_most_max_parallel_uploads_run_and_stats_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        put_delay: Duration::from_millis(30),
        ..Knobs::default()
    }));
    let cfg = UploaderConfig {
        max_parallel_uploads: 3,
        ..UploaderConfig::default()
    };
    let up = Uploader::new(rt.handle(), store.clone(), cfg);
    let files: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("db/{i:06}.sst"), pattern(1000 + i * 777, i as u64)))
        .collect();
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();

    let tasks: Vec<_> = files
        .iter()
        .map(|(key, data)| {
            let path = write_file(dir.path(), key.trim_start_matches("db/"), data);
            up.upload(job(key, path, data.len()))
        })
        .collect();
    // upload() returns at once: everything is counted before any upload can finish.
    let s = up.stats();
    assert_eq!(s.queued_files + s.in_progress_files + s.completed_files, 10);
    assert_eq!(s.pending_bytes + s.completed_bytes, total);
    // While they run, no more than three are in progress.
    let mut saw_queue = false;
    loop {
        let s = up.stats();
        assert!(s.in_progress_files <= 3, "{}", s.summary_line());
        saw_queue |= s.queued_files > 0;
        if s.completed_files == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for t in tasks {
        block_on(t).expect("not cancelled").expect("uploaded");
    }

    assert!(saw_queue, "jobs waited for a slot");
    assert!(store.peak_puts() <= 3, "peak {} puts", store.peak_puts());
    assert!(store.peak_puts() >= 2, "uploads ran in parallel");
    for (key, data) in &files {
        assert_eq!(store.object(key).as_deref(), Some(&data[..]), "{key}");
    }
    let s = up.stats();
    assert_eq!(s.queued_files, 0);
    assert_eq!(s.in_progress_files, 0);
    assert_eq!(s.pending_bytes, 0);
    assert_eq!(s.completed_files, 10);
    assert_eq!(s.completed_bytes, total);
    assert_eq!((s.failed, s.cancelled), (0, 0));
    // Ten uploads of at least one 30 ms put each, three at a time.
    assert!(s.latency_p50_ms >= 30.0, "{}", s.summary_line());
    assert!(s.latency_max_ms >= s.latency_p99_ms && s.latency_p99_ms >= s.latency_p50_ms);
    assert!(
        s.latency_max_ms >= 90.0,
        "last job waited for slots: {}",
        s.summary_line()
    );
    assert!(s.summary_line().contains("10 done"), "{}", s.summary_line());
}

#[test]
fn an_urgent_upload_does_not_queue_behind_background_ones() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let store = Arc::new(MemStore::with(Knobs {
        put_delay: Duration::from_millis(100),
        ..Knobs::default()
    }));
    let cfg = UploaderConfig {
        max_parallel_uploads: 1,
        max_parallel_urgent_uploads: 1,
        ..UploaderConfig::default()
    };
    let up = Uploader::new(rt.handle(), store.clone(), cfg);
    // Eight background uploads of 100 ms each, one at a time: the last ends after
    // ~800 ms (each also reads back for verification).
    let background: Vec<_> = (0..8)
        .map(|i| {
            let data = pattern(1000, i);
            let path = write_file(dir.path(), &format!("b{i}.sst"), &data);
            up.upload(job(&format!("db/b{i}.sst"), path, data.len()))
        })
        .collect();
    let data = pattern(1000, 99);
    let path = write_file(dir.path(), "u.sst", &data);
    let mut urgent = job("db/u.sst", path, data.len());
    urgent.priority = UploadPriority::Urgent;
    let receipt = block_on(up.upload(urgent))
        .expect("not cancelled")
        .expect("uploaded");
    // It ran in its own slot, beside the first background upload, not after all eight.
    assert!(
        receipt.elapsed < Duration::from_millis(400),
        "urgent upload took {:?}",
        receipt.elapsed
    );
    assert!(
        up.stats().completed_files < 8,
        "{}",
        up.stats().summary_line()
    );
    assert_eq!(store.object("db/u.sst").as_deref(), Some(&data[..]));
    let mut last = Duration::ZERO;
    for t in background {
        last = block_on(t)
            .expect("not cancelled")
            .expect("uploaded")
            .elapsed;
    }
    assert!(
        last >= Duration::from_millis(800),
        "background took {last:?}"
    );
    assert!(store.peak_puts() <= 2, "peak {} puts", store.peak_puts());
}

#[test]
fn verification_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(5000, 9);
    let path = write_file(dir.path(), "a.sst", &data);
    let rt = runtime();
    let store = Arc::new(MemStore::default());
    let cfg = UploaderConfig {
        verify: false,
        ..UploaderConfig::default()
    };
    let up = Uploader::new(rt.handle(), store.clone(), cfg);

    block_on(up.upload(job("a.sst", path, data.len())))
        .unwrap()
        .unwrap();

    assert_eq!(store.calls("head") + store.calls("get_range"), 0);
}

#[test]
fn uploader_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Uploader>();
}

/// Through the engine's store stack over the local-directory store, a file is linked
/// rather than read and copied (no CRC: nothing was read; the put is counted once
/// with the file's bytes). With fault injection in the stack the store is no longer
/// the plain directory, so the bytes are copied and checked as for any store.
#[test]
fn local_directory_store_links_files_unless_faults_are_injected() {
    use std::os::unix::fs::MetadataExt;
    use terrace_tiering::store::fault::FaultConfig;
    use terrace_tiering::store::instrument::StoreOp;
    use terrace_tiering::store::local_dir::LocalDirStore;
    use terrace_tiering::store::retry::RetryConfig;
    use terrace_tiering::store::uri::stack;

    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 4);
    let path = write_file(dir.path(), "000007.sst", &data);
    let rt = runtime();
    for faults in [None, Some(FaultConfig::default())] {
        let root = dir.path().join(format!("objects-{}", faults.is_some()));
        let base: Arc<dyn terrace_tiering::store::ObjectStore> =
            Arc::new(LocalDirStore::open(&root, true).expect("store"));
        let s = stack(base, faults.clone(), RetryConfig::default());
        let up = Uploader::new(
            rt.handle(),
            s.instrumented.clone(),
            UploaderConfig::default(),
        );
        let receipt = block_on(up.upload(job("db/000007.sst", path.clone(), data.len())))
            .expect("not cancelled")
            .expect("uploaded");
        let object = root.join("db/000007.sst");
        assert_eq!(std::fs::read(&object).unwrap(), data);
        let same_inode =
            std::fs::metadata(&object).unwrap().ino() == std::fs::metadata(&path).unwrap().ino();
        let stats = s.instrumented.stats();
        let puts = stats.op(StoreOp::Put);
        if faults.is_none() {
            assert!(same_inode, "linked");
            assert_eq!(receipt.crc32, None);
            assert_eq!((puts.count, puts.bytes), (1, data.len() as u64));
        } else {
            assert!(!same_inode, "copied");
            assert_eq!(receipt.crc32, Some(crc32fast::hash(&data)));
            assert_eq!((puts.count, puts.bytes), (1, data.len() as u64));
        }
        up.close();
    }
}
