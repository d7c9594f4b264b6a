//! An SST written from random sorted entries reads back exactly like a `BTreeMap`
//! model: point gets at many snapshots, seeks, and full scans in both iterator modes,
//! across compression, filter and block-size settings.

#![allow(clippy::unwrap_used)]

mod sst_support;

use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use terrace::key::{make_internal_key, ValueKind, MAX_SEQNO};
use terrace::sst::{TableOptions, TableReader, TableWriter};
use terrace::{Compression, ErrorKind};
use terrace_tiering::BlockCache;

use sst_support::*;

fn random_model(rng: &mut StdRng, keys: usize) -> (Model, Vec<Vec<u8>>) {
    let mut model = Model::default();
    let mut state_keys = Vec::new();
    let mut seqno = 1u64;
    for _ in 0..keys {
        let len = rng.gen_range(0..24);
        let user: Vec<u8> = (0..len).map(|_| rng.gen_range(b'a'..=b'f')).collect();
        let sk = state_key(rng.gen_range(0..8), &user);
        let versions = if rng.gen_bool(0.3) {
            rng.gen_range(2..5)
        } else {
            1
        };
        for _ in 0..versions {
            seqno += rng.gen_range(1..5);
            let kind = if rng.gen_bool(0.15) {
                ValueKind::Delete
            } else {
                ValueKind::Put
            };
            let vlen = match rng.gen_range(0..100) {
                0..=1 => rng.gen_range(5000..20000), // larger than a block
                2..=9 => rng.gen_range(200..1500),
                _ => rng.gen_range(0..64),
            };
            let value = if kind == ValueKind::Delete {
                Vec::new()
            } else if rng.gen_bool(0.5) {
                // Compressible.
                vec![b'x'; vlen]
            } else {
                (0..vlen).map(|_| rng.gen()).collect()
            };
            model.insert(sk.clone(), seqno, kind, value);
        }
        state_keys.push(sk);
    }
    (model, state_keys)
}

