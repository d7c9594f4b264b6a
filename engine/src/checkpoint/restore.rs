//! Restoring a checkpoint into a new local directory without downloading it.
//!
//! [`Db::restore`] reads the checkpoint's commit object and shard objects, checks
//! that every object they name exists (one listing per lineage), and writes a new
//! database: `TERRACE-META` with a new database lineage, and per shard a manifest
//! naming the checkpoint's SSTs at their levels and its memtable snapshots in L0 —
//! all recorded as uploaded, none local — with a new shard lineage and local ids
//! numbered afresh (the objects keep their names). Then it opens the database,
//! which serves at once: blocks come from the store on demand, and each shard's
//! warmer downloads files into the local directory in the background, within the
//! local disk budget (`shard/warmer.rs`).
//!
//! The checkpoint must be in the store the database will use
//! (`Options::object_store`); the restored database writes its own files and
//! checkpoints there under its own lineages.

use crate::key::KeyGroupRange;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::format::{CheckpointMeta, ShardCheckpoint};
use super::listing::{confirm_copies, pick_checkpoint_and_shards, Picked};
use crate::db::Db;
use crate::error::{Error, ErrorDetail, Result};
use crate::files::{object_key, shard_dir, META_FILE, SST_PREFIX};
use crate::lock::DbLock;
use crate::meta::DbMeta;
use crate::options::Options;
use crate::remote::Remote;
use crate::shard::new_lineage;
use crate::version::manifest::ManifestLog;
use crate::version::{FileDesc, ManifestState};

/// What a restore found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreInfo {
    /// The checkpoint restored.
    pub checkpoint: u64,
    /// Lineage of the database that took it.
    pub source_db_lineage: u64,
    /// Every checkpoint restored, with the lineage of the database that took it
    /// (one for a plain restore; one per source database for a rescale; the first
    /// is `checkpoint` and `source_db_lineage`).
    pub sources: Vec<(u64, u64)>,
    /// File references that carry a key-group clip range (hold other shards' keys
    /// until compaction trims them): 0 for a plain restore.
    pub clipped_files: usize,
    /// SSTs and memtable snapshots the restored database reads from the store.
    pub files: usize,
    /// Their bytes (none downloaded before serving).
    pub state_bytes: u64,
    /// Bytes of checkpoint metadata read (commit object and shard objects).
    pub metadata_bytes: u64,
    /// From the call until the database was open and serving.
    pub duration: Duration,
}

impl Db {
    /// Opens a new database in `opts.path` (missing or empty) from a checkpoint in
    /// `opts.object_store`: checkpoint `id`, or the newest. Nothing but metadata is
    /// read before it serves. Its key groups and tables come from the checkpoint;
    /// its own lineages are new, so it never overwrites an object of the database
    /// that took the checkpoint. With another `opts.shards` or
    /// `opts.key_group_range` than the checkpoint's, it is a rescale of this one
    /// source ([`Db::restore_from`]).
    ///
    /// A missing checkpoint, a damaged metadata object or a missing SST fail with an
    /// error naming the object; nothing is written to the store.
    pub async fn restore(opts: Options, id: Option<u64>) -> Result<(Db, RestoreInfo)> {
        let start = opts.clock.now();
        let clock = opts.clock.clone();
        let Some(restored) = write_restored(opts.clone(), id, ShardCount::MatchOrRescale).await?
        else {
            // Another shard count or key-group range: a rescale of this one source.
            let uri = match &opts.object_store {
                crate::ObjectStoreSpec::Uri(u) => u.clone(),
                _ => return Err(Error::internal("a restore without a store URI")),
            };
            let source = super::rescale::RestoreSource {
                uri,
                checkpoint: id,
            };
            return Db::restore_from(opts, &[source]).await;
        };
        let db = match open_checked(restored.opts, vec![restored.check]).await {
            Ok(db) => db,
            Err(e) => {
                restored.undo.run();
                return Err(e);
            }
        };
        let mut info = restored.info;
        info.duration = clock.now().saturating_duration_since(start);
        Ok((db, info))
    }
}

