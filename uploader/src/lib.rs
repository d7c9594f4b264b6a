//! Terrace uploader: the consumer of "new file written" events.
//!
//! The engine announces every SST it finishes (flush or compaction output) and every
//! SST it deletes through a [`NewFileHook`]. The [`Uploader`] (module `upload`) moves
//! those files to the object store, which is the source of truth: bounded parallelism,
//! multipart for large files, end-to-end read-back verification and exact stats.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod upload;

pub use upload::{
    plan_parts, PartPlan, UploadError, UploadJob, UploadPriority, UploadReceipt, UploadStats,
    Uploader, UploaderConfig, MAX_PARTS, MAX_PART_BYTES, MIN_PART_BYTES, VERIFY_TAIL_BYTES,
};

use std::path::PathBuf;

/// Why a file was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileReason {
    /// A memtable flush.
    Flush,
    /// A compaction output.
    Compaction,
}

/// A finished, synced, immutable SST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    /// Shard that owns the file.
    pub shard: u32,
    /// Database-unique file id.
    pub file_id: u64,
    /// Local path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size_bytes: u64,
    /// LSM level the file enters.
    pub level: u32,
    /// Why it was written.
    pub reason: FileReason,
}

/// Receives file events from shard threads.
///
/// Called on the shard's executor thread: implementations must not block (queue the
/// event and return).
pub trait NewFileHook: Send + Sync {
    /// A new SST is complete and durable on local disk.
    fn on_new_file(&self, file: &NewFile);

    /// An SST is no longer referenced by the shard and was deleted locally.
    fn on_file_deleted(&self, _shard: u32, _file_id: u64) {}

    /// A live SST's local copy was dropped (it is uploaded and past its warm window);
    /// reads of it now go to the object store.
    fn on_local_copy_dropped(&self, _shard: u32, _file_id: u64) {}
}
