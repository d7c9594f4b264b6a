//! Segment files on the local SSD: created, written and read with O_DIRECT through
//! glommio DMA files (io_uring), and scanned on open to rebuild the index.
//!
//! Every write is a whole buffer at a 4 KiB-aligned offset whose length is a multiple of
//! 4 KiB (the first buffer of a segment starts with its header), so no write is ever
//! read-modify-write. Reads of one entry are a single `read_at` (glommio aligns it).
//! Invariant: the bytes of an entry are checked ([`check_entry`]) after every read.
//! The callers must have run [`crate::probe_direct_io`] on the executor first.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use super::format::{
    check_entry, decode_segment_header, scan_entries, segment_file_name, EntryCheckError,
    EntryHeader, ScanResult, SegmentHeader, ENTRY_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::{BlockKey, Bytes};

/// Path of segment `seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Creates (or truncates) segment `seq` for reading and writing. `DmaFile::create`
/// opens write-only, which would make later reads of the segment fail.
pub(crate) async fn create_segment(dir: &Path, seq: u64) -> io::Result<Rc<DmaFile>> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .map_err(|e| with_path("create", &path, io::Error::from(e)))?;
    Ok(Rc::new(file))
}

/// Writes `data` (a multiple of 4 KiB) at `offset` (4 KiB aligned).
pub(crate) async fn write_buffer(file: &DmaFile, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut buf = file.alloc_dma_buffer(data.len());
    buf.as_bytes_mut().copy_from_slice(data);
    let n = file.write_at(buf, offset).await.map_err(io::Error::from)?;
    if n != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short segment write: {n} of {} bytes at {offset}",
                data.len()
            ),
        ));
    }
    Ok(())
}

/// Why an entry could not be read back. (Either way the block is loaded from its
/// source instead; only the counters differ.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The device or file failed.
    Io,
    /// The bytes are not the entry (checksum, header or length).
    Corrupt,
}

impl From<EntryCheckError> for ReadError {
    fn from(_: EntryCheckError) -> ReadError {
        ReadError::Corrupt
    }
}

/// Reads the entry of `key` at `offset` and returns its payload, checked against the
/// index's length and crc.
pub(crate) async fn read_entry(
    file: &DmaFile,
    offset: u64,
    key: &BlockKey,
    stored_len: u32,
    payload_crc: u32,
) -> Result<(Bytes, EntryHeader), ReadError> {
    let len = ENTRY_HEADER_BYTES + stored_len as usize;
    let got = file.read_at(offset, len).await.map_err(|_| ReadError::Io)?;
    let (payload, header) = check_entry(&got, key, stored_len, payload_crc)?;
    Ok((Rc::from(payload), header))
}

/// A segment found on open.
pub(crate) struct FoundSegment {
    pub header: SegmentHeader,
    pub file: Rc<DmaFile>,
    pub scan: ScanResult,
}

/// Why a segment file found on open is not used.
pub(crate) enum Unusable {
    /// Not a segment of this format (bad magic, crc, version, too short).
    Invalid,
    /// The file could not be read.
    Io(io::Error),
}

/// Opens and scans an existing segment file. The whole file is read in one aligned
/// read: segments are bounded by `segment_bytes`, and this runs only on open.
pub(crate) async fn scan_segment(path: &Path) -> Result<FoundSegment, Unusable> {
    let file = DmaFile::open(path)
        .await
        .map_err(|e| Unusable::Io(e.into()))?;
    let size = file.file_size().await.map_err(|e| Unusable::Io(e.into()))?;
    if size < SEGMENT_HEADER_BYTES {
        let _ = file.close().await;
        return Err(Unusable::Invalid);
    }
    let aligned = size - size % 4096;
    let bytes = file
        .read_at_aligned(0, aligned as usize)
        .await
        .map_err(|e| Unusable::Io(e.into()))?;
    let header = match decode_segment_header(&bytes) {
        Ok(h) => h,
        Err(_) => {
            let _ = file.close().await;
            return Err(Unusable::Invalid);
        }
    };
    let scan = scan_entries(
        &bytes[SEGMENT_HEADER_BYTES as usize..],
        SEGMENT_HEADER_BYTES,
    );
    Ok(FoundSegment {
        header,
        file: Rc::new(file),
        scan,
    })
}

/// Opens an existing segment read-only and decodes its header (the index file says
/// what it holds, so nothing else is read).
pub(crate) async fn open_segment(path: &Path) -> Result<(Rc<DmaFile>, SegmentHeader), Unusable> {
    let file = DmaFile::open(path)
        .await
        .map_err(|e| Unusable::Io(e.into()))?;
    let head = file
        .read_at_aligned(0, SEGMENT_HEADER_BYTES as usize)
        .await
        .map_err(|e| Unusable::Io(e.into()));
    let header = head.and_then(|b| decode_segment_header(&b).map_err(|_| Unusable::Invalid));
    match header {
        Ok(h) => Ok((Rc::new(file), h)),
        Err(e) => {
            let _ = file.close().await;
            Err(e)
        }
    }
}

pub(crate) fn with_path(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("hybrid cache: {what} {}: {e}", path.display()),
    )
}
