//! The on-SSD format of the hybrid cache's segment files, version 1. Pure encoding and
//! decoding: no I/O here, so every decoder can be tested (and fuzzed) on plain bytes.
//!
//! A segment file is `seg-<seq as 16 hex digits>.tcs`: one 4 KiB header, then entries
//! appended at 512-byte boundaries. All integers are little-endian with explicit widths.
//!
//! ```text
//! segment header (SEGMENT_HEADER_BYTES = 4096, zero padded)
//!   0  magic            [u8; 8] = "TRCSEGv1"
//!   8  format_version   u32     = 1
//!  12  header_bytes     u32     = 4096
//!  16  segment_seq      u64     newer segments have larger numbers; the newest copy wins
//!  24  owner_id         u64     the database lineage the cache belongs to
//!  32  segment_bytes    u64     capacity the segment was created with
//!  40  entry_align      u32     = 512
//!  44  class            u8      segment class (by LSM level)
//!  45  reserved         [u8; 3] = 0
//!  48  header_crc       u32     crc32 of bytes 0..48
//!
//! entry (at a multiple of entry_align; ENTRY_HEADER_BYTES = 40, then the payload,
//!        then zeros up to the next multiple of entry_align)
//!   0  magic            u32     = ENTRY_MAGIC
//!   4  header_crc       u32     crc32 of bytes 8..40
//!   8  file_id          u64     block key: the SST's file id
//!  16  block_offset     u64     block key: the block's offset in the SST
//!  24  stored_len       u32     payload bytes as stored
//!  28  payload_crc      u32     crc32 of the stored payload
//!  32  raw_len          u32     payload bytes after decoding (= stored_len when raw)
//!  36  kind             u8      0 data, 1 index, 2 filter
//!  37  level            u8      LSM level of the file when the block was cached
//!  38  codec            u8      0 raw, 1 zstd
//!  39  reserved         u8      = 0
//! ```
//!
//! Anything that is not a valid entry header (zeros of an unwritten or padded region,
//! a torn write, flipped bits) is skipped 512 bytes at a time when a segment is scanned;
//! a payload whose crc does not match is never served.
//!
//! A clean close also writes the index, `index.tci`, so the next open need not scan the
//! segments (it deletes the file first: after a crash the segments are scanned).
//!
//! ```text
//! index file (version 1)
//!   0  magic            [u8; 8] = "TRCIDXv1"
//!   8  format_version   u32     = 1
//!  12  reserved         u32     = 0
//!  16  owner_id         u64
//!  24  segment_bytes    u64
//!  32  segment_count    u64
//!  40  entry_count      u64
//!  48  segments         segment_count × 24: seq u64, written_bytes u64, class u8, [u8; 7] = 0
//!  ..  entries          entry_count × 48, least recently used first:
//!                       file_id u64, block_offset u64, seq u64, offset u64, stored_len u32,
//!                       payload_crc u32, raw_len u32, kind u8, level u8, codec u8, u8 = 0
//!  end crc32            u32 of every byte before it
//! ```

use std::fmt;

use crate::BlockKey;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TRCSEGv1";
/// Version written in (and accepted from) segment headers.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header; entries start here.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
/// Entries start at multiples of this.
pub const ENTRY_ALIGN: u64 = 512;
/// Bytes of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 40;
/// First four bytes of every entry ("TRE1" read as little-endian bytes).
pub const ENTRY_MAGIC: u32 = u32::from_le_bytes(*b"TRE1");
/// Largest payload an entry may hold (blocks are a few KiB; this bounds a bad length).
pub const MAX_PAYLOAD_BYTES: u32 = 16 << 20;

const SEGMENT_HEADER_CRC_AT: usize = 48;

/// What kind of SST block an entry holds. Persisted as a `u8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Key/value data.
    Data,
    /// An index block.
    Index,
    /// A bloom filter block.
    Filter,
}