async fn check_config(dir: &std::path::Path, seed: u64, opts: TableOptions) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (model, state_keys) = random_model(&mut rng, 1500);
    let entries = model.entries();
    let path = dir.join(format!("t-{seed}.sst"));
    let props = write_table(&path, seed, opts.clone(), &entries).await;

    assert_eq!(props.entry_count, entries.len() as u64);
    let dels = model
        .0
        .values()
        .filter(|e| e.kind == ValueKind::Delete)
        .count();
    assert_eq!(props.deletion_count, dels as u64);
    assert_eq!(props.smallest_key, entries[0].0);
    assert_eq!(props.largest_key, entries.last().unwrap().0);
    assert_eq!(props.file_size, std::fs::metadata(&path).unwrap().len());
    assert_eq!(props.compression, opts.compression);

    let t = open_local(&path, seed).await;
    assert_eq!(t.properties(), &props, "properties read back differ");
    assert_blocks_aligned(&t);

    let cache = Rc::new(BlockCache::new(1 << 20));
    assert_eq!(scan_cached(&t, cache.clone()).await.unwrap(), entries);
    for ahead in [1, 4, 64] {
        let fresh = Rc::new(BlockCache::new(1 << 20));
        assert_eq!(scan_cached_ahead(&t, fresh, ahead).await.unwrap(), entries);
    }
    for readahead in [4096, 64 << 10, 8 << 20] {
        assert_eq!(scan_sequential(&t, readahead).await.unwrap(), entries);
    }

    let max_seq = props.max_seqno;
    for sk in &state_keys {
        assert!(t.may_contain(sk), "bloom false negative");
        for snap in [u64::MAX, max_seq, rng.gen_range(0..=max_seq), 0] {
            let got = t.get(sk, snap, &cache).await.unwrap();
            assert_eq!(got, model.get(sk, snap), "get {sk:?} at {snap}");
        }
    }
    for _ in 0..300 {
        let user: Vec<u8> = (0..rng.gen_range(0..24))
            .map(|_| rng.gen_range(b'a'..=b'g'))
            .collect();
        let sk = state_key(rng.gen_range(0..9), &user);
        assert_eq!(
            t.get(&sk, u64::MAX, &cache).await.unwrap(),
            model.get(&sk, u64::MAX)
        );
    }

    let mut cached = t.iter(cache.clone());
    let mut ahead = t.iter(Rc::new(BlockCache::new(64 << 10))).readahead(8);
    let mut seq = t.iter_sequential(16 << 10);
    for i in 0..400 {
        let target = if i % 2 == 0 {
            let sk = &state_keys[rng.gen_range(0..state_keys.len())];
            make_internal_key(sk, rng.gen_range(0..=max_seq + 1), ValueKind::Put)
        } else {
            let user: Vec<u8> = (0..rng.gen_range(0..10))
                .map(|_| rng.gen_range(b'a'..=b'g'))
                .collect();
            make_internal_key(
                &state_key(rng.gen_range(0..9), &user),
                MAX_SEQNO,
                ValueKind::Put,
            )
        };
        let want = model.seek(&target);
        for it in [&mut cached, &mut ahead, &mut seq] {
            it.seek(&target).await.unwrap();
            let got = it.valid().then(|| (it.key().to_vec(), it.value().to_vec()));
            assert_eq!(got, want);
            // A few steps forward stay in step with the model.
            if let Some((k, _)) = &want {
                let pos = entries.iter().position(|(ik, _)| ik == k).unwrap();
                for step in 1..12 {
                    it.next().await.unwrap();
                    match entries.get(pos + step) {
                        Some((k, v)) => {
                            assert!(it.valid());
                            assert_eq!((it.key(), it.value()), (&k[..], &v[..]));
                        }
                        None => {
                            assert!(!it.valid());
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn random_tables_match_the_model_in_every_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let mut seed = 1;
        for compression in [Compression::None, Compression::Zstd { level: 3 }] {
            for bloom_bits_per_key in [0, 10] {
                for (block_bytes, restart_interval) in [(4096, 16), (512, 1), (1000, 3)] {
                    let opts = TableOptions {
                        block_bytes,
                        restart_interval,
                        bloom_bits_per_key,
                        compression,
                    };
                    check_config(&d, seed, opts).await;
                    seed += 1;
                }
            }
        }
    });
}

#[test]
fn out_of_order_and_malformed_keys_are_rejected_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let path = d.join("order.sst");
        let mut w = TableWriter::create(&path, 1, TableOptions::default())
            .await
            .unwrap();
        let a5 = make_internal_key(&state_key(0, b"a"), 5, ValueKind::Put);
        let a7 = make_internal_key(&state_key(0, b"a"), 7, ValueKind::Put);
        let b1 = make_internal_key(&state_key(0, b"b"), 1, ValueKind::Put);
        w.add(&a5, b"x").await.unwrap();
        for bad in [&a5, &a7] {
            let e = w.add(bad, b"y").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
        let e = w.add(b"short", b"").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let mut bad_kind = b1.clone();
        *bad_kind.last_mut().unwrap() = 0;
        let n = bad_kind.len();
        bad_kind[n - 8] = 7; // kind byte is the low byte of the LE trailer
        assert_eq!(
            w.add(&bad_kind, b"").await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        w.add(&b1, b"z").await.unwrap();
        let props = w.finish().await.unwrap();
        assert_eq!(props.entry_count, 2);
        let t = open_local(&path, 1).await;
        let cache = BlockCache::new(1 << 20);
        assert_eq!(
            t.get(&state_key(0, b"a"), u64::MAX, &cache).await.unwrap(),
            Some((5, ValueKind::Put, b"x".to_vec()))
        );
        assert_eq!(t.get(&state_key(0, b"a"), 4, &cache).await.unwrap(), None);
    });
}

#[test]
fn abandoned_and_empty_tables_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let p1 = d.join("abandoned.sst");
        let mut w = TableWriter::create(&p1, 1, TableOptions::default())
            .await
            .unwrap();
        for i in 0..5000u32 {
            let k = make_internal_key(&state_key(0, &i.to_be_bytes()), 1, ValueKind::Put);
            w.add(&k, &[7; 100]).await.unwrap();
        }
        assert!(w.estimated_size() > 500_000);
        w.abandon().await;
        assert!(!p1.exists());

        let p2 = d.join("empty.sst");
        let w = TableWriter::create(&p2, 2, TableOptions::default())
            .await
            .unwrap();
        let e = w.finish().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(!p2.exists());
    });
}

