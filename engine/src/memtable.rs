//! The memtable: the newest writes of a shard, in memory, in internal-key order.
//!
//! A memtable holds every version written to it (state key ascending, seqno
//! descending), so a read that captured an older seqno still finds the version it
//! is entitled to while newer writes land. Once frozen (made immutable) it is only
//! read: by gets, by scans, and by the flush that turns it into an L0 SST.
//!
//! The shard is single-threaded, so the map lives in a `RefCell`; no borrow is ever
//! held across an `.await` while the memtable is still mutable.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::key::{make_internal_key, ValueKind};

/// Bookkeeping charged per entry on top of key and value bytes.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Memtable key: a state key and a seqno, newest first among equal state keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemKey {
    pub(crate) state_key: Box<[u8]>,
    pub(crate) seqno: u64,
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.state_key
            .cmp(&other.state_key)
            .then_with(|| other.seqno.cmp(&self.seqno))
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One version found in a memtable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemValue {
    Put(Box<[u8]>),
    Delete,
}

/// An in-memory sorted run of writes.
pub(crate) struct Memtable {
    map: RefCell<BTreeMap<MemKey, MemValue>>,
    approximate_bytes: Cell<usize>,
    min_seqno: Cell<u64>,
    max_seqno: Cell<u64>,
}

impl Memtable {
    pub(crate) fn new() -> Memtable {
        Memtable {
            map: RefCell::new(BTreeMap::new()),
            approximate_bytes: Cell::new(0),
            min_seqno: Cell::new(u64::MAX),
            max_seqno: Cell::new(0),
        }
    }

    /// Adds a version. Seqnos must be unique within the shard.
    pub(crate) fn insert(&self, state_key: &[u8], seqno: u64, value: Option<&[u8]>) {
        let charge = state_key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD_BYTES;
        let v = match value {
            Some(v) => MemValue::Put(v.into()),
            None => MemValue::Delete,
        };
        self.map.borrow_mut().insert(
            MemKey {
                state_key: state_key.into(),
                seqno,
            },
            v,
        );
        self.approximate_bytes
            .set(self.approximate_bytes.get() + charge);
        self.min_seqno.set(self.min_seqno.get().min(seqno));
        self.max_seqno.set(self.max_seqno.get().max(seqno));
    }

    /// The newest version of `state_key` with seqno ≤ `snapshot`.
    pub(crate) fn get(&self, state_key: &[u8], snapshot: u64) -> Option<MemValue> {
        let probe = MemKey {
            state_key: state_key.into(),
            seqno: snapshot,
        };
        let map = self.map.borrow();
        let (k, v) = map.range(probe..).next()?;
        (&*k.state_key == state_key).then(|| v.clone())
    }

    /// The first entry at or after (`state_key`, `seqno`) in internal order, with seqno
    /// ≤ `snapshot`, as (internal key, value).
    pub(crate) fn seek(
        &self,
        from: Bound<&MemKey>,
        snapshot: u64,
    ) -> Option<(MemKey, Vec<u8>, Option<Vec<u8>>)> {
        let map = self.map.borrow();
        let range = map.range((from.cloned(), Bound::Unbounded));
        for (k, v) in range {
            if k.seqno > snapshot {
                continue;
            }
            let ikey = make_internal_key(
                &k.state_key,
                k.seqno,
                match v {
                    MemValue::Put(_) => ValueKind::Put,
                    MemValue::Delete => ValueKind::Delete,
                },
            );
            let value = match v {
                MemValue::Put(v) => Some(v.to_vec()),
                MemValue::Delete => None,
            };
            return Some((k.clone(), ikey, value));
        }
        None
    }

    /// Visits every entry in internal order. Only for frozen memtables: the borrow is
    /// held for the whole visit.
    pub(crate) fn for_each_frozen(&self) -> std::cell::Ref<'_, BTreeMap<MemKey, MemValue>> {
        self.map.borrow()
    }

    pub(crate) fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.get()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Highest seqno written (0 when empty).
    pub(crate) fn max_seqno(&self) -> u64 {
        self.max_seqno.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_newest_version_at_their_snapshot() {
        let m = Memtable::new();
        m.insert(b"k", 1, Some(b"v1"));
        m.insert(b"k", 5, None);
        m.insert(b"k", 9, Some(b"v9"));
        m.insert(b"j", 3, Some(b"j"));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 4), Some(MemValue::Put(b"v1"[..].into())));
        assert_eq!(m.get(b"k", 5), Some(MemValue::Delete));
        assert_eq!(m.get(b"k", 100), Some(MemValue::Put(b"v9"[..].into())));
        assert_eq!(m.get(b"kk", 100), None);
        let first = m.seek(Bound::Unbounded, 4).unwrap();
        assert_eq!(&*first.0.state_key, b"j");
        let probe = MemKey {
            state_key: b"k"[..].into(),
            seqno: u64::MAX,
        };
        let k = m.seek(Bound::Included(&probe), 6).unwrap();
        assert_eq!((k.0.seqno, k.2), (5, None));
        assert_eq!(m.max_seqno(), 9);
    }
}
