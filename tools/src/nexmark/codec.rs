//! The operators' value encoding: little-endian `u64`s and `u32`-length-prefixed
//! strings, read back with bounds checks (a short or malformed value is an error,
//! never a panic).

use nexmark::event::{Auction, Bid};

/// Appends fields to a value.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Appends `v`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends `s` with its length.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
}

/// Reads fields from a value.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// The next `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// The next string.
    pub fn str(&mut self) -> Option<String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A key of big-endian ids (sorts numerically, routing id first).
pub fn key(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// A bid as the operators keep it (every field of the event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidRow {
    /// Auction bid on.
    pub auction: u64,
    /// Who bid.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Event time, ms.
    pub date_time: u64,
    /// Channel.
    pub channel: String,
    /// URL.
    pub url: String,
    /// Filler.
    pub extra: String,
}

impl From<&Bid> for BidRow {
    fn from(b: &Bid) -> Self {
        BidRow {
            auction: b.auction as u64,
            bidder: b.bidder as u64,
            price: b.price as u64,
            date_time: b.date_time,
            channel: b.channel.clone(),
            url: b.url.clone(),
            extra: b.extra.clone(),
        }
    }
}

impl BidRow {
    /// Appends the row.
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.auction)
            .u64(self.bidder)
            .u64(self.price)
            .u64(self.date_time)
            .str(&self.channel)
            .str(&self.url)
            .str(&self.extra);
    }

    /// The row alone, as a value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.0
    }

    /// Reads one row.
    pub fn read(r: &mut Reader<'_>) -> Option<BidRow> {
        Some(BidRow {
            auction: r.u64()?,
            bidder: r.u64()?,
            price: r.u64()?,
            date_time: r.u64()?,
            channel: r.str()?,
            url: r.str()?,
            extra: r.str()?,
        })
    }

    /// A value holding exactly one row.
    pub fn decode(v: &[u8]) -> Option<BidRow> {
        let mut r = Reader(v);
        let row = BidRow::read(&mut r)?;
        r.is_empty().then_some(row)
    }
}

/// An auction as q20 keeps it (every field of the event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionRow {
    /// Auction id.
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Description.
    pub description: String,
    /// Initial bid.
    pub initial_bid: u64,
    /// Reserve price.
    pub reserve: u64,
    /// Event time, ms.
    pub date_time: u64,
    /// Expiry, ms.
    pub expires: u64,
    /// Seller id.
    pub seller: u64,
    /// Category id.
    pub category: u64,
    /// Filler.
    pub extra: String,
}

impl From<&Auction> for AuctionRow {
    fn from(a: &Auction) -> Self {
        AuctionRow {
            id: a.id as u64,
            item_name: a.item_name.clone(),
            description: a.description.clone(),
            initial_bid: a.initial_bid as u64,
            reserve: a.reserve as u64,
            date_time: a.date_time,
            expires: a.expires,
            seller: a.seller as u64,
            category: a.category as u64,
            extra: a.extra.clone(),
        }
    }
}

impl AuctionRow {
    /// The row as a value.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.id)
            .str(&self.item_name)
            .str(&self.description)
            .u64(self.initial_bid)
            .u64(self.reserve)
            .u64(self.date_time)
            .u64(self.expires)
            .u64(self.seller)
            .u64(self.category)
            .str(&self.extra);
        w.0
    }

    /// Reads a value holding exactly one row.
    pub fn decode(v: &[u8]) -> Option<AuctionRow> {
        let mut r = Reader(v);
        let row = AuctionRow {
            id: r.u64()?,
            item_name: r.str()?,
            description: r.str()?,
            initial_bid: r.u64()?,
            reserve: r.u64()?,
            date_time: r.u64()?,
            expires: r.u64()?,
            seller: r.u64()?,
            category: r.u64()?,
            extra: r.str()?,
        };
        r.is_empty().then_some(row)
    }
}

/// A list of bids (q19's top 10), count first.
pub fn encode_bids(rows: &[BidRow]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(rows.len() as u64);
    for row in rows {
        row.write(&mut w);
    }
    w.0
}

/// Reads [`encode_bids`]'s value.
pub fn decode_bids(v: &[u8]) -> Option<Vec<BidRow>> {
    let mut r = Reader(v);
    let n = r.u64()?;
    // Every row takes at least 44 bytes: a count beyond that is corrupt, not an
    // allocation to attempt.
    if n > (v.len() / 44) as u64 {
        return None;
    }
    let rows = (0..n)
        .map(|_| BidRow::read(&mut r))
        .collect::<Option<Vec<_>>>()?;
    r.is_empty().then_some(rows)
}

/// An 8-byte little-endian counter.
pub fn decode_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

/// A 64-bit mix (splitmix64's finalizer): spreads an emitted row's ids over the
/// digest so that the sum of digests identifies the set of rows.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(price: u64) -> BidRow {
        BidRow {
            auction: 1000,
            bidder: 1001,
            price,
            date_time: 7,
            channel: "Google".into(),
            url: "https://x".into(),
            extra: "e".into(),
        }
    }

    #[test]
    fn rows_round_trip_and_short_values_fail() {
        let b = bid(5);
        assert_eq!(BidRow::decode(&b.encode()), Some(b.clone()));
        let list = vec![bid(9), bid(3)];
        let v = encode_bids(&list);
        assert_eq!(decode_bids(&v), Some(list));
        for cut in 0..v.len() {
            assert_eq!(decode_bids(&v[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_bids(&u64::MAX.to_le_bytes()), None);
        assert_eq!(decode_u64(&[1, 2, 3]), None);
    }
}
