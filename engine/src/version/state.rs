//! The persisted image of a shard's metadata: what replaying its manifest yields,
//! and what a checkpoint of it records.
//!
//! [`ManifestState::apply`] is the only way this state changes, for live edits and
//! for replay alike, so what a restart sees is exactly what was applied. It refuses
//! edits that do not fit the state (deleting a file that is not there, adding one
//! twice); [`ManifestState::check_invariants`] checks the level structure and runs
//! after every apply in tests and debug builds.

use std::collections::{BTreeMap, BTreeSet};

use super::{FileDesc, VersionEdit};
use crate::key::state_key_of;

/// The state a manifest replays to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ManifestState {
    /// Live files by id, with their level.
    pub(crate) files: BTreeMap<u64, (u32, FileDesc)>,
    pub(crate) last_seqno: u64,
    pub(crate) next_file_number: u64,
    pub(crate) compact_pointers: BTreeMap<u32, Vec<u8>>,
    /// Live files whose upload to the object store completed.
    pub(crate) uploaded: BTreeSet<u64>,
    /// The shard's lineage: names the objects of the files it writes. 0 until set
    /// (manifests of format 2 and older have none).
    pub(crate) lineage: u64,
}

impl ManifestState {
    /// Applies `edit`, or leaves the state untouched and says why it does not fit.
    pub(crate) fn apply(&mut self, edit: &VersionEdit) -> Result<(), String> {
        self.check_fits(edit)?;
        let before = cfg!(debug_assertions).then(|| self.clone());
        if let Some(s) = edit.last_seqno {
            self.last_seqno = self.last_seqno.max(s);
        }
        if let Some(n) = edit.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(l) = edit.lineage {
            self.lineage = l;
        }
        for (_, id) in &edit.deleted {
            self.files.remove(id);
            // A trivial move deletes and re-adds the same file: it stays uploaded.
            if !edit.added.iter().any(|(_, f)| f.id == *id) {
                self.uploaded.remove(id);
            }
        }
        for (level, f) in &edit.added {
            self.files.insert(f.id, (*level, f.clone()));
        }
        // An upload may finish after its file was compacted away: only live files count.
        for id in &edit.uploaded {
            if self.files.contains_key(id) {
                self.uploaded.insert(*id);
            }
        }
        for (level, k) in &edit.compact_pointers {
            self.compact_pointers.insert(*level, k.clone());
        }
        if let Some(before) = before {
            if let Err(e) = self.check_invariants() {
                *self = before;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every deleted file is live at the level named; every added file is new or
    /// deleted by the same edit (a move).
    pub(crate) fn check_fits(&self, edit: &VersionEdit) -> Result<(), String> {
        for (level, id) in &edit.deleted {
            match self.files.get(id) {
                Some((l, _)) if l == level => {}
                Some((l, _)) => {
                    return Err(format!(
                        "edit deletes file {id:016x} from L{level}, it is in L{l}"
                    ))
                }
                None => return Err(format!("edit deletes file {id:016x}, which is not live")),
            }
        }
        for (i, (_, f)) in edit.added.iter().enumerate() {
            let moved = edit.deleted.iter().any(|(_, id)| *id == f.id);
            if self.files.contains_key(&f.id) && !moved {
                return Err(format!(
                    "edit adds file {:016x}, which is already live",
                    f.id
                ));
            }
            if edit.added[..i].iter().any(|(_, g)| g.id == f.id) {
                return Err(format!("edit adds file {:016x} twice", f.id));
            }
        }
        Ok(())
    }

    /// Levels below L0 are sorted runs: no two files' state-key ranges overlap.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut by_level: BTreeMap<u32, Vec<&FileDesc>> = BTreeMap::new();
        for (level, f) in self.files.values() {
            if f.smallest.len() < crate::key::TRAILER_LEN
                || f.largest.len() < crate::key::TRAILER_LEN
            {
                return Err(format!(
                    "file {:016x} has keys too short to be internal keys",
                    f.id
                ));
            }
            if state_key_of(&f.smallest) > state_key_of(&f.largest) {
                return Err(format!("file {:016x} has smallest > largest", f.id));
            }
            if f.key_groups().is_none() {
                return Err(format!(
                    "file {:016x}'s clip range leaves none of its keys",
                    f.id
                ));
            }
            by_level.entry(*level).or_default().push(f);
        }
        for (level, files) in by_level.iter_mut().filter(|(l, _)| **l > 0) {
            // By effective bounds: clipped references of different old shards'
            // files may share key groups' real ranges, never their clipped ones.
            files.sort_by(|a, b| a.lower().cmp(&b.lower()));
            for w in files.windows(2) {
                if !w[0].below(&w[1].lower()) {
                    return Err(format!(
                        "files {:016x} and {:016x} overlap in L{level}",
                        w[0].id, w[1].id
                    ));
                }
            }
        }
        if let Some(id) = self.uploaded.iter().find(|id| !self.files.contains_key(id)) {
            return Err(format!(
                "file {id:016x} is recorded as uploaded but not live"
            ));
        }
        Ok(())
    }

    /// One edit that recreates this state from nothing.
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            last_seqno: Some(self.last_seqno),
            next_file_number: Some(self.next_file_number),
            added: self
                .files
                .values()
                .map(|(level, f)| (*level, f.clone()))
                .collect(),
            deleted: Vec::new(),
            compact_pointers: self
                .compact_pointers
                .iter()
                .map(|(l, k)| (*l, k.clone()))
                .collect(),
            uploaded: self.uploaded.iter().copied().collect(),
            lineage: (self.lineage != 0).then_some(self.lineage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn desc(id: u64, lo: u8, hi: u8) -> FileDesc {
        let key = |b: u8| {
            let mut k = vec![0, 0, 0, 0, b];
            k.extend_from_slice(&[0; 8]);
            k
        };
        FileDesc {
            id,
            object: crate::version::ObjectId::legacy(id),
            size_bytes: 100,
            smallest: key(lo),
            largest: key(hi),
            entries: 1,
            deletions: 0,
            min_seqno: 1,
            max_seqno: 1,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        }
    }

    /// A file whose keys span key groups `lo..=hi` (state keys start with the group).
    fn spanning(id: u64, lo: u16, hi: u16, clip: Option<(u16, u16)>) -> FileDesc {
        let key = |g: u16| {
            let mut k = g.to_be_bytes().to_vec();
            k.extend_from_slice(&[0, 0, 5]);
            k.extend_from_slice(&[0; 8]);
            k
        };
        FileDesc {
            smallest: key(lo),
            largest: key(hi),
            clip: clip.map(|(a, b)| crate::key::KeyGroupRange::new(a, b)),
            ..desc(id, 0, 0)
        }
    }

    #[test]
    fn clipped_references_of_one_level_do_not_overlap() {
        // File 1 holds groups 1..9 but its reference keeps 1..4; file 2 holds 5..6.
        let mut s = ManifestState::default();
        s.apply(&VersionEdit {
            added: vec![
                (1, spanning(1, 1, 9, Some((1, 4)))),
                (1, spanning(2, 5, 6, None)),
            ],
            ..Default::default()
        })
        .unwrap();
        // Unclipped, the same files overlap.
        let err = ManifestState::default()
            .apply(&VersionEdit {
                added: vec![(1, spanning(1, 1, 9, None)), (1, spanning(2, 5, 6, None))],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.contains("overlap"), "{err}");
        // A clip that leaves none of the file's groups is refused.
        let err = ManifestState::default()
            .apply(&VersionEdit {
                added: vec![(1, spanning(3, 1, 2, Some((5, 6))))],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.contains("clip"), "{err}");
        // Effective bounds.
        let f = spanning(1, 1, 9, Some((3, 5)));
        assert_eq!(f.key_groups(), Some(crate::key::KeyGroupRange::new(3, 5)));
        assert_eq!(&*f.lower(), &[0, 3]);
        assert!(f.below(&[0, 6]));
        assert!(!f.below(&[0, 5, 0xff]));
        assert!(f.above(&[0, 2, 0xff]));
        assert!(!f.above(&[0, 3, 0]));
        assert!(f.overlaps(Some(&[0, 4, 1]), Some(&[0, 4, 2])));
        assert!(!f.overlaps(Some(&[0, 6]), None));
        assert!(!f.overlaps(None, Some(&[0, 2, 0xff])));
    }

    #[test]
    fn a_trivial_move_keeps_the_file_uploaded() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit {
            added: vec![(1, desc(7, 1, 2))],
            ..Default::default()
        })
        .unwrap();
        s.apply(&VersionEdit {
            uploaded: vec![7],
            ..Default::default()
        })
        .unwrap();
        s.apply(&VersionEdit {
            deleted: vec![(1, 7)],
            added: vec![(2, desc(7, 1, 2))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.files.get(&7).map(|(l, _)| *l), Some(2));
        assert!(s.uploaded.contains(&7), "the move forgot the upload");
        // A real deletion does forget it.
        s.apply(&VersionEdit {
            deleted: vec![(2, 7)],
            ..Default::default()
        })
        .unwrap();
        assert!(s.uploaded.is_empty());
    }

    #[test]
    fn edits_that_do_not_fit_are_refused_and_change_nothing() {
        let mut s = ManifestState::default();
        s.apply(&VersionEdit {
            added: vec![(1, desc(1, 1, 2)), (1, desc(2, 3, 4))],
            ..Default::default()
        })
        .unwrap();
        let before = s.clone();
        for (edit, why) in [
            (
                VersionEdit {
                    deleted: vec![(1, 9)],
                    ..Default::default()
                },
                "not live",
            ),
            (
                VersionEdit {
                    deleted: vec![(2, 1)],
                    ..Default::default()
                },
                "it is in L1",
            ),
            (
                VersionEdit {
                    added: vec![(2, desc(1, 1, 2))],
                    ..Default::default()
                },
                "already live",
            ),
            (
                VersionEdit {
                    added: vec![(1, desc(3, 2, 3))],
                    ..Default::default()
                },
                "overlap in L1",
            ),
        ] {
            let err = s.apply(&edit).unwrap_err();
            assert!(err.contains(why), "{err}");
            assert_eq!(s, before, "a refused edit changed the state");
        }
    }
}