impl BlockKind {
    /// Every kind, in persisted order.
    pub const ALL: [BlockKind; 3] = [BlockKind::Data, BlockKind::Index, BlockKind::Filter];

    /// The persisted byte.
    pub fn as_u8(self) -> u8 {
        match self {
            BlockKind::Data => 0,
            BlockKind::Index => 1,
            BlockKind::Filter => 2,
        }
    }

    /// The kind of a persisted byte.
    pub fn from_u8(b: u8) -> Option<BlockKind> {
        match b {
            0 => Some(BlockKind::Data),
            1 => Some(BlockKind::Index),
            2 => Some(BlockKind::Filter),
            _ => None,
        }
    }

    /// Position in per-kind arrays.
    pub fn index(self) -> usize {
        self.as_u8() as usize
    }
}

/// How a payload is stored. Persisted as a `u8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// As the caller gave it.
    Raw,
    /// zstd-compressed; decoded on every hit.
    Zstd,
}

impl Codec {
    /// The persisted byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Codec::Raw => 0,
            Codec::Zstd => 1,
        }
    }

    /// The codec of a persisted byte.
    pub fn from_u8(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number: larger is newer.
    pub seq: u64,
    /// Database lineage the cache belongs to.
    pub owner_id: u64,
    /// Capacity the segment was created with.
    pub segment_bytes: u64,
    /// Segment class (by LSM level).
    pub class: u8,
}

/// A decoded entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Which block.
    pub key: BlockKey,
    /// Payload bytes as stored.
    pub stored_len: u32,
    /// crc32 of the stored payload.
    pub payload_crc: u32,
    /// Payload bytes once decoded.
    pub raw_len: u32,
    /// Block kind.
    pub kind: BlockKind,
    /// LSM level of the block's file.
    pub level: u8,
    /// How the payload is stored.
    pub codec: Codec,
}

/// Why bytes are not a valid segment header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than a header.
    #[error("segment header truncated: {0} bytes")]
    Truncated(usize),
    /// Not a segment file.
    #[error("bad segment magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// A version this build cannot read.
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u32),
    /// The header's checksum does not match.
    #[error("segment header crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// crc in the header.
        stored: u32,
        /// crc of the bytes.
        computed: u32,
    },
    /// Fields that cannot be right.
    #[error("segment header field {field} is invalid: {value}")]
    BadField {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Bytes an entry with `stored_len` payload bytes occupies in a segment (aligned).
pub fn entry_span(stored_len: u32) -> u64 {
    align_up(
        ENTRY_HEADER_BYTES as u64 + u64::from(stored_len),
        ENTRY_ALIGN,
    )
}

/// `v` rounded up to a multiple of `align` (a power of two).
pub fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}

