//! [`LocalDb`]: the database as seen from code running on one shard's executor.
//!
//! Operations on keys the shard owns run directly on it: no channel, no thread hop,
//! no locks. Keys of other shards are forwarded through the cross-thread [`Db`]
//! routing, so a `LocalDb` behaves like the `Db` for any key.

use std::ops::Bound;
use std::rc::Rc;
use std::sync::{Arc, Weak};

use crate::db::{Db, DbInner};
use crate::error::{ErrorDetail, Result};
use crate::key::TableId;
use crate::router::Router;
use crate::shard::{ScanRange, Shard};

/// A shard-local handle. `!Send`: it lives on the shard's thread.
#[derive(Clone)]
pub struct LocalDb {
    shard: Rc<Shard>,
    db: Weak<DbInner>,
    router: Router,
}

impl LocalDb {
    pub(crate) fn new(shard: Rc<Shard>, db: Weak<DbInner>) -> LocalDb {
        let router = match db.upgrade() {
            Some(inner) => inner.router.clone(),
            None => Router {
                shards: shard.opts.shards,
                max_key_groups: shard.opts.max_key_groups,
                key_group_prefix_bytes: shard.opts.key_group_prefix_bytes,
                max_key_bytes: shard.opts.max_key_bytes,
                max_value_bytes: shard.opts.max_value_bytes,
                tables: Arc::default(),
            },
        };
        LocalDb { shard, db, router }
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
            self.db()?.put(t, key, value).await
        }
    }

    /// Deletes `key` from table `t`.
    pub async fn delete(&self, t: TableId, key: &[u8]) -> Result<()> {
        let (shard, sk) = self.router.locate(t, key)?;
        if shard == self.shard.id {
            self.shard.write(&sk, None).await
        } else {
            self.db()?.delete(t, key).await
        }
    }

    /// The value of `key` in table `t`.
    pub async fn get(&self, t: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (shard, sk) = self.router.locate(t, key)?;
        if shard == self.shard.id {
            self.shard.get(&sk).await
        } else {
            self.db()?.get(t, key).await
        }
    }

    /// The values of `keys` in table `t`, in order; local keys are read with all
    /// their I/O in flight at once.
    pub async fn multi_get<K: AsRef<[u8]>>(
        &self,
        t: TableId,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let mut local_idx = Vec::new();
        let mut local_keys = Vec::new();
        let mut remote_idx = Vec::new();
        let mut remote_keys: Vec<&[u8]> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (shard, sk) = self.router.locate(t, k.as_ref())?;
            if shard == self.shard.id {
                local_idx.push(i);
                local_keys.push(sk);
            } else {
                remote_idx.push(i);
                remote_keys.push(k.as_ref());
            }
        }
        let mut out = vec![None; keys.len()];
        if !remote_keys.is_empty() {
            let vals = self.db()?.multi_get(t, &remote_keys).await?;
            for (i, v) in remote_idx.into_iter().zip(vals) {
                out[i] = v;
            }
        }
        if !local_keys.is_empty() {
            let vals = self.shard.multi_get(&local_keys).await?;
            for (i, v) in local_idx.into_iter().zip(vals) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Like [`Db::scan`]; a range within one key group this shard owns is answered
    /// locally.
    pub async fn scan(
        &self,
        t: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.router.check_table(t)?;
        match self.router.single_group(lower, upper) {
            Some(kg) if self.router.shard_of_group(kg) == self.shard.id => {
                let range = ScanRange {
                    table: t,
                    lower: lower.map(<[u8]>::to_vec),
                    upper: upper.map(<[u8]>::to_vec),
                    limit,
                };
                self.shard.scan(kg..=kg, &range).await
            }
            _ => self.db()?.scan(t, lower, upper, limit).await,
        }
    }
}
