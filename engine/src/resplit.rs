//! Re-splitting a database locally when it is reopened with another shard count
//! and `Options::resplit_on_open` (a machine grew from 2 to 4 cores): the mechanism of a rescale
//! ([`crate::checkpoint::rescale::plan`]) over the shards' own manifests, with
//! local files hard-linked instead of fetched.
//!
//! Each new shard references the old files whose key groups overlap its range,
//! at their levels, with clip ranges; compaction trims them in the background.
//! Nothing is copied: a file's local copy is hard-linked into every new shard
//! that references it (under its new id), its object and upload state are kept.
//! Reopening happens under the database lock, before the shards start; there are
//! no memtables to carry (data is durable once flushed, and `close` flushes).
//!
//! Crash safety: the new shards are built in `<db>/resplit/` (links, manifests,
//! the new `TERRACE-META`), then `resplit/COMMIT` is written and synced: before
//! it, the old database is untouched and a leftover `resplit/` is discarded.
//! After it, the switch runs in idempotent steps that a later open finishes:
//! every old `shard-NNNN` moves to `<db>/resplit-old/` (then `resplit/MOVED` is
//! written), every new shard moves into place, `TERRACE-META` is replaced, and
//! both staging directories are removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::checkpoint::format::{CheckpointMeta, ShardCheckpoint};
use crate::checkpoint::rescale::{plan, Source};
use crate::error::{Error, Result};
use crate::files::{replace_file, shard_dir, sst_name, sync_dir, META_FILE};
use crate::key::shard_key_groups;
use crate::meta::DbMeta;
use crate::options::Options;
use crate::version::manifest::{self, ManifestLog};

const STAGING: &str = "resplit";
const OLD: &str = "resplit-old";
const COMMIT: &str = "COMMIT";
const MOVED: &str = "MOVED";

/// Finishes or discards an earlier re-split of the database at `path`, then, if
/// `opts.resplit_on_open` is set and `opts.shards` differs from the shard count
/// on disk, re-splits it. Writers only, under the database lock.
pub(crate) fn resplit_if_needed(path: &Path, opts: &Options) -> Result<bool> {
    recover(path)?;
    if !opts.resplit_on_open || !stage(path, opts)? {
        return Ok(false);
    }
    recover(path)?;
    Ok(true)
}

/// Builds the re-split shards in `<db>/resplit/` and commits them (nothing of the
/// old database changes); false when the shard count is unchanged.
fn stage(path: &Path, opts: &Options) -> Result<bool> {
    let Some(meta) = DbMeta::load(path)? else {
        return Ok(false);
    };
    if meta.shards == opts.shards {
        return Ok(false);
    }
    let range = meta.key_group_range;
    if opts.shards == 0 || opts.shards > range.len() {
        return Err(Error::invalid_option(
            "shards",
            format!("{} shards cannot split the key groups {range}", opts.shards),
        ));
    }
    tracing::info!(path = %path.display(), from = meta.shards, to = opts.shards, "re-splitting the database's shards");

    // The old shards as one source.
    let mut shards = Vec::with_capacity(meta.shards as usize);
    for i in 0..meta.shards {
        let dir = shard_dir(path, i);
        let state = manifest::recover(&dir)?
            .ok_or_else(|| {
                Error::corrupt(
                    dir.join(crate::files::CURRENT_FILE),
                    0,
                    "is missing: cannot re-split",
                )
            })?
            .state;
        let kg = shard_key_groups(i, meta.shards, range);
        shards.push((state, (kg.first, kg.last)));
    }
    let last_seqno = shards.iter().map(|(s, _)| s.last_seqno).max().unwrap_or(0);
    let source = Source {
        home: String::new(),
        meta: CheckpointMeta {
            id: 0,
            db_lineage: meta.lineage,
            created_unix_ms: 0,
            shards: meta.shards,
            max_key_groups: meta.max_key_groups,
            key_group_prefix_bytes: meta.key_group_prefix_bytes,
            key_groups: (range.first, range.last),
            last_seqno,
            tables: meta.tables.clone(),
            shard_objects: Vec::new(),
            state_bytes: 0,
            memtable_bytes: 0,
            uploaded_bytes: 0,
        },
        shards: shards
            .iter()
            .enumerate()
            .map(|(i, (state, kg))| ShardCheckpoint {
                checkpoint: 0,
                shard: i as u32,
                lineage: state.lineage,
                key_groups: *kg,
                last_seqno: state.last_seqno,
                files: state.files.values().cloned().collect(),
                snapshots: Vec::new(),
                compact_pointers: Vec::new(),
            })
            .collect(),
    };
    let mut p = plan(Some(range), opts.shards, "", std::slice::from_ref(&source))?;

    let staging = path.join(STAGING);
    fs::create_dir_all(&staging).map_err(|e| Error::io("create directory", &staging, e))?;
    for (j, (state, origin)) in p.shards.iter_mut().zip(&p.origins).enumerate() {
        let dir = staging.join(format!("shard-{j:04}"));
        fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        link_files(path, &dir, state, origin, &shards)?;
        ManifestLog::create(&dir, 1, &state.snapshot_edit().encode())?;
    }
    let new_meta = DbMeta {
        shards: opts.shards,
        ..meta
    };
    new_meta.store(&staging)?;
    sync_dir(&staging)?;
    replace_file(&staging, COMMIT, b"resplit\n")?;
    Ok(true)
}

