//! Helpers shared by the hybrid cache tests: an executor per test, a small cache
//! configuration, deterministic block contents and on-disk checks.

#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::LocalExecutorBuilder;
use terrace_tiering::hybrid::format::parse_segment_file_name;
use terrace_tiering::hybrid::{Eviction, HybridCache, HybridConfig};
use terrace_tiering::{BlockKey, Bytes};

/// Runs `f` on a fresh glommio executor with a fresh temporary directory.
pub fn run<F, Fut>(f: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    LocalExecutorBuilder::default()
        .spawn(move || async move { f(path).await })
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

/// 256 KiB of memory, 1 MiB of SSD in 64 KiB segments, 16 KiB write buffers, LRU (the
/// tests of the data flow read a block once and expect it demoted to the SSD; under
/// S3-FIFO such a block never reaches it: `tests/hybrid_s3fifo.rs`).
pub fn small_config(dir: &Path) -> HybridConfig {
    small_config_with(dir, Eviction::Lru)
}

/// [`small_config`] with the given replacement policy.
pub fn small_config_with(dir: &Path, eviction: Eviction) -> HybridConfig {
    let mut c = HybridConfig::new(dir.join("cache"), 256 << 10, 1 << 20);
    c.eviction = eviction;
    c.segment_bytes = 64 << 10;
    c.write_buffer_bytes = 16 << 10;
    c.max_writes_in_flight = 2;
    c.owner_id = 7;
    c
}

pub fn key(file_id: u64, offset: u64) -> BlockKey {
    BlockKey { file_id, offset }
}

/// splitmix64.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic contents of block `k` in generation `gen`: half text (compressible),
/// half noise, `len` bytes.
pub fn block(k: BlockKey, gen: u64, len: usize) -> Bytes {
    let seed = mix(k.file_id ^ mix(k.offset) ^ gen.rotate_left(17));
    let mut v = Vec::with_capacity(len);
    let text = format!("file {} block {} gen {gen} ", k.file_id, k.offset);
    while v.len() < len / 2 {
        v.extend_from_slice(text.as_bytes());
    }
    v.truncate(len / 2);
    let mut s = seed;
    while v.len() < len {
        s = mix(s);
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(len);
    Rc::from(v)
}

/// A load that must not run (the block must come from the cache).
pub async fn must_not_load() -> io::Result<Bytes> {
    Err(io::Error::other(
        "load called: block should have been cached",
    ))
}

/// Sum of the sizes of the segment files in `dir`, and their count.
pub fn segment_files_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        if e.file_name()
            .to_str()
            .and_then(parse_segment_file_name)
            .is_some()
        {
            // A file being unlinked right now may be gone already.
            if let Ok(m) = e.metadata() {
                total += m.len();
                n += 1;
            }
        }
    }
    (total, n)
}

/// Segment file paths in `dir`, oldest first.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter_map(|e| {
            let seq = e.file_name().to_str().and_then(parse_segment_file_name)?;
            Some((seq, e.path()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Asserts the memory and SSD bounds hold now (stats and files on disk).
pub fn assert_bounds(cache: &HybridCache) {
    let s = cache.stats();
    let cfg = cache.config();
    assert!(
        s.memory_used_bytes <= s.memory_capacity_bytes,
        "memory {} > {}",
        s.memory_used_bytes,
        s.memory_capacity_bytes
    );
    assert!(
        s.ssd_used_bytes <= s.ssd_capacity_bytes,
        "ssd {} > {}",
        s.ssd_used_bytes,
        s.ssd_capacity_bytes
    );
    assert!(s.ssd_live_bytes <= s.ssd_used_bytes.max(s.ssd_capacity_bytes));
    let (bytes, n) = segment_files_bytes(&cfg.dir);
    assert!(
        bytes <= cfg.ssd_bytes,
        "segment files hold {bytes} bytes > {}",
        cfg.ssd_bytes
    );
    assert!(n as u64 <= cfg.segment_slots(), "{n} segment files");
}

/// Waits (yielding to the background tasks) until `cond` holds or ~2 s pass.
pub async fn settle(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..2000 {
        if cond() {
            return true;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    cond()
}
