//! Tiering on a shard: uploading new SSTs, keeping fresh files warm, enforcing the
//! local disk budget, and slowing flushes when uploads fall behind.
//!
//! Every SST is written locally first. Once its version edit is logged it is queued
//! for upload; the upload runs on the I/O runtime while the shard keeps serving. When
//! it completes the shard logs an "uploaded" edit: only then may the local copy go,
//! and only after the warm window, and only when the disk budget asks for room. A
//! restart re-queues every file the manifest does not record as uploaded.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use terrace_tiering::{LocalFile, RemoteLocation, RemoteStatsCell, TieredFile};
use terrace_uploader::{UploadError, UploadJob};

use super::{Shard, BACKGROUND_RECHECK, FOREGROUND_RECHECK};
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::sst::TableReader;
use crate::stats::TierStats;
use crate::version::{FileDesc, FileMeta, UploadState, VersionEdit};

/// Longest pause between attempts of a failing upload.
const MAX_UPLOAD_BACKOFF: Duration = Duration::from_secs(5);
/// How often the budget is checked when nothing else wakes the tiering task.
const TIER_RECHECK: Duration = Duration::from_secs(1);

/// Opens a reader over an SST that has a local copy, an object, or both.
pub(crate) async fn open_table(
    shard: u32,
    desc: FileDesc,
    path: &Path,
    local: Option<LocalFile>,
    remote: Option<&Arc<Remote>>,
    stats: &RemoteStatsCell,
    upload: UploadState,
) -> Result<Rc<FileMeta>> {
    let location = remote.map(|r| RemoteLocation {
        io: r.io.clone(),
        store: r.store(),
        key: Remote::object_key(shard, desc.id).into(),
    });
    let file = Rc::new(TieredFile::new(
        desc.size_bytes,
        local,
        location,
        stats.clone(),
    ));
    let source: Rc<dyn terrace_tiering::BlockSource> = file.clone();
    let reader = TableReader::open(desc.id, path.to_path_buf(), source).await?;
    Ok(Rc::new(FileMeta {
        desc,
        reader: Rc::new(reader),
        file,
        upload: std::cell::Cell::new(upload),
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
        self.uploads_pending.set(self.uploads_pending.get() + 1);
        self.upload_pending_bytes
            .set(self.upload_pending_bytes.get() + meta.desc.size_bytes);
        self.to_upload.borrow_mut().push_back(meta.clone());
        self.upload_wake.notify_all();
    }

    /// The upload task: starts one upload per queued file (the uploader bounds how
    /// many run at once) until the shard closes and nothing is queued.
    pub(crate) async fn upload_loop(self: Rc<Self>) {
        loop {
            let seen = self.upload_wake.generation();
            self.start_queued_uploads();
            if self.closing.get() {
                return;
            }
            self.upload_wake
                .changed_or_after(seen, BACKGROUND_RECHECK)
                .await;
        }
    }

    /// Starts an upload task for every queued file.
    pub(crate) fn start_queued_uploads(self: &Rc<Self>) {
        let queued: Vec<Rc<FileMeta>> = self.to_upload.borrow_mut().drain(..).collect();
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
            let job = UploadJob {
                key: Remote::object_key(self.id, id),
                path: self.sst_path(id),
                size: meta.desc.size_bytes,
            };
            match remote.uploader.upload(job).await {
                Ok(Ok(_receipt)) => break true,
                Ok(Err(UploadError::Local { path, source })) if self.is_live(id) => {
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
                            *self.upload_refusal.borrow_mut() = Some(se.clone());
                            self.changed.notify_all();
                        }
                        backoff = MAX_UPLOAD_BACKOFF;
                    }
                }
                // The I/O runtime stopped: the database is going away. The manifest
                // still says "not uploaded", so the next open uploads the file.
                Err(_) => break false,
            }
            let past_deadline = self
                .close_deadline
                .get()
                .is_some_and(|d| self.opts.clock.now() >= d);
            if past_deadline || !self.is_live(id) {
                break false;
            }
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_UPLOAD_BACKOFF);
        };
        if outcome {
            self.upload_refusal.borrow_mut().take();
            let edit = VersionEdit {
                uploaded: vec![id],
                ..Default::default()
            };
            let logged = self.manifest.borrow_mut().append(&edit);
            match logged {
                Ok(()) => {
                    meta.upload
                        .set(UploadState::Uploaded(self.opts.clock.now()));
                    let mut c = self.counters.borrow_mut();
                    c.uploads += 1;
                    c.upload_bytes += meta.desc.size_bytes;
                }
                Err(e) => self.poison(&e),
            }
        }
        self.uploads_pending.set(self.uploads_pending.get() - 1);
        self.upload_pending_bytes
            .set(self.upload_pending_bytes.get() - meta.desc.size_bytes);
        drop(meta);
        self.changed.notify_all();
        self.tier_wake.notify_all();
    }

    fn is_live(&self, id: u64) -> bool {
        self.state
            .borrow()
            .version
            .levels
            .iter()
            .flatten()
            .any(|f| f.desc.id == id)
    }

    /// Waits while more bytes await upload than the shard's share of
    /// `max_pending_upload_bytes` (flushes and compactions call this before writing).
    pub(crate) async fn wait_for_upload_room(&self) {
        if self.remote.is_none() {
            return;
        }
        let limit = self.opts.max_pending_upload_bytes / u64::from(self.opts.shards);
        let mut waited = false;
        while self.upload_pending_bytes.get() > limit
            && !self.close_requested.get()
            && !self.closing.get()
        {
            if !waited {
                waited = true;
                self.counters.borrow_mut().upload_waits += 1;
            }
            let seen = self.changed.generation();
            self.changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
    }

    /// Waits until every live file is uploaded (or fails if the shard stopped).
    /// A store refusing uploads (say, bad credentials) fails the wait with its error.
    pub(crate) async fn wait_for_uploads(&self) -> Result<()> {
        self.wait_until(
            || {
                let st = self.state.borrow();
                self.upload_refusal.borrow().is_some()
                    || !st
                        .version
                        .levels
                        .iter()
                        .flatten()
                        .any(|f| f.upload.get() == UploadState::Pending)
            },
            &self.upload_wake,
        )
        .await?;
        match self.upload_refusal.borrow().clone() {
            Some(e) => Err(crate::remote::store_err(e)),
            None => Ok(()),
        }
    }

    /// Waits (bounded by `upload_close_timeout`) for uploads in flight at close.
    pub(crate) async fn drain_uploads(self: &Rc<Self>) {
        let deadline = self.opts.clock.now() + self.opts.upload_close_timeout;
        self.close_deadline.set(Some(deadline));
        self.start_queued_uploads();
        while self.uploads_pending.get() > 0 && self.opts.clock.now() < deadline {
            let seen = self.changed.generation();
            self.changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
        if self.uploads_pending.get() > 0 {
            tracing::warn!(
                shard = self.id,
                files = self.uploads_pending.get(),
                "closing with uploads unfinished; they resume at the next open"
            );
        }
    }

    /// The tiering task: enforces the local disk budget when uploads finish and once
    /// a second, until close.
    pub(crate) async fn tier_loop(self: Rc<Self>) {
        if self.remote.is_none() || self.opts.local_disk_budget_bytes.is_none() {
            return;
        }
        loop {
            let seen = self.tier_wake.generation();
            if self.closing.get() {
                return;
            }
            self.enforce_local_budget();
            self.tier_wake.changed_or_after(seen, TIER_RECHECK).await;
        }
    }

    /// Drops local copies of the oldest uploaded files past their warm window until
    /// the shard's local SSTs fit its share of `local_disk_budget_bytes`.
    pub(crate) fn enforce_local_budget(&self) {
        let Some(budget) = self.opts.local_disk_budget_bytes else {
            return;
        };
        let budget = budget / u64::from(self.opts.shards);
        let now = self.opts.clock.now();
        let warm = self.opts.warm_window;
        let (mut local, mut candidates) = {
            let st = self.state.borrow();
            let mut local = 0u64;
            let mut candidates = Vec::new();
            for f in st.version.levels.iter().flatten().chain(st.obsolete.iter()) {
                if !f.file.is_local() {
                    continue;
                }
                local += f.desc.size_bytes;
                if let UploadState::Uploaded(at) = f.upload.get() {
                    if now.duration_since(at) >= warm {
                        candidates.push((at, f.clone()));
                    }
                }
            }
            (local, candidates)
        };
        if local <= budget {
            return;
        }
        candidates.sort_by_key(|(at, f)| (*at, f.desc.id));
        for (_, f) in candidates {
            if local <= budget {
                break;
            }
            if !f.file.drop_local() {
                continue;
            }
            let path = self.sst_path(f.desc.id);
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a dropped local copy");
            }
            local = local.saturating_sub(f.desc.size_bytes);
            self.counters.borrow_mut().local_drops += 1;
            if let Some(hook) = &self.opts.new_file_hook {
                hook.on_local_copy_dropped(self.id, f.desc.id);
            }
        }
    }

    /// Where the shard's files are.
    pub(crate) fn tier_stats(&self) -> TierStats {
        let st = self.state.borrow();
        let mut t = TierStats {
            pending_uploads: self.uploads_pending.get(),
            pending_upload_bytes: self.upload_pending_bytes.get(),
            remote_reads: self.remote_reads.get(),
            ..Default::default()
        };
        for f in st.version.levels.iter().flatten() {
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

    /// Deletes the object of a file no version references any more.
    pub(crate) fn delete_object(&self, meta: &FileMeta) {
        let Some(remote) = &self.remote else { return };
        if meta.upload.get() == UploadState::LocalOnly {
            return;
        }
        let store = remote.store();
        let key = Remote::object_key(self.id, meta.desc.id);
        // Fire and forget: a failed delete leaves an orphan object for the garbage
        // collector, never a missing one.
        drop(remote.io.spawn(async move {
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(key, error = %e, "could not delete an obsolete object");
            }
        }));
    }
}