/// Whether the restored database takes the checkpoint's shard count or must match
/// the options'.
pub(crate) enum ShardCount {
    /// Must match; another shard count or key-group range makes the restore a
    /// rescale (`write_restored` returns `None`, having written nothing).
    MatchOrRescale,
    FromCheckpoint,
}

/// A database written from a checkpoint, not yet opened.
pub(crate) struct Restored {
    /// Options to open it with (shards, key groups and prefix from the checkpoint).
    pub(crate) opts: Options,
    pub(crate) meta: CheckpointMeta,
    pub(crate) info: RestoreInfo,
    /// That every object the checkpoint names exists: still to be run, while the
    /// database opens ([`open_checked`]).
    pub(crate) check: PendingCheck,
    /// How to take back what the restore wrote, should the open fail.
    pub(crate) undo: RestoreUndo,
}

/// The check that every object a checkpoint names exists (one listing per home and
/// lineage), deferred so that it runs while the restored database opens instead of
/// before: the open reads each file's tail anyway, so the listing's round trip
/// overlaps it. It holds the private I/O runtime the metadata was read on.
pub(crate) struct PendingCheck {
    runtime: terrace_tiering::store::IoRuntime,
    remote: Arc<Remote>,
    meta: CheckpointMeta,
    shards: Vec<ShardCheckpoint>,
    /// The metadata came from `checkpoints/LATEST`: also read the objects it
    /// copies and compare ([`confirm_copies`]).
    confirm_copies: bool,
}

impl PendingCheck {
    pub(crate) fn new(
        runtime: terrace_tiering::store::IoRuntime,
        remote: Arc<Remote>,
        picked: &Picked,
    ) -> PendingCheck {
        PendingCheck {
            runtime,
            remote,
            meta: picked.meta.clone(),
            shards: picked.shards.clone(),
            confirm_copies: picked.from_copy,
        }
    }

    /// Runs the checks (together) and ends the runtime.
    pub(crate) async fn run(self) -> Result<()> {
        let (checked, confirmed) = futures_util::future::join(
            check_objects(&self.remote, &self.meta, &self.shards),
            async {
                if self.confirm_copies {
                    confirm_copies(&self.remote, &self.meta, &self.shards).await
                } else {
                    Ok(())
                }
            },
        )
        .await;
        drop(self.remote);
        self.runtime.shutdown_now();
        checked.and(confirmed)
    }
}

/// Opens the database a restore wrote (`opts`) while `checks` run. If a check
/// fails, the opened database is closed and the check's error returned (it names
/// the missing object and the checkpoint, which an open that failed on the same
/// object would not); otherwise the open's result. The caller undoes what it wrote.
pub(crate) async fn open_checked(opts: Options, checks: Vec<PendingCheck>) -> Result<Db> {
    let (checked, opened) = futures_util::future::join(
        futures_util::future::join_all(checks.into_iter().map(PendingCheck::run)),
        Db::open(opts),
    )
    .await;
    match checked.into_iter().find_map(|c| c.err()) {
        None => opened,
        Some(e) => {
            if let Ok(db) = opened {
                if let Err(close) = db.close().await {
                    tracing::warn!(error = %close, "closing a restored database whose check failed");
                }
            }
            Err(e)
        }
    }
}

/// What a restore (or rescale) made before its database opened, to remove again
/// if it fails: its directory's contents (the directory was missing, or empty when
/// `dir_existed`) and a local store prefix directory it created.
pub(crate) struct RestoreUndo {
    pub(crate) path: std::path::PathBuf,
    pub(crate) dir_existed: bool,
    pub(crate) made_prefix: Option<std::path::PathBuf>,
}

impl RestoreUndo {
    /// Records the state of `path` before a restore writes there.
    pub(crate) fn before(path: &std::path::Path) -> RestoreUndo {
        RestoreUndo {
            path: path.to_path_buf(),
            dir_existed: path.exists(),
            made_prefix: None,
        }
    }

