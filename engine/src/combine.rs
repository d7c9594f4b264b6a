//! Combining the versions of one key when a run is written: by flushes, compactions
//! and checkpoint snapshots of memtables.
//!
//! A sorted run holds at most one version of a key (readers rely on it: a point
//! read takes one version per file). For puts and tombstones that is the newest
//! version. A key whose newest version is a merge operand is gathered here with its
//! older operands, down to its base (a put or tombstone among the inputs) or the
//! inputs' end, and written as one entry, stamped with the newest operand's seqno:
//!
//! | inputs hold | output |
//! |---|---|
//! | operands over a put or tombstone | put of `full_merge(base, operands)` |
//! | operands only, output at the bottom level | put of `full_merge(None, operands)` |
//! | operands only, older data may lie below | one operand, `partial_merge(operands)` |
//!
//! TTL: an expired put is dropped at the bottom level and becomes a tombstone above
//! it (dropping it there would let an older version below it show through).

use crate::catalog::TableCatalog;
use crate::error::{Error, Result};
use crate::key::{make_internal_key, ValueKind};

/// The versions of one key whose newest is a merge operand, newest first.
pub(crate) struct PendingMerge {
    state_key: Vec<u8>,
    seqno: u64,
    operands: Vec<Vec<u8>>,
    /// The base once met: `Some(Some(value))` a put, `Some(None)` a tombstone.
    base: Option<Option<Vec<u8>>>,
}

/// What to write for a key.
pub(crate) struct Combined {
    pub(crate) ikey: Vec<u8>,
    pub(crate) seqno: u64,
    pub(crate) kind: ValueKind,
    pub(crate) value: Vec<u8>,
}

impl PendingMerge {
    /// Starts with the key's newest version, an operand.
    pub(crate) fn new(state_key: &[u8], seqno: u64, operand: &[u8]) -> PendingMerge {
        PendingMerge {
            state_key: state_key.to_vec(),
            seqno,
            operands: vec![operand.to_vec()],
            base: None,
        }
    }

    /// The next older version of the same key; ignored once the base is met.
    pub(crate) fn older(&mut self, kind: u8, value: &[u8]) -> Result<()> {
        if self.base.is_some() {
            return Ok(());
        }
        match ValueKind::from_u8(kind) {
            Some(ValueKind::Merge) => self.operands.push(value.to_vec()),
            Some(ValueKind::Put) => self.base = Some(Some(value.to_vec())),
            Some(ValueKind::Delete) => self.base = Some(None),
            None => return Err(Error::internal(format!("unknown value kind {kind}"))),
        }
        Ok(())
    }

    /// The one entry standing for the key. `bottommost`: nothing older than the
    /// inputs exists.
    pub(crate) fn resolve(self, catalog: &TableCatalog, bottommost: bool) -> Result<Combined> {
        let table = catalog.of_state_key(&self.state_key)?;
        let (kind, value) = match (self.base, bottommost) {
            (Some(base), _) => (
                ValueKind::Put,
                table.full_merge(&self.state_key, base.as_deref(), &self.operands)?,
            ),
            (None, true) => (
                ValueKind::Put,
                table.full_merge(&self.state_key, None, &self.operands)?,
            ),
            (None, false) => (
                ValueKind::Merge,
                table.partial_merge(&self.state_key, &self.operands)?,
            ),
        };
        Ok(Combined {
            ikey: make_internal_key(&self.state_key, self.seqno, kind),
            seqno: self.seqno,
            kind,
            value,
        })
    }
}

/// What becomes of a key's newest version when it is a put or a tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Newest {
    /// Write it as it is.
    Keep,
    /// Write nothing (a tombstone, or an expired value, at the bottom level).
    Drop,
    /// An expired value above the bottom level: write a tombstone in its place.
    Tombstone,
}

/// The fate of a newest version `kind`/`value` of `state_key` at `now_ms`.
/// `expired_values` counts values dropped for their TTL.
pub(crate) fn newest_fate(
    catalog: &TableCatalog,
    state_key: &[u8],
    kind: ValueKind,
    value: &[u8],
    bottommost: bool,
    now_ms: u64,
) -> Result<Newest> {
    Ok(match kind {
        ValueKind::Delete if bottommost => Newest::Drop,
        ValueKind::Put if !catalog.is_plain() => {
            let expired = catalog.of_state_key(state_key)?.expired(value, now_ms)?;
            match (expired, bottommost) {
                (false, _) => Newest::Keep,
                (true, true) => Newest::Drop,
                (true, false) => Newest::Tombstone,
            }
        }
        _ => Newest::Keep,
    })
}
