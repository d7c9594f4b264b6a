//! db_bench's latency histogram block, printed from an hdrhistogram.
//!
//! ```text
//! Microseconds per read:
//! Count: 1000 Average: 3.5170  StdDev: 1.23
//! Min: 1  Median: 3.2000  Max: 2345
//! Percentiles: P50: 3.20 P75: 3.80 P99: 7.50 P99.9: 12.00 P99.99: 45.00
//! ------------------------------------------------------
//! [       0,       1 ]      120  12.000%  12.000% ##
//! ```
//! The bucket table uses power-of-two microsecond buckets (db_bench's are finer).
//! Min and Max are whole microseconds, as in db_bench.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency summary in microseconds, for reports and JSON.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean latency.
    pub avg_us: f64,
    /// Standard deviation.
    pub stddev_us: f64,
    /// Fastest sample.
    pub min_us: f64,
    /// Slowest sample.
    pub max_us: f64,
    /// Percentiles.
    pub p50_us: f64,
    /// 75th percentile.
    pub p75_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// 99.99th percentile.
    pub p9999_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Summarizes a histogram of nanosecond samples.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    let empty = h.is_empty();
    let q = |p: f64| {
        if empty {
            0.0
        } else {
            us(h.value_at_quantile(p))
        }
    };
    LatencySummary {
        count: h.len(),
        avg_us: if empty { 0.0 } else { h.mean() / 1000.0 },
        stddev_us: if empty { 0.0 } else { h.stdev() / 1000.0 },
        min_us: if empty { 0.0 } else { us(h.min()) },
        max_us: if empty { 0.0 } else { us(h.max()) },
        p50_us: q(0.50),
        p75_us: q(0.75),
        p99_us: q(0.99),
        p999_us: q(0.999),
        p9999_us: q(0.9999),
    }
}

/// The histogram block db_bench prints under `--histogram`.
pub fn format_histogram(op: &str, h: &Histogram<u64>) -> String {
    let s = summarize(h);
    let mut out = String::new();
    let _ = writeln!(out, "Microseconds per {op}:");
    let _ = writeln!(
        out,
        "Count: {} Average: {:.4}  StdDev: {:.2}",
        s.count, s.avg_us, s.stddev_us
    );
    let _ = writeln!(
        out,
        "Min: {}  Median: {:.4}  Max: {}",
        s.min_us.floor() as u64,
        s.p50_us,
        s.max_us.ceil() as u64
    );
    let _ = writeln!(
        out,
        "Percentiles: P50: {:.2} P75: {:.2} P99: {:.2} P99.9: {:.2} P99.99: {:.2}",
        s.p50_us, s.p75_us, s.p99_us, s.p999_us, s.p9999_us
    );
    out.push_str("------------------------------------------------------\n");
    if h.is_empty() {
        return out;
    }
    let total = h.len() as f64;
    let mut cumulative = 0u64;
    let mut low_us = 0u64;
    let mut high_us = 1u64;
    let max_us = h.max().div_ceil(1000);
    while low_us <= max_us {
        let n = h.count_between(low_us * 1000, (high_us * 1000).saturating_sub(1));
        if n > 0 {
            cumulative += n;
            let pct = n as f64 * 100.0 / total;
            let marks = "#".repeat((pct / 5.0).round() as usize);
            let _ = writeln!(
                out,
                "[ {low_us:>7}, {high_us:>7} ) {n:>8} {pct:>7.3}% {:>7.3}% {marks}",
                cumulative as f64 * 100.0 / total
            );
        }
        low_us = high_us;
        high_us = high_us.saturating_mul(2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_has_db_bench_lines() {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for ns in [1_000u64, 2_000, 3_000, 50_000] {
            h.record(ns).expect("record");
        }
        let text = format_histogram("read", &h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Microseconds per read:");
        assert!(
            lines[1].starts_with("Count: 4 Average: 14.0"),
            "{}",
            lines[1]
        );
        assert!(lines[2].starts_with("Min: 1  Median: 2.0"), "{}", lines[2]);
        assert!(lines[3].starts_with("Percentiles: P50: 2.00 P75: 3.00 P99: 50."));
        let buckets: u64 = lines[5..]
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .nth(4)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(buckets, 4, "{text}");
    }
}
