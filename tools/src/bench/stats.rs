//! Counters one worker keeps while it runs a benchmark, merged across workers.
//!
//! A worker (one in-flight operation slot) owns its [`OpStats`]; nothing is shared
//! on the hot path. Latencies are recorded in nanoseconds into an auto-resizing
//! hdrhistogram with 3 significant digits.

use hdrhistogram::Histogram;
use std::time::Duration;

use super::timeline::SecondRecorder;

/// Operation counts, bytes and latencies of one worker or of a whole benchmark.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Operations done (keys, for multireadrandom; entries, for readseq).
    pub ops: u64,
    /// Operations that found what they looked for.
    pub found: u64,
    /// Key + value bytes moved.
    pub bytes: u64,
    /// Writes done by background writers (readwhilewriting), not counted in `ops`.
    pub background_writes: u64,
    /// Latency of each timed call, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Per-second counts for `--plot` (a worker's own; not merged).
    pub per_second: Option<SecondRecorder>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats::new()
    }
}

impl OpStats {
    /// Empty counters.
    pub fn new() -> OpStats {
        OpStats {
            ops: 0,
            found: 0,
            bytes: 0,
            background_writes: 0,
            // 3 significant digits always fits in an auto-resizing histogram.
            latency_ns: Histogram::new(3).unwrap_or_else(|_| unreachable!()),
            per_second: None,
        }
    }

    /// Records one timed call that did `ops` operations.
    #[inline]
    pub fn record(&mut self, elapsed: Duration, ops: u64, found: u64, bytes: u64) {
        self.ops += ops;
        self.found += found;
        self.bytes += bytes;
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
        // `record` grows the auto-resizing histogram (`saturating_record` would clamp
        // to its current bounds); it fails only past u64 range, which ns cannot reach.
        let _ = self.latency_ns.record(ns);
        if let Some(seconds) = &mut self.per_second {
            seconds.record(terrace_tiering::clock::now(), elapsed, ops);
        }
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, other: &OpStats) {
        self.ops += other.ops;
        self.found += other.found;
        self.bytes += other.bytes;
        self.background_writes += other.background_writes;
        // Both histograms auto-resize, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
    }

    /// Merges a list of counters.
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a OpStats>) -> OpStats {
        let mut out = OpStats::new();
        for s in all {
            out.merge(s);
        }
        out
    }
}
