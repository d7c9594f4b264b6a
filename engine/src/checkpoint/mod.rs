//! Checkpoints: the database's state in the object store, consistent across shards,
//! taken without a flush, restorable with every local file gone.
//!
//! [`Db::checkpoint`] sends a barrier into every shard's request stream; each shard
//! fixes its state there, writes its memtables as a snapshot SST, waits for its live
//! SSTs to be uploaded and writes its shard object (`shard/checkpoint.rs`). Once
//! every shard is done, the `CHECKPOINT` object commits the checkpoint
//! ([`format`] has the layout). Checkpoints are incremental: SSTs are shared, never
//! uploaded twice. The last `Options::retained_checkpoints` are kept; older ones are
//! released (their `CHECKPOINT` object deleted first, so a half-released checkpoint
//! is simply not a checkpoint); the garbage collector ([`gc`]) deletes objects that
//! no retained checkpoint and no live version names.
//!
//! Durability contract: once `checkpoint(id)` returns, restoring checkpoint `id`
//! ([`Db::restore`]) yields exactly the state of the writes submitted before the
//! call, even with every local file gone.

pub(crate) mod format;
pub mod gc;
mod listing;
pub mod reader;
pub mod rescale;
pub mod restore;
pub mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::db::Db;
use crate::error::{Error, ErrorDetail, Result};
use crate::files::{checkpoint_dir, checkpoint_key, CHECKPOINTS_PREFIX, CHECKPOINT_HEAD_KEY};
use crate::remote::Remote;
use format::{CheckpointHead, CheckpointMeta};
pub(crate) use listing::{list_checkpoints, read_checkpoint};
use terrace_tiering::store::{IoTask, ObjectMeta, StoreError};

/// What a checkpoint took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The checkpoint's id.
    pub id: u64,
    /// From the call to the commit.
    pub duration: Duration,
    /// Bytes of memtable snapshots uploaded.
    pub memtable_bytes: u64,
    /// Bytes of SSTs that were not yet uploaded when the checkpoint began (uploaded
    /// before it committed).
    pub sst_uploaded_bytes: u64,
    /// Bytes of every SST and snapshot the checkpoint names (the state's size).
    pub state_bytes: u64,
    /// SSTs named (snapshots included).
    pub files: usize,
    /// Merges whose outputs were still uploading: the checkpoint named their inputs,
    /// already in the store, instead of waiting.
    pub merges_bypassed: usize,
    /// Older checkpoints released to keep `retained_checkpoints`.
    pub released: Vec<u64>,
    /// Where the time went.
    pub phases: CheckpointPhases,
}

/// Where a checkpoint's time went. Shard phases are the slowest shard's; on a
/// shard the snapshot (write, then upload) runs beside the wait for other files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointPhases {
    /// Writing a shard's memtable snapshot.
    pub snapshot_write: Duration,
    /// Uploading it.
    pub snapshot_upload: Duration,
    /// Waiting for flushes writing at the barrier and SSTs not yet uploaded.
    pub files_awaited: Duration,
    /// Writing a shard's checkpoint object.
    pub shard_object: Duration,
    /// Writing the commit object.
    pub commit: Duration,
    /// Releasing checkpoints beyond `retained_checkpoints`.
    pub release: Duration,
}

impl CheckpointInfo {
    /// Bytes this checkpoint uploaded: memtable snapshots plus SSTs not uploaded yet.
    pub fn uploaded_bytes(&self) -> u64 {
        self.memtable_bytes + self.sst_uploaded_bytes
    }
}

/// A committed checkpoint in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The checkpoint's id.
    pub id: u64,
    /// Lineage of the database that took it.
    pub db_lineage: u64,
    /// When it was taken.
    pub created: SystemTime,
    /// Shards.
    pub shards: u32,
    /// Bytes of every SST and snapshot it names.
    pub state_bytes: u64,
    /// Bytes of its memtable snapshots.
    pub memtable_bytes: u64,
    /// Bytes it uploaded.
    pub uploaded_bytes: u64,
}

impl CheckpointSummary {
    pub(crate) fn of(meta: &CheckpointMeta) -> CheckpointSummary {
        CheckpointSummary {
            id: meta.id,
            db_lineage: meta.db_lineage,
            created: UNIX_EPOCH + Duration::from_millis(meta.created_unix_ms),
            shards: meta.shards,
            state_bytes: meta.state_bytes,
            memtable_bytes: meta.memtable_bytes,
            uploaded_bytes: meta.uploaded_bytes,
        }
    }
}

