//! Writing an SST: [`TableWriter`] turns strictly increasing internal keys into a file.
//!
//! Entries accumulate in a data block until the next one would push the block (with
//! its trailer) past `block_bytes`; the block is then sealed (optionally compressed,
//! checksummed) and appended to an aligned output buffer written with O_DIRECT, and
//! its index entry is
//! recorded with a separator between its last key and the next block's first key.
//! A sealed data block of at most [`IO_ALIGN_BYTES`] that would straddle an
//! `IO_ALIGN_BYTES` boundary is preceded by zero padding up to the boundary, so that
//! reading it is a single aligned 4 KiB direct I/O.
//!
//! [`TableWriter::finish`] appends filter, index, properties and footer, then makes
//! the file durable (the last buffer is written zero-padded to the alignment, the
//! file is truncated back to its real length, then `fdatasync`ed so data and length
//! are both durable). Making the file's *name* durable (syncing the directory) is the caller's job,
//! as it is the caller who publishes the file in a manifest. After any I/O error the
//! writer refuses further use; a writer dropped without `finish` or `abandon` leaves a
//! partial file behind.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile};

use crate::error::{Error, ErrorDetail, Result};
use crate::key::{compare_internal, state_key_group, state_key_of, InternalKey, ValueKind};
use crate::options::{Compression, Options, KEY_BYTES_LIMIT, VALUE_BYTES_LIMIT};

use super::block_builder::BlockBuilder;
use super::bloom::{bloom_hash, BloomBuilder};
use super::footer::{Footer, FOOTER_LEN};
use super::handle::BlockHandle;
use super::index::{separator, IndexBuilder};
use super::properties::TableProperties;
use super::seal::{Sealer, BLOCK_TRAILER_LEN};
use super::IO_ALIGN_BYTES;

/// Zeros written as alignment padding.
static ZEROS: [u8; IO_ALIGN_BYTES as usize] = [0; IO_ALIGN_BYTES as usize];

/// Size of the aligned buffer the writer fills and writes with one O_DIRECT write:
/// bounds the writer's memory to 1 MiB.
const OUT_BUFFER_BYTES: usize = 1 << 20;

/// Sequential O_DIRECT output through `DmaFile::write_at`, one buffer at a time.
///
/// glommio's `DmaStreamWriter` (with write-behind) was seen to stop completing writes
/// under load (a compaction output froze at exactly 40 MiB with its executor idle), so
/// the writer does its own buffering: fill an aligned buffer, write it, repeat; the
/// final partial buffer is zero-padded to the alignment and the file truncated back.
struct AlignedOut {
    file: DmaFile,
    buf: DmaBuffer,
    filled: usize,
    /// File offset of `buf`'s first byte.
    buf_pos: u64,
}

impl AlignedOut {
    fn new(file: DmaFile) -> AlignedOut {
        let buf = file.alloc_dma_buffer(OUT_BUFFER_BYTES);
        AlignedOut {
            file,
            buf,
            filled: 0,
            buf_pos: 0,
        }
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(OUT_BUFFER_BYTES - self.filled);
            self.buf.as_bytes_mut()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == OUT_BUFFER_BYTES {
                let full =
                    std::mem::replace(&mut self.buf, self.file.alloc_dma_buffer(OUT_BUFFER_BYTES));
                self.write_buffer(full).await?;
                self.buf_pos += OUT_BUFFER_BYTES as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    async fn write_buffer(&self, buf: DmaBuffer) -> std::io::Result<()> {
        let len = buf.len();
        let written = self
            .file
            .write_at(buf, self.buf_pos)
            .await
            .map_err(std::io::Error::from)?;
        if written != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short direct write: {written} of {len} bytes"),
            ));
        }
        Ok(())
    }

    /// Writes what is buffered, cuts the file to `len` bytes, syncs and closes it.
    async fn finish(mut self, len: u64) -> std::io::Result<()> {
        if self.filled > 0 {
            let aligned = self.filled.next_multiple_of(IO_ALIGN_BYTES as usize);
            self.buf.as_bytes_mut()[self.filled..aligned].fill(0);
            let mut last = self.file.alloc_dma_buffer(aligned);
            last.as_bytes_mut()
                .copy_from_slice(&self.buf.as_bytes_mut()[..aligned]);
            self.write_buffer(last).await?;
        }
        self.file
            .truncate(len)
            .await
            .map_err(std::io::Error::from)?;
        let synced = self.file.fdatasync().await.map_err(std::io::Error::from);
        let closed = self.file.close().await.map_err(std::io::Error::from);
        synced?;
        closed
    }

    async fn close(self) -> std::io::Result<()> {
        self.file.close().await.map_err(std::io::Error::from)
    }
}

