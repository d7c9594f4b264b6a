//! The database's link to object storage: the background I/O runtime, the store
//! (with its retry, instrumentation and fault-injection layers) and the uploader.
//!
//! One per database, shared by every shard. Objects are named by
//! [`crate::files::object_key`] under the store's prefix.
//!
//! **Homes.** Databases of one job keep their prefixes side by side under a job
//! root (`file:///x/job-17/db-a`, `.../db-b`: the root is the parent prefix). A
//! rescaled database reads files under its sources' prefixes: a file reference's
//! `home` names the prefix relative to the root, and [`Remote::home`] opens (once)
//! a view of that prefix with the same decorators and I/O runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use terrace_tiering::store::uri::{open_uri, stack, StoreStack, StoreUri};
use terrace_tiering::store::{
    IoHandle, IoRuntime, IoRuntimeConfig, IoTask, ObjectMeta, ObjectStore, StoreError,
};
use terrace_uploader::Uploader;

use crate::error::{Error, ErrorDetail, Result};
use crate::options::{ObjectStoreSpec, Options, EMBEDDED_STORE_DIR};

/// What shards use to reach the object store.
pub(crate) struct Remote {
    pub(crate) io: IoHandle,
    pub(crate) stack: StoreStack,
    pub(crate) uploader: Uploader,
    /// The job root (the parent of this store's prefix) and this prefix's name in
    /// it; `None` for stores not named by a URI (embedded or custom).
    pub(crate) job: Option<(StoreUri, String)>,
    /// Views of other prefixes of the job, by home name, opened on first use.
    homes: Mutex<HashMap<String, Arc<Remote>>>,
    faults: Option<terrace_tiering::store::fault::FaultConfig>,
    retry: terrace_tiering::store::retry::RetryConfig,
    uploader_cfg: terrace_uploader::UploaderConfig,
}