/// This database's committed checkpoints, as far as it knows them.
#[derive(Default)]
pub(crate) struct CheckpointBook {
    loaded: bool,
    /// Ids of this database's committed checkpoints, ascending.
    committed: Vec<u64>,
    /// The listing of the store's checkpoints started when the database opened, so
    /// that the first checkpoint does not wait a round trip for it. Only this
    /// database commits or releases its own checkpoints, so a listing from the open
    /// is as good as one taken later.
    prefetch: Option<IoTask<Result<Vec<ObjectMeta>, StoreError>>>,
}

impl CheckpointBook {
    /// A book whose listing starts now, on the I/O runtime.
    pub(crate) fn prefetched(remote: &Remote) -> CheckpointBook {
        CheckpointBook {
            prefetch: Some(remote.spawn_list(CHECKPOINTS_PREFIX.to_string())),
            ..CheckpointBook::default()
        }
    }

    async fn load(&mut self, remote: &Remote, db_lineage: u64) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let dirs = match self.prefetch.take() {
            Some(listing) => match listing.await {
                Ok(Ok(objects)) => listing::checkpoint_dirs(objects),
                // A failed listing is retried now, as if none had been started.
                _ => list_checkpoints(remote).await?,
            },
            None => list_checkpoints(remote).await?,
        };
        self.committed = dirs
            .iter()
            .filter(|((_, db), d)| *db == db_lineage && d.committed)
            .map(|((id, _), _)| *id)
            .collect();
        self.loaded = true;
        Ok(())
    }
}

impl Db {
    pub(crate) fn remote_for_checkpoints(&self) -> Result<&std::sync::Arc<Remote>> {
        self.inner.remote.as_ref().ok_or_else(|| {
            ErrorDetail::BadArgument(
                "checkpoints need an object store (Options::object_store is Disabled)".into(),
            )
            .into()
        })
    }

    /// Takes checkpoint `id` (Flink passes its checkpoint id; it must be greater than
    /// every earlier one). The checkpoint holds exactly the writes submitted before
    /// the call, on every shard; writes go on while it uploads. Nothing is flushed:
    /// memtables are written as snapshot objects, SSTs already in the store are
    /// shared. When it returns the checkpoint is committed, and older checkpoints
    /// beyond `Options::retained_checkpoints` are released.
    pub async fn checkpoint(&self, id: u64) -> Result<CheckpointInfo> {
        let remote = self.remote_for_checkpoints()?.clone();
        if self.inner.read_only {
            return Err(ErrorDetail::ReadOnly.into());
        }
        let clock = self.inner.opts.clock.clone();
        let start = clock.now();
        let db_lineage = self.inner.meta.lineage;
        let mut book = self.inner.checkpoints.lock().await;
        book.load(&remote, db_lineage).await?;
        if let Some(last) = book.committed.last().filter(|last| id <= **last) {
            return Err(ErrorDetail::BadArgument(format!(
                "checkpoint id {id} is not greater than the last checkpoint, {last}"
            ))
            .into());
        }
        let parts = self
            .on_all(move |s| async move { s.checkpoint(id, db_lineage).await })
            .await?;
        let meta = &self.inner.meta;
        let created = clock.system_time();
        let ck = CheckpointMeta {
            id,
            db_lineage,
            created_unix_ms: created
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            shards: meta.shards,
            max_key_groups: meta.max_key_groups,
            key_group_prefix_bytes: meta.key_group_prefix_bytes,
            key_groups: (meta.key_group_range.first, meta.key_group_range.last),
            last_seqno: parts
                .iter()
                .map(|p| p.checkpoint.last_seqno)
                .max()
                .unwrap_or(0),
            tables: meta.tables.clone(),
            shard_objects: parts.iter().map(|p| p.object.clone()).collect(),
            state_bytes: parts.iter().map(|p| p.state_bytes).sum(),
            memtable_bytes: parts.iter().map(|p| p.memtable_bytes).sum(),
            uploaded_bytes: parts
                .iter()
                .map(|p| p.memtable_bytes + p.sst_uploaded_bytes)
                .sum(),
        };
        let commit_began = clock.now();
        let commit_object = ck.encode();
        // The copy for restores goes out beside the commit, not after it: it is only
        // used once the listing shows this checkpoint committed, so landing first
        // (or alone, if the commit fails) misleads nobody.
        let head = CheckpointHead {
            checkpoint: commit_object.clone(),
            shards: parts
                .iter()
                .map(|p| (p.object.key.clone(), p.checkpoint.encode()))
                .collect(),
        };
        let (committed, copied) = futures_util::future::join(
            remote.put(checkpoint_key(id, db_lineage), commit_object),
            remote.put(CHECKPOINT_HEAD_KEY.to_string(), head.encode()),
        )
        .await;
        committed?;
        if let Err(e) = copied {
            // Restores then read the checkpoint's own objects: one round trip more.
            tracing::warn!(checkpoint = id, error = %e, "could not write checkpoints/LATEST");
        }
        book.committed.push(id);
        let commit = clock.now().saturating_duration_since(commit_began);

        let mut released = Vec::new();
        let retained = self.inner.opts.retained_checkpoints;
        while book.committed.len() > retained {
            let old = book.committed.remove(0);
            release(&remote, old, db_lineage).await?;
            released.push(old);
        }
        // The slowest shard's phases, all of one shard (maxima taken phase by phase
        // could come from different shards and add up past the whole).
        let slowest = parts
            .iter()
            .map(|p| p.phases)
            .max_by_key(|p| {
                (p.snapshot_write + p.snapshot_upload).max(p.files_awaited) + p.shard_object
            })
            .unwrap_or_default();
        let phases = CheckpointPhases {
            snapshot_write: slowest.snapshot_write,
            snapshot_upload: slowest.snapshot_upload,
            files_awaited: slowest.files_awaited,
            shard_object: slowest.shard_object,
            commit,
            release: clock.now().saturating_duration_since(commit_began + commit),
        };
        Ok(CheckpointInfo {
            id,
            duration: clock.now().saturating_duration_since(start),
            memtable_bytes: ck.memtable_bytes,
            sst_uploaded_bytes: parts.iter().map(|p| p.sst_uploaded_bytes).sum(),
            state_bytes: ck.state_bytes,
            files: parts
                .iter()
                .map(|p| p.checkpoint.files.len() + p.checkpoint.snapshots.len())
                .sum(),
            merges_bypassed: parts.iter().map(|p| p.merges_bypassed).sum(),
            released,
            phases,
        })
    }

