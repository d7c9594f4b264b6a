//! The database handle: opening shards on their executor threads and routing
//! requests to them.
//!
//! [`Db`] is `Send + Sync` and cheap to clone. Each request is validated on the
//! caller's thread, routed to the shard owning its key group, and sent over a
//! bounded channel as a job that the shard runs in its foreground task queue. The
//! reply comes back over a one-shot channel, so the future works on any runtime (or
//! under `futures_lite::future::block_on`). Code already on a shard's thread uses a
//! [`LocalDb`] and skips the hop.

use std::future::Future;
use std::ops::Bound;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::db_iter::{DbIter, Entry, IterOptions, KeyRange};
use crate::error::{Error, ErrorDetail, Result};
use crate::key::TableId;
use crate::local_db::LocalDb;
use crate::lock::DbLock;
use crate::meta::DbMeta;
use crate::options::Options;
use crate::remote::Remote;
use crate::router::{KeyBatches, Router, ScanPlan};
use crate::shard::pulse::{Pulse, PulseThread, Watched};
use crate::shard::request::CallerSide;
use crate::shard::runner::{run_inline_or_spawn, shard_main, Job, Msg};
use crate::shard::Shard;
use crate::stats::{DbStats, LiveFile};
use terrace_tiering::store::IoRuntime;

pub(crate) struct DbInner {
    pub(crate) router: Router,
    senders: Vec<flume::Sender<Msg>>,
    /// Per shard: requests in flight and how spinning on answers fares.
    callers: Vec<Arc<CallerSide>>,
    threads: Mutex<Vec<ExecutorJoinHandle<()>>>,
    closed: AtomicBool,
    pub(crate) remote: Option<Arc<Remote>>,
    /// Stopped after the shards, so their last uploads can finish.
    io_runtime: Mutex<Option<IoRuntime>>,
    /// The database lock (none when read-only); released after the shards stop.
    lock: Mutex<Option<DbLock>>,
    /// Nudges shard executors that sleep with work waiting; stopped last.
    pulse: Mutex<Option<PulseThread>>,
    pulses: Vec<Arc<Pulse>>,
    /// The options the database was opened with.
    pub(crate) opts: Options,
    pub(crate) read_only: bool,
    /// What `TERRACE-META` says (lineage, tables, layout).
    pub(crate) meta: DbMeta,
    /// This database's checkpoints; held while one is taken or garbage collected.
    pub(crate) checkpoints: futures_util::lock::Mutex<crate::checkpoint::CheckpointBook>,
    /// Collects garbage every `Options::gc_interval`; stopped when the database goes.
    gc_thread: Mutex<Option<crate::checkpoint::gc::GcThread>>,
}

impl Drop for DbInner {
    fn drop(&mut self) {
        // Dropping the senders ends every shard loop, which closes the shard (flushing
        // its memtable) before the thread exits.
        self.senders.clear();
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
        if let Ok(mut rt) = self.io_runtime.lock() {
            if let Some(rt) = rt.take() {
                rt.shutdown_now();
            }
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
        if let Ok(mut gc) = self.gc_thread.lock() {
            gc.take();
        }
        if let Ok(mut pulse) = self.pulse.lock() {
            pulse.take();
        }
    }
}

/// A handle to an open database, usable from any thread.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("shards", &self.inner.router.shards)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the database `opts` describes, starting one executor thread
    /// per shard. Completes when every shard has recovered.
    ///
    /// A writer takes the database lock first: a directory another writer has open
    /// fails with an [`Unavailable`](crate::ErrorKind::Unavailable) error naming it,
    /// and nothing is changed. With `opts.read_only` nothing is locked or changed.
    /// A creation that fails before any shard starts (a bad store, say) leaves no
    /// `LOCK` file, nor the directory if it made it.
    pub async fn open(opts: Options) -> Result<Db> {
        let path = opts.path.clone();
        let creating = !opts.read_only && !path.join(crate::files::META_FILE).exists();
        let dir_existed = path.exists();
        let opened = Db::open_or_create(opts).await;
        if opened.is_err() && creating {
            undo_failed_creation(&path, dir_existed);
        }
        opened
    }

