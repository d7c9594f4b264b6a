//! Object stores: where SSTs live for good.
//!
//! One trait, [`ObjectStore`], covers what the engine needs from object storage:
//! single and multipart puts, ranged gets, head, list by prefix and delete, and a
//! listing of multipart uploads left open. Objects are immutable once written; writing
//! a key again stores the same bytes (an upload re-tried after a crash), never
//! different ones. The one exception is a small pointer object the engine replaces
//! whole with [`ObjectStore::put`] (`checkpoints/LATEST`, a copy of the newest
//! checkpoint's metadata): a `put` is atomic, so a reader sees the old object or the
//! new one, and the engine never caches it or trusts it without a check.
//!
//! A garbage collector decides from [`ObjectMeta::last_modified`] and
//! [`PendingMultipart::initiated`] whether an object or upload nobody references is
//! old enough to be abandoned. Both are the store's clock, not the caller's, and both
//! are at least the moment the call that wrote the object (or started the upload)
//! began, give or take the store's clock skew and resolution: never an older time
//! carried over from somewhere else.
//!
//! Implementations run on the background I/O runtime ([`IoRuntime`]), never on a
//! shard: their futures are `Send` and may use tokio. Shards reach them through
//! [`IoHandle::spawn`], which hands back a runtime-agnostic [`IoTask`].
//!
//! Decorators wrap any store and implement the same trait (SlateDB's pattern):
//! retrying, instrumented, fault-injecting.

pub mod fault;
pub mod instrument;
pub mod local_dir;
pub mod retry;
mod runtime;
pub mod s3;
pub mod uri;

pub use runtime::{IoHandle, IoRuntime, IoRuntimeConfig, IoTask, TaskCancelled};

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

/// A future that runs on the I/O runtime.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result of an object-store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong, as far as callers need to tell cases apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The object does not exist.
    NotFound,
    /// The bucket (or the local store's root directory) does not exist.
    NoSuchBucket,
    /// Credentials are missing, wrong or lack permission.
    AccessDenied,
    /// The request itself is wrong (bad key, bad range, bad URI, bad configuration).
    InvalidArgument,
    /// A failure that may pass: 5xx, throttling, a dropped connection, an I/O hiccup.
    Transient,
    /// The request did not finish in time.
    Timeout,
    /// The stored bytes are not what was written (checksum or size mismatch).
    Corrupt,
    /// Anything else; not retried.
    Other,
}

impl StoreErrorKind {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Transient | StoreErrorKind::Timeout)
    }
}

/// An object-store failure: what kind, which operation, which object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    /// The kind, which decides whether to retry.
    pub kind: StoreErrorKind,
    /// Operation name: "put", "get", "head", "list", "list_multipart", "delete",
    /// "multipart", "open".
    pub op: &'static str,
    /// Object key (or prefix, or store description) the call was about.
    pub key: String,
    /// What the store said. Never contains credentials.
    pub message: String,
}

impl StoreError {
    /// Builds an error.
    pub fn new(
        kind: StoreErrorKind,
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError {
            kind,
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Maps a local I/O error: `NotFound` stays `NotFound`, everything else is
    /// transient except invalid input.
    pub fn from_io(op: &'static str, key: impl Into<String>, e: &std::io::Error) -> StoreError {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => StoreErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => StoreErrorKind::AccessDenied,
            std::io::ErrorKind::InvalidInput => StoreErrorKind::InvalidArgument,
            std::io::ErrorKind::TimedOut => StoreErrorKind::Timeout,
            _ => StoreErrorKind::Transient,
        };
        StoreError::new(kind, op, key, e.to_string())
    }

    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object store {} of {:?} failed ({:?}): {}",
            self.op, self.key, self.kind, self.message
        )
    }
}

impl std::error::Error for StoreError {}

/// What a listing or head returns about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was written, by the store's clock; `None` if the store does not
    /// say.
    ///
    /// Never earlier than the start of the call that wrote the object (less the
    /// store's clock skew and resolution), and never later than the moment the object
    /// became visible. In between, stores differ: the local directory store takes the
    /// time after the last byte was written, just before it syncs the file and renames
    /// it into place (a file stored by [`ObjectStore::put_file`] is given that time
    /// too, not its own older one). S3 reports whole seconds on `head`, and an object
    /// made by a multipart upload carries the time the upload was *started*
    /// ([`ObjectStore::create_multipart`]), which may be long before the object
    /// appeared: a collector's grace period must cover the longest upload.
    pub last_modified: Option<SystemTime>,
}

