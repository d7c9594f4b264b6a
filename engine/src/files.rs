//! Names of everything Terrace keeps on disk and in the object store, in one place,
//! and the durable way to replace a small file.
//!
//! ```text
//! <db>/LOCK                      held (flock) by the process that opened the database for writing
//! <db>/TERRACE-META              shards, key groups, table catalog
//! <db>/shard-0000/CURRENT        name of the live manifest
//! <db>/shard-0000/MANIFEST-000007
//! <db>/shard-0000/<id:016x>.sst  SSTs (a cache of the object store)
//! <store>/sst/<lineage:016x>/<number:016x>.sst   one object per SST
//! <store>/shard-0000/<id:016x>.sst                SSTs written before lineages (manifest v2)
//! ```

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::version::ObjectId;

/// The database lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The database metadata file.
pub(crate) const META_FILE: &str = "TERRACE-META";
/// The file naming a shard's live manifest.
pub(crate) const CURRENT_FILE: &str = "CURRENT";
/// Written once per shard executor before any other DMA file (glommio IOPOLL probe).
pub(crate) const PROBE_FILE: &str = ".direct-io-probe";

/// Directory of shard `id` inside the database directory.
pub(crate) fn shard_dir(db: &Path, id: u32) -> PathBuf {
    db.join(format!("shard-{id:04}"))
}

/// File name of SST `file_id`.
pub(crate) fn sst_name(file_id: u64) -> String {
    format!("{file_id:016x}.sst")
}

/// The SST file id a directory entry names, if it names one.
pub(crate) fn parse_sst_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".sst")?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

/// File name of manifest number `n`.
pub(crate) fn manifest_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

/// The manifest number a directory entry names, if it names one.
pub(crate) fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-")?.parse().ok()
}

/// Object-store key of an SST: `sst/<lineage>/<number>.sst`, or for a file written
/// before lineages existed (lineage 0), `shard-<shard>/<id>.sst` with the shard
/// taken from the id's top 16 bits.
pub(crate) fn object_key(object: ObjectId) -> String {
    if object.lineage == 0 {
        let shard = object.number >> 48;
        format!("shard-{shard:04}/{}", sst_name(object.number))
    } else {
        format!("sst/{:016x}/{:016x}.sst", object.lineage, object.number)
    }
}

/// Prefix of every checkpoint's objects.
pub(crate) const CHECKPOINTS_PREFIX: &str = "checkpoints/";
/// Prefix of every SST object with a lineage.
pub(crate) const SST_PREFIX: &str = "sst/";
/// Name of a checkpoint's commit object inside its directory.
pub(crate) const CHECKPOINT_OBJECT: &str = "CHECKPOINT";
/// Key of the copy of the newest checkpoint's metadata (a hint; see
/// `checkpoint::format`). It parses as no checkpoint directory, so listings and the
/// garbage collector pass it by.
pub(crate) const CHECKPOINT_HEAD_KEY: &str = "checkpoints/LATEST";

/// Directory (key prefix) of checkpoint `id` of the database with lineage `db`.
pub(crate) fn checkpoint_dir(id: u64, db: u64) -> String {
    format!("{CHECKPOINTS_PREFIX}{id:020}-{db:016x}/")
}

/// Key of a checkpoint's commit object.
pub(crate) fn checkpoint_key(id: u64, db: u64) -> String {
    format!("{}{CHECKPOINT_OBJECT}", checkpoint_dir(id, db))
}

/// Key of shard `shard`'s object of a checkpoint.
pub(crate) fn shard_checkpoint_key(id: u64, db: u64, shard: u32) -> String {
    format!("{}shard-{shard:04}.ckpt", checkpoint_dir(id, db))
}

/// The shard whose object of checkpoint `id` of database `db` `key` is, if it is
/// one (the inverse of [`shard_checkpoint_key`]).
pub(crate) fn parse_shard_checkpoint_key(key: &str, id: u64, db: u64) -> Option<u32> {
    let n = key
        .strip_prefix(&checkpoint_dir(id, db))?
        .strip_prefix("shard-")?
        .strip_suffix(".ckpt")?;
    if n.len() < 4 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The checkpoint (id, database lineage) an object key belongs to, if any.
pub(crate) fn parse_checkpoint_key(key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(CHECKPOINTS_PREFIX)?;
    let dir = rest.split('/').next()?;
    let (id, db) = dir.split_once('-')?;
    if id.len() != 20 || db.len() != 16 {
        return None;
    }
    Some((id.parse().ok()?, u64::from_str_radix(db, 16).ok()?))
}

/// The object an SST key names, if it names one (`sst/<lineage>/<number>.sst` or a
/// legacy `shard-<n>/<id>.sst`).
pub(crate) fn parse_object_key(key: &str) -> Option<ObjectId> {
    if let Some(rest) = key.strip_prefix(SST_PREFIX) {
        let (lineage, file) = rest.split_once('/')?;
        let number = file.strip_suffix(".sst")?;
        if lineage.len() != 16 || number.len() != 16 {
            return None;
        }
        let lineage = u64::from_str_radix(lineage, 16).ok()?;
        let number = u64::from_str_radix(number, 16).ok()?;
        return (lineage != 0).then_some(ObjectId { lineage, number });
    }
    let rest = key.strip_prefix("shard-")?;
    let (_, file) = rest.split_once('/')?;
    parse_sst_name(file).map(ObjectId::legacy)
}

/// Replaces `dir/name` with `bytes` atomically and durably: temp file, fsync,
/// rename, fsync of the directory.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(sst_name(0x1_0000_0000_0003), "0001000000000003.sst");
        assert_eq!(parse_sst_name(&sst_name(42)), Some(42));
        assert_eq!(parse_sst_name("42.sst"), None);
        assert_eq!(parse_sst_name("0001000000000003.sst.tmp"), None);
        assert_eq!(manifest_name(7), "MANIFEST-000007");
        assert_eq!(parse_manifest_name(&manifest_name(1234567)), Some(1234567));
        assert_eq!(
            object_key(ObjectId::legacy(1 << 48 | 3)),
            "shard-0001/0001000000000003.sst"
        );
        let o = ObjectId {
            lineage: 0xabc,
            number: 7,
        };
        assert_eq!(object_key(o), "sst/0000000000000abc/0000000000000007.sst");
        assert_eq!(parse_object_key(&object_key(o)), Some(o));
        let legacy = ObjectId::legacy(1 << 48 | 3);
        assert_eq!(parse_object_key(&object_key(legacy)), Some(legacy));
        assert_eq!(parse_object_key("sst/0000000000000abc/7.sst"), None);
        assert_eq!(
            checkpoint_key(42, 0xdb),
            "checkpoints/00000000000000000042-00000000000000db/CHECKPOINT"
        );
        assert_eq!(
            parse_checkpoint_key(&shard_checkpoint_key(42, 0xdb, 3)),
            Some((42, 0xdb))
        );
        assert_eq!(parse_checkpoint_key("checkpoints/42-db/CHECKPOINT"), None);
        assert_eq!(
            parse_shard_checkpoint_key(&shard_checkpoint_key(42, 0xdb, 3), 42, 0xdb),
            Some(3)
        );
        assert_eq!(
            parse_shard_checkpoint_key(&shard_checkpoint_key(42, 0xdb, 12345), 42, 0xdb),
            Some(12345)
        );
        assert_eq!(
            parse_shard_checkpoint_key(&checkpoint_key(42, 0xdb), 42, 0xdb),
            None
        );
        assert_eq!(
            parse_shard_checkpoint_key(&shard_checkpoint_key(42, 0xdb, 3), 43, 0xdb),
            None
        );
    }
}
