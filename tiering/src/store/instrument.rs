//! Counts and times every call to the store it wraps.
//!
//! Per operation: requests, errors, bytes moved, and a latency histogram in
//! microseconds. Bytes count what successful calls moved: the body of a put or part
//! (in), the bytes a ranged get returned (out). Counters are atomics; each histogram
//! sits behind its own mutex, held only to record one value or to read quantiles.
//!
//! Placed outermost in a stack, it sees what the engine asked for (one request per
//! call, whatever the retries beneath did) and how long the engine waited.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreResult,
};

/// The operations an [`InstrumentedStore`] tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// [`ObjectStore::put`].
    Put,
    /// [`ObjectStore::put_part`].
    PutPart,
    /// [`ObjectStore::create_multipart`].
    CreateMultipart,
    /// [`ObjectStore::complete_multipart`].
    CompleteMultipart,
    /// [`ObjectStore::abort_multipart`].
    AbortMultipart,
    /// [`ObjectStore::get_range`].
    Get,
    /// [`ObjectStore::head`].
    Head,
    /// [`ObjectStore::list`].
    List,
    /// [`ObjectStore::list_multipart`].
    ListMultipart,
    /// [`ObjectStore::delete`].
    Delete,
}

impl StoreOp {
    /// Every operation, in the order summaries print them.
    pub const ALL: [StoreOp; 10] = [
        StoreOp::Put,
        StoreOp::PutPart,
        StoreOp::CreateMultipart,
        StoreOp::CompleteMultipart,
        StoreOp::AbortMultipart,
        StoreOp::Get,
        StoreOp::Head,
        StoreOp::List,
        StoreOp::ListMultipart,
        StoreOp::Delete,
    ];

    /// Short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::PutPart => "put_part",
            StoreOp::CreateMultipart => "create_multipart",
            StoreOp::CompleteMultipart => "complete_multipart",
            StoreOp::AbortMultipart => "abort_multipart",
            StoreOp::Get => "get",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::ListMultipart => "list_multipart",
            StoreOp::Delete => "delete",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one operation did since the store was made or last reset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls that finished (successfully or not).
    pub count: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Bytes moved by successful calls.
    pub bytes: u64,
    /// Median latency.
    pub latency_us_p50: u64,
    /// 99th percentile latency.
    pub latency_us_p99: u64,
    /// Slowest call.
    pub latency_us_max: u64,
}

/// A snapshot of an [`InstrumentedStore`]'s counters, one [`OpStats`] per operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Single-request puts.
    pub put: OpStats,
    /// Multipart parts.
    pub put_part: OpStats,
    /// Multipart uploads started.
    pub create_multipart: OpStats,
    /// Multipart uploads completed.
    pub complete_multipart: OpStats,
    /// Multipart uploads aborted.
    pub abort_multipart: OpStats,
    /// Ranged gets.
    pub get: OpStats,
    /// Heads.
    pub head: OpStats,
    /// Listings.
    pub list: OpStats,
    /// Listings of multipart uploads left open.
    pub list_multipart: OpStats,
    /// Deletes.
    pub delete: OpStats,
    /// The most requests (of any kind) that ran one after another, each begun
    /// after the one before it ended: the round trips a caller waited for in a
    /// row. Requests sent together count once. Since the last reset.
    pub round_trips_in_a_row: u64,
}

impl StoreStats {
    /// The stats of `op`.
    pub fn op(&self, op: StoreOp) -> &OpStats {
        match op {
            StoreOp::Put => &self.put,
            StoreOp::PutPart => &self.put_part,
            StoreOp::CreateMultipart => &self.create_multipart,
            StoreOp::CompleteMultipart => &self.complete_multipart,
            StoreOp::AbortMultipart => &self.abort_multipart,
            StoreOp::Get => &self.get,
            StoreOp::Head => &self.head,
            StoreOp::List => &self.list,
            StoreOp::ListMultipart => &self.list_multipart,
            StoreOp::Delete => &self.delete,
        }
    }

    fn op_mut(&mut self, op: StoreOp) -> &mut OpStats {
        match op {
            StoreOp::Put => &mut self.put,
            StoreOp::PutPart => &mut self.put_part,
            StoreOp::CreateMultipart => &mut self.create_multipart,
            StoreOp::CompleteMultipart => &mut self.complete_multipart,
            StoreOp::AbortMultipart => &mut self.abort_multipart,
            StoreOp::Get => &mut self.get,
            StoreOp::Head => &mut self.head,
            StoreOp::List => &mut self.list,
            StoreOp::ListMultipart => &mut self.list_multipart,
            StoreOp::Delete => &mut self.delete,
        }
    }

