//! The database the crash and compaction runs torture: tiny memtables, files and
//! levels, no warm window, a small local disk budget and a misbehaving object store,
//! so that flushes, compactions, uploads and dropped local copies never stop.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use terrace::Options;
use terrace_tiering::store::fault::{FaultConfig, Latency};

/// Flags shared by `crash`, `crash-child` and `compaction`.
#[derive(Args, Clone, Debug, PartialEq)]
#[command(rename_all = "snake_case")]
pub struct SmallDbFlags {
    /// Shards.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// Largest value in bytes (values this large are rare).
    #[arg(long, default_value_t = 65536)]
    pub max_value_bytes: usize,
    /// Chance that an object-store request fails with a transient error (the engine
    /// retries; half of the failed writes did happen).
    #[arg(long, default_value_t = 0.02)]
    pub object_store_error_rate: f64,
    /// Every object-store request first waits a uniform 0..=this many milliseconds.
    #[arg(long, default_value_t = 2)]
    pub object_store_latency_ms: u64,
    /// Local bytes of SSTs the database may keep, split across shards (0: no limit).
    /// Uploaded files beyond it lose their local copy and are read from the store.
    #[arg(long, default_value_t = 1 << 20)]
    pub local_disk_budget: u64,
}

impl SmallDbFlags {
    /// `Options::max_key_groups` of these databases: few key groups keep full
    /// scans cheap (a scan seeks once per key group).
    pub const MAX_KEY_GROUPS: u16 = 16;

    /// The flags as command-line arguments, to hand them to a child process.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--shards={}", self.shards),
            format!("--max_value_bytes={}", self.max_value_bytes),
            format!("--object_store_error_rate={}", self.object_store_error_rate),
            format!("--object_store_latency_ms={}", self.object_store_latency_ms),
            format!("--local_disk_budget={}", self.local_disk_budget),
        ]
    }

    /// Options of the database in `dir`; `fault_seed` seeds the injected faults.
    pub fn options(&self, dir: &Path, fault_seed: u64) -> Options {
        let mut o = Options::new(dir);
        o.shards = self.shards;
        o.max_key_groups = Self::MAX_KEY_GROUPS;
        o.pin_shards = false;
        o.spin_before_park_us = 0;
        o.memtable_bytes = 64 << 10;
        o.target_file_bytes = 64 << 10;
        o.level1_bytes = 1 << 20;
        o.block_cache_bytes = 256 << 10;
        o.max_value_bytes = o.max_value_bytes.max(self.max_value_bytes);
        o.warm_window = Duration::ZERO;
        o.local_disk_budget_bytes = (self.local_disk_budget > 0).then_some(self.local_disk_budget);
        // Closing gives up on uploads quickly; the next open queues them again.
        o.upload_close_timeout = Duration::from_secs(1);
        o.object_store_faults = Some(FaultConfig {
            seed: fault_seed,
            error_rate: self.object_store_error_rate,
            latency: match self.object_store_latency_ms {
                0 => Latency::None,
                ms => Latency::Uniform {
                    min: Duration::ZERO,
                    max: Duration::from_millis(ms),
                },
            },
            ..FaultConfig::default()
        });
        o
    }
}

/// A seed for one purpose of one round, derived from the run's master seed, so that
/// each round differs and the whole run replays from the master seed.
pub fn derive_seed(master: u64, round: u64, purpose: u64) -> u64 {
    // splitmix64 of a mix of the three.
    let mut z = master
        .wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(purpose.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
