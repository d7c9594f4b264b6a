//! The properties block: a summary of the file that lets the engine place and pick it
//! (key range, key groups, seqno range) without reading its data.
//!
//! Contents, in this order (LE = little endian):
//!
//! ```text
//! [smallest key len: varint32][smallest internal key]
//! [largest key len: varint32][largest internal key]
//! [first key group: u16 LE][last key group: u16 LE]
//! [entry count: u64 LE][deletion count: u64 LE]
//! [min seqno: u64 LE][max seqno: u64 LE]
//! [data block count: u64 LE][raw key bytes: u64 LE][raw value bytes: u64 LE]
//! [compression type: u8 (0 none, 1 zstd)][zstd level: i32 LE (0 for none)]
//! ```
//!
//! Decoding rejects trailing bytes and internally inconsistent summaries.

use std::cmp::Ordering;

use crate::key::{compare_internal, state_key_group, InternalKey, ValueKind};
use crate::options::Compression;

use super::seal::{COMPRESSION_NONE, COMPRESSION_ZSTD};
use crate::encoding::{put_varint32, DecodeResult, Malformed, Reader};

/// What an SST holds, as recorded when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableProperties {
    /// The first internal key of the file.
    pub smallest_key: Vec<u8>,
    /// The last internal key of the file.
    pub largest_key: Vec<u8>,
    /// Key group of the smallest key.
    pub first_key_group: u16,
    /// Key group of the largest key.
    pub last_key_group: u16,
    /// Number of entries (puts and deletions, every version counted).
    pub entry_count: u64,
    /// Number of deletion markers.
    pub deletion_count: u64,
    /// Smallest seqno of any entry.
    pub min_seqno: u64,
    /// Largest seqno of any entry.
    pub max_seqno: u64,
    /// Number of data blocks.
    pub data_block_count: u64,
    /// Sum of internal key lengths, before prefix compression.
    pub raw_key_bytes: u64,
    /// Sum of value lengths, before compression.
    pub raw_value_bytes: u64,
    /// Compression the writer was configured with (individual blocks may be raw).
    pub compression: Compression,
    /// Size of the whole file in bytes. Not stored in the block: the writer knows it
    /// when it finishes and the reader takes it from the block source.
    pub file_size: u64,
    /// Bytes of the file's tail after its data blocks (filter, index, properties,
    /// footer); like `file_size`, not stored in the block but filled in by the
    /// writer and the reader.
    pub meta_bytes: u64,
}

impl TableProperties {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for k in [&self.smallest_key, &self.largest_key] {
            put_varint32(out, k.len() as u32);
            out.extend_from_slice(k);
        }
        out.extend_from_slice(&self.first_key_group.to_le_bytes());
        out.extend_from_slice(&self.last_key_group.to_le_bytes());
        for v in [
            self.entry_count,
            self.deletion_count,
            self.min_seqno,
            self.max_seqno,
            self.data_block_count,
            self.raw_key_bytes,
            self.raw_value_bytes,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (kind, level) = match self.compression {
            Compression::None => (COMPRESSION_NONE, 0),
            Compression::Zstd { level } => (COMPRESSION_ZSTD, level),
        };
        out.push(kind);
        out.extend_from_slice(&level.to_le_bytes());
    }

    /// Decodes and sanity-checks properties; `file_size` is filled in by the caller.
    pub(crate) fn decode(contents: &[u8]) -> DecodeResult<TableProperties> {
        let mut r = Reader::new(contents);
        let smallest_key = r.length_prefixed("smallest key")?.to_vec();
        let largest_key = r.length_prefixed("largest key")?.to_vec();
        let first_key_group = r.u16_le("first key group")?;
        let last_key_group = r.u16_le("last key group")?;
        let entry_count = r.u64_le("entry count")?;
        let deletion_count = r.u64_le("deletion count")?;
        let min_seqno = r.u64_le("min seqno")?;
        let max_seqno = r.u64_le("max seqno")?;
        let data_block_count = r.u64_le("data block count")?;
        let raw_key_bytes = r.u64_le("raw key bytes")?;
        let raw_value_bytes = r.u64_le("raw value bytes")?;
        let kind = r.u8("compression type")?;
        let level = r.i32_le("compression level")?;
        if !r.is_empty() {
            return Err(Malformed::new("trailing bytes after the properties"));
        }
        let compression = match kind {
            COMPRESSION_NONE => Compression::None,
            COMPRESSION_ZSTD => Compression::Zstd { level },
            other => {
                return Err(Malformed::new(format!(
                    "unknown compression type {other} in properties"
                )))
            }
        };
        for (name, k, group) in [
            ("smallest", &smallest_key, first_key_group),
            ("largest", &largest_key, last_key_group),
        ] {
            let ik = InternalKey::decode(k)
                .ok_or_else(|| Malformed::new(format!("{name} key too short")))?;
            if ValueKind::from_u8(ik.kind).is_none() {
                return Err(Malformed::new(format!(
                    "{name} key has kind byte {}",
                    ik.kind
                )));
            }
            if state_key_group(ik.state_key) != group {
                return Err(Malformed::new(format!(
                    "{name} key is in key group {}, properties say {group}",
                    state_key_group(ik.state_key)
                )));
            }
        }
        if compare_internal(&smallest_key, &largest_key) == Ordering::Greater {
            return Err(Malformed::new("smallest key sorts after largest key"));
        }
        if entry_count == 0
            || deletion_count > entry_count
            || min_seqno > max_seqno
            || data_block_count == 0
            || data_block_count > entry_count
        {
            return Err(Malformed::new(format!(
                "inconsistent counts: {entry_count} entries, {deletion_count} deletions, \
                 {data_block_count} blocks, seqnos {min_seqno}..={max_seqno}"
            )));
        }
        Ok(TableProperties {
            smallest_key,
            largest_key,
            first_key_group,
            last_key_group,
            entry_count,
            deletion_count,
            min_seqno,
            max_seqno,
            data_block_count,
            raw_key_bytes,
            raw_value_bytes,
            compression,
            file_size: 0,
            meta_bytes: 0,
        })
    }
}
