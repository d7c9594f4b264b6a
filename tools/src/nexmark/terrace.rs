//! The queries on Terrace: [`State`] for [`LocalDb`] and [`Db`], an [`Operator`] running a
//! [`QueryOp`] per record or per batch, and the driver pushing events through
//! `Db::keyed`.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use terrace::{
    ConcurrentOperator, Db, Error, ErrorDetail, KeyedOptions, LocalDb, Operator, Options, TableId,
};

use super::queries::{all_tables, Emitted, QueryOp};
use super::{Mode, QueryName, Record, State, MAX_PREFIX_SUFFIX_BYTES, ROUTING_PREFIX_BYTES};

/// [`State`] for a Terrace handle: `LocalDb` on the owning shard (keyed execution),
/// `Db` from any thread ([`Mode::PerEventDb`]: each call a round trip to the shard
/// owning the key). Both have the same calls under the same names.
macro_rules! terrace_state {
    ($handle:ty) => {
        impl State for $handle {
            type Table = TableId;
            type Error = Error;

            fn table(&self, name: &str) -> terrace::Result<TableId> {
                <$handle>::table(self, name)
            }

            fn corrupt(what: String) -> Error {
                ErrorDetail::Internal(format!("nexmark operator state: {what}")).into()
            }

            async fn get(&self, t: TableId, key: &[u8]) -> terrace::Result<Option<Vec<u8>>> {
                <$handle>::get(self, t, key).await
            }

            async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> terrace::Result<()> {
                <$handle>::put(self, t, key, value).await
            }

            async fn delete(&self, t: TableId, key: &[u8]) -> terrace::Result<()> {
                <$handle>::delete(self, t, key).await
            }

            async fn multi_get(
                &self,
                t: TableId,
                keys: &[Vec<u8>],
            ) -> terrace::Result<Vec<Option<Vec<u8>>>> {
                <$handle>::multi_get(self, t, keys).await
            }

            async fn scan_prefix(
                &self,
                t: TableId,
                prefix: &[u8],
            ) -> terrace::Result<Vec<(Vec<u8>, Vec<u8>)>> {
                let upper = prefix_upper_bound(prefix);
                <$handle>::scan(
                    self,
                    t,
                    Bound::Included(prefix),
                    Bound::Included(upper.as_slice()),
                    usize::MAX,
                )
                .await
            }
        }
    };
}

terrace_state!(LocalDb);
terrace_state!(Db);

/// The inclusive upper key of a [`State::scan_prefix`] range.
fn prefix_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut upper = prefix.to_vec();
    upper.extend_from_slice(&[0xff; MAX_PREFIX_SUFFIX_BYTES]);
    upper
}

/// A query instance as a keyed operator.
pub struct KeyedQuery {
    op: QueryOp,
    mode: Mode,
}

impl Operator<Record> for KeyedQuery {
    async fn process(&mut self, state: &LocalDb, record: Record) -> terrace::Result<()> {
        self.op.process(state, record).await
    }

    async fn process_batch(
        &mut self,
        state: &LocalDb,
        records: Vec<Record>,
    ) -> terrace::Result<()> {
        match self.mode {
            Mode::PerEvent | Mode::PerEventDb => {
                for r in records {
                    self.op.process(state, r).await?;
                }
                Ok(())
            }
            Mode::Batched => self.op.process_batch(state, records).await,
        }
    }
}

/// Batched mode with batches of different keys running at once on a shard.
impl ConcurrentOperator<Record> for KeyedQuery {
    async fn process_batch(&self, state: &LocalDb, records: Vec<Record>) -> terrace::Result<()> {
        self.op.process_batch(state, records).await
    }
}

/// `base` made fit for the queries: their tables, and key groups by routing id.
pub fn nexmark_options(mut base: Options) -> Options {
    base.tables = all_tables();
    base.key_group_prefix_bytes = Some(ROUTING_PREFIX_BYTES);
    base
}

/// What one query run did.
#[derive(Clone, Debug)]
pub struct QueryRun {
    /// Events generated (all of them, including those the query filters out).
    pub events: u64,
    /// Records the operators processed.
    pub records: u64,
    /// Wall time from the first event to the last record processed.
    pub elapsed: Duration,
    /// Output rows and their digest (q20).
    pub emitted: (u64, u64),
}

/// Runs `query` over `events` on `db` through keyed execution with `opts`
/// (`batch_records` is also the micro-batch of [`Mode::Batched`], whose batches run
/// up to `concurrent_batches` at once per shard), or for [`Mode::PerEventDb`] on
/// this thread through `db`'s calls.
pub async fn run_query(
    db: &Db,
    query: QueryName,
    mode: Mode,
    events: impl Iterator<Item = Record>,
    opts: KeyedOptions,
) -> terrace::Result<QueryRun> {
    let emitted = Arc::new(Emitted::default());
    let sink = emitted.clone();
    let start = terrace_tiering::clock::now();
    if mode == Mode::PerEventDb {
        // No keyed execution: this thread calls state through `Db`, one call at a
        // time, for every record in order.
        let mut op = QueryOp::new(query, sink);
        let (mut n, mut records) = (0u64, 0u64);
        for record in events {
            n += 1;
            if query.route(&record.1).is_some() {
                op.process(db, record).await?;
                records += 1;
            }
        }
        return Ok(QueryRun {
            events: n,
            records,
            elapsed: start.elapsed(),
            emitted: emitted.get(),
        });
    }
    let factory = move |_shard| KeyedQuery {
        op: QueryOp::new(query, sink.clone()),
        mode,
    };
    let mut keyed = match mode {
        Mode::PerEvent | Mode::PerEventDb => db.keyed(factory, opts).await?,
        Mode::Batched => db.keyed_concurrent(factory, opts).await?,
    };
    let mut n = 0u64;
    for record in events {
        n += 1;
        if let Some(route) = query.route(&record.1) {
            keyed.push(&route, record).await?;
        }
    }
    let report = keyed.finish().await?;
    Ok(QueryRun {
        events: n,
        records: report.records,
        elapsed: start.elapsed(),
        emitted: emitted.get(),
    })
}

/// Live SST bytes plus active memtable bytes, over every shard.
pub async fn state_bytes(db: &Db) -> terrace::Result<u64> {
    let stats = db.stats().await?;
    Ok(stats
        .shards
        .iter()
        .map(|s| s.levels.iter().map(|l| l.bytes).sum::<u64>() + s.memtable_bytes as u64)
        .sum())
}
