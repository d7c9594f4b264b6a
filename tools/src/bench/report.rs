//! What `terrace-bench` prints: db_bench's header and result lines, and the JSON
//! summary.
//!
//! Result lines follow db_bench's format exactly:
//!
//! ```text
//! readrandom   :       3.517 micros/op 284333 ops/sec 3.517 seconds 1000000 operations;   31.5 MB/s (632856 of 1000000 found)
//! ```
//!
//! One convention differs, because many operations are in flight at once:
//! `micros/op` is **wall-clock** time divided by operations (`elapsed / ops`), i.e.
//! the inverse of throughput. db_bench sums per-thread time instead, which with T
//! threads reports T times more. Per-operation latency is what `--histogram` shows.

use std::fmt::Write as _;

use serde::Serialize;

use super::checkpoints::CheckpointStats;
use super::flags::{CompressionType, Flags};
use super::histogram::LatencySummary;

/// The outcome of one benchmark, ready to print.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// Benchmark name.
    pub name: String,
    /// Operations done.
    pub ops: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Wall-clock microseconds per operation (`seconds * 1e6 / ops`).
    pub micros_per_op: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Key + value bytes moved.
    pub bytes: u64,
    /// MiB per second of `bytes` (db_bench's "MB/s").
    pub mb_per_sec: f64,
    /// `(found, looked for)` when the benchmark reports found keys.
    pub found: Option<(u64, u64)>,
    /// Writes of background writers (readwhilewriting).
    pub background_writes: u64,
    /// Latency of each timed call (see `Benchmark::histogram_op`).
    pub latency: Option<LatencySummary>,
    /// One-line engine statistics after the benchmark.
    pub engine_stats: Option<String>,
    /// CPU seconds the whole process spent during the benchmark (user + system).
    pub cpu_seconds: Option<f64>,
    /// Operations per CPU-second (`ops / cpu_seconds`).
    pub ops_per_cpu_sec: Option<f64>,
    /// Block-cache line after the benchmark (mode, hit ratios per tier, per kind).
    pub cache_stats: Option<String>,
    /// Fractions of block lookups served by memory, by the SSD tier, joined a read in
    /// flight, and loaded from the file.
    pub cache_hit_ratios: Option<(f64, f64, f64, f64)>,
    /// Checkpoints taken during the benchmark (`--checkpoint_every_secs`), or the
    /// one the `checkpoint` benchmark took.
    pub checkpoints: Option<CheckpointStats>,
}

impl BenchResult {
    /// Computes the rates of a finished benchmark.
    pub fn new(name: &str, ops: u64, seconds: f64, bytes: u64) -> BenchResult {
        let secs = seconds.max(1e-9);
        BenchResult {
            name: name.to_string(),
            ops,
            seconds,
            micros_per_op: if ops == 0 {
                0.0
            } else {
                seconds * 1e6 / ops as f64
            },
            ops_per_sec: ops as f64 / secs,
            bytes,
            mb_per_sec: bytes as f64 / 1_048_576.0 / secs,
            found: None,
            background_writes: 0,
            latency: None,
            engine_stats: None,
            cpu_seconds: None,
            ops_per_cpu_sec: None,
            cache_stats: None,
            cache_hit_ratios: None,
            checkpoints: None,
        }
    }