impl Remote {
    /// The store as shards call it (the outermost layer).
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.stack.store()
    }

    /// The store holding objects of `home` (empty: this database's own prefix).
    /// Other homes must have been opened with [`Remote::home`] first.
    pub(crate) fn home_store(&self, home: &str) -> Result<Arc<dyn ObjectStore>> {
        if home.is_empty() {
            return Ok(self.store());
        }
        let homes = self
            .homes
            .lock()
            .map_err(|_| Error::internal("homes lock poisoned"))?;
        homes
            .get(home)
            .map(|r| r.store())
            .ok_or_else(|| Error::internal(format!("store prefix {home:?} was not opened")))
    }

    /// Request counters of every other prefix opened, by name.
    pub(crate) fn home_stats(
        &self,
    ) -> Vec<(String, terrace_tiering::store::instrument::StoreStats)> {
        let Ok(homes) = self.homes.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = homes
            .iter()
            .map(|(h, r)| (h.clone(), r.stack.instrumented.stats()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A view of the job's prefix `home` (empty: this one), opened on first use:
    /// same I/O runtime, same decorators. A store not named by a URI has no job
    /// root: other homes are an InvalidArgument error.
    pub(crate) async fn home(self: &Arc<Self>, home: &str) -> Result<Arc<Remote>> {
        if home.is_empty() {
            return Ok(self.clone());
        }
        if let Some(r) = self
            .homes
            .lock()
            .map_err(|_| Error::internal("homes lock poisoned"))?
            .get(home)
        {
            return Ok(r.clone());
        }
        let Some((root, _)) = &self.job else {
            return Err(Error::invalid_option(
                "object_store",
                format!(
                    "files live under the job prefix {home:?}, but {} is not a store URI with a parent prefix",
                    self.store().describe()
                ),
            ));
        };
        let uri = join_home(root, home);
        let base = self
            .io
            .spawn(async move { open_uri(&uri, false).await })
            .await
            .map_err(|_| ErrorDetail::Closed)?
            .map_err(store_err)?;
        let stack = stack(base, self.faults.clone(), self.retry.clone());
        let view = Arc::new(Remote {
            io: self.io.clone(),
            uploader: Uploader::new(self.io.clone(), stack.store(), self.uploader_cfg.clone()),
            stack,
            job: self.job.as_ref().map(|(r, _)| (r.clone(), home.to_owned())),
            homes: Mutex::new(HashMap::new()),
            faults: self.faults.clone(),
            retry: self.retry.clone(),
            uploader_cfg: self.uploader_cfg.clone(),
        });
        let mut homes = self
            .homes
            .lock()
            .map_err(|_| Error::internal("homes lock poisoned"))?;
        Ok(homes.entry(home.to_owned()).or_insert(view).clone())
    }
}

impl Remote {
    /// The names of the job's other prefixes that hold checkpoints (siblings of
    /// this store's prefix under the job root); none without a job root.
    pub(crate) async fn job_prefixes(&self) -> Result<Vec<String>> {
        let Some((root, own)) = &self.job else {
            return Ok(Vec::new());
        };
        let names = list_job_prefixes(&self.io, root).await?;
        Ok(names.into_iter().filter(|n| n != own).collect())
    }
}

/// The prefixes directly under `root` that hold checkpoints (databases of the job).
pub(crate) async fn list_job_prefixes(io: &IoHandle, root: &StoreUri) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    match root {
        StoreUri::Local(dir) => {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io("list", dir, e)),
            };
            for e in entries.flatten() {
                let path = e.path();
                if path
                    .join(crate::files::CHECKPOINTS_PREFIX.trim_end_matches('/'))
                    .is_dir()
                {
                    if let Some(name) = e.file_name().to_str() {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
        StoreUri::S3 { .. } => {
            let uri = root.clone();
            let listed = io
                .spawn(async move {
                    let store = open_uri(&uri, false).await?;
                    store.list("").await
                })
                .await
                .map_err(|_| ErrorDetail::Closed)?
                .map_err(store_err)?;
            for o in listed {
                if let Some((name, rest)) = o.key.split_once('/') {
                    if rest.starts_with(crate::files::CHECKPOINTS_PREFIX) {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
    }
    Ok(names
        .into_iter()
        .filter(|n| crate::version::valid_home(n))
        .collect())
}

/// The job root of a store URI (its parent prefix) and the prefix's name in it;
/// `None` for a URI without a parent (a bucket root, `/`).
pub(crate) fn split_job(uri: &StoreUri) -> Option<(StoreUri, String)> {
    match uri {
        StoreUri::Local(path) => {
            let name = path.file_name()?.to_str()?.to_owned();
            Some((StoreUri::Local(path.parent()?.to_path_buf()), name))
        }
        StoreUri::S3 { bucket, prefix } => {
            if prefix.is_empty() {
                return None;
            }
            let (parent, name) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            Some((
                StoreUri::S3 {
                    bucket: bucket.clone(),
                    prefix: parent.to_owned(),
                },
                name.to_owned(),
            ))
        }
    }
}

/// The URI of the job's prefix `home` (a relative name) under `root`.
pub(crate) fn join_home(root: &StoreUri, home: &str) -> StoreUri {
    match root {
        StoreUri::Local(path) => StoreUri::Local(path.join(home)),
        StoreUri::S3 { bucket, prefix } => StoreUri::S3 {
            bucket: bucket.clone(),
            prefix: if prefix.is_empty() {
                home.to_owned()
            } else {
                format!("{prefix}/{home}")
            },
        },
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

    /// Starts listing `prefix` on the I/O runtime; await the task from anywhere.
    pub(crate) fn spawn_list(&self, prefix: String) -> IoTask<Result<Vec<ObjectMeta>, StoreError>> {
        let store = self.store();
        self.io.spawn(async move { store.list(&prefix).await })
    }

    /// Stores a small object in one request.
    pub(crate) async fn put(&self, key: String, bytes: Vec<u8>) -> Result<()> {
        self.run(|s| async move { s.put(&key, bytes::Bytes::from(bytes)).await })
            .await
    }

    /// Reads a whole (small) object, in one request.
    pub(crate) async fn get(&self, key: String) -> Result<Vec<u8>> {
        self.run(|s| async move { Ok(s.get(&key).await?.to_vec()) })
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
    let mut job = None;
    let store: Arc<dyn ObjectStore> = match (base, &opts.object_store) {
        (Some(uri), _) => {
            let uri = uri?;
            if matches!(opts.object_store, ObjectStoreSpec::Uri(_)) {
                job = split_job(&uri);
            }
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
            job,
            homes: Mutex::new(HashMap::new()),
            faults: opts.object_store_faults.clone(),
            retry: opts.object_store_retry.clone(),
            uploader_cfg: opts.uploader.clone(),
        }),
    )))
}

/// An object-store failure as an engine error.
pub(crate) fn store_err(e: StoreError) -> Error {
    ErrorDetail::ObjectStore(e).into()
}
