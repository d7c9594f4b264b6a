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
//! Concurrent batches ([`Db::keyed_concurrent`], a [`ConcurrentOperator`]): when state
//! lives in the object store, a batch that misses the caches waits one store round
//! trip, and a shard that runs one batch at a time idles meanwhile. Such a pipeline
//! runs up to `concurrent_batches` batches per shard at once, as Flink's asynchronous
//! state execution does per record: a record whose pushed key belongs to a batch
//! still running waits (with every later record of that key) and goes in a later
//! batch, so the records of one key are still processed one batch after another in
//! push order, while records of other keys overtake them. The operator must
//! therefore touch only state of its record's pushed key (as Flink's keyed state
//! does).
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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use xxhash_rust::xxh3::xxh3_64;

use crate::db::Db;
use crate::error::{Error, ErrorDetail, Result};
use crate::lanes::PassThrough;
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

/// An operator whose batches may run concurrently on one shard
/// ([`Db::keyed_concurrent`]): it takes `&self`, so keep any per-shard state of its
/// own in cells. Two batches running at once never share a pushed key, and the
/// records of a key arrive in push order, one batch after another; a batch may hold
/// several records of one key (in push order). State calls reach this shard's keys
/// only, as with [`Operator`].
pub trait ConcurrentOperator<R>: 'static {
    /// Processes one batch (records of this shard, keys' records in push order).
    fn process_batch(&self, state: &LocalDb, records: Vec<R>) -> impl Future<Output = Result<()>>;
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
    /// Batches one shard runs at once in a [`Db::keyed_concurrent`] pipeline (1:
    /// one after another, as [`Db::keyed`] always does). Records waiting for a key
    /// held by a running batch count against `max_batches_in_flight *
    /// batch_records`; past that the shard takes no new batch until they go.
    pub concurrent_batches: usize,
    /// How long the newest running batch must have been pending before another
    /// starts beside it (concurrent pipelines): long enough that a batch pausing
    /// for a timer or a local read does not split keys across batches, short
    /// against an object-store round trip.
    pub concurrent_after: Duration,
}

impl Default for KeyedOptions {
    fn default() -> Self {
        KeyedOptions {
            batch_records: 256,
            max_batches_in_flight: 4,
            concurrent_batches: 16,
            concurrent_after: Duration::from_millis(1),
        }
    }
}

/// Largest `batch_records` and `max_batches_in_flight` accepted.
pub const MAX_KEYED_BATCH_RECORDS: usize = 1 << 20;
/// See [`MAX_KEYED_BATCH_RECORDS`].
pub const MAX_KEYED_BATCHES_IN_FLIGHT: usize = 1024;
/// Largest `concurrent_batches` accepted.
pub const MAX_KEYED_CONCURRENT_BATCHES: usize = 1024;
/// Largest `concurrent_after` accepted.
pub const MAX_KEYED_CONCURRENT_AFTER: Duration = Duration::from_secs(10);

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
        )?;
        check(
            "KeyedOptions::concurrent_batches",
            self.concurrent_batches,
            MAX_KEYED_CONCURRENT_BATCHES,
        )?;
        if self.concurrent_after > MAX_KEYED_CONCURRENT_AFTER {
            return Err(ErrorDetail::InvalidOption {
                option: "KeyedOptions::concurrent_after",
                reason: format!(
                    "{:?} is above {:?}",
                    self.concurrent_after, MAX_KEYED_CONCURRENT_AFTER
                ),
            }
            .into());
        }
        Ok(())
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

/// A batch as it travels: each record with the hash of its pushed key (0 when the
/// pipeline runs its batches one at a time and does not need it).
type Batch<R> = Vec<(u64, R)>;

/// One shard's end of a pipeline.
struct ShardLane<R> {
    buffer: Batch<R>,
    tx: Option<flume::Sender<Batch<R>>>,
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
    /// Whether records carry their key's hash (concurrent batches need it).
    hash_keys: bool,
}

