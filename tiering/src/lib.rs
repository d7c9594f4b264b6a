//! Terrace tiering: where the bytes of an SST come from.
//!
//! The engine never reads an SST file directly. It asks a [`BlockSource`] for a byte
//! range, and looks in a [`BlockCache`] first. Today the only source is a local file
//! read with O_DIRECT ([`LocalFile`]); the object-store reader and the SSD block cache
//! plug in behind the same seam without the engine changing.
//!
//! Everything here is per shard: types are `!Send`, with no locks and no atomics on the
//! read path. Each shard owns its cache and its open files.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod cache;
pub mod clock;
mod direct_file;
pub mod hybrid;
pub mod store;
mod tiered;

pub use cache::{BlockCache, BlockKey, CacheStats};
pub use direct_file::{probe_direct_io, probe_direct_io_with, LocalFile};
pub use hybrid::{AdmissionHint, BlockKind, CacheMode, HybridCache, HybridConfig, HybridStats};
pub use tiered::{RemoteLocation, RemoteReadStats, RemoteStatsCell, TieredFile};

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;

/// An immutable, reference-counted run of bytes read from a file.
pub type Bytes = Rc<[u8]>;

/// A future that lives on the shard's executor.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Random reads of one immutable file, wherever it lives.
pub trait BlockSource {
    /// Reads exactly `len` bytes at `offset`. A read past the end of the file is an
    /// `UnexpectedEof` error, never a short buffer.
    fn read_at(&self, offset: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>>;

    /// Size of the file in bytes.
    fn size(&self) -> u64;
}
