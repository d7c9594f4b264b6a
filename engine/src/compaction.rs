//! Carrying out one compaction: a job over the version it was chosen from and the
//! policy's choice ([`crate::policy::compaction::choose`]).
//!
//! A [`CompactionJob`] resolves the choice's file ids against its version, merges the
//! inputs (read sequentially with large read-ahead, bypassing the block cache, which
//! is only asked whether it holds each input block), keeps
//! the newest version of each key, drops tombstones when nothing older can lie below,
//! cuts the output into files of about `target_file_bytes`, and hands the shard the
//! edit to log and the opened outputs to install. An output block whose entries came
//! from at least one cached input block is preloaded into the cache
//! ([`crate::policy::cache_mode::compaction_output_hint`]): the input blocks die with
//! the compaction, and their keys stay hot. A trivial move is an edit alone.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::combine::{newest_fate, Newest, PendingMerge};
use crate::error::{Error, Result};
use crate::iter::{MergeIter, Source};
use crate::key::{make_internal_key, state_key_of, InternalKey, ValueKind};
use crate::policy::cache_mode::compaction_output_hint;
use crate::policy::compaction::Choice;
use crate::shard::Shard;
use crate::sst::{TableCache, TableWriter};
use crate::version::{FileDesc, FileMeta, Version, VersionEdit};

/// What a finished job produced: the edit to log, and the opened files it adds.
pub(crate) struct CompactionOutput {
    pub(crate) edit: VersionEdit,
    pub(crate) added: Vec<(u32, Rc<FileMeta>)>,
    pub(crate) kind: OutputKind,
}

/// Whether the job rewrote files or only moved one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputKind {
    Move,
    Merge { read_bytes: u64, written_bytes: u64 },
}

/// One compaction, resolved against the version it was chosen from.
pub(crate) enum CompactionJob {
    /// Re-link `file` from `level` to `level + 1`.
    Move {
        level: u32,
        file: Rc<FileMeta>,
        pointer: Option<Vec<u8>>,
    },
    /// Merge `inputs` (newest first) into `output_level`.
    Merge {
        inputs: Vec<(u32, Rc<FileMeta>)>,
        output_level: u32,
        bottommost: bool,
        pointer: Option<(u32, Vec<u8>)>,
    },
}

impl CompactionJob {
    /// Resolves `choice` against `version`; `None` for [`Choice::Nothing`].
    pub(crate) fn new(version: &Version, choice: Choice) -> Result<Option<CompactionJob>> {
        let find = |level: u32, id: u64| -> Result<Rc<FileMeta>> {
            version
                .levels
                .get(level as usize)
                .and_then(|files| files.iter().find(|f| f.desc.id == id))
                .cloned()
                .ok_or_else(|| {
                    Error::internal(format!("compaction input {id:016x} not in L{level}"))
                })
        };
        Ok(match choice {
            Choice::Nothing => None,
            Choice::Move {
                level,
                file,
                pointer,
            } => Some(CompactionJob::Move {
                level,
                file: find(level, file)?,
                pointer,
            }),
            Choice::Merge {
                level,
                inputs,
                output_level,
                next_inputs,
                bottommost,
                pointer,
            } => {
                let mut files = Vec::new();
                for id in &inputs {
                    files.push((level, find(level, *id)?));
                }
                for id in &next_inputs {
                    files.push((output_level, find(output_level, *id)?));
                }
                Some(CompactionJob::Merge {
                    inputs: files,
                    output_level,
                    bottommost,
                    pointer: pointer.map(|p| (level, p)),
                })
            }
        })
    }

