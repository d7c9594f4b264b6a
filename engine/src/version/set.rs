//! The one owner of a shard's metadata.
//!
//! A [`VersionSet`] holds the persisted image of the shard ([`ManifestState`]), the
//! current [`Version`] (the same files, opened), the files that left the version but
//! may still be read, the file-number counter and the manifest log. It is the only
//! writer of edits. [`VersionSet::log_and_apply`]:
//!
//! 1. waits its turn (one edit at a time, so log order is apply order);
//! 2. refuses the edit if an earlier append failed (the log may end in a torn
//!    record; a good record after it would make replay fail), or if it does not fit
//!    the state;
//! 3. off the shard thread: fsyncs the shard directory when the edit names new files
//!    (so a logged file's directory entry is durable), appends the record and
//!    fdatasyncs it;
//! 4. applies it with [`ManifestState::apply`], the function replay uses, and
//!    installs the new version;
//! 5. rolls the log to a fresh manifest holding a snapshot once it exceeds
//!    `Options::manifest_roll_bytes`.
//!
//! In tests and debug builds every apply also checks the level invariants and that
//! every live file still has a copy (local or uploaded).

use std::cell::{Cell, Ref, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::manifest::{encode_record, ManifestLog};
use super::{FileMeta, ManifestState, Version, VersionEdit};
use crate::error::{Error, ErrorDetail, Result};
use crate::files::sync_dir;
use crate::stats::ManifestStats;

/// The metadata owner of one shard.
pub(crate) struct VersionSet {
    shard: u32,
    dir: PathBuf,
    roll_bytes: u64,
    /// Log length right after its snapshot record: a roll waits until the log is
    /// twice that, so a large state does not roll on every edit.
    base_bytes: Cell<u64>,
    /// What the manifest says: the state a restart recovers.
    state: RefCell<ManifestState>,
    current: RefCell<Rc<Version>>,
    /// Files removed from the version but maybe still read by older snapshots.
    obsolete: RefCell<Vec<Rc<FileMeta>>>,
    /// Next file number to hand out (may run ahead of the persisted counter).
    next_file_number: Cell<u64>,
    /// The log; `None` when read-only, while an append runs off-thread, or after a
    /// failure.
    log: RefCell<Option<ManifestLog>>,
    read_only: bool,
    /// One edit at a time.
    turn: glommio::sync::Semaphore,
    /// The first failed append or roll: every later edit is refused with it.
    failure: RefCell<Option<String>>,
    stats: Cell<ManifestStats>,
}

impl VersionSet {
    /// A version set over a recovered state. `log` is `None` for a read-only shard.
    pub(crate) fn new(
        shard: u32,
        dir: &Path,
        state: ManifestState,
        version: Version,
        log: Option<ManifestLog>,
        roll_bytes: u64,
    ) -> VersionSet {
        let stats = ManifestStats {
            log_bytes: log.as_ref().map_or(0, ManifestLog::len_bytes),
            ..Default::default()
        };
        VersionSet {
            shard,
            dir: dir.to_path_buf(),
            roll_bytes,
            base_bytes: Cell::new(log.as_ref().map_or(0, ManifestLog::len_bytes)),
            next_file_number: Cell::new(state.next_file_number.max(1)),
            state: RefCell::new(state),
            current: RefCell::new(Rc::new(version)),
            obsolete: RefCell::new(Vec::new()),
            read_only: log.is_none(),
            log: RefCell::new(log),
            turn: glommio::sync::Semaphore::new(1),
            failure: RefCell::new(None),
            stats: Cell::new(stats),
        }
    }

    /// The current version.
    pub(crate) fn current(&self) -> Rc<Version> {
        self.current.borrow().clone()
    }

    /// The persisted image (what a restart or a checkpoint sees).
    pub(crate) fn persisted(&self) -> Ref<'_, ManifestState> {
        self.state.borrow()
    }

    /// The shard's lineage (names the objects of the files it writes).
    pub(crate) fn lineage(&self) -> u64 {
        self.state.borrow().lineage
    }

    /// Takes the next file number.
    pub(crate) fn allocate_file_number(&self) -> u64 {
        let n = self.next_file_number.get();
        self.next_file_number.set(n + 1);
        n
    }

    /// Whether file `id` is in the current version.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        self.current
            .borrow()
            .levels
            .iter()
            .flatten()
            .any(|f| f.desc.id == id)
    }

    /// Counters of the manifest log.
    pub(crate) fn stats(&self) -> ManifestStats {
        self.stats.get()
    }

    /// Logs `edit` durably, then applies it and installs a version with `added`
    /// (the opened files the edit adds; a moved file passes its existing `FileMeta`).
    /// The manifest record is the commit point: an edit not on disk is not applied.
    pub(crate) async fn log_and_apply(
        &self,
        mut edit: VersionEdit,
        added: Vec<(u32, Rc<FileMeta>)>,
    ) -> Result<()> {
        if self.read_only {
            return Err(ErrorDetail::ReadOnly.into());
        }
        let _turn = self
            .turn
            .acquire_permit(1)
            .await
            .map_err(|_| Error::from(ErrorDetail::Closed))?;
        self.check_healthy()?;
        edit.next_file_number = Some(self.next_file_number.get());
        self.state
            .borrow()
            .check_fits(&edit)
            .map_err(|what| Error::internal(format!("shard {}: {what}", self.shard)))?;
        let record = encode_record(&edit.encode())?;
        let new_files = edit
            .added
            .iter()
            .any(|(_, f)| !edit.deleted.iter().any(|(_, id)| *id == f.id));
        self.run_on_log(move |log, dir| {
            if new_files {
                sync_dir(dir)?;
            }
            log.append(&record)
        })
        .await?;
        let mut stats = self.stats.get();
        stats.appends += 1;
        stats.dir_syncs += u64::from(new_files);
        self.stats.set(stats);

        if let Err(what) = self.state.borrow_mut().apply(&edit) {
            // Logged but not applicable: a bug. Replay would refuse the same record,
            // so stop here with the reason rather than diverge from the log.
            let err = Error::internal(format!(
                "shard {}: logged edit does not apply: {what}",
                self.shard
            ));
            self.fail(&err);
            return Err(err);
        }
        self.install(&edit, added);
        if cfg!(debug_assertions) {
            self.check_copies()?;
        }
        self.roll_if_due().await
    }

    fn check_healthy(&self) -> Result<()> {
        match self.failure.borrow().as_ref() {
            Some(reason) => Err(ErrorDetail::Poisoned {
                shard: self.shard,
                reason: reason.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }

    fn fail(&self, err: &Error) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(err.to_string());
        }
    }

    /// Runs `op` on the log off the shard thread. A failure leaves the log taken
    /// (no later append can follow a torn record) and is remembered.
    async fn run_on_log<F>(&self, op: F) -> Result<()>
    where
        F: FnOnce(&mut ManifestLog, &Path) -> Result<()> + Send + 'static,
    {
        let Some(mut log) = self.log.borrow_mut().take() else {
            let err = Error::internal(format!("shard {}: manifest log unavailable", self.shard));
            self.fail(&err);
            return Err(err);
        };
        let dir = self.dir.clone();
        let (log, r) = glommio::executor()
            .spawn_blocking(move || {
                let r = op(&mut log, &dir);
                (log, r)
            })
            .await;
        match r {
            Ok(()) => {
                *self.log.borrow_mut() = Some(log);
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Installs the version `edit` describes and moves removed files to obsolete.
    fn install(&self, edit: &VersionEdit, added: Vec<(u32, Rc<FileMeta>)>) {
        let mut cur = self.current.borrow_mut();
        let removed: Vec<Rc<FileMeta>> = cur
            .levels
            .iter()
            .flatten()
            .filter(|f| edit.deleted.iter().any(|(_, id)| *id == f.desc.id))
            .filter(|f| !added.iter().any(|(_, a)| a.desc.id == f.desc.id))
            .cloned()
            .collect();
        *cur = Rc::new(cur.apply(&edit.deleted, added));
        drop(cur);
        self.obsolete.borrow_mut().extend(removed);
    }

    /// Every live file keeps a copy: its local file, or its object.
    fn check_copies(&self) -> Result<()> {
        let cur = self.current.borrow();
        match cur.levels.iter().flatten().find(|f| !f.has_a_copy()) {
            Some(f) => Err(Error::internal(format!(
                "shard {}: live file {:016x} has neither a local copy nor an object",
                self.shard, f.desc.id
            ))),
            None => Ok(()),
        }
    }

    async fn roll_if_due(&self) -> Result<()> {
        let len = self.log.borrow().as_ref().map_or(0, ManifestLog::len_bytes);
        if len <= self.roll_bytes.max(2 * self.base_bytes.get()) {
            self.set_log_bytes(len);
            return Ok(());
        }
        let snapshot = self.state.borrow().snapshot_edit().encode();
        let roll_result = self
            .run_on_log(move |log, _| {
                *log = log.roll(&snapshot)?;
                Ok(())
            })
            .await;
        roll_result?;
        let mut stats = self.stats.get();
        stats.rolls += 1;
        self.stats.set(stats);
        let len = self.log.borrow().as_ref().map_or(0, ManifestLog::len_bytes);
        self.base_bytes.set(len);
        self.set_log_bytes(len);
        Ok(())
    }

    fn set_log_bytes(&self, len: u64) {
        let mut stats = self.stats.get();
        stats.log_bytes = len;
        self.stats.set(stats);
    }

    /// Obsolete files no snapshot or upload reads any more; the caller deletes them.
    pub(crate) fn take_unreferenced(&self) -> Vec<Rc<FileMeta>> {
        let mut obsolete = self.obsolete.borrow_mut();
        let (dead, live): (Vec<_>, Vec<_>) =
            obsolete.drain(..).partition(|f| Rc::strong_count(f) == 1);
        *obsolete = live;
        dead
    }

    /// Files obsolete but still referenced.
    pub(crate) fn obsolete_files(&self) -> Ref<'_, Vec<Rc<FileMeta>>> {
        self.obsolete.borrow()
    }

    /// Injects a failure into a later append (tests of the poisoning rule).
    #[cfg(test)]
    pub(crate) fn inject_log_failure(&self, after: u32, failure: super::manifest::InjectedFailure) {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.inject = Some((after, failure));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::manifest::{recover, InjectedFailure};
    use crate::version::FileDesc;

    fn desc(id: u64, key: u8) -> FileDesc {
        let k = |b: u8| {
            let mut k = vec![0, 0, 0, 0, b];
            k.extend_from_slice(&[0; 8]);
            k
        };
        FileDesc {
            id,
            object: crate::version::ObjectId::legacy(id),
            size_bytes: 100,
            smallest: k(key),
            largest: k(key),
            entries: 1,
            deletions: 0,
            min_seqno: 1,
            max_seqno: 1,
            clip: None,
            home: String::new(),
            meta_bytes: 0,
        }
    }

    /// An edit that records an upload of a file added earlier (no FileMeta needed).
    fn add_edit(id: u64) -> VersionEdit {
        VersionEdit {
            added: vec![(1, desc(id, id as u8))],
            ..Default::default()
        }
    }

    fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move { f().await })
            .unwrap()
            .join()
            .unwrap();
    }

    fn version_set(dir: &Path, roll_bytes: u64) -> VersionSet {
        let state = ManifestState {
            next_file_number: 1,
            ..Default::default()
        };
        let log = ManifestLog::create(dir, 1, &state.snapshot_edit().encode()).unwrap();
        VersionSet::new(
            0,
            dir,
            state,
            Version {
                levels: vec![Vec::new(); 4],
            },
            Some(log),
            roll_bytes,
        )
    }

    // The persisted image is checked here; installing opened files is exercised by
    // the engine's tests. Adding descriptions without FileMeta keeps the version
    // empty, which the copy check accepts.
    #[test]
    fn after_a_failed_append_no_edit_is_logged_and_reopen_sees_the_last_good_one() {
        for failure in [InjectedFailure::TornWrite(7), InjectedFailure::Fsync] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            run(move || async move {
                let vs = version_set(&path, 1 << 20);
                vs.log_and_apply(add_edit(1), Vec::new()).await.unwrap();
                vs.inject_log_failure(0, failure);
                let first = vs.log_and_apply(add_edit(2), Vec::new()).await.unwrap_err();
                assert!(first.to_string().contains("injected failure"), "{first}");
                let len_after_failure = std::fs::metadata(path.join("MANIFEST-000001"))
                    .unwrap()
                    .len();
                // Refused, with the first failure named, and nothing more written.
                let later = vs.log_and_apply(add_edit(3), Vec::new()).await.unwrap_err();
                assert_eq!(later.kind(), crate::ErrorKind::Closed, "{later}");
                assert!(later.to_string().contains("injected failure"), "{later}");
                assert_eq!(
                    std::fs::metadata(path.join("MANIFEST-000001"))
                        .unwrap()
                        .len(),
                    len_after_failure,
                    "a record followed the failed one"
                );
                assert!(!vs.persisted().files.contains_key(&2));
                let r = recover(&path).unwrap().unwrap();
                let ids: Vec<u64> = r.state.files.keys().copied().collect();
                match failure {
                    // A torn record is dropped on replay.
                    InjectedFailure::TornWrite(_) => assert_eq!(ids, vec![1]),
                    // A record whose fsync failed may or may not have reached the
                    // disk; here it did, and replay may apply it.
                    InjectedFailure::Fsync => {
                        assert!(ids == vec![1] || ids == vec![1, 2], "{ids:?}")
                    }
                }
            });
        }
    }

    #[test]
    fn the_log_rolls_to_a_snapshot_past_its_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let vs = version_set(&path, 4096);
            for id in 1..=200u64 {
                vs.log_and_apply(add_edit(id), Vec::new()).await.unwrap();
            }
            let stats = vs.stats();
            assert!(stats.rolls >= 2, "{stats:?}");
            // Rolled logs stay within twice the snapshot (plus the record that tipped it).
            let snapshot = vs.persisted().snapshot_edit().encode().len() as u64;
            assert!(stats.log_bytes <= 2 * (snapshot + 64) + 128, "{stats:?}");
            let manifests: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
                .collect();
            assert_eq!(manifests.len(), 1, "old manifests are removed");
            let r = recover(&path).unwrap().unwrap();
            assert_eq!(r.number, 1 + stats.rolls);
            assert_eq!(&r.state, &*vs.persisted());
            assert_eq!(r.state.files.len(), 200);
        });
    }

    #[test]
    fn an_edit_that_does_not_fit_is_refused_before_it_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let vs = version_set(&path, 1 << 20);
            vs.log_and_apply(add_edit(1), Vec::new()).await.unwrap();
            let before = std::fs::metadata(path.join("MANIFEST-000001"))
                .unwrap()
                .len();
            let err = vs
                .log_and_apply(
                    VersionEdit {
                        deleted: vec![(1, 9)],
                        ..Default::default()
                    },
                    Vec::new(),
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Internal, "{err}");
            assert_eq!(
                std::fs::metadata(path.join("MANIFEST-000001"))
                    .unwrap()
                    .len(),
                before
            );
            // Not an I/O failure: later edits still log.
            vs.log_and_apply(add_edit(2), Vec::new()).await.unwrap();
        });
    }
}
