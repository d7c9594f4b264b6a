//! Finding and reading checkpoints in a store.

use std::collections::BTreeMap;

use terrace_tiering::store::ObjectMeta;

use super::format::{CheckpointHead, CheckpointMeta, ShardCheckpoint, ShardObject};
use crate::error::{Error, Result};
use crate::files::{
    checkpoint_key, parse_checkpoint_key, parse_shard_checkpoint_key, CHECKPOINTS_PREFIX,
    CHECKPOINT_HEAD_KEY, CHECKPOINT_OBJECT,
};
use crate::remote::Remote;

/// The objects of one checkpoint directory.
#[derive(Clone, Debug, Default)]
pub(crate) struct CheckpointDir {
    /// Its `CHECKPOINT` object exists.
    pub(crate) committed: bool,
    pub(crate) objects: Vec<ObjectMeta>,
}

/// Every checkpoint directory in the store, by (checkpoint id, database lineage).
pub(crate) async fn list_checkpoints(
    remote: &Remote,
) -> Result<BTreeMap<(u64, u64), CheckpointDir>> {
    Ok(checkpoint_dirs(
        remote.list(CHECKPOINTS_PREFIX.to_string()).await?,
    ))
}

/// The checkpoint directories among `objects` (a listing of the checkpoints
/// prefix), by (checkpoint id, database lineage).
pub(crate) fn checkpoint_dirs(objects: Vec<ObjectMeta>) -> BTreeMap<(u64, u64), CheckpointDir> {
    let mut dirs: BTreeMap<(u64, u64), CheckpointDir> = BTreeMap::new();
    for o in objects {
        let Some(at) = parse_checkpoint_key(&o.key) else {
            continue;
        };
        let d = dirs.entry(at).or_default();
        if o.key.ends_with(&format!("/{CHECKPOINT_OBJECT}")) {
            d.committed = true;
        }
        d.objects.push(o);
    }
    dirs
}

/// Reads and checks a checkpoint's commit object.
pub(crate) async fn read_checkpoint(remote: &Remote, id: u64, db: u64) -> Result<CheckpointMeta> {
    let key = checkpoint_key(id, db);
    let bytes = remote.get(key.clone()).await?;
    let meta = CheckpointMeta::decode(&key, &bytes)?;
    if meta.id != id || meta.db_lineage != db {
        return Err(Error::corrupt(
            &key,
            0,
            format!(
                "describes checkpoint {} of database {:016x}",
                meta.id, meta.db_lineage
            ),
        ));
    }
    Ok(meta)
}

/// Reads every shard object a checkpoint names, checking size and CRC against what
/// the commit object recorded.
pub(crate) async fn read_shards(
    remote: &Remote,
    meta: &CheckpointMeta,
) -> Result<Vec<ShardCheckpoint>> {
    read_shards_with(remote, meta, &BTreeMap::new()).await
}

