//! Versions: which SST files make up a shard's LSM tree, level by level.
//!
//! A [`Version`] is an immutable snapshot. Readers clone the `Rc` and keep reading
//! the files it names while flushes and compactions install newer versions; a file is
//! deleted only once no version still references it. A [`VersionEdit`] is a change
//! (files added and removed, counters advanced); the manifest logs edits and replay
//! rebuilds the version.
//!
//! Invariants: L0 files are ordered newest first and may overlap; every level below
//! is sorted by smallest key with no two files overlapping.

use std::cmp::Ordering;
use std::rc::Rc;

use crate::codec::{Dec, Enc};
use crate::key::{compare_internal, state_key_of};
use crate::sst::TableReader;

/// What the manifest records about an SST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileDesc {
    pub(crate) id: u64,
    pub(crate) size_bytes: u64,
    /// Smallest internal key.
    pub(crate) smallest: Vec<u8>,
    /// Largest internal key.
    pub(crate) largest: Vec<u8>,
    pub(crate) entries: u64,
    pub(crate) deletions: u64,
    pub(crate) min_seqno: u64,
    pub(crate) max_seqno: u64,
}

impl FileDesc {
    /// The description of a file about to be written: no entries yet.
    pub(crate) fn empty(id: u64) -> FileDesc {
        FileDesc {
            id,
            size_bytes: 0,
            smallest: Vec::new(),
            largest: Vec::new(),
            entries: 0,
            deletions: 0,
            min_seqno: u64::MAX,
            max_seqno: 0,
        }
    }

    /// Accounts for one entry appended to the file (entries arrive in key order).
    pub(crate) fn note_entry(&mut self, ikey: &[u8], seqno: u64, kind: crate::key::ValueKind) {
        if self.smallest.is_empty() {
            self.smallest = ikey.to_vec();
        }
        self.largest.clear();
        self.largest.extend_from_slice(ikey);
        self.entries += 1;
        if kind == crate::key::ValueKind::Delete {
            self.deletions += 1;
        }
        self.min_seqno = self.min_seqno.min(seqno);
        self.max_seqno = self.max_seqno.max(seqno);
    }

    fn encode(&self, e: &mut Enc) {
        e.u64(self.id)
            .u64(self.size_bytes)
            .bytes(&self.smallest)
            .bytes(&self.largest)
            .u64(self.entries)
            .u64(self.deletions)
            .u64(self.min_seqno)
            .u64(self.max_seqno);
    }

    fn decode(d: &mut Dec<'_>) -> Option<FileDesc> {
        Some(FileDesc {
            id: d.u64()?,
            size_bytes: d.u64()?,
            smallest: d.bytes()?.to_vec(),
            largest: d.bytes()?.to_vec(),
            entries: d.u64()?,
            deletions: d.u64()?,
            min_seqno: d.u64()?,
            max_seqno: d.u64()?,
        })
    }

    /// Whether the file's state-key range intersects `[lo, hi]` (state keys; `None`
    /// is unbounded).
    pub(crate) fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let small = state_key_of(&self.smallest);
        let large = state_key_of(&self.largest);
        lo.is_none_or(|lo| large >= lo) && hi.is_none_or(|hi| small <= hi)
    }
}

/// Where a file stands with the object store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UploadState {
    /// No object store: the local file is the only copy.
    LocalOnly,
    /// Written locally, upload queued or running.
    Pending,
    /// Safely in the object store since this instant.
    Uploaded(std::time::Instant),
}

/// A live SST: its description, its open reader, and where its bytes are.
pub(crate) struct FileMeta {
    pub(crate) desc: FileDesc,
    pub(crate) reader: Rc<TableReader>,
    /// The reader's block source: local copy and/or object.
    pub(crate) file: Rc<terrace_tiering::TieredFile>,
    pub(crate) upload: std::cell::Cell<UploadState>,
}

/// The files of a shard's LSM tree at one point in time.
#[derive(Clone)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Rc<FileMeta>>>,
}

impl Version {
    /// Applies added and deleted files, keeping the level invariants.
    pub(crate) fn apply(&self, deleted: &[(u32, u64)], added: Vec<(u32, Rc<FileMeta>)>) -> Version {
        let mut v = self.clone();
        for (level, id) in deleted {
            if let Some(files) = v.levels.get_mut(*level as usize) {
                files.retain(|f| f.desc.id != *id);
            }
        }
        for (level, f) in added {
            if let Some(files) = v.levels.get_mut(level as usize) {
                files.push(f);
            }
        }
        sort_levels(&mut v.levels);
        v
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.desc.size_bytes).sum()
    }

    /// Files of `level` whose state-key range intersects `[lo, hi]`.
    pub(crate) fn overlapping(
        &self,
        level: usize,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Vec<Rc<FileMeta>> {
        self.levels[level]
            .iter()
            .filter(|f| f.desc.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    /// In a sorted level, the one file that may hold `state_key`.
    pub(crate) fn file_for_key(&self, level: usize, state_key: &[u8]) -> Option<&Rc<FileMeta>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| state_key_of(&f.desc.largest) < state_key);
        files
            .get(i)
            .filter(|f| state_key_of(&f.desc.smallest) <= state_key)
    }
}

