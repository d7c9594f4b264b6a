//! The shard's compaction task, manual range compactions, and installing what a
//! [`CompactionJob`] produced.

use std::rc::Rc;

use terrace_uploader::{FileReason, NewFile};

use super::Shard;
use crate::compaction::{CompactionJob, OutputKind};
use crate::error::Result;
use crate::policy::compaction::{choose_with_trims, is_bottommost, key_range, Choice};
use crate::version::replaced::Replaced;
use crate::version::FileMeta;

impl Shard {
    /// The compaction task: compacts while the policy finds work, until close.
    pub(crate) async fn compaction_loop(self: Rc<Self>) {
        loop {
            let seen = self.signals.compaction_wake.generation();
            if self.health.closing.get() || self.health.poisoned.borrow().is_some() {
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
            self.signals
                .compaction_wake
                .changed_or_after(seen, super::BACKGROUND_RECHECK)
                .await;
        }
    }

    /// What the policy would compact next.
    pub(crate) fn next_compaction(&self) -> Choice {
        let version = self.versions.current();
        let persisted = self.versions.persisted();
        let remote_due =
            self.opts.clock.now().saturating_duration_since(self.opened) >= self.opts.trim_delay;
        let choice = choose_with_trims(
            &version.levels,
            &self.compaction_cfg,
            &persisted.compact_pointers,
            &|f: &Rc<FileMeta>| !self.waits_for_trim_delay(f, remote_due),
        );
        // Early after open, a merge that would read remote files waits (see
        // `Options::trim_delay`) unless writers are stalled on a full L0.
        if let Choice::Merge {
            level,
            inputs,
            output_level,
            next_inputs,
            ..
        } = &choice
        {
            let l0_full = version.levels[0].len() >= self.opts.l0_stop_writes_trigger
                && self.writers_stalled.get() > 0;
            let remote_input = |l: u32, ids: &[u64]| {
                version.levels[l as usize]
                    .iter()
                    .any(|f| ids.contains(&f.desc.id) && self.waits_for_trim_delay(f, remote_due))
            };
            if !l0_full
                && (remote_input(*level, inputs) || remote_input(*output_level, next_inputs))
            {
                return Choice::Nothing;
            }
        }
        choice
    }

    /// Whether compaction leaves `f` alone for now: a file that was already in the
    /// version at open (a restored or rescaled database's sources) and is not local,
    /// while `Options::trim_delay` has not passed. Files written since open are
    /// compacted as usual even once their local copies are gone.
    fn waits_for_trim_delay(&self, f: &FileMeta, remote_due: bool) -> bool {
        !remote_due && !f.file.is_local() && self.files_at_open.contains(&f.desc.id)
    }

    /// Runs one policy-chosen compaction; false when there was nothing to do.
    async fn compact_once(&self) -> Result<bool> {
        let _permit = self
            .compaction_lock
            .acquire_permit(1)
            .await
            .map_err(|_| crate::ErrorDetail::Closed)?;
        let stage = &self.signals.compaction_stage;
        stage.set("wait for upload room");
        self.wait_for_upload_room().await;
        stage.set("choose");
        let choice = self.next_compaction();
        if choice == Choice::Nothing {
            return Ok(false);
        }
        stage.set("execute");
        self.execute(choice).await?;
        self.purge_obsolete().await;
        stage.set("idle");
        Ok(true)
    }

    /// Carries out `choice` against the current version and installs the result.
    pub(crate) async fn execute(&self, choice: Choice) -> Result<()> {
        let Some(job) = CompactionJob::new(&self.versions.current(), choice)? else {
            return Ok(());
        };
        let inputs = match &job {
            CompactionJob::Merge { inputs, .. } => inputs.clone(),
            CompactionJob::Move { .. } => Vec::new(),
        };
        let out = job.run(self).await?;
        let level = out.added.first().map(|(l, _)| *l);
        let new_files: Vec<Rc<FileMeta>> = match out.kind {
            OutputKind::Move => Vec::new(),
            OutputKind::Merge { .. } => out.added.iter().map(|(_, f)| f.clone()).collect(),
        };
        if matches!(out.kind, OutputKind::Merge { .. }) && self.remote.is_some() {
            // Until the outputs are uploaded, a checkpoint may name the inputs instead.
            let record = Replaced::of_merge(&inputs, &out.added);
            for f in &new_files {
                *f.replaced.borrow_mut() = record.clone();
            }
        }
        self.log_and_install(out.edit, out.added).await?;
        {
            let mut c = self.counters.borrow_mut();
            match out.kind {
                OutputKind::Move => c.trivial_moves += 1,
                OutputKind::Merge {
                    read_bytes,
                    written_bytes,
                } => {
                    c.compactions += 1;
                    c.compaction_read_bytes += read_bytes;
                    c.compaction_write_bytes += written_bytes;
                }
            }
        }
        if let (Some(hook), Some(level)) = (&self.opts.new_file_hook, level) {
            for f in &new_files {
                hook.on_new_file(&NewFile {
                    shard: self.id,
                    file_id: f.desc.id,
                    path: self.sst_path(f.desc.id),
                    size_bytes: f.desc.size_bytes,
                    level,
                    reason: FileReason::Compaction,
                });
            }
        }
        Ok(())
    }

    /// Waits until the policy finds no compaction work.
    pub(crate) async fn wait_for_compactions(&self) -> Result<()> {
        self.wait_until(
            || self.mem.borrow().frozen.is_empty() && self.next_compaction() == Choice::Nothing,
            &self.signals.compaction_wake,
        )
        .await
    }

    /// Compacts every file holding keys in `[lo, hi]` (state keys; `None` unbounded)
    /// down to the deepest non-empty level, then rewrites that level's files in the
    /// range if they still hold tombstones (or, with a TTL table, always: values may
    /// have expired).
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
        let deepest = self
            .versions
            .current()
            .levels
            .iter()
            .rposition(|files| !files.is_empty())
            .unwrap_or(0)
            .max(1);
        for level in 0..=deepest {
            let choice = {
                let v = self.versions.current();
                let picked = v.overlapping(level, lo.as_deref(), hi.as_deref());
                if picked.is_empty() {
                    continue;
                }
                let refs: Vec<&Rc<FileMeta>> = picked.iter().collect();
                let Some((flo, fhi)) = key_range(&refs) else {
                    continue;
                };
                if level == deepest {
                    // Values of TTL tables may have expired since: rewrite to drop them.
                    if picked.iter().all(|f| f.desc.deletions == 0) && !self.opts.catalog.has_ttl()
                    {
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
            self.purge_obsolete().await;
        }
        Ok(())
    }
}

impl Shard {
    /// Pauses a compaction while a checkpoint on this shard writes its memtable
    /// snapshot and waits for its files: the checkpoint's bytes reach the store
    /// sooner, and compaction catches up after. Bounded per checkpoint: no pause past
    /// `Options::checkpoint_compaction_pause` from the checkpoint's start (a checkpoint
    /// waiting out a long upload backlog must not stop compaction for all of it), and
    /// none while writers are stalled (compaction is what frees them). Callers check
    /// `checkpoint_pause_until` first (per entry).
    pub(crate) async fn yield_to_checkpoints(&self) {
        let began = terrace_tiering::clock::now();
        while let Some(until) = self.checkpoint_pause_until.get() {
            if self.writers_stalled.get() > 0
                || self.health.close_requested.get()
                || self.health.closing.get()
            {
                break;
            }
            let now = terrace_tiering::clock::now();
            if now >= until {
                break;
            }
            let seen = self.signals.changed.generation();
            self.signals
                .changed
                .changed_or_after(seen, (until - now).min(super::FOREGROUND_RECHECK))
                .await;
        }
        self.counters
            .borrow_mut()
            .compaction_checkpoint_pause_micros += began.elapsed().as_micros() as u64;
    }
}
