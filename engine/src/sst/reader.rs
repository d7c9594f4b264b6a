//! Opening and point-reading an SST: [`TableReader`].
//!
//! Opening reads the footer, then the properties, index and filter blocks, verifies
//! their checksums and the file layout they describe, and keeps them in memory (the
//! index as a `Vec` for binary search). Data blocks are read on demand through the
//! shard's [`BlockCache`]; a miss reads the block from the [`BlockSource`], verifies
//! and decompresses it and caches the uncompressed contents.
//!
//! The reader holds no interior mutability: any number of lookups may be in flight on
//! the same table at once, each awaiting its own block read.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use terrace_tiering::{BlockCache, BlockKey, BlockSource, Bytes};

use crate::error::{Error, Result};
use crate::key::{
    compare_internal, InternalKey, ValueKind, MAX_SEQNO, STATE_KEY_PREFIX_LEN, TRAILER_LEN,
};

use super::block::BlockIter;
use super::bloom::{bloom_hash, BloomFilter};
use super::footer::{Footer, FOOTER_LEN};
use super::handle::BlockHandle;
use super::index::{decode_index, IndexEntry};
use super::iter::TableIter;
use super::properties::TableProperties;
use super::seal::{unseal, unseal_borrowed, Unsealed};

/// Shortest key a data block may hold: a state-key prefix and a trailer.
pub(crate) const MIN_DATA_KEY_LEN: usize = STATE_KEY_PREFIX_LEN + TRAILER_LEN;

/// An open SST.
pub struct TableReader {
    file_id: u64,
    path: PathBuf,
    source: Rc<dyn BlockSource>,
    index: Vec<IndexEntry>,
    filter: Option<BloomFilter>,
    props: TableProperties,
    /// End of the data region (start of the first metadata block).
    data_end: u64,
}

impl TableReader {
    /// Opens SST `file_id`, whose bytes `source` serves; `path` names it in errors.
    pub async fn open(
        file_id: u64,
        path: PathBuf,
        source: Rc<dyn BlockSource>,
    ) -> Result<TableReader> {
        let size = source.size();
        let Some(footer_offset) = size.checked_sub(FOOTER_LEN as u64) else {
            return Err(Error::corrupt(
                &path,
                0,
                format!("file of {size} bytes is too small to be an SST"),
            ));
        };
        let buf = read(&*source, &path, footer_offset, FOOTER_LEN).await?;
        let footer = Footer::decode(&path, footer_offset, &buf)?;

        // The writer lays metadata out back to back: [filter][index][properties][footer].
        let layout = |h: &BlockHandle, end: u64, what: &str| -> Result<()> {
            if h.end() != end {
                return Err(Error::corrupt(
                    &path,
                    footer_offset,
                    format!(
                        "{what} block (offset {}, size {}) does not end at {end}",
                        h.offset, h.size
                    ),
                ));
            }
            Ok(())
        };
        layout(&footer.properties, footer_offset, "properties")?;
        layout(&footer.index, footer.properties.offset, "index")?;
        let data_end = match &footer.filter {
            Some(f) => {
                layout(f, footer.index.offset, "filter")?;
                f.offset
            }
            None => footer.index.offset,
        };

        let props_buf = read_block(&*source, &path, footer.properties).await?;
        let mut props = TableProperties::decode(&props_buf)
            .map_err(|m| m.at(&path, footer.properties.offset))?;
        props.file_size = size;

        let index_buf = read_block(&*source, &path, footer.index).await?;
        let index =
            decode_index(&index_buf, data_end).map_err(|m| m.at(&path, footer.index.offset))?;
        if index.len() as u64 != props.data_block_count {
            return Err(Error::corrupt(
                &path,
                footer.index.offset,
                format!(
                    "index lists {} data blocks, properties say {}",
                    index.len(),
                    props.data_block_count
                ),
            ));
        }
        let last_sep = index.last().map(|e| e.separator.as_slice()).unwrap_or(&[]);
        if compare_internal(&props.largest_key, last_sep) == Ordering::Greater {
            return Err(Error::corrupt(
                &path,
                footer.index.offset,
                "largest key sorts after the last index separator",
            ));
        }

        let filter = match footer.filter {
            Some(h) => {
                let buf = read_block(&*source, &path, h).await?;
                Some(BloomFilter::decode(&buf).map_err(|m| m.at(&path, h.offset))?)
            }
            None => None,
        };

        Ok(TableReader {
            file_id,
            path,
            source,
            index,
            filter,
            props,
            data_end,
        })
    }

