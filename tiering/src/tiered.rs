//! Files that live in object storage and may also have a local copy.
//!
//! A [`TieredFile`] serves block reads from its local copy while it has one and from
//! the object store once the copy is dropped. Remote reads are ranged GETs run on the
//! I/O runtime; concurrent reads of the same range share one request. The caller
//! (the SST reader) verifies each block's checksum, wherever it came from.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::future::{FutureExt, Shared};

use crate::store::{IoHandle, ObjectStore, StoreError};
use crate::{BlockSource, Bytes, LocalBoxFuture, LocalFile};

/// Where remote reads of a file go.
#[derive(Clone, Debug)]
pub struct RemoteLocation {
    /// The I/O runtime running the requests.
    pub io: IoHandle,
    /// The store holding the object.
    pub store: Arc<dyn ObjectStore>,
    /// The object's key.
    pub key: Arc<str>,
}

/// Counters of a shard's remote reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteReadStats {
    /// Ranged GETs sent.
    pub requests: u64,
    /// Reads that joined a GET already in flight for the same range.
    pub coalesced: u64,
    /// Bytes received.
    pub bytes: u64,
    /// GETs that failed.
    pub errors: u64,
}

/// Per-shard remote read counters, shared by the shard's files.
pub type RemoteStatsCell = Rc<Cell<RemoteReadStats>>;

type ReadResult = Result<Bytes, Rc<io::Error>>;
type SharedRead = Shared<Pin<Box<dyn Future<Output = ReadResult>>>>;

/// An immutable file served from its local copy or from the object store.
pub struct TieredFile {
    size: u64,
    local: RefCell<Option<Rc<LocalFile>>>,
    remote: Option<RemoteLocation>,
    inflight: Rc<RefCell<HashMap<(u64, usize), SharedRead>>>,
    stats: RemoteStatsCell,
    /// Remote GETs sent for this file (what "observed access" warms by).
    remote_gets: Cell<u64>,
}

impl TieredFile {
    /// A file with a local copy and, when `remote` is set, an object to fall back on.
    pub fn new(
        size: u64,
        local: Option<LocalFile>,
        remote: Option<RemoteLocation>,
        stats: RemoteStatsCell,
    ) -> TieredFile {
        TieredFile {
            size,
            local: RefCell::new(local.map(Rc::new)),
            remote,
            inflight: Rc::new(RefCell::new(HashMap::new())),
            stats,
            remote_gets: Cell::new(0),
        }
    }

    /// Remote GETs sent for this file so far.
    pub fn remote_gets(&self) -> u64 {
        self.remote_gets.get()
    }

    /// Starts serving reads from `local`, a copy made after the fact (a download of
    /// the object). Refused (false) unless it has exactly the file's size.
    pub fn attach_local(&self, local: LocalFile) -> bool {
        if local.size() != self.size {
            return false;
        }
        *self.local.borrow_mut() = Some(Rc::new(local));
        true
    }

