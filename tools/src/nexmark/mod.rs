//! `terrace-nexmark`: Nexmark queries with the state access of Flink's plans, run on
//! Terrace's keyed execution (and, through the same code, on any engine that
//! implements [`State`]).
//!
//! Events come from the `nexmark` crate's generator ([`events`]). Each query
//! ([`queries`]) is written against the small [`State`] trait — get, put, delete,
//! multi_get and a prefix scan — so the operator logic is engine-agnostic; [`terrace`]
//! implements [`State`] for [`LocalDb`](::terrace::LocalDb) and drives a query through
//! `Db::keyed`. [`reference`] computes the same queries over the same events with
//! in-memory maps, for the tests.
//!
//! State keys begin with the 8-byte big-endian id the record is routed by (auction,
//! bidder or window), and the database is opened with `key_group_prefix_bytes = 8`,
//! so every key a record touches — and every prefix scan — stays in the key group of
//! the record's routing key, on the shard the record was sent to.
//!
//! Values are the operators' own encoding (little-endian integers, length-prefixed
//! strings, see [`codec`]): benchmark state in a scratch database, not a persisted
//! format of the engine.

pub mod codec;
pub mod flags;
pub mod queries;
pub mod reference;
pub mod terrace;

use std::future::Future;

use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;

/// Base time of the generated events (ms since the epoch): fixed, so runs repeat.
pub const BASE_TIME_MS: u64 = 1_700_000_000_000;

/// Every key group is the hash of a state key's first 8 bytes (the routing id).
pub const ROUTING_PREFIX_BYTES: u32 = 8;

/// Keys under one [`State::scan_prefix`] prefix are at most this much longer than
/// the prefix.
pub const MAX_PREFIX_SUFFIX_BYTES: usize = 32;

/// Entries of a scan: keys and values in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// State access of one operator instance: what the queries need of a key-value
/// engine. Keys a record touches all belong to the record's routing key group.
pub trait State {
    /// A resolved table.
    type Table: Copy;
    /// The engine's error.
    type Error;

    /// The table named `name`.
    fn table(&self, name: &str) -> Result<Self::Table, Self::Error>;

    /// The error for a state value the operator cannot decode.
    fn corrupt(what: String) -> Self::Error;

    /// The value of `key`.
    fn get(
        &self,
        t: Self::Table,
        key: &[u8],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>>;

    /// Sets `key` to `value`.
    fn put(
        &self,
        t: Self::Table,
        key: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<(), Self::Error>>;

    /// Removes `key`.
    fn delete(&self, t: Self::Table, key: &[u8]) -> impl Future<Output = Result<(), Self::Error>>;

    /// The values of `keys`, in order.
    fn multi_get(
        &self,
        t: Self::Table,
        keys: &[Vec<u8>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, Self::Error>>;

    /// Every entry whose key starts with `prefix` (and is at most
    /// [`MAX_PREFIX_SUFFIX_BYTES`] longer), in key order.
    fn scan_prefix(
        &self,
        t: Self::Table,
        prefix: &[u8],
    ) -> impl Future<Output = Result<Entries, Self::Error>>;
}

/// The queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryName {
    /// Hopping-window (10 s, every 2 s) bid count per auction.
    Q5,
    /// Highest bid per 10 s tumbling window.
    Q7,
    /// Latest bid per (bidder, auction).
    Q18,
    /// Top 10 bids per auction.
    Q19,
    /// Bids joined with auctions of category 10, state on both sides.
    Q20,
}

impl QueryName {
    /// Every query, in order.
    pub const ALL: [QueryName; 5] = [
        QueryName::Q5,
        QueryName::Q7,
        QueryName::Q18,
        QueryName::Q19,
        QueryName::Q20,
    ];

    /// `q5`, `q7`, ...
    pub fn name(self) -> &'static str {
        match self {
            QueryName::Q5 => "q5",
            QueryName::Q7 => "q7",
            QueryName::Q18 => "q18",
            QueryName::Q19 => "q19",
            QueryName::Q20 => "q20",
        }
    }

    /// The tables the query keeps state in.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            QueryName::Q5 => &[queries::Q5_TABLE],
            QueryName::Q7 => &[queries::Q7_TABLE],
            QueryName::Q18 => &[queries::Q18_TABLE],
            QueryName::Q19 => &[queries::Q19_TABLE],
            QueryName::Q20 => &[queries::Q20_AUCTIONS, queries::Q20_BIDS],
        }
    }

    /// The id a record of this query is routed by (the first 8 bytes of every state
    /// key it touches), or `None` for an event the query filters out before the
    /// exchange.
    pub fn route(self, event: &Event) -> Option<[u8; 8]> {
        let id = match (self, event) {
            (QueryName::Q5 | QueryName::Q19, Event::Bid(b)) => b.auction as u64,
            (QueryName::Q7, Event::Bid(b)) => queries::q7_window(b.date_time),
            (QueryName::Q18, Event::Bid(b)) => b.bidder as u64,
            (QueryName::Q20, Event::Bid(b)) => b.auction as u64,
            (QueryName::Q20, Event::Auction(a)) if a.category == queries::Q20_CATEGORY => {
                a.id as u64
            }
            _ => return None,
        };
        Some(id.to_be_bytes())
    }
}

impl std::str::FromStr for QueryName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueryName::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown query {s:?} (q5, q7, q18, q19, q20 or all)"))
    }
}

/// How an operator calls state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One state call at a time, per record (Flink's classic model).
    #[value(name = "per-event")]
    PerEvent,
    /// Per micro-batch: pre-aggregate, one `multi_get`, then the writes.
    Batched,
    /// One state call at a time, per record, on the driver's own thread through the
    /// `Db` handle (a cross-thread round trip per call; no keyed execution): the
    /// way a stream processor that does not run on Terrace's shards calls it.
    /// Terrace only.
    #[value(name = "per-event-db")]
    PerEventDb,
}

/// One record pushed to an operator: its position in the event stream and the event.
pub type Record = (u64, Event);

/// The first `n` events of the default Nexmark generator (10,000 events per second
/// of event time, a fixed base time), numbered from 0.
pub fn events(n: u64) -> impl Iterator<Item = Record> {
    events_at_rate(n, NexmarkConfig::default().first_rate)
}

/// The first `n` events as the driver feeds them: all generated up front when
/// `pregenerate` (so the timed loop only routes them), else lazily.
pub fn event_source(n: u64, pregenerate: bool) -> Box<dyn Iterator<Item = Record> + Send> {
    if pregenerate {
        Box::new(events(n).collect::<Vec<_>>().into_iter())
    } else {
        Box::new(events(n))
    }
}

/// The same at `per_second` events per second of event time (more windows for
/// fewer events in tests); ids and every other field are as in [`events`].
pub fn events_at_rate(n: u64, per_second: usize) -> impl Iterator<Item = Record> {
    let config = NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_rate: per_second.max(1),
        next_rate: per_second.max(1),
        ..NexmarkConfig::default()
    };
    // `EventGenerator::default()` never advances; `new` does.
    (0..n).zip(EventGenerator::new(config))
}
