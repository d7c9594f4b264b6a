//! How a shard uses its local disk and its block cache, as pure functions of the
//! options and a snapshot of the shard: the cache's shape, the mode it starts in,
//! whether it adapts, which budget local whole files get, and the admission hint of
//! each kind of block write or read.
//!
//! Two modes are in force at any time (`terrace_tiering::CacheMode`, here `DiskMode`):
//! - `WholeFile`: local copies of SSTs are kept or dropped by age under the shard's
//!   share of `local_disk_budget_bytes` (the behaviour before the SSD tier existed);
//!   the SSD tier is empty; memory caches blocks.
//! - `Hybrid`: uploaded files lose their local copies once past the warm window, and
//!   the SSD tier of the block cache keeps their hot blocks instead.
//!
//! The setting ([`CacheMode`]) picks the mode: `File` is always whole files, `Hybrid`
//! and `Memory` (a hybrid cache without SSD tier) always hybrid, and `Auto` adapts
//! through the cache's own switch with hysteresis
//! (`terrace_tiering::hybrid::policy::choose_mode`), fed by the local-copy task with
//! the budget and the live SST bytes.

use terrace_tiering::hybrid::ModePolicy;
use terrace_tiering::AdmissionHint;
use terrace_tiering::CacheMode as DiskMode;

use crate::error::{Error, Result};
use crate::options::{CacheMode, Options};

/// Segment classes of the SSD tier (L0; L1–L2; L3 and deeper).
pub(crate) const SEGMENT_CLASSES: u64 = 3;
/// Full write buffers in flight at once per shard.
pub(crate) const MAX_WRITES_IN_FLIGHT: u32 = 4;
/// Blocks a scan admits to the cache before its misses stop being admitted.
pub(crate) const SCAN_ADMIT_BLOCKS: u32 = 8;

/// The shard's share of the SSD tier, in bytes: 0 where the setting has no SSD tier.
pub(crate) fn ssd_bytes_per_shard(opts: &Options) -> u64 {
    match opts.cache_mode {
        CacheMode::Hybrid => opts.ssd_cache_bytes / u64::from(opts.shards),
        CacheMode::Auto if opts.ssd_cache_bytes > 0 => {
            opts.ssd_cache_bytes / u64::from(opts.shards)
        }
        CacheMode::Auto => auto_ssd_bytes(opts) / u64::from(opts.shards),
        CacheMode::File | CacheMode::Memory => 0,
    }
}

/// The SSD tier `Auto` takes when `ssd_cache_bytes` is 0 and a local disk budget is
/// set: 15/16 of the budget (the rest for files not yet uploaded or still in their
/// warm window), so that by default `Auto` turns hybrid once the state outgrows the
/// disk. 0 — `Auto` stays in whole-file mode — without a budget, or where a tier
/// that size would not be a valid one (too few segments per shard, too little
/// memory for its write buffers): the caller did not ask for a tier, so none is
/// better than an error. Measured (docs/BENCHMARKS.md, issue 12): without a tier,
/// `Auto` on a disk of a tenth of the state ran at 0.60× of hybrid.
pub(crate) fn auto_ssd_bytes(opts: &Options) -> u64 {
    let Some(budget) = opts.local_disk_budget_bytes else {
        return 0;
    };
    let tier = budget - budget / 16;
    if tier_misfit(opts, tier / u64::from(opts.shards.max(1))).is_some() {
        0
    } else {
        tier
    }
}

/// Why an SSD tier of `per_shard` bytes per shard cannot work with these options:
/// the option at fault and the reason; `None` when it can.
fn tier_misfit(opts: &Options, per_shard: u64) -> Option<(&'static str, String)> {
    let min_ssd = (SEGMENT_CLASSES + 1) * opts.cache_segment_bytes;
    if per_shard < min_ssd {
        return Some((
            "ssd_cache_bytes",
            format!(
                "each shard's share ({per_shard}) must hold {} segments of cache_segment_bytes ({min_ssd} bytes)",
                SEGMENT_CLASSES + 1
            ),
        ));
    }
    let memory = opts.block_cache_bytes / u64::from(opts.shards.max(1));
    let buffers =
        (SEGMENT_CLASSES + u64::from(MAX_WRITES_IN_FLIGHT)) * opts.cache_write_buffer_bytes;
    if memory < 2 * buffers {
        return Some((
            "block_cache_bytes",
            format!(
                "each shard's share ({memory}) must be at least twice its SSD write buffers ({} x cache_write_buffer_bytes = {buffers}) when there is an SSD tier",
                SEGMENT_CLASSES + u64::from(MAX_WRITES_IN_FLIGHT)
            ),
        ));
    }
    None
}

