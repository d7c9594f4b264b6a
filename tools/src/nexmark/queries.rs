//! The five queries as operators over [`State`], each per record
//! ([`QueryOp::process`], one state call at a time) and per micro-batch
//! ([`QueryOp::process_batch`]: pre-aggregate, one `multi_get`, then the writes).
//! Both give the same state and the same emitted rows.
//!
//! State access follows Flink's plans:
//! - q5: the window aggregate of `HOP(dateTime, 2 s, 10 s)` counts bids per
//!   (auction, 2 s slice) — Flink's sliced windows keep one accumulator per key and
//!   slice; a window's count is the sum of its five slices. One get and one put per
//!   bid.
//! - q7: `MAX(price)` per 10 s tumbling window, keeping the highest bid (the first of
//!   equal prices). Keyed by window: every bid of a window goes to one key.
//! - q18: deduplication keeping the last row per (bidder, auction) by event time
//!   (a later row of equal time replaces).
//! - q19: top 10 bids by price per auction (ties keep arrival order), one value per
//!   auction.
//! - q20: the regular join of bids with auctions of category 10: both sides kept
//!   forever (no TTL, as in Flink's plan); a bid stores itself and looks up its
//!   auction, an auction stores itself and scans the bids stored under it.
//!
//! Window firing is not modelled: q5 and q7 keep every window's state (Flink would
//! clear a window when the watermark passes its end).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nexmark::event::Event;

use super::codec::{self, decode_bids, encode_bids, key, AuctionRow, BidRow};
use super::{QueryName, Record, State};

/// q5's table: bid count per (auction, slice start).
pub const Q5_TABLE: &str = "q5_slice_counts";
/// q5's slice (the hop) in ms.
pub const Q5_SLICE_MS: u64 = 2_000;
/// q5's window size in ms.
pub const Q5_WINDOW_MS: u64 = 10_000;
/// q7's table: the highest bid per window start.
pub const Q7_TABLE: &str = "q7_window_max";
/// q7's tumbling window in ms.
pub const Q7_WINDOW_MS: u64 = 10_000;
/// q18's table: the latest bid per (bidder, auction).
pub const Q18_TABLE: &str = "q18_latest_bid";
/// q19's table: the top bids per auction.
pub const Q19_TABLE: &str = "q19_top_bids";
/// Bids kept per auction by q19.
pub const Q19_TOP_N: usize = 10;
/// q20's auction side: auctions of category 10 by id.
pub const Q20_AUCTIONS: &str = "q20_auctions";
/// q20's bid side: bids by (auction, event number).
pub const Q20_BIDS: &str = "q20_bids";
/// The category q20 joins.
pub const Q20_CATEGORY: usize = 10;

/// Every table of every query.
pub fn all_tables() -> Vec<String> {
    QueryName::ALL
        .iter()
        .flat_map(|q| q.tables().iter().map(|t| t.to_string()))
        .collect()
}

/// Start of the q5 slice holding time `t`.
pub fn q5_slice(t: u64) -> u64 {
    t - t % Q5_SLICE_MS
}

/// Start of the q7 window holding time `t`.
pub fn q7_window(t: u64) -> u64 {
    t - t % Q7_WINDOW_MS
}

/// Rows a query emitted: their number and an order-independent digest.
#[derive(Debug, Default)]
pub struct Emitted {
    rows: AtomicU64,
    digest: AtomicU64,
}

impl Emitted {
    /// Counts one joined (bid event number, auction id) row.
    pub fn join_row(&self, bid_seq: u64, auction: u64) {
        self.rows.fetch_add(1, Ordering::Relaxed);
        self.digest
            .fetch_add(join_digest(bid_seq, auction), Ordering::Relaxed);
    }

    /// Rows emitted and the wrapping sum of their digests.
    pub fn get(&self) -> (u64, u64) {
        (
            self.rows.load(Ordering::Relaxed),
            self.digest.load(Ordering::Relaxed),
        )
    }
}

/// The digest of one q20 output row.
pub fn join_digest(bid_seq: u64, auction: u64) -> u64 {
    codec::mix(bid_seq ^ codec::mix(auction))
}

/// One shard's instance of a query.
pub struct QueryOp {
    query: QueryName,
    emitted: Arc<Emitted>,
}

