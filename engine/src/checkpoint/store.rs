//! A store's checkpoints and garbage without a database that writes there: what
//! `terrace-ctl checkpoints` and `terrace-ctl gc` call.
//!
//! Both open the store the way a database does (`Options::object_store`, with the
//! options' fault injection, retries and I/O threads) on a private I/O runtime that
//! ends with the call. Listing reads only commit objects. Collecting runs the same
//! collector as [`Db::gc`](crate::Db::gc) with the minimum age
//! `Options::gc_min_age`; given a database (opened read-only is enough), the objects
//! its current version and its snapshots read are protected, and objects of the
//! lineages its shards write are garbage once old enough and unread, as when the
//! database collects by itself.

use std::collections::HashSet;

use super::gc::{collect, GcReport, Live};
use super::listing::{list_checkpoints, read_checkpoint};
use super::CheckpointSummary;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::{ObjectStoreSpec, Options};
use crate::remote::Remote;

/// Every committed checkpoint in `store` (of any database), oldest first (by
/// creation time, then id). `base` supplies fault injection, retries and I/O
/// threads; its store is replaced by `store`.
pub async fn list_store_checkpoints(
    store: ObjectStoreSpec,
    base: Options,
) -> Result<Vec<CheckpointSummary>> {
    with_remote(store, base, |remote| async move {
        let mut out = Vec::new();
        for ((id, db), dir) in list_checkpoints(&remote).await? {
            if !dir.committed {
                continue;
            }
            match read_checkpoint(&remote, id, db).await {
                Ok(meta) => out.push(CheckpointSummary::of(&meta)),
                // Released between the listing and the read: not a checkpoint now.
                Err(e) if super::gc::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|c| (c.created, c.id, c.db_lineage));
        Ok(out)
    })
    .await
}

/// Collects garbage in `store` (see [`gc`](super::gc) for the rules), deleting
/// unreferenced objects older than `base.gc_min_age` (or, with `dry_run`, only
/// reporting them). `live`, a database using this store (read-only is enough),
/// protects what it reads and lets its own unread objects go, as its own
/// collector would; its running writer's older snapshots are not visible from
/// here, which `gc_min_age` must cover.
pub async fn collect_store_garbage(
    store: ObjectStoreSpec,
    base: Options,
    live: Option<&Db>,
    dry_run: bool,
) -> Result<GcReport> {
    let live = match live {
        None => None,
        Some(db) => {
            let parts = db.on_all(|s| async move { Ok(s.gc_view()) }).await?;
            let mut l = Live {
                objects: HashSet::new(),
                lineages: HashSet::new(),
            };
            for (objects, lineage) in parts {
                l.objects.extend(objects);
                l.lineages.insert(lineage);
            }
            Some(l)
        }
    };
    let min_age = base.gc_min_age;
    let now = base.clock.system_time();
    with_remote(store, base, move |remote| async move {
        collect(&remote, live.as_ref(), min_age, now, dry_run).await
    })
    .await
}

/// What collecting a whole job found, per database prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobGcReport {
    /// Each prefix under the job root that holds checkpoints, with its report.
    pub prefixes: Vec<(String, GcReport)>,
}

impl JobGcReport {
    /// Objects deleted over all prefixes.
    pub fn deleted(&self) -> u64 {
        self.prefixes.iter().map(|(_, r)| r.deleted).sum()
    }
}

/// Collects garbage in every database prefix of the job rooted at `job` (a store
/// URI, e.g. `file:///x/job-17` holding `db-a`, `db-b`, ...): each prefix as
/// [`collect_store_garbage`] would, with every prefix's checkpoints protecting
/// what they name, wherever it lives. `base` supplies fault injection, retries,
/// I/O threads and `gc_min_age`.
pub async fn collect_job_garbage(job: &str, base: Options, dry_run: bool) -> Result<JobGcReport> {
    let root =
        terrace_tiering::store::uri::StoreUri::parse(job).map_err(crate::remote::store_err)?;
    let rt = terrace_tiering::store::IoRuntime::start(&terrace_tiering::store::IoRuntimeConfig {
        threads: base.io_threads,
        max_in_flight: base.max_remote_requests,
    })
    .map_err(|e| Error::io("start the I/O runtime for", &base.path, e))?;
    let names = crate::remote::list_job_prefixes(&rt.handle(), &root).await;
    rt.shutdown_now();
    let mut report = JobGcReport::default();
    for name in names? {
        let uri = crate::remote::join_home(&root, &name).to_string();
        let r =
            collect_store_garbage(ObjectStoreSpec::Uri(uri), base.clone(), None, dry_run).await?;
        report.prefixes.push((name, r));
    }
    Ok(report)
}

/// Runs `f` with the store `store` names on a private I/O runtime.
async fn with_remote<T, F, Fut>(store: ObjectStoreSpec, mut base: Options, f: F) -> Result<T>
where
    F: FnOnce(std::sync::Arc<Remote>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    base.object_store = store;
    let (runtime, remote) = crate::remote::open(&base)
        .await?
        .ok_or_else(|| Error::invalid_option("object_store", "names no object store"))?;
    let out = f(remote).await;
    runtime.shutdown_now();
    out
}
