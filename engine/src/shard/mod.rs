//! A shard: one LSM tree owning a contiguous key-group range, run entirely on one
//! glommio executor thread.
//!
//! Nothing here is `Send`. State lives in `RefCell`s and no borrow is held across an
//! `.await`, so foreground operations, the flush task and the compaction task
//! interleave safely on the one thread. They run in separate task queues with
//! shares, so a compaction cannot starve reads.
//!
//! Data flow: writes go to the active memtable; a full memtable is frozen and queued
//! for the flush task, which writes it as an L0 SST and hands the edit to the
//! [`VersionSet`], the one owner of the shard's metadata, which logs and installs
//! it. The compaction task picks work with the pure policy in
//! [`crate::policy::compaction`], merges files, and installs the result the same way.
//! Reads capture (seqno, memtables, version) when submitted and read that snapshot,
//! so concurrent writes and compactions never change what they see.
//!
//! The shard's fields are grouped by role; each group is defined in, and changed by,
//! the file that owns it:
//!
//! | field | owner |
//! |---|---|
//! | `versions` (files, manifest) | [`VersionSet`] |
//! | `mem` (memtables, seqnos) | `write.rs` (frozen by writes, popped by `flush.rs`) |
//! | `reads` (block cache, reads in progress, open cursors) | `read.rs` (the cache itself: `cache.rs`; cursors: `cursor.rs`) |
//! | `uploads` (queue, pending bytes, refusals) | `uploads.rs` |
//! | `local_copies` (budget task) | `local_copies.rs` |
//! | `warmer` (downloads after a restore) | `warmer.rs` |
//! | `signals`, `health` | this file |
//!
//! Files: `runner.rs` (the thread and its request loop), `open.rs`, `write.rs`,
//! `read.rs`, `cursor.rs` (scan cursors), `cache.rs`, `flush.rs`, `compaction.rs`, `uploads.rs`, `local_copies.rs`,
//! `stats.rs`.

pub(crate) mod cache;
pub(crate) mod checkpoint;
mod compaction;
pub(crate) mod cursor;
mod flush;
mod local_copies;
mod open;
pub(crate) mod pulse;
mod read;
pub(crate) mod request;
pub(crate) mod runner;
mod stats;
mod uploads;
mod warmer;
mod write;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use glommio::TaskQueueHandle;

use crate::error::{Error, ErrorDetail, Result};
use crate::lanes::KeyLanes;
use crate::notify::Notify;
use crate::options::Options;
use crate::policy::compaction::CompactionConfig;
use crate::remote::Remote;
use crate::sst::TableOptions;
use crate::stats::Counters;
use crate::version::{FileMeta, ObjectId, VersionEdit, VersionSet};

pub(crate) use local_copies::LocalCopies;
pub(crate) use open::new_lineage;
pub(crate) use read::ReadPath;
pub(crate) use uploads::{open_table, Uploads};
pub(crate) use write::Memtables;

/// Longest a waiting foreground operation (stalled writer, flush waiter) goes
/// without re-checking its condition, should a wake-up be lost.
pub(crate) const FOREGROUND_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);
/// The same for the flush and compaction tasks.
pub(crate) const BACKGROUND_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Task queues of the shard's executor.
#[derive(Clone, Copy)]
pub(crate) struct Queues {
    pub(crate) foreground: TaskQueueHandle,
    pub(crate) flush: TaskQueueHandle,
    pub(crate) compaction: TaskQueueHandle,
}

/// How the shard's tasks wake each other.
#[derive(Default)]
pub(crate) struct Signals {
    /// Bumped whenever memtables, the version, uploads or health change (stalled
    /// writers and every waiter listen).
    pub(crate) changed: Notify,
    /// Wakes the flush task.
    pub(crate) flush_wake: Notify,
    /// Wakes the compaction task.
    pub(crate) compaction_wake: Notify,
    /// What the flush task is doing now (for the debug watchdog).
    pub(crate) flush_stage: Cell<&'static str>,
    /// What the compaction task is doing now (for the debug watchdog).
    pub(crate) compaction_stage: Cell<&'static str>,
}