/// [`read_shards`], taking an object's bytes from `fetched` (read before the
/// commit object said what to expect) where they are, and reading the rest.
async fn read_shards_with(
    remote: &Remote,
    meta: &CheckpointMeta,
    fetched: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<ShardCheckpoint>> {
    let reads = meta.shard_objects.iter().map(|o| async move {
        match fetched.get(&o.key) {
            Some(b) => shard_from(meta, o, b),
            None => shard_from(meta, o, &remote.get(o.key.clone()).await?),
        }
    });
    futures_util::future::try_join_all(reads).await
}

/// Shard object `o` of checkpoint `meta` from its bytes, checked against what the
/// commit object records: size, CRC, checkpoint and shard.
fn shard_from(meta: &CheckpointMeta, o: &ShardObject, bytes: &[u8]) -> Result<ShardCheckpoint> {
    if bytes.len() as u64 != o.size_bytes || crate::encoding::crc32(bytes) != o.crc32 {
        return Err(Error::corrupt(
            &o.key,
            0,
            format!(
                "is {} bytes with crc {:#010x}; the checkpoint recorded {} bytes with crc {:#010x}",
                bytes.len(),
                crate::encoding::crc32(bytes),
                o.size_bytes,
                o.crc32
            ),
        ));
    }
    let s = ShardCheckpoint::decode(&o.key, bytes)?;
    if s.checkpoint != meta.id || s.shard != o.shard {
        return Err(Error::corrupt(
            &o.key,
            0,
            format!("is shard {} of checkpoint {}", s.shard, s.checkpoint),
        ));
    }
    Ok(s)
}

/// A checkpoint chosen to restore: its commit object, its shards, and the bytes of
/// metadata read to find them.
pub(crate) struct Picked {
    pub(crate) meta: CheckpointMeta,
    pub(crate) shards: Vec<ShardCheckpoint>,
    /// Includes the reads [`confirm_copies`] will make when `from_copy`.
    pub(crate) metadata_bytes: u64,
    /// `meta` and `shards` came from `checkpoints/LATEST`: the objects themselves
    /// are still to be read and compared ([`confirm_copies`]), while the database
    /// opens.
    pub(crate) from_copy: bool,
}

/// The committed checkpoint to use — `id`, or the newest (the highest id; the
/// newest creation among equal ids of different databases) — with its shard
/// objects.
///
/// The listing that finds the checkpoint goes out together with a read of
/// `checkpoints/LATEST`; when that copy is of the one checkpoint that qualifies,
/// and the listing shows its commit object (of the copy's size) and every shard
/// object it names, the copies are used after the same checks as the objects
/// themselves get: one round trip in all. The caller then runs [`confirm_copies`]
/// before it trusts them for good. Otherwise the listing also names the
/// objects in the checkpoint's directory, so its shard objects are read together
/// with `CHECKPOINT` — one round trip for both instead of two — and then checked
/// against what `CHECKPOINT` records (size, CRC, shard), exactly as if read after
/// it. An object the listing missed is read afterwards.
pub(crate) async fn pick_checkpoint_and_shards(remote: &Remote, id: Option<u64>) -> Result<Picked> {
    let (dirs, (head_bytes, head)) =
        futures_util::future::join(list_checkpoints(remote), read_head(remote)).await;
    let (meta, shards, from_copy) = choose(remote, &dirs?, head, id).await?;
    Ok(Picked {
        metadata_bytes: head_bytes + own_bytes(&meta),
        meta,
        shards,
        from_copy,
    })
}

/// [`pick_checkpoint_and_shards`] once the listing (`dirs`) and the `LATEST` copy
/// are in: the checkpoint, its shards, and whether they came from the copy.
async fn choose(
    remote: &Remote,
    dirs: &BTreeMap<CheckpointAt, CheckpointDir>,
    head: Option<CheckpointHead>,
    id: Option<u64>,
) -> Result<(CheckpointMeta, Vec<ShardCheckpoint>, bool)> {
    let candidates = candidates(remote, dirs, id)?;
    let (cid, db, listed) = match candidates[..] {
        [only] => match dirs.get(&only) {
            Some(dir) => (only.0, only.1, &dir.objects),
            None => return Err(Error::internal("a listed checkpoint left the listing")),
        },
        _ => {
            // Several databases wrote this id: read their commit objects to choose.
            let meta = best_of(remote, candidates).await?;
            let shards = read_shards(remote, &meta).await?;
            return Ok((meta, shards, false));
        }
    };
    if let Some((meta, shards)) = head.and_then(|h| from_head(h, cid, db, listed)) {
        return Ok((meta, shards, true));
    }
    let shard_keys: Vec<String> = listed
        .iter()
        .map(|o| o.key.clone())
        .filter(|k| parse_shard_checkpoint_key(k, cid, db).is_some())
        .collect();
    let prefetch = shard_keys.iter().map(|k| async move {
        // A failed read is retried after `CHECKPOINT` says what the object must be
        // (and reported then, if the object is named at all).
        remote.get(k.clone()).await.ok().map(|b| (k.clone(), b))
    });
    let (meta, fetched) = futures_util::future::join(
        read_checkpoint(remote, cid, db),
        futures_util::future::join_all(prefetch),
    )
    .await;
    let meta = meta?;
    let fetched: BTreeMap<String, Vec<u8>> = fetched.into_iter().flatten().collect();
    let shards = read_shards_with(remote, &meta, &fetched).await?;
    Ok((meta, shards, false))
}

/// Reads the objects a `LATEST` copy stood in for — `CHECKPOINT` and the shard
/// objects, all at once — and checks each is what was restored from the copy, so a
/// damaged or different object in the store fails the restore (naming it) as it
/// would have without the copy. Runs while the restored database opens: it adds
/// requests, not a round trip in a row.
pub(crate) async fn confirm_copies(
    remote: &Remote,
    meta: &CheckpointMeta,
    shards: &[ShardCheckpoint],
) -> Result<()> {
    let (stored, stored_shards) = futures_util::future::join(
        read_checkpoint(remote, meta.id, meta.db_lineage),
        // Checked against the copy's record of sizes and CRCs.
        read_shards(remote, meta),
    )
    .await;
    if stored? != *meta {
        return Err(Error::corrupt(
            checkpoint_key(meta.id, meta.db_lineage),
            0,
            format!("differs from its copy in {CHECKPOINT_HEAD_KEY}"),
        ));
    }
    for (s, copy) in stored_shards?.iter().zip(shards) {
        if s != copy {
            let key = crate::files::shard_checkpoint_key(meta.id, meta.db_lineage, s.shard);
            return Err(Error::corrupt(
                &key,
                0,
                format!("differs from its copy in {CHECKPOINT_HEAD_KEY}"),
            ));
        }
    }
    Ok(())
}

/// Bytes of a checkpoint's commit object and shard objects.
fn own_bytes(meta: &CheckpointMeta) -> u64 {
    meta.encode().len() as u64 + meta.shard_objects.iter().map(|o| o.size_bytes).sum::<u64>()
}

/// Reads `checkpoints/LATEST`: the bytes read, and the object if it decodes. A
/// missing, unreadable or damaged copy is no error (the checkpoint's own objects
/// are read instead), only a warning when it is there but unusable.
async fn read_head(remote: &Remote) -> (u64, Option<CheckpointHead>) {
    let bytes = match remote.get(CHECKPOINT_HEAD_KEY.to_string()).await {
        Ok(b) => b,
        Err(_) => return (0, None),
    };
    match CheckpointHead::decode(CHECKPOINT_HEAD_KEY, &bytes) {
        Ok(h) => (bytes.len() as u64, Some(h)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring checkpoints/LATEST");
            (bytes.len() as u64, None)
        }
    }
}

/// Checkpoint (`cid`, `db`) from the `LATEST` copy, if the copy is of it, the
/// listing of its directory (`listed`) shows its commit object with the copy's
/// size and every shard object, and every copy passes the checks the objects get.
fn from_head(
    head: CheckpointHead,
    cid: u64,
    db: u64,
    listed: &[ObjectMeta],
) -> Option<(CheckpointMeta, Vec<ShardCheckpoint>)> {
    let key = checkpoint_key(cid, db);
    let meta = CheckpointMeta::decode(&key, &head.checkpoint).ok()?;
    let commit_listed = listed
        .iter()
        .any(|o| o.key == key && o.size == head.checkpoint.len() as u64);
    if meta.id != cid || meta.db_lineage != db || !commit_listed {
        return None;
    }
    let copies: BTreeMap<String, Vec<u8>> = head.shards.into_iter().collect();
    let shards = meta
        .shard_objects
        .iter()
        .map(|o| {
            let there = listed.iter().any(|l| l.key == o.key);
            let bytes = copies.get(&o.key).filter(|_| there)?;
            shard_from(&meta, o, bytes).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    Some((meta, shards))
}

/// A checkpoint's directory name: (checkpoint id, database lineage).
type CheckpointAt = (u64, u64);

/// The committed checkpoints that qualify (`id`, or the highest id; several only
/// when several databases wrote that id), never none: an error naming the store
/// then.
fn candidates(
    remote: &Remote,
    dirs: &BTreeMap<CheckpointAt, CheckpointDir>,
    id: Option<u64>,
) -> Result<Vec<CheckpointAt>> {
    let mut candidates: Vec<CheckpointAt> = dirs
        .iter()
        .filter(|(k, d)| d.committed && id.is_none_or(|id| k.0 == id))
        .map(|(k, _)| *k)
        .collect();
    let top = candidates.iter().map(|k| k.0).max();
    candidates.retain(|k| Some(k.0) == top);
    if !candidates.is_empty() {
        return Ok(candidates);
    }
    Err(super::no_such_checkpoint(
        &remote.store().describe(),
        &match id {
            Some(id) => format!("checkpoint {id}"),
            None => "checkpoint".to_string(),
        },
    ))
}

/// Of checkpoints with one id written by several databases, the newest created.
async fn best_of(remote: &Remote, candidates: Vec<CheckpointAt>) -> Result<CheckpointMeta> {
    let mut best: Option<CheckpointMeta> = None;
    for (cid, db) in candidates {
        let m = read_checkpoint(remote, cid, db).await?;
        if best
            .as_ref()
            .is_none_or(|b| m.created_unix_ms > b.created_unix_ms)
        {
            best = Some(m);
        }
    }
    best.ok_or_else(|| super::no_such_checkpoint(&remote.store().describe(), "checkpoint"))
}