/// How SST files are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block, trailer included, before compression.
    pub block_bytes: usize,
    /// Entries between restart points in a data block.
    pub restart_interval: usize,
    /// Bloom filter bits per state key; 0 writes no filter.
    pub bloom_bits_per_key: u32,
    /// Data block compression.
    pub compression: Compression,
}

impl TableOptions {
    /// The SST settings of the database options.
    pub fn from_options(options: &Options) -> TableOptions {
        TableOptions {
            block_bytes: options.block_bytes,
            restart_interval: options.block_restart_interval,
            bloom_bits_per_key: options.bloom_bits_per_key,
            compression: options.compression,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(64..=(4 << 20)).contains(&self.block_bytes) {
            return Err(Error::invalid_option(
                "block_bytes",
                "must be in 64..=4 MiB",
            ));
        }
        if !(1..=1024).contains(&self.restart_interval) {
            return Err(Error::invalid_option(
                "block_restart_interval",
                "must be in 1..=1024",
            ));
        }
        if self.bloom_bits_per_key > 64 {
            return Err(Error::invalid_option(
                "bloom_bits_per_key",
                "must be at most 64",
            ));
        }
        Ok(())
    }
}

impl Default for TableOptions {
    fn default() -> TableOptions {
        TableOptions {
            block_bytes: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
        }
    }
}

/// Running totals that become the [`TableProperties`].
#[derive(Default)]
struct Totals {
    smallest_key: Vec<u8>,
    entry_count: u64,
    deletion_count: u64,
    min_seqno: u64,
    max_seqno: u64,
    data_block_count: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
}

/// Writes one SST. Create, [`add`](Self::add) keys in strictly increasing internal
/// order, then [`finish`](Self::finish) or [`abandon`](Self::abandon).
pub struct TableWriter {
    path: PathBuf,
    file_id: u64,
    opts: TableOptions,
    out: Option<AlignedOut>,
    /// Bytes handed to `out` so far: the offset of the next byte written.
    offset: u64,
    block: BlockBuilder,
    index: IndexBuilder,
    bloom: BloomBuilder,
    sealer: Sealer,
    /// Staging buffer for a sealed block.
    sealed: Vec<u8>,
    /// Scratch for separators.
    sep: Vec<u8>,
    last_key: Vec<u8>,
    totals: Totals,
    /// Set by the first I/O error; every later call fails with it.
    failed: Option<String>,
    /// Sees every data block written: (offset in the file, uncompressed contents).
    data_block_hook: Option<DataBlockHook>,
}

/// Called with each data block a [`TableWriter`] writes: its offset in the file and its
/// uncompressed contents (what a reader's cache holds for it).
pub type DataBlockHook = Box<dyn FnMut(u64, terrace_tiering::Bytes)>;

impl TableWriter {
    /// Creates (or truncates) `path` and prepares to write SST `file_id` into it.
    pub async fn create(path: &Path, file_id: u64, opts: TableOptions) -> Result<TableWriter> {
        opts.validate()?;
        let sealer = Sealer::new(opts.compression)?;
        let file = DmaFile::create(path)
            .await
            .map_err(|e| Error::io("create", path, e.into()))?;
        let out = Some(AlignedOut::new(file));
        let restart_interval = opts.restart_interval;
        let bloom_bits_per_key = opts.bloom_bits_per_key;
        Ok(TableWriter {
            path: path.to_path_buf(),
            file_id,
            opts,
            out,
            offset: 0,
            block: BlockBuilder::new(restart_interval),
            index: IndexBuilder::new(),
            bloom: BloomBuilder::new(bloom_bits_per_key),
            sealer,
            sealed: Vec::new(),
            sep: Vec::new(),
            last_key: Vec::new(),
            totals: Totals::default(),
            failed: None,
            data_block_hook: None,
        })
    }

