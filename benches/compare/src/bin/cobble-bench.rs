//! `cobble-bench`: `terrace-bench`'s workloads, flags and output over Cobble (crate
//! `cobble` 0.5), for side-by-side runs (see `benches/compare/run.sh`).
//!
//! ```text
//! cobble-bench --benchmarks=fillrandom,readrandom --num=200000 --threads=4
//! ```
//!
//! One `cobble::Db` with a single bucket and one column, on one local volume.
//! Settings mirror Terrace's where Cobble has them: `--write_buffer_size` memtables
//! (3 buffers: one active, two immutable), `--cache_size` block cache, a bloom
//! filter of `--bloom_bits`, 64 MiB target files, no WAL. Where it has none, the
//! header says so rather than pretending:
//! - data blocks are always 4096 bytes (not configurable; `--block_size` is ignored);
//! - there is no direct I/O switch (reads go through the OS page cache);
//! - the only codec is lz4 (`--compression_type zstd` is refused);
//! - there is no public flush or compact call (the pseudo-benchmarks are skipped);
//! - `Db::open` always starts a new database (reopening goes through snapshots and
//!   `SingleDb::resume`), so `--use_existing_db` is refused rather than silently
//!   benchmarking an empty database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use cobble::{Config, Db, SstCompressionAlgorithm, VolumeDescriptor};
use compare::benchmark::Benchmark;
use compare::engine::{Engine, SeekOutcome};
use compare::flags::{CompressionType, Flags};
use compare::report::EngineSettings;
use size::Size;

/// Cobble's fixed data block size.
const COBBLE_BLOCK_BYTES: usize = 4096;
/// Memtable buffers: one active and two immutable, as Terrace's default.
const MEMTABLE_BUFFERS: usize = 3;
/// The single bucket every key lives in.
const BUCKET: u16 = 0;
/// The single value column.
const COLUMN: u16 = 0;

struct Cobble {
    db: Db,
    settings: EngineSettings,
}

fn open(flags: &Flags, path: &Path) -> anyhow::Result<Cobble> {
    if flags.use_existing_db {
        anyhow::bail!(
            "--use_existing_db: cobble::Db::open always starts a new database; \
             run every benchmark in one --benchmarks list instead"
        );
    }
    let mut config = Config::default();
    let dir = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    config.volumes = VolumeDescriptor::single_volume(format!("file://{}", dir.display()));
    config.num_columns = 1;
    config.total_buckets = 1;
    config.memtable_capacity = Size::from_bytes(flags.write_buffer_size as u64);
    config.memtable_buffer_count = MEMTABLE_BUFFERS;
    config.block_cache_size = Size::from_bytes(flags.cache_size);
    config.sst_bloom_filter_enabled = flags.bloom_bits > 0;
    config.sst_bloom_bits_per_key = flags.bloom_bits.max(1);
    config.base_file_size = Size::from_bytes(flags.target_file_size_base);
    config.wal_enabled = !flags.disable_wal;
    config.log_console = false;
    config.log_level = log::LevelFilter::Warn;
    let codec = match flags.compression_type {
        CompressionType::None => SstCompressionAlgorithm::None,
        CompressionType::Lz4 => SstCompressionAlgorithm::Lz4,
        CompressionType::Zstd => {
            anyhow::bail!("--compression_type zstd: Cobble has no zstd (none or lz4 only)")
        }
    };
    config.sst_compression_by_level = vec![codec; usize::from(config.max_level) + 1];
    let db = Db::open(config, vec![BUCKET..=BUCKET]).context("cobble::Db::open")?;
    let mut notes = vec![(
        "Memtables".to_string(),
        format!("{MEMTABLE_BUFFERS} buffers, adaptive memtable type (Cobble's default)"),
    )];
    if flags.block_size != COBBLE_BLOCK_BYTES {
        notes.push((
            "Block size".to_string(),
            format!(
                "--block_size {} ignored: Cobble's is fixed at {COBBLE_BLOCK_BYTES}",
                flags.block_size
            ),
        ));
    }
    let settings = EngineSettings {
        engine: "Cobble 0.5.3".to_string(),
        direct_reads: None,
        direct_writes: None,
        wal: Some(!flags.disable_wal),
        notes,
    };
    Ok(Cobble { db, settings })
}

fn value_len(row: Option<Vec<Option<impl AsRef<[u8]>>>>) -> Option<usize> {
    row.and_then(|columns| columns.into_iter().next().flatten())
        .map(|v| v.as_ref().len())
}

impl Engine for Cobble {
    fn settings(&self) -> EngineSettings {
        self.settings.clone()
    }

    fn unsupported(&self, bench: Benchmark) -> Option<&'static str> {
        match bench {
            Benchmark::Flush | Benchmark::Compact => {
                Some("Cobble 0.5 has no public flush or compact call")
            }
            _ => None,
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        Ok(self.db.put(BUCKET, key, COLUMN, value)?)
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>> {
        Ok(value_len(self.db.get(BUCKET, key)?))
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> anyhow::Result<Vec<Option<usize>>> {
        let request: Vec<(u16, &[u8])> = keys.iter().map(|k| (BUCKET, k.as_slice())).collect();
        Ok(self
            .db
            .multi_get(&request)?
            .into_iter()
            .map(value_len)
            .collect())
    }

    fn seek(&self, key: &[u8], count: usize) -> anyhow::Result<SeekOutcome> {
        let mut out = SeekOutcome::default();
        let rows = self.db.scan_bounds(BUCKET, Some(key), None)?;
        for (n, row) in rows.take(count).enumerate() {
            let (k, columns) = row?;
            if n == 0 {
                out.found = k.as_ref() == key;
            }
            let v = columns
                .first()
                .and_then(|c| c.as_ref())
                .map_or(0, |v| v.len());
            out.bytes += (k.len() + v) as u64;
        }
        Ok(out)
    }

    fn flush(&self) -> anyhow::Result<()> {
        anyhow::bail!("Cobble 0.5 has no public flush call")
    }

    fn compact(&self) -> anyhow::Result<()> {
        anyhow::bail!("Cobble 0.5 has no public compact call")
    }
}

impl Drop for Cobble {
    fn drop(&mut self) {
        if let Err(e) = self.db.close() {
            eprintln!("cobble-bench: closing the database: {e}");
        }
    }
}

fn main() -> ExitCode {
    compare::run::main("cobble-bench", open)
}
