//! The benchmarks `terrace-bench` knows, by their db_bench names.
//!
//! A [`Benchmark`] is either a *workload* (many timed operations, reported with a
//! result line) or a *pseudo-benchmark* (one maintenance call such as `compact`, timed
//! and reported the same way with one operation).

use std::fmt;

/// One entry of `--benchmarks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Benchmark {
    /// Put keys 0..num in order.
    FillSeq,
    /// Put `num` keys drawn at random from 0..num (with repetition).
    FillRandom,
    /// Like fillrandom, over a database that already holds the keys.
    Overwrite,
    /// Get `reads` random keys from 0..num.
    ReadRandom,
    /// Scan the whole key space in key order, in chunks.
    ReadSeq,
    /// Get `reads` keys that cannot exist.
    ReadMissing,
    /// Scan `seek_nexts + 1` entries from `reads` random keys.
    SeekRandom,
    /// Read-modify-write `reads` random keys: get, then put a new value.
    UpdateRandom,
    /// multi_get `reads` random keys in batches of `batch_size`.
    MultiReadRandom,
    /// readrandom while one writer per shard overwrites random keys.
    ReadWhileWriting,
    /// Merge `num` counter increments (u64_add, 8 bytes) into random keys of the
    /// `counters` table: writes with no read before them.
    MergeRandom,
    /// Pseudo: flush every memtable.
    Flush,
    /// Pseudo: compact the whole key range.
    Compact,
    /// Pseudo: wait until no compaction is pending.
    WaitForCompaction,
    /// Pseudo: flush, wait until every SST is in the object store, then apply the
    /// local disk budget (so reads that follow start from the settled tiering).
    WaitForUploads,
    /// Pseudo: wait until the warmer has downloaded what it will (after a restore).
    WaitForWarmer,
    /// Pseudo: wait until no file reference is clipped any more (after a rescale,
    /// compaction has trimmed every other database's or shard's keys).
    WaitForTrims,
    /// Pseudo: take a checkpoint and report its duration and bytes uploaded.
    Checkpoint,
    /// Pseudo: print the engine's statistics.
    Stats,
}

/// Every benchmark with its name, in the order `--help` lists them.
pub const ALL: [(Benchmark, &str); 19] = [
    (Benchmark::FillSeq, "fillseq"),
    (Benchmark::FillRandom, "fillrandom"),
    (Benchmark::Overwrite, "overwrite"),
    (Benchmark::ReadRandom, "readrandom"),
    (Benchmark::ReadSeq, "readseq"),
    (Benchmark::ReadMissing, "readmissing"),
    (Benchmark::SeekRandom, "seekrandom"),
    (Benchmark::UpdateRandom, "updaterandom"),
    (Benchmark::MultiReadRandom, "multireadrandom"),
    (Benchmark::ReadWhileWriting, "readwhilewriting"),
    (Benchmark::MergeRandom, "mergerandom"),
    (Benchmark::Flush, "flush"),
    (Benchmark::Compact, "compact"),
    (Benchmark::WaitForCompaction, "waitforcompaction"),
    (Benchmark::WaitForUploads, "waitforuploads"),
    (Benchmark::WaitForWarmer, "waitforwarmer"),
    (Benchmark::WaitForTrims, "waitfortrims"),
    (Benchmark::Checkpoint, "checkpoint"),
    (Benchmark::Stats, "stats"),
];

impl Benchmark {
    /// The db_bench name.
    pub fn name(self) -> &'static str {
        ALL.iter()
            .find(|(b, _)| *b == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// Looks a benchmark up by its db_bench name.
    pub fn from_name(name: &str) -> Option<Benchmark> {
        ALL.iter().find(|(_, n)| *n == name).map(|(b, _)| *b)
    }

    /// Whether this is a maintenance call rather than a timed workload.
    pub fn is_pseudo(self) -> bool {
        matches!(
            self,
            Benchmark::Flush
                | Benchmark::Compact
                | Benchmark::WaitForCompaction
                | Benchmark::WaitForUploads
                | Benchmark::WaitForWarmer
                | Benchmark::WaitForTrims
                | Benchmark::Checkpoint
                | Benchmark::Stats
        )
    }

    /// Whether the workload writes (and so reports key + value bytes per operation).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Benchmark::FillSeq
                | Benchmark::FillRandom
                | Benchmark::Overwrite
                | Benchmark::MergeRandom
        )
    }

    /// Whether the result line reports `(found of total found)`.
    pub fn reports_found(self) -> bool {
        matches!(
            self,
            Benchmark::ReadRandom
                | Benchmark::ReadMissing
                | Benchmark::SeekRandom
                | Benchmark::UpdateRandom
                | Benchmark::MultiReadRandom
                | Benchmark::ReadWhileWriting
        )
    }

    /// What one histogram sample measures, as in db_bench's `Microseconds per <op>:`.
    pub fn histogram_op(self) -> &'static str {
        match self {
            Benchmark::FillSeq | Benchmark::FillRandom | Benchmark::Overwrite => "write",
            Benchmark::ReadRandom | Benchmark::ReadMissing | Benchmark::ReadWhileWriting => "read",
            Benchmark::SeekRandom => "seek",
            Benchmark::UpdateRandom => "update",
            Benchmark::MergeRandom => "merge",
            Benchmark::MultiReadRandom => "multiread batch",
            Benchmark::ReadSeq => "scan chunk",
            Benchmark::Flush
            | Benchmark::Compact
            | Benchmark::WaitForCompaction
            | Benchmark::WaitForUploads
            | Benchmark::WaitForWarmer
            | Benchmark::WaitForTrims
            | Benchmark::Checkpoint
            | Benchmark::Stats => "call",
        }
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses `a,b,c`; empty entries are ignored, unknown names are an error that lists
/// the known ones.
pub fn parse_benchmark_list(s: &str) -> Result<Vec<Benchmark>, String> {
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match Benchmark::from_name(name) {
            Some(b) => out.push(b),
            None => {
                let known: Vec<&str> = ALL.iter().map(|(_, n)| *n).collect();
                return Err(format!(
                    "unknown benchmark {name:?}; known: {}",
                    known.join(",")
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("no benchmark named".into());
    }
    Ok(out)
}
