//! Reads of the local file being uploaded, always off the tokio workers.
//!
//! The file is opened once and shared by the part readers; each read is a positioned
//! read (`pread`) in `spawn_blocking`, so parts can be read in any order and at once.
//! Every read returns the CRC32 of its bytes; the caller combines them in file order.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::UploadError;

/// An open, immutable local file of known size.
#[derive(Clone, Debug)]
pub(crate) struct SourceFile {
    path: Arc<PathBuf>,
    file: Arc<File>,
}

impl SourceFile {
    /// Opens `path` and checks it is exactly `expected_size` bytes.
    pub(crate) async fn open(path: &Path, expected_size: u64) -> Result<SourceFile, UploadError> {
        let path = Arc::new(path.to_path_buf());
        let p = path.clone();
        let file = blocking(move || File::open(p.as_path()))
            .await?
            .map_err(|e| UploadError::local(path.as_path(), e))?;
        let src = SourceFile {
            path,
            file: Arc::new(file),
        };
        src.check_size(expected_size).await?;
        Ok(src)
    }

    /// Fails unless the file is still exactly `expected_size` bytes.
    pub(crate) async fn check_size(&self, expected_size: u64) -> Result<(), UploadError> {
        let file = self.file.clone();
        let len = blocking(move || file.metadata().map(|m| m.len())).await?;
        let len = len.map_err(|e| self.error(e))?;
        if len != expected_size {
            return Err(self.error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file is {len} bytes but was announced as {expected_size}: \
                     it changed after it was written"
                ),
            )));
        }
        Ok(())
    }

    /// Reads exactly `range` and returns the bytes with their CRC32.
    pub(crate) async fn read(
        &self,
        range: Range<u64>,
    ) -> Result<(Bytes, crc32fast::Hasher), UploadError> {
        let file = self.file.clone();
        let len = usize::try_from(range.end - range.start).map_err(|_| {
            self.error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {range:?} does not fit in memory"),
            ))
        })?;
        let out = blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, range.start)?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&buf);
            Ok::<_, io::Error>((Bytes::from(buf), crc))
        })
        .await?;
        out.map_err(|e| self.error(e))
    }

    fn error(&self, source: io::Error) -> UploadError {
        UploadError::local(self.path.as_path(), source)
    }
}

/// Runs blocking file I/O on tokio's blocking pool. A panic there is a bug and is
/// passed on; the pool refusing the job means the runtime is stopping.
async fn blocking<T, F>(f: F) -> Result<T, UploadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(UploadError::Cancelled),
    }
}
