//! An in-memory [`ObjectStore`] with knobs: fail the Nth call of an operation, delay
//! or stall puts, corrupt what is stored, lie about sizes; and records: calls per
//! operation, peak concurrency of puts and of parts, aborts and deletes. Objects and
//! uploads carry the time they were stored or started, as a real store reports them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use terrace_tiering::clock::system_time;
use terrace_tiering::store::{
    BoxFuture, MultipartId, ObjectMeta, ObjectStore, PartReceipt, PendingMultipart, StoreError,
    StoreErrorKind, StoreResult,
};

/// Fault and latency knobs; change them at any time through [`MemStore::knobs`].
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    /// Fail the `nth` (1-based) call of `op` with an error of this kind.
    pub fail: Option<(&'static str, u64, StoreErrorKind)>,
    /// Sleep this long inside every `put` and `put_part`.
    pub put_delay: Duration,
    /// Never finish a `put` or `put_part` (to stop the runtime mid-upload).
    pub stall_puts: bool,
    /// Flip the last byte of every object as it is stored.
    pub corrupt_tail: bool,
    /// Add one to the size `head` reports.
    pub head_lies: bool,
    /// Sleep this long inside every `head` and `get_range`.
    pub read_delay: Duration,
}

#[derive(Debug)]
struct Upload {
    key: String,
    parts: BTreeMap<u32, Vec<u8>>,
    initiated: SystemTime,
}

#[derive(Debug)]
struct Object {
    data: Vec<u8>,
    stored: SystemTime,
}

/// The fake store.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Object>>,
    uploads: Mutex<BTreeMap<String, Upload>>,
    next_upload: AtomicU64,
    knobs: Mutex<Knobs>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
    puts_now: AtomicU64,
    puts_peak: AtomicU64,
    parts_now: AtomicU64,
    parts_peak: AtomicU64,
    reads_now: AtomicU64,
    reads_peak: AtomicU64,
    aborted: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
}

impl MemStore {
    /// A store with these knobs.
    pub fn with(knobs: Knobs) -> MemStore {
        MemStore {
            knobs: Mutex::new(knobs),
            ..MemStore::default()
        }
    }

    /// Edits the knobs.
    pub fn knobs(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.knobs.lock().unwrap());
    }

    /// The stored object.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.data.clone())
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.objects.lock().unwrap().len()
    }

    /// Calls of `op` so far.
    pub fn calls(&self, op: &str) -> u64 {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// Most `put`s and `put_part`s that were in flight at once.
    pub fn peak_puts(&self) -> u64 {
        self.puts_peak.load(Ordering::SeqCst)
    }

    /// Most `put_part`s in flight at once.
    pub fn peak_parts(&self) -> u64 {
        self.parts_peak.load(Ordering::SeqCst)
    }

    /// Most `head`s and `get_range`s that were in flight at once.
    pub fn peak_reads(&self) -> u64 {
        self.reads_peak.load(Ordering::SeqCst)
    }

    /// `put`s and `put_part`s in flight now.
    pub fn puts_in_flight(&self) -> u64 {
        self.puts_now.load(Ordering::SeqCst)
    }

    /// Keys of aborted multipart uploads, in order.
    pub fn aborted(&self) -> Vec<String> {
        self.aborted.lock().unwrap().clone()
    }

    /// Keys deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.deleted.lock().unwrap().clone()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    /// Counts the call and fails it if a knob says so.
    fn enter(&self, op: &'static str, key: &str) -> StoreResult<Knobs> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(op).or_insert(0);
            *n += 1;
            *n
        };
        let knobs = self.knobs.lock().unwrap().clone();
        if let Some((fail_op, nth, kind)) = knobs.fail {
            if fail_op == op && nth == n {
                return Err(StoreError::new(
                    kind,
                    op,
                    key,
                    format!("injected failure of call {n}"),
                ));
            }
        }
        Ok(knobs)
    }

    async fn body_in_flight(&self, knobs: &Knobs, part: bool) {
        let now = self.puts_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.puts_peak.fetch_max(now, Ordering::SeqCst);
        if part {
            let now = self.parts_now.fetch_add(1, Ordering::SeqCst) + 1;
            self.parts_peak.fetch_max(now, Ordering::SeqCst);
        }
        // Decrements even if the future is dropped mid-sleep.
        let _done = InFlight(self, part);
        if knobs.stall_puts {
            std::future::pending::<()>().await;
        }
        if !knobs.put_delay.is_zero() {
            tokio::time::sleep(knobs.put_delay).await;
        }
    }

    async fn read_in_flight(&self, knobs: &Knobs) {
        let now = self.reads_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.reads_peak.fetch_max(now, Ordering::SeqCst);
        let _done = ReadInFlight(self);
        if !knobs.read_delay.is_zero() {
            tokio::time::sleep(knobs.read_delay).await;
        }
    }

    fn store(&self, key: &str, mut data: Vec<u8>) {
        if self.knobs.lock().unwrap().corrupt_tail {
            if let Some(last) = data.last_mut() {
                *last ^= 0xff;
            }
        }
        let object = Object {
            data,
            stored: system_time(),
        };
        self.objects.lock().unwrap().insert(key.to_owned(), object);
    }
}

