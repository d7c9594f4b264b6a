//! Opening and point-reading an SST: [`TableReader`].
//!
//! Opening reads the footer, then the properties, index and filter blocks, verifies
//! their checksums and the file layout they describe, and keeps them in memory (the
//! index as a `Vec` for binary search). Data blocks are read on demand through a
//! [`TableCache`] (the shard's hybrid cache, or a memory [`BlockCache`](terrace_tiering::BlockCache)); a miss reads
//! the block from the [`BlockSource`], verifies and decompresses it, and the cache
//! keeps the uncompressed contents.
//!
//! The reader holds no interior mutability: any number of lookups may be in flight on
//! the same table at once, each awaiting its own block read.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use terrace_tiering::{BlockKey, BlockSource, Bytes};

use crate::error::{Error, Result};
use crate::key::{
    compare_internal, InternalKey, ValueKind, MAX_SEQNO, STATE_KEY_PREFIX_LEN, TRAILER_LEN,
};

use super::block::BlockIter;
use super::bloom::{bloom_hash, BloomFilter};
use super::cache::{BlockRead, TableCache};
use super::footer::{Footer, FOOTER_LEN};
use super::handle::BlockHandle;
use super::index::{decode_index, IndexEntry};
use super::iter::TableIter;
use super::properties::TableProperties;
use super::seal::{unseal_borrowed, Unsealed};

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
    /// Two reads: the footer, then the metadata blocks in one piece.
    pub async fn open(
        file_id: u64,
        path: PathBuf,
        source: Rc<dyn BlockSource>,
    ) -> Result<TableReader> {
        TableReader::open_with_tail(file_id, path, source, 0).await
    }

    /// Opens SST `file_id` for a source where every read costs a round trip (an
    /// object store): the first read takes the file's last `meta_bytes` (its
    /// filter, index, properties and footer, when the caller knows their size) or
    /// else [`speculative_tail`] bytes, which hold the footer and, in the usual
    /// case, every metadata block, so opening costs one round trip instead of two.
    pub async fn open_remote(
        file_id: u64,
        path: PathBuf,
        source: Rc<dyn BlockSource>,
        meta_bytes: u64,
    ) -> Result<TableReader> {
        let tail = match meta_bytes {
            0 => speculative_tail(source.size()),
            // Never less than the footer (a wrong size costs one more read, and
            // the layout checks below still judge what was read).
            known => known.max(FOOTER_LEN as u64),
        };
        TableReader::open_with_tail(file_id, path, source, tail).await
    }

    async fn open_with_tail(
        file_id: u64,
        path: PathBuf,
        source: Rc<dyn BlockSource>,
        tail: u64,
    ) -> Result<TableReader> {
        let size = source.size();
        let Some(footer_offset) = size.checked_sub(FOOTER_LEN as u64) else {
            return Err(Error::corrupt(
                &path,
                0,
                format!("file of {size} bytes is too small to be an SST"),
            ));
        };
        // `[tail_start, size)` is read first; it always holds the footer.
        let tail_start = size - tail.clamp(FOOTER_LEN as u64, size);
        let tail_buf = read(&*source, &path, tail_start, (size - tail_start) as usize).await?;
        let footer_at = (footer_offset - tail_start) as usize;
        let footer = Footer::decode(&path, footer_offset, &tail_buf[footer_at..])?;

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

        // The metadata region `[data_end, footer_offset)`: what the first read did
        // not cover is fetched in one more read. Blocks are decoded from it in
        // place (a remote open's region is a megabyte or more per file; copies of
        // it cost page faults as much as bytes).
        let joined: Vec<u8>;
        let meta_buf: &[u8] = if data_end >= tail_start {
            &tail_buf[(data_end - tail_start) as usize..footer_at]
        } else {
            let head = read(&*source, &path, data_end, (tail_start - data_end) as usize).await?;
            let mut v = Vec::with_capacity((footer_offset - data_end) as usize);
            v.extend_from_slice(&head);
            v.extend_from_slice(&tail_buf[..footer_at]);
            joined = v;
            &joined
        };
        let meta = MetaRegion {
            path: &path,
            start: data_end,
            buf: meta_buf,
        };

        let props_buf = meta.block(footer.properties)?;
        let mut props = TableProperties::decode(&props_buf)
            .map_err(|m| m.at(&path, footer.properties.offset))?;
        props.file_size = size;
        props.meta_bytes = size - data_end;

        let index_buf = meta.block(footer.index)?;
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
                let buf = meta.block(h)?;
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
    /// `(seqno, kind, value)`, or `None` if the file holds no such version. Blocks are
    /// read as a foreground read of an L0 file; see [`Self::get_at`].
    pub async fn get<C: TableCache + ?Sized>(
        &self,
        state_key: &[u8],
        snapshot_seqno: u64,
        cache: &C,
    ) -> Result<Option<(u64, ValueKind, Vec<u8>)>> {
        self.get_at(state_key, snapshot_seqno, cache, BlockRead::read(0))
            .await
    }

    /// [`Self::get`], reading data blocks as `read` says (the file's level and the
    /// admission hint).
    pub async fn get_at<C: TableCache + ?Sized>(
        &self,
        state_key: &[u8],
        snapshot_seqno: u64,
        cache: &C,
        read: BlockRead,
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
            let block = self.read_data_block(i, cache, read).await?;
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

    /// An iterator reading blocks one at a time through `cache` (for scans), as
    /// foreground reads of an L0 file; see [`Self::iter_at`].
    pub fn iter(self: &Rc<Self>, cache: Rc<dyn TableCache>) -> TableIter {
        TableIter::cached(Rc::clone(self), cache, 0, None)
    }

    /// An iterator reading blocks through `cache` as reads of a file at `level`. When
    /// `scan_blocks` is given, it counts the blocks the whole scan loaded (shared by
    /// every table iterator of the scan): past a few, misses are no longer admitted,
    /// so a long scan does not flush the cache.
    pub fn iter_at(
        self: &Rc<Self>,
        cache: Rc<dyn TableCache>,
        level: u8,
        scan_blocks: Option<Rc<std::cell::Cell<u32>>>,
    ) -> TableIter {
        TableIter::cached(Rc::clone(self), cache, level, scan_blocks)
    }

    /// An iterator reading the data region in chunks of `readahead_bytes`, bypassing
    /// the cache (for compaction).
    pub fn iter_sequential(self: &Rc<Self>, readahead_bytes: usize) -> TableIter {
        TableIter::sequential(Rc::clone(self), readahead_bytes, None)
    }

    /// [`Self::iter_sequential`], noting for each block whether `probe` holds it
    /// ([`TableIter::block_hot`]) without reading or promoting anything in it.
    pub(crate) fn iter_compaction(
        self: &Rc<Self>,
        readahead_bytes: usize,
        probe: Rc<dyn TableCache>,
    ) -> TableIter {
        TableIter::sequential(Rc::clone(self), readahead_bytes, Some(probe))
    }

    /// Index of the first block whose separator is ≥ `target`: the only block that can
    /// hold the first entry ≥ `target` (`index.len()` if none can).
    pub(crate) fn find_block(&self, target: &[u8]) -> usize {
        self.index
            .partition_point(|e| compare_internal(&e.separator, target) == Ordering::Less)
    }

    /// Number of data blocks.
    pub fn block_count(&self) -> usize {
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
    pub(crate) async fn read_data_block<C: TableCache + ?Sized>(
        &self,
        i: usize,
        cache: &C,
        read_as: BlockRead,
    ) -> Result<Bytes> {
        let handle = self
            .block_handle(i)
            .ok_or_else(|| Error::internal(format!("data block {i} out of range")))?;
        let key = BlockKey {
            file_id: self.file_id,
            offset: handle.offset,
        };
        if read_as.hint != terrace_tiering::AdmissionHint::Bypass {
            if let Some(b) = cache.lookup(&key, read_as) {
                return Ok(b);
            }
        }
        // The load's own error, with its kind and context; the cache only carries an
        // io::Error (shared with readers that joined the load).
        let failure: RefCell<Option<Error>> = RefCell::new(None);
        let load = async {
            let len = handle.len_with_trailer() as usize;
            let loaded = async {
                let buf = read(&*self.source, &self.path, handle.offset, len).await?;
                Ok::<Bytes, Error>(match unseal_borrowed(&self.path, handle.offset, &buf)? {
                    Unsealed::Raw(r) => Rc::from(r),
                    Unsealed::Owned(v) => Rc::from(v),
                })
            }
            .await;
            loaded.map_err(|e| {
                let io = error_to_io(&e);
                *failure.borrow_mut() = Some(e);
                io
            })
        };
        match cache.get_or_load(key, read_as, Box::pin(load)).await {
            Ok(b) => Ok(b),
            Err(io) => Err(match failure.borrow_mut().take() {
                Some(e) => e,
                // Another reader's load of the same block failed.
                None if io.kind() == std::io::ErrorKind::InvalidData => {
                    Error::corrupt(&self.path, handle.offset, io.to_string())
                }
                None => Error::io("read", &self.path, io),
            }),
        }
    }
}

/// An engine error as the cache carries it: damaged data stays recognizable
/// (`InvalidData`) for readers that share the failed load.
fn error_to_io(e: &Error) -> std::io::Error {
    let kind = match e.kind() {
        crate::ErrorKind::Corruption => std::io::ErrorKind::InvalidData,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
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

/// How many bytes at the end of an SST of `size` bytes a remote open reads first:
/// about 3% of the file (metadata is typically 1–2%: a bloom filter of 10 bits per
/// key and an index entry per 4 KiB block), at least 64 KiB, at most 4 MiB. A file
/// whose metadata is larger costs one more read, never a wrong answer.
pub fn speculative_tail(size: u64) -> u64 {
    (size / 32).clamp(64 << 10, 4 << 20).min(size)
}

/// The metadata blocks of an SST, read in one piece: `buf` holds the file's bytes
/// `[start, start + buf.len())`.
struct MetaRegion<'a> {
    path: &'a Path,
    start: u64,
    buf: &'a [u8],
}

impl<'a> MetaRegion<'a> {
    /// The contents of block `h` (its checksum verified), which the layout checks
    /// placed inside the region; borrowed from it unless compressed.
    fn block(&self, h: BlockHandle) -> Result<Unsealed<'a>> {
        let from = h.offset.checked_sub(self.start);
        let bytes = from.and_then(|f| {
            let f = usize::try_from(f).ok()?;
            let to = f.checked_add(usize::try_from(h.len_with_trailer()).ok()?)?;
            self.buf.get(f..to)
        });
        let Some(bytes) = bytes else {
            return Err(Error::corrupt(
                self.path,
                h.offset,
                "metadata block outside the metadata region",
            ));
        };
        unseal_borrowed(self.path, h.offset, bytes)
    }
}
