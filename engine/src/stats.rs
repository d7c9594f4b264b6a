//! Counters and the statistics a database reports.

use std::fmt;

use terrace_tiering::store::instrument::StoreStats;
use terrace_tiering::{CacheStats, RemoteReadStats};
use terrace_uploader::UploadStats;

pub use terrace_tiering::hybrid::{KindCounters, ReclaimStats, TierStats as CacheTierStats};
pub use terrace_tiering::{BlockKind, CacheMode as DiskMode, HybridStats};

/// Per-shard event counters (kept on the shard thread, no atomics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Puts applied.
    pub puts: u64,
    /// Deletes applied.
    pub deletes: u64,
    /// Merge operands written (`merge`).
    pub merges: u64,
    /// Expired values of TTL tables that compactions dropped (or turned into
    /// tombstones above the bottom level).
    pub ttl_dropped: u64,
    /// Keys read by get and multi_get.
    pub gets: u64,
    /// Scan cursors opened (one per shard a scan or iterator visits).
    pub scans: u64,
    /// Key-group seeks made by opening scan cursors: one per key group with data in
    /// the range, plus one per run of empty groups (a prefix scan within one key
    /// group costs one).
    pub scan_seeks: u64,
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
    /// Wall time during which at least one writer of the shard was stalled, in
    /// microseconds (concurrent stalled writers count once; summed over shards in
    /// totals).
    pub stall_micros: u64,
    /// Files uploaded to the object store.
    pub uploads: u64,
    /// Their bytes.
    pub upload_bytes: u64,
    /// Upload attempts that failed (and were retried).
    pub upload_failures: u64,
    /// Local copies dropped to stay within the local disk budget.
    pub local_drops: u64,
    /// Flushes or compactions that waited for uploads to catch up.
    pub upload_waits: u64,
    /// Merges whose outputs a checkpoint did not wait for: it named their inputs
    /// (already in the store) instead.
    pub checkpoint_merges_bypassed: u64,
    /// Frozen memtables a checkpoint did not write into its snapshot because their
    /// flush was already writing: it named their L0 files instead.
    pub checkpoint_flushes_awaited: u64,
    /// Time compactions spent paused while checkpoints wrote their snapshots and
    /// waited for their files (`Options::checkpoint_compaction_pause`).
    pub compaction_checkpoint_pause_micros: u64,
    /// Requests from other threads the request loop took while polling its channel
    /// (`Options::request_spin_us`), without a pass of the executor.
    pub requests_spun: u64,
}

/// Where a shard's live files are and what its uploads and remote reads are doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Live files with a local copy, and their bytes.
    pub local_files: u64,
    /// Bytes of live files with a local copy.
    pub local_bytes: u64,
    /// Live files only in the object store.
    pub remote_only_files: u64,
    /// Their bytes.
    pub remote_only_bytes: u64,
    /// Files queued or uploading (the upload queue depth).
    pub pending_uploads: u64,
    /// Their bytes.
    pub pending_upload_bytes: u64,
    /// Remote block reads.
    pub remote_reads: RemoteReadStats,
    /// Files downloaded by the warmer (after a restore), and their bytes.
    pub warmed_files: u64,
    /// Bytes of those files.
    pub warmed_bytes: u64,
    /// Files still queued for warming.
    pub warm_queue: u64,
}

/// One live SST of a shard, as [`Db::live_files`](crate::Db::live_files) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFile {
    /// Shard holding the file.
    pub shard: u32,
    /// LSM level (0 = L0).
    pub level: u32,
    /// File id (also its name: `{id:016x}.sst`).
    pub id: u64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Smallest internal key (`[kg][table][user key][trailer]`, see [`crate::key`]).
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Entries, tombstones included.
    pub entries: u64,
    /// Tombstones.
    pub deletions: u64,
    /// Lowest and highest seqno in the file.
    pub seqnos: (u64, u64),
    /// Whether a local copy exists.
    pub local: bool,
    /// Whether the object store holds the file.
    pub uploaded: bool,
    /// Its object's key in the store (relative to the store's root).
    pub object_key: String,
    /// The job prefix holding the object, relative to the job root (the parent of
    /// the database's own prefix); empty for the database's own prefix. A
    /// rescaled database reads its sources' files under their prefixes.
    pub home: String,
    /// Bytes at the file's end after its data blocks (filter, index, properties,
    /// footer), as recorded when it was written: what an open from the store
    /// reads. 0 for a file described before manifest format 5.
    pub metadata_bytes: u64,
}