/// Identifies a multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultipartId(pub String);

/// A multipart upload that was started and neither completed nor aborted, as
/// [`ObjectStore::list_multipart`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMultipart {
    /// The key the upload will write if it is completed.
    pub key: String,
    /// The upload, as [`ObjectStore::abort_multipart`] takes it.
    pub upload: MultipartId,
    /// When the upload was started, by the store's clock; `None` if the store does not
    /// say. Never earlier than the start of the [`ObjectStore::create_multipart`] call
    /// (less the store's clock skew and resolution).
    pub initiated: Option<SystemTime>,
}

/// One uploaded part: its number (1-based, as in S3) and the store's tag for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartReceipt {
    /// Part number, 1-based, contiguous.
    pub part_number: u32,
    /// The store's identifier of the part (S3's ETag).
    pub etag: String,
}

/// Object storage as the engine uses it. Keys are `/`-separated relative paths
/// without a leading `/`; the store adds its own prefix.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Stores `body` under `key` in one request, atomically: a reader sees the old
    /// state or the whole object, never a part.
    fn put<'a>(&'a self, key: &'a str, body: bytes::Bytes) -> BoxFuture<'a, StoreResult<()>>;

    /// Starts a multipart upload of `key`.
    fn create_multipart<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<MultipartId>>;

    /// Uploads part `part_number` (1-based) of a multipart upload. Every part but the
    /// last must be at least 5 MiB (S3's rule; the local store does not care).
    fn put_part<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        part_number: u32,
        body: bytes::Bytes,
    ) -> BoxFuture<'a, StoreResult<PartReceipt>>;

    /// Completes a multipart upload; the object appears atomically.
    fn complete_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
        parts: Vec<PartReceipt>,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Abandons a multipart upload and frees its parts.
    fn abort_multipart<'a>(
        &'a self,
        key: &'a str,
        upload: &'a MultipartId,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Reads `range` of the object. A range past the end is an `InvalidArgument`
    /// error, never a short read.
    fn get_range<'a>(
        &'a self,
        key: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, StoreResult<bytes::Bytes>>;

    /// The whole object in one request (S3: a `GetObject` without a range), or
    /// `NotFound`. For objects read whole, such as metadata: a `head` for the size
    /// and then a ranged read would cost two round trips. There is no default
    /// implementation, so a decorator cannot turn it back into two requests.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<bytes::Bytes>>;

    /// Size of the object, or `NotFound`.
    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<ObjectMeta>>;

    /// Every object whose key starts with `prefix`, sorted by key.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, StoreResult<Vec<ObjectMeta>>>;

    /// Multipart uploads under `prefix` that were started and neither completed nor
    /// aborted.
    ///
    /// Contract:
    /// - An upload is listed when its key starts with `prefix` (a plain string prefix,
    ///   as in [`ObjectStore::list`]), from the moment `create_multipart` returned its
    ///   id until `complete_multipart` or `abort_multipart` succeeded for it. A call in
    ///   flight at the same time may or may not be reflected.
    /// - The result is sorted by key, then by upload id.
    /// - Each listed upload can be passed to [`ObjectStore::abort_multipart`] with its
    ///   key; aborting it also frees its parts.
    /// - A store that cannot list its uploads fails (S3-compatible servers without
    ///   ListMultipartUploads answer `NotImplemented`, an error of kind `Other`); it
    ///   never answers with an empty list. There is no default implementation, so
    ///   every store and decorator must say what it does.
    fn list_multipart<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, StoreResult<Vec<PendingMultipart>>>;

    /// Deletes the object. Deleting a missing object succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// Where the store points (`file:///path`, `s3://bucket/prefix`), for messages.
    /// Never includes credentials.
    fn describe(&self) -> String;

    /// Stores the finished, immutable local file at `path` (exactly `size` bytes)
    /// under `key` without the caller reading it, if the store can do that cheaply:
    /// the local-directory store hard-links it when both are on one file system.
    /// `Ok(false)` means it cannot, and the caller uploads the bytes itself. Stores
    /// that inject faults or talk to a server keep this default.
    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a std::path::Path,
        size: u64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let _ = (key, path, size);
        Box::pin(async { Ok(false) })
    }
}