/// Encodes a segment header into exactly [`SEGMENT_HEADER_BYTES`] bytes.
pub fn encode_segment_header(h: &SegmentHeader) -> Vec<u8> {
    let mut b = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC);
    b[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
    b[16..24].copy_from_slice(&h.seq.to_le_bytes());
    b[24..32].copy_from_slice(&h.owner_id.to_le_bytes());
    b[32..40].copy_from_slice(&h.segment_bytes.to_le_bytes());
    b[40..44].copy_from_slice(&(ENTRY_ALIGN as u32).to_le_bytes());
    b[44] = h.class;
    let crc = crc32fast::hash(&b[..SEGMENT_HEADER_CRC_AT]);
    b[48..52].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes and checks a segment header from the first bytes of a segment file.
pub fn decode_segment_header(b: &[u8]) -> Result<SegmentHeader, FormatError> {
    if b.len() < SEGMENT_HEADER_CRC_AT + 4 {
        return Err(FormatError::Truncated(b.len()));
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[0..8]);
    if magic != SEGMENT_MAGIC {
        return Err(FormatError::BadMagic(magic));
    }
    let stored = u32_at(b, 48);
    let computed = crc32fast::hash(&b[..SEGMENT_HEADER_CRC_AT]);
    if stored != computed {
        return Err(FormatError::BadCrc { stored, computed });
    }
    let version = u32_at(b, 8);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let header_bytes = u32_at(b, 12);
    if u64::from(header_bytes) != SEGMENT_HEADER_BYTES {
        return Err(FormatError::BadField {
            field: "header_bytes",
            value: header_bytes.into(),
        });
    }
    let align = u32_at(b, 40);
    if u64::from(align) != ENTRY_ALIGN {
        return Err(FormatError::BadField {
            field: "entry_align",
            value: align.into(),
        });
    }
    Ok(SegmentHeader {
        seq: u64_at(b, 16),
        owner_id: u64_at(b, 24),
        segment_bytes: u64_at(b, 32),
        class: b[44],
    })
}

/// Appends one entry (header, payload, zero padding to [`ENTRY_ALIGN`]) to `out`, which
/// must start at an aligned offset of the segment. Returns the entry's header.
pub fn encode_entry(
    out: &mut Vec<u8>,
    key: BlockKey,
    kind: BlockKind,
    level: u8,
    codec: Codec,
    raw_len: u32,
    payload: &[u8],
) -> EntryHeader {
    let h = EntryHeader {
        key,
        stored_len: payload.len() as u32,
        payload_crc: crc32fast::hash(payload),
        raw_len,
        kind,
        level,
        codec,
    };
    let start = out.len();
    out.extend_from_slice(&encode_entry_header(&h));
    out.extend_from_slice(payload);
    let span = entry_span(h.stored_len) as usize;
    out.resize(start + span, 0);
    h
}

/// The 40 header bytes of an entry.
pub fn encode_entry_header(h: &EntryHeader) -> [u8; ENTRY_HEADER_BYTES] {
    let mut b = [0u8; ENTRY_HEADER_BYTES];
    b[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    b[8..16].copy_from_slice(&h.key.file_id.to_le_bytes());
    b[16..24].copy_from_slice(&h.key.offset.to_le_bytes());
    b[24..28].copy_from_slice(&h.stored_len.to_le_bytes());
    b[28..32].copy_from_slice(&h.payload_crc.to_le_bytes());
    b[32..36].copy_from_slice(&h.raw_len.to_le_bytes());
    b[36] = h.kind.as_u8();
    b[37] = h.level;
    b[38] = h.codec.as_u8();
    let crc = crc32fast::hash(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes an entry header; `None` unless magic, crc and every field are valid.
pub fn decode_entry_header(b: &[u8]) -> Option<EntryHeader> {
    if b.len() < ENTRY_HEADER_BYTES || u32_at(b, 0) != ENTRY_MAGIC {
        return None;
    }
    if u32_at(b, 4) != crc32fast::hash(&b[8..ENTRY_HEADER_BYTES]) || b[39] != 0 {
        return None;
    }
    let stored_len = u32_at(b, 24);
    let raw_len = u32_at(b, 32);
    if stored_len > MAX_PAYLOAD_BYTES || raw_len > MAX_PAYLOAD_BYTES {
        return None;
    }
    Some(EntryHeader {
        key: BlockKey {
            file_id: u64_at(b, 8),
            offset: u64_at(b, 16),
        },
        stored_len,
        payload_crc: u32_at(b, 28),
        raw_len,
        kind: BlockKind::from_u8(b[36])?,
        level: b[37],
        codec: Codec::from_u8(b[38])?,
    })
}

/// An entry found by [`scan_entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedEntry {
    /// Offset of the entry in the segment.
    pub offset: u64,
    /// Its header.
    pub header: EntryHeader,
}

/// What a scan of a segment's bytes found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Entries whose header and payload check, in file order.
    pub entries: Vec<ScannedEntry>,
    /// Entries with a valid header whose payload does not match its crc (or is cut off).
    pub corrupt_entries: u64,
}

/// Finds every valid entry in `bytes`, the contents of a segment from offset
/// `base_offset` (a multiple of [`ENTRY_ALIGN`], at least [`SEGMENT_HEADER_BYTES`]).
pub fn scan_entries(bytes: &[u8], base_offset: u64) -> ScanResult {
    let mut out = ScanResult::default();
    let mut at = 0usize;
    while at + ENTRY_HEADER_BYTES <= bytes.len() {
        let Some(h) = decode_entry_header(&bytes[at..]) else {
            at += ENTRY_ALIGN as usize;
            continue;
        };
        let payload_at = at + ENTRY_HEADER_BYTES;
        let end = payload_at + h.stored_len as usize;
        if end > bytes.len() || crc32fast::hash(&bytes[payload_at..end]) != h.payload_crc {
            out.corrupt_entries += 1;
            at += ENTRY_ALIGN as usize;
            continue;
        }
        out.entries.push(ScannedEntry {
            offset: base_offset + at as u64,
            header: h,
        });
        at += entry_span(h.stored_len) as usize;
    }
    out
}

/// Checks an entry read back from a segment against what the index expects: the
/// header must decode and name `key`, `stored_len` and `payload_crc`, and the payload
/// must match that crc. Returns the payload.
pub fn check_entry<'a>(
    bytes: &'a [u8],
    key: &BlockKey,
    stored_len: u32,
    payload_crc: u32,
) -> Result<(&'a [u8], EntryHeader), EntryCheckError> {
    let h = decode_entry_header(bytes).ok_or(EntryCheckError::BadHeader)?;
    if h.key != *key || h.stored_len != stored_len || h.payload_crc != payload_crc {
        return Err(EntryCheckError::WrongEntry(h.key));
    }
    let payload = bytes
        .get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + stored_len as usize)
        .ok_or(EntryCheckError::Truncated)?;
    if crc32fast::hash(payload) != h.payload_crc {
        return Err(EntryCheckError::BadPayloadCrc);
    }
    Ok((payload, h))
}

