//! Little-endian, fixed-width encoding helpers for the manifest and metadata files.
//!
//! Decoding never panics: every read checks the remaining length and returns `None`
//! on a short or malformed input; callers turn that into a Corruption error that
//! names the file.

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
    /// A u32 length, then the bytes.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
}

/// Reads what [`Enc`] wrote.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
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