    /// What the file holds.
    pub fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// The id the file was opened with (its block cache namespace).
    pub fn file_id(&self) -> u64 {
        self.file_id
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False when the bloom filter proves no version of `state_key` is in the file.
    pub fn may_contain(&self, state_key: &[u8]) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.may_contain_hash(bloom_hash(state_key)))
    }

    /// The newest version of `state_key` with seqno ≤ `snapshot_seqno`, as
    /// `(seqno, kind, value)`, or `None` if the file holds no such version.
    pub async fn get(
        &self,
        state_key: &[u8],
        snapshot_seqno: u64,
        cache: &BlockCache,
    ) -> Result<Option<(u64, ValueKind, Vec<u8>)>> {
        if !self.may_contain(state_key) {
            return Ok(None);
        }
        // Sorts before every version with seqno ≤ snapshot (the kind byte 0xff is the
        // largest) and after every newer one.
        let mut target = Vec::with_capacity(state_key.len() + TRAILER_LEN);
        target.extend_from_slice(state_key);
        let trailer = (snapshot_seqno.min(MAX_SEQNO) << 8) | 0xff;
        target.extend_from_slice(&trailer.to_le_bytes());

        let first = self.find_block(&target);
        for i in first..self.index.len() {
            let handle = self.index[i].handle;
            let block = self.read_data_block(i, cache).await?;
            let mut it = BlockIter::new(block, MIN_DATA_KEY_LEN)
                .map_err(|m| m.at(&self.path, handle.offset))?;
            it.seek(&target)
                .map_err(|m| m.at(&self.path, handle.offset))?;
            if !it.valid() {
                // Only possible if the separator lies past the block's last key;
                // the answer then starts the next block.
                continue;
            }
            let found = InternalKey::decode(it.key())
                .ok_or_else(|| Error::internal("block iterator yielded a short key"))?;
            if found.state_key != state_key {
                return Ok(None);
            }
            let kind = ValueKind::from_u8(found.kind)
                .ok_or_else(|| Error::internal("block iterator yielded an unknown kind"))?;
            return Ok(Some((found.seqno, kind, it.value().to_vec())));
        }
        Ok(None)
    }

    /// An iterator reading blocks one at a time through `cache` (for scans).
    pub fn iter(self: &Rc<Self>, cache: Rc<BlockCache>) -> TableIter {
        TableIter::cached(Rc::clone(self), cache)
    }

    /// An iterator reading the data region in chunks of `readahead_bytes`, bypassing
    /// the cache (for compaction).
    pub fn iter_sequential(self: &Rc<Self>, readahead_bytes: usize) -> TableIter {
        TableIter::sequential(Rc::clone(self), readahead_bytes)
    }

    /// Index of the first block whose separator is ≥ `target`: the only block that can
    /// hold the first entry ≥ `target` (`index.len()` if none can).
    pub(crate) fn find_block(&self, target: &[u8]) -> usize {
        self.index
            .partition_point(|e| compare_internal(&e.separator, target) == Ordering::Less)
    }

    pub(crate) fn block_count(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn block_handle(&self, i: usize) -> Option<BlockHandle> {
        self.index.get(i).map(|e| e.handle)
    }

    pub(crate) fn data_end(&self) -> u64 {
        self.data_end
    }

    pub(crate) fn source(&self) -> &dyn BlockSource {
        &*self.source
    }

    /// The uncompressed contents of data block `i`, from `cache` or the source.
    pub(crate) async fn read_data_block(&self, i: usize, cache: &BlockCache) -> Result<Bytes> {
        let handle = self
            .block_handle(i)
            .ok_or_else(|| Error::internal(format!("data block {i} out of range")))?;
        let key = BlockKey {
            file_id: self.file_id,
            offset: handle.offset,
        };
        if let Some(b) = cache.get(&key) {
            return Ok(b);
        }
        let len = handle.len_with_trailer() as usize;
        let buf = read(&*self.source, &self.path, handle.offset, len).await?;
        let contents: Bytes = match unseal_borrowed(&self.path, handle.offset, &buf)? {
            Unsealed::Raw(r) => Rc::from(r),
            Unsealed::Owned(v) => Rc::from(v),
        };
        cache.insert(key, Rc::clone(&contents));
        Ok(contents)
    }
}

/// Reads `len` bytes at `offset`, naming the file in the error.
pub(crate) async fn read(
    source: &dyn BlockSource,
    path: &Path,
    offset: u64,
    len: usize,
) -> Result<Bytes> {
    source
        .read_at(offset, len)
        .await
        .map_err(|e| Error::io("read", path, e))
}

async fn read_block(source: &dyn BlockSource, path: &Path, h: BlockHandle) -> Result<Vec<u8>> {
    let buf = read(source, path, h.offset, h.len_with_trailer() as usize).await?;
    unseal(path, h.offset, &buf)
}
