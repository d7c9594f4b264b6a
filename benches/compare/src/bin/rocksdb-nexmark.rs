//! `rocksdb-nexmark`: `terrace-nexmark`'s queries, flags and output line over RocksDB
//! (the `rocksdb` crate), running the very same operator code through
//! `terrace_tools::nexmark::State`.
//!
//! ```text
//! rocksdb-nexmark --query=q18 --mode=per-event --events=2000000 --cache_size=2097152
//! ```
//!
//! Flink's layout: `--shards` (default one per core) parallel operator instances,
//! each on its own thread with its own RocksDB instance (one column family per
//! table); records go to the instance owning their routing id in batches of
//! `--batch_events` over bounded channels (4 batches in flight, as Terrace's keyed
//! execution). Settings mirror `rocksdb-bench`: block-based tables with
//! `--block_size` blocks, a full bloom filter of `--bloom_bits`, one LRU block cache
//! of `--cache_size` shared by the instances, `--write_buffer_size` memtables (up to 2
//! immutable), direct I/O for reads, flushes and compactions, no WAL. The object
//! store flags have no RocksDB counterpart and are refused.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Parser;
use futures_lite::future::block_on;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options, WriteOptions, DB,
};

use terrace_tools::bench::cpu::CpuTime;
use terrace_tools::bench::flags::CompressionType;
use terrace_tools::nexmark::codec::mix;
use terrace_tools::nexmark::flags::{result_line, NexmarkFlags};
use terrace_tools::nexmark::queries::{all_tables, Emitted, QueryOp};
use terrace_tools::nexmark::{
    event_source, Mode, QueryName, Record, State, MAX_PREFIX_SUFFIX_BYTES,
};

/// Immutable memtables kept before writes stall, as Terrace's default.
const MAX_IMMUTABLE_MEMTABLES: i32 = 2;
/// Batches queued per instance before the producer waits.
const BATCHES_IN_FLIGHT: usize = 4;

/// One operator instance's RocksDB.
struct Rocks {
    db: DB,
    tables: Vec<String>,
    write: WriteOptions,
}

impl Rocks {
    fn cf(&self, t: usize) -> anyhow::Result<&rocksdb::ColumnFamily> {
        let name = self.tables.get(t).ok_or_else(|| anyhow!("no table {t}"))?;
        self.db
            .cf_handle(name)
            .ok_or_else(|| anyhow!("no column family {name}"))
    }
}

impl State for Rocks {
    type Table = usize;
    type Error = anyhow::Error;

