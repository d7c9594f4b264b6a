//! The two checkpoint metadata objects and their encoding.
//!
//! A checkpoint of a database is, in the object store:
//!
//! ```text
//! checkpoints/<id:020>-<db lineage:016x>/shard-0000.ckpt   one per shard (ShardCheckpoint)
//! checkpoints/<id:020>-<db lineage:016x>/CHECKPOINT        the commit point (CheckpointMeta)
//! checkpoints/LATEST                                       copies of the newest's metadata (CheckpointHead)
//! sst/<lineage>/<number>.sst                               the SSTs and memtable snapshots they name
//! ```
//!
//! It exists if and only if its `CHECKPOINT` object exists and every object it names
//! exists; `CHECKPOINT` is written last. Both objects are:
//!
//! ```text
//! magic (8 bytes) | format version u32 LE | body | crc32 of everything before u32 LE
//! ```
//!
//! `CHECKPOINT` body: checkpoint id u64, database lineage u64, created (Unix ms) u64,
//! shards u32, max key groups u16, key-group prefix bytes u32 (0 = whole key),
//! key-group range first u16 last u16, last seqno over all shards u64,
//! tables (count u16; id u16, name u32-prefixed), shard objects (count u32; shard u32,
//! key u32-prefixed, size u64, crc32 u32), state bytes u64, memtable bytes u64,
//! uploaded bytes u64.
//!
//! Shard object body: checkpoint id u64, shard u32, shard lineage u64, key-group range
//! first u16 last u16, last seqno u64, files (count u32; level u32, FileDesc),
//! memtable snapshots (count u32; FileDesc), compaction pointers (count u32;
//! level u32, key u32-prefixed).
//!
//! `LATEST` is a hint, never the truth: the newest checkpoint's `CHECKPOINT` and
//! shard objects copied whole into one object (body: the commit object u32-prefixed,
//! then shard objects: count u32; key u32-prefixed, bytes u32-prefixed), written
//! beside the commit and replaced by the next. A restore reads it while it lists
//! the checkpoints and uses it only when the listing shows that checkpoint committed
//! with every shard object present and the copies match what `CHECKPOINT` records
//! (size and CRC): one round trip instead of two. Otherwise, or when it is missing,
//! damaged or of an unknown version, the restore reads the objects themselves.
//!
//! Versions: `CHECKPOINT` is at format 1, `LATEST` at 1. Shard objects of format 1 hold FileDesc
//! v3; format 2 holds FileDesc v4 (each file reference's clip range and home
//! prefix); format 3 holds FileDesc v5 (and each file's metadata size). All are
//! the manifest's layouts (`version/edit.rs`). Every field has a fixed width;
//! decoding checks bounds, trailing bytes and the CRC first.

use crate::encoding::{crc32, verify_crc32, DecodeResult, Enc, Malformed, Reader};
use crate::error::{ErrorDetail, Result};
use crate::version::{DescLayout, FileDesc};

const CHECKPOINT_MAGIC: &[u8; 8] = b"TRCCKPT\0";
const SHARD_MAGIC: &[u8; 8] = b"TRCSHCK\0";
const HEAD_MAGIC: &[u8; 8] = b"TRCHEAD\0";
/// Format version of the `CHECKPOINT` object written by this build.
pub(crate) const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// Format version of shard objects written by this build.
pub(crate) const SHARD_FORMAT_VERSION: u32 = 3;
/// Format version of the `LATEST` object written by this build.
pub(crate) const HEAD_FORMAT_VERSION: u32 = 1;

/// The `LATEST` object: the encoded `CHECKPOINT` and shard objects of the newest
/// checkpoint, copied so a restore gets them with its listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointHead {
    /// The `CHECKPOINT` object's bytes.
    pub(crate) checkpoint: Vec<u8>,
    /// Each shard object's key and bytes, in shard order.
    pub(crate) shards: Vec<(String, Vec<u8>)>,
}

/// One shard's object as the top-level object records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardObject {
    pub(crate) shard: u32,
    pub(crate) key: String,
    pub(crate) size_bytes: u64,
    pub(crate) crc32: u32,
}

