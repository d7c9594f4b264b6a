//! Options of a [`super::HybridCache`] and their validation. Every size is in bytes and
//! every bound the cache keeps is here: memory and SSD bytes are never exceeded.

use std::io;
use std::path::PathBuf;

use super::format::SEGMENT_HEADER_BYTES;
use super::policy::{CacheMode, Eviction, ModePolicy, SegmentClass};

/// How one shard's hybrid cache is shaped.
#[derive(Clone, Debug)]
pub struct HybridConfig {
    /// Directory of the shard's segment files (created if missing; one per shard).
    pub dir: PathBuf,
    /// Identity of the database lineage. Segments written for another owner are deleted
    /// on open. Must change whenever file ids could be reused (e.g. a restore that
    /// rewinds file numbering), because cached blocks are keyed by file id.
    pub owner_id: u64,
    /// Memory tier budget: cached blocks (as stored, plus a per-entry charge) and the
    /// demotion write buffers, which have a fixed reservation in it
    /// ([`Self::write_buffer_reservation_bytes`]).
    pub memory_bytes: u64,
    /// SSD tier budget: the sum of segment file sizes never exceeds it.
    pub ssd_bytes: u64,
    /// Size of a segment file; a multiple of 4096 (typically 8–64 MiB).
    pub segment_bytes: u64,
    /// Demotions are appended to a buffer of this size and written in one O_DIRECT
    /// write when it is full; a multiple of 4096, at most `segment_bytes`.
    pub write_buffer_bytes: u64,
    /// Full buffers queued or being written at most; past that, demoted blocks are
    /// dropped instead of written (counted in `demotions_dropped`).
    pub max_writes_in_flight: u32,
    /// Segment classes by LSM level, ascending `max_level`, each with its reclaim
    /// threshold.
    pub classes: Vec<SegmentClass>,
    /// The SSD tier evicts blocks (leaving holes) while live bytes exceed this fraction
    /// of `ssd_bytes`; the slack is what segment reclaim feeds on.
    pub ssd_fill_ratio: f64,
    /// Keep data blocks zstd-compressed in memory (decompressed on every hit) while
    /// memory is under pressure (`policy::compress_in_memory`), and on the SSD.
    pub compress_memory: bool,
    /// Share of `memory_bytes` index and filter blocks may hold before they are evicted
    /// ahead of data blocks.
    pub high_priority_ratio: f64,
    /// The adaptive switch's thresholds.
    pub mode_policy: ModePolicy,
    /// The mode the cache starts in (the engine then calls `update_mode`).
    pub initial_mode: CacheMode,
    /// The replacement policy over both media.
    pub eviction: Eviction,
    /// S3-FIFO's small queue: this share of the memory block budget
    /// ([`Self::block_memory_bytes`]). Ignored under LRU.
    pub small_queue_ratio: f64,
}

/// Bookkeeping charged per memory entry on top of its bytes.
pub const MEMORY_ENTRY_OVERHEAD_BYTES: u64 = 96;

impl HybridConfig {
    /// A configuration with the given budgets and the default shape: 32 MiB segments,
    /// 1 MiB write buffers, 4 writes in flight, classes L0 (reclaim below 15% live),
    /// L1–L2 (30%) and L3+ (50%), SSD filled to 85%, compressed data blocks, S3-FIFO
    /// with a small queue of 10% of the memory block budget.
    pub fn new(dir: PathBuf, memory_bytes: u64, ssd_bytes: u64) -> HybridConfig {
        HybridConfig {
            dir,
            owner_id: 0,
            memory_bytes,
            ssd_bytes,
            segment_bytes: 32 << 20,
            write_buffer_bytes: 1 << 20,
            max_writes_in_flight: 4,
            classes: vec![
                SegmentClass {
                    max_level: 0,
                    reclaim_below_live_ratio: 0.15,
                },
                SegmentClass {
                    max_level: 2,
                    reclaim_below_live_ratio: 0.3,
                },
                SegmentClass {
                    max_level: u8::MAX,
                    reclaim_below_live_ratio: 0.5,
                },
            ],
            ssd_fill_ratio: 0.85,
            compress_memory: true,
            high_priority_ratio: 0.5,
            mode_policy: ModePolicy::default(),
            initial_mode: CacheMode::Hybrid,
            eviction: Eviction::default(),
            small_queue_ratio: 0.1,
        }
    }

    /// Segment files the SSD budget allows.
    pub fn segment_slots(&self) -> u64 {
        self.ssd_bytes / self.segment_bytes.max(1)
    }

    /// Memory the write buffers may take at most: one filling buffer per class plus
    /// the full ones in flight.
    pub fn write_buffer_reservation_bytes(&self) -> u64 {
        (self.classes.len() as u64 + u64::from(self.max_writes_in_flight)) * self.write_buffer_bytes
    }