    /// Calls of every kind.
    pub fn requests(&self) -> u64 {
        StoreOp::ALL.iter().map(|&op| self.op(op).count).sum()
    }

    /// Failed calls of every kind.
    pub fn errors(&self) -> u64 {
        StoreOp::ALL.iter().map(|&op| self.op(op).errors).sum()
    }

    /// One line per operation that saw a request, e.g.
    /// `object_store get: 1234 requests, 0 errors, 5.1 MiB, p50 31.2 ms p99 35.0 ms`.
    pub fn summary_lines(&self) -> Vec<String> {
        StoreOp::ALL
            .iter()
            .filter(|&&op| self.op(op).count > 0)
            .map(|&op| {
                let s = self.op(op);
                format!(
                    "object_store {}: {} requests, {} errors, {}, p50 {} p99 {}",
                    op.name(),
                    s.count,
                    s.errors,
                    human_bytes(s.bytes),
                    human_us(s.latency_us_p50),
                    human_us(s.latency_us_p99),
                )
            })
            .collect()
    }
}

/// An [`ObjectStore`] that records what passes through it.
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    ops: [OpCounters; StoreOp::ALL.len()],
    /// The longest chain of requests one after another among those that ended: a
    /// request that begins now extends it by one when it ends.
    chain: AtomicU64,
}

struct OpCounters {
    count: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
}

impl OpCounters {
    fn new() -> OpCounters {
        OpCounters {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            // 1 µs to one hour at 3 significant digits. Fixed bounds, not auto-resizing:
            // `saturating_record` clamps to the current top instead of growing, so an
            // auto-resizing histogram would record every latency as 2 µs.
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

impl fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl InstrumentedStore {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: Arc<dyn ObjectStore>) -> InstrumentedStore {
        InstrumentedStore {
            inner,
            ops: std::array::from_fn(|_| OpCounters::new()),
            chain: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> StoreStats {
        let mut out = StoreStats::default();
        for op in StoreOp::ALL {
            let c = &self.ops[op.index()];
            let h = c.latency_us.lock().unwrap_or_else(PoisonError::into_inner);
            let (p50, p99, max) = if h.is_empty() {
                (0, 0, 0)
            } else {
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
            };
            *out.op_mut(op) = OpStats {
                count: c.count.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                latency_us_p50: p50,
                latency_us_p99: p99,
                latency_us_max: max,
            };
        }
        out.round_trips_in_a_row = self.chain.load(Ordering::SeqCst);
        out
    }

    /// Zeroes every counter (between benchmark phases, say). Calls in flight are
    /// counted in the new period when they finish.
    pub fn reset(&self) {
        self.chain.store(0, Ordering::SeqCst);
        for c in &self.ops {
            c.count.store(0, Ordering::Relaxed);
            c.errors.store(0, Ordering::Relaxed);
            c.bytes.store(0, Ordering::Relaxed);
            c.latency_us
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reset();
        }
    }

    /// Awaits `call`, then records its outcome: `bytes` of a success, its latency.
    async fn measure<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = StoreResult<T>>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> StoreResult<T> {
        let start = Instant::now();
        let link = self.chain.load(Ordering::SeqCst) + 1;
        let result = call.await;
        self.chain.fetch_max(link, Ordering::SeqCst);
        self.note(op, start, result.as_ref().map(bytes).ok());
        result
    }

    /// Records one request begun at `start`: its bytes, or `None` if it failed.
    fn note(&self, op: StoreOp, start: Instant, bytes: Option<u64>) {
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let c = &self.ops[op.index()];
        c.count.fetch_add(1, Ordering::Relaxed);
        match bytes {
            Some(b) => {
                c.bytes.fetch_add(b, Ordering::Relaxed);
            }
            None => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(us.max(1));
    }
}

impl ObjectStore for InstrumentedStore {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        let len = body.len() as u64;
        Box::pin(self.measure(StoreOp::Put, self.inner.put(key, body), move |_| len))
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a std::path::Path,
        size: u64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        // Counted as a put of the file's bytes, but only when the store took it (or
        // failed trying); otherwise the caller's own put is counted.
        Box::pin(async move {
            let start = Instant::now();
            let link = self.chain.load(Ordering::SeqCst) + 1;
            let result = self.inner.put_file(key, path, size).await;
            if !matches!(result, Ok(false)) {
                self.chain.fetch_max(link, Ordering::SeqCst);
            }
            match result {
                Ok(false) => {}
                Ok(true) => self.note(StoreOp::Put, start, Some(size)),
                Err(_) => self.note(StoreOp::Put, start, None),
            }
            result
        })
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(self.measure(
            StoreOp::CreateMultipart,
            self.inner.create_multipart(key),
            |_| 0,
        ))
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        let len = body.len() as u64;
        Box::pin(self.measure(
            StoreOp::PutPart,
            self.inner.put_part(key, upload, part_number, body),
            move |_| len,
        ))
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.measure(
            StoreOp::CompleteMultipart,
            self.inner.complete_multipart(key, upload, parts),
            |_| 0,
        ))
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.measure(
            StoreOp::AbortMultipart,
            self.inner.abort_multipart(key, upload),
            |_| 0,
        ))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(
            self.measure(StoreOp::Get, self.inner.get_range(key, range), |b| {
                b.len() as u64
            }),
        )
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(self.measure(StoreOp::Get, self.inner.get(key), |b| b.len() as u64))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(self.measure(StoreOp::Head, self.inner.head(key), |_| 0))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(self.measure(StoreOp::List, self.inner.list(prefix), |_| 0))
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(self.measure(
            StoreOp::ListMultipart,
            self.inner.list_multipart(prefix),
            |_| 0,
        ))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.measure(StoreOp::Delete, self.inner.delete(key), |_| 0))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// `812 B`, `4.0 KiB`, `5.1 MiB`, `2.3 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `640 µs`, `31.2 ms`, `2.50 s`.
fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_latencies_print_in_readable_units() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(5_347_738), "5.1 MiB");
        assert_eq!(human_us(640), "640 µs");
        assert_eq!(human_us(31_240), "31.2 ms");
        assert_eq!(human_us(2_500_000), "2.50 s");
    }

