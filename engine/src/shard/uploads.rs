//! Uploads on a shard: the upload queue and worker, and slowing flushes when uploads
//! fall behind.
//!
//! Every SST is written locally first. Once its version edit is logged it is queued
//! for upload; the upload runs on the I/O runtime while the shard keeps serving. When
//! it completes the shard logs an "uploaded" edit: only then may the local copy go
//! (`local_copies.rs`). A restart re-queues every file the manifest does not record
//! as uploaded.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use terrace_tiering::{LocalFile, RemoteLocation, RemoteStatsCell, TieredFile};
use terrace_uploader::{UploadError, UploadJob, UploadPriority};

use super::{Shard, BACKGROUND_RECHECK, FOREGROUND_RECHECK};
use crate::error::{Error, Result};
use crate::notify::Notify;
use crate::remote::Remote;
use crate::sst::TableReader;
use crate::stats::TierStats;
use crate::version::{FileDesc, FileMeta, UploadState, VersionEdit};

/// Longest pause between attempts of a failing upload.
const MAX_UPLOAD_BACKOFF: Duration = Duration::from_secs(5);

/// The shard's upload queue and what is in flight.
#[derive(Default)]
pub(crate) struct Uploads {
    /// Files waiting for the upload task to start their upload.
    pub(crate) queue: RefCell<VecDeque<Rc<FileMeta>>>,
    /// Wakes the upload task.
    pub(crate) wake: Notify,
    /// Files queued or uploading, and their bytes.
    pub(crate) pending: Cell<u64>,
    pub(crate) pending_bytes: Cell<u64>,
    /// The last non-retryable upload failure, until an upload succeeds again.
    pub(crate) refusal: RefCell<Option<terrace_tiering::store::StoreError>>,
    /// Set at close: failing uploads stop retrying after this instant.
    pub(crate) close_deadline: Cell<Option<Instant>>,
}

impl Uploads {
    /// Uploads for the files of `queue` (their edits are logged already).
    pub(crate) fn with_queue(queue: VecDeque<Rc<FileMeta>>) -> Uploads {
        let bytes = queue.iter().map(|m| m.desc.size_bytes).sum();
        Uploads {
            pending: Cell::new(queue.len() as u64),
            pending_bytes: Cell::new(bytes),
            queue: RefCell::new(queue),
            ..Default::default()
        }
    }
}

/// Opens a reader over an SST that has a local copy, an object, or both.
pub(crate) async fn open_table(
    desc: FileDesc,
    path: &Path,
    local: Option<LocalFile>,
    remote: Option<&Arc<Remote>>,
    stats: &RemoteStatsCell,
    upload: UploadState,
) -> Result<Rc<FileMeta>> {
    let location = match remote {
        Some(r) => Some(RemoteLocation {
            io: r.io.clone(),
            // The object may live under another database's prefix of the job.
            store: r.home_store(&desc.home)?,
            key: crate::files::object_key(desc.object).into(),
        }),
        None => None,
    };
    let remote_only = local.is_none();
    let file = Rc::new(TieredFile::new(
        desc.size_bytes,
        local,
        location,
        stats.clone(),
    ));
    let source: Rc<dyn terrace_tiering::BlockSource> = file.clone();
    let reader = if remote_only {
        TableReader::open_remote(desc.id, path.to_path_buf(), source, desc.meta_bytes).await?
    } else {
        TableReader::open(desc.id, path.to_path_buf(), source).await?
    };
    Ok(Rc::new(FileMeta {
        pins: std::cell::Cell::new(0),
        desc,
        reader: Rc::new(reader),
        file,
        upload: std::cell::Cell::new(upload),
        replaced: std::cell::RefCell::new(None),
    }))
}

impl Shard {
    /// The upload state a freshly written file starts in.
    pub(crate) fn new_file_upload_state(&self) -> UploadState {
        if self.remote.is_some() {
            UploadState::Pending
        } else {
            UploadState::LocalOnly
        }
    }

