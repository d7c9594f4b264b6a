//! Local files read with O_DIRECT through glommio's io_uring reactor.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use crate::{BlockSource, Bytes, LocalBoxFuture};

/// An SST (or any immutable file) on the local disk, opened for direct reads.
pub struct LocalFile {
    file: DmaFile,
    size: u64,
    path: PathBuf,
}

impl LocalFile {
    /// Opens `path` read-only for direct I/O.
    ///
    /// glommio 0.9's `DmaFile::open` calls `statfs(path)` after opening and panics
    /// if the path vanished in between (another process unlinked the file: a
    /// read-only inspector racing the writer's compactions). So the inode is first
    /// held by a plain descriptor and opened through `/proc/self/fd/N`, which names
    /// it whatever happens to the path; a file already gone is a clean NotFound.
    pub async fn open(path: &Path) -> io::Result<LocalFile> {
        let (file, size) = open_dma(path).await?;
        Ok(LocalFile {
            file,
            size,
            path: path.to_path_buf(),
        })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file descriptor.
    pub async fn close(self) -> io::Result<()> {
        self.file.close().await.map_err(io::Error::from)
    }
}

impl BlockSource for LocalFile {
    fn read_at(&self, offset: u64, len: usize) -> LocalBoxFuture<'_, io::Result<Bytes>> {
        Box::pin(async move {
            let end = offset.checked_add(len as u64);
            if end.is_none_or(|e| e > self.size) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {len} bytes at {offset} past the end ({}) of {}",
                        self.size,
                        self.path.display()
                    ),
                ));
            }
            let buf = self
                .file
                .read_at(offset, len)
                .await
                .map_err(io::Error::from)?;
            if buf.len() != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "short read of {} bytes (wanted {len}) at {offset} in {}",
                        buf.len(),
                        self.path.display()
                    ),
                ));
            }
            Ok(Rc::from(&buf[..]))
        })
    }

    fn size(&self) -> u64 {
        self.size
    }
}

/// Works around glommio 0.9's IOPOLL probe.
///
/// glommio decides whether a block device supports polled I/O by reading offset 0 of
/// the first DMA file the thread opens on it, and caches the answer. If that file is
/// empty the probe wrongly answers "pollable" and every later read fails with
/// EOPNOTSUPP. Calling this once per executor, before any other DMA file is opened,
/// makes the probe see a real 4 KiB file in `dir`.
pub async fn probe_direct_io(dir: &Path) -> io::Result<()> {
    let path = dir.join(".direct-io-probe");
    std::fs::write(&path, [0u8; 4096])?;
    probe_direct_io_with(&path).await
}

/// The same probe with an existing non-empty file, for a reader that must not write
/// (a read-only open). An empty file would mislead the probe: pass a non-empty one.
pub async fn probe_direct_io_with(path: &Path) -> io::Result<()> {
    let (f, _) = open_dma(path).await?;
    let r = f.read_at_aligned(0, 4096).await.map_err(io::Error::from);
    f.close().await.map_err(io::Error::from)?;
    r?;
    Ok(())
}

/// `DmaFile::open(path)` and the file's size, safe against the path being unlinked
/// meanwhile (see [`LocalFile::open`]). The returned file's own path names a
/// descriptor closed on return: never use glommio calls that go by path (such as
/// `file_size`) on it.
async fn open_dma(path: &Path) -> io::Result<(DmaFile, u64)> {
    use std::os::fd::AsRawFd;
    let held = std::fs::File::open(path)?;
    let size = held.metadata()?.len();
    let through = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
    let file = DmaFile::open(&through).await.map_err(io::Error::from)?;
    drop(held);
    Ok((file, size))
}
