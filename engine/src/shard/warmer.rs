//! Warming a shard that opened with files only in the object store (a restore, a
//! lost disk): downloading them into the shard directory in the background, so
//! reads that went remote become local, within the local disk budget.
//!
//! The files to warm are fixed at open: live files without a local copy then. The
//! warmer takes them one at a time in `Options::warm_order` (top level first, or the
//! most remotely read first), skips files no longer live, downloads each through the
//! I/O runtime at most `Options::warm_bytes_per_sec` into a temporary file, renames
//! it into place and switches the file's reads to it. It stops when every file is
//! local or the next one would not fit the budget for whole local files (the shard's
//! share of the disk budget in whole-file mode, none in the block cache's hybrid
//! mode): it never competes with the local-copy policy, which drops copies only when
//! over that budget.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use terrace_tiering::LocalFile;

use super::Shard;
use crate::options::WarmOrder;
use crate::policy::cache_mode;
use crate::version::FileMeta;

/// Bytes per ranged GET of a download.
const DOWNLOAD_CHUNK_BYTES: u64 = 8 << 20;

/// The warmer's queue and progress.
#[derive(Default)]
pub(crate) struct Warmer {
    /// Files opened without a local copy, not yet warmed (or skipped).
    pub(crate) queue: RefCell<Vec<(u32, Rc<FileMeta>)>>,
    pub(crate) files: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
    /// No more work: everything warmed, out of budget, or warming is off.
    pub(crate) done: Cell<bool>,
}

impl Shard {
    /// The warming task (in the compaction queue: background work).
    pub(crate) async fn warm_loop(self: Rc<Self>) {
        let order = self.opts.warm_order;
        if order == WarmOrder::Off || self.remote.is_none() || self.read_only {
            self.warmer.done.set(true);
            return;
        }
        let share = cache_mode::budget_per_shard(&self.opts);
        loop {
            if self.health.closing.get() {
                return;
            }
            let Some(meta) = self.next_to_warm(order) else {
                break;
            };
            if !self.versions.is_live(meta.desc.id) || meta.file.is_local() {
                continue;
            }
            // Whole files only where the block cache's mode keeps whole files: in
            // hybrid (or memory-only) mode the budget for local copies is zero and
            // hot blocks are cached instead.
            if let Some(budget) = cache_mode::local_file_budget(self.reads.cache.mode(), share) {
                let local: u64 = self
                    .versions
                    .current()
                    .levels
                    .iter()
                    .flatten()
                    .filter(|f| f.file.is_local())
                    .map(|f| f.desc.size_bytes)
                    .sum();
                if local + meta.desc.size_bytes > budget {
                    break;
                }
            }
            if let Err(e) = self.warm(&meta).await {
                tracing::warn!(shard = self.id, file = meta.desc.id, error = %e, "could not download a file; it stays remote");
            }
        }
        self.warmer.done.set(true);
        self.warmer.queue.borrow_mut().clear();
    }

    fn next_to_warm(&self, order: WarmOrder) -> Option<Rc<FileMeta>> {
        let mut q = self.warmer.queue.borrow_mut();
        if q.is_empty() {
            return None;
        }
        let pick = match order {
            WarmOrder::Access => q
                .iter()
                .enumerate()
                .max_by_key(|(i, (level, f))| {
                    (
                        f.file.remote_gets(),
                        std::cmp::Reverse(*level),
                        std::cmp::Reverse(*i),
                    )
                })
                .map(|(i, _)| i),
            // The queue is sorted by level at open.
            WarmOrder::Level | WarmOrder::Off => Some(0),
        }?;
        Some(q.remove(pick).1)
    }

    async fn warm(&self, meta: &Rc<FileMeta>) -> std::io::Result<()> {
        let path = self.sst_path(meta.desc.id);
        let tmp = path.with_extension("sst.warming");
        let downloaded = meta
            .file
            .download(&tmp, DOWNLOAD_CHUNK_BYTES, self.opts.warm_bytes_per_sec)
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = downloaded {
            let _ = super::remove_file(&tmp).await;
            return Err(e);
        }
        glommio::io::rename(&tmp, &path)
            .await
            .map_err(std::io::Error::from)?;
        let local = LocalFile::open(&path).await?;
        if !meta.file.attach_local(local) {
            let _ = super::remove_file(&path).await;
            return Err(std::io::Error::other("downloaded file has the wrong size"));
        }
        self.warmer.files.set(self.warmer.files.get() + 1);
        self.warmer
            .bytes
            .set(self.warmer.bytes.get() + meta.desc.size_bytes);
        Ok(())
    }
}
