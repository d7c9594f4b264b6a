//! [`LocalDb`]: the database as seen from code running on one shard's executor.
//!
//! Operations on keys the shard owns run directly on it: no channel, no thread hop,
//! no locks. Keys of other shards are forwarded through the cross-thread [`Db`]
//! routing, so a `LocalDb` behaves like the `Db` for any key — except the strict
//! handle keyed operators get ([`crate::Operator`]), which refuses them.

use std::ops::Bound;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use crate::db::{Db, DbInner};
use crate::db_iter::{Batch, Entry, IterOptions, KeyRange, LocalDbIter};
use crate::error::{ErrorDetail, Result};
use crate::key::{state_key_group, TableId};
use crate::router::{KeyBatches, Router, ScanPlan};
use crate::shard::cursor::{BatchLimits, CursorSpec, ShardBatch};
use crate::shard::Shard;

/// A shard-local handle. `!Send`: it lives on the shard's thread.
#[derive(Clone)]
pub struct LocalDb {
    shard: Rc<Shard>,
    db: Weak<DbInner>,
    router: Router,
    /// Keyed execution: a key of another shard is an error, not a forwarded call.
    strict: bool,
}

impl LocalDb {
    pub(crate) fn new(shard: Rc<Shard>, db: Weak<DbInner>) -> LocalDb {
        let router = match db.upgrade() {
            Some(inner) => inner.router.clone(),
            None => Router {
                shards: shard.opts.shards,
                max_key_groups: shard.opts.max_key_groups,
                key_groups: shard.opts.key_groups(),
                key_group_prefix_bytes: shard.opts.key_group_prefix_bytes,
                max_key_bytes: shard.opts.max_key_bytes,
                max_value_bytes: shard.opts.max_value_bytes,
                tables: Arc::default(),
            },
        };
        LocalDb {
            shard,
            db,
            router,
            strict: false,
        }
    }

    /// This handle, refusing keys of other shards ([`ErrorDetail::NotThisShard`])
    /// instead of forwarding them: what keyed operators get.
    pub(crate) fn strict(mut self) -> LocalDb {
        self.strict = true;
        self
    }

    /// Resolves once the shard starts closing (long-lived tasks end then).
    pub(crate) async fn closing(&self) {
        self.shard.closing().await
    }

    /// Whether this handle refuses keys of other shards (keyed execution).
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// The first key group `shard` owns (what a refused scan names).
    fn first_group_of(&self, shard: u32) -> u16 {
        crate::key::shard_key_groups(shard, self.router.shards, self.router.key_groups).first
    }

    /// The database handle for a call on `shard`, or the keyed-execution refusal.
    fn forward(&self, shard: u32, key_group: u16) -> Result<Db> {
        if self.strict {
            return Err(ErrorDetail::NotThisShard {
                key_group,
                owner: shard,
                shard: self.shard.id,
            }
            .into());
        }
        self.db()
    }

    /// The shard this handle runs on.
    pub fn shard_id(&self) -> u32 {
        self.shard.id
    }

