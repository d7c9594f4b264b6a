//! Opening a shard: replay the manifest, reconcile it with the files on disk, open
//! every live SST, and start a fresh manifest.
//!
//! A shard directory without CURRENT is new only when this open is creating the
//! database and the directory holds no SST or manifest; anything else is Corruption
//! (deleting its files as orphans would lose them). A read-only open writes, deletes
//! and renames nothing: it replays the manifest CURRENT names as it is on disk.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use terrace_tiering::{
    probe_direct_io, probe_direct_io_with, BlockSource, LocalFile, RemoteStatsCell,
};

use super::{open_table, LocalCopies, Memtables, Queues, ReadPath, Shard, Uploads};
use crate::error::{Error, Result};
use crate::files::{parse_manifest_name, parse_sst_name, shard_dir, CURRENT_FILE, PROBE_FILE};
use crate::key::shard_key_groups;
use crate::lanes::KeyLanes;
use crate::options::Options;
use crate::policy::compaction::CompactionConfig;
use crate::remote::Remote;
use crate::sst::TableOptions;
use crate::stats::Counters;
use crate::version::manifest::{self, ManifestLog};
use crate::version::{
    sort_levels, FileDesc, FileMeta, ManifestState, UploadState, Version, VersionSet,
};

/// How often a read-only open re-reads a manifest that moved on while it opened the
/// files it named.
const READ_ONLY_RETRIES: usize = 50;

