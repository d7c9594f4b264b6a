//! A shard: one LSM tree owning a contiguous key-group range, run entirely on one
//! glommio executor thread.
//!
//! Nothing here is `Send`. State lives in `RefCell`s and no borrow is held across an
//! `.await`, so foreground operations, the flush task and the compaction task
//! interleave safely on the one thread. They run in separate task queues with
//! shares, so a compaction cannot starve reads.
//!
//! Data flow: writes go to the active memtable; a full memtable is frozen and queued
//! for the flush task, which writes it as an L0 SST, logs the edit in the manifest
//! and installs a new [`Version`]. The compaction task picks work with the pure
//! policy in [`crate::compaction`], merges files, and installs the result the same
//! way. Reads capture (seqno, memtables, version) when submitted and read that
//! snapshot, so concurrent writes and compactions never change what they see.

mod flush;
mod open;
mod read;
mod tier;
mod write;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::TaskQueueHandle;
use terrace_tiering::{BlockCache, RemoteStatsCell};

use crate::compaction::CompactionConfig;
use crate::error::{Error, ErrorDetail, Result};
use crate::lanes::KeyLanes;
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::notify::Notify;
use crate::options::Options;
use crate::remote::Remote;
use crate::sst::TableOptions;
use crate::stats::Counters;
use crate::version::{FileMeta, Version};

pub(crate) use read::ScanRange;
pub(crate) use tier::open_table;

/// Longest a waiting foreground operation (stalled writer, flush waiter) goes
/// without re-checking its condition, should a wake-up be lost.
pub(crate) const FOREGROUND_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);
/// The same for the flush and compaction tasks.
pub(crate) const BACKGROUND_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Mutable state of a shard.
pub(crate) struct State {
    /// The memtable taking writes.
    pub(crate) mem: Rc<Memtable>,
    /// Frozen memtables waiting for flush, newest first.
    pub(crate) imms: VecDeque<Rc<Memtable>>,
    pub(crate) version: Rc<Version>,
    /// Highest seqno assigned.
    pub(crate) last_seqno: u64,
    pub(crate) next_file_number: u64,
    pub(crate) compact_pointers: BTreeMap<u32, Vec<u8>>,
    /// Files removed from the version but maybe still read by older snapshots.
    pub(crate) obsolete: Vec<Rc<FileMeta>>,
}

/// Task queues of the shard's executor.
#[derive(Clone, Copy)]
pub(crate) struct Queues {
    pub(crate) foreground: TaskQueueHandle,
    pub(crate) flush: TaskQueueHandle,
    pub(crate) compaction: TaskQueueHandle,
}

