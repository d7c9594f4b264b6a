//! Garbage collection of a store's SST objects and abandoned uploads.
//!
//! An SST object may be deleted only when no committed checkpoint in the store names
//! it, no checkpoint in progress names it, no live database reads it, and it is
//! older than `min_age` (uploads finishing and checkpoints in progress are younger).
//! What "no live database reads it" means depends on who collects:
//!
//! - **The database itself** ([`Db::gc`]) knows the objects its versions read and
//!   the lineages its shards write: an object of its own lineages that it does not
//!   read is garbage once old enough.
//! - **Anyone else** (`terrace-ctl gc`, or the database for objects of lineages it
//!   does not own) cannot see live versions. A database's checkpoint names every
//!   file that database read when it was taken, and files never come back: so an
//!   object of lineage L that no checkpoint names and that is older than the newest
//!   checkpoint of the database L belongs to (less a margin for clock skew) is
//!   garbage. An object of a lineage no checkpoint mentions is kept.
//!
//! **Jobs.** Databases of one job keep their prefixes side by side under a job
//! root, and a rescaled database references objects under its sources' prefixes.
//! So every collection also reads the checkpoints of the other prefixes under the
//! root (`Remote::job_prefixes`): an object is kept while any database's
//! checkpoint names it. Object ids (lineage, number) are unique across the job,
//! whichever prefix holds them. A collector deletes only in its own prefix;
//! [`crate::collect_job_garbage`] collects every prefix of a job.
//!
//! Checkpoint directories without a commit object whose objects are all older than
//! `min_age` are abandoned (a checkpoint that failed, or a release cut short) and
//! deleted; younger ones are in progress and protect the files they name. Multipart
//! uploads started more than `min_age` ago are aborted (where the store can list
//! them: some S3-compatible servers cannot, which the report says). Every decision is made from
//! listings taken before any deletion, deletions only remove what was garbage then,
//! and a kill at any point leaves a state a rerun finishes: the collector is
//! crash-safe and idempotent.
//!
//! A database reads the clock, then the live views of its shards, then decides
//! ([`decide`]): an object uploaded after the reading is young, and one uploaded
//! before it was installed before every view was taken, so no view misses a live
//! object the listing shows as old (read the other way round, a file installed and
//! uploaded while a slower shard was still answering was deleted while live).
//! It decides while no checkpoint of its own starts, then
//! deletes ([`execute`], up to [`DELETES_IN_FLIGHT`] requests at once) while
//! checkpoints go on: a checkpoint started after the decision names files that were
//! live when the collector looked at the live version (protected), files created
//! since (listed, if at all, younger than `min_age`), and its own new snapshots (not
//! listed); none of them is in the decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::format::ShardCheckpoint;
use super::listing::{list_checkpoints, read_checkpoint, read_shards};
use crate::db::Db;
use crate::error::{ErrorDetail, Result};
use crate::files::{parse_object_key, SST_PREFIX};
use crate::remote::Remote;
use crate::version::ObjectId;

/// Clock skew allowed between the writers of checkpoints and of objects.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// Most deletions (and multipart aborts) the collector has in flight.
pub(crate) const DELETES_IN_FLIGHT: usize = 32;

/// What a collection decided, before anything is deleted.
pub(crate) struct GcPlan {
    report: GcReport,
    /// Unreferenced SST objects old enough to go, with their sizes.
    doomed: BTreeMap<String, u64>,
    /// Objects of abandoned checkpoint directories.
    abandoned: Vec<String>,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// SST objects listed.
    pub objects: u64,
    /// Named by a checkpoint or read by the live database: kept.
    pub referenced: u64,
    /// Unreferenced but possibly still needed (young, or of an unknown lineage): kept.
    pub kept: u64,
    /// Deleted (or, in a dry run, that would be).
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Committed checkpoints read.
    pub checkpoints: u64,
    /// Objects of abandoned checkpoint directories deleted.
    pub abandoned_checkpoint_objects: u64,
    /// Multipart uploads aborted.
    pub multipart_aborted: u64,
    /// Other prefixes of the job (databases beside this one under the job root)
    /// whose checkpoints were read too.
    pub job_prefixes: u64,
    /// Why open multipart uploads could not be listed, if they could not (some
    /// S3-compatible servers do not implement the listing); everything else was
    /// still collected.
    pub multipart_error: Option<String>,
}

/// What the collector knows of live data.
pub(crate) struct Live {
    /// Objects the running database reads.
    pub(crate) objects: HashSet<ObjectId>,
    /// Lineages it writes (their files are garbage as soon as it stops reading them).
    pub(crate) lineages: HashSet<u64>,
}

