//! Version edits and file descriptions: what the manifest logs and checkpoints
//! record about SSTs, and their encoding.
//!
//! An edit is a list of tagged fields (`tag u8`, then the field), so a reader skips
//! nothing silently: an unknown tag is an error. Fields:
//!
//! ```text
//! 1 last seqno      u64
//! 2 next file       u64
//! 3 add file        level u32, FileDesc
//! 4 delete file     level u32, file id u64
//! 5 compact pointer level u32, state key (u32 length + bytes)
//! 6 uploaded        file id u64            (manifest format 2)
//! 7 add file        level u32, FileDesc v3 (manifest format 3; replaces tag 3)
//! 8 shard lineage   u64                    (manifest format 3)
//! 9 add file        level u32, FileDesc v4 (manifest format 4; replaces tag 7)
//! 10 add file       level u32, FileDesc v5 (manifest format 5; replaces tag 9)
//! FileDesc:    id u64, size u64, smallest, largest (u32 length + bytes each),
//!              entries u64, deletions u64, min seqno u64, max seqno u64
//! FileDesc v3: id u64, object lineage u64, object number u64, then as FileDesc
//! FileDesc v4: as FileDesc v3, then clip flag u8 (0 none, 1 clipped) [first u16,
//!              last u16 when clipped], home (u32 length + UTF-8 bytes; empty = own)
//! FileDesc v5: as FileDesc v4, then metadata bytes u64 (0 = unknown)
//! ```
//!
//! **Metadata bytes.** The size of the file's tail that holds its filter, index,
//! properties and footer (the writer knows it; older descriptions say 0). An open
//! from the object store reads exactly that tail in one request instead of
//! guessing its size ([`crate::sst::speculative_tail`]).
//!
//! **Clip ranges.** A file reference may carry a key-group clip `[first, last]`:
//! the reference holds only the file's keys whose group lies in the clip (a
//! rescaled shard references a file of an old shard that also holds other shards'
//! groups). The reference's effective bounds ([`FileDesc::lower`],
//! [`FileDesc::below`], [`FileDesc::above`]) are the file's real key range cut to
//! the clip; level invariants, reads and compaction picking use them, and every
//! iterator over the file skips keys outside the clip.
//!
//! **Homes.** A file's object may live under another database's store prefix of
//! the same job: `home` names that prefix relative to the job root (the parent of
//! the database's own prefix), e.g. `db-a`; empty means the database's own prefix.
//!
//! A file's `id` names it locally (its file name, its blocks in the caches) and is
//! unique within the shard. Its [`ObjectId`] names its object in the store: the
//! lineage of the shard that wrote it (a random id chosen when that shard was
//! created) and the number it had there. A restored or rescaled shard gives the
//! files it adopts new local ids but keeps their objects.

use std::borrow::Cow;

use crate::encoding::{DecodeResult, Enc, Malformed, Reader};
use crate::key::{state_key_group, state_key_of, KeyGroupRange};

/// Longest home name accepted (bytes).
pub(crate) const MAX_HOME_BYTES: usize = 1024;

/// Which layout a file description is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DescLayout {
    /// Manifest formats 1 and 2: the object is named by the file id.
    V2,
    /// Manifest format 3 and checkpoint format 1: object lineage and number.
    V3,
    /// Manifest format 4 and shard checkpoint format 2: clip range and home.
    V4,
    /// Manifest format 5 and shard checkpoint format 3: metadata bytes.
    V5,
}

/// Whether `home` is an acceptable home name: relative, `/`-separated, without
/// empty, `.` or `..` components.
pub(crate) fn valid_home(home: &str) -> bool {
    home.is_empty()
        || (home.len() <= MAX_HOME_BYTES
            && home
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\')))
}

/// Where an SST lives in the object store, whichever shard or database uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectId {
    /// Lineage of the shard that wrote the file; 0 for files of manifest format 2
    /// and older, whose objects are named by shard and file id.
    pub(crate) lineage: u64,
    /// The file's number in that lineage.
    pub(crate) number: u64,
}

impl ObjectId {
    /// The object of a file written before lineages existed.
    pub(crate) fn legacy(id: u64) -> ObjectId {
        ObjectId {
            lineage: 0,
            number: id,
        }
    }
}

/// What the manifest records about an SST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileDesc {
    pub(crate) id: u64,
    pub(crate) object: ObjectId,
    pub(crate) size_bytes: u64,
    /// Smallest internal key.
    pub(crate) smallest: Vec<u8>,
    /// Largest internal key.
    pub(crate) largest: Vec<u8>,
    pub(crate) entries: u64,
    pub(crate) deletions: u64,
    pub(crate) min_seqno: u64,
    pub(crate) max_seqno: u64,
    /// The key groups this reference holds of the file (`None`: all of them).
    pub(crate) clip: Option<KeyGroupRange>,
    /// The store prefix holding the object, relative to the job root; empty for
    /// the database's own prefix.
    pub(crate) home: String,
    /// Bytes at the file's end holding its filter, index, properties and footer;
    /// 0 when unknown (described by an older format).
    pub(crate) meta_bytes: u64,
}

