//! Block handles: where a block's stored bytes lie in the file.
//!
//! A handle names the block's *stored contents* (compressed or not); the 5-byte block
//! trailer follows them and is not counted in `size`. Handles are encoded two ways:
//! as varints inside index entries (`offset: varint64, size: varint32`) and at fixed
//! width in the footer (`offset: u64 LE, size: u32 LE`).

use super::seal::BLOCK_TRAILER_LEN;
use crate::encoding::{put_varint32, put_varint64, DecodeResult, Malformed, Reader};

/// Location of one block's stored contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    /// Offset of the first content byte in the file.
    pub(crate) offset: u64,
    /// Length of the stored contents, trailer excluded.
    pub(crate) size: u32,
}

/// Bytes of a handle at fixed width.
pub(crate) const FIXED_HANDLE_LEN: usize = 12;

impl BlockHandle {
    /// Bytes to read for the block: contents plus trailer.
    pub(crate) fn len_with_trailer(&self) -> u64 {
        u64::from(self.size) + BLOCK_TRAILER_LEN as u64
    }

    /// One past the last byte of the block's trailer.
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len_with_trailer())
    }

    pub(crate) fn encode_varint(&self, out: &mut Vec<u8>) {
        put_varint64(out, self.offset);
        put_varint32(out, self.size);
    }

    pub(crate) fn decode_varint(r: &mut Reader<'_>) -> DecodeResult<BlockHandle> {
        let offset = r.varint64("block handle offset")?;
        let size = r.varint32("block handle size")?;
        Ok(BlockHandle { offset, size })
    }

    pub(crate) fn encode_fixed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
    }

    pub(crate) fn decode_fixed(r: &mut Reader<'_>) -> DecodeResult<BlockHandle> {
        let offset = r.u64_le("block handle offset")?;
        let size = r.u32_le("block handle size")?;
        Ok(BlockHandle { offset, size })
    }

    /// Checks that the block and its trailer lie inside `[start, end)`.
    pub(crate) fn check_within(&self, start: u64, end: u64, what: &str) -> DecodeResult<()> {
        let block_end = self.offset.checked_add(self.len_with_trailer());
        if self.offset < start || block_end.is_none_or(|e| e > end) {
            return Err(Malformed::new(format!(
                "{what} handle (offset {}, size {}) lies outside [{start}, {end})",
                self.offset, self.size
            )));
        }
        Ok(())
    }
}