    /// Queues `meta` for upload (its edit is already logged).
    pub(crate) fn queue_upload(&self, meta: &Rc<FileMeta>) {
        if meta.upload.get() != UploadState::Pending || self.remote.is_none() {
            return;
        }
        let u = &self.uploads;
        u.pending.set(u.pending.get() + 1);
        u.pending_bytes
            .set(u.pending_bytes.get() + meta.desc.size_bytes);
        u.queue.borrow_mut().push_back(meta.clone());
        u.wake.notify_all();
    }

    /// The upload task: starts one upload per queued file (the uploader bounds how
    /// many run at once) until the shard closes and nothing is queued.
    pub(crate) async fn upload_loop(self: Rc<Self>) {
        loop {
            let seen = self.uploads.wake.generation();
            self.start_queued_uploads();
            if self.health.closing.get() {
                return;
            }
            self.uploads
                .wake
                .changed_or_after(seen, BACKGROUND_RECHECK)
                .await;
        }
    }

    /// Starts an upload task for every queued file.
    pub(crate) fn start_queued_uploads(self: &Rc<Self>) {
        let queued: Vec<Rc<FileMeta>> = self.uploads.queue.borrow_mut().drain(..).collect();
        for meta in queued {
            let task = glommio::spawn_local_into(self.clone().upload_file(meta), self.queues.flush);
            match task {
                Ok(t) => drop(t.detach()),
                Err(e) => tracing::error!(shard = self.id, error = %e, "cannot start an upload"),
            }
        }
    }