/// Fewest segments a shard's SSD tier is cut into: reclaiming needs room to move
/// live blocks, and each segment class keeps one segment open for appends, so a tier
/// of a handful of segments strands much of its capacity (measured: 16 MiB segments
/// in a 64 MiB tier filled only half of it).
pub(crate) const MIN_SSD_SEGMENTS: u64 = 32;

/// Segment size for an SSD tier of `ssd_bytes`: the configured size, made smaller
/// when the tier would have fewer than [`MIN_SSD_SEGMENTS`] of them, never below
/// one write buffer (`write_buffer_bytes`, a multiple of 4 KiB) and always a multiple of it.
pub(crate) fn segment_bytes(configured: u64, ssd_bytes: u64, write_buffer_bytes: u64) -> u64 {
    let unit = write_buffer_bytes.max(4096);
    let fit = (ssd_bytes / MIN_SSD_SEGMENTS) / unit * unit;
    configured.min(fit.max(unit))
}

/// The shard's share of the local disk budget.
pub(crate) fn budget_per_shard(opts: &Options) -> Option<u64> {
    opts.local_disk_budget_bytes
        .map(|b| b / u64::from(opts.shards.max(1)))
}

/// Whether the mode follows the state's size (`Auto` with an SSD tier and a budget).
pub(crate) fn adapts(setting: CacheMode, ssd_bytes: u64, budget: Option<u64>) -> bool {
    setting == CacheMode::Auto && ssd_bytes > 0 && budget.is_some()
}

/// The mode a shard's cache opens in. `Auto` starts hybrid when the live SSTs are
/// above the switch's lower threshold, so a restart inside the hysteresis band keeps
/// the SSD tier it had (opening in whole-file mode empties it).
pub(crate) fn initial_mode(
    setting: CacheMode,
    ssd_bytes: u64,
    budget: Option<u64>,
    live_sst_bytes: u64,
    policy: &ModePolicy,
) -> DiskMode {
    match setting {
        CacheMode::File => DiskMode::WholeFile,
        CacheMode::Hybrid | CacheMode::Memory => DiskMode::Hybrid,
        CacheMode::Auto => match budget {
            Some(b)
                if adapts(setting, ssd_bytes, budget)
                    && live_sst_bytes as f64 > b as f64 * policy.leave_hybrid_ratio =>
            {
                DiskMode::Hybrid
            }
            _ => DiskMode::WholeFile,
        },
    }
}

/// The budget local copies of uploaded files past their warm window must fit: the
/// shard's share of the disk budget in whole-file mode (`None`: no limit), nothing in
/// hybrid mode (their hot blocks live in the SSD tier).
pub(crate) fn local_file_budget(mode: DiskMode, budget: Option<u64>) -> Option<u64> {
    match mode {
        DiskMode::WholeFile => budget,
        DiskMode::Hybrid => Some(0),
    }
}

/// The hint for a scan's `blocks_loaded`-th block (counting from 1): the first few are
/// admitted like point reads (short scans are hot reads too); after that misses are
/// served but not admitted, so a long scan does not flush the cache.
pub(crate) fn scan_hint(blocks_loaded: u32) -> AdmissionHint {
    if blocks_loaded <= SCAN_ADMIT_BLOCKS {
        AdmissionHint::Read
    } else {
        AdmissionHint::Bypass
    }
}

/// The hint for a flush output's blocks: admitted (cold, so they flow to the SSD tier)
/// only while the SSD tier is in use, where they will be read once the file's local
/// copy is dropped. In whole-file mode the file itself is local: nothing to do.
pub(crate) fn flush_output_hint(mode: DiskMode, ssd_bytes: u64) -> Option<AdmissionHint> {
    (mode == DiskMode::Hybrid && ssd_bytes > 0).then_some(AdmissionHint::WarmWrite)
}

/// The hint for a compaction output block: preloaded where the input blocks it
/// replaces were cached; other output blocks are not offered at all (saves copying
/// them).
pub(crate) fn compaction_output_hint(inputs_hot: bool) -> Option<AdmissionHint> {
    inputs_hot.then_some(AdmissionHint::Preload { inputs_hot: true })
}

