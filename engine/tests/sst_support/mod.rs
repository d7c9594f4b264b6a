//! Shared helpers of the SST integration tests: an executor wrapper, key builders, a
//! `BTreeMap` model of a table, and readers that dump everything a table serves.

#![allow(dead_code, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use terrace::key::{make_internal_key, ValueKind, STATE_KEY_PREFIX_LEN};
use terrace::sst::{TableOptions, TableReader, TableWriter};
use terrace::{Result, TableId};
use terrace_tiering::{BlockCache, BlockSource, LocalFile};

/// Runs `f` on a fresh glommio executor after probing direct I/O in `dir`.
pub fn run<F, Fut>(dir: &Path, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            terrace_tiering::probe_direct_io(&dir).await.unwrap();
            f().await
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A state key in key group `kg` of table 1.
pub fn state_key(kg: u16, user_key: &[u8]) -> Vec<u8> {
    let mut sk = Vec::new();
    terrace::key::encode_state_key(&mut sk, kg, TableId(1), user_key);
    sk
}

/// `n` puts at `seqno` in key group `kg`, keyed by the big-endian index, each value
/// the little-endian index repeated `repeat` times: sorted, ready for `write_table`.
pub fn numbered_entries(kg: u16, seqno: u64, n: u32, repeat: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let k = make_internal_key(&state_key(kg, &i.to_be_bytes()), seqno, ValueKind::Put);
            (k, i.to_le_bytes().repeat(repeat))
        })
        .collect()
}

/// Model key: state key ascending, seqno descending — the internal order.
pub type ModelKey = (Vec<u8>, Reverse<u64>);

/// One entry of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: ValueKind,
    pub value: Vec<u8>,
}

/// A table's expected contents in internal-key order.
#[derive(Default, Clone)]
pub struct Model(pub BTreeMap<ModelKey, Entry>);

impl Model {
    pub fn insert(&mut self, sk: Vec<u8>, seqno: u64, kind: ValueKind, value: Vec<u8>) {
        self.0.insert((sk, Reverse(seqno)), Entry { kind, value });
    }

    /// `(internal key, value)` pairs in order.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .iter()
            .map(|((sk, Reverse(s)), e)| (make_internal_key(sk, *s, e.kind), e.value.clone()))
            .collect()
    }

    /// What `TableReader::get` should answer.
    pub fn get(&self, sk: &[u8], snapshot: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
        let from = (sk.to_vec(), Reverse(snapshot));
        self.0
            .range(from..)
            .next()
            .filter(|((k, _), _)| k == sk)
            .map(|((_, Reverse(s)), e)| (*s, e.kind, e.value.clone()))
    }

    /// What a seek to `target` should land on (linear: fine for test sizes).
    pub fn seek(&self, target: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        self.entries()
            .into_iter()
            .find(|(ik, _)| terrace::key::compare_internal(ik, target).is_ge())
    }
}

/// Writes `entries` (already in order) into `path`.
pub async fn write_table(
    path: &Path,
    file_id: u64,
    opts: TableOptions,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> terrace::sst::TableProperties {
    let mut w = TableWriter::create(path, file_id, opts).await.unwrap();
    for (k, v) in entries {
        w.add(k, v).await.unwrap();
    }
    w.finish().await.unwrap()
}

/// Opens `path` from the local disk.
pub async fn open_local(path: &Path, file_id: u64) -> Rc<TableReader> {
    let src: Rc<dyn BlockSource> = Rc::new(LocalFile::open(path).await.unwrap());
    Rc::new(
        TableReader::open(file_id, path.to_path_buf(), src)
            .await
            .unwrap(),
    )
}

/// Every entry, via the cached iterator.
pub async fn scan_cached(
    t: &Rc<TableReader>,
    cache: Rc<BlockCache>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    scan_cached_ahead(t, cache, 0).await
}

/// Every entry, via the cached iterator reading up to `readahead` blocks ahead.
pub async fn scan_cached_ahead(
    t: &Rc<TableReader>,
    cache: Rc<BlockCache>,
    readahead: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = t.iter(cache).readahead(readahead);
    it.seek_to_first().await?;
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().await?;
    }
    Ok(out)
}

/// Every entry, via the sequential iterator.
pub async fn scan_sequential(
    t: &Rc<TableReader>,
    readahead: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = t.iter_sequential(readahead);
    it.seek_to_first().await?;
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().await?;
    }
    Ok(out)
}

/// True if `sk` is long enough to be a state key.
pub fn is_state_key(sk: &[u8]) -> bool {
    sk.len() >= STATE_KEY_PREFIX_LEN
}

/// Checks the O_DIRECT placement rule: no data block of ≤ 4 KiB crosses a 4 KiB line.
pub fn assert_blocks_aligned(t: &TableReader) {
    for (off, len) in terrace::sst::fuzzing::data_block_layout(t) {
        if len <= 4096 {
            assert_eq!(
                off / 4096,
                (off + len - 1) / 4096,
                "block at {off} of {len} bytes straddles a 4 KiB boundary"
            );
        }
    }
}
