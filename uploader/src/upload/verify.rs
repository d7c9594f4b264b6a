//! End-to-end read-back check of an uploaded object.
//!
//! An SST's footer and index live in its last bytes, so the check reads exactly those
//! back: `head` must report the local size and the last [`VERIFY_TAIL_BYTES`] must
//! equal the local file's. A multipart upload that dropped, reordered or truncated a
//! part changes the size or the tail.

use terrace_tiering::store::ObjectStore;

use super::source_file::SourceFile;
use super::UploadError;

/// How many trailing bytes verification reads back.
pub const VERIFY_TAIL_BYTES: u64 = 64 * 1024;

/// The byte range of the tail that verification compares.
pub(crate) fn tail_range(size: u64) -> std::ops::Range<u64> {
    size - size.min(VERIFY_TAIL_BYTES)..size
}

/// Checks the stored object against the local file of `size` bytes, whose tail is
/// `local_tail` (if the caller still has it) or read from `file`.
///
/// The `head` and the read of the tail go out together: the tail's range comes from
/// the local size, so neither waits for the other, and a verification costs one
/// round trip to the store instead of two. A wrong size is reported as such even
/// when the tail read failed because of it.
pub(crate) async fn verify(
    store: &dyn ObjectStore,
    key: &str,
    size: u64,
    file: &SourceFile,
    local_tail: Option<bytes::Bytes>,
) -> Result<(), UploadError> {
    let mismatch = |detail: String| UploadError::Mismatch {
        key: key.to_owned(),
        detail,
    };
    let range = tail_range(size);
    let read_tail = async {
        if range.is_empty() {
            return Ok(None);
        }
        let local = match local_tail {
            Some(tail) => tail,
            None => file.read(range.clone()).await?.0,
        };
        let stored = store.get_range(key, range.clone()).await?;
        Ok::<_, UploadError>(Some((local, stored)))
    };
    let (meta, tail) = tokio::join!(store.head(key), read_tail);
    let meta = meta?;
    if meta.size != size {
        return Err(mismatch(format!(
            "the store reports {} bytes, the local file has {size}",
            meta.size
        )));
    }
    let Some((local, stored)) = tail? else {
        return Ok(());
    };
    if stored.len() != local.len() {
        return Err(mismatch(format!(
            "a read of bytes {range:?} returned {} bytes",
            stored.len()
        )));
    }
    if let Some(at) = stored.iter().zip(local.iter()).position(|(a, b)| a != b) {
        return Err(mismatch(format!(
            "stored byte at offset {} differs from the local file",
            range.start + at as u64
        )));
    }
    Ok(())
}
