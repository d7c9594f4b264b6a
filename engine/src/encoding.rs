//! Bytes in and out: the one cursor every persisted format is encoded and decoded
//! with, and its checksums.
//!
//! [`Enc`] appends little-endian fixed-width values, LEB128 varints and
//! length-prefixed byte strings; [`Reader`] reads them back. Decoding never panics:
//! every read is bounds-checked and a short or malformed input is a [`Malformed`]
//! error, described without file context; callers attach the file and offset
//! ([`Malformed::at`]) and the result is a Corruption error.
//!
//! Varints are LEB128 (7 bits per byte, least significant group first). A `u32`
//! varint takes at most 5 bytes, a `u64` varint at most 10; longer encodings or bits
//! beyond the width are rejected rather than silently truncated.
//!
//! Checksums are CRC32 (crc32fast, IEEE polynomial, SIMD-accelerated).

use std::path::Path;

use crate::error::Error;

/// Bytes that do not parse, described without file context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

impl Malformed {
    pub(crate) fn new(what: impl Into<String>) -> Malformed {
        Malformed(what.into())
    }

    /// Attaches the file and the offset of the structure that failed to parse.
    pub(crate) fn at(self, file: &Path, offset: u64) -> Error {
        Error::corrupt(file, offset, self.0)
    }
}

pub(crate) type DecodeResult<T> = std::result::Result<T, Malformed>;

pub(crate) fn put_varint32(out: &mut Vec<u8>, v: u32) {
    put_varint64(out, u64::from(v));
}

pub(crate) fn put_varint64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over bytes being decoded; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint64(&mut self, what: &str) -> DecodeResult<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| Malformed::new(format!("truncated varint ({what})")))?;
            self.pos += 1;
            // The tenth byte may only carry the single remaining bit of a u64.
            if i == 9 && b > 1 {
                return Err(Malformed::new(format!("varint overflow ({what})")));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed::new(format!("varint too long ({what})")))
    }

    pub(crate) fn varint32(&mut self, what: &str) -> DecodeResult<u32> {
        let v = self.varint64(what)?;
        u32::try_from(v).map_err(|_| Malformed::new(format!("varint exceeds u32 ({what})")))
    }

    pub(crate) fn bytes(&mut self, len: usize, what: &str) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Malformed::new(format!("{what} runs past the end")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> DecodeResult<[u8; N]> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &str) -> DecodeResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16_le(&mut self, what: &str) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32_le(&mut self, what: &str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn i32_le(&mut self, what: &str) -> DecodeResult<i32> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64_le(&mut self, what: &str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u32-varint length followed by that many bytes.
    pub(crate) fn length_prefixed(&mut self, what: &str) -> DecodeResult<&'a [u8]> {
        let len = self.varint32(what)?;
        self.bytes(len as usize, what)
    }

    /// A u32 little-endian length followed by that many bytes (what [`Enc::bytes`]
    /// writes).
    pub(crate) fn u32_prefixed(&mut self, what: &str) -> DecodeResult<&'a [u8]> {
        let len = self.u32_le(what)?;
        self.bytes(len as usize, what)
    }
}

/// Reads a little-endian u32 at `pos`, if it fits.
pub(crate) fn u32_le_at(buf: &[u8], pos: usize) -> Option<u32> {
    let end = pos.checked_add(4)?;
    let s = buf.get(pos..end)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Appends fixed-width little-endian values to a buffer.
#[derive(Default)]
pub(crate) struct Enc {
    pub(crate) buf: Vec<u8>,
}

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A u32 length, then the bytes. Persisted strings are far below 4 GiB: the
    /// callers bound them (keys, table names, records of at most `MAX_RECORD_BYTES`).
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
}

/// Checks that `data` has the CRC32 `stored`; a mismatch is a Corruption error naming
/// `file` and `offset`.
pub(crate) fn verify_crc32(
    file: &std::path::Path,
    offset: u64,
    stored: u32,
    data: &[u8],
) -> crate::Result<()> {
    let computed = crc32(data);
    if stored == computed {
        return Ok(());
    }
    Err(crate::ErrorDetail::ChecksumMismatch {
        file: file.to_path_buf(),
        offset,
        stored,
        computed,
    }
    .into())
}

/// CRC32 (Castagnoli is not needed here; crc32fast's IEEE polynomial is fast with SIMD).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// CRC32 of the concatenation of `parts`, without concatenating them.
pub(crate) fn crc32_of(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint64(&mut b, v);
            assert_eq!(Reader::new(&b).varint64("t").unwrap(), v);
        }
        let mut b = Vec::new();
        put_varint64(&mut b, u64::from(u32::MAX) + 1);
        assert!(Reader::new(&b).varint32("t").is_err());
        assert!(Reader::new(&[0xff; 10]).varint64("t").is_err());
        assert!(Reader::new(&[0x80]).varint64("t").is_err());
    }
}
