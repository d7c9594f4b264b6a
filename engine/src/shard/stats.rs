//! What a shard reports about itself: [`ShardStats`] and its live files.

use super::Shard;
use crate::stats::{LevelStats, LiveFile, ShardStats};

impl Shard {
    /// Every live SST, level by level.
    pub(crate) fn live_files(&self) -> Vec<LiveFile> {
        let version = self.versions.current();
        let mut out = Vec::new();
        for (level, files) in version.levels.iter().enumerate() {
            for f in files {
                out.push(LiveFile {
                    shard: self.id,
                    level: level as u32,
                    id: f.desc.id,
                    size_bytes: f.desc.size_bytes,
                    smallest: f.desc.smallest.clone(),
                    largest: f.desc.largest.clone(),
                    entries: f.desc.entries,
                    deletions: f.desc.deletions,
                    seqnos: (f.desc.min_seqno, f.desc.max_seqno),
                    local: f.file.is_local(),
                    uploaded: f.is_uploaded(),
                    object_key: crate::files::object_key(f.desc.object),
                    home: f.desc.home.clone(),
                    metadata_bytes: f.desc.meta_bytes,
                });
            }
        }
        out
    }

    /// A snapshot of the shard's state and counters.
    pub(crate) fn stats(&self) -> ShardStats {
        let version = self.versions.current();
        let m = self.mem.borrow();
        ShardStats {
            shard: self.id,
            key_groups: self.key_groups,
            memtable_bytes: m.active.approximate_bytes(),
            immutable_memtables: m.frozen.len(),
            last_seqno: m.last_seqno,
            open_cursors: self.open_cursors(),
            levels: version
                .levels
                .iter()
                .enumerate()
                .map(|(i, files)| LevelStats {
                    files: files.len(),
                    bytes: version.level_bytes(i),
                })
                .collect(),
            counters: *self.counters.borrow(),
            cache: self.reads.cache.memory_stats(),
            block_cache: self.reads.cache.hybrid_stats(),
            poisoned: self.health.poisoned.borrow().clone(),
            tier: self.tier_stats(),
            manifest: self.versions.stats(),
            clipped_files: version.clipped_files(),
        }
    }
}