    /// Uploads one file, retrying with backoff until it succeeds, the file is no
    /// longer live, or the shard closes; then logs the upload.
    async fn upload_file(self: Rc<Self>, meta: Rc<FileMeta>) {
        let Some(remote) = self.remote.clone() else {
            return;
        };
        let id = meta.desc.id;
        let mut backoff = Duration::from_millis(100);
        let outcome = loop {
            // A merge output with a record of its inputs is not waited for by
            // checkpoints (they name the inputs); anything else may be.
            let priority = if meta.replaced.borrow().is_some() {
                UploadPriority::Background
            } else {
                UploadPriority::Urgent
            };
            let job = UploadJob {
                key: crate::files::object_key(meta.desc.object),
                path: self.sst_path(id),
                size: meta.desc.size_bytes,
                priority,
            };
            match remote.uploader.upload(job).await {
                Ok(Ok(_receipt)) => break true,
                Ok(Err(UploadError::Local { path, source })) if self.is_wanted(&meta) => {
                    // The only copy of a live file is unreadable or changed: data is
                    // lost or at risk, and retrying cannot help. Stop taking writes
                    // with an error that names the file.
                    self.counters.borrow_mut().upload_failures += 1;
                    self.poison(&Error::io("upload (read) the only copy of", path, source));
                    break false;
                }
                Ok(Err(e)) => {
                    self.counters.borrow_mut().upload_failures += 1;
                    if e.is_retryable() {
                        tracing::warn!(shard = self.id, file = id, error = %e, "upload failed; will retry");
                    } else {
                        // Credentials, permissions, a missing bucket: an operator can
                        // fix these while the shard keeps trying (back-pressure stops
                        // writes once the upload queue is full). Waiters for uploads
                        // get the refusal as their error instead of waiting forever.
                        tracing::error!(shard = self.id, file = id, error = %e, "upload refused; will retry");
                        if let UploadError::Store(se) = &e {
                            *self.uploads.refusal.borrow_mut() = Some(se.clone());
                            self.signals.changed.notify_all();
                        }
                        backoff = MAX_UPLOAD_BACKOFF;
                    }
                }
                // The I/O runtime stopped: the database is going away. The manifest
                // still says "not uploaded", so the next open uploads the file.
                Err(_) => break false,
            }
            let past_deadline = self
                .uploads
                .close_deadline
                .get()
                .is_some_and(|d| self.opts.clock.now() >= d);
            if past_deadline || !self.is_wanted(&meta) {
                break false;
            }
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_UPLOAD_BACKOFF);
        };
        if outcome {
            self.uploads.refusal.borrow_mut().take();
            let edit = VersionEdit {
                uploaded: vec![id],
                ..Default::default()
            };
            // Logged before the state changes: a file is "uploaded" (and may lose its
            // local copy) only once a restart would see it so. A failure poisons the
            // shard (inside log_and_install).
            if self.log_and_install(edit, Vec::new()).await.is_ok() {
                meta.upload
                    .set(UploadState::Uploaded(self.opts.clock.now()));
                // Checkpoints name the file itself now, not the merge's inputs.
                meta.replaced.borrow_mut().take();
                let mut c = self.counters.borrow_mut();
                c.uploads += 1;
                c.upload_bytes += meta.desc.size_bytes;
            }
        }
        let u = &self.uploads;
        u.pending.set(u.pending.get() - 1);
        u.pending_bytes
            .set(u.pending_bytes.get() - meta.desc.size_bytes);
        drop(meta);
        self.signals.changed.notify_all();
        self.local_copies.wake.notify_all();
    }

    /// Whether a file's upload still matters: it is live, or a checkpoint in progress
    /// names it.
    fn is_wanted(&self, meta: &FileMeta) -> bool {
        meta.pins.get() > 0 || self.versions.is_live(meta.desc.id)
    }

    /// Waits while more bytes await upload than the shard's share of
    /// `max_pending_upload_bytes` (flushes and compactions call this before writing).
    pub(crate) async fn wait_for_upload_room(&self) {
        if self.remote.is_none() {
            return;
        }
        let limit = self.opts.max_pending_upload_bytes / u64::from(self.opts.shards);
        let mut waited = false;
        while self.uploads.pending_bytes.get() > limit
            && !self.health.close_requested.get()
            && !self.health.closing.get()
        {
            if !waited {
                waited = true;
                self.counters.borrow_mut().upload_waits += 1;
            }
            let seen = self.signals.changed.generation();
            self.signals
                .changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
    }

    /// Waits until every live file is uploaded (or fails if the shard stopped).
    /// A store refusing uploads (say, bad credentials) fails the wait with its error.
    pub(crate) async fn wait_for_uploads(&self) -> Result<()> {
        self.wait_until(
            || {
                self.uploads.refusal.borrow().is_some()
                    || !self
                        .versions
                        .current()
                        .levels
                        .iter()
                        .flatten()
                        .any(|f| f.upload.get() == UploadState::Pending)
            },
            &self.uploads.wake,
        )
        .await?;
        match self.uploads.refusal.borrow().clone() {
            Some(e) => Err(crate::remote::store_err(e)),
            None => Ok(()),
        }
    }

    /// Waits (bounded by `upload_close_timeout`) for uploads in flight at close.
    pub(crate) async fn drain_uploads(self: &Rc<Self>) {
        let deadline = self.opts.clock.now() + self.opts.upload_close_timeout;
        self.uploads.close_deadline.set(Some(deadline));
        self.start_queued_uploads();
        while self.uploads.pending.get() > 0 && self.opts.clock.now() < deadline {
            let seen = self.signals.changed.generation();
            self.signals
                .changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
        if self.uploads.pending.get() > 0 {
            tracing::warn!(
                shard = self.id,
                files = self.uploads.pending.get(),
                "closing with uploads unfinished; they resume at the next open"
            );
        }
    }

    /// Where the shard's files are.
    pub(crate) fn tier_stats(&self) -> TierStats {
        let mut t = TierStats {
            pending_uploads: self.uploads.pending.get(),
            pending_upload_bytes: self.uploads.pending_bytes.get(),
            remote_reads: self.reads.remote_reads.get(),
            warmed_files: self.warmer.files.get(),
            warmed_bytes: self.warmer.bytes.get(),
            warm_queue: self.warmer.queue.borrow().len() as u64,
            ..Default::default()
        };
        for f in self.versions.current().levels.iter().flatten() {
            if f.file.is_local() {
                t.local_files += 1;
                t.local_bytes += f.desc.size_bytes;
            } else {
                t.remote_only_files += 1;
                t.remote_only_bytes += f.desc.size_bytes;
            }
        }
        t
    }
}
