//! The queries computed in memory over the same events, written from the queries'
//! definitions rather than from the operators: the expected state of every table
//! (encoded as the operators encode it) and the expected output rows of q20.

use std::collections::{BTreeMap, HashMap};

use nexmark::event::Event;

use super::codec::{encode_bids, key, AuctionRow, BidRow};
use super::queries::{
    join_digest, q5_slice, q7_window, Q18_TABLE, Q19_TABLE, Q19_TOP_N, Q20_AUCTIONS, Q20_BIDS,
    Q20_CATEGORY, Q5_TABLE, Q7_TABLE,
};
use super::{QueryName, Record};

/// What a query should leave behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Table name → every key and value.
    pub tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Output rows (q20 only) and the wrapping sum of their digests.
    pub emitted: (u64, u64),
}

/// The expected outcome of `query` over `records`.
pub fn expected(query: QueryName, records: &[Record]) -> Expected {
    let bids = || {
        records.iter().filter_map(|(seq, e)| match e {
            Event::Bid(b) => Some((*seq, BidRow::from(b))),
            _ => None,
        })
    };
    let mut out = Expected::default();
    match query {
        QueryName::Q5 => {
            let mut counts: HashMap<(u64, u64), u64> = HashMap::new();
            for (_, b) in bids() {
                *counts
                    .entry((b.auction, q5_slice(b.date_time)))
                    .or_default() += 1;
            }
            out.tables.insert(
                Q5_TABLE.into(),
                counts
                    .into_iter()
                    .map(|((a, s), n)| (key(&[a, s]), n.to_le_bytes().to_vec()))
                    .collect(),
            );
        }
        QueryName::Q7 => {
            // The highest price of each window; the first bid at that price.
            let mut best: HashMap<u64, BidRow> = HashMap::new();
            for (_, b) in bids() {
                let w = q7_window(b.date_time);
                if best.get(&w).is_none_or(|cur| b.price > cur.price) {
                    best.insert(w, b);
                }
            }
            out.tables.insert(
                Q7_TABLE.into(),
                best.into_iter()
                    .map(|(w, b)| (key(&[w]), b.encode()))
                    .collect(),
            );
        }
        QueryName::Q18 => {
            // Per (bidder, auction): the bid of the greatest time, the last of equals.
            let mut latest: HashMap<(u64, u64), BidRow> = HashMap::new();
            for (_, b) in bids() {
                let k = (b.bidder, b.auction);
                if latest
                    .get(&k)
                    .is_none_or(|cur| b.date_time >= cur.date_time)
                {
                    latest.insert(k, b);
                }
            }
            out.tables.insert(
                Q18_TABLE.into(),
                latest
                    .into_iter()
                    .map(|((bidder, a), b)| (key(&[bidder, a]), b.encode()))
                    .collect(),
            );
        }
        QueryName::Q19 => {
            // Per auction: all bids, stably sorted by price descending, first 10.
            let mut all: HashMap<u64, Vec<BidRow>> = HashMap::new();
            for (_, b) in bids() {
                all.entry(b.auction).or_default().push(b);
            }
            out.tables.insert(
                Q19_TABLE.into(),
                all.into_iter()
                    .map(|(a, mut list)| {
                        list.sort_by_key(|b| std::cmp::Reverse(b.price));
                        list.truncate(Q19_TOP_N);
                        (key(&[a]), encode_bids(&list))
                    })
                    .collect(),
            );
        }
        QueryName::Q20 => {
            let auctions: BTreeMap<u64, AuctionRow> = records
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::Auction(a) if a.category == Q20_CATEGORY => {
                        Some((a.id as u64, AuctionRow::from(a)))
                    }
                    _ => None,
                })
                .collect();
            let mut bid_side = BTreeMap::new();
            let (mut rows, mut digest) = (0u64, 0u64);
            for (seq, b) in bids() {
                if auctions.contains_key(&b.auction) {
                    rows += 1;
                    digest = digest.wrapping_add(join_digest(seq, b.auction));
                }
                bid_side.insert(key(&[b.auction, seq]), b.encode());
            }
            out.tables.insert(Q20_BIDS.into(), bid_side);
            out.tables.insert(
                Q20_AUCTIONS.into(),
                auctions
                    .into_iter()
                    .map(|(id, a)| (key(&[id]), a.encode()))
                    .collect(),
            );
            out.emitted = (rows, digest);
        }
    }
    out
}
