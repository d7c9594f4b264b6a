//! What each state table is, as the shards need it: its name, its merge operator
//! and its time-to-live, by table id.
//!
//! Built once per open from `TERRACE-META`'s catalog (names to ids) and
//! [`Options::table_options`](crate::Options::table_options), and shared by every
//! shard. It owns the two per-table value transformations of the data path:
//!
//! - **Merge resolution** ([`TableEntry::full_merge`], [`TableEntry::partial_merge`]):
//!   the operands of one key, collected newest first, handed to the operator oldest
//!   first, with its errors turned into typed ones naming the table.
//! - **TTL stamps** ([`TableEntry::stamp`], [`TableEntry::live_value`]): a value of
//!   a table with a TTL is stored as `[write time: u64 LE, ms since the Unix
//!   epoch][user value]`; it expires once `write time + ttl <= now`. Storing the
//!   write time (not the expiry) lets the TTL change between opens and apply to
//!   values already written, as Flink's and RocksDB's TTL do.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorDetail, Result};
use crate::key::{state_key_table, TableId, STATE_KEY_PREFIX_LEN};
use crate::merge::MergeOperator;
use crate::options::TableOptions;

/// Bytes of the write-time stamp in front of every value of a TTL table.
pub const TTL_STAMP_BYTES: usize = 8;

/// One table's behaviour.
#[derive(Clone, Debug)]
pub(crate) struct TableEntry {
    pub(crate) name: String,
    pub(crate) merge: Option<Arc<dyn MergeOperator>>,
    pub(crate) ttl: Option<Duration>,
}

/// Every table of the open database, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct TableCatalog {
    by_id: Vec<Option<TableEntry>>,
    /// No table has a merge operator or a TTL (asked on every read and write).
    plain: bool,
    /// Some table has a TTL.
    has_ttl: bool,
}

impl TableCatalog {
    /// The catalog of `tables` (id, name) configured by `options`.
    pub(crate) fn new(
        tables: &[(u16, String)],
        options: &std::collections::HashMap<String, TableOptions>,
    ) -> TableCatalog {
        let mut by_id: Vec<Option<TableEntry>> = Vec::new();
        for (id, name) in tables {
            let i = usize::from(*id);
            if by_id.len() <= i {
                by_id.resize(i + 1, None);
            }
            let o = options.get(name);
            by_id[i] = Some(TableEntry {
                name: name.clone(),
                merge: o.and_then(|o| o.merge_operator.clone()),
                ttl: o.and_then(|o| o.ttl),
            });
        }
        let plain = by_id
            .iter()
            .flatten()
            .all(|t| t.merge.is_none() && t.ttl.is_none());
        let has_ttl = by_id.iter().flatten().any(|t| t.ttl.is_some());
        TableCatalog {
            by_id,
            plain,
            has_ttl,
        }
    }

    pub(crate) fn get(&self, id: TableId) -> Option<&TableEntry> {
        self.by_id.get(usize::from(id.0)).and_then(Option::as_ref)
    }

    /// The table of a state key; an Internal error for an id the catalog lacks
    /// (the router only builds state keys of known tables).
    pub(crate) fn of_state_key(&self, state_key: &[u8]) -> Result<&TableEntry> {
        if state_key.len() < STATE_KEY_PREFIX_LEN {
            return Err(Error::internal("state key shorter than its prefix"));
        }
        let id = state_key_table(state_key);
        self.get(id)
            .ok_or_else(|| ErrorDetail::UnknownTableId { id: id.0 }.into())
    }

    /// Whether any table has a TTL.
    pub(crate) fn has_ttl(&self) -> bool {
        self.has_ttl
    }