    /// Whether this shard owns `key`.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.router.shard_of_group(self.router.key_group(key)) == self.shard.id
    }

    /// The id of the state table `name`.
    pub fn table(&self, name: &str) -> Result<TableId> {
        self.router.table(name)
    }

    /// The cross-thread handle, while the database is open.
    pub fn db(&self) -> Result<Db> {
        self.db
            .upgrade()
            .map(|inner| Db { inner })
            .ok_or_else(|| ErrorDetail::Closed.into())
    }

    /// Sets `key` to `value` in table `t`.
    pub async fn put(&self, t: TableId, key: &[u8], value: &[u8]) -> Result<()> {
        let (shard, sk) = self.router.locate(t, key)?;
        self.router.check_value(value)?;
        if shard == self.shard.id {
            self.shard.write(&sk, Some(value)).await
        } else {
            self.forward(shard, state_key_group(&sk))?
                .put(t, key, value)
                .await
        }
    }

    /// Merges `operand` into `key` of table `t` with the table's merge operator,
    /// without reading the key (see [`Db::merge`]).
    pub async fn merge(&self, t: TableId, key: &[u8], operand: &[u8]) -> Result<()> {
        let (shard, sk) = self.router.locate(t, key)?;
        self.router.check_value(operand)?;
        if shard == self.shard.id {
            self.shard.merge(&sk, operand).await
        } else {
            self.forward(shard, state_key_group(&sk))?
                .merge(t, key, operand)
                .await
        }
    }

    /// Deletes `key` from table `t`.
    pub async fn delete(&self, t: TableId, key: &[u8]) -> Result<()> {
        let (shard, sk) = self.router.locate(t, key)?;
        if shard == self.shard.id {
            self.shard.write(&sk, None).await
        } else {
            self.forward(shard, state_key_group(&sk))?
                .delete(t, key)
                .await
        }
    }

    /// The value of `key` in table `t`.
    pub async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (shard, sk) = self.router.locate(t, key)?;
        if shard == self.shard.id {
            self.shard.get(&sk).await
        } else {
            self.forward(shard, state_key_group(&sk))?.get(t, key).await
        }
    }

    /// The values of `keys` in table `t`, in order; this shard's keys are read
    /// directly with all their I/O in flight at once, other shards' are forwarded.
    pub async fn multi_get<K: AsRef<[u8]>>(
        &self,
        t: TableId,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let batches = KeyBatches::new(&self.router, t, keys)?;
        let len = batches.len();
        let calls = batches
            .by_shard
            .into_iter()
            .map(|(shard, idx, sks)| async move {
                let vals = if shard == self.shard.id {
                    self.shard.multi_get(&sks).await?
                } else {
                    let kg = sks.first().map_or(0, |sk| state_key_group(sk));
                    self.forward(shard, kg)?
                        .call(shard, move |s| async move { s.multi_get(&sks).await })
                        .await?
                };
                Ok::<_, crate::Error>((idx, vals))
            });
        let parts = futures_util::future::try_join_all(calls).await?;
        Ok(KeyBatches::assemble(len, parts))
    }

    /// Like [`Db::scan`]; this shard's key groups are read directly.
    pub async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let plan = ScanPlan::new(&self.router, t, &KeyRange::new(lower, upper))?;
        self.scan_plan(&plan, limit).await
    }

    /// Like [`Db::scan_prefix`]; a prefix this shard owns costs no hop.
    pub async fn scan_prefix(&self, t: TableId, prefix: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let plan = ScanPlan::new(&self.router, t, &KeyRange::prefix(prefix))?;
        self.scan_plan(&plan, limit).await
    }

    async fn scan_plan(&self, plan: &ScanPlan, limit: usize) -> Result<Vec<Entry>> {
        crate::db_iter::scan_once(plan, limit, |shard, limits| {
            self.open_cursor_with(shard, plan.spec.clone(), limits, Weak::new(), false)
        })
        .await
    }

    /// Like [`Db::iter`]; this shard's cursor is read without a hop.
    pub async fn iter(
        &self,
        t: TableId,
        range: KeyRange,
        opts: IterOptions,
    ) -> Result<LocalDbIter> {
        let plan = ScanPlan::new(&self.router, t, &range)?;
        LocalDbIter::open(self.clone(), plan, opts).await
    }

    pub(crate) async fn open_cursor(
        &self,
        shard: u32,
        spec: Arc<CursorSpec>,
        limits: BatchLimits,
        owner: Weak<()>,
    ) -> Result<ShardBatch> {
        self.open_cursor_with(shard, spec, limits, owner, true)
            .await
    }

    async fn open_cursor_with(
        &self,
        shard: u32,
        spec: Arc<CursorSpec>,
        limits: BatchLimits,
        owner: Weak<()>,
        keep_open: bool,
    ) -> Result<ShardBatch> {
        if shard == self.shard.id {
            self.shard
                .open_cursor(&spec, limits, owner, keep_open)
                .await
        } else {
            self.forward(shard, self.first_group_of(shard))?
                .call(shard, move |s| async move {
                    s.open_cursor(&spec, limits, owner, keep_open).await
                })
                .await
        }
    }

    pub(crate) async fn cursor_next(
        &self,
        shard: u32,
        cursor: u64,
        limits: BatchLimits,
        buf: Batch,
    ) -> Result<ShardBatch> {
        if shard == self.shard.id {
            self.shard.cursor_next(cursor, limits, buf).await
        } else {
            self.forward(shard, self.first_group_of(shard))?
                .call(shard, move |s| async move {
                    s.cursor_next(cursor, limits, buf).await
                })
                .await
        }
    }

    pub(crate) fn close_cursor(&self, shard: u32, cursor: u64) {
        if shard == self.shard.id {
            self.shard.close_cursor(cursor);
        } else if let Ok(db) = self.db() {
            db.close_cursor_nowait(shard, cursor);
        }
    }
}