#[test]
fn repeated_gets_hit_the_cache_and_sequential_scans_bypass_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let path = d.join("cache.sst");
        let entries: Vec<_> = (0..2000u32)
            .map(|i| {
                let k = make_internal_key(&state_key(1, &i.to_be_bytes()), 9, ValueKind::Put);
                (k, vec![i as u8; 50])
            })
            .collect();
        write_table(&path, 3, TableOptions::default(), &entries).await;
        let t = open_local(&path, 3).await;
        let cache = Rc::new(BlockCache::new(8 << 20));
        assert_eq!(scan_sequential(&t, 1 << 20).await.unwrap(), entries);
        assert_eq!(cache.stats().used_bytes, 0);
        let sk = state_key(1, &77u32.to_be_bytes());
        let first = t.get(&sk, u64::MAX, &cache).await.unwrap();
        let misses = cache.stats().misses;
        let second = t.get(&sk, u64::MAX, &cache).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first, Some((9, ValueKind::Put, vec![77; 50])));
        assert_eq!(cache.stats().misses, misses);
        assert!(cache.stats().hits >= 1);
    });
}

#[test]
fn concurrent_gets_on_one_table_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let path = d.join("concurrent.sst");
        let entries = numbered_entries(2, 3, 5000, 20);
        write_table(&path, 4, TableOptions::default(), &entries).await;
        let t = open_local(&path, 4).await;
        let cache = Rc::new(BlockCache::new(1 << 20));
        // Many lookups in flight at once, each awaiting its own block read.
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (t, cache) = (t.clone(), cache.clone());
                let i = i * 25;
                glommio::spawn_local(async move {
                    let sk = state_key(2, &i.to_be_bytes());
                    let got = t.get(&sk, u64::MAX, &cache).await.unwrap();
                    assert_eq!(got, Some((3, ValueKind::Put, i.to_le_bytes().repeat(20))));
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
    });
}

#[test]
fn a_remote_open_reads_footer_and_metadata_in_one_request_when_they_fit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        // Small table: the speculative tail covers the file. Big one (tiny values,
        // a heavy filter): its metadata outgrows the tail and takes a second read.
        for (name, n, bloom, want_reads) in
            [("small.sst", 2000u32, 10, 1), ("big.sst", 120_000, 20, 2)]
        {
            let path = d.join(name);
            let entries: Vec<_> = (0..n)
                .map(|i| {
                    let k = make_internal_key(&state_key(1, &i.to_be_bytes()), 5, ValueKind::Put);
                    (k, vec![i as u8])
                })
                .collect();
            let opts = TableOptions {
                bloom_bits_per_key: bloom,
                ..TableOptions::default()
            };
            write_table(&path, 3, opts, &entries).await;
            let bytes = std::fs::read(&path).unwrap();
            let size = bytes.len() as u64;
            let src = Counting::new(bytes.clone(), None);
            let t = TableReader::open_remote(3, path.clone(), src.clone(), 0)
                .await
                .unwrap();
            assert_eq!(src.reads.get(), want_reads, "{name}: {size} bytes");
            let local = open_local(&path, 3).await;
            assert_eq!(t.properties(), local.properties(), "{name}");
            assert_eq!(
                scan_sequential(&Rc::new(t), 1 << 20).await.unwrap(),
                entries,
                "{name}"
            );
            // Told the metadata's size (what the manifest records), one read of
            // exactly that tail, whatever the size.
            let meta = local.properties().meta_bytes;
            assert!(meta > 0 && meta < size, "{name}: {meta} of {size} bytes");
            let src = Counting::new(bytes, None);
            let t = TableReader::open_remote(3, path.clone(), src.clone(), meta)
                .await
                .unwrap();
            assert_eq!(src.reads.get(), 1, "{name}: told {meta} bytes");
            assert_eq!(t.properties(), local.properties(), "{name}");
        }
    });
}

/// A source that counts the reads it serves and how many are in flight at once,
/// each taking `delay` when set.
struct Counting {
    inner: terrace::sst::fuzzing::MemSource,
    delay: Option<std::time::Duration>,
    reads: std::cell::Cell<u32>,
    in_flight: Rc<std::cell::Cell<u32>>,
    most_in_flight: std::cell::Cell<u32>,
}

