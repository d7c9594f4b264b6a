//! Opening a shard: replay the manifest, reconcile it with the files on disk, open
//! every live SST, and start a fresh manifest.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;

use terrace_tiering::{probe_direct_io, BlockCache, BlockSource, LocalFile};

use super::{Queues, Shard, State};
use crate::compaction::CompactionConfig;
use crate::error::{Error, Result};
use crate::key::shard_key_groups;
use crate::lanes::KeyLanes;
use crate::manifest::{Manifest, ManifestState};
use crate::memtable::Memtable;
use crate::notify::Notify;
use crate::options::Options;
use crate::sst::{TableOptions, TableReader};
use crate::stats::Counters;
use crate::version::{sort_levels, FileDesc, FileMeta, Version};

impl Shard {
    /// Opens (or creates) shard `id` of the database `opts` describes. Must run on the
    /// shard's executor.
    pub(crate) async fn open(id: u32, opts: Options, queues: Queues) -> Result<Rc<Shard>> {
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
        let opened = futures_util::future::try_join_all(
            state
                .files
                .values()
                .map(|(level, desc)| open_file(&dir, *level, desc.clone())),
        )
        .await?;
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
        Ok(Rc::new(Shard {
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

/// Opens one live SST named by the manifest.
async fn open_file(
    dir: &std::path::Path,
    level: u32,
    desc: FileDesc,
) -> Result<(u32, Rc<FileMeta>)> {
    let path = dir.join(format!("{:016x}.sst", desc.id));
    let file = LocalFile::open(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::corrupt(&path, 0, "the manifest names this file but it is missing")
        } else {
            Error::io("open", &path, e)
        }
    })?;
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
    let source: Rc<dyn BlockSource> = Rc::new(file);
    let reader = TableReader::open(desc.id, path, source).await?;
    Ok((
        level,
        Rc::new(FileMeta {
            desc,
            reader: Rc::new(reader),
        }),
    ))
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
