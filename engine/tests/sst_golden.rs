//! The committed v1 SST fixture still reads back exactly, and writing the same input
//! again produces the same bytes — so any change to the on-disk format fails here
//! first. Regenerate deliberately with `TERRACE_REGEN_FIXTURES=1` (and bump the
//! format version if old files can no longer be read).

#![allow(clippy::unwrap_used)]

mod sst_support;

use std::path::PathBuf;
use std::rc::Rc;

use terrace::key::{make_internal_key, ValueKind};
use terrace::sst::{TableOptions, FORMAT_VERSION};
use terrace::Compression;
use terrace_tiering::BlockCache;

use sst_support::*;

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sst/v1-basic.sst")
}

fn golden_options() -> TableOptions {
    TableOptions {
        block_bytes: 1024,
        restart_interval: 4,
        bloom_bits_per_key: 10,
        compression: Compression::Zstd { level: 3 },
    }
}

/// splitmix64: a fixed generator, so the fixture never depends on a crate's RNG.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixture's entries: 303 entries over 200 user keys in 4 key groups, with
/// multi-version keys, deletions, compressible and incompressible values.
fn golden_model() -> Model {
    let mut rng = 42u64;
    let mut model = Model::default();
    for i in 0..200u32 {
        let sk = state_key((i % 4) as u16, format!("user-{i:04}").as_bytes());
        let versions = if i % 5 == 0 {
            3
        } else if i % 7 == 0 {
            2
        } else {
            1
        };
        for v in 0..versions {
            let seqno = u64::from(i) * 10 + v + 1;
            let r = next(&mut rng);
            let (kind, value) = if r.is_multiple_of(10) {
                (ValueKind::Delete, Vec::new())
            } else if (i / 16) % 4 != 3 {
                let text = format!("value {i} version {v} ");
                (
                    ValueKind::Put,
                    text.repeat(1 + (r % 12) as usize).into_bytes(),
                )
            } else {
                let len = 400 + (r % 500) as usize;
                let mut s = r;
                let bytes = (0..len).map(|_| next(&mut s) as u8).collect();
                (ValueKind::Put, bytes)
            };
            model.insert(sk.clone(), seqno, kind, value);
        }
    }
    model
}

#[test]
fn golden_v1_file_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let model = golden_model();
        let entries = model.entries();
        // Read a copy on the temp filesystem (O_DIRECT needs a real disk file).
        let copy = d.join("v1-basic.sst");
        std::fs::copy(fixture_path(), &copy)
            .expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        let t = open_local(&copy, 1).await;
        assert_eq!(FORMAT_VERSION, 1);

        let p = t.properties();
        assert_eq!(p.entry_count, 303);
        assert_eq!(p.entry_count, entries.len() as u64);
        let dels = model
            .0
            .values()
            .filter(|e| e.kind == ValueKind::Delete)
            .count() as u64;
        assert_eq!(p.deletion_count, dels);
        assert_eq!(p.smallest_key, entries[0].0);
        assert_eq!(p.largest_key, entries.last().unwrap().0);
        assert_eq!((p.first_key_group, p.last_key_group), (0, 3));
        assert_eq!((p.min_seqno, p.max_seqno), (1, 1991));
        assert_eq!(p.compression, Compression::Zstd { level: 3 });
        let raw_keys: u64 = entries.iter().map(|(k, _)| k.len() as u64).sum();
        let raw_values: u64 = entries.iter().map(|(_, v)| v.len() as u64).sum();
        assert_eq!((p.raw_key_bytes, p.raw_value_bytes), (raw_keys, raw_values));

        // Some data blocks are compressed and some stored raw (type byte after contents).
        let bytes = std::fs::read(&copy).unwrap();
        let layout = terrace::sst::fuzzing::data_block_layout(&t);
        assert_eq!(layout.len() as u64, p.data_block_count);
        let types: Vec<u8> = layout
            .iter()
            .map(|&(o, l)| bytes[(o + l - 5) as usize])
            .collect();
        assert!(
            types.contains(&0) && types.contains(&1),
            "block types {types:?}"
        );
        assert_blocks_aligned(&t);

        let cache = Rc::new(BlockCache::new(1 << 20));
        assert_eq!(scan_cached(&t, cache.clone()).await.unwrap(), entries);
        assert_eq!(scan_sequential(&t, 8192).await.unwrap(), entries);
        for ((sk, _), _) in model.0.iter() {
            for snap in [u64::MAX, 500, 1000] {
                assert_eq!(t.get(sk, snap, &cache).await.unwrap(), model.get(sk, snap));
            }
        }
        let absent = state_key(2, b"user-9999");
        assert_eq!(t.get(&absent, u64::MAX, &cache).await.unwrap(), None);
        let mut it = t.iter(cache);
        it.seek(&make_internal_key(
            &state_key(1, b"user-0005"),
            1,
            ValueKind::Put,
        ))
        .await
        .unwrap();
        assert_eq!(
            terrace::key::state_key_of(it.key()),
            &state_key(1, b"user-0009")[..]
        );
    });
}

