//! What the harness binaries print: db_bench's header and result lines, and the JSON
//! summary — the same format as `terrace-bench`'s `bench::report`, so one parser reads
//! all three engines' output.
//!
//! ```text
//! readrandom   :       3.517 micros/op 284333 ops/sec 3.517 seconds 1000000 operations;   31.5 MB/s (632856 of 1000000 found)
//! ```
//!
//! As in `terrace-bench`, `micros/op` is **wall-clock** time divided by operations
//! (the inverse of throughput), not db_bench's per-thread sum.

use serde::Serialize;

use crate::flags::{CompressionType, Flags};
use std::fmt::Write as _;

// The result line and its parser are terrace-bench's own, so one parser reads all
// three engines' output.
pub use terrace_tools::bench::report::{parse_line, BenchResult, ParsedLine};

fn mib(bytes: f64) -> f64 {
    bytes / 1_048_576.0
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// What an engine tells the header about itself.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Engine name and version.
    pub engine: String,
    /// Direct I/O for user reads, as applied (`None`: the engine has no switch).
    pub direct_reads: Option<bool>,
    /// Direct I/O for flush and compaction, as applied.
    pub direct_writes: Option<bool>,
    /// WAL as applied (`None`: the engine has no WAL).
    pub wal: Option<bool>,
    /// Other settings worth a line, `(name, value)`.
    pub notes: Vec<(String, String)>,
}

/// db_bench's header, plus the settings `run.sh` holds equal across engines.
pub fn header(flags: &Flags, db_path: &str, engine: &EngineSettings) -> String {
    let compressed_value = (flags.value_size as f64 * flags.compression_ratio) as u64;
    let entry = (flags.key_size + flags.value_size) as f64;
    let file_entry = flags.key_size as f64
        + match flags.compression_type {
            CompressionType::None => flags.value_size as f64,
            CompressionType::Zstd | CompressionType::Lz4 => compressed_value as f64,
        };
    let compression = match flags.compression_type {
        CompressionType::None => "none".to_string(),
        CompressionType::Zstd => format!("zstd (level {})", flags.compression_level),
        CompressionType::Lz4 => "lz4".to_string(),
    };
    let switch = |v: Option<bool>| v.map_or("n/a (engine has no switch)", on_off);
    let mut h = String::new();
    let _ = writeln!(h, "Engine:     {}", engine.engine);
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
        mib(flags.cache_size as f64),
        flags.bloom_bits,
        flags.block_size,
        mib(flags.write_buffer_size as f64)
    );
    let _ = writeln!(
        h,
        "Direct I/O: reads {}, flush/compaction {}",
        switch(engine.direct_reads),
        switch(engine.direct_writes)
    );
    let _ = writeln!(
        h,
        "WAL:        {}",
        engine.wal.map_or("n/a (engine has no WAL)", |on| if on {
            "on"
        } else {
            "off (disabled for every write)"
        })
    );
    let _ = writeln!(h, "Mode:       {} threads x 1 op in flight", flags.threads);
    for (k, v) in &engine.notes {
        let _ = writeln!(h, "{:<11} {v}", format!("{k}:"));
    }
    let _ = writeln!(h, "Reads:      {}", flags.reads());
    let _ = writeln!(h, "Seed:       {}", flags.seed);
    let _ = writeln!(h, "DB path:    [{db_path}]");
    h.push_str("------------------------------------------------");
    h
}

/// The `--json` document (the shape of `terrace-bench`'s, minus engine statistics).
#[derive(Debug, Serialize)]
pub struct JsonSummary {
    /// Engine name and version.
    pub engine: String,
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
    pub fn new(flags: &Flags, db: &str, engine: &str) -> JsonSummary {
        let flags = flags
            .describe()
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        JsonSummary {
            engine: engine.to_string(),
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
    fn line_matches_terrace_bench_and_parses_back() {
        let mut r = BenchResult::new("readrandom", 1_000_000, 3.517, 116_170_000);
        r.found = Some((632_856, 1_000_000));
        let line = r.line();
        assert_eq!(
            line,
            "readrandom   :       3.517 micros/op 284333 ops/sec 3.517 seconds 1000000 operations;   31.5 MB/s (632856 of 1000000 found)"
        );
        let p = parse_line(&line).expect("parses");
        assert_eq!(p.ops_per_sec, 284_333);
        assert_eq!(p.found, Some((632_856, 1_000_000)));
    }
}
