//! Carrying out a compaction choice on a shard: merge the inputs, keep the newest
//! version of each key, drop tombstones when nothing older can lie below, cut the
//! output into files of about `target_file_bytes`, log and install the result.

use std::rc::Rc;

use terrace_uploader::{FileReason, NewFile};

use super::policy::{is_bottommost, key_range, Choice};
use crate::error::{Error, Result};
use crate::iter::{MergeIter, Source};
use crate::key::{state_key_of, InternalKey, ValueKind};
use crate::shard::Shard;
use crate::sst::TableWriter;
use crate::version::{FileDesc, FileMeta, VersionEdit};

impl Shard {
    /// The compaction task: compacts while the policy finds work, until close.
    pub(crate) async fn compaction_loop(self: Rc<Self>) {
        loop {
            let seen = self.compaction_wake.generation();
            if self.closing.get() || self.poisoned.borrow().is_some() {
                return;
            }
            match self.compact_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.poison(&e);
                    return;
                }
            }
            self.compaction_wake
                .changed_or_after(seen, crate::shard::BACKGROUND_RECHECK)
                .await;
        }
    }

    /// Runs one policy-chosen compaction; false when there was nothing to do.
    async fn compact_once(&self) -> Result<bool> {
        let _permit = self
            .compaction_lock
            .acquire_permit(1)
            .await
            .map_err(|_| crate::ErrorDetail::Closed)?;
        self.compaction_stage.set("wait for upload room");
        self.wait_for_upload_room().await;
        self.compaction_stage.set("choose");
        let choice = {
            let st = self.state.borrow();
            crate::compaction::choose(
                &st.version.levels,
                &self.compaction_cfg,
                &st.compact_pointers,
            )
        };
        if choice == Choice::Nothing {
            return Ok(false);
        }
        self.compaction_stage.set("execute");
        self.execute(choice).await?;
        self.purge_obsolete();
        self.compaction_stage.set("idle");
        Ok(true)
    }

    /// Carries out `choice` against the current version.
    pub(crate) async fn execute(&self, choice: Choice) -> Result<()> {
        match choice {
            Choice::Nothing => Ok(()),
            Choice::Move {
                level,
                file,
                pointer,
            } => {
                let meta = self.find_file(level, file)?;
                let edit = VersionEdit {
                    deleted: vec![(level, file)],
                    added: vec![(level + 1, meta.desc.clone())],
                    compact_pointers: pointer.map(|p| vec![(level, p)]).unwrap_or_default(),
                    ..Default::default()
                };
                self.log_and_install(edit, vec![(level + 1, meta)])?;
                self.counters.borrow_mut().trivial_moves += 1;
                Ok(())
            }
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
                    files.push((level, self.find_file(level, *id)?));
                }
                for id in &next_inputs {
                    files.push((output_level, self.find_file(output_level, *id)?));
                }
                self.merge(files, output_level, bottommost, pointer.map(|p| (level, p)))
                    .await
            }
        }
    }

    fn find_file(&self, level: u32, id: u64) -> Result<Rc<FileMeta>> {
        self.state.borrow().version.levels[level as usize]
            .iter()
            .find(|f| f.desc.id == id)
            .cloned()
            .ok_or_else(|| Error::internal(format!("compaction input {id:016x} not in L{level}")))
    }

    /// Merges `inputs` (newest first) into `output_level`.
    async fn merge(
        &self,
        inputs: Vec<(u32, Rc<FileMeta>)>,
        output_level: u32,
        bottommost: bool,
        pointer: Option<(u32, Vec<u8>)>,
    ) -> Result<()> {
        let readahead = self.opts.compaction_readahead_bytes;
        let sources = inputs
            .iter()
            .map(|(_, f)| Source::Table(f.reader.iter_sequential(readahead)))
            .collect();
        let mut it = MergeIter::new(sources);
        self.compaction_stage.set("merge: seek inputs");
        it.seek_to_first().await?;
        self.compaction_stage.set("merge: running");
        let mut outputs: Vec<Rc<FileMeta>> = Vec::new();
        let mut current: Option<(TableWriter, FileDesc, std::path::PathBuf)> = None;
        let mut last_key: Option<Vec<u8>> = None;
        let mut written = 0u64;
        let result: Result<()> = async {
            while it.valid() {
                let Some(k) = InternalKey::decode(it.key()) else {
                    return Err(Error::internal("compaction input key too short"));
                };
                let shadowed = last_key.as_deref() == Some(k.state_key);
                if !shadowed {
                    let buf = last_key.get_or_insert_with(Vec::new);
                    buf.clear();
                    buf.extend_from_slice(k.state_key);
                    let kind = ValueKind::from_u8(k.kind)
                        .ok_or_else(|| Error::internal(format!("unknown kind {}", k.kind)))?;
                    if !(bottommost && kind == ValueKind::Delete) {
                        if current.is_none() {
                            current = Some(self.new_output().await?);
                        }
                        if let Some((w, desc, _)) = current.as_mut() {
                            w.add(it.key(), it.value()).await?;
                            desc.note_entry(it.key(), k.seqno, kind);
                            if w.estimated_size() >= self.opts.target_file_bytes {
                                if let Some(out) = current.take() {
                                    let meta = self.finish_output(out).await?;
                                    written += meta.desc.size_bytes;
                                    outputs.push(meta);
                                }
                            }
                        }
                    }
                }
                it.next().await?;
            }
            if let Some(out) = current.take() {
                let meta = self.finish_output(out).await?;
                written += meta.desc.size_bytes;
                outputs.push(meta);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some((w, _, _)) = current.take() {
                w.abandon().await;
            }
            for f in &outputs {
                let _ = std::fs::remove_file(self.sst_path(f.desc.id));
            }
            return Err(e);
        }
        let read: u64 = inputs.iter().map(|(_, f)| f.desc.size_bytes).sum();
        let edit = VersionEdit {
            next_file_number: Some(self.state.borrow().next_file_number),
            deleted: inputs.iter().map(|(l, f)| (*l, f.desc.id)).collect(),
            added: outputs
                .iter()
                .map(|f| (output_level, f.desc.clone()))
                .collect(),
            compact_pointers: pointer.into_iter().collect(),
            ..Default::default()
        };
        self.log_and_install(
            edit,
            outputs.iter().map(|f| (output_level, f.clone())).collect(),
        )?;
        {
            let mut c = self.counters.borrow_mut();
            c.compactions += 1;
            c.compaction_read_bytes += read;
            c.compaction_write_bytes += written;
        }
        if let Some(hook) = &self.opts.new_file_hook {
            for f in &outputs {
                hook.on_new_file(&NewFile {
                    shard: self.id,
                    file_id: f.desc.id,
                    path: self.sst_path(f.desc.id),
                    size_bytes: f.desc.size_bytes,
                    level: output_level,
                    reason: FileReason::Compaction,
                });
            }
        }
        Ok(())
    }

    async fn finish_output(
        &self,
        (w, desc, path): (TableWriter, FileDesc, std::path::PathBuf),
    ) -> Result<Rc<FileMeta>> {
        debug_assert!(state_key_of(&desc.smallest) <= state_key_of(&desc.largest));
        self.finish_table(w, desc, &path).await
    }

    async fn new_output(&self) -> Result<(TableWriter, FileDesc, std::path::PathBuf)> {
        let (id, path) = self.allocate_file();
        self.compaction_stage.set("merge: create output");
        let w = TableWriter::create(&path, id, self.table_opts.clone()).await?;
        self.compaction_stage.set("merge: running");
        Ok((w, FileDesc::empty(id), path))
    }

    /// Compacts every file holding keys in `[lo, hi]` (state keys; `None` unbounded)
    /// down to the deepest non-empty level, then rewrites that level's files in the
    /// range if they still hold tombstones.
    pub(crate) async fn compact_range(
        &self,
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
    ) -> Result<()> {
        self.flush_all().await?;
        let _permit = self
            .compaction_lock
            .acquire_permit(1)
            .await
            .map_err(|_| crate::ErrorDetail::Closed)?;
        let deepest = {
            let st = self.state.borrow();
            st.version
                .levels
                .iter()
                .rposition(|files| !files.is_empty())
                .unwrap_or(0)
                .max(1)
        };
        for level in 0..=deepest {
            let choice = {
                let st = self.state.borrow();
                let v = &st.version;
                let picked = v.overlapping(level, lo.as_deref(), hi.as_deref());
                if picked.is_empty() {
                    continue;
                }
                let refs: Vec<&Rc<FileMeta>> = picked.iter().collect();
                let Some((flo, fhi)) = key_range(&refs) else {
                    continue;
                };
                if level == deepest {
                    if picked.iter().all(|f| f.desc.deletions == 0) {
                        continue;
                    }
                    Choice::Merge {
                        level: level as u32,
                        inputs: Vec::new(),
                        output_level: level as u32,
                        next_inputs: picked.iter().map(|f| f.desc.id).collect(),
                        bottommost: is_bottommost(&v.levels, level, &flo, &fhi),
                        pointer: None,
                    }
                } else {
                    let next = v.overlapping(level + 1, Some(&flo), Some(&fhi));
                    let all: Vec<&Rc<FileMeta>> = picked.iter().chain(next.iter()).collect();
                    let (wlo, whi) = key_range(&all).unwrap_or((flo, fhi));
                    Choice::Merge {
                        level: level as u32,
                        inputs: picked.iter().map(|f| f.desc.id).collect(),
                        output_level: level as u32 + 1,
                        next_inputs: next.iter().map(|f| f.desc.id).collect(),
                        bottommost: is_bottommost(&v.levels, level + 1, &wlo, &whi),
                        pointer: None,
                    }
                }
            };
            self.execute(choice).await?;
            self.purge_obsolete();
        }
        Ok(())
    }
}
