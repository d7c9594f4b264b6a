//! The fixed-size footer at the very end of every SST.
//!
//! ```text
//! offset  size  field
//!      0    12  filter handle      [offset: u64 LE][size: u32 LE] (size 0: no filter)
//!     12    12  index handle
//!     24    12  properties handle
//!     36     4  format version: u32 LE (= 1)
//!     40     4  crc32 of bytes 0..40: u32 LE
//!     44     8  magic "TERRASST"
//! ```
//!
//! The magic is checked first (is this an SST at all?), then the CRC, then the
//! version, so a damaged version field reads as a checksum failure rather than as a
//! file from the future.

use std::path::Path;

use crate::error::{Error, ErrorDetail, Result};

use super::handle::{BlockHandle, FIXED_HANDLE_LEN};
use super::FORMAT_VERSION;
use crate::encoding::Reader;

/// Bytes of the footer.
pub(crate) const FOOTER_LEN: usize = 3 * FIXED_HANDLE_LEN + 4 + 4 + 8;
/// The last eight bytes of every SST.
pub(crate) const MAGIC: [u8; 8] = *b"TERRASST";

/// Where the metadata blocks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    /// `None` when the file was written without a filter.
    pub(crate) filter: Option<BlockHandle>,
    pub(crate) index: BlockHandle,
    pub(crate) properties: BlockHandle,
}

impl Footer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.filter.unwrap_or_default().encode_fixed(out);
        self.index.encode_fixed(out);
        self.properties.encode_fixed(out);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crate::encoding::crc32(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC);
    }

    /// Decodes the footer of `file`, read at `offset`. Handles are not range-checked
    /// here; the reader checks them against the file layout.
    pub(crate) fn decode(file: &Path, offset: u64, buf: &[u8]) -> Result<Footer> {
        if buf.len() != FOOTER_LEN {
            return Err(Error::corrupt(file, offset, "footer has the wrong length"));
        }
        if buf[FOOTER_LEN - 8..] != MAGIC {
            return Err(Error::corrupt(file, offset, "bad magic: not a Terrace SST"));
        }
        let mut r = Reader::new(buf);
        let bad = |m: crate::encoding::Malformed| m.at(file, offset);
        let filter = BlockHandle::decode_fixed(&mut r).map_err(bad)?;
        let index = BlockHandle::decode_fixed(&mut r).map_err(bad)?;
        let properties = BlockHandle::decode_fixed(&mut r).map_err(bad)?;
        let version = r.u32_le("format version").map_err(bad)?;
        let stored = r.u32_le("footer crc").map_err(bad)?;
        let computed = crate::encoding::crc32(&buf[..FOOTER_LEN - 12]);
        if stored != computed {
            return Err(ErrorDetail::ChecksumMismatch {
                file: file.to_path_buf(),
                offset,
                stored,
                computed,
            }
            .into());
        }
        if version != FORMAT_VERSION {
            return Err(ErrorDetail::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            }
            .into());
        }
        let filter = (filter != BlockHandle::default()).then_some(filter);
        Ok(Footer {
            filter,
            index,
            properties,
        })
    }
}
