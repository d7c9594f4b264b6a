//! A damaged SST is reported as Corruption naming the file, not served as data.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};

use common::*;
use terrace::{Db, ErrorKind};

#[test]
fn a_flipped_byte_in_a_data_block_gives_a_corruption_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 1);
    opts.block_cache_bytes = 0;
    let db = open(opts.clone());
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..200u32 {
            db.put(t, format!("k{i:04}").as_bytes(), &[7u8; 100])
                .await
                .unwrap();
        }
        db.close().await.unwrap();
    });
    let sst = std::fs::read_dir(dir.path().join("shard-0000"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("an SST");
    // Flip a byte inside the first data block (values are 7s).
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&sst)
        .unwrap();
    let mut head = vec![0u8; 4096];
    f.read_exact(&mut head).unwrap();
    let pos = head.iter().position(|b| *b == 7).unwrap();
    f.seek(SeekFrom::Start(pos as u64)).unwrap();
    f.write_all(&[8]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let db = open(opts);
    block_on(async {
        let mut corrupt = 0;
        for i in 0..200u32 {
            match db.get(t, format!("k{i:04}").as_bytes()).await {
                Ok(v) => assert_eq!(v, Some(vec![7u8; 100]), "k{i:04} must never read wrong"),
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
                    let name = sst.file_name().unwrap().to_str().unwrap();
                    assert!(e.to_string().contains(name), "error names the file: {e}");
                    corrupt += 1;
                }
            }
        }
        assert!(corrupt > 0, "the damaged block must be detected");
        db.close().await.unwrap();
    });
}

fn write_one_key_and_remove_local_ssts(opts: &terrace::Options) {
    let db = open(opts.clone());
    let t = db.table("default").unwrap();
    block_on(async {
        db.put(t, b"k", b"v").await.unwrap();
        db.close().await.unwrap();
    });
    for e in std::fs::read_dir(opts.path.join("shard-0000")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "sst") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[test]
fn a_missing_sst_fails_open_with_corruption_when_there_is_no_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 1);
    opts.object_store = terrace::ObjectStoreSpec::Disabled;
    write_one_key_and_remove_local_ssts(&opts);
    let e = block_on(Db::open(opts)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn a_lost_local_sst_is_served_from_the_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options(dir.path(), 1);
    write_one_key_and_remove_local_ssts(&opts);
    let db = open(opts);
    let t = db.table("default").unwrap();
    block_on(async {
        assert_eq!(db.get(t, b"k").await.unwrap(), Some(b"v".to_vec()));
        let stats = db.stats().await.unwrap();
        assert_eq!(stats.tier().remote_only_files, 1, "{stats}");
        assert!(stats.tier().remote_reads.requests > 0, "{stats}");
        db.close().await.unwrap();
    });
}

#[test]
fn an_sst_missing_locally_and_remotely_fails_open_with_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options(dir.path(), 1);
    write_one_key_and_remove_local_ssts(&opts);
    std::fs::remove_dir_all(dir.path().join("objects").join("sst")).unwrap();
    let e = block_on(Db::open(opts)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
    assert!(e.to_string().contains("object store"), "{e}");
}
