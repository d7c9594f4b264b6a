//! Opening a shard: replay the manifest, reconcile it with the files on disk, open
//! every live SST, and start a fresh manifest.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use std::sync::Arc;
use std::time::Instant;

use terrace_tiering::{probe_direct_io, BlockCache, BlockSource, LocalFile, RemoteStatsCell};

use super::{open_table, Queues, Shard, State};
use crate::compaction::CompactionConfig;
use crate::error::{Error, Result};
use crate::key::shard_key_groups;
use crate::lanes::KeyLanes;
use crate::manifest::{Manifest, ManifestState};
use crate::memtable::Memtable;
use crate::notify::Notify;
use crate::options::Options;
use crate::remote::Remote;
use crate::sst::TableOptions;
use crate::stats::Counters;
use crate::version::{sort_levels, FileDesc, FileMeta, UploadState, Version};

impl Shard {
    /// Opens (or creates) shard `id` of the database `opts` describes. Must run on the
    /// shard's executor.
    pub(crate) async fn open(
        id: u32,
        opts: Options,
        queues: Queues,
        remote: Option<Arc<Remote>>,
    ) -> Result<Rc<Shard>> {
        let dir = Shard::dir_for(&opts.path, id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        // Must precede every other DMA file this thread opens (glommio IOPOLL probe).
        probe_direct_io(&dir)
            .await
            .map_err(|e| Error::io("probe direct I/O in", &dir, e))?;

        let (state, number) = match Manifest::recover(&dir)? {
            Some((s, n)) => (s, n),
            None => (
                ManifestState {
                    next_file_number: 1,
                    ..Default::default()
                },
                0,
            ),
        };
        remove_orphans(&dir, &state)?;

        let mut levels = vec![Vec::new(); opts.num_levels];
        let remote_reads = RemoteStatsCell::default();
        let ctx = OpenCtx {
            shard: id,
            dir: &dir,
            remote: remote.as_ref(),
            stats: &remote_reads,
            warm_window: opts.warm_window,
            now: opts.clock.now(),
        };
        let opened =
            futures_util::future::try_join_all(state.files.values().map(|(level, desc)| {
                ctx.open_file(*level, desc.clone(), state.uploaded.contains(&desc.id))
            }))
            .await?;
        let to_upload: VecDeque<Rc<FileMeta>> = opened
            .iter()
            .filter(|(_, m)| m.upload.get() == UploadState::Pending)
            .map(|(_, m)| m.clone())
            .collect();
        for (level, meta) in opened {
            let slot = levels.get_mut(level as usize).ok_or_else(|| {
                Error::corrupt(
                    dir.join("CURRENT"),
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

        let manifest = Manifest::create(&dir, &state, number + 1)?;
        let cache_bytes = opts.block_cache_bytes / u64::from(opts.shards);
        let pending_bytes = to_upload.iter().map(|m| m.desc.size_bytes).sum();
        Ok(Rc::new(Shard {
            remote,
            remote_reads,
            uploads_pending: Cell::new(to_upload.len() as u64),
            upload_pending_bytes: Cell::new(pending_bytes),
            to_upload: RefCell::new(to_upload),
            upload_wake: Notify::default(),
            tier_wake: Notify::default(),
            close_requested: Cell::new(false),
            close_deadline: Cell::new(None),
            reads_in_progress: Cell::new(0),
            writes_since_io_turn: Cell::new(0),
            upload_refusal: RefCell::new(None),
            id,
            key_groups: shard_key_groups(id, opts.shards, opts.max_key_groups),
            table_opts: TableOptions::from_options(&opts),
            compaction_cfg: CompactionConfig::from_options(&opts),
            lanes: Rc::new(KeyLanes::default()),
            cache: Rc::new(BlockCache::new(cache_bytes)),
            state: RefCell::new(State {
                mem: Rc::new(Memtable::new()),
                imms: VecDeque::new(),
                version: Rc::new(Version { levels }),
                last_seqno: state.last_seqno,
                next_file_number: state.next_file_number.max(1),
                compact_pointers: state.compact_pointers.clone(),
                obsolete: Vec::new(),
            }),
            manifest: RefCell::new(manifest),
            changed: Notify::default(),
            flush_wake: Notify::default(),
            compaction_wake: Notify::default(),
            compaction_lock: glommio::sync::Semaphore::new(1),
            counters: RefCell::new(Counters::default()),
            poisoned: RefCell::new(None),
            closing: Cell::new(false),
            queues,
            flush_stage: Cell::new("idle"),
            compaction_stage: Cell::new("idle"),
            dir,
            opts,
        }))
    }
}

struct OpenCtx<'a> {
    shard: u32,
    dir: &'a std::path::Path,
    remote: Option<&'a Arc<Remote>>,
    stats: &'a RemoteStatsCell,
    warm_window: std::time::Duration,
    now: Instant,
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
        let path = self.dir.join(format!("{:016x}.sst", desc.id));
        let local = match LocalFile::open(&path).await {
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
            self.shard,
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
fn remove_orphans(dir: &std::path::Path, state: &ManifestState) -> Result<()> {
    let live: HashSet<u64> = state.files.keys().copied().collect();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".sst") else {
            continue;
        };
        let Ok(id) = u64::from_str_radix(stem, 16) else {
            continue;
        };
        if !live.contains(&id) {
            tracing::info!(file = %entry.path().display(), "removing SST the manifest does not name");
            std::fs::remove_file(entry.path()).map_err(|e| Error::io("remove", entry.path(), e))?;
        }
    }
    Ok(())
}