struct InFlight<'a>(&'a MemStore, bool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.puts_now.fetch_sub(1, Ordering::SeqCst);
        if self.1 {
            self.0.parts_now.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct ReadInFlight<'a>(&'a MemStore);

impl Drop for ReadInFlight<'_> {
    fn drop(&mut self) {
        self.0.reads_now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn not_found(op: &'static str, key: &str) -> StoreError {
    StoreError::new(StoreErrorKind::NotFound, op, key, "no such object")
}

impl ObjectStore for MemStore {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let knobs = self.enter("put", key)?;
            self.body_in_flight(&knobs, false).await;
            self.store(key, body.to_vec());
            Ok(())
        })
    }

    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>> {
        Box::pin(async move {
            self.enter("create_multipart", key)?;
            let id = format!("upload-{}", self.next_upload.fetch_add(1, Ordering::SeqCst));
            let upload = Upload {
                key: key.to_owned(),
                parts: BTreeMap::new(),
                initiated: system_time(),
            };
            self.uploads.lock().unwrap().insert(id.clone(), upload);
            Ok(MultipartId(id))
        })
    }

    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>> {
        Box::pin(async move {
            let knobs = self.enter("put_part", key)?;
            self.body_in_flight(&knobs, true).await;
            let mut uploads = self.uploads.lock().unwrap();
            let Some(u) = uploads.get_mut(&upload.0).filter(|u| u.key == key) else {
                return Err(not_found("multipart", key));
            };
            u.parts.insert(part_number, body.to_vec());
            Ok(PartReceipt {
                part_number,
                etag: format!("etag-{part_number}"),
            })
        })
    }

    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.enter("complete_multipart", key)?;
            // As in S3, a completion that is refused leaves the upload open.
            let mut uploads = self.uploads.lock().unwrap();
            let Some(u) = uploads.get(&upload.0).filter(|u| u.key == key) else {
                return Err(not_found("multipart", key));
            };
            let numbers: Vec<u32> = parts.iter().map(|p| p.part_number).collect();
            let expected: Vec<u32> = (1..=u.parts.len() as u32).collect();
            if numbers != expected || u.parts.keys().copied().collect::<Vec<_>>() != expected {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "multipart",
                    key,
                    format!(
                        "parts {numbers:?} do not match uploaded {:?}",
                        u.parts.keys()
                    ),
                ));
            }
            let Some(u) = uploads.remove(&upload.0) else {
                return Err(not_found("multipart", key));
            };
            drop(uploads);
            let data: Vec<u8> = u.parts.into_values().flatten().collect();
            self.store(key, data);
            Ok(())
        })
    }

    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.enter("abort_multipart", key)?;
            self.uploads.lock().unwrap().remove(&upload.0);
            self.aborted.lock().unwrap().push(key.to_owned());
            Ok(())
        })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(async move {
            let knobs = self.enter("get_range", key)?;
            self.read_in_flight(&knobs).await;
            let objects = self.objects.lock().unwrap();
            let data = &objects.get(key).ok_or_else(|| not_found("get", key))?.data;
            if range.start > range.end || range.end > data.len() as u64 {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidArgument,
                    "get",
                    key,
                    format!("range {range:?} outside {} bytes", data.len()),
                ));
            }
            Ok(Bytes::copy_from_slice(
                &data[range.start as usize..range.end as usize],
            ))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Bytes>> {
        Box::pin(async move {
            let knobs = self.enter("get", key)?;
            self.read_in_flight(&knobs).await;
            let objects = self.objects.lock().unwrap();
            let data = &objects.get(key).ok_or_else(|| not_found("get", key))?.data;
            Ok(Bytes::copy_from_slice(data))
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>> {
        Box::pin(async move {
            let knobs = self.enter("head", key)?;
            self.read_in_flight(&knobs).await;
            let objects = self.objects.lock().unwrap();
            let object = objects.get(key).ok_or_else(|| not_found("head", key))?;
            Ok(ObjectMeta {
                key: key.to_owned(),
                size: object.data.len() as u64 + u64::from(knobs.head_lies),
                last_modified: Some(object.stored),
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>> {
        Box::pin(async move {
            self.enter("list", prefix)?;
            let objects = self.objects.lock().unwrap();
            Ok(objects
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| ObjectMeta {
                    key: k.clone(),
                    size: v.data.len() as u64,
                    last_modified: Some(v.stored),
                })
                .collect())
        })
    }

    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>> {
        Box::pin(async move {
            self.enter("list_multipart", prefix)?;
            let uploads = self.uploads.lock().unwrap();
            let mut open: Vec<PendingMultipart> = uploads
                .iter()
                .filter(|(_, u)| u.key.starts_with(prefix))
                .map(|(id, u)| PendingMultipart {
                    key: u.key.clone(),
                    upload: MultipartId(id.clone()),
                    initiated: Some(u.initiated),
                })
                .collect();
            open.sort_by(|a, b| (&a.key, &a.upload.0).cmp(&(&b.key, &b.upload.0)));
            Ok(open)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.enter("delete", key)?;
            self.objects.lock().unwrap().remove(key);
            self.deleted.lock().unwrap().push(key.to_owned());
            Ok(())
        })
    }

    fn describe(&self) -> String {
        "mem://test".into()
    }
}
