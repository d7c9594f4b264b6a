//! The read path: point gets, batched gets and scans over a snapshot.
//!
//! A read captures a [`ReadSnapshot`] when submitted: the current seqno, the
//! memtables and the version. It then searches newest to oldest: active memtable,
//! frozen memtables, L0 files newest first, then one file per deeper level. The
//! first version found decides (a tombstone means "absent").
//!
//! `multi_get` captures one snapshot for the whole batch and runs every key's search
//! at once, so the block reads of the batch are in flight together on io_uring.

use std::ops::Bound;
use std::rc::Rc;

use super::{ReadInProgress, Shard};
use crate::error::{ErrorDetail, Result};
use crate::iter::{LevelIter, MemIter, MergeIter, Source};
use crate::key::{make_internal_key, InternalKey, TableId, ValueKind, MAX_SEQNO};
use crate::memtable::{MemValue, Memtable};
use crate::version::Version;

/// What a read sees.
pub(crate) struct ReadSnapshot {
    pub(crate) seqno: u64,
    pub(crate) mem: Rc<Memtable>,
    pub(crate) imms: Vec<Rc<Memtable>>,
    pub(crate) version: Rc<Version>,
}

/// A scan's bounds on user keys.
pub(crate) struct ScanRange {
    pub(crate) table: TableId,
    pub(crate) lower: Bound<Vec<u8>>,
    pub(crate) upper: Bound<Vec<u8>>,
    pub(crate) limit: usize,
}

impl Shard {
    pub(crate) fn snapshot(&self) -> ReadSnapshot {
        let st = self.state.borrow();
        ReadSnapshot {
            seqno: st.last_seqno,
            mem: st.mem.clone(),
            imms: st.imms.iter().cloned().collect(),
            version: st.version.clone(),
        }
    }

    fn check_readable(&self) -> Result<()> {
        if self.closing.get() {
            return Err(ErrorDetail::Closed.into());
        }
        Ok(())
    }

    /// The value of `state_key` in `snap`.
    pub(crate) async fn read_key(
        &self,
        snap: &ReadSnapshot,
        state_key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        for mem in std::iter::once(&snap.mem).chain(snap.imms.iter()) {
            match mem.get(state_key, snap.seqno) {
                Some(MemValue::Put(v)) => return Ok(Some(v)),
                Some(MemValue::Delete) => return Ok(None),
                None => {}
            }
        }
        let v = &snap.version;
        for f in &v.levels[0] {
            if !f.desc.overlaps(Some(state_key), Some(state_key)) {
                continue;
            }
            if let Some(found) = f.reader.get(state_key, snap.seqno, &self.cache).await? {
                return Ok(found_value(found));
            }
        }
        for level in 1..v.levels.len() {
            if let Some(f) = v.file_for_key(level, state_key) {
                if let Some(found) = f.reader.get(state_key, snap.seqno, &self.cache).await? {
                    return Ok(found_value(found));
                }
            }
        }
        Ok(None)
    }

    /// A point read, completing in order with other operations on the key.
    pub(crate) async fn get(self: &Rc<Self>, state_key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_readable()?;
        let ticket = self.lanes.enter(state_key);
        let snap = self.snapshot();
        self.counters.borrow_mut().gets += 1;
        let reading = ReadInProgress::new(&self.reads_in_progress);
        let r = self.read_key(&snap, state_key).await;
        drop(reading);
        ticket.finish().await;
        r
    }

    /// Reads a batch of keys with all their I/O in flight at once.
    pub(crate) async fn multi_get(
        self: &Rc<Self>,
        state_keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.check_readable()?;
        let tickets: Vec<_> = state_keys.iter().map(|k| self.lanes.enter(k)).collect();
        let snap = self.snapshot();
        self.counters.borrow_mut().gets += state_keys.len() as u64;
        let _reading = ReadInProgress::new(&self.reads_in_progress);
        let r =
            futures_util::future::try_join_all(state_keys.iter().map(|k| self.read_key(&snap, k)))
                .await;
        for t in tickets {
            t.finish().await;
        }
        r
    }

