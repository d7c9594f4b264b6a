//! Pure policies: decisions made from a snapshot of descriptions, with no I/O, so
//! they are unit-tested and simulated on their own.
//!
//! - [`cache_mode`]: the block cache's shape and mode, the budget of local whole files,
//!   and the admission hint of each kind of block read or write;
//! - [`compaction`]: which files to compact (or move) next;
//! - [`local_copies`]: which local copies of uploaded files to drop to fit the local
//!   disk budget.
//!
//! The shard carries the decisions out (`shard/cache.rs`, `shard/compaction.rs`, `shard/local_copies.rs`).

pub(crate) mod cache_mode;
pub(crate) mod compaction;
pub(crate) mod local_copies;
