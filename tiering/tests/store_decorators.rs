//! The store decorators: retries recover from injected faults and stop where they
//! should, timeouts become `Timeout`, instrumentation counts exactly, fault
//! injection replays from its seed, and every layer forwards the listing of open
//! multipart uploads and the objects' times.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use terrace_tiering::store::fault::{FaultConfig, FaultCounts, FaultyStore, Latency};
use terrace_tiering::store::instrument::{InstrumentedStore, StoreOp};
use terrace_tiering::store::local_dir::LocalDirStore;
use terrace_tiering::store::retry::{RetryConfig, RetryingStore};
use terrace_tiering::store::uri::{open_uri, stack, StoreUri};
use terrace_tiering::store::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreErrorKind,
    StoreResult,
};

/// Counts the calls that reach the store it wraps.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    calls: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn ObjectStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            calls: AtomicU64::new(0),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn hit(&self) -> &dyn ObjectStore {
        self.calls.fetch_add(1, Ordering::SeqCst);
        &*self.inner
    }
}

impl ObjectStore for Counting {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        self.hit().put(key, body)
    }
    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        self.hit().create_multipart(key)
    }
    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        self.hit().put_part(key, upload, part_number, body)
    }
    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.hit().complete_multipart(key, upload, parts)
    }
    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.hit().abort_multipart(key, upload)
    }
    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        self.hit().get_range(key, range)
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        self.hit().get(key)
    }
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        self.hit().head(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        self.hit().list(prefix)
    }
    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        self.hit().list_multipart(prefix)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        self.hit().delete(key)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A store whose gets never answer.
#[derive(Debug)]
struct Hanging;

impl ObjectStore for Hanging {
    fn put<'a>(&'a self, _: &'a str, _: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(std::future::pending())
    }
    fn create_multipart<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(std::future::pending())
    }
    fn put_part<'a>(
        &'a self,
        _: &'a str,
        _: &'a MultipartId,
        _: u32,
        _: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(std::future::pending())
    }
    fn complete_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a MultipartId,
        _: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(std::future::pending())
    }
    fn abort_multipart<'a>(
        &'a self,
        _: &'a str,
        _: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(std::future::pending())
    }
    fn get_range<'a>(&'a self, _: &'a str, _: Range<u64>) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(std::future::pending())
    }
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(std::future::pending())
    }
    fn head<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(std::future::pending())
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(std::future::pending())
    }
    fn list_multipart<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(std::future::pending())
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(std::future::pending())
    }
    fn describe(&self) -> String {
        "hanging://".to_owned()
    }
}

fn local(dir: &tempfile::TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(LocalDirStore::open(dir.path(), true).expect("open"))
}

