//! Versions: which SST files make up a shard's LSM tree, level by level, and the one
//! owner of that metadata ([`VersionSet`]).
//!
//! A [`Version`] is an immutable snapshot. Readers clone the `Rc` and keep reading
//! the files it names while flushes and compactions install newer versions; a file is
//! deleted only once no version still references it. A [`VersionEdit`] is a change
//! (files added and removed, counters advanced); the [`VersionSet`] logs every edit in
//! the manifest ([`manifest`]) before applying it, with the same
//! [`ManifestState::apply`] that replay uses.
//!
//! Invariants: L0 files are ordered newest first and may overlap; every level below
//! is sorted by smallest key with no two files overlapping; every live file has a
//! local copy or is in the object store.
//!
//! # The life of an SST
//!
//! Each step happens in exactly one place:
//!
//! | stage | what holds | who moves it on |
//! |---|---|---|
//! | written | a file number from [`VersionSet::allocate_file_number`], bytes being written; no manifest record (a crash leaves an orphan the next open deletes) | flush / compaction finish and sync it |
//! | logged (live) | named by a manifest record; the directory entry was fsynced first | [`VersionSet::log_and_apply`] |
//! | uploaded | an `uploaded` record; the object holds the bytes ([`UploadState::Uploaded`]) | the shard's upload worker logs it |
//! | remote only | local copy dropped; reads are ranged GETs | the local-copy policy, only for uploaded files past the warm window |
//! | obsolete | removed from the version by a logged edit; old snapshots may still read it | [`VersionSet::log_and_apply`] |
//! | deleted | no snapshot or upload holds it; local copy and object removed | [`VersionSet::take_unreferenced`], then the shard unlinks it |

mod edit;
pub(crate) mod manifest;
pub(crate) mod replaced;
mod set;
mod state;

use std::cmp::Ordering;
use std::rc::Rc;

pub(crate) use edit::{valid_home, DescLayout, FileDesc, ObjectId, VersionEdit};
pub(crate) use set::VersionSet;
pub(crate) use state::ManifestState;

use crate::key::compare_internal;
use crate::sst::TableReader;

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
    /// Checkpoints in progress that name the file: its upload must finish even if
    /// it leaves the version meanwhile.
    pub(crate) pins: std::cell::Cell<u32>,
    /// For a merge output not yet uploaded: the merge's inputs, which a checkpoint
    /// may name instead (see [`replaced`]). Cleared once the file is uploaded.
    pub(crate) replaced: std::cell::RefCell<Option<Rc<replaced::Replaced>>>,
}

impl FileMeta {
    /// Whether the object store holds the file.
    pub(crate) fn is_uploaded(&self) -> bool {
        matches!(self.upload.get(), UploadState::Uploaded(_))
    }

    /// A live file must keep at least one copy: local, or in the object store.
    pub(crate) fn has_a_copy(&self) -> bool {
        self.file.is_local() || self.is_uploaded()
    }
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

    /// In a sorted level, the one file that may hold `state_key` (by the files'
    /// effective bounds: a clipped reference holds only its clip's key groups).
    pub(crate) fn file_for_key(&self, level: usize, state_key: &[u8]) -> Option<&Rc<FileMeta>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| f.desc.below(state_key));
        files.get(i).filter(|f| !f.desc.above(state_key))
    }

    /// File references that carry a clip range (hold other shards' keys a
    /// compaction has not trimmed yet).
    pub(crate) fn clipped_files(&self) -> usize {
        self.levels
            .iter()
            .flatten()
            .filter(|f| f.desc.clip.is_some())
            .count()
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
    // Files of a sorted level do not overlap: their effective lower bounds order
    // them; the real smallest keys break ties (only in a broken level).
    a.lower()
        .cmp(&b.lower())
        .then_with(|| compare_internal(&a.smallest, &b.smallest))
}