#[test]
fn rewriting_the_golden_input_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let path = d.join("regen.sst");
        write_table(&path, 1, golden_options(), &golden_model().entries()).await;
        let fresh = std::fs::read(&path).unwrap();
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(fixture_path().parent().unwrap()).unwrap();
            std::fs::write(fixture_path(), &fresh).unwrap();
        }
        let committed = std::fs::read(fixture_path())
            .expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        assert!(
            fresh == committed,
            "SST bytes changed ({} vs {} bytes): the format changed; bump FORMAT_VERSION or \
             regenerate with TERRACE_REGEN_FIXTURES=1 if intended",
            fresh.len(),
            committed.len()
        );
    });
}

fn kinds_fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/sst/v1-state-kinds.sst")
}

/// The state-kinds fixture: merge operands (kind 2) of a list table (append
/// operands: `[len u32 LE][bytes]`) and a counter table (u64 LE), next to puts and
/// tombstones, and values of a TTL table (`[write time ms u64 LE][value]`).
fn kinds_model() -> Model {
    let mut model = Model::default();
    let mut seqno = 0u64;
    let mut add = |model: &mut Model, kg: u16, key: &str, kind: ValueKind, value: Vec<u8>| {
        seqno += 1;
        model.insert(state_key(kg, key.as_bytes()), seqno, kind, value);
    };
    for i in 0..40u32 {
        let list_op = terrace::merge::encode_list(&[format!("element {i}")]);
        add(
            &mut model,
            0,
            &format!("list-{i:03}"),
            ValueKind::Merge,
            list_op,
        );
        add(
            &mut model,
            1,
            &format!("count-{i:03}"),
            ValueKind::Merge,
            u64::from(i).to_le_bytes().to_vec(),
        );
        let written_ms = 1_700_000_000_000u64 + u64::from(i) * 1000;
        let value = [
            written_ms.to_le_bytes().as_slice(),
            format!("ttl value {i}").as_bytes(),
        ]
        .concat();
        add(&mut model, 2, &format!("ttl-{i:03}"), ValueKind::Put, value);
        if i % 4 == 0 {
            add(
                &mut model,
                3,
                &format!("gone-{i:03}"),
                ValueKind::Delete,
                Vec::new(),
            );
        }
    }
    model
}

#[test]
fn state_kinds_fixture_reads_back_and_rewrites_identically() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    run(dir.path(), move || async move {
        let model = kinds_model();
        let entries = model.entries();
        let path = d.join("kinds.sst");
        write_table(&path, 1, golden_options(), &entries).await;
        let fresh = std::fs::read(&path).unwrap();
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            std::fs::write(kinds_fixture_path(), &fresh).unwrap();
        }
        let committed = std::fs::read(kinds_fixture_path())
            .expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        assert!(fresh == committed, "the state-kinds SST bytes changed");

        let copy = d.join("v1-state-kinds.sst");
        std::fs::copy(kinds_fixture_path(), &copy).unwrap();
        let t = open_local(&copy, 2).await;
        assert_eq!(t.properties().entry_count, 130);
        assert_eq!(t.properties().deletion_count, 10);
        let cache = Rc::new(BlockCache::new(1 << 20));
        assert_eq!(scan_cached(&t, cache.clone()).await.unwrap(), entries);
        for ((sk, _), _) in model.0.iter() {
            assert_eq!(
                t.get(sk, u64::MAX, &cache).await.unwrap(),
                model.get(sk, u64::MAX)
            );
        }
        let (_, kind, operand) = t
            .get(&state_key(1, b"count-007"), u64::MAX, &cache)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (kind, operand),
            (ValueKind::Merge, 7u64.to_le_bytes().to_vec())
        );
    });
}
