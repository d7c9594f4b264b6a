//! Every Nexmark query, per record and micro-batched, on Terrace's keyed execution
//! over two shards, leaves exactly the state (and q20 exactly the output rows) that
//! the in-memory reference computes over the same events.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use nexmark::event::Event;
use terrace::{Db, KeyedOptions, ObjectStoreSpec, Options};
use terrace_tools::nexmark::queries::Q20_CATEGORY;
use terrace_tools::nexmark::reference::{expected, Expected};
use terrace_tools::nexmark::terrace::{nexmark_options, run_query, state_bytes};
use terrace_tools::nexmark::{events_at_rate, Mode, QueryName, Record};

/// Events per test run: hot and cold keys, and flushed SSTs.
const EVENTS: u64 = 20_000;
/// Events per second of event time: the run spans 100 s, ten q7 windows and
/// fifty q5 slices.
const RATE: usize = 200;

fn options(dir: &std::path::Path) -> Options {
    let mut opts = Options::new(dir);
    opts.shards = 2;
    opts.pin_shards = false;
    opts.object_store = ObjectStoreSpec::Disabled;
    // Small memtables: the state goes through flushes and compactions, not only
    // the memtable.
    opts.memtable_bytes = 128 << 10;
    opts.block_cache_bytes = 256 << 10;
    // Fewer key groups: the full-table scans that read the state back seek once
    // per key group.
    opts.max_key_groups = 128;
    nexmark_options(opts)
}

async fn table_contents(db: &Db, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let t = db.table(name).unwrap();
    db.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn check(query: QueryName, mode: Mode, concurrent: usize, records: &[Record], want: &Expected) {
    let dir = tempfile::tempdir().unwrap();
    futures_lite::future::block_on(async {
        let db = Db::open(options(dir.path())).await.unwrap();
        // Small batches: many hops, and micro-batches that split keys' histories.
        let keyed = KeyedOptions {
            batch_records: 97,
            concurrent_batches: concurrent,
            // Another batch starts whenever the running ones wait at all.
            concurrent_after: Duration::ZERO,
            ..KeyedOptions::default()
        };
        let run = run_query(&db, query, mode, records.iter().cloned(), keyed)
            .await
            .unwrap();
        assert_eq!(run.events, records.len() as u64);
        let routed = records
            .iter()
            .filter(|r| query.route(&r.1).is_some())
            .count() as u64;
        assert_eq!(run.records, routed, "{query:?} {mode:?}: records processed");
        for (table, rows) in &want.tables {
            let got = table_contents(&db, table).await;
            assert_eq!(got.len(), rows.len(), "{query:?} {mode:?}: keys in {table}");
            assert!(
                got == *rows,
                "{query:?} {mode:?}: contents of {table} differ"
            );
        }
        assert_eq!(run.emitted, want.emitted, "{query:?} {mode:?}: output rows");
        assert!(state_bytes(&db).await.unwrap() > 0);
        db.close().await.unwrap();
    });
}

#[test]
fn every_query_in_both_modes_matches_the_reference() {
    let records: Vec<Record> = events_at_rate(EVENTS, RATE).collect();
    for query in QueryName::ALL {
        let want = expected(query, &records);
        for (table, rows) in &want.tables {
            assert!(
                !rows.is_empty(),
                "{query:?}: the reference's {table} is empty"
            );
        }
        // Batched with one batch at a time per shard, and with eight at once
        // (records of other keys overtaking a running batch).
        // And per event through `Db` from the test's thread.
        for (mode, concurrent) in [
            (Mode::PerEvent, 1),
            (Mode::Batched, 1),
            (Mode::Batched, 8),
            (Mode::PerEventDb, 1),
        ] {
            check(query, mode, concurrent, &records, &want);
        }
    }
}

/// The run exercises both halves of q20's join: bids finding their auction stored,
/// and auctions finding bids that arrived before them (the prefix scan).
#[test]
fn q20_joins_in_both_directions() {
    let records: Vec<Record> = events_at_rate(EVENTS, RATE).collect();
    let mut auction_at = BTreeMap::new();
    for (seq, e) in &records {
        if let Event::Auction(a) = e {
            if a.category == Q20_CATEGORY {
                auction_at.insert(a.id, *seq);
            }
        }
    }
    let (mut bid_first, mut auction_first) = (0, 0);
    for (seq, e) in &records {
        if let Event::Bid(b) = e {
            match auction_at.get(&b.auction) {
                Some(at) if at < seq => auction_first += 1,
                Some(_) => bid_first += 1,
                None => {}
            }
        }
    }
    assert!(
        auction_first > 0 && bid_first > 0,
        "{auction_first} {bid_first}"
    );
    let want = expected(QueryName::Q20, &records);
    assert_eq!(want.emitted.0, auction_first + bid_first);
}
