//! Terrace: an embeddable, sharded LSM state engine for stream processors.
//!
//! A database is split into shards, each an LSM tree run by one glommio executor
//! thread with no locks on its data path. Every key belongs to a key group
//! (`xxh3_64(key) % max_key_groups`); a shard owns a contiguous key-group range.
//!
//! ```no_run
//! # futures_lite::future::block_on(async {
//! use terrace::{Db, Options};
//! let mut opts = Options::new("/tmp/terrace-demo");
//! opts.tables = vec!["counts".into()];
//! let db = Db::open(opts).await?;
//! let counts = db.table("counts")?;
//! db.put(counts, b"user-1", b"42").await?;
//! assert_eq!(db.get(counts, b"user-1").await?, Some(b"42".to_vec()));
//! db.close().await?;
//! # Ok::<(), terrace::Error>(())
//! # });
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the design.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod catalog;
pub mod checkpoint;
mod combine;
mod compaction;
mod db;
mod db_iter;
mod encoding;
pub mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod iter;
pub mod key;
mod keyed;
mod lanes;
mod local_db;
mod lock;
pub mod map_key;
mod memtable;
pub mod merge;
mod meta;
mod notify;
pub mod options;
mod policy;
mod remote;
mod resplit;
mod router;
mod shard;
pub mod sst;
pub mod stats;
mod version;

pub use checkpoint::gc::GcReport;
pub use checkpoint::reader::CheckpointReader;
pub use checkpoint::rescale::RestoreSource;
pub use checkpoint::restore::RestoreInfo;
pub use checkpoint::store::{
    collect_job_garbage, collect_store_garbage, list_store_checkpoints, JobGcReport,
};
pub use checkpoint::{CheckpointInfo, CheckpointPhases, CheckpointSummary};
pub use db::Db;
pub use db_iter::{
    Batch, DbIter, Entry, IterOptions, KeyRange, LocalDbIter, MAX_ITER_BATCH_BYTES,
    MAX_ITER_BATCH_ENTRIES,
};
pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub use key::{KeyGroupRange, TableId};
pub use keyed::{
    ConcurrentOperator, Keyed, KeyedOptions, KeyedReport, Operator, MAX_KEYED_BATCHES_IN_FLIGHT,
    MAX_KEYED_BATCH_RECORDS, MAX_KEYED_CONCURRENT_AFTER, MAX_KEYED_CONCURRENT_BATCHES,
};
pub use local_db::LocalDb;
pub use merge::{MergeError, MergeOperator};
pub use options::{
    CacheEviction, CacheMode, Compression, ObjectStoreSpec, Options, TableOptions, WarmOrder,
    EMBEDDED_STORE_DIR,
};
pub use stats::{
    BlockCacheStats, Counters, DbStats, LevelStats, LiveFile, ManifestStats, ShardStats,
};