/// Collects garbage in `remote`'s store. `live` is the running database's view, if
/// a database collects; `now` the wall clock.
pub(crate) async fn collect(
    remote: &Arc<Remote>,
    live: Option<&Live>,
    min_age: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Result<GcReport> {
    let plan = decide(remote, live, min_age, now).await?;
    execute(remote, plan, min_age, now, dry_run).await
}

/// What the checkpoints of a job name, and when each database last checkpointed.
#[derive(Default)]
struct Refs {
    referenced: HashSet<ObjectId>,
    newest_of_db: HashMap<u64, u64>,
    db_of_lineage: HashMap<u64, u64>,
}

/// Reads every checkpoint directory of `remote`'s store into `refs`; with
/// `abandoned`, collects the objects of abandoned directories (only the store
/// being collected deletes them).
async fn gather(
    remote: &Remote,
    refs: &mut Refs,
    report: &mut GcReport,
    mut abandoned: Option<&mut Vec<String>>,
    old: impl Fn(Option<SystemTime>) -> bool,
) -> Result<()> {
    let name = |s: &ShardCheckpoint, referenced: &mut HashSet<ObjectId>| {
        for f in s.files.iter().map(|(_, f)| f).chain(s.snapshots.iter()) {
            referenced.insert(f.object);
        }
    };
    for ((id, db), dir) in list_checkpoints(remote).await? {
        if dir.committed {
            let meta = match read_checkpoint(remote, id, db).await {
                Ok(m) => m,
                // Released while we looked: it names nothing any more.
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            let shards = match read_shards(remote, &meta).await {
                Ok(s) => s,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            report.checkpoints += 1;
            let newest = refs.newest_of_db.entry(db).or_insert(0);
            *newest = (*newest).max(meta.created_unix_ms);
            for s in &shards {
                refs.db_of_lineage.insert(s.lineage, db);
                name(s, &mut refs.referenced);
            }
        } else if let Some(out) = abandoned
            .as_deref_mut()
            .filter(|_| dir.objects.iter().all(|o| old(o.last_modified)))
        {
            out.extend(dir.objects.iter().map(|o| o.key.clone()));
        } else {
            // In progress (or another prefix's): what its shards have written so
            // far stays.
            for o in &dir.objects {
                if let Ok(bytes) = remote.get(o.key.clone()).await {
                    if let Ok(s) = ShardCheckpoint::decode(&o.key, &bytes) {
                        name(&s, &mut refs.referenced);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Lists the store and decides what is garbage (see the module documentation);
/// deletes nothing. The checkpoints of every database of the job (the prefixes
/// beside this one under the job root) count too: a rescaled database's
/// checkpoints name objects in its sources' prefixes.
pub(crate) async fn decide(
    remote: &Arc<Remote>,
    live: Option<&Live>,
    min_age: Duration,
    now: SystemTime,
) -> Result<GcPlan> {
    let mut report = GcReport::default();
    let old = |t: Option<SystemTime>| is_old(t, now, min_age);

    let mut refs = Refs::default();
    let mut abandoned: Vec<String> = Vec::new();
    gather(remote, &mut refs, &mut report, Some(&mut abandoned), old).await?;
    for home in remote.job_prefixes().await? {
        let sibling = remote.home(&home).await?;
        gather(&sibling, &mut refs, &mut report, None, old).await?;
        report.job_prefixes += 1;
    }
    let Refs {
        referenced,
        newest_of_db,
        db_of_lineage,
    } = refs;

    let mut listed = remote.list(SST_PREFIX.to_string()).await?;
    listed.extend(remote.list("shard-".to_string()).await?);
    let mut doomed: BTreeMap<String, u64> = BTreeMap::new();
    for o in listed {
        let Some(object) = parse_object_key(&o.key) else {
            continue;
        };
        report.objects += 1;
        if referenced.contains(&object) || live.is_some_and(|l| l.objects.contains(&object)) {
            report.referenced += 1;
            continue;
        }
        let owned = live.is_some_and(|l| l.lineages.contains(&object.lineage));
        let garbage = old(o.last_modified)
            && (owned || {
                // Someone else's (or nobody's known) file: garbage only if older than
                // the newest checkpoint of the database it belongs to.
                let cutoff = db_of_lineage
                    .get(&object.lineage)
                    .and_then(|db| newest_of_db.get(db))
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(*ms));
                match (cutoff, o.last_modified) {
                    (Some(c), Some(t)) => t + CLOCK_MARGIN < c,
                    _ => false,
                }
            });
        if garbage {
            doomed.insert(o.key, o.size);
        } else {
            report.kept += 1;
        }
    }

    Ok(GcPlan {
        report,
        doomed,
        abandoned,
    })
}

/// Carries out `plan`: deletes what it decided (unless `dry_run`), and aborts
/// multipart uploads older than `min_age`.
pub(crate) async fn execute(
    remote: &Remote,
    plan: GcPlan,
    min_age: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Result<GcReport> {
    let GcPlan {
        mut report,
        doomed,
        abandoned,
    } = plan;
    report.deleted += doomed.len() as u64;
    report.deleted_bytes += doomed.values().sum::<u64>();
    report.abandoned_checkpoint_objects += abandoned.len() as u64;
    if !dry_run {
        delete_all(remote, doomed.into_keys()).await?;
        delete_all(remote, abandoned).await?;
    }
    match remote.list_multipart(String::new()).await {
        Ok(open) => {
            for m in open {
                if is_old(m.initiated, now, min_age) {
                    if !dry_run {
                        remote.abort_multipart(m.key, m.upload).await?;
                    }
                    report.multipart_aborted += 1;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list open multipart uploads; none aborted");
            report.multipart_error = Some(e.to_string());
        }
    }
    Ok(report)
}

fn is_old(t: Option<SystemTime>, now: SystemTime, min_age: Duration) -> bool {
    t.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age >= min_age))
}

/// Deletes `keys`, [`DELETES_IN_FLIGHT`] at a time; the first error ends it (what
/// was deleted stays deleted, a rerun finishes the rest).
async fn delete_all(remote: &Remote, keys: impl IntoIterator<Item = String>) -> Result<()> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    stream::iter(keys)
        .map(|key| remote.delete(key))
        .buffer_unordered(DELETES_IN_FLIGHT)
        .try_for_each(|()| std::future::ready(Ok(())))
        .await
}

pub(crate) fn is_not_found(e: &crate::Error) -> bool {
    matches!(
        e.detail(),
        ErrorDetail::ObjectStore(se) if se.kind == terrace_tiering::store::StoreErrorKind::NotFound
    )
}

impl Db {
    /// Deletes objects of the database's store that no retained checkpoint and no
    /// live version names and that are older than `Options::gc_min_age` (see
    /// [`gc`](crate::checkpoint::gc) for the rules). Safe to run at any time; runs by
    /// itself every `Options::gc_interval`.
    pub async fn gc(&self) -> Result<GcReport> {
        self.gc_with(false).await
    }

    /// Like [`Db::gc`] but deletes nothing: reports what it would delete.
    pub async fn gc_dry_run(&self) -> Result<GcReport> {
        self.gc_with(true).await
    }

    async fn gc_with(&self, dry_run: bool) -> Result<GcReport> {
        let remote = self.remote_for_checkpoints()?.clone();
        if self.inner.read_only && !dry_run {
            return Err(ErrorDetail::ReadOnly.into());
        }
        let min_age = self.inner.opts.gc_min_age;
        let (plan, now) = {
            // No checkpoint of this database starts while the collector decides;
            // deleting needs no such pause (see the module documentation).
            let _book = self.inner.checkpoints.lock().await;
            // The clock is read before the live views, never after: an object
            // uploaded after this instant is young (kept whatever the views say), and
            // one uploaded before it was installed before every shard's view, so the
            // views account for it. Read after the views, a file installed on one
            // shard while another was still answering, and uploaded before the
            // reading, would be listed as old and unread: a live object deleted.
            let now = self.inner.opts.clock.system_time();
            let parts = self.on_all(|s| async move { Ok(s.gc_view()) }).await?;
            let mut live = Live {
                objects: HashSet::new(),
                lineages: HashSet::new(),
            };
            for (objects, lineage) in parts {
                live.objects.extend(objects);
                live.lineages.insert(lineage);
            }
            #[cfg(test)]
            tests::pause_after_live_views();
            (decide(&remote, Some(&live), min_age, now).await?, now)
        };
        execute(&remote, plan, min_age, now, dry_run).await
    }
}

/// The database's periodic collector: a thread that runs [`Db::gc`] every interval
/// while the database lives.
pub(crate) struct GcThread {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl GcThread {
    pub(crate) fn start(
        db: std::sync::Weak<crate::db::DbInner>,
        every: Duration,
    ) -> std::io::Result<GcThread> {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("terrace-gc".into())
            .spawn(move || loop {
                std::thread::park_timeout(every);
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Some(inner) = db.upgrade() else { return };
                let db = Db { inner };
                if let Err(e) = futures_lite::future::block_on(db.gc()) {
                    tracing::warn!(error = %e, "garbage collection failed; will retry");
                }
            })?;
        Ok(GcThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for GcThread {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            // The thread may be the one dropping the database (its upgraded handle
            // was the last); it must not join itself.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeSet;
    use std::ops::Bound;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use futures_lite::future::block_on;
    use rand::{Rng, SeedableRng};
    use terrace_tiering::store::fault::{FaultConfig, FaultyStore, Latency};
    use terrace_tiering::store::local_dir::LocalDirStore;
    use terrace_tiering::store::ObjectStore;

    use crate::{Db, ObjectStoreSpec, Options};

    thread_local! {
        /// How long this thread's collections sleep between the live views and the
        /// decision (a collector descheduled there, as on a loaded machine).
        static PAUSE: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    pub(super) fn pause_after_live_views() {
        let pause = PAUSE.with(Cell::get);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }

    fn sst_keys(root: &Path) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![root.join("sst")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    /// Writers flush and upload while the collector, with no minimum age to shield
    /// new objects, pauses 20 ms between looking at the live versions and deciding:
    /// a file installed and uploaded in that pause was once taken for old, unread
    /// garbage and deleted while the database read it (a checkpoint then named a
    /// missing object). Right after each collection every live file the database
    /// counts as uploaded must be in the store, and a checkpoint taken at the end
    /// restores.
    #[test]
    fn a_collector_paused_after_its_live_views_never_deletes_a_live_object() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        std::fs::create_dir_all(&root).unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(
            Arc::new(LocalDirStore::open(&root, false).unwrap()),
            FaultConfig {
                latency: Latency::Uniform {
                    min: Duration::from_millis(1),
                    max: Duration::from_millis(3),
                },
                ..FaultConfig::default()
            },
        ));
        let options = |name: &str| {
            let mut o = Options::new(tmp.path().join(name));
            o.shards = 2;
            o.pin_shards = false;
            o.memtable_bytes = 64 << 10;
            o.target_file_bytes = 64 << 10;
            o.spin_before_park_us = 0;
            o.object_store = ObjectStoreSpec::Custom(store.clone());
            o.gc_interval = None;
            o.gc_min_age = Duration::ZERO;
            o.retained_checkpoints = 1;
            o
        };
        let db = block_on(Db::open(options("src"))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(23);
                let mut model = std::collections::BTreeMap::new();
                let t = db.table("default").unwrap();
                // Until the collector has run its rounds: a 64 KiB memtable flushes
                // (and uploads) every ~400 writes.
                while !stop.load(Ordering::Acquire) {
                    let k = format!("key{:05}", rng.gen_range(0..3000)).into_bytes();
                    let v = vec![rng.gen::<u8>(); rng.gen_range(1..300)];
                    block_on(db.put(t, &k, &v)).unwrap();
                    model.insert(k, v);
                }
                model
            })
        };
        // Nothing but the collector deletes objects, so right after a collection
        // every live file counted as uploaded must be in the store.
        let assert_live_files_stored = |after: &str| {
            let live = block_on(db.live_files()).unwrap();
            let stored = sst_keys(&root);
            let missing: Vec<&str> = live
                .iter()
                .filter(|f| f.uploaded && !stored.contains(&f.object_key))
                .map(|f| f.object_key.as_str())
                .collect();
            assert!(
                missing.is_empty(),
                "{} of {} live files are not in the store {after}: {missing:?}",
                missing.len(),
                live.len()
            );
        };
        PAUSE.with(|p| p.set(Duration::from_millis(20)));
        let mut deleted = 0;
        for collection in 1..=60 {
            deleted += block_on(db.gc()).unwrap().deleted;
            assert_live_files_stored(&format!("after collection {collection}"));
        }
        PAUSE.with(|p| p.set(Duration::ZERO));
        stop.store(true, Ordering::Release);
        let model = writer.join().unwrap();
        let flushes = block_on(db.stats()).unwrap().total().flushes;
        assert!(flushes > 10, "only {flushes} flushes beside the collector");
        assert!(deleted > 0, "compactions left garbage to collect");
        block_on(db.flush()).unwrap();
        block_on(db.wait_for_uploads()).unwrap();
        block_on(db.gc()).unwrap();
        assert_live_files_stored("at the end");
        block_on(db.checkpoint(1)).unwrap();
        block_on(db.close()).unwrap();
        let (r, _) = block_on(Db::restore(options("r"), Some(1))).unwrap();
        let t = r.table("default").unwrap();
        let got = block_on(r.scan(t, Bound::Unbounded, Bound::Unbounded, usize::MAX)).unwrap();
        assert_eq!(got.len(), model.len());
        assert!(got.into_iter().eq(model), "the restored checkpoint differs");
        block_on(r.close()).unwrap();
    }
}
