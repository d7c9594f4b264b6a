//! SST files: immutable sorted runs of internal keys, written once and read many times.
//!
//! An SST is a sequence of checksummed blocks followed by a fixed-size footer (the
//! byte-level layout is in `docs/FORMAT.md`):
//!
//! ```text
//! [data block 0][pad][data block 1] ... [filter block][index block][properties block][footer]
//! ```
//!
//! * Data blocks hold prefix-compressed entries in internal-key order
//!   ([`key::compare_internal`](crate::key::compare_internal)), with restart points for
//!   binary search, optionally zstd-compressed. A data block of at most 4 KiB is never
//!   allowed to straddle a 4 KiB boundary, so a point read is one aligned direct I/O.
//! * The filter block is a bloom filter over the *state keys* of the whole file.
//! * The index block maps a separator key per data block to that block's location.
//! * The properties block summarises the file (key range, counts, seqno range).
//! * The footer locates filter, index and properties, carries the format version, its
//!   own CRC and a magic number.
//!
//! Data flows one way: [`TableWriter`] turns sorted `(internal key, value)` pairs into a
//! file; [`TableReader`] opens it through a [`terrace_tiering::BlockSource`] and serves
//! point lookups through a [`TableCache`] (the shard's block cache); [`TableIter`]
//! scans it, either block by block through the cache or, for compaction, in large
//! sequential chunks.
//!
//! Every decoder treats bytes as hostile: damage is reported as a
//! [`Corruption`](crate::ErrorKind::Corruption) error naming the file and offset, never
//! a panic and never wrong data.

mod block;
mod block_builder;
mod bloom;
mod cache;
mod footer;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod index;
mod iter;
mod properties;
mod reader;
mod seal;
mod writer;

pub use cache::{BlockRead, TableCache};
pub use iter::TableIter;
pub use properties::TableProperties;
pub use reader::TableReader;
pub use writer::{DataBlockHook, TableOptions, TableWriter};

/// The format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The alignment unit of direct I/O: small data blocks never straddle a multiple of it.
pub const IO_ALIGN_BYTES: u64 = 4096;
