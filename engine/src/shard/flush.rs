//! Flushing frozen memtables to L0 SSTs, in the shard's flush task queue.
//!
//! Only the newest version of each key is written: no reader can need an older one,
//! because reads that captured an older seqno hold the frozen memtable itself.
//! Tombstones are kept; they shadow older data in deeper levels. A key whose newest
//! version is a merge operand is written as one entry combining its operands
//! (`combine.rs`).

use std::rc::Rc;

use terrace_tiering::{BlockSource, LocalFile};
use terrace_uploader::{FileReason, NewFile};

use super::cache::output_hook;
use super::{Shard, BACKGROUND_RECHECK};
use crate::catalog::TableCatalog;
use crate::combine::PendingMerge;
use crate::error::{Error, Result};
use crate::key::{set_internal_key, ValueKind};
use crate::memtable::{FlushState, Memtable};
use crate::policy::cache_mode;
use crate::sst::TableWriter;
use crate::version::{FileDesc, FileMeta, VersionEdit};

impl Shard {
    /// The flush task: flushes frozen memtables oldest first until the shard closes.
    pub(crate) async fn flush_loop(self: Rc<Self>) {
        loop {
            let seen = self.signals.flush_wake.generation();
            loop {
                let oldest = self.mem.borrow().frozen.back().cloned();
                let Some(imm) = oldest else { break };
                if self.health.poisoned.borrow().is_some() {
                    break;
                }
                if let Err(e) = self.flush_memtable(&imm).await {
                    self.poison(&e);
                    break;
                }
            }
            if self.health.closing.get() && self.mem.borrow().frozen.is_empty() {
                return;
            }
            if self.health.poisoned.borrow().is_some() && self.health.closing.get() {
                return;
            }
            self.signals
                .flush_wake
                .changed_or_after(seen, BACKGROUND_RECHECK)
                .await;
        }
    }

    /// Writes `imm` as an L0 SST and installs it.
    async fn flush_memtable(&self, imm: &Rc<Memtable>) -> Result<()> {
        if imm.is_empty() {
            imm.set_flush_state(FlushState::Installed(None));
            self.mem.borrow_mut().frozen.pop_back();
            self.signals.changed.notify_all();
            return Ok(());
        }
        self.signals.flush_stage.set("wait for upload room");
        self.wait_for_upload_room().await;
        // From here a checkpoint may wait for this flush instead of writing the
        // memtable's contents again as its snapshot.
        imm.set_flush_state(FlushState::Writing);
        let (id, object, path) = self.allocate_file();
        self.signals.flush_stage.set("create");
        let mut writer = TableWriter::create(&path, id, self.table_opts.clone()).await?;
        let ssd_bytes = cache_mode::ssd_bytes_per_shard(&self.opts);
        if let Some(hint) = cache_mode::flush_output_hint(self.reads.cache.mode(), ssd_bytes) {
            writer.on_data_block(output_hook(&self.reads.cache, id, 0, move || Some(hint)));
        }
        self.signals.flush_stage.set("write");
        let written = match write_newest_versions(
            &mut writer,
            imm,
            &self.opts.catalog,
            FileDesc::empty(id, object),
        )
        .await
        {
            Ok(desc) => {
                self.signals.flush_stage.set("finish");
                self.finish_table(writer, desc, &path).await
            }
            Err(e) => {
                writer.abandon().await;
                Err(e)
            }
        };
        let meta = written.inspect_err(|_| self.reads.cache.evict_file(id))?;
        self.signals.flush_stage.set("install");
        let size = meta.desc.size_bytes;
        let edit = VersionEdit {
            last_seqno: Some(imm.max_seqno()),
            added: vec![(0, meta.desc.clone())],
            ..Default::default()
        };
        self.log_and_install(edit, vec![(0, meta.clone())]).await?;
        imm.set_flush_state(FlushState::Installed(Some(meta)));
        self.mem.borrow_mut().frozen.pop_back();
        {
            let mut c = self.counters.borrow_mut();
            c.flushes += 1;
            c.flush_bytes += size;
        }
        self.signals.changed.notify_all();
        self.signals.compaction_wake.notify_all();
        self.signals.flush_stage.set("idle");
        if let Some(hook) = &self.opts.new_file_hook {
            hook.on_new_file(&NewFile {
                shard: self.id,
                file_id: id,
                path,
                size_bytes: size,
                level: 0,
                reason: FileReason::Flush,
            });
        }
        Ok(())
    }

    /// Freezes the active memtable and waits until every frozen memtable is flushed.
    pub(crate) async fn flush_all(&self) -> Result<()> {
        self.check_open()?;
        self.freeze(true);
        self.wait_until(
            || self.mem.borrow().frozen.is_empty(),
            &self.signals.flush_wake,
        )
        .await
    }
}

/// Writes the newest version of every key of a frozen memtable into `desc`'s file,
/// a key's merge operands combined into one entry (`combine.rs`); returns the
/// description (size filled in by the caller).
// The borrow of the frozen memtable's map is held across the writer's awaits on
// purpose: only the active memtable is ever written, and this one is frozen.
#[allow(clippy::await_holding_refcell_ref)]
async fn write_newest_versions(
    writer: &mut TableWriter,
    imm: &Memtable,
    catalog: &TableCatalog,
    mut desc: FileDesc,
) -> Result<FileDesc> {
    let mut last: Option<&[u8]> = None;
    let mut pending: Option<PendingMerge> = None;
    let mut ikey = Vec::new();
    let frozen = imm.frozen();
    for e in frozen.iter() {
        if last == Some(e.state_key) {
            if let Some(p) = pending.as_mut() {
                p.older(e.kind as u8, e.value)?;
            }
            continue;
        }
        last = Some(e.state_key);
        if let Some(p) = pending.take() {
            let c = p.resolve(catalog, false)?;
            writer.add(&c.ikey, &c.value).await?;
            desc.note_entry(&c.ikey, c.seqno, c.kind);
        }
        if e.kind == ValueKind::Merge {
            pending = Some(PendingMerge::new(e.state_key, e.seqno, e.value));
            continue;
        }
        set_internal_key(&mut ikey, e.state_key, e.seqno, e.kind);
        writer.add(&ikey, e.value).await?;
        desc.note_entry(&ikey, e.seqno, e.kind);
    }
    if let Some(p) = pending.take() {
        let c = p.resolve(catalog, false)?;
        writer.add(&c.ikey, &c.value).await?;
        desc.note_entry(&c.ikey, c.seqno, c.kind);
    }
    Ok(desc)
}

impl Shard {
    /// Finishes `writer` (footer, sync) and opens the file for reading.
    pub(crate) async fn finish_table(
        &self,
        writer: TableWriter,
        mut desc: FileDesc,
        path: &std::path::Path,
    ) -> Result<Rc<FileMeta>> {
        let props = writer.finish().await?;
        let file = LocalFile::open(path)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        desc.size_bytes = file.size();
        desc.meta_bytes = props.meta_bytes;
        super::open_table(
            desc,
            path,
            Some(file),
            self.remote.as_ref(),
            &self.reads.remote_reads,
            self.new_file_upload_state(),
        )
        .await
    }
}
