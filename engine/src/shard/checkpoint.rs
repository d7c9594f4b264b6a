//! A shard's part of a checkpoint.
//!
//! The checkpoint request is a barrier in the shard's request stream: when it runs,
//! it fixes what the checkpoint holds before its first `.await` — the last seqno,
//! the memtables (active and frozen) and the version. Writes go on; they get
//! higher seqnos, which the checkpoint does not see. Nothing is flushed: the
//! memtables' contents up to that seqno (newest version of each key, tombstones
//! kept) are written as one SST, the *memtable snapshot*, uploaded as an ordinary
//! object of the shard's lineage and never installed in the version (the memtables
//! flush later as usual). A frozen memtable whose flush is already writing is left
//! out of the snapshot: the checkpoint names the L0 file that flush installs. The
//! shard then waits until every SST it names is uploaded (they are pinned: their
//! uploads finish even if compaction retires them meanwhile; merge outputs still
//! uploading are named by their inputs, `version::replaced`) and writes its
//! checkpoint object. Bytes uploaded by a checkpoint are the snapshot plus the SSTs
//! that were not uploaded yet.

use std::rc::Rc;
use std::time::Duration;

use terrace_uploader::{UploadError, UploadJob, UploadPriority};

use super::Shard;
use crate::checkpoint::format::{ShardCheckpoint, ShardObject};
use crate::combine::PendingMerge;
use crate::error::{Error, ErrorDetail, Result};
use crate::iter::{MemIter, MergeIter, Source};
use crate::key::{InternalKey, ValueKind};
use crate::memtable::{FlushState, Memtable};
use crate::remote::{store_err, Remote};
use crate::sst::TableWriter;
use crate::version::replaced::{plan_checkpoint, PlannedFile};
use crate::version::{FileDesc, FileMeta, VersionEdit};

/// Attempts to upload a memtable snapshot before the checkpoint fails.
const SNAPSHOT_UPLOAD_ATTEMPTS: u32 = 8;

/// What a shard contributed to a checkpoint.
pub(crate) struct ShardCheckpointDone {
    pub(crate) checkpoint: ShardCheckpoint,
    pub(crate) object: ShardObject,
    /// Bytes of the memtable snapshot (uploaded by this checkpoint).
    pub(crate) memtable_bytes: u64,
    /// Bytes of SSTs that were not uploaded when the checkpoint began.
    pub(crate) sst_uploaded_bytes: u64,
    /// Bytes of every SST and snapshot the checkpoint names.
    pub(crate) state_bytes: u64,
    /// Merges whose not-yet-uploaded outputs were named by their inputs.
    pub(crate) merges_bypassed: usize,
    /// Where the time went.
    pub(crate) phases: ShardPhases,
}

/// Where a shard's part of a checkpoint spent its time. The snapshot runs beside
/// the wait for other files, so the two overlap.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardPhases {
    /// Writing the memtable snapshot's SST.
    pub(crate) snapshot_write: Duration,
    /// Uploading it.
    pub(crate) snapshot_upload: Duration,
    /// Waiting for flushes writing at the barrier and for SSTs not yet uploaded.
    pub(crate) files_awaited: Duration,
    /// Writing the shard's checkpoint object.
    pub(crate) shard_object: Duration,
}

/// A written and uploaded memtable snapshot, and how long each took.
struct Snapshot {
    desc: Option<FileDesc>,
    write: Duration,
    upload: Duration,
}

/// Pins files for the lifetime of a checkpoint (see [`FileMeta::pins`]).
struct Pins(Vec<Rc<FileMeta>>);

impl Pins {
    fn new(files: Vec<Rc<FileMeta>>) -> Pins {
        for f in &files {
            f.pins.set(f.pins.get() + 1);
        }
        Pins(files)
    }

    fn add(&mut self, f: Rc<FileMeta>) {
        f.pins.set(f.pins.get() + 1);
        self.0.push(f);
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for f in &self.0 {
            f.pins.set(f.pins.get() - 1);
        }
    }
}