impl Counting {
    fn new(bytes: Vec<u8>, delay: Option<std::time::Duration>) -> Rc<Counting> {
        Rc::new(Counting {
            inner: terrace::sst::fuzzing::MemSource(bytes),
            delay,
            reads: std::cell::Cell::new(0),
            in_flight: Rc::new(std::cell::Cell::new(0)),
            most_in_flight: std::cell::Cell::new(0),
        })
    }
}

impl terrace_tiering::BlockSource for Counting {
    fn read_at(
        &self,
        offset: u64,
        len: usize,
    ) -> terrace_tiering::LocalBoxFuture<'_, std::io::Result<terrace_tiering::Bytes>> {
        self.reads.set(self.reads.get() + 1);
        self.in_flight.set(self.in_flight.get() + 1);
        self.most_in_flight
            .set(self.most_in_flight.get().max(self.in_flight.get()));
        // Counted out when the read ends or is dropped (a cancelled read-ahead).
        struct Out(Rc<std::cell::Cell<u32>>);
        impl Drop for Out {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        let out = Out(self.in_flight.clone());
        Box::pin(async move {
            if let Some(d) = self.delay {
                glommio::timer::sleep(d).await;
            }
            let r = self.inner.read_at(offset, len).await;
            drop(out);
            r
        })
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }
}

#[test]
fn a_cached_scan_reads_ahead_with_several_block_reads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let path = d.join("ahead.sst");
        let entries = numbered_entries(1, 5, 6000, 25);
        write_table(&path, 4, TableOptions::default(), &entries).await;
        let bytes = std::fs::read(&path).unwrap();
        for (ahead, most) in [(0usize, 1u32), (8, 8), (32, 32)] {
            let src = Counting::new(bytes.clone(), Some(std::time::Duration::from_millis(2)));
            let t = Rc::new(
                TableReader::open_remote(4, path.clone(), src.clone(), 0)
                    .await
                    .unwrap(),
            );
            let blocks = t.block_count() as u32;
            assert!(
                blocks > 100,
                "{blocks} blocks: too few to see the window grow"
            );
            let opened = src.reads.get();
            src.most_in_flight.set(0);
            let cache = Rc::new(BlockCache::new(1 << 20));
            assert_eq!(
                scan_cached_ahead(&t, cache.clone(), ahead).await.unwrap(),
                entries,
                "read-ahead {ahead}"
            );
            // Every data block read once: nothing loaded twice, nothing past the end.
            assert_eq!(src.reads.get() - opened, blocks, "read-ahead {ahead}");
            assert_eq!(src.most_in_flight.get(), most, "read-ahead {ahead}");

            // Seeks into the middle with a stretch of steps after each: the window
            // built up before a seek is dropped and the entries stay right.
            // A bounded scan reads no block past the one holding its end: as many
            // reads as the same scan without read-ahead makes.
            let (from, to) = (1234, 4321);
            let mut reads = Vec::new();
            for a in [0, ahead] {
                let before = src.reads.get();
                let mut it = t.iter(Rc::new(BlockCache::new(1 << 20))).readahead(a);
                it.seek(&entries[from].0).await.unwrap();
                it.bound_readahead(&entries[to].0);
                let mut n = from;
                while it.valid() && it.key() < &entries[to].0[..] {
                    assert_eq!(it.key(), &entries[n].0[..]);
                    n += 1;
                    it.next().await.unwrap();
                }
                assert_eq!(n, to);
                drop(it);
                reads.push(src.reads.get() - before);
            }
            assert_eq!(reads[0], reads[1], "read-ahead {ahead}: reads past the end");

            let mut it = t.iter(cache).readahead(ahead);
            for start in [blocks as usize * 8, 100, 5000] {
                let start = start.min(entries.len() - 1);
                it.seek(&entries[start].0).await.unwrap();
                for (k, v) in &entries[start..(start + 700).min(entries.len())] {
                    assert!(it.valid());
                    assert_eq!((it.key(), it.value()), (&k[..], &v[..]));
                    it.next().await.unwrap();
                }
            }
        }
    });
}