/// The manifest log of a shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManifestStats {
    /// Edits appended (each synced).
    pub appends: u64,
    /// Times the log was replaced by a fresh manifest holding a snapshot.
    pub rolls: u64,
    /// Directory fsyncs made before logging new files.
    pub dir_syncs: u64,
    /// Bytes in the current log.
    pub log_bytes: u64,
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
    /// Iterators (scan cursors) open on the shard.
    pub open_cursors: usize,
    /// Per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// Event counters.
    pub counters: Counters,
    /// Memory-tier block cache counters (with the hybrid cache, a miss may still be
    /// served by the SSD tier; see `block_cache`).
    pub cache: CacheStats,
    /// The hybrid block cache: per tier and block kind, mode, segment reclaim work
    /// (`None` for a read-only open, whose cache is memory only).
    pub block_cache: Option<HybridStats>,
    /// Why the shard stopped taking writes, if it did.
    pub poisoned: Option<String>,
    /// Local and remote files, uploads, remote reads.
    pub tier: TierStats,
    /// The manifest log.
    pub manifest: ManifestStats,
    /// File references with a key-group clip range: files of a rescaled shard that
    /// still hold other shards' keys. Compaction trims them in the background; 0
    /// once every trim is done.
    pub clipped_files: usize,
}

/// The hybrid block caches of every shard, added up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// Shards whose cache is in whole-file mode (SSD tier idle).
    pub whole_file_shards: u32,
    /// Shards whose cache is in hybrid mode.
    pub hybrid_shards: u32,
    /// Every counter summed over shards (`mode` is the first shard's).
    pub totals: HybridStats,
}

impl BlockCacheStats {
    /// The mode every shard is in, or `None` when they differ.
    pub fn mode(&self) -> Option<DiskMode> {
        match (self.whole_file_shards, self.hybrid_shards) {
            (_, 0) => Some(DiskMode::WholeFile),
            (0, _) => Some(DiskMode::Hybrid),
            _ => None,
        }
    }

    /// Fractions of block lookups: served by memory, served by the SSD tier, joined a
    /// read or load already in flight for the same block, and loaded from the file
    /// (local copy or object store).
    pub fn hit_ratios(&self) -> (f64, f64, f64, f64) {
        let m = self.totals.memory.total();
        let s = self.totals.ssd.total();
        let lookups = m.hits + m.misses;
        if lookups == 0 {
            return (0.0, 0.0, 0.0, 0.0);
        }
        let l = lookups as f64;
        let loads = self.totals.loads.min(lookups);
        let joined = lookups.saturating_sub(m.hits + s.hits + loads);
        (
            m.hits as f64 / l,
            s.hits as f64 / l,
            joined as f64 / l,
            loads as f64 / l,
        )
    }
}

