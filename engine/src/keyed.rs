//! Keyed execution: a stream processor's operator runs on the shard that owns each
//! record's key, with direct state access.
//!
//! Calling state through [`Db`] from the processor's own thread costs a cross-thread
//! round trip per call. Here the hop is paid once per batch of records instead: the
//! caller [`push`](Keyed::push)es `(key, record)` pairs, records are grouped by the
//! shard owning the key's key group, and each full batch travels to that shard in one
//! message. On the shard, one long-lived task per pipeline runs the user's
//! [`Operator`] over the batches in arrival order with a [`LocalDb`] whose state calls
//! go straight to the shard's LSM — and fail (rather than hop) for a key another
//! shard owns, so an operator cannot silently fall off the fast path.
//!
//! Order: all records of one key go to one shard, through one bounded channel, into
//! one task that finishes a batch before it starts the next; so records of a key are
//! processed in the order they were pushed. Back-pressure: at most
//! `max_batches_in_flight` batches wait per shard; `push` waits beyond that.
//!
//! ```no_run
//! use terrace::{Db, KeyedOptions, LocalDb, Operator, Result};
//!
//! /// Counts records per key.
//! struct Count;
//!
//! impl Operator<(Vec<u8>, u64)> for Count {
//!     async fn process(&mut self, state: &LocalDb, (key, n): (Vec<u8>, u64)) -> Result<()> {
//!         let t = state.table("default")?;
//!         let old = state.get(t, &key).await?.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
//!         state.put(t, &key, &(old + n).to_le_bytes()).await
//!     }
//! }
//!
//! # async fn run(db: Db) -> Result<()> {
//! let mut keyed = db.keyed(|_shard| Count, KeyedOptions::default()).await?;
//! for i in 0..1000u64 {
//!     let key = format!("user-{}", i % 10).into_bytes();
//!     keyed.push(&key.clone(), (key, 1)).await?;
//! }
//! let done = keyed.finish().await?;
//! assert_eq!(done.records, 1000);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;

use crate::db::Db;
use crate::error::{Error, ErrorDetail, Result};
use crate::local_db::LocalDb;

/// A stream processor's operator, run on the shard owning each record's key.
///
/// One instance per shard and pipeline, made on the shard's thread by the factory
/// given to [`Db::keyed`]; it may keep per-shard state of its own between records.
pub trait Operator<R>: 'static {
    /// Processes one record. `state` reaches this shard's keys only: a call for a key
    /// of another shard fails with [`ErrorDetail::NotThisShard`].
    fn process(&mut self, state: &LocalDb, record: R) -> impl Future<Output = Result<()>>;

    /// Processes one batch (records of this shard, in arrival order). The default
    /// calls [`process`](Operator::process) for each; override it to pre-aggregate
    /// and read with one `multi_get` (micro-batching).
    fn process_batch(
        &mut self,
        state: &LocalDb,
        records: Vec<R>,
    ) -> impl Future<Output = Result<()>> {
        async move {
            for r in records {
                self.process(state, r).await?;
            }
            Ok(())
        }
    }
}

/// Sizes of a keyed pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedOptions {
    /// Records per batch (one cross-thread hop each); a partial batch goes at
    /// [`Keyed::flush`] and [`Keyed::finish`].
    pub batch_records: usize,
    /// Batches sent to one shard and not yet started; [`Keyed::push`] waits while
    /// a shard has this many.
    pub max_batches_in_flight: usize,
}

impl Default for KeyedOptions {
    fn default() -> Self {
        KeyedOptions {
            batch_records: 256,
            max_batches_in_flight: 4,
        }
    }
}

/// Largest `batch_records` and `max_batches_in_flight` accepted.
pub const MAX_KEYED_BATCH_RECORDS: usize = 1 << 20;
/// See [`MAX_KEYED_BATCH_RECORDS`].
pub const MAX_KEYED_BATCHES_IN_FLIGHT: usize = 1024;

impl KeyedOptions {
    fn validate(&self) -> Result<()> {
        let check = |name: &'static str, v: usize, max: usize| {
            if v == 0 || v > max {
                Err(Error::from(ErrorDetail::InvalidOption {
                    option: name,
                    reason: format!("{v} is outside 1..={max}"),
                }))
            } else {
                Ok(())
            }
        };
        check(
            "KeyedOptions::batch_records",
            self.batch_records,
            MAX_KEYED_BATCH_RECORDS,
        )?;
        check(
            "KeyedOptions::max_batches_in_flight",
            self.max_batches_in_flight,
            MAX_KEYED_BATCHES_IN_FLIGHT,
        )
    }
}

/// What a finished pipeline did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyedReport {
    /// Records processed.
    pub records: u64,
    /// Batches sent (cross-thread hops).
    pub batches: u64,
    /// Records processed per shard.
    pub records_per_shard: Vec<u64>,
}