/// Orders L0 newest first and every other level by smallest key.
pub(crate) fn sort_levels(levels: &mut [Vec<Rc<FileMeta>>]) {
    if let Some(l0) = levels.first_mut() {
        l0.sort_by(|a, b| {
            b.desc
                .max_seqno
                .cmp(&a.desc.max_seqno)
                .then(b.desc.id.cmp(&a.desc.id))
        });
    }
    for files in levels.iter_mut().skip(1) {
        files.sort_by(|a, b| cmp_smallest(&a.desc, &b.desc));
    }
}

fn cmp_smallest(a: &FileDesc, b: &FileDesc) -> Ordering {
    compare_internal(&a.smallest, &b.smallest)
}

/// A change to a version, as the manifest logs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub(crate) last_seqno: Option<u64>,
    pub(crate) next_file_number: Option<u64>,
    pub(crate) added: Vec<(u32, FileDesc)>,
    pub(crate) deleted: Vec<(u32, u64)>,
    /// Where the next size-triggered compaction of a level starts (a state key).
    pub(crate) compact_pointers: Vec<(u32, Vec<u8>)>,
    /// Files whose upload to the object store completed (format version 2).
    pub(crate) uploaded: Vec<u64>,
}

const TAG_LAST_SEQNO: u8 = 1;
const TAG_NEXT_FILE: u8 = 2;
const TAG_ADD: u8 = 3;
const TAG_DELETE: u8 = 4;
const TAG_POINTER: u8 = 5;
const TAG_UPLOADED: u8 = 6;

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        if let Some(s) = self.last_seqno {
            e.u8(TAG_LAST_SEQNO).u64(s);
        }
        if let Some(n) = self.next_file_number {
            e.u8(TAG_NEXT_FILE).u64(n);
        }
        for (level, f) in &self.added {
            e.u8(TAG_ADD).u32(*level);
            f.encode(&mut e);
        }
        for (level, id) in &self.deleted {
            e.u8(TAG_DELETE).u32(*level).u64(*id);
        }
        for (level, k) in &self.compact_pointers {
            e.u8(TAG_POINTER).u32(*level).bytes(k);
        }
        for id in &self.uploaded {
            e.u8(TAG_UPLOADED).u64(*id);
        }
        e.buf
    }

    /// Decodes an edit; `Err` carries what was malformed.
    pub(crate) fn decode(buf: &[u8]) -> Result<VersionEdit, &'static str> {
        let mut d = Dec::new(buf);
        let mut edit = VersionEdit::default();
        while !d.is_empty() {
            let short = "record ends inside a field";
            match d.u8().ok_or(short)? {
                TAG_LAST_SEQNO => edit.last_seqno = Some(d.u64().ok_or(short)?),
                TAG_NEXT_FILE => edit.next_file_number = Some(d.u64().ok_or(short)?),
                TAG_ADD => {
                    let level = d.u32().ok_or(short)?;
                    edit.added
                        .push((level, FileDesc::decode(&mut d).ok_or(short)?));
                }
                TAG_DELETE => {
                    let level = d.u32().ok_or(short)?;
                    edit.deleted.push((level, d.u64().ok_or(short)?));
                }
                TAG_POINTER => {
                    let level = d.u32().ok_or(short)?;
                    edit.compact_pointers
                        .push((level, d.bytes().ok_or(short)?.to_vec()));
                }
                TAG_UPLOADED => edit.uploaded.push(d.u64().ok_or(short)?),
                _ => return Err("unknown field tag"),
            }
        }
        Ok(edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_round_trip_and_garbage_is_rejected() {
        let edit = VersionEdit {
            last_seqno: Some(42),
            next_file_number: Some(7),
            added: vec![(
                1,
                FileDesc {
                    id: 5,
                    size_bytes: 4096,
                    smallest: b"aaaa\x01\0\0\0\0\0\0\0".to_vec(),
                    largest: b"zzzz\x01\0\0\0\0\0\0\0".to_vec(),
                    entries: 10,
                    deletions: 1,
                    min_seqno: 1,
                    max_seqno: 10,
                },
            )],
            deleted: vec![(0, 3)],
            compact_pointers: vec![(2, b"mid".to_vec())],
            uploaded: vec![5, 9],
        };
        let bytes = edit.encode();
        assert_eq!(VersionEdit::decode(&bytes), Ok(edit));
        for cut in 0..bytes.len() {
            // A truncated record never decodes to something else silently... unless
            // the cut falls exactly between fields, which yields a prefix edit.
            if let Ok(e) = VersionEdit::decode(&bytes[..cut]) {
                assert_ne!(e.encode().len(), bytes.len());
            }
        }
        assert!(VersionEdit::decode(&[99]).is_err());
    }
}