fn body(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn quick_retries(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        request_timeout: Some(Duration::from_secs(10)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_recover_every_call_from_a_store_failing_half_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStore::new(
        local(&dir),
        FaultConfig {
            seed: 11,
            error_rate: 0.5,
            ..FaultConfig::default()
        },
    ));
    let store = RetryingStore::with_jitter_seed(faulty.clone(), quick_retries(30), 1);

    for i in 0..40u8 {
        store
            .put(&format!("obj/{i:03}"), body(1000 + i as usize, i))
            .await
            .unwrap();
    }
    let key = "obj/multi";
    let upload = store.create_multipart(key).await.unwrap();
    let mut receipts = Vec::new();
    for n in [2u32, 1, 3] {
        receipts.push(
            store
                .put_part(key, &upload, n, body(5000, n as u8))
                .await
                .unwrap(),
        );
    }
    store
        .complete_multipart(key, &upload, receipts)
        .await
        .unwrap();

    for i in 0..40u8 {
        let key = format!("obj/{i:03}");
        let len = 1000 + i as u64;
        assert_eq!(store.head(&key).await.unwrap().size, len);
        assert_eq!(
            store.get_range(&key, 0..len).await.unwrap(),
            body(len as usize, i)
        );
    }
    let whole: Vec<u8> = [1u8, 2, 3]
        .iter()
        .flat_map(|&n| body(5000, n).to_vec())
        .collect();
    assert_eq!(store.get_range(key, 0..15_000).await.unwrap(), whole);
    assert_eq!(store.list("obj/").await.unwrap().len(), 41);

    let counts = faulty.counts();
    assert!(
        counts.errors_before > 0 && counts.errors_after > 0,
        "{counts:?}"
    );
    // Every injected failure was retried, and nothing else was.
    assert_eq!(store.retries(), counts.failures());
    assert_eq!(store.gave_up(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_after_max_attempts_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let below = Counting::new(local(&dir));
    let faulty = Arc::new(FaultyStore::new(
        below.clone(),
        FaultConfig {
            seed: 3,
            error_rate: 1.0,
            ..FaultConfig::default()
        },
    ));
    let store = RetryingStore::new(faulty.clone(), quick_retries(4));
    let err = store.put("k", body(10, 0)).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient);
    assert_eq!((err.op, err.key.as_str()), ("put", "k"));
    assert!(
        err.message.contains("gave up after 4 attempts"),
        "{}",
        err.message
    );
    assert!(err.message.contains("injected"), "{}", err.message);
    assert_eq!(faulty.counts().failures(), 4);
    assert_eq!(store.retries(), 3);
    assert_eq!(store.gave_up(), 1);
    // Errors after the write reached the store; errors before did not.
    assert_eq!(below.calls(), faulty.counts().errors_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_that_cannot_pass_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let below = Counting::new(local(&dir));
    let store = RetryingStore::new(below.clone(), quick_retries(6));

    let err = store.get_range("missing", 0..1).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(below.calls(), 1);
    let err = store.head("../bad").await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidArgument);
    assert_eq!(below.calls(), 2);
    assert!(!err.message.contains("gave up"), "{}", err.message);
    assert_eq!(store.retries(), 0);
    assert_eq!(store.gave_up(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_that_run_out_of_time_are_timeouts() {
    // A store that never answers: each attempt times out, then the call gives up.
    let below = Counting::new(Arc::new(Hanging));
    let store = RetryingStore::new(
        below.clone(),
        RetryConfig {
            request_timeout: Some(Duration::from_millis(20)),
            ..quick_retries(3)
        },
    );
    let err = store.get_range("k", 0..1).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Timeout);
    assert_eq!(err.op, "get");
    assert_eq!(below.calls(), 3);
    assert_eq!(store.retries(), 2);

    // An injected timeout is a Timeout too, and never reaches the store.
    let dir = tempfile::tempdir().unwrap();
    let below = Counting::new(local(&dir));
    let faulty = FaultyStore::new(
        below.clone(),
        FaultConfig {
            timeout_rate: 1.0,
            timeout: Duration::from_millis(5),
            ..FaultConfig::default()
        },
    );
    let err = faulty.put("k", body(1, 0)).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Timeout);
    assert_eq!(below.calls(), 0);
    assert_eq!(faulty.counts().timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrumentation_counts_requests_errors_and_bytes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = InstrumentedStore::new(local(&dir));
    for (key, len) in [("a", 10), ("b", 100), ("c", 1000)] {
        store.put(key, body(len, 1)).await.unwrap();
    }
    store.get_range("a", 0..5).await.unwrap();
    store.get_range("c", 100..150).await.unwrap();
    store.get_range("missing", 0..1).await.unwrap_err();
    store.get_range("a", 0..11).await.unwrap_err();
    assert_eq!(store.get("b").await.unwrap(), body(100, 1));
    store.get("missing").await.unwrap_err();
    store.head("b").await.unwrap();
    store.list("").await.unwrap();
    store.delete("b").await.unwrap();
    let upload = store.create_multipart("m").await.unwrap();
    let p1 = store.put_part("m", &upload, 1, body(300, 2)).await.unwrap();
    let p2 = store.put_part("m", &upload, 2, body(44, 3)).await.unwrap();
    store
        .complete_multipart("m", &upload, vec![p1, p2])
        .await
        .unwrap();
    let doomed = store.create_multipart("n").await.unwrap();
    assert_eq!(store.list_multipart("").await.unwrap().len(), 1);
    store.abort_multipart("n", &doomed).await.unwrap();

    let stats = store.stats();
    let counts = |op| {
        let s = stats.op(op);
        (s.count, s.errors, s.bytes)
    };
    assert_eq!(counts(StoreOp::Put), (3, 0, 1110));
    assert_eq!(counts(StoreOp::Get), (6, 3, 155));
    assert_eq!(counts(StoreOp::Head), (1, 0, 0));
    assert_eq!(counts(StoreOp::List), (1, 0, 0));
    assert_eq!(counts(StoreOp::Delete), (1, 0, 0));
    assert_eq!(counts(StoreOp::CreateMultipart), (2, 0, 0));
    assert_eq!(counts(StoreOp::PutPart), (2, 0, 344));
    assert_eq!(counts(StoreOp::CompleteMultipart), (1, 0, 0));
    assert_eq!(counts(StoreOp::AbortMultipart), (1, 0, 0));
    assert_eq!(counts(StoreOp::ListMultipart), (1, 0, 0));
    assert_eq!((stats.requests(), stats.errors()), (19, 3));
    for op in StoreOp::ALL {
        let s = stats.op(op);
        assert!(s.latency_us_p50 >= 1, "{op:?} has no latency");
        assert!(s.latency_us_p50 <= s.latency_us_p99 && s.latency_us_p99 <= s.latency_us_max);
    }

    let lines = stats.summary_lines();
    assert_eq!(lines.len(), 10);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("object_store list_multipart: 1 requests, 0 errors")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("object_store get: 6 requests, 3 errors, 155 B, p50 ")),
        "{lines:#?}"
    );

    store.reset();
    let stats = store.stats();
    assert_eq!(stats.requests(), 0);
    assert_eq!(stats.get.latency_us_max, 0);
    assert!(stats.summary_lines().is_empty());
}

/// Runs a fixed sequence of calls through a fresh faulty store; returns each call's
/// outcome and the fault counts.
async fn fault_run(seed: u64) -> (Vec<Result<(), StoreErrorKind>>, FaultCounts) {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStore::new(
        local(&dir),
        FaultConfig {
            seed,
            latency: Latency::Uniform {
                min: Duration::ZERO,
                max: Duration::from_micros(200),
            },
            error_rate: 0.3,
            timeout_rate: 0.1,
            timeout: Duration::from_millis(1),
            slow_body_rate: 0.2,
            slow_body: Duration::from_micros(100),
        },
    );
    let mut outcomes = Vec::new();
    for i in 0..60u8 {
        let key = format!("k{}", i % 7);
        let outcome = match i % 3 {
            0 => faulty.put(&key, body(16, i)).await,
            1 => faulty.head(&key).await.map(drop),
            _ => faulty.get_range(&key, 0..16).await.map(drop),
        };
        outcomes.push(outcome.map_err(|e| e.kind));
    }
    (outcomes, faulty.counts())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_injects_the_same_faults() {
    let (first, first_counts) = fault_run(42).await;
    let (second, second_counts) = fault_run(42).await;
    assert_eq!(first, second);
    assert_eq!(first_counts, second_counts);
    assert!(
        first_counts.failures() > 0 && first_counts.slow_bodies > 0,
        "{first_counts:?}"
    );
    let (other, _) = fault_run(43).await;
    assert_ne!(
        first, other,
        "a different seed should give different faults"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_injection_passes_calls_through() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = FaultyStore::new(
        local(&dir),
        FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        },
    );
    assert!(faulty.put("k", body(1, 0)).await.is_err());
    faulty.set_enabled(false);
    faulty.put("k", body(1, 0)).await.unwrap();
    assert_eq!(faulty.head("k").await.unwrap().size, 1);
    assert_eq!(faulty.counts().failures(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_stack_layers_instrumented_retrying_faulty() {
    let dir = tempfile::tempdir().unwrap();
    let uri = StoreUri::parse(&format!("file://{}/bucket", dir.path().display())).unwrap();
    let err = open_uri(&uri, false).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NoSuchBucket);
    let base = open_uri(&uri, true).await.unwrap();

    let built = stack(
        base,
        Some(FaultConfig {
            seed: 5,
            error_rate: 0.5,
            ..FaultConfig::default()
        }),
        quick_retries(30),
    );
    let store = built.store();
    for i in 0..20u8 {
        store.put(&format!("x/{i}"), body(64, i)).await.unwrap();
    }
    let faulty = built.faulty.as_ref().unwrap();
    // The instrumentation sees the engine's 20 calls; the retries absorbed the faults.
    assert_eq!(built.instrumented.stats().put.count, 20);
    assert_eq!(built.instrumented.stats().put.errors, 0);
    assert!(faulty.counts().failures() > 0);
    assert_eq!(built.retrying.retries(), faulty.counts().failures());
    assert_eq!(built.base.list("x/").await.unwrap().len(), 20);
    assert!(
        store.describe().starts_with("file:///"),
        "{}",
        store.describe()
    );

    let plain = stack(built.base.clone(), None, RetryConfig::default());
    assert!(plain.faulty.is_none());
    plain.store().head("x/0").await.unwrap();
}

/// `list_multipart` and the times in `ObjectMeta` pass through every decorator: the
/// faulty store injects faults into listings, the retrying store retries them away,
/// the instrumented store counts them, and the answer is what the store beneath said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decorator_forwards_open_uploads_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let base = local(&dir);
    let upload = base.create_multipart("db/open.sst").await.unwrap();
    base.create_multipart("wal/open").await.unwrap();
    base.put("db/done.sst", body(10, 1)).await.unwrap();
    let open = base.list_multipart("db/").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].key.as_str(), &open[0].upload),
        ("db/open.sst", &upload)
    );
    assert!(open[0].initiated.is_some());
    let done = base.head("db/done.sst").await.unwrap();
    assert!(done.last_modified.is_some());

    let below = Counting::new(base.clone());
    let faulty = Arc::new(FaultyStore::new(
        below.clone(),
        FaultConfig {
            seed: 7,
            error_rate: 0.5,
            ..FaultConfig::default()
        },
    ));
    let retrying = Arc::new(RetryingStore::with_jitter_seed(
        faulty.clone(),
        quick_retries(30),
        2,
    ));
    let store = InstrumentedStore::new(retrying.clone());
    for _ in 0..10 {
        assert_eq!(store.list_multipart("db/").await.unwrap(), open);
    }
    assert_eq!(store.head("db/done.sst").await.unwrap(), done);
    assert_eq!(store.list("db/").await.unwrap(), vec![done.clone()]);

    let stats = store.stats();
    assert_eq!(
        (stats.list_multipart.count, stats.list_multipart.errors),
        (10, 0)
    );
    let counts = faulty.counts();
    assert!(counts.errors_before > 0, "{counts:?}");
    assert_eq!(retrying.retries(), counts.failures());
    // Reads fail only before the request: each call reached the store once.
    assert_eq!(below.calls(), 12);

    // The store's own refusal comes back through the stack, named, and not retried.
    let retries = retrying.retries();
    let err = store.list_multipart("/abs").await.unwrap_err();
    assert_eq!(
        (err.kind, err.op),
        (StoreErrorKind::InvalidArgument, "list_multipart")
    );
    assert_eq!(below.calls(), 13);
    assert_eq!(
        retrying.retries() - retries,
        faulty.counts().failures() - counts.failures()
    );
    assert_eq!(store.stats().list_multipart.errors, 1);

    // A listing that never answers times out like any other call.
    let hanging = RetryingStore::new(
        Arc::new(Hanging),
        RetryConfig {
            request_timeout: Some(Duration::from_millis(10)),
            ..quick_retries(2)
        },
    );
    let err = hanging.list_multipart("").await.unwrap_err();
    assert_eq!(
        (err.kind, err.op),
        (StoreErrorKind::Timeout, "list_multipart")
    );
}

/// A whole-object `get` through the whole stack (instrumentation, retries, injected
/// latency) is one request to the store below, with the latency paid once, and it
/// is retried like any read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_object_get_is_one_request_through_every_decorator() {
    let dir = tempfile::tempdir().unwrap();
    let below = Counting::new(local(&dir));
    below.put("meta", body(4_000, 9)).await.unwrap();
    let calls_before = below.calls();
    let faulty = Arc::new(FaultyStore::new(
        below.clone(),
        FaultConfig {
            latency: Latency::Fixed(Duration::from_millis(40)),
            ..FaultConfig::default()
        },
    ));
    let stack = InstrumentedStore::new(Arc::new(RetryingStore::new(faulty, quick_retries(3))));

    let began = terrace_tiering::clock::now();
    assert_eq!(stack.get("meta").await.unwrap(), body(4_000, 9));
    let took = began.elapsed();
    // One call below the fault layer is one injected delay: the latency is paid
    // once (an upper bound on the time would only measure the machine's load).
    assert_eq!(
        below.calls() - calls_before,
        1,
        "one request below the stack"
    );
    assert!(
        took >= Duration::from_millis(40),
        "latency injected: {took:?}"
    );
    assert_eq!(stack.stats().op(StoreOp::Get).count, 1);
    assert_eq!(stack.stats().op(StoreOp::Head).count, 0);

    // A transient failure is retried; a missing object is not.
    let flaky = Counting::new(local(&dir));
    let faulty = Arc::new(FaultyStore::new(
        flaky.clone(),
        FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        },
    ));
    let retrying = RetryingStore::new(faulty.clone(), quick_retries(3));
    let err = retrying.get("meta").await.unwrap_err();
    assert_eq!((err.kind, err.op), (StoreErrorKind::Transient, "get"));
    assert_eq!(retrying.retries(), 2);
    faulty.set_enabled(false);
    let err = retrying.get("nothing").await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
}