    /// Copies the object into a new local file at `path` (created or truncated, then
    /// synced), in ranged GETs of `chunk_bytes`, at most `bytes_per_sec` (0: no
    /// limit). Runs on the I/O runtime; the shard only awaits the result.
    pub fn download(
        &self,
        path: &std::path::Path,
        chunk_bytes: u64,
        bytes_per_sec: u64,
    ) -> crate::store::IoTask<io::Result<()>> {
        let path = path.to_path_buf();
        let size = self.size;
        let chunk = chunk_bytes.max(1);
        match &self.remote {
            None => crate::store::IoTask::done(Err(io::Error::new(
                io::ErrorKind::NotFound,
                "file has no remote object to download",
            ))),
            Some(loc) => {
                let (store, key) = (loc.store.clone(), loc.key.clone());
                loc.io.spawn_unlimited(async move {
                    use tokio::io::AsyncWriteExt;
                    let start = tokio::time::Instant::now();
                    let mut file = tokio::fs::File::create(&path).await?;
                    let mut at = 0u64;
                    while at < size {
                        let end = (at + chunk).min(size);
                        let bytes = store.get_range(&key, at..end).await.map_err(store_to_io)?;
                        if bytes.len() as u64 != end - at {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "ranged GET of {key} at {at} returned {} bytes",
                                    bytes.len()
                                ),
                            ));
                        }
                        file.write_all(&bytes).await?;
                        at = end;
                        if bytes_per_sec > 0 {
                            let due = std::time::Duration::from_secs_f64(
                                at as f64 / bytes_per_sec as f64,
                            );
                            tokio::time::sleep_until(start + due).await;
                        }
                    }
                    file.sync_all().await?;
                    Ok(())
                })
            }
        }
    }

    /// Whether reads are served locally.
    pub fn is_local(&self) -> bool {
        self.local.borrow().is_some()
    }

    /// Stops serving from the local copy; later reads go remote. Reads already in
    /// flight finish on the old copy (its descriptor stays open until they do), so the
    /// caller may unlink the file right away. Refused when there is no remote object.
    pub fn drop_local(&self) -> bool {
        if self.remote.is_none() {
            return false;
        }
        self.local.borrow_mut().take().is_some()
    }

    fn remote_read(&self, offset: u64, len: usize) -> SharedRead {
        let key = (offset, len);
        if let Some(f) = self.inflight.borrow().get(&key) {
            let mut s = self.stats.get();
            s.coalesced += 1;
            self.stats.set(s);
            return f.clone();
        }
        let fut: Pin<Box<dyn Future<Output = ReadResult>>> = match &self.remote {
            None => Box::pin(std::future::ready(Err(Rc::new(io::Error::new(
                io::ErrorKind::NotFound,
                "file has neither a local copy nor a remote object",
            ))))),
            Some(loc) => {
                let (store, okey) = (loc.store.clone(), loc.key.clone());
                self.remote_gets.set(self.remote_gets.get() + 1);
                let task = loc.io.spawn(async move {
                    store.get_range(&okey, offset..offset + len as u64).await
                });
                let inflight = self.inflight.clone();
                let stats = self.stats.clone();
                Box::pin(async move {
                    let got = task.await;
                    inflight.borrow_mut().remove(&key);
                    let mut s = stats.get();
                    s.requests += 1;
                    let out = match got {
                        Ok(Ok(bytes)) if bytes.len() == len => {
                            s.bytes += len as u64;
                            Ok(Rc::from(&bytes[..]))
                        }
                        Ok(Ok(bytes)) => Err(Rc::new(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "ranged GET at {offset} returned {} bytes, wanted {len}",
                                bytes.len()
                            ),
                        ))),
                        Ok(Err(e)) => Err(Rc::new(store_to_io(e))),
                        Err(cancelled) => Err(Rc::new(io::Error::other(cancelled))),
                    };
                    if out.is_err() {
                        s.errors += 1;
                    }
                    stats.set(s);
                    out
                })
            }
        };
        let shared = fut.shared();
        self.inflight.borrow_mut().insert(key, shared.clone());
        shared
    }
}

fn store_to_io(e: StoreError) -> io::Error {
    let kind = match e.kind {
        crate::store::StoreErrorKind::NotFound => io::ErrorKind::NotFound,
        crate::store::StoreErrorKind::InvalidArgument => io::ErrorKind::UnexpectedEof,
        crate::store::StoreErrorKind::Timeout => io::ErrorKind::TimedOut,
        crate::store::StoreErrorKind::AccessDenied => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl BlockSource for TieredFile {
    fn read_at(&self, offset: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>> {
        let local = self.local.borrow().clone();
        if let Some(file) = local {
            return Box::pin(async move { file.read_at(offset, len).await });
        }
        if offset.checked_add(len as u64).is_none_or(|e| e > self.size) {
            let size = self.size;
            return Box::pin(async move {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read of {len} bytes at {offset} past the end ({size})"),
                ))
            });
        }
        let shared = self.remote_read(offset, len);
        Box::pin(async move {
            shared
                .await
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
        })
    }

    fn size(&self) -> u64 {
        self.size
    }
}