/// The `CHECKPOINT` object: what the checkpoint is and where its shards are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointMeta {
    pub(crate) id: u64,
    pub(crate) db_lineage: u64,
    pub(crate) created_unix_ms: u64,
    pub(crate) shards: u32,
    pub(crate) max_key_groups: u16,
    pub(crate) key_group_prefix_bytes: Option<u32>,
    pub(crate) key_groups: (u16, u16),
    pub(crate) last_seqno: u64,
    pub(crate) tables: Vec<(u16, String)>,
    pub(crate) shard_objects: Vec<ShardObject>,
    /// Bytes of every SST and snapshot the checkpoint names.
    pub(crate) state_bytes: u64,
    /// Bytes of its memtable snapshots.
    pub(crate) memtable_bytes: u64,
    /// Bytes this checkpoint uploaded (snapshots and SSTs not yet uploaded).
    pub(crate) uploaded_bytes: u64,
}

/// A shard's part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShardCheckpoint {
    pub(crate) checkpoint: u64,
    pub(crate) shard: u32,
    pub(crate) lineage: u64,
    pub(crate) key_groups: (u16, u16),
    pub(crate) last_seqno: u64,
    /// Live SSTs by level.
    pub(crate) files: Vec<(u32, FileDesc)>,
    /// The memtables' contents at the checkpoint, as SSTs (newest first).
    pub(crate) snapshots: Vec<FileDesc>,
    pub(crate) compact_pointers: Vec<(u32, Vec<u8>)>,
}

fn seal(magic: &[u8; 8], version: u32, body: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::default();
    e.buf.extend_from_slice(magic);
    e.u32(version);
    body(&mut e);
    let crc = crc32(&e.buf);
    e.u32(crc);
    e.buf
}

/// Checks magic, CRC and version (at most `supported`); returns the version and a
/// reader over the body.
fn unseal<'a>(
    name: &str,
    magic: &[u8; 8],
    supported: u32,
    bytes: &'a [u8],
) -> Result<(u32, Reader<'a>)> {
    let path = std::path::Path::new(name);
    if bytes.len() < magic.len() + 8 || &bytes[..magic.len()] != magic {
        return Err(crate::Error::corrupt(path, 0, "missing checkpoint magic"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    verify_crc32(path, 0, stored, body)?;
    let mut d = Reader::at(body, magic.len());
    let version = d.u32_le("format version").map_err(|m| m.at(path, 0))?;
    if version == 0 || version > supported {
        return Err(ErrorDetail::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported,
        }
        .into());
    }
    Ok((version, d))
}

fn finish<T>(name: &str, d: &Reader<'_>, r: DecodeResult<T>) -> Result<T> {
    let path = std::path::Path::new(name);
    let v = r.map_err(|m| m.at(path, d.pos() as u64))?;
    if !d.is_empty() {
        return Err(crate::Error::corrupt(
            path,
            d.pos() as u64,
            "bytes after the end",
        ));
    }
    Ok(v)
}

fn count(d: &mut Reader<'_>, what: &str, most: usize) -> DecodeResult<usize> {
    let n = d.u32_le(what)? as usize;
    if n > most {
        return Err(Malformed::new(format!("{what} {n} is implausible")));
    }
    Ok(n)
}

fn text(d: &mut Reader<'_>, what: &str) -> DecodeResult<String> {
    String::from_utf8(d.u32_prefixed(what)?.to_vec())
        .map_err(|_| Malformed::new(format!("{what} is not UTF-8")))
}

impl CheckpointMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        seal(CHECKPOINT_MAGIC, CHECKPOINT_FORMAT_VERSION, |e| {
            e.u64(self.id)
                .u64(self.db_lineage)
                .u64(self.created_unix_ms)
                .u32(self.shards)
                .u16(self.max_key_groups)
                .u32(self.key_group_prefix_bytes.unwrap_or(0))
                .u16(self.key_groups.0)
                .u16(self.key_groups.1)
                .u64(self.last_seqno)
                .u16(u16::try_from(self.tables.len()).unwrap_or(u16::MAX));
            for (id, name) in &self.tables {
                e.u16(*id).bytes(name.as_bytes());
            }
            e.u32(self.shard_objects.len() as u32);
            for s in &self.shard_objects {
                e.u32(s.shard)
                    .bytes(s.key.as_bytes())
                    .u64(s.size_bytes)
                    .u32(s.crc32);
            }
            e.u64(self.state_bytes)
                .u64(self.memtable_bytes)
                .u64(self.uploaded_bytes);
        })
    }

    /// Decodes the object named `name` (for error messages).
    pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<CheckpointMeta> {
        let (_, mut d) = unseal(name, CHECKPOINT_MAGIC, CHECKPOINT_FORMAT_VERSION, bytes)?;
        let r = (|| {
            let id = d.u64_le("checkpoint id")?;
            let db_lineage = d.u64_le("database lineage")?;
            let created_unix_ms = d.u64_le("creation time")?;
            let shards = d.u32_le("shard count")?;
            let max_key_groups = d.u16_le("max key groups")?;
            let prefix = d.u32_le("key group prefix")?;
            let key_groups = (d.u16_le("first key group")?, d.u16_le("last key group")?);
            let last_seqno = d.u64_le("last seqno")?;
            let n = d.u16_le("table count")?;
            let mut tables = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                tables.push((d.u16_le("table id")?, text(&mut d, "table name")?));
            }
            let n = count(&mut d, "shard object count", 1 << 16)?;
            let mut shard_objects = Vec::with_capacity(n);
            for _ in 0..n {
                shard_objects.push(ShardObject {
                    shard: d.u32_le("shard")?,
                    key: text(&mut d, "shard object key")?,
                    size_bytes: d.u64_le("shard object size")?,
                    crc32: d.u32_le("shard object crc")?,
                });
            }
            Ok(CheckpointMeta {
                id,
                db_lineage,
                created_unix_ms,
                shards,
                max_key_groups,
                key_group_prefix_bytes: (prefix != 0).then_some(prefix),
                key_groups,
                last_seqno,
                tables,
                shard_objects,
                state_bytes: d.u64_le("state bytes")?,
                memtable_bytes: d.u64_le("memtable bytes")?,
                uploaded_bytes: d.u64_le("uploaded bytes")?,
            })
        })();
        let meta = finish(name, &d, r)?;
        if meta.shard_objects.len() != meta.shards as usize
            || meta
                .shard_objects
                .iter()
                .enumerate()
                .any(|(i, s)| s.shard != i as u32)
        {
            return Err(crate::Error::corrupt(
                std::path::Path::new(name),
                0,
                format!(
                    "names {} shard objects for {} shards",
                    meta.shard_objects.len(),
                    meta.shards
                ),
            ));
        }
        Ok(meta)
    }
}