    /// Records the process CPU time the benchmark took.
    pub fn set_cpu(&mut self, cpu: &super::cpu::CpuTime) {
        let secs = cpu.total().as_secs_f64();
        self.cpu_seconds = Some(secs);
        self.ops_per_cpu_sec = Some(if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        });
    }

    /// The CPU line: CPU seconds, operations per CPU-second, cores busy on average.
    pub fn cpu_line(&self, cpu: &super::cpu::CpuTime) -> String {
        let secs = cpu.total().as_secs_f64();
        format!(
            "  cpu: {secs:.3} s (user {:.3}, sys {:.3}), {} ops per CPU-second, {:.2} cores busy",
            cpu.user.as_secs_f64(),
            cpu.system.as_secs_f64(),
            self.ops_per_cpu_sec.unwrap_or(0.0) as i64,
            secs / self.seconds.max(1e-9)
        )
    }

    /// The background writer's line (readwhilewriting), so a read rate can be told
    /// apart from a starved writer: writes done and their rate. `None` without one.
    pub fn writer_line(&self) -> Option<String> {
        (self.background_writes > 0).then(|| {
            format!(
                "  writer: {} background writes, {} writes/sec",
                self.background_writes,
                (self.background_writes as f64 / self.seconds.max(1e-9)) as i64
            )
        })
    }

    /// The db_bench result line (no trailing newline).
    pub fn line(&self) -> String {
        let mut extra = String::new();
        if self.bytes > 0 {
            let _ = write!(extra, "{:6.1} MB/s", self.mb_per_sec);
        }
        if let Some((found, total)) = self.found {
            if !extra.is_empty() {
                extra.push(' ');
            }
            let _ = write!(extra, "({found} of {total} found)");
        }
        format!(
            "{:<12} : {:11.3} micros/op {} ops/sec {:.3} seconds {} operations;{}{}",
            self.name,
            self.micros_per_op,
            self.ops_per_sec as i64,
            self.seconds,
            self.ops,
            if extra.is_empty() { "" } else { " " },
            extra
        )
    }
}

/// A result line read back (for tests and scripts).
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedLine {
    /// Benchmark name.
    pub name: String,
    /// Micros per operation.
    pub micros_per_op: f64,
    /// Operations per second.
    pub ops_per_sec: u64,
    /// Seconds.
    pub seconds: f64,
    /// Operations.
    pub ops: u64,
    /// MB/s, if printed.
    pub mb_per_sec: Option<f64>,
    /// `(found, total)`, if printed.
    pub found: Option<(u64, u64)>,
}

/// Parses a db_bench result line; `None` if `line` is not one.
pub fn parse_line(line: &str) -> Option<ParsedLine> {
    let (name, rest) = line.split_once(" : ")?;
    let (main, extra) = rest.split_once(';')?;
    let w: Vec<&str> = main.split_whitespace().collect();
    if w.len() != 8
        || w[1] != "micros/op"
        || w[3] != "ops/sec"
        || w[5] != "seconds"
        || w[7] != "operations"
    {
        return None;
    }
    let mut mb_per_sec = None;
    let mut found = None;
    let extra = extra.trim();
    let (rate, message) = match extra.find('(') {
        Some(p) => (extra[..p].trim(), Some(&extra[p..])),
        None => (extra, None),
    };
    if let Some(r) = rate.strip_suffix("MB/s") {
        mb_per_sec = Some(r.trim().parse().ok()?);
    }
    if let Some(m) = message {
        let inner = m.strip_prefix('(')?.strip_suffix(" found)")?;
        let (f, t) = inner.split_once(" of ")?;
        found = Some((f.parse().ok()?, t.parse().ok()?));
    }
    Some(ParsedLine {
        name: name.trim().to_string(),
        micros_per_op: w[0].parse().ok()?,
        ops_per_sec: w[2].parse().ok()?,
        seconds: w[4].parse().ok()?,
        ops: w[6].parse().ok()?,
        mb_per_sec,
        found,
    })
}

fn mib(bytes: f64) -> f64 {
    bytes / 1_048_576.0
}

/// A byte count as db_bench-style text: `68.2 MB` (MiB, as `MB/s` is), or `1.02 GB`
/// (GiB) from one GiB up.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MB", mib(bytes as f64))
    }
}

