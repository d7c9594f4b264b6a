//! Finding and reading checkpoints in a store.

use std::collections::BTreeMap;

use terrace_tiering::store::ObjectMeta;

use super::format::{CheckpointMeta, ShardCheckpoint};
use crate::error::{Error, Result};
use crate::files::{checkpoint_key, parse_checkpoint_key, CHECKPOINTS_PREFIX, CHECKPOINT_OBJECT};
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
    let reads = meta.shard_objects.iter().map(|o| async move {
        let bytes = remote.get(o.key.clone()).await?;
        if bytes.len() as u64 != o.size_bytes || crate::encoding::crc32(&bytes) != o.crc32 {
            return Err(Error::corrupt(
                &o.key,
                0,
                format!(
                    "is {} bytes with crc {:#010x}; the checkpoint recorded {} bytes with crc {:#010x}",
                    bytes.len(),
                    crate::encoding::crc32(&bytes),
                    o.size_bytes,
                    o.crc32
                ),
            ));
        }
        let s = ShardCheckpoint::decode(&o.key, &bytes)?;
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

/// The committed checkpoint to use: `id`, or the newest (highest id; the newest
/// creation among equal ids of different databases).
pub(crate) async fn pick_checkpoint(remote: &Remote, id: Option<u64>) -> Result<CheckpointMeta> {
    let dirs = list_checkpoints(remote).await?;
    let store = remote.store().describe();
    let mut candidates: Vec<(u64, u64)> = dirs
        .iter()
        .filter(|(k, d)| d.committed && id.is_none_or(|id| k.0 == id))
        .map(|(k, _)| *k)
        .collect();
    if candidates.is_empty() {
        return Err(super::no_such_checkpoint(
            &store,
            &match id {
                Some(id) => format!("checkpoint {id}"),
                None => "checkpoint".to_string(),
            },
        ));
    }
    let top = candidates.iter().map(|k| k.0).max().unwrap_or(0);
    candidates.retain(|k| k.0 == top);
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
    best.ok_or_else(|| super::no_such_checkpoint(&store, "checkpoint"))
}
