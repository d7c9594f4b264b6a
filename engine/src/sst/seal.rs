//! Sealing and unsealing blocks: compression and the per-block trailer.
//!
//! Every block on disk is `[contents][compression type: u8][crc32: u32 LE]`, where the
//! CRC (crc32fast, IEEE) covers the contents and the type byte. A zstd block's
//! contents are `[uncompressed length: u32 LE][zstd frame]`; the writer stores a block
//! raw whenever compression would not make it smaller. Unsealing verifies the CRC
//! before looking at anything else, so damaged bytes never reach a parser unnoticed.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, ErrorDetail, Result};
use crate::options::Compression;

use crate::encoding::u32_le_at;

/// Bytes of the trailer after every block's contents.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;

/// Compression type byte: contents stored as they are.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// Compression type byte: `[uncompressed len u32 LE][zstd frame]`.
pub(crate) const COMPRESSION_ZSTD: u8 = 1;

/// The largest uncompressed block a reader accepts: one entry may carry a value of up
/// to 256 MiB plus a key of up to 1 MiB; anything larger is damage, not data.
pub(crate) const MAX_UNCOMPRESSED_BLOCK_BYTES: u32 = (256 << 20) + (2 << 20);

/// Turns raw block contents into what is stored on disk.
pub(crate) struct Sealer {
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl Sealer {
    pub(crate) fn new(compression: Compression) -> Result<Sealer> {
        let zstd = match compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::invalid_option("compression", e.to_string()))?,
            ),
        };
        Ok(Sealer {
            zstd,
            scratch: Vec::new(),
        })
    }

    /// Appends the stored form of `contents` (contents + trailer) to `out`, returning
    /// the length of the stored contents without the trailer. Only `compressible`
    /// blocks are offered to zstd (data blocks; metadata blocks are read once).
    pub(crate) fn seal(
        &mut self,
        contents: &[u8],
        compressible: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize> {
        let start = out.len();
        let mut kind = COMPRESSION_NONE;
        if let (Some(z), true) = (self.zstd.as_mut(), compressible) {
            let raw_len = u32::try_from(contents.len())
                .map_err(|_| Error::internal("data block larger than 4 GiB"))?;
            self.scratch.clear();
            self.scratch
                .reserve(zstd::zstd_safe::compress_bound(contents.len()));
            // `compress_to_buffer` writes from the start of `scratch`; a frame that does
            // not fit the bound is an error from zstd, and the block is stored raw.
            if z.compress_to_buffer(contents, &mut self.scratch).is_ok()
                && 4 + self.scratch.len() < contents.len()
            {
                kind = COMPRESSION_ZSTD;
                out.extend_from_slice(&raw_len.to_le_bytes());
                out.extend_from_slice(&self.scratch);
            }
        }
        if kind == COMPRESSION_NONE {
            out.extend_from_slice(contents);
        }
        let stored_len = out.len() - start;
        let crc = block_crc(&out[start..], kind);
        out.push(kind);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(stored_len)
    }
}

/// CRC of stored contents followed by the compression type byte.
pub(crate) fn block_crc(stored: &[u8], kind: u8) -> u32 {
    crate::encoding::crc32_of(&[stored, &[kind]])
}

/// Verifies the trailer of a block read from `file` at `offset` (`buf` is contents +
/// trailer) and returns its uncompressed contents.
pub(crate) fn unseal(file: &Path, offset: u64, buf: &[u8]) -> Result<Vec<u8>> {
    match unseal_borrowed(file, offset, buf)? {
        Unsealed::Raw(r) => Ok(r.to_vec()),
        Unsealed::Owned(v) => Ok(v),
    }
}

/// Result of [`unseal_borrowed`]: raw blocks are not copied.
pub(crate) enum Unsealed<'a> {
    Raw(&'a [u8]),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Unsealed<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Unsealed::Raw(r) => r,
            Unsealed::Owned(v) => v,
        }
    }
}

pub(crate) fn unseal_borrowed<'a>(file: &Path, offset: u64, buf: &'a [u8]) -> Result<Unsealed<'a>> {
    let Some(stored_len) = buf.len().checked_sub(BLOCK_TRAILER_LEN) else {
        return Err(Error::corrupt(
            file,
            offset,
            "block shorter than its trailer",
        ));
    };
    let stored = &buf[..stored_len];
    let kind = buf[stored_len];
    let stored_crc = u32_le_at(buf, stored_len + 1).unwrap_or(0);
    let computed = block_crc(stored, kind);
    if stored_crc != computed {
        return Err(ErrorDetail::ChecksumMismatch {
            file: file.to_path_buf(),
            offset,
            stored: stored_crc,
            computed,
        }
        .into());
    }
    match kind {
        COMPRESSION_NONE => Ok(Unsealed::Raw(stored)),
        COMPRESSION_ZSTD => decompress(stored)
            .map(Unsealed::Owned)
            .map_err(|what| Error::corrupt(file, offset, what)),
        other => Err(Error::corrupt(
            file,
            offset,
            format!("unknown compression type {other}"),
        )),
    }
}

fn decompress(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let raw_len = u32_le_at(stored, 0).ok_or("zstd block lacks its length prefix")?;
    if raw_len > MAX_UNCOMPRESSED_BLOCK_BYTES {
        return Err(format!("zstd block claims {raw_len} uncompressed bytes"));
    }
    let frame = &stored[4..];
    // Grow the buffer with the output instead of trusting the prefix for the
    // allocation, and read one byte more than promised to detect a lying prefix.
    let mut out = Vec::with_capacity((raw_len as usize).min(frame.len().saturating_mul(8) + 4096));
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| format!("zstd: {e}"))?
        .single_frame();
    decoder
        .take(u64::from(raw_len) + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() != raw_len as usize {
        return Err(format!(
            "zstd block decompressed to {} bytes, its prefix says {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_unseal_round_trip_and_detect_damage() {
        let p = Path::new("t.sst");
        for comp in [Compression::None, Compression::Zstd { level: 3 }] {
            let mut s = Sealer::new(comp).unwrap();
            let contents = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".repeat(20);
            let mut out = Vec::new();
            let n = s.seal(&contents, true, &mut out).unwrap();
            assert_eq!(out.len(), n + BLOCK_TRAILER_LEN);
            assert_eq!(unseal(p, 0, &out).unwrap(), contents);
            for i in 0..out.len() {
                let mut bad = out.clone();
                bad[i] ^= 0x40;
                assert!(unseal(p, 0, &bad).is_err(), "flip at {i} undetected");
            }
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let mut s = Sealer::new(Compression::Zstd { level: 3 }).unwrap();
        let contents: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
            .collect();
        let mut out = Vec::new();
        let n = s.seal(&contents, true, &mut out).unwrap();
        assert_eq!(n, contents.len());
        assert_eq!(out[n], COMPRESSION_NONE);
    }
}
