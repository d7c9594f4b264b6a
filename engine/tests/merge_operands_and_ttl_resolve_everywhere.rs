//! Merge operands and TTL values resolve the same on every path: point reads,
//! batched reads, scans and iterators, with the operands spread over the memtable,
//! L0 files and deeper levels, across flushes, compactions and reopens.

mod common;

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use terrace::merge::{decode_list, encode_list};
use terrace::{Db, IterOptions, KeyRange, Options, TableOptions};
use terrace_tiering::clock::ManualClock;

fn options(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Options {
    let mut o = small_options(dir, 2);
    o.tables = vec!["counts".into(), "lists".into(), "ttl".into()];
    o.table_options
        .insert("counts".into(), TableOptions::counter());
    o.table_options.insert("lists".into(), TableOptions::list());
    o.table_options.insert(
        "ttl".into(),
        TableOptions::with_ttl(Duration::from_secs(10)),
    );
    o.clock = clock.clone();
    o
}

fn u64_le(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

async fn all(db: &Db, t: terrace::TableId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let scanned = db
        .scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .await
        .unwrap();
    let mut it = db
        .iter(t, KeyRange::all(), IterOptions::default())
        .await
        .unwrap();
    let mut iterated = Vec::new();
    loop {
        let b = it.next_batch().await.unwrap();
        if b.is_empty() {
            break;
        }
        iterated.extend(b.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
    }
    assert_eq!(scanned, iterated, "scan and iterator disagree");
    scanned
}

#[test]
fn counters_and_lists_sum_operands_from_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let mut db = open(options(dir.path(), &clock));
    let keys: Vec<Vec<u8>> = (0..50)
        .map(|i| format!("key-{i:02}").into_bytes())
        .collect();
    for round in 1..=6u64 {
        block_on(async {
            let (c, l) = (db.table("counts").unwrap(), db.table("lists").unwrap());
            for k in &keys {
                db.merge(c, k, &round.to_le_bytes()).await.unwrap();
                db.merge(c, k, &round.to_le_bytes()).await.unwrap();
                db.merge(l, k, format!("r{round}").as_bytes())
                    .await
                    .unwrap();
            }
            match round {
                1 | 3 => db.flush().await.unwrap(),
                2 => db
                    .compact_range(Bound::Unbounded, Bound::Unbounded)
                    .await
                    .unwrap(),
                4 => {
                    // A put rebases a key: older operands no longer count.
                    db.put(c, &keys[0], &u64_le(1000)).await.unwrap();
                    db.put(l, &keys[0], &encode_list(&[b"base"])).await.unwrap();
                    db.delete(c, &keys[1]).await.unwrap();
                    db.delete(l, &keys[1]).await.unwrap();
                    db.flush().await.unwrap();
                }
                _ => {}
            }
        });
        if round == 5 {
            block_on(db.clone().close()).unwrap();
            db = open(options(dir.path(), &clock));
        }
    }
    let want_count = |i: usize| -> u64 {
        match i {
            0 => 1000 + 2 * (5 + 6),
            1 => 2 * (5 + 6),
            _ => 2 * (1..=6).sum::<u64>(),
        }
    };
    let want_list = |i: usize| -> Vec<Vec<u8>> {
        let rounds = match i {
            0 | 1 => 5..=6,
            _ => 1..=6,
        };
        let mut l: Vec<Vec<u8>> = if i == 0 {
            vec![b"base".to_vec()]
        } else {
            vec![]
        };
        l.extend(rounds.map(|r| format!("r{r}").into_bytes()));
        l
    };
    let check = |db: &Db, what: &str| {
        block_on(async {
            let (c, l) = (db.table("counts").unwrap(), db.table("lists").unwrap());
            let counts = all(db, c).await;
            let lists = all(db, l).await;
            assert_eq!(counts.len(), keys.len(), "{what}");
            let got = db.multi_get(c, &keys).await.unwrap();
            for (i, k) in keys.iter().enumerate() {
                let want = u64_le(want_count(i));
                assert_eq!(
                    db.get(c, k).await.unwrap().as_ref(),
                    Some(&want),
                    "{what} {i}"
                );
                assert_eq!(got[i].as_ref(), Some(&want), "{what} multi_get {i}");
                assert_eq!(counts[i], (k.clone(), want), "{what} scan {i}");
                let list = db.get(l, k).await.unwrap().unwrap();
                assert_eq!(decode_list(&list).unwrap(), want_list(i), "{what} list {i}");
                assert_eq!(lists[i].1, list, "{what} list scan {i}");
            }
        })
    };
    check(&db, "operands over memtable, L0 and deeper levels");
    block_on(db.compact_range(Bound::Unbounded, Bound::Unbounded)).unwrap();
    check(&db, "after a full compaction (merged into puts)");
    block_on(db.clone().close()).unwrap();
    let db = open(options(dir.path(), &clock));
    check(&db, "after a reopen");
    let stats = block_on(db.stats()).unwrap();
    assert_eq!(stats.total().merges, 0, "a fresh open has merged nothing");
    block_on(db.close()).unwrap();
}

#[test]
fn expired_values_vanish_from_reads_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let db = open(options(dir.path(), &clock));
    let t = db.table("ttl").unwrap();
    block_on(async {
        for i in 0..20u32 {
            db.put(t, format!("old-{i:02}").as_bytes(), b"old")
                .await
                .unwrap();
        }
        db.flush().await.unwrap();
        db.compact_range(Bound::Unbounded, Bound::Unbounded)
            .await
            .unwrap();
        clock.advance(Duration::from_secs(6));
        for i in 0..20u32 {
            db.put(t, format!("new-{i:02}").as_bytes(), b"new")
                .await
                .unwrap();
        }
        // An iterator opened now sees the old values for its whole life.
        let mut it = db
            .iter(t, KeyRange::all(), IterOptions::default())
            .await
            .unwrap();
        assert_eq!(db.get(t, b"old-00").await.unwrap(), Some(b"old".to_vec()));
        assert_eq!(all(&db, t).await.len(), 40);
        clock.advance(Duration::from_secs(5)); // old: 11 s, new: 5 s
        assert_eq!(db.get(t, b"old-00").await.unwrap(), None);
        assert_eq!(db.get(t, b"new-00").await.unwrap(), Some(b"new".to_vec()));
        let left = all(&db, t).await;
        assert_eq!(left.len(), 20);
        assert!(left
            .iter()
            .all(|(k, v)| k.starts_with(b"new") && v == b"new"));
        let mut n = 0;
        loop {
            let b = it.next_batch().await.unwrap();
            if b.is_empty() {
                break;
            }
            n += b.len();
        }
        assert_eq!(n, 40, "an iterator decides expiry when it opens");
        db.compact_range(Bound::Unbounded, Bound::Unbounded)
            .await
            .unwrap();
        let stats = db.stats().await.unwrap();
        assert_eq!(stats.total().ttl_dropped, 20);
        assert_eq!(db.get(t, b"new-19").await.unwrap(), Some(b"new".to_vec()));
        clock.advance(Duration::from_secs(5));
        assert!(all(&db, t).await.is_empty());
        db.compact_range(Bound::Unbounded, Bound::Unbounded)
            .await
            .unwrap();
        let stats = db.stats().await.unwrap();
        assert_eq!(stats.total().ttl_dropped, 40);
        let files: usize = db.live_files().await.unwrap().len();
        assert_eq!(files, 0, "everything expired: nothing left on disk");
    });
    block_on(db.close()).unwrap();
}
