//! A stream operator on Terrace's keyed execution: the latest bid per (bidder,
//! auction), Nexmark q18's state access, run per record and micro-batched — and,
//! for comparison, the same loop calling `Db` from the caller's thread.
//!
//! ```sh
//! cargo run --release -p terrace --example keyed_operator -- 1000000
//! ```
//!
//! Each record is pushed with its key; Terrace sends it (in batches) to the shard
//! owning that key, where the operator reads and writes state with no thread hop.

use std::collections::BTreeMap;

use terrace::{Db, KeyedOptions, LocalDb, Operator, Options, Result};

/// A bid: who, on what, how much, when.
#[derive(Clone, Copy)]
struct Bid {
    bidder: u64,
    auction: u64,
    price: u64,
    time: u64,
}

impl Bid {
    /// The state key: bidder and auction (big-endian, so they sort by bidder).
    fn key(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.bidder.to_be_bytes());
        k[8..].copy_from_slice(&self.auction.to_be_bytes());
        k
    }

    fn value(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&self.time.to_le_bytes());
        v[8..].copy_from_slice(&self.price.to_le_bytes());
        v
    }
}

fn time_of(value: &[u8]) -> u64 {
    u64::from_le_bytes(value[..8].try_into().unwrap_or_default())
}

/// Per record: get the latest bid of the key, keep the newer one.
struct LatestBid;

impl Operator<Bid> for LatestBid {
    async fn process(&mut self, state: &LocalDb, bid: Bid) -> Result<()> {
        let t = state.table("latest_bid")?;
        let key = bid.key();
        let newer = match state.get(t, &key).await? {
            Some(old) => bid.time >= time_of(&old),
            None => true,
        };
        if newer {
            state.put(t, &key, &bid.value()).await?;
        }
        Ok(())
    }
}

/// Micro-batched: keep the newest bid per key within the batch, read all keys with
/// one `multi_get` (their disk reads in flight together), then write.
struct LatestBidBatched;

impl Operator<Bid> for LatestBidBatched {
    async fn process(&mut self, state: &LocalDb, bid: Bid) -> Result<()> {
        self.process_batch(state, vec![bid]).await
    }

    async fn process_batch(&mut self, state: &LocalDb, bids: Vec<Bid>) -> Result<()> {
        let t = state.table("latest_bid")?;
        let mut newest: BTreeMap<[u8; 16], Bid> = BTreeMap::new();
        for bid in bids {
            let e = newest.entry(bid.key()).or_insert(bid);
            if bid.time >= e.time {
                *e = bid;
            }
        }
        let keys: Vec<[u8; 16]> = newest.keys().copied().collect();
        let old = state.multi_get(t, &keys).await?;
        for ((key, bid), old) in newest.iter().zip(old) {
            if old.is_none_or(|o| bid.time >= time_of(&o)) {
                state.put(t, key, &bid.value()).await?;
            }
        }
        Ok(())
    }
}

fn bids(n: u64) -> impl Iterator<Item = Bid> {
    // A small LCG: 10,000 bidders, 1,000 auctions, increasing time.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n).map(move |time| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Bid {
            bidder: (x >> 33) % 10_000,
            auction: (x >> 17) % 1_000,
            price: x % 100_000,
            time,
        }
    })
}

async fn run(db: &Db, events: u64, batched: bool) -> Result<f64> {
    let start = terrace_tiering::clock::now();
    let report = if batched {
        let mut keyed = db
            .keyed(|_| LatestBidBatched, KeyedOptions::default())
            .await?;
        for bid in bids(events) {
            keyed.push(&bid.key(), bid).await?;
        }
        keyed.finish().await?
    } else {
        let mut keyed = db.keyed(|_| LatestBid, KeyedOptions::default()).await?;
        for bid in bids(events) {
            keyed.push(&bid.key(), bid).await?;
        }
        keyed.finish().await?
    };
    Ok(report.records as f64 / start.elapsed().as_secs_f64())
}

/// The same operator without keyed execution: one `Db` call at a time from the
/// caller's thread (a cross-thread round trip per state call).
async fn run_through_db(db: &Db, events: u64) -> Result<f64> {
    let start = terrace_tiering::clock::now();
    let t = db.table("latest_bid")?;
    for bid in bids(events) {
        let key = bid.key();
        let newer = match db.get(t, &key).await? {
            Some(old) => bid.time >= time_of(&old),
            None => true,
        };
        if newer {
            db.put(t, &key, &bid.value()).await?;
        }
    }
    Ok(events as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    // keyed_operator [EVENTS [SHARDS]]
    let arg = |i: usize| std::env::args().nth(i).and_then(|a| a.parse::<u64>().ok());
    let events = arg(1).unwrap_or(1_000_000);
    let base = std::env::temp_dir().join(format!("terrace-keyed-example-{}", std::process::id()));
    let env_us = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    // Each mode runs on a fresh database with the same options, so each starts empty
    // and writes the same keys: the modes are compared on equal state (a mode run
    // after another would find the other's keys in memtables and SSTs).
    let options = |mode: &str| {
        let mut opts = Options::new(base.join(mode));
        opts.tables = vec!["latest_bid".into()];
        opts.object_store = terrace::ObjectStoreSpec::Disabled;
        if let Some(shards) = arg(2) {
            opts.shards = shards as u32;
        }
        if let Some(us) = env_us("TERRACE_REQUEST_SPIN_US") {
            opts.request_spin_us = us;
        }
        if let Some(us) = env_us("TERRACE_CALLER_SPIN_US") {
            opts.caller_spin_us = us;
        }
        if let Some(us) = env_us("TERRACE_SPIN_BEFORE_PARK_US") {
            opts.spin_before_park_us = us;
        }
        opts
    };
    futures_lite::future::block_on(async {
        for batched in [false, true] {
            let mode = if batched { "batched" } else { "per-event" };
            let db = Db::open(options(mode)).await?;
            let rate = run(&db, events, batched).await?;
            println!("q18 {mode:<10}: {rate:.0} events/s {events} events");
            db.close().await?;
        }
        let db = Db::open(options("via-db")).await?;
        let before = db.stats().await?;
        let rate = run_through_db(&db, events).await?;
        let after = db.stats().await?;
        let (b, a) = (before.total(), after.total());
        println!(
            "q18 {:<10}: {rate:.0} events/s {events} events; caller spins answered {} missed {}; \
             flushes {} compactions {}",
            "via Db",
            after.caller_spins_answered - before.caller_spins_answered,
            after.caller_spins_missed - before.caller_spins_missed,
            a.flushes - b.flushes,
            a.compactions - b.compactions
        );
        db.close().await
    })?;
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