    async fn open_or_create(mut opts: Options) -> Result<Db> {
        opts.validate()?;
        let path = opts.path.clone();
        let meta_path = path.join(crate::files::META_FILE);
        let exists = meta_path.exists();
        if !exists && (opts.read_only || !opts.create_if_missing) {
            let why = if opts.read_only {
                "read_only"
            } else {
                "create_if_missing"
            };
            return Err(Error::invalid_option(
                why,
                format!("no database at {} to open", path.display()),
            ));
        }
        let lock = if opts.read_only {
            None
        } else {
            std::fs::create_dir_all(&path).map_err(|e| Error::io("create directory", &path, e))?;
            Some(DbLock::acquire(&path)?)
        };
        if !opts.read_only {
            // Another shard count re-splits the shards locally (or finishes a
            // re-split a crash interrupted).
            crate::resplit::resplit_if_needed(&path, &opts)?;
        }
        // Loaded after the lock: a writer that held it may have changed the catalog.
        let (mut meta, new_db) = match DbMeta::load(&path)? {
            Some(m) => (m, false),
            None if opts.read_only => {
                return Err(Error::invalid_option(
                    "read_only",
                    format!("no database at {} to open", path.display()),
                ))
            }
            None => (DbMeta::new_for(&opts), true),
        };
        let mut catalog_changed = if opts.read_only {
            meta.check(&opts)?;
            false
        } else {
            meta.reconcile(&opts)?
        };
        // The range is fixed at creation: `None` means "as created".
        opts.key_group_range = Some(meta.key_group_range);
        if meta.lineage == 0 && !opts.read_only {
            // Metadata of format 1: the database gets its lineage now.
            meta.lineage = crate::shard::new_lineage();
            catalog_changed = true;
        }
        let tables = meta
            .tables
            .iter()
            .map(|(id, name)| (name.clone(), TableId(*id)))
            .collect();
        opts.catalog = Arc::new(crate::catalog::TableCatalog::new(
            &meta.tables,
            &opts.table_options,
        ));
        let router = Router {
            shards: opts.shards,
            max_key_groups: opts.max_key_groups,
            key_groups: opts.key_groups(),
            key_group_prefix_bytes: opts.key_group_prefix_bytes,
            max_key_bytes: opts.max_key_bytes,
            max_value_bytes: opts.max_value_bytes,
            tables: Arc::new(tables),
        };

        let (io_runtime, remote) = match crate::remote::open(&opts).await? {
            Some((rt, remote)) => (Some(rt), Some(remote)),
            None => (None, None),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let mut ready = Vec::new();
        let mut pulses = Vec::new();
        let mut watched = Vec::new();
        for id in 0..opts.shards {
            let (tx, rx) = flume::bounded::<Msg>(opts.max_pending_requests_per_shard);
            let pulse = Arc::new(Pulse::default());
            let queued = rx.clone();
            watched.push(Watched {
                pulse: pulse.clone(),
                queued: Box::new(move || queued.len()),
            });
            pulses.push(pulse.clone());
            let (ready_tx, ready_rx) = flume::bounded::<Result<()>>(1);
            let placement = if opts.pin_shards {
                Placement::Fixed(id as usize % cores)
            } else {
                Placement::Unbound
            };
            let shard_opts = opts.clone();
            let shard_remote = remote.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("terrace-shard-{id}"))
                .spin_before_park(Duration::from_micros(opts.spin_before_park_us))
                .spawn(move || {
                    shard_main(id, shard_opts, shard_remote, new_db, pulse, rx, ready_tx)
                })
                .map_err(|e| ErrorDetail::ShardGone {
                    shard: id,
                    what: format!("could not start its executor thread: {e}"),
                })?;
            senders.push(tx);
            threads.push(handle);
            ready.push(ready_rx);
        }
        let pulse = PulseThread::start(watched)
            .map_err(|e| Error::io("start the pulse thread for", &path, e))?;
        // The first checkpoint needs the store's listing of checkpoints: start it now.
        let book = match &remote {
            Some(r) if !opts.read_only => crate::checkpoint::CheckpointBook::prefetched(r),
            _ => Default::default(),
        };
        let db = Db {
            inner: Arc::new(DbInner {
                router,
                callers: senders.iter().map(|_| Arc::default()).collect(),
                senders,
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                remote,
                io_runtime: Mutex::new(io_runtime),
                lock: Mutex::new(lock),
                pulse: Mutex::new(Some(pulse)),
                pulses,
                read_only: opts.read_only,
                meta: meta.clone(),
                checkpoints: futures_util::lock::Mutex::new(book),
                gc_thread: Mutex::new(None),
                opts: opts.clone(),
            }),
        };
        let mut first_err = None;
        for (id, r) in ready.into_iter().enumerate() {
            let r = r.recv_async().await.unwrap_or_else(|_| {
                Err(ErrorDetail::ShardGone {
                    shard: id as u32,
                    what: "its thread exited while opening".into(),
                }
                .into())
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Written last: a database exists once its metadata does, and every shard
        // directory it implies has a manifest by then.
        if new_db || catalog_changed {
            meta.store(&path)?;
        }
        if let (Some(every), false, true) =
            (opts.gc_interval, opts.read_only, db.inner.remote.is_some())
        {
            let gc = crate::checkpoint::gc::GcThread::start(Arc::downgrade(&db.inner), every)
                .map_err(|e| Error::io("start the garbage collector thread for", &path, e))?;
            if let Ok(mut slot) = db.inner.gc_thread.lock() {
                *slot = Some(gc);
            }
        }
        Ok(db)
    }

    /// Opens the existing database at `path` read-only, as it was created (shards,
    /// key groups, tables from its metadata), without its lock: for inspecting a
    /// database another process is writing. See [`Options::read_only`].
    pub async fn open_read_only(path: impl Into<std::path::PathBuf>) -> Result<Db> {
        let mut opts = Options::for_existing(path)?;
        opts.read_only = true;
        Db::open(opts).await
    }

    /// The id of the state table `name`.
    pub fn table(&self, name: &str) -> Result<TableId> {
        self.inner.router.table(name)
    }

    /// Number of shards.
    pub fn shards(&self) -> u32 {
        self.inner.router.shards
    }

    /// The key group of `key`.
    pub fn key_group(&self, key: &[u8]) -> u16 {
        self.inner.router.key_group(key)
    }

    /// The shard owning `key`.
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        let r = &self.inner.router;
        r.shard_of_group(r.key_group(key))
    }

    /// The shard owning `key`, refusing keys the database cannot hold (empty, too
    /// long, or of a key group outside its range).
    pub(crate) fn shard_of_checked(&self, key: &[u8]) -> Result<u32> {
        let r = &self.inner.router;
        r.check_key(key)?;
        let kg = r.key_group(key);
        r.check_key_group(kg)?;
        Ok(r.shard_of_group(kg))
    }

    /// Starts `f` as a long-lived task on shard `id`'s foreground queue, with a
    /// [`LocalDb`], and returns at once; its result arrives on the receiver. Unlike
    /// [`Db::call`] it holds no request slot while it runs.
    pub(crate) async fn start_on<F, Fut, T>(
        &self,
        id: u32,
        f: F,
    ) -> Result<flume::Receiver<Result<T>>>
    where
        F: FnOnce(LocalDb) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
        T: Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ErrorDetail::Closed.into());
        }
        let Some(sender) = self.inner.senders.get(id as usize) else {
            return Err(ErrorDetail::BadArgument(format!("no shard {id}")).into());
        };
        let (tx, rx) = flume::bounded::<Result<T>>(1);
        let weak = Arc::downgrade(&self.inner);
        let job: Job = Box::new(move |shard: &Rc<Shard>, permit| {
            drop(permit);
            let local = LocalDb::new(shard.clone(), weak);
            let task = glommio::spawn_local_into(
                async move {
                    let _ = tx.send(f(local).await);
                },
                shard.queues.foreground,
            );
            if let Ok(t) = task {
                t.detach();
            }
        });
        sender
            .send_async(Msg::Run(job))
            .await
            .map_err(|_| Error::from(ErrorDetail::Closed))?;
        Ok(rx)
    }

    /// Runs `f(shard)` on shard `id`'s executor in its foreground queue.
    pub(crate) async fn call<F, Fut, T>(&self, id: u32, f: F) -> Result<T>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + 'static,
        T: Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ErrorDetail::Closed.into());
        }
        let (Some(sender), Some(callers)) = (
            self.inner.senders.get(id as usize),
            self.inner.callers.get(id as usize),
        ) else {
            return Err(ErrorDetail::BadArgument(format!("no shard {id}")).into());
        };
        let (tx, rx) = oneshot::channel::<Result<T>>();
        // Counted out on this thread once the answer is here (or the call is
        // dropped): the count's cache line never travels to the shard and back.
        let (_in_flight, may_spin) = callers.enter();
        let job: Job = Box::new(move |shard: &Rc<Shard>, permit| {
            let shard = shard.clone();
            let queue = shard.queues.foreground;
            run_inline_or_spawn(
                Box::pin(async move {
                    let r = f(shard).await;
                    let _ = tx.send(r);
                    drop(permit);
                }),
                queue,
            );
        });
        sender
            .send_async(Msg::Run(job))
            .await
            .map_err(|_| Error::from(ErrorDetail::Closed))?;
        let spin = if may_spin {
            Duration::from_micros(self.inner.opts.caller_spin_us)
        } else {
            Duration::ZERO
        };
        let answer = match callers.spin_for_reply(&rx, spin) {
            Some(r) => r,
            None => rx.await,
        };
        answer.unwrap_or_else(|_| {
            Err(ErrorDetail::ShardGone {
                shard: id,
                what: "it stopped before answering".into(),
            }
            .into())
        })
    }

    /// Sets `key` to `value` in table `t`.
    pub async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> Result<()> {
        let (shard, sk) = self.inner.router.locate(t, key)?;
        self.inner.router.check_value(value)?;
        let value = value.to_vec();
        self.call(
            shard,
            move |s| async move { s.write(&sk, Some(&value)).await },
        )
        .await
    }

    /// Merges `operand` into `key` of table `t` with the table's merge operator
    /// ([`TableOptions::merge_operator`](crate::TableOptions::merge_operator)),
    /// without reading the key: reads see the operands applied in order. A table
    /// without an operator, or an operand the operator refuses, is an
    /// InvalidArgument error.
    pub async fn merge(&self, t: TableId, key: &[u8], operand: &[u8]) -> Result<()> {
        let (shard, sk) = self.inner.router.locate(t, key)?;
        self.inner.router.check_value(operand)?;
        let operand = operand.to_vec();
        self.call(shard, move |s| async move { s.merge(&sk, &operand).await })
            .await
    }

    /// Deletes `key` from table `t`.
    pub async fn delete(&self, t: TableId, key: &[u8]) -> Result<()> {
        let (shard, sk) = self.inner.router.locate(t, key)?;
        self.call(shard, move |s| async move { s.write(&sk, None).await })
            .await
    }

    /// The value of `key` in table `t`.
    pub async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (shard, sk) = self.inner.router.locate(t, key)?;
        self.call(shard, move |s| async move { s.get(&sk).await })
            .await
    }

    /// The values of `keys` in table `t`, in the same order. Keys are grouped by
    /// shard; each shard reads its group with all block reads in flight at once.
    pub async fn multi_get<K: AsRef<[u8]>>(
        &self,
        t: TableId,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let batches = KeyBatches::new(&self.inner.router, t, keys)?;
        let len = batches.len();
        let calls = batches
            .by_shard
            .into_iter()
            .map(|(shard, idx, sks)| async move {
                let vals = self
                    .call(shard, move |s| async move { s.multi_get(&sks).await })
                    .await?;
                Ok::<_, Error>((idx, vals))
            });
        let parts = futures_util::future::try_join_all(calls).await?;
        Ok(KeyBatches::assemble(len, parts))
    }

    /// Up to `limit` entries of table `t` with keys within the bounds, in user-key
    /// order, read at one snapshot per shard. A range within one key group (see
    /// `Options::key_group_prefix_bytes`) is answered by one shard from one key group;
    /// any other range visits every shard, each merging its key groups (one seek per
    /// key group with data in the range). Each shard returns up to `limit` entries in
    /// one hop; for long ranges use [`Db::iter`], which fetches in bounded batches.
    pub async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let plan = ScanPlan::new(&self.inner.router, t, &KeyRange::new(lower, upper))?;
        self.scan_plan(&plan, limit).await
    }

    /// Up to `limit` entries of table `t` whose keys start with `prefix`, in key order.
    /// With a prefix at least `Options::key_group_prefix_bytes` long this reads one
    /// shard and one key group (one seek, then sequential reads): the map-state
    /// access of one key's entries (see [`crate::map_key`]). Otherwise every key group
    /// of every shard is visited, as by [`Db::scan`].
    pub async fn scan_prefix(&self, t: TableId, prefix: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let plan = ScanPlan::new(&self.inner.router, t, &KeyRange::prefix(prefix))?;
        self.scan_plan(&plan, limit).await
    }

    async fn scan_plan(&self, plan: &ScanPlan, limit: usize) -> Result<Vec<Entry>> {
        crate::db_iter::scan_once(plan, limit, |shard, limits| {
            let spec = plan.spec.clone();
            self.call(shard, move |s| async move {
                s.open_cursor(&spec, limits, std::sync::Weak::new(), false)
                    .await
            })
        })
        .await
    }

    /// An iterator over table `t`'s entries in `range`, in user-key order, fetched
    /// in batches of `opts`. Every shard the range touches keeps a cursor open (one
    /// snapshot per shard, taken before this returns): each further entry costs a
    /// heap step on its shard, not a seek, and each batch one hop per shard. A
    /// [`KeyRange::prefix`] at least `Options::key_group_prefix_bytes` long reads one
    /// key group of one shard. Dropping the iterator releases the cursors; at most
    /// `Options::max_open_cursors_per_shard` are open per shard.
    pub async fn iter(&self, t: TableId, range: KeyRange, opts: IterOptions) -> Result<DbIter> {
        let plan = ScanPlan::new(&self.inner.router, t, &range)?;
        DbIter::open(self.clone(), plan, opts).await
    }

    /// Asks shard `shard` to release cursor `cursor`, without waiting. Should the
    /// request queue be full, the shard sweeps the cursor at its next cursor
    /// operation anyway (its owner token is gone by then).
    pub(crate) fn close_cursor_nowait(&self, shard: u32, cursor: u64) {
        let Some(sender) = self.inner.senders.get(shard as usize) else {
            return;
        };
        let job: Job = Box::new(move |s: &Rc<Shard>, permit| {
            s.close_cursor(cursor);
            drop(permit);
        });
        let _ = sender.try_send(Msg::Run(job));
    }

    pub(crate) async fn on_all<F, Fut, T>(&self, f: F) -> Result<Vec<T>>
    where
        F: Fn(Rc<Shard>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<T>> + 'static,
        T: Send + 'static,
    {
        let calls = (0..self.shards()).map(|id| {
            let f = f.clone();
            self.call(id, f)
        });
        futures_util::future::try_join_all(calls).await
    }

    /// Writes every memtable to L0 and waits until done. After `flush` the data
    /// written before it survives a crash.
    pub async fn flush(&self) -> Result<()> {
        self.on_all(|s| async move { s.flush_all().await })
            .await
            .map(drop)
    }

    /// Flushes, then compacts every file that may hold keys in the range down to the
    /// deepest level, dropping overwritten versions and tombstones. Unbounded on both
    /// ends compacts everything.
    pub async fn compact_range(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Result<()> {
        let (lo, hi) = match self.inner.router.single_group(lower, upper) {
            Some(kg) => (
                Some(kg.to_be_bytes().to_vec()),
                kg.checked_add(1).map(|n| n.to_be_bytes().to_vec()),
            ),
            None => (None, None),
        };
        self.on_all(move |s| {
            let (lo, hi) = (lo.clone(), hi.clone());
            async move { s.compact_range(lo, hi).await }
        })
        .await
        .map(drop)
    }

    /// Waits until no shard has compaction work pending.
    pub async fn wait_for_compactions(&self) -> Result<()> {
        self.on_all(|s| async move { s.wait_for_compactions().await })
            .await
            .map(drop)
    }

    /// Statistics of every shard.
    pub async fn stats(&self) -> Result<DbStats> {
        let shards = self.on_all(|s| async move { Ok(s.stats()) }).await?;
        let remote = self.inner.remote.as_ref();
        Ok(DbStats {
            shards,
            object_store: remote.map(|r| r.stack.instrumented.stats()),
            job_prefixes: remote.map(|r| r.home_stats()).unwrap_or_default(),
            uploads: remote.map(|r| r.uploader.stats()),
            store_retries: remote.map_or(0, |r| r.stack.retrying.retries()),
            faults_injected: remote
                .and_then(|r| r.stack.faulty.as_ref())
                .map_or(0, |f| f.counts().failures()),
            pulse_nudges: self.inner.pulses.iter().map(|p| p.nudges()).sum(),
            caller_spins_answered: self.inner.callers.iter().map(|c| c.spin_counts().0).sum(),
            caller_spins_missed: self.inner.callers.iter().map(|c| c.spin_counts().1).sum(),
        })
    }

    /// Every live SST of every shard, level by level (L0 newest first, deeper levels
    /// in key order). For tools and invariant checks.
    pub async fn live_files(&self) -> Result<Vec<LiveFile>> {
        let per_shard = self.on_all(|s| async move { Ok(s.live_files()) }).await?;
        Ok(per_shard.into_iter().flatten().collect())
    }

    /// Waits until every live SST is in the object store (immediately true without
    /// one). Flush first to include the memtables.
    pub async fn wait_for_uploads(&self) -> Result<()> {
        self.on_all(|s| async move { s.wait_for_uploads().await })
            .await
            .map(drop)
    }

    /// Drops local copies beyond the local disk budget now, instead of at the next
    /// periodic check (benchmarks use it to start reads from a settled state).
    pub async fn enforce_local_budget(&self) -> Result<()> {
        self.on_all(|s| async move {
            s.enforce_local_budget().await;
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Runs `f` on shard `shard`'s executor thread with a [`LocalDb`], so it can use
    /// the shard without cross-thread hops (an operator embedded on that core).
    pub async fn on_shard<F, Fut, T>(&self, shard: u32, f: F) -> Result<T>
    where
        F: FnOnce(LocalDb) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let weak = Arc::downgrade(&self.inner);
        self.call(
            shard,
            move |s| async move { Ok(f(LocalDb::new(s, weak)).await) },
        )
        .await
    }

    /// Flushes every shard and stops them. The directory then holds exactly the state
    /// at close; [`Db::open`] restores it. Other clones of this handle get `Closed`.
    pub async fn close(self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Err(ErrorDetail::Closed.into());
        }
        let mut first_err = None;
        for (id, sender) in self.inner.senders.iter().enumerate() {
            let (tx, rx) = flume::bounded(1);
            if sender.send_async(Msg::Close(tx)).await.is_err() {
                continue;
            }
            let r = rx.recv_async().await.unwrap_or_else(|_| {
                Err(ErrorDetail::ShardGone {
                    shard: id as u32,
                    what: "it stopped while closing".into(),
                }
                .into())
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        // Every shard has stopped: another writer may have the directory now.
        if let Ok(mut lock) = self.inner.lock.lock() {
            lock.take();
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// After a creation failed: if the directory holds nothing but the `LOCK` this open
/// made (no metadata, no shard), removes it, and the directory if the open made it.
/// Done while holding the lock again, so no other writer's lock file is removed.
fn undo_failed_creation(path: &std::path::Path, dir_existed: bool) {
    if path.join(crate::files::META_FILE).exists() {
        return;
    }
    let Ok(lock) = DbLock::acquire(path) else {
        return;
    };
    let only_lock = std::fs::read_dir(path).is_ok_and(|entries| {
        entries
            .flatten()
            .all(|e| e.file_name() == std::ffi::OsStr::new(crate::files::LOCK_FILE))
    });
    if only_lock {
        let _ = std::fs::remove_file(path.join(crate::files::LOCK_FILE));
        if !dir_existed {
            let _ = std::fs::remove_dir(path);
        }
    }
    drop(lock);
}