/// One shard's end of a pipeline.
struct ShardLane<R> {
    buffer: Vec<R>,
    tx: Option<flume::Sender<Vec<R>>>,
    done: flume::Receiver<Result<u64>>,
}

/// A running keyed pipeline (see the module docs). Dropping it without
/// [`finish`](Keyed::finish) discards buffered records; the shard tasks end after
/// the batches already sent.
pub struct Keyed<R: Send + 'static> {
    db: Db,
    lanes: Vec<ShardLane<R>>,
    batch_records: usize,
    batches: u64,
}

impl Db {
    /// Starts a keyed pipeline: `factory(shard)` makes the operator instance of each
    /// shard, on that shard's thread.
    pub async fn keyed<R, Op, F>(&self, factory: F, opts: KeyedOptions) -> Result<Keyed<R>>
    where
        R: Send + 'static,
        Op: Operator<R>,
        F: Fn(u32) -> Op + Send + Sync + 'static,
    {
        opts.validate()?;
        let factory = Arc::new(factory);
        let mut lanes = Vec::with_capacity(self.shards() as usize);
        for shard in 0..self.shards() {
            let (tx, rx) = flume::bounded::<Vec<R>>(opts.max_batches_in_flight);
            let factory = factory.clone();
            let done = self
                .start_on(shard, move |local: LocalDb| async move {
                    let state = local.strict();
                    let mut op = factory(state.shard_id());
                    let mut records = 0u64;
                    loop {
                        // A task still waiting when its executor ends would never
                        // be dropped: end with the shard's close instead.
                        let next = {
                            let recv = std::pin::pin!(rx.recv_async());
                            let closing = std::pin::pin!(state.closing());
                            match futures_util::future::select(recv, closing).await {
                                Either::Left((batch, _)) => batch.ok(),
                                Either::Right(((), _)) => {
                                    return Err(ErrorDetail::Closed.into());
                                }
                            }
                        };
                        let Some(batch) = next else { break };
                        records += batch.len() as u64;
                        op.process_batch(&state, batch).await?;
                    }
                    Ok(records)
                })
                .await?;
            lanes.push(ShardLane {
                buffer: Vec::with_capacity(opts.batch_records),
                tx: Some(tx),
                done,
            });
        }
        Ok(Keyed {
            db: self.clone(),
            lanes,
            batch_records: opts.batch_records,
            batches: 0,
        })
    }
}

impl<R: Send + 'static> Keyed<R> {
    /// Queues `record` for the shard owning `key` (the state key it will touch, or
    /// any key of the same key group). Waits only when that shard is
    /// `max_batches_in_flight` batches behind.
    pub async fn push(&mut self, key: &[u8], record: R) -> Result<()> {
        let shard = self.db.shard_of_checked(key)?;
        let lane = &mut self.lanes[shard as usize];
        lane.buffer.push(record);
        if lane.buffer.len() >= self.batch_records {
            self.send(shard).await?;
        }
        Ok(())
    }

    /// Sends every partial batch now (records pushed so far start processing).
    pub async fn flush(&mut self) -> Result<()> {
        for shard in 0..self.lanes.len() as u32 {
            if !self.lanes[shard as usize].buffer.is_empty() {
                self.send(shard).await?;
            }
        }
        Ok(())
    }

    /// Sends what is buffered, waits until every record is processed, and reports.
    /// The first operator error of any shard is returned.
    pub async fn finish(mut self) -> Result<KeyedReport> {
        let flushed = self.flush().await;
        let mut report = KeyedReport {
            batches: self.batches,
            ..Default::default()
        };
        let mut first_err = flushed.err();
        for lane in &mut self.lanes {
            lane.tx = None;
            let n = match lane.done.recv_async().await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                    0
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| ErrorDetail::Closed.into());
                    0
                }
            };
            report.records += n;
            report.records_per_shard.push(n);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    async fn send(&mut self, shard: u32) -> Result<()> {
        let lane = &mut self.lanes[shard as usize];
        let batch = std::mem::replace(&mut lane.buffer, Vec::with_capacity(self.batch_records));
        let Some(tx) = &lane.tx else {
            return Err(ErrorDetail::Closed.into());
        };
        if tx.send_async(batch).await.is_err() {
            // The shard's task ended early: its operator failed (or the shard
            // stopped). Report why.
            lane.tx = None;
            return Err(match lane.done.recv_async().await {
                Ok(Err(e)) => e,
                _ => ErrorDetail::ShardGone {
                    shard,
                    what: "its keyed task stopped".into(),
                }
                .into(),
            });
        }
        self.batches += 1;
        Ok(())
    }
}