    /// Removes what the restore wrote (best effort: failures are logged).
    pub(crate) fn run(&self) {
        remove_restored(&self.path, self.dir_existed);
        if let Some(prefix) = &self.made_prefix {
            remove_if_no_files(prefix);
        }
    }
}

/// Removes the directory's contents, and the directory unless it `existed`.
fn remove_restored(path: &std::path::Path, existed: bool) {
    let removed = if existed {
        std::fs::read_dir(path).and_then(|entries| {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            }
            Ok(())
        })
    } else {
        std::fs::remove_dir_all(path)
    };
    if let Err(e) = removed {
        tracing::warn!(path = %path.display(), error = %e, "could not remove what a failed restore wrote");
    }
}

/// Removes `dir` if no file is under it: a store prefix a failed rescale made,
/// holding only the directories the local store creates when it opens.
fn remove_if_no_files(dir: &std::path::Path) {
    fn has_file(d: &std::path::Path) -> bool {
        match std::fs::read_dir(d) {
            Ok(entries) => entries.flatten().any(|e| {
                e.file_type()
                    .map_or(true, |t| !t.is_dir() || has_file(&e.path()))
            }),
            // Unreadable: keep it.
            Err(_) => true,
        }
    }
    if !has_file(dir) {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the store prefix a failed rescale made");
        }
    }
}

/// Writes the local metadata of a database restored from checkpoint `id` (or the
/// newest) of `opts.object_store` into `opts.path`.
pub(crate) async fn write_restored(
    mut opts: Options,
    id: Option<u64>,
    count: ShardCount,
) -> Result<Option<Restored>> {
    opts.validate()?;
    if opts.read_only {
        return Err(Error::invalid_option(
            "read_only",
            "a restore creates a database; open it read-only afterwards",
        ));
    }
    if matches!(opts.object_store, crate::ObjectStoreSpec::Embedded) {
        return Err(Error::invalid_option(
            "object_store",
            "a restore reads a store outside the new database's directory: give its URI (file:///... or s3://...)",
        ));
    }
    let clock = opts.clock.clone();
    let start = clock.now();
    check_empty(&opts.path)?;
    let undo = RestoreUndo::before(&opts.path);
    let (runtime, remote) = crate::remote::open(&opts)
        .await?
        .ok_or_else(|| Error::invalid_option("object_store", "a restore needs an object store"))?;
    // The runtime ends with the existence check, which runs while the database
    // opens (on its own runtime); on an error here it ends when dropped.
    let picked = pick_checkpoint_and_shards(&remote, id).await?;
    let (meta, shards, metadata_bytes) = (&picked.meta, &picked.shards, picked.metadata_bytes);

    let range = KeyGroupRange::new(meta.key_groups.0, meta.key_groups.1);
    if matches!(count, ShardCount::MatchOrRescale)
        && (meta.shards != opts.shards || opts.key_group_range.is_some_and(|r| r != range))
    {
        return Ok(None);
    }
    opts.shards = meta.shards;
    opts.max_key_groups = meta.max_key_groups;
    opts.key_group_prefix_bytes = meta.key_group_prefix_bytes;
    opts.key_group_range = Some(range);
    if let Err(e) = write_database(&opts, meta, shards) {
        undo.run();
        return Err(e);
    }
    let info = RestoreInfo {
        checkpoint: meta.id,
        source_db_lineage: meta.db_lineage,
        sources: vec![(meta.id, meta.db_lineage)],
        clipped_files: 0,
        files: shards
            .iter()
            .map(|s| s.files.len() + s.snapshots.len())
            .sum(),
        state_bytes: meta.state_bytes,
        metadata_bytes,
        duration: clock.now().saturating_duration_since(start),
    };
    let check = PendingCheck::new(runtime, remote, &picked);
    Ok(Some(Restored {
        opts,
        meta: picked.meta,
        info,
        check,
        undo,
    }))
}

