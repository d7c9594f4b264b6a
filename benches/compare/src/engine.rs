//! The one trait an engine implements to be driven by [`crate::driver`].
//!
//! Calls are synchronous and the engine is shared by every worker thread, so it
//! must be `Sync`. Each call does one db_bench operation; the driver times it.
//! An engine that lacks an operation says so in [`Engine::unsupported`] and the
//! benchmark is skipped with a message instead of being faked.

use crate::benchmark::Benchmark;
use crate::report::EngineSettings;

/// What a seek found.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeekOutcome {
    /// Whether the first entry at or after the seek key is the seek key itself.
    pub found: bool,
    /// Key + value bytes of the entries read.
    pub bytes: u64,
}

/// A key-value engine under benchmark.
pub trait Engine: Sync {
    /// Settings as applied, for the header.
    fn settings(&self) -> EngineSettings;

    /// `Some(reason)` when the engine cannot run `bench`.
    fn unsupported(&self, bench: Benchmark) -> Option<&'static str> {
        let _ = bench;
        None
    }

    /// Writes one entry (WAL per `--disable_wal`).
    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()>;

    /// Reads one key; returns the value's length when found.
    fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>>;

    /// Reads a batch of keys in one call; the value lengths, in key order.
    fn multi_get(&self, keys: &[Vec<u8>]) -> anyhow::Result<Vec<Option<usize>>>;

    /// Reads `count` entries starting at the first key `>= key`.
    fn seek(&self, key: &[u8], count: usize) -> anyhow::Result<SeekOutcome>;

    /// Flushes the memtable to disk.
    fn flush(&self) -> anyhow::Result<()>;

    /// Compacts the whole key range.
    fn compact(&self) -> anyhow::Result<()>;
}