/// Why an entry read back from a segment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryCheckError {
    /// Magic, header crc or a field is wrong.
    BadHeader,
    /// The header is valid but for another block (or another length).
    WrongEntry(BlockKey),
    /// Fewer bytes than the entry.
    Truncated,
    /// The payload does not match its crc.
    BadPayloadCrc,
}

impl fmt::Display for EntryCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryCheckError::BadHeader => f.write_str("entry header invalid"),
            EntryCheckError::WrongEntry(k) => {
                write!(f, "entry belongs to file {} offset {}", k.file_id, k.offset)
            }
            EntryCheckError::Truncated => f.write_str("entry truncated"),
            EntryCheckError::BadPayloadCrc => f.write_str("entry payload crc mismatch"),
        }
    }
}

/// Name of the index file written on a clean close.
pub const INDEX_FILE_NAME: &str = "index.tci";
/// First bytes of the index file.
pub const INDEX_MAGIC: [u8; 8] = *b"TRCIDXv1";
/// Version written in (and accepted from) index files.
pub const INDEX_FORMAT_VERSION: u32 = 1;
const INDEX_HEADER_BYTES: usize = 48;
const INDEX_SEGMENT_BYTES: usize = 24;
const INDEX_ENTRY_BYTES: usize = 48;

/// A segment as the index file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSegment {
    /// Sequence number (the file name).
    pub seq: u64,
    /// Entry bytes appended to it, live or not (for its live fraction).
    pub written_bytes: u64,
    /// Its class.
    pub class: u8,
}