    /// Calls `hook` with every data block written from now on (a flush or compaction
    /// offers its output blocks to the block cache this way).
    pub fn on_data_block(&mut self, hook: DataBlockHook) {
        self.data_block_hook = Some(hook);
    }

    /// The id the file was created with.
    pub fn file_id(&self) -> u64 {
        self.file_id
    }

    /// Path of the file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry. `ikey` must be a well-formed internal key sorting strictly
    /// after the previous one (`key::compare_internal`); otherwise the call fails with
    /// an invalid-argument error and the writer stays usable.
    pub async fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        let Some(k) = InternalKey::decode(ikey) else {
            return Err(bad_arg(format!(
                "SST {}: internal key of {} bytes is too short",
                self.path.display(),
                ikey.len()
            )));
        };
        let Some(kind) = ValueKind::from_u8(k.kind) else {
            return Err(bad_arg(format!(
                "SST {}: internal key has unknown kind byte {}",
                self.path.display(),
                k.kind
            )));
        };
        if ikey.len() > KEY_BYTES_LIMIT + 64 || value.len() > VALUE_BYTES_LIMIT {
            return Err(bad_arg(format!(
                "SST {}: entry with a {}-byte key and {}-byte value exceeds the format limits",
                self.path.display(),
                ikey.len(),
                value.len()
            )));
        }
        let first = self.totals.entry_count == 0;
        if !first && compare_internal(&self.last_key, ikey) != Ordering::Less {
            return Err(bad_arg(format!(
                "SST {}: key {} added after {}, keys must strictly increase",
                self.path.display(),
                ikey.escape_ascii(),
                self.last_key.escape_ascii()
            )));
        }
        if !self.block.is_empty()
            && self.block.size_estimate_after(ikey.len(), value.len()) + BLOCK_TRAILER_LEN
                > self.opts.block_bytes
        {
            self.flush_block(Some(ikey)).await?;
        }
        if first || state_key_of(&self.last_key) != k.state_key {
            self.bloom.add_hash(bloom_hash(k.state_key));
        }
        self.block.add(ikey, value);

        let t = &mut self.totals;
        if first {
            t.smallest_key = ikey.to_vec();
            t.min_seqno = k.seqno;
            t.max_seqno = k.seqno;
        }
        t.entry_count += 1;
        if kind == ValueKind::Delete {
            t.deletion_count += 1;
        }
        t.min_seqno = t.min_seqno.min(k.seqno);
        t.max_seqno = t.max_seqno.max(k.seqno);
        t.raw_key_bytes += ikey.len() as u64;
        t.raw_value_bytes += value.len() as u64;
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        Ok(())
    }

    /// Approximate size of the file if it were finished now.
    pub fn estimated_size(&self) -> u64 {
        let filter = if self.bloom.enabled() {
            self.bloom.size_estimate()
        } else {
            0
        };
        self.offset
            + self.block.size_estimate() as u64
            + self.index.size_estimate() as u64
            + filter
            + FOOTER_LEN as u64
    }

    /// Writes the metadata blocks and the footer and makes the file durable. A table
    /// needs at least one entry; on failure the partial file is removed.
    pub async fn finish(mut self) -> Result<TableProperties> {
        match self.finish_inner().await {
            Ok(props) => Ok(props),
            Err(e) => {
                self.abandon().await;
                Err(e)
            }
        }
    }

    /// Stops writing and removes the partial file (best effort: errors are ignored,
    /// as the file is garbage either way).
    pub async fn abandon(mut self) {
        if let Some(out) = self.out.take() {
            let _ = out.close().await;
        }
        let _ = glommio::io::remove(&self.path).await;
    }

