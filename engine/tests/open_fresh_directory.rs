//! A database in a fresh, empty directory reads its own SSTs back.
//!
//! Guards against glommio 0.9's IOPOLL probe: if the first DMA file a thread opens is
//! empty, glommio decides the device supports polled I/O and every later read fails
//! with EOPNOTSUPP (os error 95). Shards open a 4 KiB probe file first.

mod common;

use common::*;

#[test]
fn fresh_empty_directory_serves_reads_from_flushed_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brand-new");
    let db = open(small_options(&path, 2));
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..2000u32 {
            db.put(t, format!("key{i:05}").as_bytes(), &i.to_le_bytes())
                .await
                .unwrap();
        }
        db.flush().await.unwrap();
        let stats = db.stats().await.unwrap();
        assert!(stats.levels()[0].files >= 2, "{stats}");
        for i in (0..2000u32).step_by(7) {
            let v = db.get(t, format!("key{i:05}").as_bytes()).await.unwrap();
            assert_eq!(v, Some(i.to_le_bytes().to_vec()), "key{i:05}");
        }
        let stats = db.stats().await.unwrap();
        let misses: u64 = stats.shards.iter().map(|s| s.cache.misses).sum();
        assert!(misses > 0, "reads must have gone to disk: {stats}");
        db.close().await.unwrap();
    });
}