/// An entry as the index file records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Which block.
    pub key: BlockKey,
    /// Its segment.
    pub seq: u64,
    /// Offset of the entry in the segment.
    pub offset: u64,
    /// Payload bytes as stored.
    pub stored_len: u32,
    /// crc32 of the stored payload.
    pub payload_crc: u32,
    /// Payload bytes once decoded.
    pub raw_len: u32,
    /// Block kind.
    pub kind: BlockKind,
    /// LSM level.
    pub level: u8,
    /// How the payload is stored.
    pub codec: Codec,
}

/// A decoded index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Database lineage.
    pub owner_id: u64,
    /// Segment size the cache ran with.
    pub segment_bytes: u64,
    /// Every segment file the index covers.
    pub segments: Vec<IndexSegment>,
    /// Every indexed entry, least recently used first.
    pub entries: Vec<IndexEntry>,
}

/// Writes an index file to `w` (streaming: the crc is computed as it goes).
pub fn write_index(
    w: &mut impl std::io::Write,
    owner_id: u64,
    segment_bytes: u64,
    segments: &[IndexSegment],
    entry_count: u64,
    entries: impl Iterator<Item = IndexEntry>,
) -> std::io::Result<()> {
    let mut crc = crc32fast::Hasher::new();
    let mut put = |w: &mut dyn std::io::Write, b: &[u8]| -> std::io::Result<()> {
        crc.update(b);
        w.write_all(b)
    };
    let mut h = [0u8; INDEX_HEADER_BYTES];
    h[0..8].copy_from_slice(&INDEX_MAGIC);
    h[8..12].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&owner_id.to_le_bytes());
    h[24..32].copy_from_slice(&segment_bytes.to_le_bytes());
    h[32..40].copy_from_slice(&(segments.len() as u64).to_le_bytes());
    h[40..48].copy_from_slice(&entry_count.to_le_bytes());
    put(w, &h)?;
    for s in segments {
        let mut b = [0u8; INDEX_SEGMENT_BYTES];
        b[0..8].copy_from_slice(&s.seq.to_le_bytes());
        b[8..16].copy_from_slice(&s.written_bytes.to_le_bytes());
        b[16] = s.class;
        put(w, &b)?;
    }
    let mut written = 0u64;
    for e in entries {
        let mut b = [0u8; INDEX_ENTRY_BYTES];
        b[0..8].copy_from_slice(&e.key.file_id.to_le_bytes());
        b[8..16].copy_from_slice(&e.key.offset.to_le_bytes());
        b[16..24].copy_from_slice(&e.seq.to_le_bytes());
        b[24..32].copy_from_slice(&e.offset.to_le_bytes());
        b[32..36].copy_from_slice(&e.stored_len.to_le_bytes());
        b[36..40].copy_from_slice(&e.payload_crc.to_le_bytes());
        b[40..44].copy_from_slice(&e.raw_len.to_le_bytes());
        b[44] = e.kind.as_u8();
        b[45] = e.level;
        b[46] = e.codec.as_u8();
        put(w, &b)?;
        written += 1;
    }
    if written != entry_count {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("index: {written} entries written, {entry_count} announced"),
        ));
    }
    w.write_all(&crc.finalize().to_le_bytes())
}

