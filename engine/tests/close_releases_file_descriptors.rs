//! Closing a database releases what it held: once `Db::close` returns, none of its
//! SSTs is open any more, so opening and closing databases again and again in one
//! process (a checker, a job restoring checkpoints) does not run out of
//! descriptors or keep deleted files' space. glommio closes a dropped `DmaFile` on
//! its reactor's next I/O cycle, which never came once a shard's executor returned:
//! every close leaked one descriptor per SST.

mod common;

use common::*;

fn sst_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|p| p.to_string_lossy().contains(".sst"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn reopening_a_database_leaks_no_sst_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options(dir.path(), 2);
    {
        let db = open(opts.clone());
        let t = db.table("default").unwrap();
        block_on(async {
            for i in 0..20_000u32 {
                db.put(t, format!("k{i:06}").as_bytes(), &[7u8; 100])
                    .await
                    .unwrap();
            }
            db.flush().await.unwrap();
        });
        block_on(db.close()).unwrap();
    }
    assert_eq!(sst_fds(), 0, "SST descriptors open after the first close");
    for round in 0..10 {
        let db = open(opts.clone());
        let t = db.table("default").unwrap();
        let got = block_on(db.get(t, b"k000123")).unwrap();
        assert!(got.is_some(), "round {round}");
        block_on(db.close()).unwrap();
    }
    assert_eq!(
        sst_fds(),
        0,
        "SST descriptors open after 10 open/close cycles"
    );
}
