//! Operations on one key complete in the order they were submitted, even when a read
//! before a write is still waiting on disk.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;

#[test]
fn same_key_operations_complete_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_options(dir.path(), 1);
    opts.block_cache_bytes = 0; // every read of flushed data goes to disk
    let db = open(opts);
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..500u32 {
            db.put(t, format!("k{i}").as_bytes(), b"v0").await.unwrap();
        }
        db.flush().await.unwrap();
        let log = db
            .on_shard(0, move |local| async move {
                let log = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for i in 0..500u32 {
                    let key = format!("k{i}").into_bytes();
                    // get (reads disk) then put then get, all submitted before any
                    // completes.
                    let (l, k, db) = (log.clone(), key.clone(), local.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let v = db.get(t, &k).await.unwrap();
                        l.borrow_mut().push((i, 0, v));
                    }));
                    let (l, k, db) = (log.clone(), key.clone(), local.clone());
                    tasks.push(glommio::spawn_local(async move {
                        db.put(t, &k, b"v1").await.unwrap();
                        l.borrow_mut().push((i, 1, None));
                    }));
                    let (l, k, db) = (log.clone(), key, local.clone());
                    tasks.push(glommio::spawn_local(async move {
                        let v = db.get(t, &k).await.unwrap();
                        l.borrow_mut().push((i, 2, v));
                    }));
                }
                for task in tasks {
                    task.await;
                }
                Rc::try_unwrap(log).unwrap().into_inner()
            })
            .await
            .unwrap();
        assert_eq!(log.len(), 1500);
        let mut seen = vec![Vec::new(); 500];
        for (i, step, v) in log {
            seen[i as usize].push(step);
            match step {
                0 => assert_eq!(
                    v.as_deref(),
                    Some(&b"v0"[..]),
                    "first get sees the old value"
                ),
                2 => assert_eq!(v.as_deref(), Some(&b"v1"[..]), "last get sees the put"),
                _ => {}
            }
        }
        for (i, order) in seen.iter().enumerate() {
            assert_eq!(order, &vec![0, 1, 2], "completion order of k{i}");
        }
        db.close().await.unwrap();
    });
}