impl Shard {
    /// Opens (or, when `new_db`, creates) shard `id` of the database `opts` describes.
    /// Must run on the shard's executor.
    pub(crate) async fn open(
        id: u32,
        opts: Options,
        queues: Queues,
        remote: Option<Arc<Remote>>,
        new_db: bool,
    ) -> Result<Rc<Shard>> {
        let dir = shard_dir(&opts.path, id);
        let read_only = opts.read_only;
        // glommio's IOPOLL probe must precede every other DMA file this thread
        // opens. Its first run on an executor takes 10–20 ms, so a writer's probe
        // runs while the files open: only a file with a local copy waits for it (an
        // object-only file opens no DMA file), as does everything after the files.
        let probe: ProbeGate = if read_only {
            probe_read_only(&dir).await?;
            futures_util::future::ready(Ok(())).boxed_local().shared()
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
            let at = dir.clone();
            async move { probe_direct_io(&at).await.map_err(Rc::new) }
                .boxed_local()
                .shared()
        };
        // Polled at once: the probe starts before the manifest is read.
        let probing = glommio::spawn_local(probe.clone());

        let remote_reads = RemoteStatsCell::default();
        let ctx = OpenCtx {
            dir: &dir,
            remote: remote.as_ref(),
            stats: &remote_reads,
            warm_window: opts.warm_window,
            now: opts.clock.now(),
            probe: probe.clone(),
        };
        // A read-only open races with the writer: a file the manifest named may be
        // compacted away and deleted before it is opened. Then the manifest has moved
        // on; read it again. Damage that stays put is reported.
        let mut attempt = 0;
        let (state, number, opened) = loop {
            let (state, number) = match manifest::recover(&dir)? {
                Some(r) => (r.state, r.number),
                None => {
                    check_new_shard_dir(&dir, new_db && !read_only)?;
                    (
                        ManifestState {
                            next_file_number: 1,
                            ..Default::default()
                        },
                        0,
                    )
                }
            };
            if !read_only {
                remove_orphans(&dir, &state)?;
            }
            open_homes(&dir, remote.as_ref(), &state).await?;
            let opened =
                futures_util::future::try_join_all(state.files.values().map(|(level, desc)| {
                    ctx.open_file(*level, desc.clone(), state.uploaded.contains(&desc.id))
                }))
                .await;
            match opened {
                Ok(opened) => break (state, number, opened),
                Err(e) if read_only && attempt < READ_ONLY_RETRIES => {
                    let moved_on = manifest::recover(&dir)?.is_none_or(|r| r.state != state);
                    if !moved_on {
                        return Err(e);
                    }
                    attempt += 1;
                    glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(e) => return Err(e),
            }
        };
        probing
            .await
            .map_err(|e| Error::io("probe direct I/O in", &dir, unshare(&e)))?;
        let mut state = state;
        if state.lineage == 0 && !read_only {
            // A new shard, or one from before lineages: its new files get objects
            // of a lineage of their own (older files keep theirs).
            state.lineage = new_lineage();
        }
        let mut levels = vec![Vec::new(); opts.num_levels];
        let mut to_warm: Vec<(u32, Rc<FileMeta>)> = opened
            .iter()
            .filter(|(_, m)| !m.file.is_local())
            .cloned()
            .collect();
        to_warm.sort_by_key(|(level, m)| (*level, m.desc.id));
        let to_upload: VecDeque<Rc<FileMeta>> = opened
            .iter()
            .filter(|(_, m)| m.upload.get() == UploadState::Pending && !read_only)
            .map(|(_, m)| m.clone())
            .collect();
        for (level, meta) in opened {
            let slot = levels.get_mut(level as usize).ok_or_else(|| {
                Error::corrupt(
                    dir.join(CURRENT_FILE),
                    0,
                    format!(
                        "manifest puts file {:016x} in level {level}, options allow {}",
                        meta.desc.id, opts.num_levels
                    ),
                )
            })?;
            slot.push(meta);
        }
        sort_levels(&mut levels);

        let log = if read_only {
            None
        } else {
            Some(ManifestLog::create(
                &dir,
                number + 1,
                &state.snapshot_edit().encode(),
            )?)
        };
        let cache = super::cache::ShardCache::open_for(&opts, id, &dir, &state, queues).await?;
        let mut reads = ReadPath::new(cache);
        reads.remote_reads = remote_reads;
        let last_seqno = state.last_seqno;
        let files_at_open = state.files.keys().copied().collect();
        let versions = VersionSet::new(
            id,
            &dir,
            state,
            Version { levels },
            log,
            opts.manifest_roll_bytes,
        );
        Ok(Rc::new(Shard {
            id,
            opened: opts.clock.now(),
            files_at_open,
            writers_stalled: Cell::new(0),
            stall_began: Cell::new(None),
            checkpoint_pause_until: Cell::new(None),
            key_groups: {
                let r = shard_key_groups(id, opts.shards, opts.key_groups());
                (r.first, r.last)
            },
            table_opts: TableOptions::from_options(&opts),
            compaction_cfg: CompactionConfig::from_options(&opts),
            queues,
            read_only,
            remote,
            lanes: Rc::new(KeyLanes::default()),
            compaction_lock: glommio::sync::Semaphore::new(1),
            versions,
            mem: RefCell::new(Memtables::new(last_seqno)),
            reads,
            uploads: Uploads::with_queue(to_upload),
            local_copies: LocalCopies::default(),
            warmer: super::warmer::Warmer {
                queue: RefCell::new(to_warm),
                ..Default::default()
            },
            signals: Default::default(),
            health: Default::default(),
            counters: RefCell::new(Counters::default()),
            dir,
            opts,
        }))
    }
}

/// A random, non-zero lineage id. Collisions between the shards of all databases
/// sharing a store are as likely as two random 64-bit numbers matching.
pub(crate) fn new_lineage() -> u64 {
    loop {
        let l = terrace_tiering::clock::fresh_seed();
        if l != 0 {
            return l;
        }
    }
}

/// The IOPOLL probe without writing: with a file already in the directory (the
/// writer's probe file, or any SST). A directory with neither has no local file a
/// read-only shard could open.
async fn probe_read_only(dir: &Path) -> Result<()> {
    let mut candidates = vec![dir.join(PROBE_FILE)];
    if let Ok(entries) = std::fs::read_dir(dir) {
        candidates.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_str().and_then(parse_sst_name).is_some())
                .map(|e| e.path()),
        );
    }
    for path in candidates {
        let non_empty = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        if non_empty && probe_direct_io_with(&path).await.is_ok() {
            return Ok(());
        }
    }
    Ok(())
}