impl FileDesc {
    /// The description of a file about to be written: no entries yet.
    pub(crate) fn empty(id: u64, object: ObjectId) -> FileDesc {
        FileDesc {
            id,
            object,
            size_bytes: 0,
            smallest: Vec::new(),
            largest: Vec::new(),
            entries: 0,
            deletions: 0,
            min_seqno: u64::MAX,
            max_seqno: 0,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
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

    pub(crate) fn encode(&self, e: &mut Enc) {
        e.u64(self.id)
            .u64(self.object.lineage)
            .u64(self.object.number)
            .u64(self.size_bytes)
            .bytes(&self.smallest)
            .bytes(&self.largest)
            .u64(self.entries)
            .u64(self.deletions)
            .u64(self.min_seqno)
            .u64(self.max_seqno);
        match self.clip {
            Some(c) => e.u8(1).u16(c.first).u16(c.last),
            None => e.u8(0),
        };
        e.bytes(self.home.as_bytes());
        e.u64(self.meta_bytes);
    }

    /// Decodes a FileDesc in `layout` (older layouts have no clip and no home; the
    /// oldest names its object by its id).
    pub(crate) fn decode(d: &mut Reader<'_>, layout: DescLayout) -> DecodeResult<FileDesc> {
        let id = d.u64_le("file id")?;
        let object = if layout != DescLayout::V2 {
            ObjectId {
                lineage: d.u64_le("object lineage")?,
                number: d.u64_le("object number")?,
            }
        } else {
            ObjectId::legacy(id)
        };
        let desc: DecodeResult<FileDesc> = Ok(FileDesc {
            id,
            object,
            size_bytes: d.u64_le("file size")?,
            smallest: d.u32_prefixed("smallest key")?.to_vec(),
            largest: d.u32_prefixed("largest key")?.to_vec(),
            entries: d.u64_le("entry count")?,
            deletions: d.u64_le("deletion count")?,
            min_seqno: d.u64_le("min seqno")?,
            max_seqno: d.u64_le("max seqno")?,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        });
        let mut desc = desc?;
        if matches!(layout, DescLayout::V4 | DescLayout::V5) {
            desc.clip = match d.u8("clip flag")? {
                0 => None,
                1 => {
                    let (first, last) = (d.u16_le("clip first")?, d.u16_le("clip last")?);
                    if first > last {
                        return Err(Malformed::new(format!(
                            "clip range {first}-{last} is empty"
                        )));
                    }
                    Some(KeyGroupRange::new(first, last))
                }
                f => return Err(Malformed::new(format!("clip flag {f} is neither 0 nor 1"))),
            };
            let home = d.u32_prefixed("home")?;
            let home = std::str::from_utf8(home)
                .ok()
                .filter(|h| valid_home(h))
                .ok_or_else(|| Malformed::new("home is not a relative store prefix"))?;
            desc.home = home.to_owned();
        }
        if layout == DescLayout::V5 {
            desc.meta_bytes = d.u64_le("metadata bytes")?;
            if desc.meta_bytes > desc.size_bytes {
                return Err(Malformed::new(format!(
                    "{} metadata bytes in a file of {}",
                    desc.meta_bytes, desc.size_bytes
                )));
            }
        }
        Ok(desc)
    }

    /// Key groups of the file's first and last keys, cut to the clip: what the
    /// reference holds. `None` when the clip leaves nothing (or keys are malformed).
    pub(crate) fn key_groups(&self) -> Option<KeyGroupRange> {
        let (s, l) = (state_key_of(&self.smallest), state_key_of(&self.largest));
        if s.len() < 2 || l.len() < 2 {
            return None;
        }
        let (mut first, mut last) = (state_key_group(s), state_key_group(l));
        if let Some(c) = self.clip {
            first = first.max(c.first);
            last = last.min(c.last);
        }
        (first <= last).then_some(KeyGroupRange::new(first, last))
    }

    /// Whether the clip cuts the file's first key group off (so [`Self::lower`] is
    /// the clip's bound, not the file's smallest key).
    fn clip_cuts_low(&self) -> Option<u16> {
        let c = self.clip?;
        let s = state_key_of(&self.smallest);
        (s.len() < 2 || state_key_group(s) < c.first).then_some(c.first)
    }

    /// Whether the clip cuts the file's last key group off.
    fn clip_cuts_high(&self) -> Option<u16> {
        let c = self.clip?;
        let l = state_key_of(&self.largest);
        (l.len() < 2 || state_key_group(l) > c.last).then_some(c.last)
    }

    /// A state-key bound no larger than any key the reference holds: the file's
    /// smallest state key, or the clip's first group as a two-byte prefix.
    pub(crate) fn lower(&self) -> Cow<'_, [u8]> {
        match self.clip_cuts_low() {
            Some(first) => Cow::Owned(first.to_be_bytes().to_vec()),
            None => Cow::Borrowed(state_key_of(&self.smallest)),
        }
    }

    /// A state-key bound no smaller than any key the reference holds (not always a
    /// key it holds: a clip's end is the next group's two-byte prefix). For ranges
    /// whose upper end may be generous, such as compaction picking.
    pub(crate) fn upper(&self) -> Cow<'_, [u8]> {
        match self.clip_cuts_high() {
            Some(last) => Cow::Owned(upper_bound_of_group(last)),
            None => Cow::Borrowed(state_key_of(&self.largest)),
        }
    }

