//! Keeping the shard's local SSTs within its share of the local disk budget, and the
//! block cache's adaptive mode.
//!
//! The decision is the pure policy [`choose_drops`]; this file gathers its input
//! (every live or obsolete file with a local copy), carries the decision out — the
//! reader switches to the object, the local file is unlinked off the shard thread —
//! and runs it from a background task when uploads finish and once a second.
//!
//! First, with `CacheMode::Auto`, it feeds the cache's switch the budget and the live
//! SST bytes; the mode in force sets the budget local copies must fit
//! ([`cache_mode::local_file_budget`]): the shard's share in whole-file mode, nothing
//! in hybrid mode (uploaded files keep their local copies only through the warm
//! window; the SSD tier keeps their hot blocks).

use std::rc::Rc;
use std::time::Duration;

use super::Shard;
use crate::notify::Notify;
use crate::policy::cache_mode;
use crate::policy::local_copies::{choose_drops, LocalCopy};
use crate::version::{FileMeta, UploadState};

/// How often the budget is checked when nothing else wakes the task.
const BUDGET_RECHECK: Duration = Duration::from_secs(1);

/// The local-copy task's state.
#[derive(Default)]
pub(crate) struct LocalCopies {
    /// Wakes the task (an upload finished).
    pub(crate) wake: Notify,
}

impl Shard {
    /// The local-copy task: enforces the local disk budget when uploads finish and
    /// once a second, until close.
    pub(crate) async fn local_copies_loop(self: Rc<Self>) {
        let ssd_bytes = cache_mode::ssd_bytes_per_shard(&self.opts);
        let budget = cache_mode::budget_per_shard(&self.opts);
        let adapts = cache_mode::adapts(self.opts.cache_mode, ssd_bytes, budget);
        let mode = self.reads.cache.mode();
        if self.remote.is_none()
            || (!adapts && cache_mode::local_file_budget(mode, budget).is_none())
        {
            return;
        }
        loop {
            let seen = self.local_copies.wake.generation();
            if self.health.closing.get() {
                return;
            }
            self.enforce_local_budget().await;
            self.local_copies
                .wake
                .changed_or_after(seen, BUDGET_RECHECK)
                .await;
        }
    }

    /// Drops local copies of the oldest uploaded files past their warm window until
    /// the shard's local SSTs fit its share of `local_disk_budget_bytes`.
    pub(crate) async fn enforce_local_budget(&self) {
        if self.read_only {
            return;
        }
        let Some(budget) = self.adapt_cache_mode() else {
            return;
        };
        let files: Vec<Rc<FileMeta>> = {
            let current = self.versions.current();
            let obsolete = self.versions.obsolete_files();
            current
                .levels
                .iter()
                .flatten()
                .chain(obsolete.iter())
                .filter(|f| f.file.is_local())
                .cloned()
                .collect()
        };
        let copies: Vec<LocalCopy> = files
            .iter()
            .map(|f| LocalCopy {
                id: f.desc.id,
                size_bytes: f.desc.size_bytes,
                uploaded_at: match f.upload.get() {
                    UploadState::Uploaded(at) => Some(at),
                    UploadState::LocalOnly | UploadState::Pending => None,
                },
            })
            .collect();
        let drops = choose_drops(
            &copies,
            budget,
            self.opts.warm_window,
            self.opts.clock.now(),
        );
        for id in drops {
            let Some(f) = files.iter().find(|f| f.desc.id == id) else {
                continue;
            };
            if !f.file.drop_local() {
                continue;
            }
            self.counters.borrow_mut().local_drops += 1;
            let path = self.sst_path(id);
            if let Err(e) = super::remove_file(&path).await {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a dropped local copy");
            }
            if let Some(hook) = &self.opts.new_file_hook {
                hook.on_local_copy_dropped(self.id, id);
            }
        }
    }

    /// Feeds the cache's adaptive switch (`CacheMode::Auto` with an SSD tier and a
    /// budget) and returns the budget local copies must fit in the mode in force
    /// (`None`: no limit).
    fn adapt_cache_mode(&self) -> Option<u64> {
        let budget = cache_mode::budget_per_shard(&self.opts);
        let ssd_bytes = cache_mode::ssd_bytes_per_shard(&self.opts);
        let cache = &self.reads.cache;
        let mode = match budget {
            Some(b) if cache_mode::adapts(self.opts.cache_mode, ssd_bytes, budget) => {
                let version = self.versions.current();
                let live: u64 = (0..version.levels.len())
                    .map(|l| version.level_bytes(l))
                    .sum();
                let before = cache.mode();
                let now = cache.update_mode(b, live);
                if now != before {
                    tracing::info!(shard = self.id, live_sst_bytes = live, budget_bytes = b, mode = ?now, "block cache switched mode");
                }
                now
            }
            _ => cache.mode(),
        };
        cache_mode::local_file_budget(mode, budget)
    }
}