impl BlockCacheStats {
    /// Mode, hit ratios per tier, and per-tier, per-kind counters, on a few lines.
    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        let mode = match self.mode() {
            Some(DiskMode::WholeFile) => "whole-file".to_string(),
            Some(DiskMode::Hybrid) => "hybrid".to_string(),
            None => format!(
                "{} whole-file / {} hybrid shards",
                self.whole_file_shards, self.hybrid_shards
            ),
        };
        let (m, s, j, l) = self.hit_ratios();
        let mut out = format!(
            "block cache: mode {mode} ({} switches); lookups: memory {:.1}% ssd {:.1}% joined {:.1}% loaded {:.1}% ({} loads, {} coalesced)",
            t.mode_switches,
            m * 100.0,
            s * 100.0,
            j * 100.0,
            l * 100.0,
            t.loads,
            t.coalesced
        );
        for (tier, stats, used, cap) in [
            (
                "memory",
                &t.memory,
                t.memory_used_bytes,
                t.memory_capacity_bytes,
            ),
            ("ssd", &t.ssd, t.ssd_used_bytes, t.ssd_capacity_bytes),
        ] {
            out.push_str(&format!(
                "\n  {tier}: {:.1} of {:.1} MiB;",
                mib(used),
                mib(cap)
            ));
            for kind in [BlockKind::Data, BlockKind::Index, BlockKind::Filter] {
                let k = stats.kind(kind);
                if k.hits + k.misses + k.admissions + k.evictions == 0 {
                    continue;
                }
                out.push_str(&format!(
                    " {kind:?} hits {} misses {} ({:.1} MiB hit) admitted {} ({:.1} MiB) evicted {} resident {};",
                    k.hits,
                    k.misses,
                    mib(k.hit_bytes),
                    k.admissions,
                    mib(k.admitted_bytes),
                    k.evictions,
                    k.resident_blocks
                ));
            }
        }
        let r = &t.reclaim;
        out.push_str(&format!(
            "\n  segments {} ({:.1} MiB live), {} writes ({:.1} MiB); reclaim: {} moved ({} blocks, {:.1} MiB), {} dropped ({} blocks); demotions dropped {}; corruptions {}, read errors {}, write errors {}; not admitted {}, invalidated {}, stale skipped {}",
            t.segments,
            mib(t.ssd_live_bytes),
            t.segment_writes,
            mib(t.segment_write_bytes),
            r.segments_moved,
            r.blocks_moved,
            mib(r.bytes_moved),
            r.segments_dropped,
            r.blocks_dropped,
            t.demotions_dropped,
            t.corruptions,
            t.read_errors,
            t.write_errors,
            t.not_admitted,
            t.invalidated_blocks,
            t.stale_entries_skipped
        ));
        let f = &t.s3fifo;
        out.push_str(&format!(
            "\n  eviction {:?}: small queue admitted {}, to main {}, left unwritten {}, to a cold ssd {}; ghost hits {} ({} keys); ssd reinsertions {}",
            t.eviction,
            f.small_admissions,
            f.small_to_main,
            f.small_evictions,
            f.small_to_cold_ssd,
            f.ghost_hits,
            f.ghost_entries,
            f.ssd_reinsertions
        ));
        out
    }
}

/// Statistics of every shard.
#[derive(Clone, Debug, Default)]
pub struct DbStats {
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardStats>,
    /// Object-store requests, bytes and latencies (none without a store).
    pub object_store: Option<StoreStats>,
    /// Requests to other prefixes of the job (a rescaled database reads its
    /// sources' objects where they are), by prefix name relative to the job root.
    pub job_prefixes: Vec<(String, StoreStats)>,
    /// The uploader's queue and latencies (none without a store).
    pub uploads: Option<UploadStats>,
    /// Object-store requests retried after a retryable failure.
    pub store_retries: u64,
    /// Faults the fault-injecting layer injected (tests and benchmarks).
    pub faults_injected: u64,
    /// Times a shard executor was woken from outside because it slept with work
    /// waiting or for too long (see the engine's `shard/pulse.rs`).
    pub pulse_nudges: u64,
    /// Calls from foreign threads whose caller spun and saw the answer
    /// (`Options::caller_spin_us`).
    pub caller_spins_answered: u64,
    /// Spins that gave up (time out or lost the core) and parked the caller.
    pub caller_spins_missed: u64,
}

impl DbStats {
    /// Clipped file references over all shards: trims still pending after a
    /// rescale ([`ShardStats::clipped_files`]).
    pub fn clipped_files(&self) -> usize {
        self.shards.iter().map(|s| s.clipped_files).sum()
    }

