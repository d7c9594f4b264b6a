//! A caller on a foreign thread waits for a shard's answer by spinning briefly
//! (`Options::caller_spin_us`) when its request is the shard's only one in flight,
//! never with the spin disabled, and many requests in flight from one thread still
//! all complete with the right answers.

mod common;

use common::*;

#[test]
fn one_off_calls_spin_and_concurrent_calls_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(small_options(tmp.path(), 1));
    let t = db.table("default").unwrap();
    for i in 0..200u32 {
        block_on(db.put(t, &i.to_be_bytes(), &i.to_le_bytes())).unwrap();
        let got = block_on(db.get(t, &i.to_be_bytes())).unwrap();
        assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]));
    }
    let stats = block_on(db.stats()).unwrap();
    // Whether a spin sees its answer depends on the machine's load; that it was
    // tried does not.
    assert!(
        stats.caller_spins_answered + stats.caller_spins_missed > 0,
        "no call spun: {stats:?}"
    );
    // 64 requests in flight from one thread: none may wait behind another's spin
    // forever, and each gets its own answer.
    let gets = (0..64u32).map(|i| {
        let db = db.clone();
        async move { (i, db.get(t, &i.to_be_bytes()).await.unwrap()) }
    });
    for (i, got) in block_on(futures_util::future::join_all(gets)) {
        assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]));
    }
    block_on(db.close()).unwrap();
}

#[test]
fn callers_never_spin_when_the_spin_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = small_options(tmp.path(), 2);
    o.caller_spin_us = 0;
    let db = open(o);
    let t = db.table("default").unwrap();
    for i in 0..100u32 {
        block_on(db.put(t, &i.to_be_bytes(), b"v")).unwrap();
    }
    let stats = block_on(db.stats()).unwrap();
    assert_eq!(stats.caller_spins_answered + stats.caller_spins_missed, 0);
    block_on(db.close()).unwrap();
}

/// A pinned shard polls its channel for a while after each request
/// (`Options::request_spin_us`), so back-to-back calls from one foreign thread are
/// taken without an executor pass; never with the spin off or on an unpinned shard.
#[test]
fn shards_take_back_to_back_requests_while_spinning_and_never_with_it_off() {
    for (pin, spin_us, expect_spun) in [(true, 50, true), (true, 0, false), (false, 50, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = small_options(tmp.path(), 1);
        o.pin_shards = pin;
        o.request_spin_us = spin_us;
        let db = open(o);
        let t = db.table("default").unwrap();
        for i in 0..2000u32 {
            block_on(db.put(t, &i.to_be_bytes(), &i.to_le_bytes())).unwrap();
            let got = block_on(db.get(t, &i.to_be_bytes())).unwrap();
            assert_eq!(got.as_deref(), Some(&i.to_le_bytes()[..]));
        }
        let spun = block_on(db.stats()).unwrap().total().requests_spun;
        // Whether one call lands inside the spin depends on the machine; that some
        // of 4000 back-to-back calls do does not (the caller sends its next
        // request about a microsecond after its answer).
        assert_eq!(
            spun > 0,
            expect_spun,
            "pin {pin} spin {spin_us} µs: {spun} requests spun"
        );
        block_on(db.close()).unwrap();
    }
}
