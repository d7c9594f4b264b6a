//! Why an upload failed, and whether uploading the file again may help.

use std::io;
use std::path::PathBuf;

use terrace_tiering::store::StoreError;

/// An upload that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The local file could not be read, or is not the size the job announced (it
    /// changed after it was written, which an immutable SST never does).
    #[error("reading local file {}: {source}", path.display())]
    Local {
        /// The local file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The object store refused a request (after the store's own retries).
    #[error("upload failed: {0}")]
    Store(#[from] StoreError),
    /// Read-back verification found the stored object differs from the local file.
    #[error("verification of uploaded object {key:?} failed: {detail}")]
    Mismatch {
        /// The object key.
        key: String,
        /// What differed.
        detail: String,
    },
    /// The uploader was closed or the I/O runtime stopped before the upload finished.
    #[error("upload cancelled: the uploader closed or the I/O runtime stopped")]
    Cancelled,
}

impl UploadError {
    /// Whether uploading the same file again may succeed.
    ///
    /// Store errors follow the store's kind. A verification mismatch is retryable: the
    /// local file is intact (its size was checked), so a new upload overwrites the bad
    /// object with the right bytes; the caller bounds how often it tries. Local errors
    /// and cancellation are not: the file itself is unreadable or the engine is
    /// stopping.
    pub fn is_retryable(&self) -> bool {
        match self {
            UploadError::Store(e) => e.is_retryable(),
            UploadError::Mismatch { .. } => true,
            UploadError::Local { .. } | UploadError::Cancelled => false,
        }
    }

    pub(crate) fn local(path: impl Into<PathBuf>, source: io::Error) -> UploadError {
        UploadError::Local {
            path: path.into(),
            source,
        }
    }
}