    /// Runs the job on `shard`. On failure, outputs already written are removed.
    pub(crate) async fn run(self, shard: &Shard) -> Result<CompactionOutput> {
        match self {
            CompactionJob::Move {
                level,
                file,
                pointer,
            } => Ok(CompactionOutput {
                edit: VersionEdit {
                    deleted: vec![(level, file.desc.id)],
                    added: vec![(level + 1, file.desc.clone())],
                    compact_pointers: pointer.map(|p| vec![(level, p)]).unwrap_or_default(),
                    ..Default::default()
                },
                added: vec![(level + 1, file)],
                kind: OutputKind::Move,
            }),
            CompactionJob::Merge {
                inputs,
                output_level,
                bottommost,
                pointer,
            } => merge(shard, inputs, output_level, bottommost, pointer).await,
        }
    }
}

type Output = (TableWriter, FileDesc, PathBuf);

async fn merge(
    shard: &Shard,
    inputs: Vec<(u32, Rc<FileMeta>)>,
    output_level: u32,
    bottommost: bool,
    pointer: Option<(u32, Vec<u8>)>,
) -> Result<CompactionOutput> {
    let readahead = shard.opts.compaction_readahead_bytes;
    let probe: Rc<dyn TableCache> = shard.reads.cache.clone();
    let sources = inputs
        .iter()
        .map(|(_, f)| {
            // A clipped input yields only its clip's keys: the others belong to
            // other shards, and the outputs drop them (the trim).
            Source::Table(
                f.reader
                    .iter_compaction(readahead, probe.clone())
                    .clipped(f.desc.clip),
            )
        })
        .collect();
    // Set while the output block being filled holds an entry of a cached input block;
    // read and cleared as each output block is written.
    let hot = Rc::new(Cell::new(false));
    let mut it = MergeIter::new(sources);
    let stage = &shard.signals.compaction_stage;
    stage.set("merge: seek inputs");
    it.seek_to_first().await?;
    stage.set("merge: running");
    let mut out = Outputs {
        output_level,
        hot: hot.clone(),
        current: None,
        files: Vec::new(),
        written: 0,
    };
    let catalog = shard.opts.catalog.clone();
    let now_ms = shard.now_ms();
    let mut last_key: Option<Vec<u8>> = None;
    let mut pending: Option<PendingMerge> = None;
    let mut ttl_dropped = 0u64;
    let result: Result<()> = async {
        while it.valid() {
            let Some(k) = InternalKey::decode(it.key()) else {
                return Err(Error::internal("compaction input key too short"));
            };
            let shadowed = last_key.as_deref() == Some(k.state_key);
            if shadowed {
                if let Some(p) = pending.as_mut() {
                    p.older(k.kind, it.value())?;
                }
                it.next().await?;
                continue;
            }
            if let Some(p) = pending.take() {
                let c = p.resolve(&catalog, bottommost)?;
                out.add(shard, &c.ikey, &c.value, c.seqno, c.kind, false)
                    .await?;
            }
            let buf = last_key.get_or_insert_with(Vec::new);
            buf.clear();
            buf.extend_from_slice(k.state_key);
            let kind = ValueKind::from_u8(k.kind)
                .ok_or_else(|| Error::internal(format!("unknown kind {}", k.kind)))?;
            if kind == ValueKind::Merge {
                pending = Some(PendingMerge::new(k.state_key, k.seqno, it.value()));
            } else {
                let fate =
                    newest_fate(&catalog, k.state_key, kind, it.value(), bottommost, now_ms)?;
                if kind == ValueKind::Put && fate != Newest::Keep {
                    ttl_dropped += 1;
                }
                match fate {
                    Newest::Keep => {
                        out.add(shard, it.key(), it.value(), k.seqno, kind, it.block_hot())
                            .await?
                    }
                    Newest::Drop => {}
                    Newest::Tombstone => {
                        let tomb = make_internal_key(k.state_key, k.seqno, ValueKind::Delete);
                        out.add(shard, &tomb, &[], k.seqno, ValueKind::Delete, false)
                            .await?
                    }
                }
            }
            it.next().await?;
        }
        if let Some(p) = pending.take() {
            let c = p.resolve(&catalog, bottommost)?;
            out.add(shard, &c.ikey, &c.value, c.seqno, c.kind, false)
                .await?;
        }
        if let Some(o) = out.current.take() {
            out.finish(shard, o).await?;
        }
        Ok(())
    }
    .await;
    shard.counters.borrow_mut().ttl_dropped += ttl_dropped;
    let Outputs {
        current,
        files: outputs,
        written,
        ..
    } = out;
    let mut current = current;
    if let Err(e) = result {
        if let Some((w, _, _)) = current.take() {
            shard.reads.cache.evict_file(w.file_id());
            w.abandon().await;
        }
        for f in &outputs {
            shard.reads.cache.evict_file(f.desc.id);
            let _ = crate::shard::remove_file(&shard.sst_path(f.desc.id)).await;
        }
        return Err(e);
    }
    let read: u64 = inputs.iter().map(|(_, f)| f.desc.size_bytes).sum();
    Ok(CompactionOutput {
        edit: VersionEdit {
            deleted: inputs.iter().map(|(l, f)| (*l, f.desc.id)).collect(),
            added: outputs
                .iter()
                .map(|f| (output_level, f.desc.clone()))
                .collect(),
            compact_pointers: pointer.into_iter().collect(),
            ..Default::default()
        },
        added: outputs.into_iter().map(|f| (output_level, f)).collect(),
        kind: OutputKind::Merge {
            read_bytes: read,
            written_bytes: written,
        },
    })
}