/// Decodes and checks a whole index file.
pub fn decode_index(b: &[u8]) -> Result<IndexFile, FormatError> {
    if b.len() < INDEX_HEADER_BYTES + 4 {
        return Err(FormatError::Truncated(b.len()));
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[0..8]);
    if magic != INDEX_MAGIC {
        return Err(FormatError::BadMagic(magic));
    }
    let body = b.len() - 4;
    let stored = u32_at(b, body);
    let computed = crc32fast::hash(&b[..body]);
    if stored != computed {
        return Err(FormatError::BadCrc { stored, computed });
    }
    let version = u32_at(b, 8);
    if version != INDEX_FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let bad = |field: &'static str, value: u64| FormatError::BadField { field, value };
    let seg_count = u64_at(b, 32);
    let entry_count = u64_at(b, 40);
    let expect = (INDEX_HEADER_BYTES as u64)
        .checked_add(
            seg_count
                .checked_mul(INDEX_SEGMENT_BYTES as u64)
                .ok_or(bad("segment_count", seg_count))?,
        )
        .and_then(|v| v.checked_add(entry_count.checked_mul(INDEX_ENTRY_BYTES as u64)?))
        .ok_or(bad("entry_count", entry_count))?;
    if expect != body as u64 {
        return Err(bad("length", b.len() as u64));
    }
    let mut out = IndexFile {
        owner_id: u64_at(b, 16),
        segment_bytes: u64_at(b, 24),
        segments: Vec::with_capacity(seg_count as usize),
        entries: Vec::with_capacity(entry_count as usize),
    };
    let mut at = INDEX_HEADER_BYTES;
    for _ in 0..seg_count {
        out.segments.push(IndexSegment {
            seq: u64_at(b, at),
            written_bytes: u64_at(b, at + 8),
            class: b[at + 16],
        });
        at += INDEX_SEGMENT_BYTES;
    }
    for _ in 0..entry_count {
        let kind = BlockKind::from_u8(b[at + 44]).ok_or(bad("kind", b[at + 44].into()))?;
        let codec = Codec::from_u8(b[at + 46]).ok_or(bad("codec", b[at + 46].into()))?;
        out.entries.push(IndexEntry {
            key: BlockKey {
                file_id: u64_at(b, at),
                offset: u64_at(b, at + 8),
            },
            seq: u64_at(b, at + 16),
            offset: u64_at(b, at + 24),
            stored_len: u32_at(b, at + 32),
            payload_crc: u32_at(b, at + 36),
            raw_len: u32_at(b, at + 40),
            kind,
            level: b[at + 45],
            codec,
        });
        at += INDEX_ENTRY_BYTES;
    }
    Ok(out)
}

/// The file name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("seg-{seq:016x}.tcs")
}