/// db_bench's header: what the run is about to do.
pub fn header(flags: &Flags, db_path: &str, engine_shards: u32) -> String {
    let compressed_value = (flags.value_size as f64 * flags.compression_ratio) as u64;
    let entry = (flags.key_size + flags.value_size) as f64;
    let file_entry = flags.key_size as f64
        + match flags.store.compression_type {
            CompressionType::None => flags.value_size as f64,
            CompressionType::Zstd => compressed_value as f64,
        };
    let mode = if flags.threads == 0 {
        format!(
            "embedded ({} ops in flight per shard, on the shards' threads)",
            flags.concurrency
        )
    } else {
        format!(
            "{} threads x {} ops in flight, through the cross-thread handle",
            flags.threads, flags.concurrency
        )
    };
    let compression = match flags.store.compression_type {
        CompressionType::None => "none".to_string(),
        CompressionType::Zstd => format!("zstd (level {})", flags.store.compression_level),
    };
    let mut h = String::new();
    let _ = writeln!(h, "Keys:       {} bytes each", flags.key_size);
    let _ = writeln!(
        h,
        "Values:     {} bytes each ({} bytes after compression)",
        flags.value_size, compressed_value
    );
    let _ = writeln!(h, "Entries:    {}", flags.num);
    let _ = writeln!(
        h,
        "RawSize:    {:.1} MB (estimated)",
        mib(entry * flags.num as f64)
    );
    let _ = writeln!(
        h,
        "FileSize:   {:.1} MB (estimated)",
        mib(file_entry * flags.num as f64)
    );
    let _ = writeln!(h, "Compression: {compression}");
    let _ = writeln!(
        h,
        "Block cache: {:.1} MB, bloom bits: {}, block size: {}, write buffer: {:.1} MB",
        mib(flags.store.cache_size as f64),
        flags.store.bloom_bits,
        flags.store.block_size,
        mib(flags.store.write_buffer_size as f64)
    );
    let _ = writeln!(
        h,
        "Cache mode: {:?} ({:?}), SSD tier {:.1} MB in {:.1} MB segments, local disk budget {}",
        flags.store.cache_mode,
        flags.store.cache_eviction,
        mib(flags.store.ssd_cache_bytes as f64),
        mib(flags.store.cache_segment_bytes as f64),
        flags.store.local_disk_budget.map_or_else(
            || "none".to_string(),
            |b| format!("{:.1} MB", mib(b as f64))
        )
    );
    let _ = writeln!(
        h,
        "Read keys:  {}",
        match flags.key_dist {
            super::flags::KeyDist::Uniform => "uniform".to_string(),
            super::flags::KeyDist::Zipf => format!("zipf (theta {})", flags.zipf_theta),
        }
    );
    let _ = writeln!(h, "Shards:     {engine_shards}");
    let _ = writeln!(h, "Mode:       {mode}");
    let _ = writeln!(h, "Reads:      {}", flags.reads());
    let _ = writeln!(h, "Seed:       {}", flags.seed);
    let _ = writeln!(h, "DB path:    [{db_path}]");
    h.push_str("------------------------------------------------");
    h
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct JsonSummary {
    /// The flags that shape the run, as text.
    pub flags: serde_json::Map<String, serde_json::Value>,
    /// Database directory.
    pub db: String,
    /// micros_per_op is wall-clock time / ops.
    pub micros_per_op_convention: &'static str,
    /// One entry per benchmark run, in order.
    pub benchmarks: Vec<BenchResult>,
}

impl JsonSummary {
    /// An empty summary for `flags`.
    pub fn new(flags: &Flags, db: &str) -> JsonSummary {
        let flags = flags
            .describe()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        JsonSummary {
            flags,
            db: db.to_string(),
            micros_per_op_convention: "wall-clock seconds * 1e6 / operations",
            benchmarks: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_matches_db_bench_and_parses_back() {
        let mut r = BenchResult::new("readrandom", 1_000_000, 3.517, 116_170_000);
        r.found = Some((632_856, 1_000_000));
        let line = r.line();
        assert_eq!(
            line,
            "readrandom   :       3.517 micros/op 284333 ops/sec 3.517 seconds 1000000 operations;   31.5 MB/s (632856 of 1000000 found)"
        );
        let p = parse_line(&line).expect("parses");
        assert_eq!(p.name, "readrandom");
        assert_eq!(p.ops, 1_000_000);
        assert_eq!(p.found, Some((632_856, 1_000_000)));
        assert_eq!(p.mb_per_sec, Some(31.5));
        let bare = BenchResult::new("compact", 1, 0.5, 0).line();
        assert!(bare.ends_with("1 operations;"), "{bare}");
        assert_eq!(parse_line(&bare).map(|p| p.ops), Some(1));
    }
}