impl Db {
    /// Starts a keyed pipeline: `factory(shard)` makes the operator instance of each
    /// shard, on that shard's thread. Each shard runs its batches one at a time.
    pub async fn keyed<R, Op, F>(&self, factory: F, opts: KeyedOptions) -> Result<Keyed<R>>
    where
        R: Send + 'static,
        Op: Operator<R>,
        F: Fn(u32) -> Op + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.start_keyed(opts, false, move |state, rx, _opts| {
            let factory = factory.clone();
            async move {
                let mut op = factory(state.shard_id());
                let mut records = 0u64;
                while let Some(batch) = next_batch(&state, &rx).await? {
                    records += batch.len() as u64;
                    op.process_batch(&state, batch.into_iter().map(|(_, r)| r).collect())
                        .await?;
                }
                Ok(records)
            }
        })
        .await
    }

    /// Starts a keyed pipeline whose shards run up to `opts.concurrent_batches`
    /// batches at once (see the module docs): for state that misses the caches,
    /// where one batch would otherwise wait out every store round trip alone.
    pub async fn keyed_concurrent<R, Op, F>(
        &self,
        factory: F,
        opts: KeyedOptions,
    ) -> Result<Keyed<R>>
    where
        R: Send + 'static,
        Op: ConcurrentOperator<R>,
        F: Fn(u32) -> Op + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.start_keyed(opts, true, move |state, rx, opts| {
            let factory = factory.clone();
            async move {
                let op = factory(state.shard_id());
                run_concurrent(&state, &op, &rx, &opts).await
            }
        })
        .await
    }

    async fn start_keyed<R, S, Fut>(
        &self,
        opts: KeyedOptions,
        hash_keys: bool,
        shard_task: S,
    ) -> Result<Keyed<R>>
    where
        R: Send + 'static,
        S: Fn(LocalDb, flume::Receiver<Batch<R>>, KeyedOptions) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u64>> + 'static,
    {
        opts.validate()?;
        let shard_task = Arc::new(shard_task);
        let mut lanes = Vec::with_capacity(self.shards() as usize);
        for shard in 0..self.shards() {
            let (tx, rx) = flume::bounded::<Batch<R>>(opts.max_batches_in_flight);
            let task = shard_task.clone();
            let o = opts.clone();
            let done = self
                .start_on(shard, move |local: LocalDb| task(local.strict(), rx, o))
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
            hash_keys,
        })
    }
}

/// The next batch for a shard task, `None` once the pipeline is finished. A task
/// still waiting when its executor ends would never be dropped: it ends with the
/// shard's close instead.
async fn next_batch<R>(
    state: &LocalDb,
    rx: &flume::Receiver<Batch<R>>,
) -> Result<Option<Batch<R>>> {
    let recv = std::pin::pin!(rx.recv_async());
    let closing = std::pin::pin!(state.closing());
    match futures_util::future::select(recv, closing).await {
        Either::Left((batch, _)) => Ok(batch.ok()),
        Either::Right(((), _)) => Err(ErrorDetail::Closed.into()),
    }
}

/// A key held by a running batch, and the records waiting for it (push order).
struct Held<R> {
    /// The batch holding it.
    batch: u64,
    waiting: VecDeque<R>,
}

/// Which records of a concurrent pipeline's shard may start: a record waits while a
/// running batch holds its key. Per-key order is all that is kept (records of
/// different keys may overtake each other): a key's records in `fresh` are always
/// newer than those waiting for it in `held`.
struct KeyGate<R> {
    held: HashMap<u64, Held<R>, BuildHasherDefault<PassThrough>>,
    /// Records not looked at since they arrived or their key was released.
    fresh: VecDeque<(u64, R)>,
    /// Records in `fresh` and waiting in `held`.
    pending: usize,
    batches: u64,
}

impl<R> KeyGate<R> {
    fn new() -> Self {
        KeyGate {
            held: HashMap::default(),
            fresh: VecDeque::new(),
            pending: 0,
            batches: 0,
        }
    }

