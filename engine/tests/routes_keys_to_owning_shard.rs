//! With 2 shards, every key lands on the shard owning its key group.

mod common;

use common::*;
use terrace::key::{key_group, shard_key_groups};

#[test]
fn each_key_is_stored_by_the_shard_that_owns_its_key_group() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(small_options(dir.path(), 2));
    let t = db.table("default").unwrap();
    let keys: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("user:{i}").into_bytes())
        .collect();
    let all = terrace::KeyGroupRange::all(32768);
    let ranges = [0, 1].map(|s| {
        let r = shard_key_groups(s, 2, all);
        (r.first, r.last)
    });
    assert_eq!(ranges, [(0, 16383), (16384, 32767)]);
    let mut expected = [0u64; 2];
    for k in &keys {
        let kg = key_group(k, 32768);
        let owner = ranges
            .iter()
            .position(|(a, b)| (*a..=*b).contains(&kg))
            .unwrap();
        assert_eq!(db.shard_of(k), owner as u32, "routing of {k:?}");
        expected[owner] += 1;
    }
    assert!(
        expected[0] > 1000 && expected[1] > 1000,
        "hash spreads keys: {expected:?}"
    );
    block_on(async {
        for k in &keys {
            db.put(t, k, k).await.unwrap();
        }
        let stats = db.stats().await.unwrap();
        for s in &stats.shards {
            assert_eq!(
                s.counters.puts, expected[s.shard as usize],
                "puts on shard {}",
                s.shard
            );
            assert_eq!(s.key_groups, ranges[s.shard as usize]);
        }
        // Each shard, from its own executor, owns exactly its keys and reads them
        // locally.
        for shard in 0..2u32 {
            let keys = keys.clone();
            let owned = db
                .on_shard(shard, move |local| async move {
                    let t = local.table("default").unwrap();
                    let mut owned = 0u64;
                    for k in &keys {
                        if local.owns(k) {
                            owned += 1;
                            assert_eq!(local.get(t, k).await.unwrap().as_deref(), Some(&k[..]));
                        }
                    }
                    owned
                })
                .await
                .unwrap();
            assert_eq!(owned, expected[shard as usize]);
        }
        // Local gets of owned keys never crossed threads: the other shard saw none.
        let stats = db.stats().await.unwrap();
        for s in &stats.shards {
            assert_eq!(s.counters.gets, expected[s.shard as usize]);
        }
        db.close().await.unwrap();
    });
}