    /// A merge over every run of `snap`, for scans.
    pub(crate) fn merge_iter(&self, snap: &ReadSnapshot) -> MergeIter {
        let mut sources = Vec::new();
        sources.push(Source::Mem(MemIter::new(snap.mem.clone(), snap.seqno)));
        for m in &snap.imms {
            sources.push(Source::Mem(MemIter::new(m.clone(), snap.seqno)));
        }
        for f in &snap.version.levels[0] {
            sources.push(Source::Table(f.reader.iter(self.cache.clone())));
        }
        for files in snap.version.levels.iter().skip(1) {
            if !files.is_empty() {
                sources.push(Source::Level(LevelIter::new(
                    files.clone(),
                    self.cache.clone(),
                )));
            }
        }
        MergeIter::new(sources)
    }

    /// Scans key groups `kgs` (within this shard) for `range`, each key group in
    /// user-key order; the result is sorted by user key and cut to the limit.
    pub(crate) async fn scan(
        &self,
        key_groups: std::ops::RangeInclusive<u16>,
        range: &ScanRange,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_readable()?;
        let snap = self.snapshot();
        self.counters.borrow_mut().scans += 1;
        let _reading = ReadInProgress::new(&self.reads_in_progress);
        let mut it = self.merge_iter(&snap);
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let (first, last) = (
            (*key_groups.start()).max(self.key_groups.0),
            (*key_groups.end()).min(self.key_groups.1),
        );
        if range.limit == 0 || first > last {
            return Ok(out);
        }
        for kg in first..=last {
            self.scan_key_group(&mut it, &snap, kg, range, &mut out)
                .await?;
            if kg != last && out.len() > range.limit {
                out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                out.truncate(range.limit);
            }
        }
        if first != last {
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        out.truncate(range.limit);
        Ok(out)
    }

    async fn scan_key_group(
        &self,
        it: &mut MergeIter,
        snap: &ReadSnapshot,
        kg: u16,
        range: &ScanRange,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let mut prefix = Vec::with_capacity(4);
        prefix.extend_from_slice(&kg.to_be_bytes());
        prefix.extend_from_slice(&range.table.0.to_be_bytes());
        let start_user: &[u8] = match &range.lower {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        };
        let mut start = prefix.clone();
        start.extend_from_slice(start_user);
        it.seek(&make_internal_key(&start, MAX_SEQNO, ValueKind::Put))
            .await?;
        let mut taken = 0usize;
        let mut last: Option<Vec<u8>> = None;
        while it.valid() && taken < range.limit {
            let Some(k) = InternalKey::decode(it.key()) else {
                return Err(crate::Error::internal("merge produced a malformed key"));
            };
            if !k.state_key.starts_with(&prefix) {
                break;
            }
            let user = &k.state_key[prefix.len()..];
            let past_end = match &range.upper {
                Bound::Included(u) => user > u.as_slice(),
                Bound::Excluded(u) => user >= u.as_slice(),
                Bound::Unbounded => false,
            };
            if past_end {
                break;
            }
            let fresh = k.seqno <= snap.seqno && last.as_deref() != Some(k.state_key);
            if fresh {
                last = Some(k.state_key.to_vec());
                let excluded = matches!(&range.lower, Bound::Excluded(l) if user == l.as_slice());
                match ValueKind::from_u8(k.kind) {
                    Some(ValueKind::Put) if !excluded => {
                        out.push((user.to_vec(), it.value().to_vec()));
                        taken += 1;
                    }
                    Some(_) => {}
                    None => {
                        return Err(crate::Error::internal(format!(
                            "unknown value kind {} in a merged key",
                            k.kind
                        )))
                    }
                }
            }
            it.next().await?;
        }
        Ok(())
    }
}

fn found_value(found: (u64, ValueKind, Vec<u8>)) -> Option<Vec<u8>> {
    match found.1 {
        ValueKind::Put => Some(found.2),
        ValueKind::Delete => None,
    }
}