    async fn finish_inner(&mut self) -> Result<TableProperties> {
        self.check_usable()?;
        if self.totals.entry_count == 0 {
            return Err(bad_arg(format!(
                "SST {}: cannot finish a table with no entries",
                self.path.display()
            )));
        }
        if !self.block.is_empty() {
            self.flush_block(None).await?;
        }

        let data_end = self.offset;
        let filter = match self.bloom.finish() {
            Some(contents) => Some(self.write_meta_block(&contents).await?),
            None => None,
        };
        let index_contents = self.index.finish().to_vec();
        let index = self.write_meta_block(&index_contents).await?;

        let t = &self.totals;
        let mut props = TableProperties {
            first_key_group: state_key_group(state_key_of(&t.smallest_key)),
            last_key_group: state_key_group(state_key_of(&self.last_key)),
            smallest_key: t.smallest_key.clone(),
            largest_key: self.last_key.clone(),
            entry_count: t.entry_count,
            deletion_count: t.deletion_count,
            min_seqno: t.min_seqno,
            max_seqno: t.max_seqno,
            data_block_count: t.data_block_count,
            raw_key_bytes: t.raw_key_bytes,
            raw_value_bytes: t.raw_value_bytes,
            compression: self.opts.compression,
            file_size: 0,
            meta_bytes: 0,
        };
        let mut props_contents = Vec::new();
        props.encode(&mut props_contents);
        let properties = self.write_meta_block(&props_contents).await?;

        let mut footer = Vec::with_capacity(FOOTER_LEN);
        Footer {
            filter,
            index,
            properties,
        }
        .encode(&mut footer);
        self.write(&footer).await?;
        props.file_size = self.offset;
        props.meta_bytes = self.offset - data_end;

        let out = self
            .out
            .take()
            .ok_or_else(|| Error::internal("SST writer used after it was finished"))?;
        let len = self.offset;
        out.finish(len)
            .await
            .map_err(|e| self.fail(Error::io("finish", &self.path, e)))?;
        Ok(props)
    }

    /// Seals the current data block, pads if needed, writes it and indexes it.
    /// `next_key` is the first key of the following block, if there is one.
    async fn flush_block(&mut self, next_key: Option<&[u8]>) -> Result<()> {
        self.sealed.clear();
        let contents = self.block.finish();
        let copy: Option<terrace_tiering::Bytes> =
            self.data_block_hook.as_ref().map(|_| contents.into());
        let stored_len = self.sealer.seal(contents, true, &mut self.sealed)?;
        let total = self.sealed.len() as u64;
        let in_page = self.offset % IO_ALIGN_BYTES;
        if total <= IO_ALIGN_BYTES && in_page + total > IO_ALIGN_BYTES {
            let pad = (IO_ALIGN_BYTES - in_page) as usize;
            self.write_padding(pad).await?;
        }
        let handle = BlockHandle {
            offset: self.offset,
            size: u32::try_from(stored_len)
                .map_err(|_| Error::internal("sealed data block larger than 4 GiB"))?,
        };
        let sealed = std::mem::take(&mut self.sealed);
        let r = self.write(&sealed).await;
        self.sealed = sealed;
        r?;
        if let (Some(hook), Some(copy)) = (self.data_block_hook.as_mut(), copy) {
            hook(handle.offset, copy);
        }

        match next_key {
            Some(next) => separator(self.block.last_key(), next, &mut self.sep),
            None => {
                self.sep.clear();
                self.sep.extend_from_slice(self.block.last_key());
            }
        }
        self.index.add(&self.sep, handle);
        self.block.reset();
        self.totals.data_block_count += 1;
        Ok(())
    }

    /// Seals and writes a filter, index or properties block (never compressed).
    async fn write_meta_block(&mut self, contents: &[u8]) -> Result<BlockHandle> {
        let mut sealed = Vec::with_capacity(contents.len() + BLOCK_TRAILER_LEN);
        let stored_len = self.sealer.seal(contents, false, &mut sealed)?;
        let handle = BlockHandle {
            offset: self.offset,
            size: u32::try_from(stored_len)
                .map_err(|_| Error::internal("metadata block larger than 4 GiB"))?,
        };
        self.write(&sealed).await?;
        Ok(handle)
    }

    async fn write_padding(&mut self, pad: usize) -> Result<()> {
        self.write(&ZEROS[..pad]).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Err(Error::internal("SST writer used after it was finished"));
        };
        match out.write_all(bytes).await {
            Ok(()) => {
                self.offset += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(Error::io("write", &self.path, e))),
        }
    }

    /// Records the first failure so later calls refuse to continue.
    fn fail(&mut self, e: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(first) => Err(Error::internal(format!(
                "SST writer for {} failed earlier ({first}); abandon it",
                self.path.display()
            ))),
        }
    }
}

fn bad_arg(what: String) -> Error {
    ErrorDetail::BadArgument(what).into()
}
