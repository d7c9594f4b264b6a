//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::path::Path;

use terrace::{Db, Options};

/// Runs a future to completion on the test thread (the Db API is runtime-agnostic).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

/// Small options: tiny memtables and files so flushes and compactions happen often.
pub fn small_options(dir: &Path, shards: u32) -> Options {
    let mut o = Options::new(dir);
    o.shards = shards;
    o.pin_shards = false;
    o.memtable_bytes = 64 << 10;
    o.target_file_bytes = 64 << 10;
    o.level1_bytes = 1 << 20;
    o.block_cache_bytes = 256 << 10;
    o.spin_before_park_us = 0;
    o.tables = vec!["default".into(), "other".into()];
    o
}

pub fn open(opts: Options) -> Db {
    block_on(Db::open(opts)).expect("open")
}
