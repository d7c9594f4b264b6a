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
//! FileDesc:    id u64, size u64, smallest, largest (u32 length + bytes each),
//!              entries u64, deletions u64, min seqno u64, max seqno u64
//! FileDesc v3: id u64, object lineage u64, object number u64, then as FileDesc
//! ```
//!
//! A file's `id` names it locally (its file name, its blocks in the caches) and is
//! unique within the shard. Its [`ObjectId`] names its object in the store: the
//! lineage of the shard that wrote it (a random id chosen when that shard was
//! created) and the number it had there. A restored or rescaled shard gives the
//! files it adopts new local ids but keeps their objects.

use crate::encoding::{DecodeResult, Enc, Malformed, Reader};
use crate::key::state_key_of;

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
    }

    /// Decodes a FileDesc v3 (`with_object`) or the older layout, whose object is
    /// named by its id.
    pub(crate) fn decode(d: &mut Reader<'_>, with_object: bool) -> DecodeResult<FileDesc> {
        let id = d.u64_le("file id")?;
        let object = if with_object {
            ObjectId {
                lineage: d.u64_le("object lineage")?,
                number: d.u64_le("object number")?,
            }
        } else {
            ObjectId::legacy(id)
        };
        Ok(FileDesc {
            id,
            object,
            size_bytes: d.u64_le("file size")?,
            smallest: d.u32_prefixed("smallest key")?.to_vec(),
            largest: d.u32_prefixed("largest key")?.to_vec(),
            entries: d.u64_le("entry count")?,
            deletions: d.u64_le("deletion count")?,
            min_seqno: d.u64_le("min seqno")?,
            max_seqno: d.u64_le("max seqno")?,
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
            e.u8(TAG_ADD_FILE).u32(*level);
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
                TAG_ADD | TAG_ADD_FILE => {
                    let level = d.u32_le("level")?;
                    let v3 = tag == TAG_ADD_FILE;
                    edit.added.push((level, FileDesc::decode(&mut d, v3)?));
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