fn corrupt<S: State>(table: &str, what: &str) -> S::Error {
    S::corrupt(format!("undecodable {what} in table {table}"))
}

/// The bid of a record, if it is one.
fn bid_of(record: &Record) -> Option<BidRow> {
    match &record.1 {
        Event::Bid(b) => Some(BidRow::from(b)),
        _ => None,
    }
}

/// Inserts `bid` into a top list sorted by price, descending, after bids of equal
/// price; whether the list changed.
pub fn insert_top(list: &mut Vec<BidRow>, bid: BidRow) -> bool {
    let pos = list
        .iter()
        .position(|b| b.price < bid.price)
        .unwrap_or(list.len());
    if pos >= Q19_TOP_N {
        return false;
    }
    list.insert(pos, bid);
    list.truncate(Q19_TOP_N);
    true
}

impl QueryOp {
    /// An instance of `query` counting its output rows into `emitted`.
    pub fn new(query: QueryName, emitted: Arc<Emitted>) -> QueryOp {
        QueryOp { query, emitted }
    }

    /// Processes one record with one state call at a time.
    pub async fn process<S: State>(&mut self, s: &S, record: Record) -> Result<(), S::Error> {
        match self.query {
            QueryName::Q5 => {
                let Some(bid) = bid_of(&record) else {
                    return Ok(());
                };
                let t = s.table(Q5_TABLE)?;
                let k = key(&[bid.auction, q5_slice(bid.date_time)]);
                let old = match s.get(t, &k).await? {
                    Some(v) => {
                        codec::decode_u64(&v).ok_or_else(|| corrupt::<S>(Q5_TABLE, "count"))?
                    }
                    None => 0,
                };
                s.put(t, &k, &(old + 1).to_le_bytes()).await
            }
            QueryName::Q7 => {
                let Some(bid) = bid_of(&record) else {
                    return Ok(());
                };
                let t = s.table(Q7_TABLE)?;
                let k = key(&[q7_window(bid.date_time)]);
                let higher = match s.get(t, &k).await? {
                    Some(v) => {
                        let old =
                            BidRow::decode(&v).ok_or_else(|| corrupt::<S>(Q7_TABLE, "bid"))?;
                        bid.price > old.price
                    }
                    None => true,
                };
                if higher {
                    s.put(t, &k, &bid.encode()).await?;
                }
                Ok(())
            }
            QueryName::Q18 => {
                let Some(bid) = bid_of(&record) else {
                    return Ok(());
                };
                let t = s.table(Q18_TABLE)?;
                let k = key(&[bid.bidder, bid.auction]);
                let newer = match s.get(t, &k).await? {
                    Some(v) => {
                        let old =
                            BidRow::decode(&v).ok_or_else(|| corrupt::<S>(Q18_TABLE, "bid"))?;
                        bid.date_time >= old.date_time
                    }
                    None => true,
                };
                if newer {
                    s.put(t, &k, &bid.encode()).await?;
                }
                Ok(())
            }
            QueryName::Q19 => {
                let Some(bid) = bid_of(&record) else {
                    return Ok(());
                };
                let t = s.table(Q19_TABLE)?;
                let k = key(&[bid.auction]);
                let mut top = match s.get(t, &k).await? {
                    Some(v) => {
                        decode_bids(&v).ok_or_else(|| corrupt::<S>(Q19_TABLE, "bid list"))?
                    }
                    None => Vec::new(),
                };
                if insert_top(&mut top, bid) {
                    s.put(t, &k, &encode_bids(&top)).await?;
                }
                Ok(())
            }
            QueryName::Q20 => match &record.1 {
                Event::Bid(b) => {
                    let bid = BidRow::from(b);
                    let bids = s.table(Q20_BIDS)?;
                    let auctions = s.table(Q20_AUCTIONS)?;
                    s.put(bids, &key(&[bid.auction, record.0]), &bid.encode())
                        .await?;
                    if let Some(v) = s.get(auctions, &key(&[bid.auction])).await? {
                        self.join_auction::<S>(&v, record.0, bid.auction)?;
                    }
                    Ok(())
                }
                Event::Auction(a) if a.category == Q20_CATEGORY => {
                    let row = AuctionRow::from(a);
                    let bids = s.table(Q20_BIDS)?;
                    let auctions = s.table(Q20_AUCTIONS)?;
                    s.put(auctions, &key(&[row.id]), &row.encode()).await?;
                    for (k, v) in s.scan_prefix(bids, &key(&[row.id])).await? {
                        self.join_bid::<S>(&k, &v, row.id, u64::MAX)?;
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }

    /// Processes one micro-batch: pre-aggregates per key, reads the keys with one
    /// `multi_get`, then writes what changed.
    pub async fn process_batch<S: State>(
        &self,
        s: &S,
        records: Vec<Record>,
    ) -> Result<(), S::Error> {
        match self.query {
            QueryName::Q5 => {
                let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
                for bid in records.iter().filter_map(bid_of) {
                    *counts
                        .entry(key(&[bid.auction, q5_slice(bid.date_time)]))
                        .or_default() += 1;
                }
                let t = s.table(Q5_TABLE)?;
                let keys: Vec<Vec<u8>> = counts.keys().cloned().collect();
                let old = s.multi_get(t, &keys).await?;
                for ((k, n), old) in counts.iter().zip(old) {
                    let old = match old {
                        Some(v) => {
                            codec::decode_u64(&v).ok_or_else(|| corrupt::<S>(Q5_TABLE, "count"))?
                        }
                        None => 0,
                    };
                    s.put(t, k, &(old + n).to_le_bytes()).await?;
                }
                Ok(())
            }
            QueryName::Q7 => {
                let mut best: BTreeMap<Vec<u8>, BidRow> = BTreeMap::new();
                for bid in records.iter().filter_map(bid_of) {
                    let k = key(&[q7_window(bid.date_time)]);
                    match best.get(&k) {
                        Some(b) if bid.price <= b.price => {}
                        _ => {
                            best.insert(k, bid);
                        }
                    }
                }
                let t = s.table(Q7_TABLE)?;
                self.write_if(s, t, Q7_TABLE, best, |new, old| new.price > old.price)
                    .await
            }
            QueryName::Q18 => {
                let mut latest: BTreeMap<Vec<u8>, BidRow> = BTreeMap::new();
                for bid in records.iter().filter_map(bid_of) {
                    let k = key(&[bid.bidder, bid.auction]);
                    match latest.get(&k) {
                        Some(b) if bid.date_time < b.date_time => {}
                        _ => {
                            latest.insert(k, bid);
                        }
                    }
                }
                let t = s.table(Q18_TABLE)?;
                self.write_if(s, t, Q18_TABLE, latest, |new, old| {
                    new.date_time >= old.date_time
                })
                .await
            }
            QueryName::Q19 => {
                let mut by_auction: BTreeMap<Vec<u8>, Vec<BidRow>> = BTreeMap::new();
                for bid in records.iter().filter_map(bid_of) {
                    by_auction.entry(key(&[bid.auction])).or_default().push(bid);
                }
                let t = s.table(Q19_TABLE)?;
                let keys: Vec<Vec<u8>> = by_auction.keys().cloned().collect();
                let old = s.multi_get(t, &keys).await?;
                for ((k, bids), old) in by_auction.into_iter().zip(old) {
                    let mut top = match old {
                        Some(v) => {
                            decode_bids(&v).ok_or_else(|| corrupt::<S>(Q19_TABLE, "bid list"))?
                        }
                        None => Vec::new(),
                    };
                    let mut changed = false;
                    for bid in bids {
                        changed |= insert_top(&mut top, bid);
                    }
                    if changed {
                        s.put(t, &k, &encode_bids(&top)).await?;
                    }
                }
                Ok(())
            }
            QueryName::Q20 => self.q20_batch(s, records).await,
        }
    }

    /// Writes each pre-aggregated row whose key holds nothing or a row `replaces`
    /// says it beats.
    async fn write_if<S: State>(
        &self,
        s: &S,
        t: S::Table,
        table: &str,
        rows: BTreeMap<Vec<u8>, BidRow>,
        replaces: impl Fn(&BidRow, &BidRow) -> bool,
    ) -> Result<(), S::Error> {
        let keys: Vec<Vec<u8>> = rows.keys().cloned().collect();
        let old = s.multi_get(t, &keys).await?;
        for ((k, new), old) in rows.iter().zip(old) {
            let write = match old {
                Some(v) => {
                    let old = BidRow::decode(&v).ok_or_else(|| corrupt::<S>(table, "bid"))?;
                    replaces(new, &old)
                }
                None => true,
            };
            if write {
                s.put(t, k, &new.encode()).await?;
            }
        }
        Ok(())
    }

    /// q20 per batch: store the batch's auctions, then its bids; look every bid's
    /// auction up with one `multi_get` (auctions of this batch included), and join
    /// each new auction with the bids of earlier batches by a prefix scan. Every
    /// (bid, auction) pair is emitted once, as per record.
    ///
    /// "Earlier batches" is decided per auction: the bids stored under it before
    /// this batch are those below the first event number of this batch's records of
    /// that auction. (Keyed execution keeps each key's records in push order, but
    /// with concurrent batches a batch is not a contiguous range of event numbers:
    /// records of other keys overtake, so the batch's first record says nothing.)
    async fn q20_batch<S: State>(&self, s: &S, records: Vec<Record>) -> Result<(), S::Error> {
        let mut first_of: BTreeMap<u64, u64> = BTreeMap::new();
        for (seq, event) in &records {
            let id = match event {
                Event::Bid(b) => b.auction as u64,
                Event::Auction(a) if a.category == Q20_CATEGORY => a.id as u64,
                _ => continue,
            };
            first_of
                .entry(id)
                .and_modify(|f| *f = (*f).min(*seq))
                .or_insert(*seq);
        }
        let bids_t = s.table(Q20_BIDS)?;
        let auctions_t = s.table(Q20_AUCTIONS)?;
        let mut new_auctions = Vec::new();
        for (_, event) in &records {
            if let Event::Auction(a) = event {
                if a.category == Q20_CATEGORY {
                    let row = AuctionRow::from(a);
                    s.put(auctions_t, &key(&[row.id]), &row.encode()).await?;
                    new_auctions.push(row.id);
                }
            }
        }
        let mut bids = Vec::new();
        let mut wanted = BTreeSet::new();
        for (seq, event) in &records {
            if let Event::Bid(b) = event {
                let bid = BidRow::from(b);
                s.put(bids_t, &key(&[bid.auction, *seq]), &bid.encode())
                    .await?;
                wanted.insert(bid.auction);
                bids.push((*seq, bid.auction));
            }
        }
        let ids: Vec<u64> = wanted.into_iter().collect();
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(&[*id])).collect();
        let found = s.multi_get(auctions_t, &keys).await?;
        let found: BTreeMap<u64, Vec<u8>> = ids
            .into_iter()
            .zip(found)
            .filter_map(|(id, v)| v.map(|v| (id, v)))
            .collect();
        for (seq, auction) in bids {
            if let Some(v) = found.get(&auction) {
                self.join_auction::<S>(v, seq, auction)?;
            }
        }
        for id in new_auctions {
            let before = first_of.get(&id).copied().unwrap_or(0);
            for (k, v) in s.scan_prefix(bids_t, &key(&[id])).await? {
                self.join_bid::<S>(&k, &v, id, before)?;
            }
        }
        Ok(())
    }

    /// Joins a bid with its stored auction (decoded: the join builds its row).
    fn join_auction<S: State>(
        &self,
        auction: &[u8],
        bid_seq: u64,
        id: u64,
    ) -> Result<(), S::Error> {
        let row =
            AuctionRow::decode(auction).ok_or_else(|| corrupt::<S>(Q20_AUCTIONS, "auction"))?;
        if row.id != id {
            return Err(corrupt::<S>(Q20_AUCTIONS, "auction under another id"));
        }
        self.emitted.join_row(bid_seq, id);
        Ok(())
    }

    /// Joins a stored bid (key `(auction, seq)`) with auction `id`, if the bid came
    /// before event number `before`.
    fn join_bid<S: State>(&self, k: &[u8], v: &[u8], id: u64, before: u64) -> Result<(), S::Error> {
        let seq = k
            .get(8..16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt::<S>(Q20_BIDS, "key"))?;
        if seq >= before {
            return Ok(());
        }
        let bid = BidRow::decode(v).ok_or_else(|| corrupt::<S>(Q20_BIDS, "bid"))?;
        if bid.auction != id {
            return Err(corrupt::<S>(Q20_BIDS, "bid of another auction"));
        }
        self.emitted.join_row(seq, id);
        Ok(())
    }
}
