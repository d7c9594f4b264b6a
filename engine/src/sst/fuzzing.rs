//! Entry points for fuzzers and robustness tests: every SST decoder, callable on
//! arbitrary bytes, plus an in-memory [`BlockSource`] to open whole tables from a
//! byte vector. Not a stable API.

use std::io;
use std::path::Path;
use std::rc::Rc;

use terrace_tiering::{BlockSource, Bytes, LocalBoxFuture};

use super::block::BlockIter;
use super::bloom::BloomFilter;
use super::footer::Footer;
use super::index::decode_index;
use super::properties::TableProperties;
use super::reader::MIN_DATA_KEY_LEN;
use super::seal::unseal;

/// Decodes `data` as uncompressed data-block contents: walks every entry, then seeks
/// to each key seen and to `probe`. Returns the entry count or the parse error.
pub fn decode_block(data: &[u8], probe: &[u8]) -> Result<usize, String> {
    let mut it = BlockIter::new(Rc::from(data), MIN_DATA_KEY_LEN).map_err(|m| m.0)?;
    it.seek_to_first().map_err(|m| m.0)?;
    let mut keys = Vec::new();
    while it.valid() {
        keys.push(it.key().to_vec());
        let _ = it.value();
        it.next().map_err(|m| m.0)?;
    }
    for k in keys.iter().chain(std::iter::once(&probe.to_vec())) {
        it.seek(k).map_err(|m| m.0)?;
    }
    Ok(keys.len())
}

/// Verifies and unseals a stored block (contents + trailer).
pub fn unseal_block(data: &[u8]) -> Result<Vec<u8>, String> {
    unseal(Path::new("fuzz"), 0, data).map_err(|e| e.to_string())
}

/// Decodes an index block's contents.
pub fn decode_index_block(data: &[u8], data_end: u64) -> Result<usize, String> {
    decode_index(data, data_end)
        .map(|v| v.len())
        .map_err(|m| m.0)
}

/// Decodes a properties block's contents.
pub fn decode_properties(data: &[u8]) -> Result<(), String> {
    TableProperties::decode(data).map(|_| ()).map_err(|m| m.0)
}

/// Decodes a filter block's contents and probes it.
pub fn decode_filter(data: &[u8]) -> Result<bool, String> {
    BloomFilter::decode(data)
        .map(|f| f.may_contain_hash(0x1234_5678_9abc_def0))
        .map_err(|m| m.0)
}

/// Decodes a footer.
pub fn decode_footer(data: &[u8]) -> Result<(), String> {
    Footer::decode(Path::new("fuzz"), 0, data)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A file held in memory.
pub struct MemSource(pub Vec<u8>);

impl BlockSource for MemSource {
    fn read_at(&self, offset: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>> {
        let r = usize::try_from(offset)
            .ok()
            .and_then(|o| Some(o..o.checked_add(len)?))
            .and_then(|range| self.0.get(range))
            .map(Rc::from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        Box::pin(async move { r })
    }

    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

/// `(offset, length with trailer)` of every data block of `table`, in file order.
pub fn data_block_layout(table: &super::TableReader) -> Vec<(u64, u64)> {
    (0..table.block_count())
        .filter_map(|i| table.block_handle(i))
        .map(|h| (h.offset, h.len_with_trailer()))
        .collect()
}