    fn push(&mut self, batch: Batch<R>) {
        self.pending += batch.len();
        self.fresh.extend(batch);
    }

    /// The next batch: up to `max` records from `fresh`, in order, whose keys no
    /// running batch holds (the others go to wait for their key), with the keys it
    /// now holds, to [`release`](Self::release) when it is done.
    fn take_ready(&mut self, max: usize) -> (Vec<R>, Vec<u64>) {
        self.batches += 1;
        let id = self.batches;
        let mut batch = Vec::new();
        let mut keys = Vec::new();
        while batch.len() < max {
            let Some((k, r)) = self.fresh.pop_front() else {
                break;
            };
            match self.held.get_mut(&k) {
                Some(h) if h.batch == id => batch.push(r),
                Some(h) => h.waiting.push_back(r),
                None => {
                    self.held.insert(
                        k,
                        Held {
                            batch: id,
                            waiting: VecDeque::new(),
                        },
                    );
                    keys.push(k);
                    batch.push(r);
                }
            }
        }
        self.pending -= batch.len();
        (batch, keys)
    }

    /// A batch is done: its keys' waiting records go back to the front of `fresh`
    /// (older than any record of theirs there).
    fn release(&mut self, keys: &[u64]) {
        for k in keys {
            if let Some(h) = self.held.remove(k) {
                for r in h.waiting.into_iter().rev() {
                    self.fresh.push_front((*k, r));
                }
            }
        }
    }
}

/// What woke a concurrent pipeline's shard task.
enum Wake<R> {
    Done(Option<(Result<()>, Vec<u64>)>),
    Input(Result<Option<Batch<R>>>),
    Timer,
}

/// A shard's task of a concurrent pipeline: up to `concurrent_batches` batches at
/// once, records of a held key kept back until its batch is done.
async fn run_concurrent<R, Op: ConcurrentOperator<R>>(
    state: &LocalDb,
    op: &Op,
    rx: &flume::Receiver<Batch<R>>,
    opts: &KeyedOptions,
) -> Result<u64> {
    let max_waiting = opts
        .max_batches_in_flight
        .saturating_mul(opts.batch_records);
    let mut gate = KeyGate::new();
    let mut running = FuturesUnordered::new();
    let mut records = 0u64;
    let mut input_open = true;
    let mut last_start = terrace_tiering::clock::now();
    loop {
        // Start a batch beside running ones only once the newest has been pending
        // for `concurrent_after`: a batch waiting on the object store waits tens of
        // milliseconds, one pausing for a timer or a local read far less, and
        // starting another then would only split keys across batches. A batch that
        // completes in its first poll leaves the shard running one at a time.
        let mut wait_to_start = None;
        loop {
            while let Some(Some((result, keys))) = running.next().now_or_never() {
                let keys: Vec<u64> = keys;
                result?;
                gate.release(&keys);
            }
            if running.len() >= opts.concurrent_batches || gate.fresh.is_empty() {
                break;
            }
            if !running.is_empty() {
                let pending_for = last_start.elapsed();
                if pending_for < opts.concurrent_after {
                    wait_to_start = Some(opts.concurrent_after - pending_for);
                    break;
                }
            }
            let (batch, keys) = gate.take_ready(opts.batch_records);
            if batch.is_empty() {
                break;
            }
            records += batch.len() as u64;
            last_start = terrace_tiering::clock::now();
            running.push(async move { (op.process_batch(state, batch).await, keys) });
        }
        let take_input =
            input_open && running.len() < opts.concurrent_batches && gate.pending < max_waiting;
        if running.is_empty() {
            if take_input {
                match next_batch(state, rx).await? {
                    Some(batch) => gate.push(batch),
                    None => input_open = false,
                }
                continue;
            }
            if gate.pending == 0 && !input_open {
                return Ok(records);
            }
            // Unreachable: with nothing running every key is free, and input is
            // taken while it is open.
            return Err(
                ErrorDetail::Internal("keyed: records wait on keys no batch holds".into()).into(),
            );
        }
        let done = running.next().map(Wake::Done);
        let input = async {
            if take_input {
                Wake::Input(next_batch(state, rx).await)
            } else {
                std::future::pending().await
            }
        };
        let timer = async {
            match wait_to_start {
                Some(d) => {
                    glommio::timer::sleep(d).await;
                    Wake::Timer
                }
                None => std::future::pending().await,
            }
        };
        match futures_lite::future::or(done, futures_lite::future::or(input, timer)).await {
            Wake::Done(Some((result, keys))) => {
                result?;
                gate.release(&keys);
            }
            Wake::Done(None) | Wake::Timer => {}
            Wake::Input(batch) => match batch? {
                Some(batch) => gate.push(batch),
                None => input_open = false,
            },
        }
    }
}

