//! Routing: validating a request and finding the shard that owns its key.
//!
//! Shared by the cross-thread [`Db`](crate::Db) handle and the shard-local
//! [`LocalDb`](crate::LocalDb); cheap to clone and `Send`.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::{ErrorDetail, Result};
use crate::key::{encode_state_key, key_group, shard_for_key_group, TableId};

/// What every handle needs to route and validate requests.
#[derive(Clone, Debug)]
pub(crate) struct Router {
    pub(crate) shards: u32,
    pub(crate) max_key_groups: u16,
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
        shard_for_key_group(kg, self.shards, self.max_key_groups)
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
