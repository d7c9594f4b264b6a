//! Counters and the statistics a database reports.

use std::fmt;

use terrace_tiering::CacheStats;

/// Per-shard event counters (kept on the shard thread, no atomics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Puts applied.
    pub puts: u64,
    /// Deletes applied.
    pub deletes: u64,
    /// Keys read by get and multi_get.
    pub gets: u64,
    /// Scans (per key-group range visited).
    pub scans: u64,
    /// Memtables flushed.
    pub flushes: u64,
    /// Bytes of SSTs written by flushes.
    pub flush_bytes: u64,
    /// Merging compactions.
    pub compactions: u64,
    /// Files moved down a level without rewriting.
    pub trivial_moves: u64,
    /// Bytes of SSTs read by compactions.
    pub compaction_read_bytes: u64,
    /// Bytes of SSTs written by compactions.
    pub compaction_write_bytes: u64,
    /// Writes that had to wait for flush or compaction.
    pub stalls: u64,
    /// Time writers spent stalled, in microseconds.
    pub stall_micros: u64,
}

/// Files and bytes in one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of SSTs.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
}

/// A snapshot of one shard's state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Shard id.
    pub shard: u32,
    /// First and last key group owned.
    pub key_groups: (u16, u16),
    /// Bytes in the active memtable.
    pub memtable_bytes: usize,
    /// Frozen memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Highest seqno assigned.
    pub last_seqno: u64,
    /// Per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// Event counters.
    pub counters: Counters,
    /// Block cache counters (misses are block reads from disk).
    pub cache: CacheStats,
    /// Why the shard stopped taking writes, if it did.
    pub poisoned: Option<String>,
}

/// Statistics of every shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardStats>,
}

impl DbStats {
    /// Counters summed over shards.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for s in &self.shards {
            let c = &s.counters;
            t.puts += c.puts;
            t.deletes += c.deletes;
            t.gets += c.gets;
            t.scans += c.scans;
            t.flushes += c.flushes;
            t.flush_bytes += c.flush_bytes;
            t.compactions += c.compactions;
            t.trivial_moves += c.trivial_moves;
            t.compaction_read_bytes += c.compaction_read_bytes;
            t.compaction_write_bytes += c.compaction_write_bytes;
            t.stalls += c.stalls;
            t.stall_micros += c.stall_micros;
        }
        t
    }

    /// Files and bytes per level summed over shards.
    pub fn levels(&self) -> Vec<LevelStats> {
        let n = self
            .shards
            .iter()
            .map(|s| s.levels.len())
            .max()
            .unwrap_or(0);
        let mut out = vec![LevelStats::default(); n];
        for s in &self.shards {
            for (i, l) in s.levels.iter().enumerate() {
                out[i].files += l.files;
                out[i].bytes += l.bytes;
            }
        }
        out
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for DbStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.total();
        let levels = self.levels();
        write!(f, "levels:")?;
        for (i, l) in levels.iter().enumerate().filter(|(_, l)| l.files > 0) {
            write!(f, " L{i} {} files {:.1} MiB;", l.files, mib(l.bytes))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "flushes: {} ({:.1} MiB)  compactions: {} + {} moves (read {:.1} MiB, wrote {:.1} MiB)  stalls: {} ({:.3} s)",
            t.flushes,
            mib(t.flush_bytes),
            t.compactions,
            t.trivial_moves,
            mib(t.compaction_read_bytes),
            mib(t.compaction_write_bytes),
            t.stalls,
            t.stall_micros as f64 / 1e6
        )?;
        let (hits, misses) = self
            .shards
            .iter()
            .fold((0, 0), |(h, m), s| (h + s.cache.hits, m + s.cache.misses));
        write!(f, "block cache: {hits} hits, {misses} misses (block reads)")?;
        for s in &self.shards {
            if let Some(p) = &s.poisoned {
                write!(f, "\nshard {} stopped: {p}", s.shard)?;
            }
        }
        Ok(())
    }
}