    /// Whether every key the reference holds is below `state_key`.
    pub(crate) fn below(&self, state_key: &[u8]) -> bool {
        match self.clip_cuts_high() {
            // Every key of group `last` is below the next group's prefix.
            Some(last) => upper_bound_of_group(last).as_slice() <= state_key,
            None => state_key_of(&self.largest) < state_key,
        }
    }

    /// Whether every key the reference holds is above `state_key`.
    pub(crate) fn above(&self, state_key: &[u8]) -> bool {
        &*self.lower() > state_key
    }

    /// Whether the reference's state-key range intersects `[lo, hi]` (state keys;
    /// `None` is unbounded).
    pub(crate) fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        lo.is_none_or(|lo| !self.below(lo)) && hi.is_none_or(|hi| !self.above(hi))
    }
}

/// The smallest state-key bound above every key of group `kg`: the next group's
/// two-byte prefix, or (for the last possible group) a prefix past every group.
fn upper_bound_of_group(kg: u16) -> Vec<u8> {
    match kg.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff, 0xff, 0xff],
    }
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
    /// The shard's lineage, set when it is created (format version 3).
    pub(crate) lineage: Option<u64>,
}

const TAG_LAST_SEQNO: u8 = 1;
const TAG_NEXT_FILE: u8 = 2;
const TAG_ADD: u8 = 3;
const TAG_DELETE: u8 = 4;
const TAG_POINTER: u8 = 5;
const TAG_UPLOADED: u8 = 6;
const TAG_ADD_FILE: u8 = 7;
const TAG_LINEAGE: u8 = 8;
const TAG_ADD_FILE_V4: u8 = 9;
const TAG_ADD_FILE_V5: u8 = 10;

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        if let Some(s) = self.last_seqno {
            e.u8(TAG_LAST_SEQNO).u64(s);
        }
        if let Some(n) = self.next_file_number {
            e.u8(TAG_NEXT_FILE).u64(n);
        }
        if let Some(l) = self.lineage {
            e.u8(TAG_LINEAGE).u64(l);
        }
        for (level, f) in &self.added {
            e.u8(TAG_ADD_FILE_V5).u32(*level);
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

    /// Decodes an edit; the error says what was malformed.
    pub(crate) fn decode(buf: &[u8]) -> DecodeResult<VersionEdit> {
        let mut d = Reader::new(buf);
        let mut edit = VersionEdit::default();
        while !d.is_empty() {
            let tag = d.u8("field tag")?;
            match tag {
                TAG_LAST_SEQNO => edit.last_seqno = Some(d.u64_le("last seqno")?),
                TAG_NEXT_FILE => edit.next_file_number = Some(d.u64_le("next file number")?),
                TAG_ADD | TAG_ADD_FILE | TAG_ADD_FILE_V4 | TAG_ADD_FILE_V5 => {
                    let level = d.u32_le("level")?;
                    let layout = match tag {
                        TAG_ADD => DescLayout::V2,
                        TAG_ADD_FILE => DescLayout::V3,
                        TAG_ADD_FILE_V4 => DescLayout::V4,
                        _ => DescLayout::V5,
                    };
                    edit.added.push((level, FileDesc::decode(&mut d, layout)?));
                }
                TAG_LINEAGE => edit.lineage = Some(d.u64_le("lineage")?),
                TAG_DELETE => {
                    let level = d.u32_le("level")?;
                    edit.deleted.push((level, d.u64_le("file id")?));
                }
                TAG_POINTER => {
                    let level = d.u32_le("level")?;
                    edit.compact_pointers
                        .push((level, d.u32_prefixed("compact pointer")?.to_vec()));
                }
                TAG_UPLOADED => edit.uploaded.push(d.u64_le("file id")?),
                t => return Err(Malformed::new(format!("unknown field tag {t}"))),
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
                    object: ObjectId {
                        lineage: 0xfeed,
                        number: 5,
                    },
                    size_bytes: 4096,
                    smallest: b"aaaa\x01\0\0\0\0\0\0\0".to_vec(),
                    largest: b"zzzz\x01\0\0\0\0\0\0\0".to_vec(),
                    entries: 10,
                    deletions: 1,
                    min_seqno: 1,
                    max_seqno: 10,
                    clip: Some(KeyGroupRange::new(3, 9)),
                    home: "db-a".into(),
                    meta_bytes: 40,
                },
            )],
            deleted: vec![(0, 3)],
            compact_pointers: vec![(2, b"mid".to_vec())],
            uploaded: vec![5, 9],
            lineage: Some(0xfeed),
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
