//! Shards whose executors went to sleep still answer at once: requests arriving
//! after idle periods (with and without a read-only open in between) complete
//! within a bound, and the pulse thread nudges idle executors. Before the pulse
//! thread, an idle read-only shard was seen asleep for minutes with a request
//! queued (glommio 0.9 left it with no timer armed).

mod common;

use std::time::Duration;

use common::*;
use terrace::Db;
use terrace_tiering::clock::{now, seeded_rng};

#[test]
fn requests_after_idle_periods_complete_promptly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(small_options(&dir, 2));
    let t = db.table("default").unwrap();
    block_on(async {
        for i in 0..2000u32 {
            db.put(t, &i.to_be_bytes(), b"v").await.unwrap();
        }
        db.flush().await.unwrap();
    });
    block_on(db.close()).unwrap();

    use rand::Rng;
    let mut rng = seeded_rng(7);
    let mut worst = Duration::ZERO;
    for round in 0..6 {
        let db = block_on(Db::open_read_only(&dir)).unwrap();
        let t = db.table("default").unwrap();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..8)));
            let start = now();
            let k: u32 = rng.gen_range(0..2000);
            let got = block_on(db.get(t, &k.to_be_bytes())).unwrap();
            assert_eq!(got.as_deref(), Some(&b"v"[..]));
            worst = worst.max(now().duration_since(start));
        }
        // Long enough for both executors to park.
        std::thread::sleep(Duration::from_millis(150));
        let stats = block_on(db.stats()).unwrap();
        assert!(
            stats.pulse_nudges > 0,
            "round {round}: idle executors were never nudged"
        );
        block_on(db.close()).unwrap();
    }
    assert!(
        worst < Duration::from_secs(2),
        "a request after an idle period took {worst:?}"
    );
}