    /// Whether any table needs per-entry work on reads and compactions.
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl TableEntry {
    fn operator(&self) -> Result<&Arc<dyn MergeOperator>> {
        self.merge.as_ref().ok_or_else(|| {
            ErrorDetail::NoMergeOperator {
                table: self.name.clone(),
            }
            .into()
        })
    }

    fn failed(&self, op: &dyn MergeOperator, e: crate::merge::MergeError) -> Error {
        ErrorDetail::MergeFailed {
            table: self.name.clone(),
            operator: op.name().to_string(),
            reason: e.reason,
        }
        .into()
    }

    /// The operand stored for what the caller merged.
    pub(crate) fn encode_operand(&self, operand: &[u8]) -> Result<Vec<u8>> {
        let op = self.operator()?;
        op.encode_operand(operand)
            .map(|c| c.into_owned())
            .map_err(|e| self.failed(&**op, e))
    }

    /// Refuses a put the table's merge operator could not merge into later.
    pub(crate) fn validate_value(&self, value: &[u8]) -> Result<()> {
        match &self.merge {
            Some(op) => op.validate_value(value).map_err(|e| self.failed(&**op, e)),
            None => Ok(()),
        }
    }

    /// The value after `newest_first` operands on `existing`.
    pub(crate) fn full_merge(
        &self,
        state_key: &[u8],
        existing: Option<&[u8]>,
        newest_first: &[Vec<u8>],
    ) -> Result<Vec<u8>> {
        let op = self.operator()?;
        let operands: Vec<&[u8]> = newest_first.iter().rev().map(Vec::as_slice).collect();
        let key = state_key.get(STATE_KEY_PREFIX_LEN..).unwrap_or(&[]);
        op.full_merge(key, existing, &operands)
            .map_err(|e| self.failed(&**op, e))
    }

    /// One operand standing for `newest_first` (at least one).
    pub(crate) fn partial_merge(
        &self,
        state_key: &[u8],
        newest_first: &[Vec<u8>],
    ) -> Result<Vec<u8>> {
        if let [one] = newest_first {
            return Ok(one.clone());
        }
        let op = self.operator()?;
        let operands: Vec<&[u8]> = newest_first.iter().rev().map(Vec::as_slice).collect();
        let key = state_key.get(STATE_KEY_PREFIX_LEN..).unwrap_or(&[]);
        op.partial_merge(key, &operands)
            .map_err(|e| self.failed(&**op, e))
    }

    /// The stored form of `value` written at `now` (stamped when the table has a TTL).
    pub(crate) fn stamp<'a>(&self, value: &'a [u8], now: SystemTime) -> std::borrow::Cow<'a, [u8]> {
        if self.ttl.is_none() {
            return std::borrow::Cow::Borrowed(value);
        }
        let mut v = Vec::with_capacity(TTL_STAMP_BYTES + value.len());
        v.extend_from_slice(&unix_ms(now).to_le_bytes());
        v.extend_from_slice(value);
        std::borrow::Cow::Owned(v)
    }

    /// Whether a stored value has expired at `now_ms` (never without a TTL). A value
    /// too short to hold a stamp is corrupt.
    pub(crate) fn expired(&self, stored: &[u8], now_ms: u64) -> Result<bool> {
        let Some(ttl) = self.ttl else {
            return Ok(false);
        };
        let Some((stamp, _)) = stored.split_first_chunk::<TTL_STAMP_BYTES>() else {
            return Err(Error::internal(format!(
                "a value of TTL table {:?} has {} bytes, fewer than its {TTL_STAMP_BYTES}-byte stamp",
                self.name,
                stored.len()
            )));
        };
        let written = u64::from_le_bytes(*stamp);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Ok(written.saturating_add(ttl_ms) <= now_ms)
    }

    /// The user's value of a stored value at `now_ms`: `None` once expired.
    pub(crate) fn live_value(&self, mut stored: Vec<u8>, now_ms: u64) -> Result<Option<Vec<u8>>> {
        if self.ttl.is_none() {
            return Ok(Some(stored));
        }
        if self.expired(&stored, now_ms)? {
            return Ok(None);
        }
        stored.drain(..TTL_STAMP_BYTES);
        Ok(Some(stored))
    }
}