/// One shard.
pub(crate) struct Shard {
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) table_opts: TableOptions,
    pub(crate) compaction_cfg: CompactionConfig,
    pub(crate) key_groups: (u16, u16),
    pub(crate) lanes: Rc<KeyLanes>,
    pub(crate) cache: Rc<BlockCache>,
    pub(crate) state: RefCell<State>,
    pub(crate) manifest: RefCell<Manifest>,
    /// Bumped whenever memtables or the version change (stalled writers and flush
    /// waiters listen).
    pub(crate) changed: Notify,
    /// Wakes the flush task.
    pub(crate) flush_wake: Notify,
    /// Wakes the compaction task.
    pub(crate) compaction_wake: Notify,
    /// Held by whoever is compacting (background or manual), so two compactions never
    /// pick the same files.
    pub(crate) compaction_lock: glommio::sync::Semaphore,
    pub(crate) counters: RefCell<Counters>,
    /// Set after a failure that leaves the shard unable to persist; writes then fail.
    pub(crate) poisoned: RefCell<Option<String>>,
    pub(crate) closing: Cell<bool>,
    pub(crate) queues: Queues,
    /// What the flush task is doing now (for the debug watchdog).
    pub(crate) flush_stage: Cell<&'static str>,
    /// What the compaction task is doing now (for the debug watchdog).
    pub(crate) compaction_stage: Cell<&'static str>,
    /// The object store, when the database has one.
    pub(crate) remote: Option<std::sync::Arc<Remote>>,
    /// Counters of remote block reads, shared by the shard's files.
    pub(crate) remote_reads: RemoteStatsCell,
    /// Files waiting for the upload task to start their upload.
    pub(crate) to_upload: RefCell<VecDeque<Rc<FileMeta>>>,
    /// Wakes the upload task.
    pub(crate) upload_wake: Notify,
    /// Wakes the tiering task (an upload finished).
    pub(crate) tier_wake: Notify,
    /// Files queued or uploading, and their bytes.
    pub(crate) uploads_pending: Cell<u64>,
    pub(crate) upload_pending_bytes: Cell<u64>,
    /// Close has begun: flushes stop waiting for upload room.
    pub(crate) close_requested: Cell<bool>,
    /// The last non-retryable upload failure, until an upload succeeds again.
    pub(crate) upload_refusal: RefCell<Option<terrace_tiering::store::StoreError>>,
    /// Set at close: failing uploads stop retrying after this instant.
    pub(crate) close_deadline: Cell<Option<std::time::Instant>>,
    /// Foreground reads (gets, batches, scans) in progress.
    pub(crate) reads_in_progress: Cell<u32>,
    /// Writes applied since the last turn given to the reactor while reads waited.
    pub(crate) writes_since_io_turn: Cell<u32>,
}

/// Writes a shard applies back to back while reads are in progress before it lets
/// the reactor reap their I/O. glommio only polls for disk completions between
/// task-queue runs, so a writer that never waits (writes land in the memtable) would
/// otherwise hold every read in flight until its queue's preemption timer fires.
pub(crate) const WRITES_PER_IO_TURN: u32 = 32;
/// How long such a write steps aside (the reactor runs as soon as the queue is idle).
pub(crate) const IO_TURN: std::time::Duration = std::time::Duration::from_micros(10);

/// Counts a read as in progress for as long as it lives.
pub(crate) struct ReadInProgress<'a>(&'a Cell<u32>);

impl<'a> ReadInProgress<'a> {
    pub(crate) fn new(count: &'a Cell<u32>) -> Self {
        count.set(count.get() + 1);
        ReadInProgress(count)
    }
}

impl Drop for ReadInProgress<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Shard {
    /// Directory of shard `id` inside the database directory.
    pub(crate) fn dir_for(db: &Path, id: u32) -> PathBuf {
        db.join(format!("shard-{id:04}"))
    }

    pub(crate) fn sst_path(&self, file_id: u64) -> PathBuf {
        self.dir.join(format!("{file_id:016x}.sst"))
    }

    /// File ids are unique across the database: the shard id in the top 16 bits.
    pub(crate) fn make_file_id(&self, number: u64) -> u64 {
        (u64::from(self.id) << 48) | number
    }

    /// Takes the next file number; returns the new file's id and path.
    pub(crate) fn allocate_file(&self) -> (u64, PathBuf) {
        let number = {
            let mut st = self.state.borrow_mut();
            let n = st.next_file_number;
            st.next_file_number += 1;
            n
        };
        let id = self.make_file_id(number);
        (id, self.sst_path(id))
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if let Some(reason) = self.poisoned.borrow().as_ref() {
            return Err(ErrorDetail::Poisoned {
                shard: self.id,
                reason: reason.clone(),
            }
            .into());
        }
        if self.closing.get() {
            return Err(ErrorDetail::Closed.into());
        }
        Ok(())
    }

    /// Records a failure the shard cannot recover from in place: later writes fail
    /// with a Closed-kind error naming it.
    pub(crate) fn poison(&self, err: &Error) {
        let mut p = self.poisoned.borrow_mut();
        if p.is_none() {
            tracing::error!(shard = self.id, error = %err, "shard stops taking writes");
            *p = Some(err.to_string());
        }
        drop(p);
        self.changed.notify_all();
    }