/// A restore target must hold no database and nothing else.
pub(crate) fn check_empty(path: &std::path::Path) -> Result<()> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if path.join(META_FILE).exists() || entries.next().is_some() {
                return Err(Error::invalid_option(
                    "path",
                    format!(
                        "a restore needs an empty or missing directory; {} is not empty",
                        path.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("list", path, e)),
    }
}

/// Every object the checkpoint names must be there: one listing per home and
/// lineage, a HEAD per legacy file. Objects with a home live under another prefix
/// of the job (the checkpoint's database was itself rescaled).
pub(crate) async fn check_objects(
    remote: &Arc<Remote>,
    meta: &CheckpointMeta,
    shards: &[ShardCheckpoint],
) -> Result<()> {
    let mut by_lineage: BTreeMap<(&str, u64), BTreeSet<String>> = BTreeMap::new();
    for f in shards
        .iter()
        .flat_map(|s| s.files.iter().map(|(_, f)| f).chain(s.snapshots.iter()))
    {
        by_lineage
            .entry((f.home.as_str(), f.object.lineage))
            .or_default()
            .insert(object_key(f.object));
    }
    // The listings (and legacy HEADs) run in parallel: each costs a round trip.
    let checks = by_lineage
        .into_iter()
        .map(|((home, lineage), wanted)| async move {
            let remote = remote.home(home).await?;
            let found: BTreeSet<String> = if lineage == 0 {
                let mut found = BTreeSet::new();
                for key in &wanted {
                    let k = key.clone();
                    let store = remote.store();
                    let exists = remote
                        .io
                        .spawn(async move { store.head(&k).await })
                        .await
                        .map_err(|_| Error::from(ErrorDetail::Closed))?;
                    if exists.is_ok() {
                        found.insert(key.clone());
                    }
                }
                found
            } else {
                remote
                    .list(format!("{SST_PREFIX}{lineage:016x}/"))
                    .await?
                    .into_iter()
                    .map(|o| o.key)
                    .collect()
            };
            if let Some(missing) = wanted.difference(&found).next() {
                return Err(Error::corrupt(
                    missing,
                    0,
                    format!(
                        "checkpoint {} names this object and {} does not hold it",
                        meta.id,
                        remote.store().describe()
                    ),
                ));
            }
            Ok(())
        });
    futures_util::future::try_join_all(checks).await?;
    Ok(())
}

/// Writes the new database's metadata: a manifest per shard, then `TERRACE-META`.
fn write_database(opts: &Options, meta: &CheckpointMeta, shards: &[ShardCheckpoint]) -> Result<()> {
    let path = &opts.path;
    std::fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))?;
    let _lock = DbLock::acquire(path)?;
    for s in shards {
        let dir = shard_dir(path, s.shard);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let state = shard_state(s);
        ManifestLog::create(&dir, 1, &state.snapshot_edit().encode())?;
    }
    let mut db_meta = DbMeta {
        shards: meta.shards,
        max_key_groups: meta.max_key_groups,
        key_group_prefix_bytes: meta.key_group_prefix_bytes,
        tables: meta.tables.clone(),
        lineage: new_lineage(),
        key_group_range: KeyGroupRange::new(meta.key_groups.0, meta.key_groups.1),
        // Checkpoints do not carry table kinds: the options give them.
        kinds: Vec::new(),
    };
    db_meta.reconcile(opts)?;
    db_meta.store(path)
}

/// The manifest state of a shard restored from `s`: its files at their levels and
/// its snapshots in L0, all in the store, with fresh local ids and a new lineage.
fn shard_state(s: &ShardCheckpoint) -> ManifestState {
    let mut state = ManifestState {
        last_seqno: s.last_seqno,
        lineage: new_lineage(),
        compact_pointers: s.compact_pointers.iter().cloned().collect(),
        ..Default::default()
    };
    let mut number = 0u64;
    let adopted = s
        .files
        .iter()
        .map(|(l, f)| (*l, f))
        .chain(s.snapshots.iter().map(|f| (0, f)));
    for (level, f) in adopted {
        number += 1;
        let id = (u64::from(s.shard) << 48) | number;
        let desc = FileDesc { id, ..f.clone() };
        state.files.insert(id, (level, desc));
        state.uploaded.insert(id);
    }
    state.next_file_number = number + 1;
    state
}
