//! `rocksdb-bench`: `terrace-bench`'s workloads, flags and output over RocksDB (the
//! `rocksdb` crate), for side-by-side runs (see `benches/compare/run.sh`).
//!
//! ```text
//! rocksdb-bench --benchmarks=fillrandom,readrandom --num=200000 --threads=4
//! ```
//!
//! Settings mirror Terrace's: block-based tables with `--block_size` blocks, a full
//! bloom filter of `--bloom_bits`, one LRU block cache of `--cache_size` (index and
//! filter blocks outside it, RocksDB's default), `--write_buffer_size` memtables with
//! up to 2 immutable ones (Terrace's `max_immutable_memtables`), 64 MiB target files,
//! level multiplier 10, direct I/O for reads and for flush/compaction, and every
//! write with `disable_wal`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use compare::benchmark::Benchmark;
use compare::engine::{Engine, SeekOutcome};
use compare::flags::{CompressionType, Flags};
use compare::report::EngineSettings;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, WriteOptions, DB,
    DEFAULT_COLUMN_FAMILY_NAME,
};

/// Immutable memtables kept before writes stall, as Terrace's default.
const MAX_IMMUTABLE_MEMTABLES: i32 = 2;

struct Rocks {
    db: DB,
    write: WriteOptions,
    // Kept alive for as long as the database uses it.
    _cache: Cache,
    settings: EngineSettings,
}

fn open(flags: &Flags, path: &Path) -> anyhow::Result<Rocks> {
    let cache = Cache::new_lru_cache(usize::try_from(flags.cache_size)?);
    let mut table = BlockBasedOptions::default();
    table.set_block_size(flags.block_size);
    table.set_block_cache(&cache);
    if flags.bloom_bits > 0 {
        table.set_bloom_filter(f64::from(flags.bloom_bits), false);
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(flags.write_buffer_size);
    opts.set_max_write_buffer_number(MAX_IMMUTABLE_MEMTABLES + 1);
    opts.set_target_file_size_base(flags.target_file_size_base);
    opts.set_max_background_jobs(flags.max_background_jobs);
    opts.set_use_direct_reads(flags.use_direct_reads);
    opts.set_use_direct_io_for_flush_and_compaction(flags.use_direct_io_for_flush_and_compaction);
    let compression = match flags.compression_type {
        CompressionType::None => DBCompressionType::None,
        CompressionType::Zstd => {
            opts.set_compression_options(-14, flags.compression_level, 0, 0);
            DBCompressionType::Zstd
        }
        CompressionType::Lz4 => {
            anyhow::bail!("--compression_type lz4: this rocksdb-bench is built with zstd only")
        }
    };
    opts.set_compression_type(compression);
    // Opened with the default column family named, so `cf_handle` finds it for
    // `batched_multi_get_cf`.
    let db = DB::open_cf(&opts, path, [DEFAULT_COLUMN_FAMILY_NAME]).context("DB::open_cf")?;
    let mut write = WriteOptions::default();
    write.disable_wal(flags.disable_wal);
    let settings = EngineSettings {
        engine: "RocksDB 11.8.1 (rust-rocksdb 0.25)".to_string(),
        direct_reads: Some(flags.use_direct_reads),
        direct_writes: Some(flags.use_direct_io_for_flush_and_compaction),
        wal: Some(!flags.disable_wal),
        notes: vec![
            (
                "Memtables".to_string(),
                format!("max_write_buffer_number {}", MAX_IMMUTABLE_MEMTABLES + 1),
            ),
            (
                "Background".to_string(),
                format!("max_background_jobs {}", flags.max_background_jobs),
            ),
        ],
    };
    Ok(Rocks {
        db,
        write,
        _cache: cache,
        settings,
    })
}

impl Engine for Rocks {
    fn settings(&self) -> EngineSettings {
        self.settings.clone()
    }

    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        Ok(self.db.put_opt(key, value, &self.write)?)
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>> {
        Ok(self.db.get_pinned(key)?.map(|v| v.len()))
    }

    fn multi_get(&self, keys: &[Vec<u8>]) -> anyhow::Result<Vec<Option<usize>>> {
        let cf = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .context("no default column family")?;
        self.db
            .batched_multi_get_cf(cf, keys, false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.len())))
            .collect()
    }

    fn seek(&self, key: &[u8], count: usize) -> anyhow::Result<SeekOutcome> {
        let mut it = self.db.raw_iterator();
        it.seek(key);
        let mut out = SeekOutcome::default();
        for n in 0..count {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if n == 0 {
                out.found = k == key;
            }
            out.bytes += (k.len() + v.len()) as u64;
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    fn flush(&self) -> anyhow::Result<()> {
        Ok(self.db.flush()?)
    }

    fn compact(&self) -> anyhow::Result<()> {
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn unsupported(&self, _bench: Benchmark) -> Option<&'static str> {
        None
    }
}

fn main() -> ExitCode {
    compare::run::main("rocksdb-bench", open)
}
