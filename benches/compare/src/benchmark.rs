//! The workloads the harness knows, by their db_bench names (a subset of
//! `terrace-bench`'s list: the ones `run.sh` compares, plus readmissing and the
//! `flush` / `compact` pseudo-benchmarks).

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
    /// Get `reads` keys that cannot exist.
    ReadMissing,
    /// Read `seek_nexts + 1` entries from `reads` random keys.
    SeekRandom,
    /// Read-modify-write `reads` random keys: get, then put a new value.
    UpdateRandom,
    /// multi_get `reads` random keys in batches of `batch_size`.
    MultiReadRandom,
    /// readrandom while one writer thread overwrites random keys.
    ReadWhileWriting,
    /// Pseudo: flush the memtable.
    Flush,
    /// Pseudo: compact the whole key range.
    Compact,
}

/// Every benchmark with its name.
pub const ALL: [(Benchmark, &str); 11] = [
    (Benchmark::FillSeq, "fillseq"),
    (Benchmark::FillRandom, "fillrandom"),
    (Benchmark::Overwrite, "overwrite"),
    (Benchmark::ReadRandom, "readrandom"),
    (Benchmark::ReadMissing, "readmissing"),
    (Benchmark::SeekRandom, "seekrandom"),
    (Benchmark::UpdateRandom, "updaterandom"),
    (Benchmark::MultiReadRandom, "multireadrandom"),
    (Benchmark::ReadWhileWriting, "readwhilewriting"),
    (Benchmark::Flush, "flush"),
    (Benchmark::Compact, "compact"),
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

    /// Whether this is one maintenance call rather than a timed workload.
    pub fn is_pseudo(self) -> bool {
        matches!(self, Benchmark::Flush | Benchmark::Compact)
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
            Benchmark::MultiReadRandom => "multiread batch",
            Benchmark::Flush | Benchmark::Compact => "call",
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