impl<R: Send + 'static> Keyed<R> {
    /// Queues `record` for the shard owning `key` (the state key it will touch, or
    /// any key of the same key group). Waits only when that shard is
    /// `max_batches_in_flight` batches behind.
    pub async fn push(&mut self, key: &[u8], record: R) -> Result<()> {
        let shard = self.db.shard_of_checked(key)?;
        let hash = if self.hash_keys { xxh3_64(key) } else { 0 };
        let lane = &mut self.lanes[shard as usize];
        lane.buffer.push((hash, record));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(records: &[(u64, u32)]) -> KeyGate<u32> {
        let mut g = KeyGate::new();
        g.push(records.to_vec());
        g
    }

    fn fresh(g: &KeyGate<u32>) -> Vec<(u64, u32)> {
        g.fresh.iter().copied().collect()
    }

    #[test]
    fn records_of_held_keys_wait_in_order_and_the_rest_go() {
        let mut g = gate(&[(1, 10)]);
        let (first, held) = g.take_ready(100);
        assert_eq!((first, held.clone()), (vec![10], vec![1]));
        g.push(vec![(2, 11), (1, 12), (3, 13), (2, 14), (1, 15)]);
        let (batch, keys) = g.take_ready(100);
        assert_eq!(batch, vec![11, 13, 14]);
        assert_eq!(keys, vec![2, 3]);
        assert_eq!(g.pending, 2);
        // Nothing more can start until key 1 is released.
        g.push(vec![(1, 16)]);
        assert!(g.take_ready(100).0.is_empty());
        g.release(&held);
        assert_eq!(g.take_ready(100).0, vec![12, 15, 16]);
        assert_eq!(g.pending, 0);
    }

    #[test]
    fn a_batch_stops_at_its_size_and_keeps_the_rest_in_order() {
        let mut g = gate(&[(1, 1), (2, 2), (3, 3), (1, 4)]);
        let (batch, keys) = g.take_ready(2);
        assert_eq!(batch, vec![1, 2]);
        assert_eq!(fresh(&g), vec![(3, 3), (1, 4)]);
        // Key 1 is held by the first batch: its later record waits, key 3 goes.
        assert_eq!(g.take_ready(2).0, vec![3]);
        g.push(vec![(1, 5)]);
        // Released, key 1's waiting record comes before the newer one.
        g.release(&keys);
        assert_eq!(fresh(&g), vec![(1, 4), (1, 5)]);
        assert_eq!(g.take_ready(2).0, vec![4, 5]);
    }

    #[test]
    fn a_key_released_while_its_newer_records_are_fresh_keeps_their_order() {
        let mut g = gate(&[(7, 1)]);
        let (_, held) = g.take_ready(8);
        g.push(vec![(7, 2), (7, 3)]);
        // One pass moves 2 and 3 to wait for key 7; a later arrival stays fresh.
        assert!(g.take_ready(8).0.is_empty());
        g.push(vec![(7, 4)]);
        g.release(&held);
        assert_eq!(fresh(&g), vec![(7, 2), (7, 3), (7, 4)]);
    }
}