    /// Releases checkpoint `id` of this database: it stops being a checkpoint at
    /// once, and its objects become garbage unless another checkpoint names them.
    pub async fn release_checkpoint(&self, id: u64) -> Result<()> {
        let remote = self.remote_for_checkpoints()?.clone();
        if self.inner.read_only {
            return Err(ErrorDetail::ReadOnly.into());
        }
        let db_lineage = self.inner.meta.lineage;
        let mut book = self.inner.checkpoints.lock().await;
        book.load(&remote, db_lineage).await?;
        let Some(pos) = book.committed.iter().position(|c| *c == id) else {
            return Err(
                ErrorDetail::BadArgument(format!("this database has no checkpoint {id}")).into(),
            );
        };
        release(&remote, id, db_lineage).await?;
        book.committed.remove(pos);
        Ok(())
    }

    /// This database's committed checkpoints, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointSummary>> {
        let remote = self.remote_for_checkpoints()?.clone();
        let db_lineage = self.inner.meta.lineage;
        let dirs = list_checkpoints(&remote).await?;
        let mut out = Vec::new();
        for ((id, db), dir) in dirs {
            if db == db_lineage && dir.committed {
                out.push(CheckpointSummary::of(
                    &read_checkpoint(&remote, id, db).await?,
                ));
            }
        }
        Ok(out)
    }
}

/// Deletes a checkpoint's commit object first (from then on it is not a checkpoint),
/// then its shard objects. Its SSTs are left to the garbage collector.
async fn release(remote: &Remote, id: u64, db_lineage: u64) -> Result<()> {
    remote.delete(checkpoint_key(id, db_lineage)).await?;
    let objects = remote.list(checkpoint_dir(id, db_lineage)).await?;
    futures_util::future::try_join_all(objects.into_iter().map(|o| remote.delete(o.key))).await?;
    Ok(())
}

/// The error for a checkpoint that is not in the store.
pub(crate) fn no_such_checkpoint(store: &str, what: &str) -> Error {
    ErrorDetail::BadArgument(format!("{store} holds no {what}")).into()
}
