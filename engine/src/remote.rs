//! The database's link to object storage: the background I/O runtime, the store
//! (with its retry, instrumentation and fault-injection layers) and the uploader.
//!
//! One per database, shared by every shard. Objects are named by
//! [`crate::files::object_key`] under the store's prefix.

use std::sync::Arc;

use terrace_tiering::store::uri::{open_uri, stack, StoreStack, StoreUri};
use terrace_tiering::store::{
    IoHandle, IoRuntime, IoRuntimeConfig, ObjectMeta, ObjectStore, StoreError,
};
use terrace_uploader::Uploader;

use crate::error::{Error, ErrorDetail, Result};
use crate::options::{ObjectStoreSpec, Options, EMBEDDED_STORE_DIR};

/// What shards use to reach the object store.
pub(crate) struct Remote {
    pub(crate) io: IoHandle,
    pub(crate) stack: StoreStack,
    pub(crate) uploader: Uploader,
}

impl Remote {
    /// The store as shards call it (the outermost layer).
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.stack.store()
    }
}

impl Remote {
    /// Runs a store operation on the I/O runtime.
    async fn run<T, F>(&self, op: impl FnOnce(Arc<dyn ObjectStore>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.io
            .spawn(op(self.store()))
            .await
            .map_err(|_| Error::from(ErrorDetail::Closed))?
            .map_err(store_err)
    }

    /// Stores a small object in one request.
    pub(crate) async fn put(&self, key: String, bytes: Vec<u8>) -> Result<()> {
        self.run(|s| async move { s.put(&key, bytes::Bytes::from(bytes)).await })
            .await
    }

    /// Reads a whole (small) object.
    pub(crate) async fn get(&self, key: String) -> Result<Vec<u8>> {
        self.run(|s| async move {
            let size = s.head(&key).await?.size;
            Ok(s.get_range(&key, 0..size).await?.to_vec())
        })
        .await
    }

    /// Every object under `prefix`.
    pub(crate) async fn list(&self, prefix: String) -> Result<Vec<ObjectMeta>> {
        self.run(|s| async move { s.list(&prefix).await }).await
    }

    /// Multipart uploads under `prefix` neither completed nor aborted.
    pub(crate) async fn list_multipart(
        &self,
        prefix: String,
    ) -> Result<Vec<terrace_tiering::store::PendingMultipart>> {
        self.run(|s| async move { s.list_multipart(&prefix).await })
            .await
    }

    /// Abandons a multipart upload.
    pub(crate) async fn abort_multipart(
        &self,
        key: String,
        upload: terrace_tiering::store::MultipartId,
    ) -> Result<()> {
        self.run(|s| async move { s.abort_multipart(&key, &upload).await })
            .await
    }

    /// Deletes an object (a missing one is fine).
    pub(crate) async fn delete(&self, key: String) -> Result<()> {
        self.run(|s| async move { s.delete(&key).await }).await
    }
}

/// Starts the I/O runtime and opens the store `opts` names; `None` when the object
/// store is disabled. A missing bucket, bad URI or bad credentials fail here.
pub(crate) async fn open(opts: &Options) -> Result<Option<(IoRuntime, Arc<Remote>)>> {
    let base: Option<Result<StoreUri>> = match &opts.object_store {
        ObjectStoreSpec::Disabled => return Ok(None),
        // A read-only open creates nothing: without an embedded store directory,
        // nothing was ever uploaded to one.
        ObjectStoreSpec::Embedded
            if opts.read_only && !opts.path.join(EMBEDDED_STORE_DIR).exists() =>
        {
            return Ok(None)
        }
        ObjectStoreSpec::Embedded => {
            let dir = opts.path.join(EMBEDDED_STORE_DIR);
            let root = std::path::absolute(&dir).map_err(|e| Error::io("resolve", &dir, e))?;
            Some(Ok(StoreUri::Local(root)))
        }
        ObjectStoreSpec::Uri(uri) => Some(StoreUri::parse(uri).map_err(store_err)),
        ObjectStoreSpec::Custom(_) => None,
    };
    let rt = IoRuntime::start(&IoRuntimeConfig {
        threads: opts.io_threads,
        max_in_flight: opts.max_remote_requests,
    })
    .map_err(|e| Error::io("start the I/O runtime for", &opts.path, e))?;
    let io = rt.handle();
    let store: Arc<dyn ObjectStore> = match (base, &opts.object_store) {
        (Some(uri), _) => {
            let uri = uri?;
            // The embedded store is created on first use; any other must exist.
            let create = matches!(opts.object_store, ObjectStoreSpec::Embedded) && !opts.read_only;
            io.spawn(async move { open_uri(&uri, create).await })
                .await
                .map_err(|_| ErrorDetail::Closed)?
                .map_err(store_err)?
        }
        (None, ObjectStoreSpec::Custom(s)) => s.clone(),
        (None, _) => return Err(Error::internal("object store spec without a store")),
    };
    let stack = stack(
        store,
        opts.object_store_faults.clone(),
        opts.object_store_retry.clone(),
    );
    let uploader = Uploader::new(io.clone(), stack.store(), opts.uploader.clone());
    Ok(Some((
        rt,
        Arc::new(Remote {
            io,
            stack,
            uploader,
        }),
    )))
}

/// An object-store failure as an engine error.
pub(crate) fn store_err(e: StoreError) -> Error {
    ErrorDetail::ObjectStore(e).into()
}