/// A shard directory without CURRENT: new only if this open creates the database and
/// the directory holds no SST. A manifest there is what an earlier creation left when
/// it was killed before writing CURRENT: a database exists only once `TERRACE-META`
/// is written, after every shard has its manifest and before any write is accepted,
/// so that manifest names nothing and is removed.
fn check_new_shard_dir(dir: &Path, creating: bool) -> Result<()> {
    let current = dir.join(CURRENT_FILE);
    if !creating {
        let what = if dir.exists() {
            "is missing in an existing database (the shard's file list is lost; nothing was deleted)"
        } else {
            "is missing: the shard directory does not exist in an existing database"
        };
        return Err(Error::corrupt(&current, 0, what));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut leftovers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or_default();
        if parse_sst_name(name).is_some() {
            return Err(Error::corrupt(
                &current,
                0,
                format!(
                    "is missing but the shard directory holds {name}: refusing to treat it as new (nothing was deleted)"
                ),
            ));
        }
        if parse_manifest_name(name).is_some() {
            leftovers.push(entry.path());
        }
    }
    for path in leftovers {
        tracing::warn!(path = %path.display(), "removing the manifest of a database creation that was interrupted");
        std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(())
}

/// Opens the views of the job's other prefixes that the shard's files live under
/// (a rescaled shard references its sources' objects).
async fn open_homes(dir: &Path, remote: Option<&Arc<Remote>>, state: &ManifestState) -> Result<()> {
    let homes: std::collections::BTreeSet<&str> = state
        .files
        .values()
        .map(|(_, f)| f.home.as_str())
        .filter(|h| !h.is_empty())
        .collect();
    for home in homes {
        match remote {
            Some(r) => {
                r.home(home).await?;
            }
            None => {
                return Err(Error::corrupt(
                    dir.join(CURRENT_FILE),
                    0,
                    format!(
                    "names files under the job prefix {home:?}, and no object store is configured"
                ),
                ))
            }
        }
    }
    Ok(())
}

/// The direct-I/O probe of a shard's executor, awaited by whatever opens a DMA file.
type ProbeGate = Shared<LocalBoxFuture<'static, std::result::Result<(), Rc<std::io::Error>>>>;

/// The probe's error, for a caller that needs its own.
fn unshare(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

struct OpenCtx<'a> {
    dir: &'a std::path::Path,
    remote: Option<&'a Arc<Remote>>,
    stats: &'a RemoteStatsCell,
    warm_window: std::time::Duration,
    now: Instant,
    probe: ProbeGate,
}

impl OpenCtx<'_> {
    /// Opens one live SST named by the manifest, from its local copy when there is
    /// one, else from the object store.
    async fn open_file(
        &self,
        level: u32,
        desc: FileDesc,
        uploaded: bool,
    ) -> Result<(u32, Rc<FileMeta>)> {
        let path = self.dir.join(crate::files::sst_name(desc.id));
        // No local copy: nothing to open as a DMA file, so no wait for the probe.
        let local = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
            _ => {
                self.probe
                    .clone()
                    .await
                    .map_err(|e| Error::io("probe direct I/O in", self.dir, unshare(&e)))?;
                LocalFile::open(&path).await
            }
        };
        let local = match local {
            Ok(file) => {
                if file.size() != desc.size_bytes {
                    return Err(Error::corrupt(
                        &path,
                        0,
                        format!(
                            "file is {} bytes, the manifest recorded {}",
                            file.size(),
                            desc.size_bytes
                        ),
                    ));
                }
                Some(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let upload = match (self.remote, uploaded) {
            (None, _) => UploadState::LocalOnly,
            // Uploaded before this open: past its warm window already.
            (Some(_), true) => {
                UploadState::Uploaded(self.now.checked_sub(self.warm_window).unwrap_or(self.now))
            }
            (Some(_), false) => UploadState::Pending,
        };
        if local.is_none() {
            let why = match (self.remote, uploaded) {
                (Some(_), true) => None,
                (None, true) => Some(
                    "the manifest names this file, it is only in the object store, and no object store is configured",
                ),
                (_, false) => Some("the manifest names this file but it is missing"),
            };
            if let Some(why) = why {
                return Err(Error::corrupt(&path, 0, why));
            }
        }
        let remote_only = local.is_none();
        let meta = open_table(
            desc,
            &path,
            local,
            self.remote,
            self.stats,
            upload,
        )
        .await
        .map_err(|e| match e.detail() {
            crate::ErrorDetail::Io { source, .. }
                if remote_only && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Error::corrupt(
                    &path,
                    0,
                    format!("the manifest names this file, it is not on the local disk, and the object store lost it ({source})"),
                )
            }
            _ => e,
        })?;
        Ok((level, meta))
    }
}

/// Deletes SSTs the manifest does not name: outputs of a flush or compaction that
/// crashed before its edit was logged.
fn remove_orphans(dir: &Path, state: &ManifestState) -> Result<()> {
    let live: HashSet<u64> = state.files.keys().copied().collect();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(parse_sst_name) else {
            continue;
        };
        if !live.contains(&id) {
            tracing::info!(file = %entry.path().display(), "removing SST the manifest does not name");
            std::fs::remove_file(entry.path()).map_err(|e| Error::io("remove", entry.path(), e))?;
        }
    }
    Ok(())
}