    fn table(&self, name: &str) -> anyhow::Result<usize> {
        self.tables
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| anyhow!("unknown table {name}"))
    }

    fn corrupt(what: String) -> anyhow::Error {
        anyhow!("nexmark operator state: {what}")
    }

    async fn get(&self, t: usize, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get_pinned_cf(self.cf(t)?, key)?.map(|v| v.to_vec()))
    }

    async fn put(&self, t: usize, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        Ok(self.db.put_cf_opt(self.cf(t)?, key, value, &self.write)?)
    }

    async fn delete(&self, t: usize, key: &[u8]) -> anyhow::Result<()> {
        Ok(self.db.delete_cf_opt(self.cf(t)?, key, &self.write)?)
    }

    async fn multi_get(&self, t: usize, keys: &[Vec<u8>]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        let cf = self.cf(t)?;
        self.db
            .batched_multi_get_cf(cf, keys, false)
            .into_iter()
            .map(|r| Ok(r?.map(|v| v.to_vec())))
            .collect()
    }

    async fn scan_prefix(
        &self,
        t: usize,
        prefix: &[u8],
    ) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let cf = self.cf(t)?;
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            cf,
            rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if k.len() <= prefix.len() + MAX_PREFIX_SUFFIX_BYTES {
                out.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

fn open(flags: &NexmarkFlags, cache: &Cache, path: &Path) -> anyhow::Result<Rocks> {
    let s = &flags.store;
    let mut table = BlockBasedOptions::default();
    table.set_block_size(s.block_size);
    table.set_block_cache(cache);
    if s.bloom_bits > 0 {
        table.set_bloom_filter(f64::from(s.bloom_bits), false);
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(s.write_buffer_size);
    opts.set_max_write_buffer_number(MAX_IMMUTABLE_MEMTABLES + 1);
    opts.set_target_file_size_base(s.target_file_size_base);
    opts.set_max_background_jobs(2);
    opts.set_use_direct_reads(true);
    opts.set_use_direct_io_for_flush_and_compaction(true);
    match s.compression_type {
        CompressionType::None => opts.set_compression_type(DBCompressionType::None),
        CompressionType::Zstd => {
            opts.set_compression_options(-14, s.compression_level, 0, 0);
            opts.set_compression_type(DBCompressionType::Zstd);
        }
    }
    let tables = all_tables();
    let cfs = tables
        .iter()
        .map(|t| ColumnFamilyDescriptor::new(t, opts.clone()));
    let db = DB::open_cf_descriptors(&opts, path, cfs).context("DB::open_cf_descriptors")?;
    let mut write = WriteOptions::default();
    write.disable_wal(true);
    Ok(Rocks { db, tables, write })
}

/// Live SST bytes plus memtable bytes of every column family.
fn state_bytes(rocks: &Rocks) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in &rocks.tables {
        let cf = rocks
            .db
            .cf_handle(name)
            .ok_or_else(|| anyhow!("no column family {name}"))?;
        for prop in [
            "rocksdb.live-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ] {
            total += rocks.db.property_int_value_cf(cf, prop)?.unwrap_or(0);
        }
    }
    Ok(total)
}

/// Runs one operator instance over the batches it receives; its state bytes.
fn instance(
    rocks: Rocks,
    mut op: QueryOp,
    mode: Mode,
    rx: flume::Receiver<Vec<Record>>,
) -> anyhow::Result<u64> {
    block_on(async {
        while let Ok(batch) = rx.recv() {
            match mode {
                // `main` refuses per-event-db.
                Mode::PerEvent | Mode::PerEventDb => {
                    for r in batch {
                        op.process(&rocks, r).await?;
                    }
                }
                Mode::Batched => op.process_batch(&rocks, batch).await?,
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    state_bytes(&rocks)
}

fn run_one(flags: &NexmarkFlags, query: QueryName) -> anyhow::Result<String> {
    let parent = flags.db.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("rocksdb-nexmark-{}-", query.name()))
        .tempdir_in(&parent)?;
    let n = flags.store.shard_count().max(1) as usize;
    let cache = Cache::new_lru_cache(usize::try_from(flags.store.cache_size)?);
    let emitted = Arc::new(Emitted::default());
    let mut lanes = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let rocks = open(flags, &cache, &dir.path().join(format!("instance-{i}")))?;
        let (tx, rx) = flume::bounded::<Vec<Record>>(BATCHES_IN_FLIGHT);
        let op = QueryOp::new(query, emitted.clone());
        let mode = flags.mode;
        workers.push(std::thread::spawn(move || instance(rocks, op, mode, rx)));
        lanes.push((tx, Vec::with_capacity(flags.batch_events)));
    }
    let source = event_source(flags.events, flags.pregenerate);
    let cpu = CpuTime::now();
    let start = terrace_tiering::clock::now();
    let mut count = 0u64;
    for record in source {
        count += 1;
        let Some(route) = query.route(&record.1) else {
            continue;
        };
        let lane = &mut lanes[(mix(u64::from_be_bytes(route)) % n as u64) as usize];
        lane.1.push(record);
        if lane.1.len() >= flags.batch_events {
            let batch = std::mem::replace(&mut lane.1, Vec::with_capacity(flags.batch_events));
            lane.0
                .send(batch)
                .map_err(|_| anyhow!("an operator instance stopped"))?;
        }
    }
    for (tx, buffer) in lanes {
        if !buffer.is_empty() {
            tx.send(buffer)
                .map_err(|_| anyhow!("an operator instance stopped"))?;
        }
    }
    let mut bytes = 0;
    for w in workers {
        bytes += w
            .join()
            .map_err(|_| anyhow!("an operator instance panicked"))??;
    }
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(&cpu).total();
    Ok(result_line(
        query,
        count,
        elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        bytes,
    ))
}

fn main() -> ExitCode {
    let flags = NexmarkFlags::parse();
    if let Err(msg) = flags.validate().and_then(|()| {
        let s = &flags.store;
        if s.object_store.is_some() || s.object_store_latency_ms > 0.0 || s.local_disk_budget.is_some() {
            Err("RocksDB has no object store: drop --object_store, --object_store_latency_ms and --local_disk_budget".into())
        } else if flags.mode == Mode::PerEventDb {
            Err("--mode=per-event-db is Terrace's Db handle; use per-event or batched".into())
        } else {
            Ok(())
        }
    }) {
        eprintln!("rocksdb-nexmark: {msg}");
        return ExitCode::from(2);
    }
    for &query in &flags.query.0 {
        match run_one(&flags, query) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("rocksdb-nexmark: {}: {e:#}", query.name());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