    #[test]
    fn summary_has_a_line_per_operation_used() {
        let stats = StoreStats {
            get: OpStats {
                count: 1234,
                errors: 0,
                bytes: 5_347_738,
                latency_us_p50: 31_200,
                latency_us_p99: 35_000,
                latency_us_max: 40_000,
            },
            ..StoreStats::default()
        };
        assert_eq!(
            stats.summary_lines(),
            vec!["object_store get: 1234 requests, 0 errors, 5.1 MiB, p50 31.2 ms p99 35.0 ms"]
        );
        assert_eq!(stats.requests(), 1234);
    }

    /// An instrumented store over the temp directory, and a runtime to drive it.
    fn store_and_runtime() -> (InstrumentedStore, tokio::runtime::Runtime) {
        let store = InstrumentedStore::new(Arc::new(
            crate::store::local_dir::LocalDirStore::open(std::env::temp_dir().as_path(), false)
                .expect("temp dir store"),
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (store, rt)
    }

    #[test]
    fn latencies_above_a_few_microseconds_are_recorded_as_measured() {
        let (store, rt) = store_and_runtime();
        for _ in 0..3 {
            let slow = async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok::<u64, crate::store::StoreError>(7)
            };
            rt.block_on(store.measure(StoreOp::Get, slow, |n| *n))
                .expect("ok");
        }
        let got = store.stats().get;
        assert_eq!((got.count, got.bytes), (3, 21));
        assert!(
            (20_000..200_000).contains(&got.latency_us_p50),
            "p50 {} µs for 20 ms calls",
            got.latency_us_p50
        );
    }

    /// Requests sent together count as one round trip; one sent after another ended
    /// adds one; a reset starts over.
    #[test]
    fn round_trips_in_a_row_count_waits_not_requests() {
        let (store, rt) = store_and_runtime();
        let call = |ms: u64| {
            store.measure(
                StoreOp::Get,
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    Ok::<u64, crate::store::StoreError>(1)
                },
                |n| *n,
            )
        };
        rt.block_on(async {
            // Five at once: one round trip.
            let wave: Vec<_> = (0..5).map(|_| call(10)).collect();
            futures_util::future::join_all(wave).await;
            assert_eq!(store.stats().round_trips_in_a_row, 1);
            // Then one, then two together, then one: three more.
            call(5).await.expect("ok");
            let (a, b) = futures_util::future::join(call(5), call(8)).await;
            a.and(b).expect("ok");
            call(5).await.expect("ok");
            assert_eq!(store.stats().round_trips_in_a_row, 4);
            // A long request overlapping a chain of short ones does not lengthen it.
            store.reset();
            let chain = async {
                for _ in 0..3 {
                    call(5).await.expect("ok");
                }
            };
            futures_util::future::join(call(40), chain)
                .await
                .0
                .expect("ok");
            assert_eq!(store.stats().round_trips_in_a_row, 3);
        });
        assert_eq!(store.stats().get.count, 4);
    }
}
