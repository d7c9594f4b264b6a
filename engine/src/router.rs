//! Routing: validating a request and finding the shard that owns its key.
//!
//! Shared by the cross-thread [`Db`](crate::Db) handle and the shard-local
//! [`LocalDb`](crate::LocalDb); cheap to clone and `Send`.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::db_iter::KeyRange;
use crate::error::{ErrorDetail, Result};
use crate::key::{encode_state_key, key_group, shard_for_key_group, KeyGroupRange, TableId};
use crate::shard::cursor::CursorSpec;

/// What every handle needs to route and validate requests.
#[derive(Clone, Debug)]
pub(crate) struct Router {
    pub(crate) shards: u32,
    pub(crate) max_key_groups: u16,
    /// The key groups the database owns.
    pub(crate) key_groups: KeyGroupRange,
    pub(crate) key_group_prefix_bytes: Option<u32>,
    pub(crate) max_key_bytes: usize,
    pub(crate) max_value_bytes: usize,
    pub(crate) tables: Arc<HashMap<String, TableId>>,
}

impl Router {
    /// The bytes of `key` that decide its key group.
    pub(crate) fn partition<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        match self.key_group_prefix_bytes {
            Some(n) => &key[..key.len().min(n as usize)],
            None => key,
        }
    }

    pub(crate) fn key_group(&self, key: &[u8]) -> u16 {
        key_group(self.partition(key), self.max_key_groups)
    }

    pub(crate) fn shard_of_group(&self, kg: u16) -> u32 {
        shard_for_key_group(kg, self.shards, self.key_groups)
    }

    /// Refuses a key group the database does not own.
    pub(crate) fn check_key_group(&self, kg: u16) -> Result<()> {
        if self.key_groups.contains(kg) {
            Ok(())
        } else {
            Err(ErrorDetail::KeyGroupOutOfRange {
                key_group: kg,
                range: self.key_groups,
            }
            .into())
        }
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(ErrorDetail::EmptyKey.into());
        }
        if key.len() > self.max_key_bytes {
            return Err(ErrorDetail::KeyTooLarge {
                len: key.len(),
                max: self.max_key_bytes,
            }
            .into());
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(ErrorDetail::ValueTooLarge {
                len: value.len(),
                max: self.max_value_bytes,
            }
            .into());
        }
        Ok(())
    }

    pub(crate) fn check_table(&self, t: TableId) -> Result<()> {
        if self.tables.values().any(|id| *id == t) {
            Ok(())
        } else {
            Err(ErrorDetail::UnknownTableId { id: t.0 }.into())
        }
    }

    /// Validates `key` and returns its shard and state key.
    pub(crate) fn locate(&self, t: TableId, key: &[u8]) -> Result<(u32, Vec<u8>)> {
        self.check_key(key)?;
        self.check_table(t)?;
        let kg = self.key_group(key);
        self.check_key_group(kg)?;
        let mut sk = Vec::new();
        encode_state_key(&mut sk, kg, t, key);
        Ok((self.shard_of_group(kg), sk))
    }

    /// The one key group a range lies in, if it provably lies in one: both bounds
    /// share the partition prefix (or, with whole-key partitioning, the range holds
    /// a single key).
    pub(crate) fn single_group(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Option<u16> {
        let (Bound::Included(l) | Bound::Excluded(l)) = lower else {
            return None;
        };
        let (Bound::Included(u) | Bound::Excluded(u)) = upper else {
            return None;
        };
        match self.key_group_prefix_bytes {
            Some(n) => {
                let n = n as usize;
                (l.len() >= n && u.len() >= n && l[..n] == u[..n]).then(|| self.key_group(l))
            }
            None => (l == u && matches!(upper, Bound::Included(_))).then(|| self.key_group(l)),
        }
    }

    pub(crate) fn table(&self, name: &str) -> Result<TableId> {
        self.tables.get(name).copied().ok_or_else(|| {
            ErrorDetail::UnknownTable {
                name: name.to_string(),
            }
            .into()
        })
    }
}

/// The keys of a `multi_get` split by owning shard, and the way back: one plan for
/// both handles, so `Db` and `LocalDb` answer a batch the same way.
pub(crate) struct KeyBatches {
    len: usize,
    /// Per shard with keys: the keys' positions in the request and their state keys.
    pub(crate) by_shard: Vec<(u32, Vec<usize>, Vec<Vec<u8>>)>,
}

impl KeyBatches {
    /// Validates every key of `keys` (table `t`) and groups them by shard.
    pub(crate) fn new<K: AsRef<[u8]>>(router: &Router, t: TableId, keys: &[K]) -> Result<Self> {
        let mut groups: Vec<(Vec<usize>, Vec<Vec<u8>>)> =
            vec![(Vec::new(), Vec::new()); router.shards as usize];
        for (i, k) in keys.iter().enumerate() {
            let (shard, sk) = router.locate(t, k.as_ref())?;
            groups[shard as usize].0.push(i);
            groups[shard as usize].1.push(sk);
        }
        let by_shard = groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.0.is_empty())
            .map(|(shard, (idx, sks))| (shard as u32, idx, sks))
            .collect();
        Ok(KeyBatches {
            len: keys.len(),
            by_shard,
        })
    }

    /// Puts each shard's answers back in request order.
    pub(crate) fn assemble(
        len: usize,
        parts: impl IntoIterator<Item = (Vec<usize>, Vec<Option<Vec<u8>>>)>,
    ) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![None; len];
        for (idx, vals) in parts {
            for (i, v) in idx.into_iter().zip(vals) {
                out[i] = v;
            }
        }
        out
    }

    /// Number of keys requested.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Which shards and key groups a scan visits.
pub(crate) struct ScanPlan {
    pub(crate) spec: Arc<CursorSpec>,
    /// The shards to visit (the spec's key groups, clamped to each shard's own).
    pub(crate) shards: Vec<u32>,
}

impl ScanPlan {
    /// A prefix at least `key_group_prefix_bytes` long, or a range both of whose
    /// bounds share such a prefix, lies in one key group: one shard, one key group.
    /// Any other range visits every key group of every shard.
    pub(crate) fn new(router: &Router, t: TableId, range: &KeyRange) -> Result<Self> {
        router.check_table(t)?;
        let single = match (range.prefix_bytes(), router.key_group_prefix_bytes) {
            (Some(p), Some(n)) if p.len() >= n as usize => Some(router.key_group(p)),
            _ => router.single_group(range.lower(), range.upper()),
        };
        let (shards, key_groups) = match single {
            Some(kg) => {
                router.check_key_group(kg)?;
                (vec![router.shard_of_group(kg)], kg..=kg)
            }
            None => ((0..router.shards).collect(), 0..=u16::MAX),
        };
        Ok(ScanPlan {
            spec: Arc::new(CursorSpec {
                table: t,
                lower: range.lower().map(<[u8]>::to_vec),
                upper: range.upper().map(<[u8]>::to_vec),
                key_groups,
            }),
            shards,
        })
    }
}
