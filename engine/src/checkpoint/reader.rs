//! Reading a checkpoint straight from the object store, while the job that wrote it
//! keeps running and without touching its files.
//!
//! A [`CheckpointReader`] restores the checkpoint's metadata into a private
//! temporary directory (nothing is written to the store) and opens that database
//! read-only: reads are ranged GETs of the checkpoint's SSTs, through the block
//! cache. The temporary directory is removed when the reader is dropped.

use std::ops::Bound;
use std::path::PathBuf;

use super::restore::{open_checked, write_restored, ShardCount};
use super::CheckpointSummary;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::key::TableId;
use crate::options::{ObjectStoreSpec, Options};
use crate::stats::DbStats;

/// A read-only view of one checkpoint.
pub struct CheckpointReader {
    db: Option<Db>,
    dir: PathBuf,
    summary: CheckpointSummary,
}

impl CheckpointReader {
    /// Opens checkpoint `id` (or the newest) of the store `store` names. `base`
    /// supplies tuning knobs (cache size, I/O threads, faults); its path, store and
    /// shard settings are replaced.
    pub async fn open(store: ObjectStoreSpec, id: Option<u64>, base: Options) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "terrace-checkpoint-{:016x}",
            terrace_tiering::clock::fresh_seed()
        ));
        let mut opts = base;
        opts.path = dir.clone();
        opts.object_store = store;
        opts.create_if_missing = true;
        opts.read_only = false;
        let restored = match write_restored(opts.clone(), id, ShardCount::FromCheckpoint).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::internal(
                    "a checkpoint reader restore asked to rescale",
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let summary = CheckpointSummary::of(&restored.meta);
        let mut ro = Options::for_existing(&dir)?;
        ro.read_only = true;
        ro.object_store = opts.object_store.clone();
        ro.object_store_faults = opts.object_store_faults.clone();
        ro.block_cache_bytes = opts.block_cache_bytes;
        ro.io_threads = opts.io_threads;
        ro.pin_shards = opts.pin_shards;
        // The reader's open overlaps the check that every object exists.
        let db = match open_checked(ro, vec![restored.check]).await {
            Ok(db) => db,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(CheckpointReader {
            db: Some(db),
            dir,
            summary,
        })
    }

    /// Which checkpoint this is.
    pub fn summary(&self) -> &CheckpointSummary {
        &self.summary
    }

    fn db(&self) -> Result<&Db> {
        self.db
            .as_ref()
            .ok_or_else(|| crate::ErrorDetail::Closed.into())
    }

    /// The id of state table `name`.
    pub fn table(&self, name: &str) -> Result<TableId> {
        self.db()?.table(name)
    }

    /// The value of `key` in table `t` at the checkpoint.
    pub async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db()?.get(t, key).await
    }

    /// Like [`Db::scan`], at the checkpoint.
    pub async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db()?.scan(t, lower, upper, limit).await
    }

    /// The SSTs and memtable snapshots the checkpoint names, by level, with their
    /// objects (`LiveFile::object_key`).
    pub async fn live_files(&self) -> Result<Vec<crate::stats::LiveFile>> {
        self.db()?.live_files().await
    }

    /// Statistics of the reader (its remote reads among them).
    pub async fn stats(&self) -> Result<DbStats> {
        self.db()?.stats().await
    }

    /// Closes the reader and removes its temporary directory.
    pub async fn close(mut self) -> Result<()> {
        if let Some(db) = self.db.take() {
            db.close().await?;
        }
        Ok(())
    }
}

impl Drop for CheckpointReader {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
