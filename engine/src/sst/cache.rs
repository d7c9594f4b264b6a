//! The seam between SST reads and a block cache: [`TableCache`].
//!
//! A [`TableReader`](super::TableReader) looks its data blocks up through this trait,
//! so the same reader works over the shard's hybrid memory + SSD cache (the engine's
//! `shard/cache.rs`), over the plain memory [`BlockCache`] (tools, tests, read-only
//! opens), or over nothing. Every lookup says how the block is read ([`BlockRead`]:
//! the file's level, for the SSD segment class, and the admission hint), and hands the
//! cache the load to run on a miss: read the block from its file, verify and
//! decompress it. The cache holds what the reader wants (checked, uncompressed
//! contents).
//!
//! Protocol: [`TableCache::lookup`] first (the cheap memory hit, no allocation); on
//! `None`, [`TableCache::get_or_load`], which counts the miss and shares one load
//! among concurrent misses of a block where the cache can.

use std::io;

use terrace_tiering::{AdmissionHint, BlockCache, BlockKey, Bytes, LocalBoxFuture};

/// How one data block is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRead {
    /// LSM level of the file (its SSD segment class).
    pub level: u8,
    /// What admission the read asks for.
    pub hint: AdmissionHint,
}

impl BlockRead {
    /// A foreground point read of a file at `level`.
    pub fn read(level: u8) -> BlockRead {
        BlockRead {
            level,
            hint: AdmissionHint::Read,
        }
    }
}

/// Where a table reader finds its data blocks.
pub trait TableCache {
    /// The block if memory holds it (promoted); `None` is not counted as a miss.
    fn lookup(&self, key: &BlockKey, read: BlockRead) -> Option<Bytes>;

    /// The block from the cache, else from `load`; what `load` returns is offered to
    /// the cache as `read.hint` says. Call after [`Self::lookup`] returned `None`.
    fn get_or_load<'a>(
        &'a self,
        key: BlockKey,
        read: BlockRead,
        load: LocalBoxFuture<'a, io::Result<Bytes>>,
    ) -> LocalBoxFuture<'a, io::Result<Bytes>>;

    /// Whether the cache holds `key` (no promotion, not counted): compactions ask it of
    /// their input blocks to decide what to preload.
    fn contains(&self, key: &BlockKey) -> bool;

    /// Offers a block that was not read through the cache (a flush or compaction
    /// output) with `read.hint`.
    fn offer(&self, key: BlockKey, block: Bytes, read: BlockRead);
}

/// Whether a memory-only cache keeps a block offered with `hint`.
fn memory_admits(hint: AdmissionHint) -> bool {
    matches!(
        hint,
        AdmissionHint::Read | AdmissionHint::Preload { inputs_hot: true }
    )
}

/// The plain memory LRU: a lookup counts a hit or a miss; `get_or_load` only loads
/// and inserts.
impl TableCache for BlockCache {
    fn lookup(&self, key: &BlockKey, _read: BlockRead) -> Option<Bytes> {
        self.get(key)
    }

    fn get_or_load<'a>(
        &'a self,
        key: BlockKey,
        read: BlockRead,
        load: LocalBoxFuture<'a, io::Result<Bytes>>,
    ) -> LocalBoxFuture<'a, io::Result<Bytes>> {
        Box::pin(async move {
            let block = load.await?;
            if memory_admits(read.hint) {
                self.insert(key, block.clone());
            }
            Ok(block)
        })
    }

    fn contains(&self, _key: &BlockKey) -> bool {
        // The LRU has no side-effect-free probe; preloading is a hybrid-cache feature.
        false
    }

    fn offer(&self, key: BlockKey, block: Bytes, read: BlockRead) {
        if memory_admits(read.hint) {
            self.insert(key, block);
        }
    }
}

/// A shared cache is used as the cache it points to.
impl<T: TableCache + ?Sized> TableCache for std::rc::Rc<T> {
    fn lookup(&self, key: &BlockKey, read: BlockRead) -> Option<Bytes> {
        (**self).lookup(key, read)
    }

    fn get_or_load<'a>(
        &'a self,
        key: BlockKey,
        read: BlockRead,
        load: LocalBoxFuture<'a, io::Result<Bytes>>,
    ) -> LocalBoxFuture<'a, io::Result<Bytes>> {
        (**self).get_or_load(key, read, load)
    }

    fn contains(&self, key: &BlockKey) -> bool {
        (**self).contains(key)
    }

    fn offer(&self, key: BlockKey, block: Bytes, read: BlockRead) {
        (**self).offer(key, block, read)
    }
}