/// Whether the shard takes work.
#[derive(Default)]
pub(crate) struct Health {
    /// Set after a failure that leaves the shard unable to persist; writes then fail.
    pub(crate) poisoned: RefCell<Option<String>>,
    /// Close has begun: flushes stop waiting for upload room.
    pub(crate) close_requested: Cell<bool>,
    /// Background work is stopping; no new operations.
    pub(crate) closing: Cell<bool>,
}

/// One shard.
pub(crate) struct Shard {
    pub(crate) id: u32,
    /// When the shard opened (trims of remote files wait `Options::trim_delay`).
    pub(crate) opened: std::time::Instant,
    /// The files in the shard's version when it opened: only those wait for
    /// `Options::trim_delay` (files this process writes compact as usual).
    pub(crate) files_at_open: std::collections::HashSet<u64>,
    /// Writers waiting in `stall_if_needed` now (a full L0 lifts `trim_delay`
    /// only for them: at open with nobody writing, a full L0 can wait).
    pub(crate) writers_stalled: Cell<u32>,
    /// When the current stall began (the first of the writers now stalled).
    pub(crate) stall_began: Cell<Option<std::time::Instant>>,
    /// While a checkpoint writes its snapshot and waits for its files on this shard:
    /// until when compactions may pause for it (`Options::checkpoint_compaction_pause`;
    /// `None`: no such checkpoint, or no pause allowed).
    pub(crate) checkpoint_pause_until: Cell<Option<std::time::Instant>>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) table_opts: TableOptions,
    pub(crate) compaction_cfg: CompactionConfig,
    pub(crate) key_groups: (u16, u16),
    pub(crate) queues: Queues,
    /// Opened without the right to change anything on disk.
    pub(crate) read_only: bool,
    /// The object store, when the database has one.
    pub(crate) remote: Option<std::sync::Arc<Remote>>,
    /// Per-key completion order for reads and writes.
    pub(crate) lanes: Rc<KeyLanes>,
    /// Held by whoever is compacting (background or manual), so two compactions never
    /// pick the same files.
    pub(crate) compaction_lock: glommio::sync::Semaphore,
    pub(crate) versions: VersionSet,
    pub(crate) mem: RefCell<Memtables>,
    pub(crate) reads: ReadPath,
    pub(crate) uploads: Uploads,
    pub(crate) local_copies: LocalCopies,
    pub(crate) warmer: warmer::Warmer,
    pub(crate) signals: Signals,
    pub(crate) health: Health,
    pub(crate) counters: RefCell<Counters>,
}

impl Shard {
    pub(crate) fn sst_path(&self, file_id: u64) -> PathBuf {
        self.dir.join(crate::files::sst_name(file_id))
    }

    /// File ids are unique across the database: the shard id in the top 16 bits.
    pub(crate) fn make_file_id(&self, number: u64) -> u64 {
        (u64::from(self.id) << 48) | number
    }

    /// Takes the next file number; returns the new file's id, object and path.
    pub(crate) fn allocate_file(&self) -> (u64, ObjectId, PathBuf) {
        let id = self.make_file_id(self.versions.allocate_file_number());
        let object = ObjectId {
            lineage: self.versions.lineage(),
            number: id,
        };
        (id, object, self.sst_path(id))
    }

    /// Whether a flush (a frozen memtable queued or being written) or a compaction is
    /// under way: CPU the request loop's spin must not take (see `runner.rs`).
    pub(crate) fn background_busy(&self) -> bool {
        self.compaction_lock.available() == 0 || !self.mem.borrow().frozen.is_empty()
    }

    /// Fails if the shard does not take writes (poisoned, closing or read-only).
    pub(crate) fn check_open(&self) -> Result<()> {
        if let Some(reason) = self.health.poisoned.borrow().as_ref() {
            return Err(ErrorDetail::Poisoned {
                shard: self.id,
                reason: reason.clone(),
            }
            .into());
        }
        if self.health.closing.get() {
            return Err(ErrorDetail::Closed.into());
        }
        if self.read_only {
            return Err(ErrorDetail::ReadOnly.into());
        }
        Ok(())
    }