/// Links the local copies of `state`'s files from the old shard directories
/// into `dir` under their new ids; marks uploaded the files that were.
fn link_files(
    db: &Path,
    dir: &Path,
    state: &mut crate::version::ManifestState,
    origin: &BTreeMap<u64, (usize, usize, u64)>,
    old: &[(crate::version::ManifestState, (u16, u16))],
) -> Result<()> {
    state.uploaded.clear();
    for (&id, &(_, shard, old_id)) in origin {
        let Some((old_state, _)) = old.get(shard) else {
            return Err(Error::internal("re-split origin names no old shard"));
        };
        if old_state.uploaded.contains(&old_id) {
            state.uploaded.insert(id);
        }
        let from = shard_dir(db, shard as u32).join(sst_name(old_id));
        let to = dir.join(sst_name(id));
        match fs::hard_link(&from, &to) {
            Ok(()) => {}
            // Remote only: the manifest records it as uploaded.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("link", &from, e)),
        }
    }
    sync_dir(dir)
}

/// Discards an uncommitted re-split, or finishes a committed one.
fn recover(path: &Path) -> Result<()> {
    let staging = path.join(STAGING);
    let old = path.join(OLD);
    if !staging.exists() {
        if old.exists() {
            remove_dir(&old)?;
        }
        return Ok(());
    }
    if !staging.join(COMMIT).exists() {
        tracing::warn!(path = %staging.display(), "discarding an interrupted re-split");
        return remove_dir(&staging);
    }
    if !staging.join(MOVED).exists() {
        fs::create_dir_all(&old).map_err(|e| Error::io("create directory", &old, e))?;
        for name in shard_dirs(path)? {
            let to = old.join(&name);
            fs::rename(path.join(&name), &to).map_err(|e| Error::io("move", &to, e))?;
        }
        sync_dir(path)?;
        sync_dir(&old)?;
        replace_file(&staging, MOVED, b"moved\n")?;
    }
    for name in shard_dirs(&staging)? {
        let to = path.join(&name);
        fs::rename(staging.join(&name), &to).map_err(|e| Error::io("move", &to, e))?;
    }
    sync_dir(path)?;
    let meta = staging.join(META_FILE);
    if meta.exists() {
        let bytes = fs::read(&meta).map_err(|e| Error::io("read", &meta, e))?;
        replace_file(path, META_FILE, &bytes)?;
        fs::remove_file(&meta).map_err(|e| Error::io("remove", &meta, e))?;
    }
    remove_dir(&old)?;
    remove_dir(&staging)
}

/// The `shard-NNNN` directories directly in `dir`.
fn shard_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let e = e.map_err(|e| Error::io("list", dir, e))?;
        if let Some(name) = e.file_name().to_str() {
            if name.starts_with("shard-") && e.path().is_dir() {
                out.push(name.to_owned());
            }
        }
    }
    Ok(out)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;
    use futures_lite::future::block_on;

    fn options(dir: &Path, shards: u32) -> Options {
        let mut o = Options::new(dir);
        o.shards = shards;
        o.pin_shards = false;
        o.memtable_bytes = 64 << 10;
        o.target_file_bytes = 64 << 10;
        o.max_key_groups = 64;
        o.object_store = crate::ObjectStoreSpec::Disabled;
        o
    }

    fn fill(dir: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let db = block_on(Db::open(options(dir, 2))).unwrap();
        let t = db.table("default").unwrap();
        let mut model = BTreeMap::new();
        block_on(async {
            for i in 0..3000u32 {
                let (k, v) = (
                    format!("k{i:05}").into_bytes(),
                    format!("v{i}").into_bytes(),
                );
                db.put(t, &k, &v).await.unwrap();
                model.insert(k, v);
            }
            db.close().await.unwrap();
        });
        model
    }

    fn read_all(dir: &Path, shards: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let db = block_on(Db::open(options(dir, shards))).unwrap();
        let t = db.table("default").unwrap();
        let all = block_on(db.scan(
            t,
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            usize::MAX,
        ))
        .unwrap();
        assert_eq!(db.shards(), shards);
        block_on(db.close()).unwrap();
        all.into_iter().collect()
    }

    #[test]
    fn an_uncommitted_resplit_is_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let model = fill(tmp.path());
        assert!(stage(tmp.path(), &options(tmp.path(), 3)).unwrap());
        // Killed before the commit point.
        fs::remove_file(tmp.path().join(STAGING).join(COMMIT)).unwrap();
        recover(tmp.path()).unwrap();
        assert!(!tmp.path().join(STAGING).exists());
        assert_eq!(DbMeta::load(tmp.path()).unwrap().unwrap().shards, 2);
        assert_eq!(read_all(tmp.path(), 2), model);
    }

    #[test]
    fn a_committed_resplit_interrupted_at_any_step_is_finished() {
        for step in 0..4 {
            let tmp = tempfile::tempdir().unwrap();
            let db = tmp.path();
            let model = fill(db);
            assert!(stage(db, &options(db, 3)).unwrap());
            let (staging, old) = (db.join(STAGING), db.join(OLD));
            if step >= 1 {
                // One old shard moved away.
                fs::create_dir_all(&old).unwrap();
                fs::rename(db.join("shard-0000"), old.join("shard-0000")).unwrap();
            }
            if step >= 2 {
                fs::rename(db.join("shard-0001"), old.join("shard-0001")).unwrap();
                replace_file(&staging, MOVED, b"moved\n").unwrap();
                // One new shard moved into place.
                fs::rename(staging.join("shard-0002"), db.join("shard-0002")).unwrap();
            }
            if step >= 3 {
                for n in ["shard-0000", "shard-0001"] {
                    fs::rename(staging.join(n), db.join(n)).unwrap();
                }
                let bytes = fs::read(staging.join(META_FILE)).unwrap();
                replace_file(db, META_FILE, &bytes).unwrap();
                fs::remove_file(staging.join(META_FILE)).unwrap();
            }
            // The next open finishes it.
            assert_eq!(read_all(db, 3), model, "step {step}");
            assert!(!staging.exists() && !old.exists(), "step {step}");
        }
    }
}