impl Shard {
    /// Takes this shard's part of checkpoint `id` of the database with lineage
    /// `db_lineage`.
    pub(crate) async fn checkpoint(
        self: &Rc<Self>,
        id: u64,
        db_lineage: u64,
    ) -> Result<ShardCheckpointDone> {
        self.check_open()?;
        let Some(remote) = self.remote.clone() else {
            return Err(ErrorDetail::BadArgument(
                "checkpoints need an object store (Options::object_store is Disabled)".into(),
            )
            .into());
        };
        // The barrier: everything the checkpoint holds is fixed here, before any await.
        // A frozen memtable whose flush is already writing is not written a second
        // time: the checkpoint names the L0 file that flush installs. The others go
        // into the snapshot (their flush may wait for upload room, which would tie
        // the checkpoint to the upload backlog).
        let (seqno, mems, flushing) = {
            let m = self.mem.borrow();
            let (flushing, queued): (Vec<Rc<Memtable>>, Vec<Rc<Memtable>>) = m
                .frozen
                .iter()
                .cloned()
                .partition(|f| !matches!(f.flush_state(), FlushState::Queued));
            let mems: Vec<Rc<Memtable>> = std::iter::once(m.active.clone()).chain(queued).collect();
            (m.last_seqno, mems, flushing)
        };
        let version = self.versions.current();
        let (lineage, pointers) = {
            let p = self.versions.persisted();
            (p.lineage, p.compact_pointers.clone())
        };
        // Merge outputs still in the upload queue are named by their inputs where
        // that keeps the levels valid (`version::replaced`): the checkpoint waits
        // only for what cannot be swapped (flush outputs, mostly).
        let plan = plan_checkpoint(
            version
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, fs)| fs.iter().map(move |f| PlannedFile::of_version(l as u32, f)))
                .collect(),
        );
        let waited: Vec<Rc<FileMeta>> = version
            .levels
            .iter()
            .flatten()
            .filter(|f| {
                !f.is_uploaded()
                    && plan
                        .files
                        .iter()
                        .any(|p| p.in_version && p.desc.id == f.desc.id)
            })
            .cloned()
            .collect();
        let mut pins = Pins::new(waited.clone());
        // Compactions pause (bounded) until the snapshot is written and uploaded and
        // the files are in the store: right after a burst of writes they would
        // otherwise take most of the shard's CPU and disk from this checkpoint.
        let pause = self.opts.checkpoint_compaction_pause;
        let priority = CompactionsPaused::until(
            self,
            (!pause.is_zero()).then(|| terrace_tiering::clock::now() + pause),
        );

        // The snapshot is written in the flush queue (it is background work) while
        // this task waits for the flushes and uploads the checkpoint needs.
        let shard = self.clone();
        let snapshot = glommio::spawn_local_into(
            async move { shard.write_memtable_snapshot(&mems, seqno, &remote).await },
            self.queues.flush,
        )
        .map_err(|e| Error::internal(format!("cannot start a memtable snapshot: {e}")))?;
        let waits_began = terrace_tiering::clock::now();
        let awaited = self
            .await_checkpoint_files(plan, waited, &flushing, &mut pins)
            .await;
        let files_awaited = waits_began.elapsed();
        // The snapshot task ends on its own even when a wait failed: its object is
        // then garbage for the collector, and no local file is left behind.
        let snapshot = snapshot.await;
        drop(priority);
        let (plan, sst_uploaded_bytes) = awaited?;
        let snapshot = snapshot?;
        if snapshot.desc.is_some() {
            // The snapshot's file number is in no manifest record (it never joins the
            // version): record the next file number past it before the checkpoint
            // can commit, or a reopen after a crash would hand the number out again
            // and its upload would overwrite the object this checkpoint names.
            self.log_and_install(VersionEdit::default(), Vec::new())
                .await?;
        }
        drop(pins);
        let merges_bypassed = plan.swaps;
        {
            let mut c = self.counters.borrow_mut();
            c.checkpoint_merges_bypassed += merges_bypassed as u64;
            c.checkpoint_flushes_awaited += flushing.len() as u64;
        }

        let memtable_bytes = snapshot.desc.as_ref().map_or(0, |d| d.size_bytes);
        let state_bytes =
            plan.files.iter().map(|f| f.desc.size_bytes).sum::<u64>() + memtable_bytes;
        let checkpoint = ShardCheckpoint {
            checkpoint: id,
            shard: self.id,
            lineage,
            key_groups: self.key_groups,
            last_seqno: seqno,
            files: plan.files.into_iter().map(|f| (f.level, f.desc)).collect(),
            snapshots: snapshot.desc.into_iter().collect(),
            compact_pointers: pointers.into_iter().collect(),
        };
        let bytes = checkpoint.encode();
        let key = crate::files::shard_checkpoint_key(id, db_lineage, self.id);
        let object = ShardObject {
            shard: self.id,
            key: key.clone(),
            size_bytes: bytes.len() as u64,
            crc32: crate::encoding::crc32(&bytes),
        };
        let remote = self.remote.clone().ok_or(ErrorDetail::Closed)?;
        let put_began = terrace_tiering::clock::now();
        remote.put(key, bytes).await?;
        Ok(ShardCheckpointDone {
            checkpoint,
            object,
            memtable_bytes,
            sst_uploaded_bytes,
            state_bytes,
            merges_bypassed,
            phases: ShardPhases {
                snapshot_write: snapshot.write,
                snapshot_upload: snapshot.upload,
                files_awaited,
                shard_object: put_began.elapsed(),
            },
        })
    }

    /// Waits until the L0 files of `flushing` (the flushes writing at the barrier)
    /// are installed and every file the checkpoint names is uploaded; adds those L0
    /// files to `plan` (pinned). Returns the plan, files in level order, and the
    /// bytes of SSTs this checkpoint waited to see uploaded.
    async fn await_checkpoint_files(
        &self,
        mut plan: crate::version::replaced::CheckpointPlan,
        mut waited: Vec<Rc<FileMeta>>,
        flushing: &[Rc<Memtable>],
        pins: &mut Pins,
    ) -> Result<(crate::version::replaced::CheckpointPlan, u64)> {
        // A failed flush poisons the shard, which ends the wait with its error.
        self.wait_until(
            || {
                flushing
                    .iter()
                    .all(|m| matches!(m.flush_state(), FlushState::Installed(_)))
            },
            &self.signals.flush_wake,
        )
        .await?;
        for m in flushing {
            let FlushState::Installed(Some(f)) = m.flush_state() else {
                continue;
            };
            // The barrier's version may already hold it (installed, not yet noted).
            if plan.files.iter().any(|p| p.desc.id == f.desc.id) {
                continue;
            }
            plan.files.push(PlannedFile::of_version(0, &f));
            if !f.is_uploaded() {
                pins.add(f.clone());
                waited.push(f);
            }
        }
        plan.files.sort_by(|a, b| {
            a.level.cmp(&b.level).then_with(|| {
                if a.level == 0 {
                    b.desc.max_seqno.cmp(&a.desc.max_seqno)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        });
        let sst_uploaded_bytes = waited.iter().map(|f| f.desc.size_bytes).sum();
        self.wait_until(
            || self.uploads.refusal.borrow().is_some() || waited.iter().all(|f| f.is_uploaded()),
            &self.uploads.wake,
        )
        .await?;
        if !waited.iter().all(|f| f.is_uploaded()) {
            if let Some(e) = self.uploads.refusal.borrow().clone() {
                return Err(store_err(e));
            }
        }
        Ok((plan, sst_uploaded_bytes))
    }

    /// Writes the newest version (≤ `seqno`) of every key in `mems` as an SST of the
    /// shard's lineage and uploads it; the local file is removed afterwards. `None`
    /// when the memtables hold nothing at that seqno.
    async fn write_memtable_snapshot(
        &self,
        mems: &[Rc<Memtable>],
        seqno: u64,
        remote: &Remote,
    ) -> Result<Snapshot> {
        let began = terrace_tiering::clock::now();
        let nothing = |write| Snapshot {
            desc: None,
            write,
            upload: Duration::ZERO,
        };
        if mems.iter().all(|m| m.is_empty()) {
            return Ok(nothing(Duration::ZERO));
        }
        let (id, object, path) = self.allocate_file();
        let mut writer = TableWriter::create(&path, id, self.table_opts.clone()).await?;
        let written: Result<FileDesc> = async {
            let mut it = MergeIter::new(
                mems.iter()
                    .map(|m| Source::Mem(MemIter::new(m.clone(), seqno)))
                    .collect(),
            );
            it.seek_to_first().await?;
            let mut desc = FileDesc::empty(id, object);
            let mut last: Vec<u8> = Vec::new();
            let mut first = true;
            let mut pending: Option<PendingMerge> = None;
            let catalog = &self.opts.catalog;
            while it.valid() {
                let k = InternalKey::decode(it.key())
                    .ok_or_else(|| Error::internal("memtable produced a malformed key"))?;
                if first || k.state_key != last.as_slice() {
                    first = false;
                    last.clear();
                    last.extend_from_slice(k.state_key);
                    if let Some(p) = pending.take() {
                        let c = p.resolve(catalog, false)?;
                        writer.add(&c.ikey, &c.value).await?;
                        desc.note_entry(&c.ikey, c.seqno, c.kind);
                    }
                    let kind = ValueKind::from_u8(k.kind)
                        .ok_or_else(|| Error::internal(format!("unknown kind {}", k.kind)))?;
                    if kind == ValueKind::Merge {
                        pending = Some(PendingMerge::new(k.state_key, k.seqno, it.value()));
                    } else {
                        writer.add(it.key(), it.value()).await?;
                        desc.note_entry(it.key(), k.seqno, kind);
                    }
                } else if let Some(p) = pending.as_mut() {
                    p.older(k.kind, it.value())?;
                }
                it.next().await?;
            }
            if let Some(p) = pending.take() {
                let c = p.resolve(catalog, false)?;
                writer.add(&c.ikey, &c.value).await?;
                desc.note_entry(&c.ikey, c.seqno, c.kind);
            }
            Ok(desc)
        }
        .await;
        let mut desc = match written {
            Ok(d) if d.entries > 0 => d,
            Ok(_) => {
                writer.abandon().await;
                return Ok(nothing(began.elapsed()));
            }
            Err(e) => {
                writer.abandon().await;
                return Err(e);
            }
        };
        let props = writer.finish().await?;
        desc.size_bytes = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        desc.meta_bytes = props.meta_bytes;
        let write = began.elapsed();
        let job = UploadJob {
            key: crate::files::object_key(object),
            path: path.clone(),
            size: desc.size_bytes,
            priority: UploadPriority::Urgent,
        };
        let upload_began = terrace_tiering::clock::now();
        let uploaded = upload_with_retries(remote, job).await;
        let upload = upload_began.elapsed();
        if let Err(e) = super::remove_file(&path).await {
            tracing::warn!(file = %path.display(), error = %e, "could not remove a memtable snapshot's local copy");
        }
        uploaded?;
        {
            let mut c = self.counters.borrow_mut();
            c.uploads += 1;
            c.upload_bytes += desc.size_bytes;
        }
        Ok(Snapshot {
            desc: Some(desc),
            write,
            upload,
        })
    }
}

/// Compactions on the shard may pause until the given instant while this lives
/// (`Shard::yield_to_checkpoints`); dropping it lets them go on at once.
struct CompactionsPaused<'a>(&'a Shard);

impl<'a> CompactionsPaused<'a> {
    fn until(shard: &'a Shard, until: Option<std::time::Instant>) -> CompactionsPaused<'a> {
        shard.checkpoint_pause_until.set(until);
        CompactionsPaused(shard)
    }
}

impl Drop for CompactionsPaused<'_> {
    fn drop(&mut self) {
        self.0.checkpoint_pause_until.set(None);
        self.0.signals.changed.notify_all();
    }
}

/// Uploads `job`, retrying failures with backoff a bounded number of times.
async fn upload_with_retries(remote: &Remote, job: UploadJob) -> Result<()> {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match remote.uploader.upload(job.clone()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(UploadError::Store(e)))
                if attempt < SNAPSHOT_UPLOAD_ATTEMPTS && e.is_retryable() =>
            {
                tracing::warn!(key = %job.key, error = %e, "memtable snapshot upload failed; will retry");
            }
            Ok(Err(UploadError::Store(e))) => return Err(store_err(e)),
            Ok(Err(e)) if attempt < SNAPSHOT_UPLOAD_ATTEMPTS && e.is_retryable() => {
                tracing::warn!(key = %job.key, error = %e, "memtable snapshot upload failed; will retry");
            }
            Ok(Err(e)) => {
                return Err(Error::internal(format!(
                    "uploading the memtable snapshot {}: {e}",
                    job.key
                )))
            }
            Err(_) => return Err(ErrorDetail::Closed.into()),
        }
        attempt += 1;
        glommio::timer::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Shard {
    /// What the garbage collector must keep for this shard: every object a version
    /// reads (current, obsolete-but-read) or a checkpoint may name in place of a merge
    /// output not yet uploaded, and the lineages it owns (its own, and
    /// the pre-lineage naming when it still reads such files).
    pub(crate) fn gc_view(&self) -> (Vec<crate::version::ObjectId>, u64) {
        let current = self.versions.current();
        let obsolete = self.versions.obsolete_files();
        let mut objects = Vec::new();
        for f in current.levels.iter().flatten().chain(obsolete.iter()) {
            objects.push(f.desc.object);
            // Inputs a checkpoint may name in place of this merge output.
            if let Some(r) = &*f.replaced.borrow() {
                r.objects(&mut objects);
            }
        }
        (objects, self.versions.lineage())
    }
}