    /// Counters summed over shards.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for s in &self.shards {
            let c = &s.counters;
            t.puts += c.puts;
            t.deletes += c.deletes;
            t.merges += c.merges;
            t.ttl_dropped += c.ttl_dropped;
            t.gets += c.gets;
            t.scans += c.scans;
            t.scan_seeks += c.scan_seeks;
            t.flushes += c.flushes;
            t.flush_bytes += c.flush_bytes;
            t.compactions += c.compactions;
            t.trivial_moves += c.trivial_moves;
            t.compaction_read_bytes += c.compaction_read_bytes;
            t.compaction_write_bytes += c.compaction_write_bytes;
            t.stalls += c.stalls;
            t.stall_micros += c.stall_micros;
            t.uploads += c.uploads;
            t.upload_bytes += c.upload_bytes;
            t.upload_failures += c.upload_failures;
            t.local_drops += c.local_drops;
            t.upload_waits += c.upload_waits;
            t.checkpoint_merges_bypassed += c.checkpoint_merges_bypassed;
            t.checkpoint_flushes_awaited += c.checkpoint_flushes_awaited;
            t.compaction_checkpoint_pause_micros += c.compaction_checkpoint_pause_micros;
            t.requests_spun += c.requests_spun;
        }
        t
    }

    /// Tier figures summed over shards.
    pub fn tier(&self) -> TierStats {
        let mut t = TierStats::default();
        for s in &self.shards {
            let x = &s.tier;
            t.local_files += x.local_files;
            t.local_bytes += x.local_bytes;
            t.remote_only_files += x.remote_only_files;
            t.remote_only_bytes += x.remote_only_bytes;
            t.pending_uploads += x.pending_uploads;
            t.pending_upload_bytes += x.pending_upload_bytes;
            t.remote_reads.requests += x.remote_reads.requests;
            t.remote_reads.coalesced += x.remote_reads.coalesced;
            t.remote_reads.bytes += x.remote_reads.bytes;
            t.remote_reads.errors += x.remote_reads.errors;
            t.warmed_files += x.warmed_files;
            t.warmed_bytes += x.warmed_bytes;
            t.warm_queue += x.warm_queue;
        }
        t
    }

    /// The shards' hybrid block caches added up; `None` when no shard has one.
    pub fn block_cache(&self) -> Option<BlockCacheStats> {
        let mut out: Option<BlockCacheStats> = None;
        for h in self.shards.iter().filter_map(|s| s.block_cache.as_ref()) {
            let o = match out.as_mut() {
                Some(o) => {
                    o.totals.add(h);
                    o
                }
                None => out.insert(BlockCacheStats {
                    whole_file_shards: 0,
                    hybrid_shards: 0,
                    totals: *h,
                }),
            };
            match h.mode {
                DiskMode::WholeFile => o.whole_file_shards += 1,
                DiskMode::Hybrid => o.hybrid_shards += 1,
            }
        }
        out
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
        match self.block_cache() {
            Some(c) => write!(f, "{}", c.summary_line())?,
            None => {
                let (hits, misses) = self
                    .shards
                    .iter()
                    .fold((0, 0), |(h, m), s| (h + s.cache.hits, m + s.cache.misses));
                write!(f, "block cache: {hits} hits, {misses} misses (block reads)")?;
            }
        }
        if let Some(up) = &self.uploads {
            let x = self.tier();
            write!(
                f,
                "\nfiles: {} local ({:.1} MiB), {} remote only ({:.1} MiB); uploads: {} files {:.1} MiB, {} failed attempts, {} flush waits; {} local copies dropped",
                x.local_files,
                mib(x.local_bytes),
                x.remote_only_files,
                mib(x.remote_only_bytes),
                t.uploads,
                mib(t.upload_bytes),
                t.upload_failures,
                t.upload_waits,
                t.local_drops
            )?;
            write!(
                f,
                "\nremote reads: {} GETs, {} coalesced, {:.1} MiB, {} errors",
                x.remote_reads.requests,
                x.remote_reads.coalesced,
                mib(x.remote_reads.bytes),
                x.remote_reads.errors
            )?;
            write!(f, "\nupload queue: {}", up.summary_line())?;
        }
        if let Some(st) = &self.object_store {
            for line in st.summary_lines() {
                write!(f, "\n{line}")?;
            }
            write!(
                f,
                "\nobject_store retries: {}, injected faults: {}",
                self.store_retries, self.faults_injected
            )?;
        }
        for s in &self.shards {
            if let Some(p) = &s.poisoned {
                write!(f, "\nshard {} stopped: {p}", s.shard)?;
            }
        }
        Ok(())
    }
}