    /// Memory for cached blocks: `memory_bytes` less the write buffer reservation
    /// (when there is an SSD tier to write to).
    pub fn block_memory_bytes(&self) -> u64 {
        if self.ssd_bytes == 0 {
            self.memory_bytes
        } else {
            self.memory_bytes
                .saturating_sub(self.write_buffer_reservation_bytes())
        }
    }

    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("hybrid cache: {what}"),
            ))
        };
        if self.segment_bytes < 4 * SEGMENT_HEADER_BYTES || !self.segment_bytes.is_multiple_of(4096)
        {
            return bad("segment_bytes must be a multiple of 4096 and at least 16 KiB");
        }
        if self.write_buffer_bytes == 0
            || !self.write_buffer_bytes.is_multiple_of(4096)
            || self.write_buffer_bytes > self.segment_bytes
        {
            return bad(
                "write_buffer_bytes must be a positive multiple of 4096, at most segment_bytes",
            );
        }
        if self.max_writes_in_flight == 0 {
            return bad("max_writes_in_flight must be positive");
        }
        if self.classes.is_empty() || self.classes.len() > 16 {
            return bad("between 1 and 16 segment classes");
        }
        if self
            .classes
            .windows(2)
            .any(|w| w[0].max_level >= w[1].max_level)
        {
            return bad("segment classes must have ascending max_level");
        }
        if self
            .classes
            .iter()
            .any(|c| !(0.0..1.0).contains(&c.reclaim_below_live_ratio))
        {
            return bad("reclaim_below_live_ratio must be in [0, 1)");
        }
        if !(0.1..=1.0).contains(&self.ssd_fill_ratio) {
            return bad("ssd_fill_ratio must be in [0.1, 1]");
        }
        if !(0.0..=1.0).contains(&self.high_priority_ratio) {
            return bad("high_priority_ratio must be in [0, 1]");
        }
        if !(0.01..=0.9).contains(&self.small_queue_ratio) {
            return bad("small_queue_ratio must be in [0.01, 0.9]");
        }
        let p = self.mode_policy;
        if !(p.leave_hybrid_ratio < p.enter_hybrid_ratio && p.leave_hybrid_ratio >= 0.0) {
            return bad("mode_policy: leave_hybrid_ratio must be below enter_hybrid_ratio");
        }
        if self.ssd_bytes > 0 && self.segment_slots() < self.classes.len() as u64 + 1 {
            return bad("ssd_bytes must hold at least one segment per class plus one (or be 0)");
        }
        if self.ssd_bytes > 0 && self.memory_bytes == 0 {
            return bad("an SSD tier needs memory_bytes: it is fed by blocks leaving memory");
        }
        if self.ssd_bytes > 0 && self.memory_bytes < 2 * self.write_buffer_reservation_bytes() {
            return bad(
                "memory_bytes must be at least twice the write buffers ((classes + max_writes_in_flight) * write_buffer_bytes)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HybridConfig {
        let mut c = HybridConfig::new(PathBuf::from("/nonexistent"), 64 << 20, 1 << 30);
        c.segment_bytes = 8 << 20;
        c
    }

    #[test]
    fn defaults_validate_and_bad_options_are_named() {
        assert!(cfg().validate().is_ok());
        assert_eq!(cfg().segment_slots(), 128);
        assert_eq!(cfg().block_memory_bytes(), (64 << 20) - 7 * (1 << 20));
        let check = |f: &dyn Fn(&mut HybridConfig), what: &str| {
            let mut c = cfg();
            f(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        };
        check(&|c| c.segment_bytes = 10_000, "segment_bytes");
        check(&|c| c.write_buffer_bytes = 3000, "write_buffer_bytes");
        check(&|c| c.max_writes_in_flight = 0, "max_writes_in_flight");
        check(&|c| c.classes.clear(), "segment classes");
        check(&|c| c.classes[1].max_level = 0, "ascending");
        check(
            &|c| c.classes[0].reclaim_below_live_ratio = 1.5,
            "reclaim_below_live_ratio",
        );
        check(&|c| c.ssd_fill_ratio = 0.0, "ssd_fill_ratio");
        check(&|c| c.small_queue_ratio = 0.0, "small_queue_ratio");
        check(&|c| c.small_queue_ratio = f64::NAN, "small_queue_ratio");
        check(&|c| c.mode_policy.leave_hybrid_ratio = 0.95, "mode_policy");
        check(
            &|c| c.ssd_bytes = 3 * c.segment_bytes,
            "at least one segment per class",
        );
        check(&|c| c.memory_bytes = 0, "needs memory_bytes");
        check(&|c| c.memory_bytes = 8 << 20, "twice the write buffers");
        // Memory only (no SSD tier) needs no write buffers.
        let mut c = cfg();
        c.ssd_bytes = 0;
        c.memory_bytes = 1 << 20;
        assert!(c.validate().is_ok());
        assert_eq!(c.block_memory_bytes(), 1 << 20);
    }
}