    /// Installs a new version, logging `edit` first. The manifest write is the commit
    /// point: an edit not on disk is not applied.
    pub(crate) fn log_and_install(
        &self,
        edit: crate::version::VersionEdit,
        added: Vec<(u32, Rc<FileMeta>)>,
    ) -> Result<()> {
        self.manifest.borrow_mut().append(&edit)?;
        for (_, f) in &added {
            // A trivial move re-adds a file already queued; only new files upload.
            if !edit.deleted.iter().any(|(_, id)| *id == f.desc.id) {
                self.queue_upload(f);
            }
        }
        let mut st = self.state.borrow_mut();
        let removed: Vec<Rc<FileMeta>> = st
            .version
            .levels
            .iter()
            .flatten()
            .filter(|f| edit.deleted.iter().any(|(_, id)| *id == f.desc.id))
            .filter(|f| !added.iter().any(|(_, a)| a.desc.id == f.desc.id))
            .cloned()
            .collect();
        st.version = Rc::new(st.version.apply(&edit.deleted, added));
        st.obsolete.extend(removed);
        for (level, p) in edit.compact_pointers {
            st.compact_pointers.insert(level, p);
        }
        drop(st);
        self.changed.notify_all();
        Ok(())
    }

    /// Deletes obsolete files no snapshot reads any more.
    pub(crate) fn purge_obsolete(&self) {
        let dead: Vec<Rc<FileMeta>> = {
            let mut st = self.state.borrow_mut();
            let (dead, live): (Vec<_>, Vec<_>) = st
                .obsolete
                .drain(..)
                .partition(|f| Rc::strong_count(f) == 1);
            st.obsolete = live;
            dead
        };
        for f in dead {
            let path = self.sst_path(f.desc.id);
            self.cache.evict_file(f.desc.id);
            // Nothing references the file any more: its upload (if any) has settled,
            // because the upload task holds a reference while it runs.
            self.delete_object(&f);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete obsolete SST");
                    continue;
                }
            }
            if let Some(hook) = &self.opts.new_file_hook {
                hook.on_file_deleted(self.id, f.desc.id);
            }
        }
    }
}

impl Shard {
    /// Flushes, stops background work and releases files. Idempotent.
    pub(crate) async fn close(self: &Rc<Self>) -> Result<()> {
        self.close_requested.set(true);
        let flushed = if self.closing.get() {
            Ok(())
        } else if self.poisoned.borrow().is_some() {
            self.check_open()
        } else {
            self.flush_all().await
        };
        self.closing.set(true);
        self.flush_wake.notify_all();
        self.compaction_wake.notify_all();
        self.upload_wake.notify_all();
        self.tier_wake.notify_all();
        self.changed.notify_all();
        // Wait for a compaction in progress to finish and install its result.
        if let Ok(permit) = self.compaction_lock.acquire_permit(1).await {
            drop(permit);
        }
        // Start uploads still queued, then give them a bounded time to finish.
        self.drain_uploads().await;
        self.purge_obsolete();
        flushed
    }

    /// Waits until `done` holds, waking `poke` (the task that makes progress) each
    /// time it does not; fails once the shard is poisoned.
    pub(crate) async fn wait_until(&self, done: impl Fn() -> bool, poke: &Notify) -> Result<()> {
        loop {
            let seen = self.changed.generation();
            if let Some(reason) = self.poisoned.borrow().as_ref() {
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
            self.changed
                .changed_or_after(seen, FOREGROUND_RECHECK)
                .await;
        }
    }

    /// Waits until the policy finds no compaction work.
    pub(crate) async fn wait_for_compactions(&self) -> Result<()> {
        self.wait_until(
            || {
                let st = self.state.borrow();
                st.imms.is_empty()
                    && crate::compaction::choose(
                        &st.version.levels,
                        &self.compaction_cfg,
                        &st.compact_pointers,
                    ) == crate::compaction::Choice::Nothing
            },
            &self.compaction_wake,
        )
        .await
    }
}