/// Checks the cache options, naming the option at fault.
pub(crate) fn validate(opts: &Options) -> Result<()> {
    let bad = |option: &'static str, reason: String| Err(Error::invalid_option(option, reason));
    if opts.cache_segment_bytes < 64 << 10
        || opts.cache_segment_bytes > 1 << 30
        || !opts.cache_segment_bytes.is_multiple_of(4096)
    {
        return bad(
            "cache_segment_bytes",
            "must be a multiple of 4096 in 64 KiB..=1 GiB".into(),
        );
    }
    if opts.cache_write_buffer_bytes < 16 << 10
        || opts.cache_write_buffer_bytes > opts.cache_segment_bytes
        || !opts.cache_write_buffer_bytes.is_multiple_of(4096)
    {
        return bad(
            "cache_write_buffer_bytes",
            "must be a multiple of 4096, at least 16 KiB and at most cache_segment_bytes".into(),
        );
    }
    if opts.cache_mode == CacheMode::Hybrid && opts.ssd_cache_bytes == 0 {
        return bad(
            "ssd_cache_bytes",
            "cache_mode Hybrid needs an SSD tier (use Memory for a memory-only cache)".into(),
        );
    }
    let ssd = ssd_bytes_per_shard(opts);
    if ssd == 0 {
        return Ok(());
    }
    if let Some(budget) = opts.local_disk_budget_bytes {
        if opts.ssd_cache_bytes > budget {
            return bad(
                "ssd_cache_bytes",
                format!(
                    "{} exceeds local_disk_budget_bytes ({budget}): the SSD tier is part of the local disk budget",
                    opts.ssd_cache_bytes
                ),
            );
        }
    }
    match tier_misfit(opts, ssd) {
        Some((option, reason)) => bad(option, reason),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn small_ssd_tiers_get_smaller_segments() {
        let wb = 256 << 10;
        // Large tier: the configured size stands.
        assert_eq!(segment_bytes(16 << 20, 4 << 30, wb), 16 << 20);
        // 64 MiB tier: 32 segments of 2 MiB.
        assert_eq!(segment_bytes(16 << 20, 64 << 20, wb), 2 << 20);
        // Never below one write buffer, always a multiple of it.
        assert_eq!(segment_bytes(16 << 20, 1 << 20, wb), wb);
        let s = segment_bytes(16 << 20, 100 << 20, wb);
        assert_eq!(s % wb, 0);
        assert!(s * MIN_SSD_SEGMENTS <= 100 << 20);
        // A configured size below the fit is kept.
        assert_eq!(segment_bytes(1 << 20, 4 << 30, wb), 1 << 20);
    }

    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn settings_pick_the_starting_mode() {
        let p = ModePolicy::default();
        let b = Some(10 * GIB);
        assert_eq!(
            initial_mode(CacheMode::File, GIB, b, 100 * GIB, &p),
            DiskMode::WholeFile
        );
        assert_eq!(
            initial_mode(CacheMode::Hybrid, GIB, b, 0, &p),
            DiskMode::Hybrid
        );
        assert_eq!(
            initial_mode(CacheMode::Memory, 0, None, 0, &p),
            DiskMode::Hybrid
        );
        // Auto: whole files while the state fits, hybrid above the lower threshold.
        assert_eq!(
            initial_mode(CacheMode::Auto, GIB, b, 6 * GIB, &p),
            DiskMode::WholeFile
        );
        assert_eq!(
            initial_mode(CacheMode::Auto, GIB, b, 8 * GIB, &p),
            DiskMode::Hybrid
        );
        // Auto without an SSD tier or a budget never adapts.
        assert_eq!(
            initial_mode(CacheMode::Auto, 0, b, 100 * GIB, &p),
            DiskMode::WholeFile
        );
        assert_eq!(
            initial_mode(CacheMode::Auto, GIB, None, 100 * GIB, &p),
            DiskMode::WholeFile
        );
        assert!(adapts(CacheMode::Auto, 1, Some(1)));
        assert!(!adapts(CacheMode::Hybrid, 1, Some(1)));
    }

    #[test]
    fn hybrid_mode_keeps_no_old_whole_files() {
        assert_eq!(local_file_budget(DiskMode::WholeFile, Some(5)), Some(5));
        assert_eq!(local_file_budget(DiskMode::WholeFile, None), None);
        assert_eq!(local_file_budget(DiskMode::Hybrid, Some(5)), Some(0));
        assert_eq!(local_file_budget(DiskMode::Hybrid, None), Some(0));
    }

    #[test]
    fn long_scans_stop_admitting() {
        assert_eq!(scan_hint(1), AdmissionHint::Read);
        assert_eq!(scan_hint(SCAN_ADMIT_BLOCKS), AdmissionHint::Read);
        assert_eq!(scan_hint(SCAN_ADMIT_BLOCKS + 1), AdmissionHint::Bypass);
    }

    #[test]
    fn outputs_are_offered_only_where_they_will_be_read() {
        assert_eq!(
            flush_output_hint(DiskMode::Hybrid, 1),
            Some(AdmissionHint::WarmWrite)
        );
        assert_eq!(flush_output_hint(DiskMode::Hybrid, 0), None);
        assert_eq!(flush_output_hint(DiskMode::WholeFile, 1), None);
        assert_eq!(
            compaction_output_hint(true),
            Some(AdmissionHint::Preload { inputs_hot: true })
        );
        assert_eq!(compaction_output_hint(false), None);
    }

    #[test]
    fn cache_options_are_checked_by_name() {
        let base = || {
            let mut o = Options::new("/nonexistent");
            o.shards = 2;
            o.cache_mode = CacheMode::Hybrid;
            o.ssd_cache_bytes = 1 << 30;
            o
        };
        assert!(validate(&base()).is_ok());
        let fails = |f: &dyn Fn(&mut Options), option: &str| {
            let mut o = base();
            f(&mut o);
            let e = validate(&o).unwrap_err().to_string();
            assert!(e.contains(option), "{e}");
        };
        fails(&|o| o.cache_segment_bytes = 10_000, "cache_segment_bytes");
        fails(
            &|o| o.cache_write_buffer_bytes = 1000,
            "cache_write_buffer_bytes",
        );
        fails(&|o| o.ssd_cache_bytes = 0, "ssd_cache_bytes");
        fails(&|o| o.ssd_cache_bytes = 64 << 20, "ssd_cache_bytes");
        fails(
            &|o| o.local_disk_budget_bytes = Some(512 << 20),
            "ssd_cache_bytes",
        );
        fails(&|o| o.block_cache_bytes = 4 << 20, "block_cache_bytes");
        // File and Memory ignore the SSD tier.
        let mut o = base();
        o.cache_mode = CacheMode::File;
        o.block_cache_bytes = 1 << 20;
        assert!(validate(&o).is_ok());
        assert_eq!(ssd_bytes_per_shard(&o), 0);
    }

    #[test]
    fn auto_without_a_tier_takes_most_of_the_budget_where_that_is_valid() {
        let auto = |budget: Option<u64>| {
            let mut o = Options::new("/nonexistent");
            o.shards = 2;
            o.cache_mode = CacheMode::Auto;
            o.ssd_cache_bytes = 0;
            o.local_disk_budget_bytes = budget;
            o
        };
        // No budget: nothing to adapt to.
        assert_eq!(ssd_bytes_per_shard(&auto(None)), 0);
        // 15/16 of the budget, split across shards; valid, and adapting.
        let o = auto(Some(174_063_616));
        let tier = 174_063_616 - 174_063_616 / 16;
        assert_eq!(auto_ssd_bytes(&o), tier);
        assert_eq!(ssd_bytes_per_shard(&o), tier / 2);
        assert!(validate(&o).is_ok());
        assert!(adapts(
            o.cache_mode,
            ssd_bytes_per_shard(&o),
            budget_per_shard(&o)
        ));
        // A budget too small for the segments of a tier: no tier, no error.
        let o = auto(Some(64 << 20));
        assert_eq!(ssd_bytes_per_shard(&o), 0);
        assert!(validate(&o).is_ok());
        // Too little memory for the tier's write buffers: no tier either.
        let mut o = auto(Some(1 << 30));
        o.block_cache_bytes = 4 << 20;
        assert_eq!(ssd_bytes_per_shard(&o), 0);
        assert!(validate(&o).is_ok());
        // A tier the caller sets is taken as it is, and checked.
        let mut o = auto(Some(1 << 30));
        o.ssd_cache_bytes = 256 << 20;
        assert_eq!(ssd_bytes_per_shard(&o), 128 << 20);
        o.ssd_cache_bytes = 2 << 30;
        assert!(validate(&o)
            .unwrap_err()
            .to_string()
            .contains("ssd_cache_bytes"));
    }
}