/// The files a merge writes, the one being filled last.
struct Outputs {
    output_level: u32,
    hot: Rc<Cell<bool>>,
    current: Option<Output>,
    files: Vec<Rc<FileMeta>>,
    written: u64,
}

impl Outputs {
    /// Adds an entry, starting a file when none is open and finishing it once it
    /// reaches the target size.
    async fn add(
        &mut self,
        shard: &Shard,
        ikey: &[u8],
        value: &[u8],
        seqno: u64,
        kind: ValueKind,
        block_hot: bool,
    ) -> Result<()> {
        if shard.checkpoint_pause_until.get().is_some() {
            shard.yield_to_checkpoints().await;
        }
        if self.current.is_none() {
            self.current = Some(new_output(shard, self.output_level, &self.hot).await?);
        }
        let Some((w, desc, _)) = self.current.as_mut() else {
            return Err(Error::internal("compaction output vanished"));
        };
        w.add(ikey, value).await?;
        if block_hot {
            self.hot.set(true);
        }
        desc.note_entry(ikey, seqno, kind);
        if w.estimated_size() >= shard.opts.target_file_bytes {
            if let Some(o) = self.current.take() {
                self.finish(shard, o).await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self, shard: &Shard, o: Output) -> Result<()> {
        let meta = finish_output(shard, o).await?;
        self.written += meta.desc.size_bytes;
        self.files.push(meta);
        Ok(())
    }
}

async fn finish_output(shard: &Shard, (w, desc, path): Output) -> Result<Rc<FileMeta>> {
    debug_assert!(state_key_of(&desc.smallest) <= state_key_of(&desc.largest));
    let id = w.file_id();
    shard
        .finish_table(w, desc, &path)
        .await
        .inspect_err(|_| shard.reads.cache.evict_file(id))
}

async fn new_output(shard: &Shard, level: u32, hot: &Rc<Cell<bool>>) -> Result<Output> {
    let (id, object, path) = shard.allocate_file();
    shard.signals.compaction_stage.set("merge: create output");
    let mut w = TableWriter::create(&path, id, shard.table_opts.clone()).await?;
    let hot = Rc::clone(hot);
    w.on_data_block(crate::shard::cache::output_hook(
        &shard.reads.cache,
        id,
        u8::try_from(level).unwrap_or(u8::MAX),
        move || compaction_output_hint(hot.replace(false)),
    ));
    shard.signals.compaction_stage.set("merge: running");
    Ok((w, FileDesc::empty(id, object), path))
}