impl CheckpointHead {
    pub(crate) fn encode(&self) -> Vec<u8> {
        seal(HEAD_MAGIC, HEAD_FORMAT_VERSION, |e| {
            e.bytes(&self.checkpoint);
            e.u32(self.shards.len() as u32);
            for (key, bytes) in &self.shards {
                e.bytes(key.as_bytes()).bytes(bytes);
            }
        })
    }

    /// Decodes the object named `name` (for error messages). Checks only its own
    /// framing: the copies inside are checked as the objects they copy.
    pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<CheckpointHead> {
        let (_, mut d) = unseal(name, HEAD_MAGIC, HEAD_FORMAT_VERSION, bytes)?;
        let r = (|| {
            let checkpoint = d.u32_prefixed("commit object")?.to_vec();
            let n = count(&mut d, "shard object count", 1 << 16)?;
            let mut shards = Vec::with_capacity(n);
            for _ in 0..n {
                let key = text(&mut d, "shard object key")?;
                shards.push((key, d.u32_prefixed("shard object")?.to_vec()));
            }
            Ok(CheckpointHead { checkpoint, shards })
        })();
        finish(name, &d, r)
    }
}

impl ShardCheckpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        seal(SHARD_MAGIC, SHARD_FORMAT_VERSION, |e| {
            e.u64(self.checkpoint)
                .u32(self.shard)
                .u64(self.lineage)
                .u16(self.key_groups.0)
                .u16(self.key_groups.1)
                .u64(self.last_seqno)
                .u32(self.files.len() as u32);
            for (level, f) in &self.files {
                e.u32(*level);
                f.encode(e);
            }
            e.u32(self.snapshots.len() as u32);
            for f in &self.snapshots {
                f.encode(e);
            }
            e.u32(self.compact_pointers.len() as u32);
            for (level, k) in &self.compact_pointers {
                e.u32(*level).bytes(k);
            }
        })
    }

    /// Decodes the object named `name` (for error messages).
    pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<ShardCheckpoint> {
        let (version, mut d) = unseal(name, SHARD_MAGIC, SHARD_FORMAT_VERSION, bytes)?;
        let layout = match version {
            1 => DescLayout::V3,
            2 => DescLayout::V4,
            _ => DescLayout::V5,
        };
        let r = (|| {
            let checkpoint = d.u64_le("checkpoint id")?;
            let shard = d.u32_le("shard")?;
            let lineage = d.u64_le("lineage")?;
            let key_groups = (d.u16_le("first key group")?, d.u16_le("last key group")?);
            let last_seqno = d.u64_le("last seqno")?;
            let n = count(&mut d, "file count", 1 << 24)?;
            let mut files = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let level = d.u32_le("level")?;
                files.push((level, FileDesc::decode(&mut d, layout)?));
            }
            let n = count(&mut d, "snapshot count", 1 << 10)?;
            let mut snapshots = Vec::with_capacity(n);
            for _ in 0..n {
                snapshots.push(FileDesc::decode(&mut d, layout)?);
            }
            let n = count(&mut d, "compaction pointer count", 1 << 10)?;
            let mut compact_pointers = Vec::with_capacity(n);
            for _ in 0..n {
                let level = d.u32_le("level")?;
                compact_pointers.push((level, d.u32_prefixed("compaction pointer")?.to_vec()));
            }
            Ok(ShardCheckpoint {
                checkpoint,
                shard,
                lineage,
                key_groups,
                last_seqno,
                files,
                snapshots,
                compact_pointers,
            })
        })();
        finish(name, &d, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ObjectId;

    fn desc(id: u64, lineage: u64, key: u8) -> FileDesc {
        let k = |b: u8| {
            let mut k = vec![0, 1, 0, 0, b];
            k.extend_from_slice(&[0; 8]);
            k
        };
        FileDesc {
            id,
            object: ObjectId {
                lineage,
                number: id,
            },
            size_bytes: 4096 + id,
            smallest: k(key),
            largest: k(key + 1),
            entries: 10,
            deletions: 1,
            min_seqno: 1,
            max_seqno: 9,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        }
    }

    pub(crate) fn sample_shard() -> ShardCheckpoint {
        ShardCheckpoint {
            checkpoint: 42,
            shard: 0,
            lineage: 0xa11ce,
            key_groups: (0, 63),
            last_seqno: 12345,
            files: vec![(0, desc(7, 0xa11ce, 1)), (1, desc(3, 0xb0b, 10))],
            snapshots: vec![desc(8, 0xa11ce, 20)],
            compact_pointers: vec![(1, b"mid".to_vec())],
        }
    }

    pub(crate) fn sample_meta() -> CheckpointMeta {
        CheckpointMeta {
            id: 42,
            db_lineage: 0xdb,
            created_unix_ms: 1_790_000_000_000,
            shards: 1,
            max_key_groups: 128,
            key_group_prefix_bytes: None,
            key_groups: (0, 127),
            last_seqno: 12345,
            tables: vec![(0, "default".into()), (1, "counts".into())],
            shard_objects: vec![ShardObject {
                shard: 0,
                key: "checkpoints/00000000000000000042-00000000000000db/shard-0000.ckpt".into(),
                size_bytes: 321,
                crc32: 0xdead_beef,
            }],
            state_bytes: 12_000,
            memtable_bytes: 4104,
            uploaded_bytes: 4104,
        }
    }

    fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/checkpoint")
            .join(name);
        if std::env::var_os("TERRACE_REGEN_FIXTURES").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let want =
            std::fs::read(&path).expect("fixture missing; run with TERRACE_REGEN_FIXTURES=1");
        assert!(
            want == bytes,
            "{} changed: bump CHECKPOINT_FORMAT_VERSION and regenerate if intended",
            path.display()
        );
        want
    }

    #[test]
    fn both_objects_match_their_golden_files_and_round_trip() {
        let m = sample_meta();
        let bytes = golden("v1-CHECKPOINT", &m.encode());
        assert_eq!(CheckpointMeta::decode("CHECKPOINT", &bytes).unwrap(), m);
        let s = sample_shard_v3();
        let bytes = golden("v3-shard-0000.ckpt", &s.encode());
        assert_eq!(ShardCheckpoint::decode("shard", &bytes).unwrap(), s);
    }

    pub(crate) fn sample_head() -> CheckpointHead {
        let meta = sample_meta();
        CheckpointHead {
            checkpoint: meta.encode(),
            shards: vec![(
                meta.shard_objects[0].key.clone(),
                sample_shard_v3().encode(),
            )],
        }
    }

    #[test]
    fn the_latest_object_matches_its_golden_file_and_round_trips() {
        let h = sample_head();
        let bytes = golden("v1-LATEST", &h.encode());
        let back = CheckpointHead::decode("LATEST", &bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(
            CheckpointMeta::decode("CHECKPOINT", &back.checkpoint).unwrap(),
            sample_meta()
        );
        assert_eq!(
            ShardCheckpoint::decode("shard", &back.shards[0].1).unwrap(),
            sample_shard_v3()
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(CheckpointHead::decode("LATEST", &b).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(CheckpointHead::decode("LATEST", &bytes[..cut]).is_err());
        }
        let mut b = bytes.clone();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        let err = CheckpointHead::decode("LATEST", &b).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
        // Neither of the other objects passes for it, nor it for them.
        assert!(CheckpointHead::decode("c", &sample_meta().encode()).is_err());
        assert!(CheckpointMeta::decode("c", &bytes).is_err());
    }

    /// Format 3's sample: format 2's, with the files' metadata sizes.
    pub(crate) fn sample_shard_v3() -> ShardCheckpoint {
        let mut s = sample_shard_v2();
        for (_, f) in &mut s.files {
            f.meta_bytes = 7 + f.id;
        }
        for f in &mut s.snapshots {
            f.meta_bytes = 9;
        }
        s
    }

    #[test]
    fn format_2_shard_objects_still_decode_without_metadata_sizes() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/checkpoint/v2-shard-0000.ckpt");
        let bytes = std::fs::read(path).unwrap();
        let s = ShardCheckpoint::decode("shard", &bytes).unwrap();
        assert_eq!(s, sample_shard_v2());
    }

    /// Format 2's sample: format 1's, with a clipped file from another prefix.
    pub(crate) fn sample_shard_v2() -> ShardCheckpoint {
        let mut s = sample_shard();
        let mut f = desc(11, 0xc0ffee, 30);
        f.smallest[..2].copy_from_slice(&[0, 0]);
        f.largest[..2].copy_from_slice(&[0, 9]);
        f.clip = Some(crate::key::KeyGroupRange::new(1, 4));
        f.home = "db-a".into();
        s.files.push((2, f));
        s
    }

    #[test]
    fn format_1_shard_objects_still_decode() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/checkpoint/v1-shard-0000.ckpt");
        let bytes = std::fs::read(path).unwrap();
        let s = ShardCheckpoint::decode("shard", &bytes).unwrap();
        assert_eq!(s, sample_shard());
        assert!(s
            .files
            .iter()
            .all(|(_, f)| f.clip.is_none() && f.home.is_empty()));
    }

    #[test]
    fn damage_is_detected_and_newer_versions_refused() {
        for bytes in [sample_meta().encode(), sample_shard_v3().encode()] {
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x10;
                assert!(CheckpointMeta::decode("c", &b).is_err());
                assert!(ShardCheckpoint::decode("s", &b).is_err());
            }
            for cut in 0..bytes.len() {
                assert!(CheckpointMeta::decode("c", &bytes[..cut]).is_err());
                assert!(ShardCheckpoint::decode("s", &bytes[..cut]).is_err());
            }
        }
        let mut b = sample_meta().encode();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        let err = CheckpointMeta::decode("c", &b).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
        let mut b = sample_shard_v3().encode();
        b[8..12].copy_from_slice(&4u32.to_le_bytes());
        let n = b.len() - 4;
        let crc = crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        let err = ShardCheckpoint::decode("s", &b).unwrap_err();
        assert!(err.to_string().contains("format version 4"), "{err}");
    }
}
