//! Random writes, flushes, compactions, reopens, checkpoints, garbage collections and
//! restores, checked against a `BTreeMap` model: a database restored from any
//! retained checkpoint equals the model as it was when that checkpoint was taken,
//! and keeps doing so after more writes, a reopen and its own garbage collection.
//! A counter table (`merge` with the u64_add operator) is written alongside, so merge
//! operands travel through checkpoint snapshots of memtables and restores too.
//! Seeded: `TERRACE_SEED` replays a failure, `TERRACE_MODEL_OPS` runs longer.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::time::Duration;

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use terrace::{Db, ObjectStoreSpec, Options, TableOptions};

/// Keys of the default table as they are; keys of the counter table behind
/// [`COUNTS`].
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const COUNTS: &[u8] = b"\xffcounts/";

fn options(root: &Path, name: &str) -> Options {
    std::fs::create_dir_all(root.join("store")).unwrap();
    let mut o = small_options(&root.join(name), 2);
    o.tables = vec!["default".into(), "counts".into()];
    o.table_options
        .insert("counts".into(), TableOptions::counter());
    o.max_key_groups = 16;
    o.object_store = ObjectStoreSpec::Uri(format!("file://{}", root.join("store").display()));
    o.gc_interval = None;
    o.gc_min_age = Duration::ZERO;
    o.retained_checkpoints = 3;
    o
}

fn check(db: &Db, model: &Model, what: &str) {
    let t = db.table("default").unwrap();
    let got = block_on(db.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter(|(k, _)| !k.starts_with(COUNTS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got.len(), want.len(), "{what}: key count");
    assert!(got == want, "{what}: contents differ");
    let c = db.table("counts").unwrap();
    let got = block_on(db.scan(c, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(COUNTS)?.to_vec(), v.clone())))
        .collect();
    assert!(got == want, "{what}: counters differ");
}

fn write(db: &Db, model: &mut Model, rng: &mut SmallRng) {
    let t = db.table("default").unwrap();
    if rng.gen_bool(0.2) {
        let c = db.table("counts").unwrap();
        let k = format!("c{}", rng.gen_range(0..300)).into_bytes();
        let n = rng.gen_range(1..100u64);
        let mk = [COUNTS, &k].concat();
        if rng.gen_bool(0.05) {
            block_on(db.delete(c, &k)).unwrap();
            model.remove(&mk);
        } else {
            block_on(db.merge(c, &k, &n.to_le_bytes())).unwrap();
            let old = model
                .get(&mk)
                .map_or(0, |v| u64::from_le_bytes(v.as_slice().try_into().unwrap()));
            model.insert(mk, (old + n).to_le_bytes().to_vec());
        }
        return;
    }
    let k = format!("k{}", rng.gen_range(0..2000)).into_bytes();
    if rng.gen_bool(0.15) {
        block_on(db.delete(t, &k)).unwrap();
        model.remove(&k);
    } else {
        let v: Vec<u8> = (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect();
        block_on(db.put(t, &k, &v)).unwrap();
        model.insert(k, v);
    }
}

fn run(seed: u64, ops: usize) {
    let root = tempfile::tempdir().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut db = open(options(root.path(), "main"));
    let mut model = Model::new();
    // Model at each checkpoint still retained.
    let mut at: BTreeMap<u64, Model> = BTreeMap::new();
    let mut next_id = 1u64;
    let mut restores = 0;
    for i in 0..ops {
        let what = format!("seed {seed}, op {i}");
        match rng.gen_range(0..1000) {
            0..=919 => write(&db, &mut model, &mut rng),
            920..=939 => block_on(db.flush()).unwrap(),
            940..=949 => block_on(db.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap(),
            950..=974 => {
                let info = block_on(db.checkpoint(next_id)).unwrap();
                at.insert(next_id, model.clone());
                for r in &info.released {
                    at.remove(r);
                }
                next_id += 1;
            }
            975..=984 => {
                block_on(db.gc()).unwrap();
            }
            985..=989 => {
                block_on(db.clone().close()).unwrap();
                db = open(options(root.path(), "main"));
                check(&db, &model, &format!("{what}: reopen"));
            }
            _ => {
                let Some(&id) = at.keys().nth(rng.gen_range(0..at.len().max(1))) else {
                    continue;
                };
                restores += 1;
                let name = format!("restored-{restores}");
                let (r, info) = block_on(Db::restore(options(root.path(), &name), Some(id)))
                    .unwrap_or_else(|e| panic!("{what}: restore {id}: {e}"));
                assert_eq!(info.checkpoint, id);
                let mut m = at[&id].clone();
                check(&r, &m, &format!("{what}: restored {id}"));
                for _ in 0..200 {
                    write(&r, &mut m, &mut rng);
                }
                block_on(r.flush()).unwrap();
                block_on(r.gc()).unwrap();
                block_on(r.close()).unwrap();
                let r = open(options(root.path(), &name));
                check(&r, &m, &format!("{what}: restored {id}, written, reopened"));
                block_on(r.close()).unwrap();
                std::fs::remove_dir_all(root.path().join(&name)).unwrap();
            }
        }
    }
    // Every retained checkpoint still restores, after all the garbage collection.
    block_on(db.gc()).unwrap();
    for (id, m) in &at {
        let name = format!("final-{id}");
        let (r, _) = block_on(Db::restore(options(root.path(), &name), Some(*id))).unwrap();
        check(&r, m, &format!("seed {seed}: final restore of {id}"));
        block_on(r.close()).unwrap();
    }
    check(&db, &model, &format!("seed {seed}: final"));
    block_on(db.close()).unwrap();
    if ops >= 3000 {
        assert!(
            restores > 3 && next_id > 10,
            "the workload must restore and checkpoint"
        );
    }
}

#[test]
fn restored_checkpoints_match_the_model() {
    let seed = std::env::var("TERRACE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| terrace_tiering::clock::fresh_seed() % 1_000_000);
    let ops = std::env::var("TERRACE_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    eprintln!("checkpoint model test: seed {seed}, {ops} ops (replay with TERRACE_SEED={seed})");
    run(seed, ops);
}
