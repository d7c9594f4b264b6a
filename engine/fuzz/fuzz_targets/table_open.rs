//! Opens arbitrary bytes as an SST through an in-memory block source and reads
//! everything it serves: both scan modes, point gets of every key seen and a seek.
//! Any panic is a bug; errors are the expected outcome.

#![no_main]

use std::path::PathBuf;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use terrace::sst::fuzzing::MemSource;
use terrace::sst::TableReader;
use terrace_tiering::{BlockCache, BlockSource};

async fn read_all(bytes: Vec<u8>) -> terrace::Result<()> {
    let src: Rc<dyn BlockSource> = Rc::new(MemSource(bytes));
    let t = Rc::new(TableReader::open(1, PathBuf::from("fuzz.sst"), src).await?);
    let cache = Rc::new(BlockCache::new(1 << 20));
    let mut keys = Vec::new();
    let mut it = t.iter(cache.clone());
    it.seek_to_first().await?;
    while it.valid() && keys.len() < 10_000 {
        keys.push(it.key().to_vec());
        it.next().await?;
    }
    let mut seq = t.iter_sequential(4096);
    seq.seek_to_first().await?;
    while seq.valid() {
        seq.next().await?;
    }
    for k in &keys {
        let sk = terrace::key::state_key_of(k);
        let _ = t.may_contain(sk);
        t.get(sk, u64::MAX, &cache).await?;
        seq.seek(k).await?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = futures_lite::future::block_on(read_all(data.to_vec()));
});