    /// Records a failure the shard cannot recover from in place: later writes fail
    /// with a Closed-kind error naming it.
    pub(crate) fn poison(&self, err: &Error) {
        let mut p = self.health.poisoned.borrow_mut();
        if p.is_none() {
            tracing::error!(shard = self.id, error = %err, "shard stops taking writes");
            *p = Some(err.to_string());
        }
        drop(p);
        self.signals.changed.notify_all();
    }

    /// Logs `edit` and installs the version it describes (through the
    /// [`VersionSet`]), then queues the new files for upload. A failure poisons the
    /// shard: the manifest refuses later edits anyway.
    pub(crate) async fn log_and_install(
        &self,
        edit: VersionEdit,
        added: Vec<(u32, Rc<FileMeta>)>,
    ) -> Result<()> {
        let new_files: Vec<Rc<FileMeta>> = added
            .iter()
            .filter(|(_, f)| !edit.deleted.iter().any(|(_, id)| *id == f.desc.id))
            .map(|(_, f)| f.clone())
            .collect();
        if let Err(e) = self.versions.log_and_apply(edit, added).await {
            self.poison(&e);
            return Err(e);
        }
        for f in &new_files {
            self.queue_upload(f);
        }
        self.signals.changed.notify_all();
        Ok(())
    }

    /// Deletes obsolete files no snapshot reads any more: evicts their blocks and
    /// unlinks the local copy (off the shard thread). Their objects stay: a retained
    /// checkpoint may name them; the garbage collector deletes them when none does.
    pub(crate) async fn purge_obsolete(&self) {
        for f in self.versions.take_unreferenced() {
            let path = self.sst_path(f.desc.id);
            self.reads.cache.evict_file(f.desc.id);
            if f.file.is_local() {
                if let Err(e) = remove_file(&path).await {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete obsolete SST");
                    continue;
                }
            }
            if let Some(hook) = &self.opts.new_file_hook {
                hook.on_file_deleted(self.id, f.desc.id);
            }
        }
    }

    /// Resolves once the shard's close has begun.
    pub(crate) async fn closing(&self) {
        loop {
            let seen = self.signals.changed.generation();
            if self.health.close_requested.get() {
                return;
            }
            self.signals
                .changed
                .changed_or_after(seen, BACKGROUND_RECHECK)
                .await;
        }
    }

    /// Flushes, stops background work and releases files. Idempotent.
    pub(crate) async fn close(self: &Rc<Self>) -> Result<()> {
        self.health.close_requested.set(true);
        // Long-lived tasks (keyed pipelines) wait on this to end.
        self.signals.changed.notify_all();
        let flushed = if self.health.closing.get() || self.read_only {
            Ok(())
        } else if self.health.poisoned.borrow().is_some() {
            self.check_open()
        } else {
            self.flush_all().await
        };
        self.health.closing.set(true);
        // Open cursors pin memtables and files; nothing reads them once closing.
        self.reads.cursors.borrow_mut().clear();
        self.signals.flush_wake.notify_all();
        self.signals.compaction_wake.notify_all();
        self.uploads.wake.notify_all();
        self.local_copies.wake.notify_all();
        self.signals.changed.notify_all();
        if self.read_only {
            return flushed;
        }
        // Wait for a compaction in progress to finish and install its result.
        if let Ok(permit) = self.compaction_lock.acquire_permit(1).await {
            drop(permit);
        }
        // Start uploads still queued, then give them a bounded time to finish.
        self.drain_uploads().await;
        self.purge_obsolete().await;
        let cache_closed = self.reads.cache.close().await;
        flushed.and(cache_closed)
    }

    /// Waits until `done` holds, waking `poke` (the task that makes progress) each
    /// time it does not; fails once the shard is poisoned.
    pub(crate) async fn wait_until(&self, done: impl Fn() -> bool, poke: &Notify) -> Result<()> {
        loop {
            let seen = self.signals.changed.generation();
            if let Some(reason) = self.health.poisoned.borrow().as_ref() {
                return Err(ErrorDetail::Poisoned {
                    shard: self.id,
                    reason: reason.clone(),
                }
                .into());
            }
            if done() {
                return Ok(());
            }
            poke.notify_all();
            self.signals
                .changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
    }
}

/// Unlinks a file off the shard thread; a file already gone is not an error.
pub(crate) async fn remove_file(path: &std::path::Path) -> std::io::Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = std::io::Error::from(e);
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
