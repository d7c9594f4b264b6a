//! Finding and reading checkpoints in a store.

use std::collections::BTreeMap;

use terrace_tiering::store::ObjectMeta;

use super::format::{CheckpointMeta, ShardCheckpoint};
use crate::error::{Error, Result};
use crate::files::{
    checkpoint_key, parse_checkpoint_key, parse_shard_checkpoint_key, CHECKPOINTS_PREFIX,
    CHECKPOINT_OBJECT,
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
    let mut dirs: BTreeMap<(u64, u64), CheckpointDir> = BTreeMap::new();
    for o in remote.list(CHECKPOINTS_PREFIX.to_string()).await? {
        let Some(at) = parse_checkpoint_key(&o.key) else {
            continue;
        };
        let d = dirs.entry(at).or_default();
        if o.key.ends_with(&format!("/{CHECKPOINT_OBJECT}")) {
            d.committed = true;
        }
        d.objects.push(o);
    }
    Ok(dirs)
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
        let read;
        let bytes: &[u8] = match fetched.get(&o.key) {
            Some(b) => b,
            None => {
                read = remote.get(o.key.clone()).await?;
                &read
            }
        };
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
    });
    futures_util::future::try_join_all(reads).await
}

/// The committed checkpoint to use — `id`, or the newest (the highest id; the
/// newest creation among equal ids of different databases) — with its shard
/// objects. The listing that finds the checkpoint also names the
/// objects in its directory, so when one checkpoint qualifies its shard objects
/// are read together with `CHECKPOINT` — one round trip for both instead of two —
/// and then checked against what `CHECKPOINT` records (size, CRC, shard), exactly
/// as if read after it. An object the listing missed is read afterwards.
pub(crate) async fn pick_checkpoint_and_shards(
    remote: &Remote,
    id: Option<u64>,
) -> Result<(CheckpointMeta, Vec<ShardCheckpoint>)> {
    let dirs = list_checkpoints(remote).await?;
    let candidates = candidates(remote, &dirs, id)?;
    let (cid, db, listed) = match candidates[..] {
        [only] => match dirs.get(&only) {
            Some(dir) => (only.0, only.1, &dir.objects),
            None => return Err(Error::internal("a listed checkpoint left the listing")),
        },
        _ => {
            // Several databases wrote this id: read their commit objects to choose.
            let meta = best_of(remote, candidates).await?;
            let shards = read_shards(remote, &meta).await?;
            return Ok((meta, shards));
        }
    };
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
    Ok((meta, shards))
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