/// The sequence number of a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".tcs")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: u64, o: u64) -> BlockKey {
        BlockKey {
            file_id: f,
            offset: o,
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            seq: 7,
            owner_id: 42,
            segment_bytes: 1 << 20,
            class: 2,
        };
        let b = encode_segment_header(&h);
        assert_eq!(b.len(), 4096);
        assert_eq!(decode_segment_header(&b), Ok(h));
        for i in 0..52 {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(decode_segment_header(&d).is_err(), "byte {i}");
        }
        assert_eq!(
            decode_segment_header(&b[..10]),
            Err(FormatError::Truncated(10))
        );
    }

    #[test]
    fn entries_round_trip_and_scan_skips_padding_and_damage() {
        let mut seg = Vec::new();
        let h1 = encode_entry(
            &mut seg,
            key(1, 0),
            BlockKind::Data,
            3,
            Codec::Raw,
            5,
            b"hello",
        );
        assert_eq!(seg.len(), 512);
        seg.resize(4096, 0); // padding, as after a partial flush
        let payload = vec![7u8; 1000];
        let h2 = encode_entry(
            &mut seg,
            key(2, 4096),
            BlockKind::Filter,
            0,
            Codec::Zstd,
            4000,
            &payload,
        );
        assert_eq!(seg.len(), 4096 + 1536);
        let r = scan_entries(&seg, 4096);
        assert_eq!(r.corrupt_entries, 0);
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].header, h1);
        assert_eq!(r.entries[0].offset, 4096);
        assert_eq!(r.entries[1].header, h2);
        assert_eq!(r.entries[1].offset, 8192);

        let crc = h2.payload_crc;
        let (p, _) = check_entry(&seg[4096..], &key(2, 4096), 1000, crc).unwrap();
        assert_eq!(p, &payload[..]);
        assert_eq!(
            check_entry(&seg[4096..], &key(2, 0), 1000, crc).unwrap_err(),
            EntryCheckError::WrongEntry(key(2, 4096))
        );
        assert_eq!(
            check_entry(&seg[4096..], &key(2, 4096), 1000, crc ^ 1).unwrap_err(),
            EntryCheckError::WrongEntry(key(2, 4096)),
            "the index's crc must match too"
        );

        // A flipped payload byte: the scan drops the entry, a read refuses it.
        let mut bad = seg.clone();
        bad[4096 + ENTRY_HEADER_BYTES + 10] ^= 1;
        let r = scan_entries(&bad, 4096);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.corrupt_entries, 1);
        assert_eq!(
            check_entry(&bad[4096..], &key(2, 4096), 1000, crc).unwrap_err(),
            EntryCheckError::BadPayloadCrc
        );
        // A flipped header byte: not an entry at all.
        let mut bad = seg.clone();
        bad[4096 + 9] ^= 1;
        assert_eq!(scan_entries(&bad, 4096).entries.len(), 1);
        assert_eq!(
            check_entry(&bad[4096..], &key(2, 4096), 1000, crc).unwrap_err(),
            EntryCheckError::BadHeader
        );
    }

    #[test]
    fn scanning_arbitrary_bytes_never_panics() {
        let mut state = 1u64;
        for len in [0usize, 39, 40, 511, 512, 513, 4096, 9000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 33) as u8
                })
                .collect();
            let _ = scan_entries(&bytes, 4096);
            let _ = decode_segment_header(&bytes);
            let _ = decode_index(&bytes);
            // Also with a valid magic and crc, so the field checks run.
            let mut ix = bytes.clone();
            if ix.len() >= 52 {
                ix[0..8].copy_from_slice(&INDEX_MAGIC);
                let body = ix.len() - 4;
                let crc = crc32fast::hash(&ix[..body]);
                ix[body..].copy_from_slice(&crc.to_le_bytes());
                let _ = decode_index(&ix);
            }
        }
    }

    #[test]
    fn index_files_round_trip_and_reject_damage() {
        let segments = vec![
            IndexSegment {
                seq: 3,
                written_bytes: 9000,
                class: 0,
            },
            IndexSegment {
                seq: 5,
                written_bytes: 512,
                class: 2,
            },
        ];
        let entries = vec![
            IndexEntry {
                key: key(1, 4096),
                seq: 3,
                offset: 4096,
                stored_len: 100,
                payload_crc: 7,
                raw_len: 300,
                kind: BlockKind::Data,
                level: 1,
                codec: Codec::Zstd,
            },
            IndexEntry {
                key: key(2, 0),
                seq: 5,
                offset: 4608,
                stored_len: 10,
                payload_crc: 8,
                raw_len: 10,
                kind: BlockKind::Filter,
                level: 6,
                codec: Codec::Raw,
            },
        ];
        let mut b = Vec::new();
        write_index(&mut b, 42, 1 << 20, &segments, 2, entries.iter().copied()).unwrap();
        assert_eq!(b.len(), 48 + 2 * 24 + 2 * 48 + 4);
        let f = decode_index(&b).unwrap();
        assert_eq!(f.owner_id, 42);
        assert_eq!(f.segment_bytes, 1 << 20);
        assert_eq!(f.segments, segments);
        assert_eq!(f.entries, entries);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(decode_index(&d).is_err(), "byte {i}");
        }
        assert!(decode_index(&b[..b.len() - 1]).is_err());
        let mut short = Vec::new();
        assert!(write_index(&mut short, 1, 1, &segments, 3, entries.iter().copied()).is_err());
    }

    #[test]
    fn segment_file_names_round_trip() {
        assert_eq!(segment_file_name(255), "seg-00000000000000ff.tcs");
        assert_eq!(
            parse_segment_file_name("seg-00000000000000ff.tcs"),
            Some(255)
        );
        assert_eq!(parse_segment_file_name("seg-ff.tcs"), None);
        assert_eq!(parse_segment_file_name(".direct-io-probe"), None);
    }
}
